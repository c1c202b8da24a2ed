//! The telemetry outbox: kiosk and hub events wait here, durably, until central has
//! acknowledged them. Central stores events idempotently by id, so a batch resent after a
//! lost acknowledgement is harmless; an event leaves the outbox only after its ack.
//!
//! This module owns `DATA/outbox.sqlite` (WAL, `synchronous=FULL`: accepting an event
//! from a kiosk is an acknowledgement).

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use rusqlite::{Connection, OptionalExtension, params};
use taplink_sync_proto::wire::TelemetryEvent;

/// Schema migrations, applied in order; `user_version` counts those applied.
const MIGRATIONS: &[&str] = &["CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id BLOB NOT NULL UNIQUE,
        event TEXT NOT NULL
    );"];

/// Why the outbox failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// SQLite failed.
    #[error("outbox database: {action}: {source}")]
    Sqlite {
        /// What we tried.
        action: &'static str,
        /// Why.
        source: rusqlite::Error,
    },
    /// The database was written by a newer hub.
    #[error("outbox database has schema version {found}; this hub understands up to {supported}")]
    NewerSchema {
        /// Found.
        found: usize,
        /// Known.
        supported: usize,
    },
    /// A stored event no longer decodes (never expected; the row is kept for inspection).
    #[error("outbox event {seq} is corrupt: {reason}")]
    Corrupt {
        /// Its row.
        seq: i64,
        /// Why.
        reason: String,
    },
}

fn sql(action: &'static str) -> impl FnOnce(rusqlite::Error) -> OutboxError {
    move |source| OutboxError::Sqlite { action, source }
}

/// A batch taken from the outbox: send it, and on its ack call [`Outbox::acknowledge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The highest sequence number in the batch; the ack echoes it.
    pub upto: u64,
    /// The events, oldest first.
    pub events: Vec<TelemetryEvent>,
}

/// The durable queue of telemetry for central.
#[derive(Debug)]
pub struct Outbox {
    conn: Mutex<Connection>,
}

impl Outbox {
    /// Open or create the outbox database.
    pub fn open(path: &Path) -> Result<Self, OutboxError> {
        let mut conn = Connection::open(path).map_err(sql("open"))?;
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
            .map_err(sql("set WAL"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql("set synchronous"))?;
        conn.pragma_update(None, "journal_size_limit", 16 * 1024 * 1024)
            .map_err(sql("set journal_size_limit"))?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sql("read schema version"))?;
        let version = usize::try_from(version).unwrap_or(usize::MAX);
        if version > MIGRATIONS.len() {
            return Err(OutboxError::NewerSchema {
                found: version,
                supported: MIGRATIONS.len(),
            });
        }
        let tx = conn.transaction().map_err(sql("begin migration"))?;
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(version) {
            tx.execute_batch(migration).map_err(sql("migrate"))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(sql("record schema version"))?;
        }
        tx.commit().map_err(sql("commit migration"))?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queue events durably; an event whose id is already queued is skipped. Returns how
    /// many were new.
    pub fn push(&self, events: &[TelemetryEvent]) -> Result<usize, OutboxError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(sql("begin push"))?;
        let mut added = 0;
        {
            let mut insert = tx
                .prepare_cached("INSERT OR IGNORE INTO outbox (event_id, event) VALUES (?1, ?2)")
                .map_err(sql("prepare push"))?;
            for event in events {
                // TelemetryEvent is plain data: serializing it cannot fail.
                let json = serde_json::to_string(event).expect("telemetry events serialize");
                added += insert
                    .execute(params![&event.id[..], json])
                    .map_err(sql("push"))?;
            }
        }
        tx.commit().map_err(sql("commit push"))?;
        Ok(added)
    }

    /// The oldest `max` events, or `None` when the outbox is empty.
    pub fn next_batch(&self, max: usize) -> Result<Option<Batch>, OutboxError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT seq, event FROM outbox ORDER BY seq LIMIT ?1")
            .map_err(sql("prepare batch"))?;
        let rows = stmt
            .query_map([max as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(sql("read batch"))?;
        let mut upto = 0;
        let mut events = Vec::new();
        for row in rows {
            let (seq, json) = row.map_err(sql("read batch"))?;
            let event = serde_json::from_str(&json).map_err(|e| OutboxError::Corrupt {
                seq,
                reason: e.to_string(),
            })?;
            upto = seq as u64;
            events.push(event);
        }
        Ok((!events.is_empty()).then_some(Batch { upto, events }))
    }

    /// Central acknowledged everything up to `upto`: drop it.
    pub fn acknowledge(&self, upto: u64) -> Result<usize, OutboxError> {
        self.conn()
            .execute("DELETE FROM outbox WHERE seq <= ?1", [upto as i64])
            .map_err(sql("acknowledge"))
    }

    /// Events waiting.
    pub fn pending(&self) -> Result<u64, OutboxError> {
        self.conn()
            .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get::<_, i64>(0))
            .optional()
            .map_err(sql("count"))
            .map(|n| n.unwrap_or(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use taplink_sync_proto::wire::{Heartbeat, TelemetryKind};

    fn event(n: u8) -> TelemetryEvent {
        TelemetryEvent {
            id: [n; 16],
            kiosk: None,
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

    #[test]
    fn events_leave_only_when_acknowledged_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite");
        let outbox = Outbox::open(&path).unwrap();
        assert_eq!(outbox.push(&[event(1), event(2), event(3)]).unwrap(), 3);
        assert_eq!(outbox.push(&[event(2)]).unwrap(), 0, "same id queued once");
        let batch = outbox.next_batch(2).unwrap().unwrap();
        assert_eq!(batch.events, vec![event(1), event(2)]);
        // Not acknowledged: a restart sends the same batch again.
        drop(outbox);
        let outbox = Outbox::open(&path).unwrap();
        assert_eq!(outbox.next_batch(2).unwrap().unwrap(), batch);
        assert_eq!(outbox.acknowledge(batch.upto).unwrap(), 2);
        assert_eq!(
            outbox.next_batch(10).unwrap().unwrap().events,
            vec![event(3)]
        );
        assert_eq!(outbox.pending().unwrap(), 1);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite");
        drop(Outbox::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(matches!(
            Outbox::open(&path),
            Err(OutboxError::NewerSchema { found: 99, .. })
        ));
    }
}
