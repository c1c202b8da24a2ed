//! Opening a node's own SQLite database the one way every Taplink store does: WAL,
//! `synchronous=FULL` (what it stores is acknowledged to someone), a bounded journal, and
//! schema migrations applied in one transaction and counted in `user_version`.

use std::path::Path;

use rusqlite::Connection;

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// SQLite failed at this step.
    #[error("{action}: {source}")]
    Sqlite {
        /// What we tried.
        action: &'static str,
        /// Why.
        source: rusqlite::Error,
    },
    /// The database file could not be created.
    #[error("cannot create {path}: {source}")]
    Create {
        /// Which file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database was written by newer software.
    #[error("schema version {found}; this software understands up to {supported}")]
    NewerSchema {
        /// The version found.
        found: usize,
        /// The newest version known here.
        supported: usize,
    },
}

fn sql(action: &'static str) -> impl FnOnce(rusqlite::Error) -> OpenError {
    move |source| OpenError::Sqlite { action, source }
}

/// Open or create the database at `path` and apply the `migrations` it lacks (migration
/// `i` brings the schema to version `i + 1`). A database with a newer version is refused.
pub fn open_migrated(
    path: &Path,
    migrations: &[&str],
    journal_size_limit: i64,
) -> Result<Connection, OpenError> {
    // Created private before SQLite opens it: its WAL and shared-memory files take its mode.
    crate::private::create_file(path).map_err(|source| OpenError::Create {
        path: path.to_owned(),
        source,
    })?;
    let mut conn = Connection::open(path).map_err(sql("open"))?;
    // Another process (a command-line tool on the same data directory) may hold the lock
    // for a moment.
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(sql("set busy_timeout"))?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
        .map_err(sql("set WAL"))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sql("set synchronous"))?;
    conn.pragma_update(None, "journal_size_limit", journal_size_limit)
        .map_err(sql("set journal_size_limit"))?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sql("read schema version"))?;
    let version = usize::try_from(version).unwrap_or(usize::MAX);
    if version > migrations.len() {
        return Err(OpenError::NewerSchema {
            found: version,
            supported: migrations.len(),
        });
    }
    let tx = conn.transaction().map_err(sql("begin migration"))?;
    for (i, migration) in migrations.iter().enumerate().skip(version) {
        tx.execute_batch(migration).map_err(sql("migrate"))?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(sql("record schema version"))?;
    }
    tx.commit().map_err(sql("commit migration"))?;
    Ok(conn)
}
