//! The one way every Taplink store opens its SQLite database: central's registry, the
//! document store, the blob index, the hub's store and the kiosk's store all call [`open`].
//!
//! - **WAL, checked.** `journal_mode=WAL` is requested and the mode SQLite reports is
//!   checked: a file system that cannot do WAL (some network file systems, or an in-memory
//!   database) is refused with [`OpenError::NoWal`] instead of silently running in another
//!   mode with other locking and durability.
//! - **`synchronous=FULL`.** Every store acknowledges what it commits to someone (a peer, a
//!   kiosk, an admin), so a commit must survive a power cut, not just a crash.
//! - **A busy timeout** set before anything else, so that a second process on the same file
//!   (a command-line tool while the node runs) waits for the lock instead of failing.
//! - **Migrations in one `BEGIN IMMEDIATE` transaction.** `user_version` is read *inside*
//!   the write transaction, and every missing migration plus the new `user_version` commit
//!   together: two processes opening a fresh file at once migrate it one after the other
//!   (the second finds the current version and does nothing), and a failing migration
//!   leaves the file at its old version. A version newer than this build knows is refused
//!   ([`OpenError::NewerSchema`]): downgrading is not supported.
//! - **Private files.** A file the opener creates is 0600 before SQLite opens it (SQLite
//!   gives its `-wal` and `-shm` files the database file's mode), and an existing one is
//!   tightened to 0600.
//!
//! What differs per store (whether a missing file may be created, the journal size limit,
//! the busy timeout, foreign keys) is an [`Options`] value, not a copy of this code.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

/// Why a database could not be opened. Each store's error enum wraps it (`#[from]`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The database file could not be created, or its permissions set, before SQLite opened
    /// it.
    #[error("cannot create {path} as a private file: {source}")]
    Create {
        /// The database file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// SQLite could not open the file or apply a setting.
    #[error("cannot open the database {path} ({step}): {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What was being done, e.g. "set synchronous=FULL".
        step: &'static str,
        /// SQLite's report.
        #[source]
        source: rusqlite::Error,
    },
    /// SQLite kept another journal mode when asked for WAL.
    #[error(
        "{path}: SQLite kept journal mode {mode:?} instead of WAL; put the data directory on a \
         local disk"
    )]
    NoWal {
        /// The database file.
        path: PathBuf,
        /// The journal mode SQLite reported.
        mode: String,
    },
    /// The database was written by newer software (or holds a version no build writes).
    #[error(
        "{path} has schema version {found}, newer than the {supported} this build knows; run the \
         newer taplink (downgrading a database is not supported) or restore a matching backup"
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// Its `user_version`.
        found: i64,
        /// The newest version this build knows: the number of migrations.
        supported: i64,
    },
    /// A schema migration failed; the database is unchanged (still at its old version).
    #[error("{path}: migrating the schema to version {version} failed: {source}")]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// The version being migrated to.
        version: i64,
        /// SQLite's report.
        #[source]
        source: rusqlite::Error,
    },
}

/// What differs between the stores that open a database through [`open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Create the file (private, 0600) if it is missing. `false` opens only an existing
    /// database (central's `Registry::open`, which must not create one by accident).
    pub create: bool,
    /// Largest WAL file kept after a checkpoint, in bytes, so that one burst of writes
    /// does not leave a large file behind for good.
    pub journal_size_limit: i64,
    /// How long a statement waits for another connection's lock before failing.
    pub busy_timeout: Duration,
    /// Enforce `REFERENCES` clauses (`PRAGMA foreign_keys`, a per-connection setting).
    pub foreign_keys: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            create: true,
            journal_size_limit: 16 * 1024 * 1024,
            busy_timeout: Duration::from_secs(5),
            foreign_keys: false,
        }
    }
}

/// Open the database at `path` (see the [module docs](self)) and apply the `migrations` it
/// lacks: migration `i` brings the schema from version `i` to `i + 1` (`user_version`).
/// Never edit a migration that has shipped; append a new one.
pub fn open(path: &Path, migrations: &[&str], options: &Options) -> Result<Connection, OpenError> {
    let err = |step| {
        move |source| OpenError::Sqlite {
            path: path.to_owned(),
            step,
            source,
        }
    };
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if options.create {
        create_private(path)?;
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let mut conn = Connection::open_with_flags(path, flags).map_err(err("open"))?;
    // First, so that the pragmas below also wait for another connection's lock.
    conn.busy_timeout(options.busy_timeout)
        .map_err(err("set busy_timeout"))?;
    // Switching a fresh file to WAL takes an exclusive lock that SQLite does not wait for
    // (the busy handler is not consulted), so openers racing on a new file retry here
    // within the busy timeout.
    const RETRY: Duration = Duration::from_millis(5);
    let mut retries = options.busy_timeout.as_millis() / RETRY.as_millis();
    let mode: String = loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && retries > 0 =>
            {
                retries -= 1;
                std::thread::sleep(RETRY);
            }
            other => break other.map_err(err("set journal_mode=WAL"))?,
        }
    };
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(OpenError::NoWal {
            path: path.to_owned(),
            mode,
        });
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(err("set synchronous=FULL"))?;
    conn.pragma_update(None, "journal_size_limit", options.journal_size_limit)
        .map_err(err("set journal_size_limit"))?;
    // Outside any transaction: SQLite ignores this pragma inside one.
    conn.pragma_update(None, "foreign_keys", options.foreign_keys)
        .map_err(err("set foreign_keys"))?;
    migrate(&mut conn, path, migrations)?;
    Ok(conn)
}

fn create_private(path: &Path) -> Result<(), OpenError> {
    let create_err = |source| OpenError::Create {
        path: path.to_owned(),
        source,
    };
    crate::private::create_file(path).map_err(create_err)?;
    // A file left readable by others (restored from a backup, say) is tightened too.
    std::fs::set_permissions(
        path,
        std::fs::Permissions::from_mode(crate::private::FILE_MODE),
    )
    .map_err(create_err)
}

fn migrate(conn: &mut Connection, path: &Path, migrations: &[&str]) -> Result<(), OpenError> {
    let err = |step| {
        move |source| OpenError::Sqlite {
            path: path.to_owned(),
            step,
            source,
        }
    };
    // The list holds a handful of entries: the cast cannot truncate.
    let supported = migrations.len() as i64;
    // IMMEDIATE takes the write lock before `user_version` is read: a second process
    // waits here (busy_timeout) and then reads the version the first one committed.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err("begin migration"))?;
    let found: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(err("read user_version"))?;
    if !(0..=supported).contains(&found) {
        return Err(OpenError::NewerSchema {
            path: path.to_owned(),
            found,
            supported,
        });
    }
    if found == supported {
        return Ok(());
    }
    for (version, migration) in (found + 1..).zip(&migrations[found as usize..]) {
        tx.execute_batch(migration)
            .and_then(|()| tx.pragma_update(None, "user_version", version))
            .map_err(|source| OpenError::Migrate {
                path: path.to_owned(),
                version,
                source,
            })?;
    }
    tx.commit().map_err(err("commit migration"))?;
    tracing::info!(path = %path.display(), from = found, to = supported, "migrated database schema");
    Ok(())
}
