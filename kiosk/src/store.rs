//! The kiosk's durable state in `DATA/kiosk.sqlite`: its credentials (device token, kiosk
//! id, venue), a pending pairing, the last good manifest, and the buffer of status and
//! proof-of-play events waiting for the hub.
//!
//! This module is the only one that touches rusqlite. The database is WAL with
//! `synchronous=FULL`: an event is durable before the player is told it was recorded, and
//! the manifest is durable before the player is shown it, so a power cut never leaves a
//! kiosk without something to play. The file is created 0600 (SQLite gives its `-wal` and
//! `-shm` files the same mode) because it holds the device token.
//!
//! The event buffer is a `taplink_sync_io::outbox` (the same as the hub's telemetry
//! outbox) on the `events` table: rows in insertion order, unique by event id, deleted only
//! once the hub has acknowledged them, at most [`EVENT_CAPACITY`] (oldest heartbeats
//! dropped first).

use std::fmt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use taplink_sync_io::outbox::{Entry, Outbox, Pushed};
use taplink_sync_proto::ids::{KioskId, VenueId};
use taplink_sync_proto::manifest::Manifest;
use taplink_sync_proto::wire::TelemetryKind;

use crate::hub::KioskEvent;

/// Name of the database inside the data directory.
pub const STORE_FILE: &str = "kiosk.sqlite";

/// Schema migrations, applied in order; `user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE credentials (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        kiosk TEXT NOT NULL,
        token TEXT NOT NULL,
        venue TEXT,
        paired_at_ms INTEGER NOT NULL
    );
    CREATE TABLE pairing (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        pairing TEXT NOT NULL,
        code TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        venue TEXT
    );
    CREATE TABLE manifest (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        json TEXT NOT NULL,
        saved_at_ms INTEGER NOT NULL
    );
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id BLOB NOT NULL UNIQUE CHECK (length(event_id) = 16),
        heartbeat INTEGER NOT NULL,
        event TEXT NOT NULL
    );",
    // 2: the hub certificate this kiosk paired with (its fingerprint): the only one it
    // talks to until it pairs again.
    "CREATE TABLE hub_pin (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        fingerprint TEXT NOT NULL
    );",
    // 3: the event buffer in the shape of `taplink_sync_io::outbox` (shared with the hub's
    // telemetry outbox), whose name for "a later event supersedes it" is `expendable`.
    "ALTER TABLE events RENAME COLUMN heartbeat TO expendable;",
];

/// The most events the buffer keeps while the hub is unreachable: about two months of one
/// heartbeat a minute, or a long outage of busy proof of play. Beyond it the oldest
/// heartbeats are dropped first (a later heartbeat supersedes them), then the oldest proof
/// of play.
pub const EVENT_CAPACITY: u64 = 100_000;

const EVENTS: Outbox = Outbox::new("events", EVENT_CAPACITY);

impl Entry for KioskEvent {
    fn id(&self) -> [u8; 16] {
        self.id
    }

