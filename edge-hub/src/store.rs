//! The hub's own SQLite database, `DATA/hub.sqlite`: state that only this hub has and that
//! is not part of any CRDT document. This module is the only one that touches rusqlite.
//!
//! - [`outbox`]: telemetry waiting for central, removed only when central acknowledged it
//!   (`taplink_sync_io::outbox`);
//! - [`devices`]: kiosk pairings (codes staff approve, or central's kiosk codes) and device
//!   tokens (stored as BLAKE3 hashes only, like pairing ids);
//! - [`staff`]: the hub's staff tokens (hashes only).
//!
//! WAL with `synchronous=FULL`: accepting an event from a kiosk, approving a pairing and
//! handing out a token are all acknowledgements that must survive a power cut.
//!
//! Documents (`docs.sqlite`) and the media index (`media/index.sqlite`) have their own
//! databases in `taplink-sync-io`; they are shared with central and are not hub-only state.

pub mod devices;
pub mod outbox;
pub mod roster;
pub mod sessions;
pub mod staff;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use rusqlite::Connection;
use taplink_sync_proto::ids::KioskId;

pub use devices::{
    Approval, Collected, DeviceError, GrantedPairing, NewPairing, PairingCode, PairingId,
    PairingStatus, TokenState,
};
pub use outbox::Batch;
pub use staff::{StaffToken, StaffTokenError};

/// Name of the database file inside the data directory.
pub const STORE_FILE: &str = "hub.sqlite";

/// Schema migrations, applied in order; `user_version` counts those applied. Never edit an
/// applied migration: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the telemetry outbox.
    "CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id BLOB NOT NULL UNIQUE,
        event TEXT NOT NULL
    );",
    // 2: kiosk pairings and device tokens. Times are Unix milliseconds (UTC).
    "CREATE TABLE pairings (
        id TEXT PRIMARY KEY,
        code TEXT NOT NULL UNIQUE,
        device TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        kiosk TEXT,
        token_hash BLOB,
        collected_at INTEGER
    );
    CREATE TABLE device_tokens (
        token_hash BLOB PRIMARY KEY,
        kiosk TEXT NOT NULL,
        issued_at INTEGER NOT NULL,
        revoked_at INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX device_tokens_kiosk ON device_tokens (kiosk);",
    // 3: pairings pre-approved by central: the kiosk grant (venue document) each redeems,
    // at most one pairing per grant.
    "ALTER TABLE pairings ADD COLUMN grant_id TEXT;
    CREATE UNIQUE INDEX pairings_grant ON pairings (grant_id) WHERE grant_id IS NOT NULL;",
    // 4: pairing ids kept only as hashes (a row from before gets a placeholder id: waiting
    // staff pairings are dropped, and the kiosk asks again; a granted pairing gets its
    // hashed id back when its kiosk retries), the client address of each pairing (for the
    // per-client cap), and staff tokens (hashes only).
    "ALTER TABLE pairings ADD COLUMN client TEXT;
    DELETE FROM pairings WHERE collected_at IS NULL AND grant_id IS NULL;
    UPDATE pairings SET id = 'migrated-' || hex(randomblob(16));
    CREATE INDEX pairings_waiting ON pairings (client, created_at) WHERE kiosk IS NULL;
    CREATE TABLE staff_tokens (
        token_hash BLOB PRIMARY KEY,
        name TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER,
        revoked_at INTEGER
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX staff_tokens_active_name ON staff_tokens (name) WHERE revoked_at IS NULL;",
    // 5: the outbox in the shape of `taplink_sync_io::outbox` (shared with the kiosk's
    // event buffer): heartbeats are marked expendable, dropped first when it is full. Rows
    // queued before are not marked, which only makes them last longer.
    "ALTER TABLE outbox ADD COLUMN expendable INTEGER NOT NULL DEFAULT 0;",
    // 6: the venue's roster from central, as signed (`store/roster.rs`): one row.
    "CREATE TABLE roster (
        id           INTEGER PRIMARY KEY CHECK (id = 1),
        version      INTEGER NOT NULL,
        body         BLOB NOT NULL,
        signature    BLOB NOT NULL,
        signer       BLOB NOT NULL,
        received_at  INTEGER NOT NULL
    ) STRICT;",
    // 7: sessions of people signed in with their central account against the roster
    // (`store/sessions.rs`); only the secret's hash is kept.
    "CREATE TABLE sessions (
        secret_hash   BLOB PRIMARY KEY,
        user_id       TEXT NOT NULL,
        created_at    INTEGER NOT NULL,
        last_seen_at  INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;",
    // 8: staff tokens that expire (`taplink-hub local-admin`'s recovery tokens).
    "ALTER TABLE staff_tokens ADD COLUMN expires_at INTEGER;",
    // 9: when the hub last was in touch with central (its session established or ended),
    // for `roster_valid_offline_s`.
    "ALTER TABLE roster ADD COLUMN contact_at INTEGER;",
];

/// Why the hub's database failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The hub database could not be opened: not WAL, written by a newer hub (run that
    /// version, or restore a backup), a failed migration, ….
    #[error("hub database: {0}")]
    Open(#[from] taplink_sync_io::sqlite::OpenError),
    /// SQLite failed; nothing was changed by the failed call.
    #[error("hub database: {action}: {source}")]
    Sqlite {
        /// What we tried.
        action: &'static str,
        /// Why.
        source: rusqlite::Error,
    },
    /// The telemetry outbox failed.
    #[error("hub database: {0}")]
    Outbox(#[from] taplink_sync_io::outbox::OutboxError),
    /// A stored row no longer decodes (never expected; the row is kept for inspection).
    #[error("hub database row {row} is corrupt: {reason}")]
    Corrupt {
        /// Which row (table and key).
        row: String,
        /// Why.
        reason: String,
    },
}

pub(crate) fn sql(action: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { action, source }
}

/// The hub's database. All methods block (a write waits for an fsync): call them from
/// `spawn_blocking` on request paths that write.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    /// Active device tokens already looked up, by hash: the kiosks' polls are answered
    /// without touching SQLite. Filled and emptied only while `conn` is held, so a
    /// revocation can never be overtaken by a lookup that read the row before it.
    active_tokens: Mutex<HashMap<[u8; 32], KioskId>>,
}

impl Store {
    /// Open or create the database at `path` and bring its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = taplink_sync_io::sqlite::open(path, MIGRATIONS, &Default::default())?;
        Ok(Self {
            conn: Mutex::new(conn),
            active_tokens: Mutex::new(HashMap::new()),
        })
    }

    fn active_tokens(&self) -> MutexGuard<'_, HashMap<[u8; 32], KioskId>> {
        self.active_tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while the connection was locked happened between SQLite calls; an open
        // transaction rolls back when its guard drops, so the connection is usable.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STORE_FILE);
        drop(Store::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::Open(
                taplink_sync_io::sqlite::OpenError::NewerSchema { found: 99, .. }
            ))
        ));
    }

    #[test]
    fn a_version_1_database_is_migrated_keeping_its_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STORE_FILE);
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute(
                "INSERT INTO outbox (event_id, event) VALUES (x'01', 'kept')",
                [],
            )
            .unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.pending().unwrap(), 1);
        let version: i64 = store
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        let tables: i64 = store
            .conn()
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('pairings', 'device_tokens')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 2);
    }
}