    fn expendable(&self) -> bool {
        matches!(self.kind, TelemetryKind::Heartbeat(_))
    }
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The kiosk database could not be opened: not WAL, written by a newer agent, a failed
    /// migration, ….
    #[error("kiosk database: {0}")]
    Open(#[from] taplink_sync_io::sqlite::OpenError),
    /// SQLite failed.
    #[error("kiosk database: {action}: {source}")]
    Sqlite {
        /// What we tried.
        action: &'static str,
        /// Why.
        source: rusqlite::Error,
    },
    /// The event buffer failed.
    #[error("kiosk database: {0}")]
    Outbox(#[from] taplink_sync_io::outbox::OutboxError),
    /// A stored value no longer decodes (never expected: only this module writes them).
    #[error("kiosk database: stored {what} is corrupt: {reason}")]
    Corrupt {
        /// Which value.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

fn sql(action: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { action, source }
}

fn corrupt(what: &'static str) -> impl FnOnce(String) -> StoreError {
    move |reason| StoreError::Corrupt { what, reason }
}

/// What a paired kiosk keeps: who it is, the secret that proves it, and its venue.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The kiosk id the hub issued.
    pub kiosk: KioskId,
    /// The device token (`tlk1-…`); a bearer secret.
    pub token: String,
    /// The venue of the hub it paired with (from the hub's TXT record), when known. After
    /// pairing the kiosk talks only to hubs of this venue.
    pub venue: Option<VenueId>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a secret: never in logs.
        f.debug_struct("Credentials")
            .field("kiosk", &self.kiosk)
            .field("token", &"<redacted>")
            .field("venue", &self.venue)
            .finish()
    }
}

/// A pairing request the hub accepted and staff have not approved yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The hub's id for the request.
    pub pairing: String,
    /// The code shown on screen.
    pub code: String,
    /// When the hub forgets it.
    pub expires_at: DateTime<Utc>,
    /// The venue of the hub that issued it (TXT record), when known.
    pub venue: Option<VenueId>,
    /// Approved already, by a kiosk code from central: the token can be collected at once.
    /// Not stored (a ticket read back from disk says `false`; the next poll tells).
    pub preapproved: bool,
}

/// A batch of buffered events: send it, and after the hub's `200` call
/// [`Store::acknowledge`].
pub type Batch = taplink_sync_io::outbox::Batch<KioskEvent>;

/// The kiosk's database. Cheap to share behind an `Arc`; every method blocks briefly.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Open or create the database at `path` (mode 0600) and migrate it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let options = taplink_sync_io::sqlite::Options {
            journal_size_limit: 4 * 1024 * 1024,
            ..Default::default()
        };
        let conn = taplink_sync_io::sqlite::open(path, MIGRATIONS, &options)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // Every write is one statement or transaction, so a panic while the lock was held
        // cannot have left the database half-written.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The saved credentials, if this kiosk is paired.
    pub fn credentials(&self) -> Result<Option<Credentials>, StoreError> {
        let row: Option<(String, String, Option<String>)> = self
            .conn()
            .query_row(
                "SELECT kiosk, token, venue FROM credentials WHERE one = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(sql("read credentials"))?;
        let Some((kiosk, token, venue)) = row else {
            return Ok(None);
        };
        Ok(Some(Credentials {
            kiosk: kiosk
                .parse()
                .map_err(|e: taplink_sync_proto::ids::ParseIdError| e.to_string())
                .map_err(corrupt("kiosk id"))?,
            token,
            venue: parse_venue(venue)?,
        }))
    }

    /// Save the credentials of a completed pairing and drop the pending ticket, in one
    /// transaction.
    pub fn save_credentials(&self, creds: &Credentials, now_ms: i64) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(sql("begin save credentials"))?;
        tx.execute(
            "INSERT OR REPLACE INTO credentials (one, kiosk, token, venue, paired_at_ms)
             VALUES (1, ?1, ?2, ?3, ?4)",
            params![
                creds.kiosk.to_string(),
                creds.token,
                creds.venue.map(|v| v.to_string()),
                now_ms
            ],
        )
        .map_err(sql("save credentials"))?;
        tx.execute("DELETE FROM pairing", [])
            .map_err(sql("drop pairing ticket"))?;
        tx.commit().map_err(sql("commit credentials"))
    }

    /// The hub revoked this kiosk: forget its credentials, its manifest (it described a
    /// kiosk that no longer exists) and its undelivered events (no token can deliver them
    /// any more). Returns how many events were dropped.
    pub fn forget_credentials(&self) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(sql("begin forget"))?;
        tx.execute("DELETE FROM credentials", [])
            .map_err(sql("forget credentials"))?;
        tx.execute("DELETE FROM hub_pin", [])
            .map_err(sql("forget hub pin"))?;
        tx.execute("DELETE FROM manifest", [])
            .map_err(sql("forget manifest"))?;
        let dropped = EVENTS.clear(&tx)?;
        tx.commit().map_err(sql("commit forget"))?;
        Ok(dropped)
    }

    /// The fingerprint of the hub certificate this kiosk is pinned to, if any.
    pub fn hub_pin(&self) -> Result<Option<taplink_certs::Fingerprint>, StoreError> {
        let text: Option<String> = self
            .conn()
            .query_row("SELECT fingerprint FROM hub_pin WHERE one = 1", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql("read hub pin"))?;
        text.map(|t| {
            t.parse()
                .map_err(|e: taplink_certs::ParseFingerprintError| e.to_string())
                .map_err(corrupt("hub pin"))
        })
        .transpose()
    }

    /// Pin the hub certificate with fingerprint `fp` (durably: it decides whom the kiosk
    /// trusts).
    pub fn set_hub_pin(&self, fp: &taplink_certs::Fingerprint) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO hub_pin (one, fingerprint) VALUES (1, ?1)",
                [fp.to_string()],
            )
            .map(drop)
            .map_err(sql("save hub pin"))
    }

    /// The pending pairing ticket, if any.
    pub fn ticket(&self) -> Result<Option<Ticket>, StoreError> {
        let row: Option<(String, String, String, Option<String>)> = self
            .conn()
            .query_row(
                "SELECT pairing, code, expires_at, venue FROM pairing WHERE one = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(sql("read pairing ticket"))?;
        let Some((pairing, code, expires_at, venue)) = row else {
            return Ok(None);
        };
        Ok(Some(Ticket {
            pairing,
            code,
            expires_at: DateTime::parse_from_rfc3339(&expires_at)
                .map_err(|e| e.to_string())
                .map_err(corrupt("pairing expiry"))?
                .with_timezone(&Utc),
            venue: parse_venue(venue)?,
            preapproved: false,
        }))
    }

    /// Keep a pending pairing ticket across restarts (the code on screen stays the same).
    pub fn save_ticket(&self, ticket: &Ticket) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO pairing (one, pairing, code, expires_at, venue)
                 VALUES (1, ?1, ?2, ?3, ?4)",
                params![
                    ticket.pairing,
                    ticket.code,
                    ticket.expires_at.to_rfc3339(),
                    ticket.venue.map(|v| v.to_string())
                ],
            )
            .map(drop)
            .map_err(sql("save pairing ticket"))
    }

    /// Drop the pending pairing ticket (expired, unknown to the hub, or collected).
    pub fn clear_ticket(&self) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM pairing", [])
            .map(drop)
            .map_err(sql("clear pairing ticket"))
    }

    /// The last good manifest, if any.
    pub fn manifest(&self) -> Result<Option<Manifest>, StoreError> {
        let json: Option<String> = self
            .conn()
            .query_row("SELECT json FROM manifest WHERE one = 1", [], |r| r.get(0))
            .optional()
            .map_err(sql("read manifest"))?;
        json.map(|j| serde_json::from_str(&j).map_err(|e| corrupt("manifest")(e.to_string())))
            .transpose()
    }

    /// Replace the last good manifest.
    pub fn save_manifest(&self, manifest: &Manifest, now_ms: i64) -> Result<(), StoreError> {
        // A Manifest is plain data (ids, strings, numbers, an RFC 3339 date): serializing it
        // cannot fail.
        let json = serde_json::to_string(manifest).expect("manifests serialize");
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO manifest (one, json, saved_at_ms) VALUES (1, ?1, ?2)",
                params![json, now_ms],
            )
            .map(drop)
            .map_err(sql("save manifest"))
    }

    /// Buffer events durably; an event whose id is already buffered is skipped. Returns
    /// how many were new. Beyond [`EVENT_CAPACITY`] the oldest are dropped, with a warning.
    pub fn push_events(&self, events: &[KioskEvent]) -> Result<usize, StoreError> {
        let Pushed { added, dropped } = EVENTS.push(&mut self.conn(), events)?;
        if dropped > 0 {
            tracing::warn!(dropped, "event buffer full; dropped the oldest events");
        }
        Ok(added)
    }

    /// The oldest `max` buffered events, or `None` when there are none.
    pub fn next_batch(&self, max: usize) -> Result<Option<Batch>, StoreError> {
        Ok(EVENTS.next_batch(&self.conn(), max)?)
    }

    /// The hub stored everything up to `upto`: drop it. Events buffered after the batch was
    /// taken are kept.
    pub fn acknowledge(&self, upto: u64) -> Result<usize, StoreError> {
        Ok(EVENTS.acknowledge(&self.conn(), upto)?)
    }

    /// Drop one event the hub refuses for good (it would block the buffer forever).
    pub fn drop_event(&self, id: &[u8; 16]) -> Result<bool, StoreError> {
        Ok(EVENTS.remove(&self.conn(), id)?)
    }

    /// Events waiting.
    pub fn pending(&self) -> Result<u64, StoreError> {
        Ok(EVENTS.pending(&self.conn())?)
    }
}

fn parse_venue(venue: Option<String>) -> Result<Option<VenueId>, StoreError> {
    venue
        .map(|v| {
            v.parse()
                .map_err(|e: taplink_sync_proto::ids::ParseIdError| {
                    corrupt("venue id")(e.to_string())
                })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use taplink_sync_proto::ids::{ItemId, MediaHash, PlaylistId};
    use taplink_sync_proto::manifest::{ManifestItem, NextChange};
    use taplink_sync_proto::wire::{Heartbeat, ProofOfPlay};

    fn heartbeat(n: u8) -> KioskEvent {
        KioskEvent {
            id: [n; 16],
            at_ms: i64::from(n),
            kind: TelemetryKind::Heartbeat(Heartbeat {
                on_screen: None,
                manifest_version: "v".into(),
                disk_free_bytes: 1,
                temperature_mc: None,
                uptime_s: 2,
                software: "t".into(),
            }),
        }
    }

    fn played(n: u8) -> KioskEvent {
        KioskEvent {
            id: [n; 16],
            at_ms: i64::from(n),
            kind: TelemetryKind::ProofOfPlay(ProofOfPlay {
                playlist: PlaylistId::from_bytes([1; 16]),
                item: ItemId::from_bytes([2; 16]),
                media: MediaHash::of(b"m"),
                started_ms: 5,
                duration_ms: 6,
            }),
        }
    }

    fn open(dir: &tempfile::TempDir) -> Store {
        Store::open(&dir.path().join(STORE_FILE)).unwrap()
    }

    fn manifest() -> Manifest {
        let item = ManifestItem {
            item: ItemId::from_bytes([3; 16]),
            media: MediaHash::of(b"a"),
            content_type: "image/png".into(),
            duration_ms: 5_000,
        };
        Manifest {
            kiosk: KioskId::from_bytes([9; 16]),
            playlist: Some(PlaylistId::from_bytes([1; 16])),
            version: "abc".into(),
            now: vec![item.clone()],
            next: Some(NextChange {
                at: DateTime::parse_from_rfc3339("2026-11-20T18:00:00Z")
                    .unwrap()
                    .with_timezone(&Utc),
                items: vec![],
            }),
            media: vec![item.media],
        }
    }

    #[test]
    fn events_leave_only_when_acknowledged_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        assert_eq!(
            store
                .push_events(&[heartbeat(1), played(2), heartbeat(3)])
                .unwrap(),
            3
        );
        assert_eq!(store.push_events(&[played(2)]).unwrap(), 0, "same id once");
        let batch = store.next_batch(2).unwrap().unwrap();
        assert_eq!(batch.events, vec![heartbeat(1), played(2)]);
        // No acknowledgement (the answer was lost): a restart sends the same batch again,
        // with the same ids, which the hub deduplicates.
        drop(store);
        let store = open(&dir);
        assert_eq!(store.next_batch(2).unwrap().unwrap(), batch);
        // An event buffered after the batch was taken survives its acknowledgement.
        store.push_events(&[played(4)]).unwrap();
        assert_eq!(store.acknowledge(batch.upto).unwrap(), 2);
        assert_eq!(
            store.next_batch(10).unwrap().unwrap().events,
            vec![heartbeat(3), played(4)]
        );
        assert_eq!(store.pending().unwrap(), 2);
    }

    #[test]
    fn the_manifest_survives_a_restart_and_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        assert_eq!(store.manifest().unwrap(), None);
        let first = manifest();
        store.save_manifest(&first, 1).unwrap();
        drop(store);
        let store = open(&dir);
        assert_eq!(store.manifest().unwrap(), Some(first.clone()));
        let second = Manifest {
            version: "def".into(),
            now: vec![],
            next: None,
            ..first
        };
        store.save_manifest(&second, 2).unwrap();
        assert_eq!(store.manifest().unwrap(), Some(second));
    }

    #[test]
    fn pairing_saves_credentials_drops_the_ticket_and_revocation_forgets_everything() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let venue = VenueId::from_bytes([7; 16]);
        let ticket = Ticket {
            pairing: "p1".into(),
            code: "K7Q-4MP".into(),
            expires_at: DateTime::parse_from_rfc3339("2026-11-20T18:15:00Z")
                .unwrap()
                .with_timezone(&Utc),
            venue: Some(venue),
            preapproved: false,
        };
        store.save_ticket(&ticket).unwrap();
        drop(store);
        let store = open(&dir);
        assert_eq!(store.ticket().unwrap(), Some(ticket));
        let creds = Credentials {
            kiosk: KioskId::from_bytes([9; 16]),
            token: "tlk1-secret".into(),
            venue: Some(venue),
        };
        store.save_credentials(&creds, 5).unwrap();
        assert_eq!(store.ticket().unwrap(), None);
        store.save_manifest(&manifest(), 6).unwrap();
        store.push_events(&[heartbeat(1), played(2)]).unwrap();
        drop(store);
        let store = open(&dir);
        assert_eq!(store.credentials().unwrap(), Some(creds));
        assert_eq!(store.forget_credentials().unwrap(), 2);
        assert_eq!(store.credentials().unwrap(), None);
        assert_eq!(store.manifest().unwrap(), None);
        assert_eq!(store.pending().unwrap(), 0);
    }

    #[test]
    fn credentials_never_appear_in_debug_output() {
        let creds = Credentials {
            kiosk: KioskId::from_bytes([9; 16]),
            token: "tlk1-supersecret".into(),
            venue: None,
        };
        let shown = format!("{creds:?}");
        assert!(!shown.contains("supersecret"), "{shown}");
    }

    #[cfg(unix)]
    #[test]
    fn the_database_holding_the_token_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STORE_FILE);
        // A file left world-readable (e.g. restored from a backup) is tightened on open.
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = Store::open(&path).unwrap();
        store
            .save_credentials(
                &Credentials {
                    kiosk: KioskId::from_bytes([9; 16]),
                    token: "tlk1-secret".into(),
                    venue: None,
                },
                1,
            )
            .unwrap();
        for name in [STORE_FILE, "kiosk.sqlite-wal"] {
            let mode = std::fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }

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
}
