//! A durable, bounded outbox: entries wait in a table of the node's own database until the
//! receiver has acknowledged them. The hub's telemetry for central (`hub.sqlite`, table
//! `outbox`) and the kiosk's events for its hub (`kiosk.sqlite`, table `events`) are both
//! an [`Outbox`].
//!
//! - **Durable before acknowledged.** [`Outbox::push`] commits (an `IMMEDIATE` transaction
//!   on a connection opened by [`crate::sqlite::open`], so `synchronous=FULL`) before it
//!   returns: a caller may acknowledge entries to whoever sent them as soon as it has.
//! - **Idempotent.** Entries are unique by a 16-byte id; pushing one again is a no-op, and
//!   receivers store by id, so a batch resent after a lost acknowledgement is harmless.
//! - **Oldest first, removed on acknowledgement.** [`Outbox::next_batch`] reads the oldest
//!   entries; [`Outbox::acknowledge`] removes everything up to the batch's `upto`. Sequence
//!   numbers are `AUTOINCREMENT` (never reused), so entries pushed after the batch was
//!   taken survive its acknowledgement.
//! - **Bounded.** Beyond its capacity, a push drops the oldest *expendable* entries first
//!   (those a later entry supersedes, e.g. heartbeats: [`Entry::expendable`]), then the
//!   oldest of the rest, in the same transaction, and reports how many it dropped
//!   ([`Pushed::dropped`]) for the caller to log and count.
//!
//! **Why the store owns the table.** The outbox is a table inside the store's database,
//! created by the store's own migrations, and every method takes the store's connection:
//! the store keeps its one connection and one lock, and can touch the outbox in its own
//! transactions (the kiosk empties its buffer in the same transaction that forgets its
//! credentials). The table must have this shape (the name is the store's):
//!
//! ```sql
//! CREATE TABLE <table> (
//!     seq INTEGER PRIMARY KEY AUTOINCREMENT,
//!     event_id BLOB NOT NULL UNIQUE,
//!     expendable INTEGER NOT NULL DEFAULT 0,
//!     event TEXT NOT NULL
//! );
//! ```
//!
//! Entries are stored as JSON (readable with the `sqlite3` shell).

use rusqlite::{Connection, TransactionBehavior, params};
use serde::Serialize;
use serde::de::DeserializeOwned;
use taplink_sync_proto::wire::{TelemetryEvent, TelemetryKind};

/// Something an [`Outbox`] holds.
pub trait Entry: Serialize + DeserializeOwned {
    /// The entry's unique id; pushing an id already queued is a no-op.
    fn id(&self) -> [u8; 16];
    /// Whether a later entry supersedes this one (a heartbeat), so that a full outbox
    /// drops it before any entry that is not.
    fn expendable(&self) -> bool {
        false
    }
}

impl Entry for TelemetryEvent {
    fn id(&self) -> [u8; 16] {
        self.id
    }

    fn expendable(&self) -> bool {
        matches!(self.kind, TelemetryKind::Heartbeat(_))
    }
}

/// Why an outbox operation failed. Nothing was changed by the failed call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// SQLite failed.
    #[error("outbox {table}: {action}: {source}")]
    Sqlite {
        /// The outbox's table.
        table: &'static str,
        /// What was being done.
        action: &'static str,
        /// SQLite's report.
        #[source]
        source: rusqlite::Error,
    },
    /// An entry could not be encoded as JSON.
    #[error("outbox {table}: cannot encode an entry: {source}")]
    Encode {
        /// The outbox's table.
        table: &'static str,
        /// serde_json's report.
        #[source]
        source: serde_json::Error,
    },
    /// A stored entry no longer decodes (never expected; the row is kept for inspection).
    #[error("outbox {table}: entry {seq} is corrupt: {source}")]
    Corrupt {
        /// The outbox's table.
        table: &'static str,
        /// The entry's sequence number.
        seq: u64,
        /// serde_json's report.
        #[source]
        source: serde_json::Error,
    },
}

/// Entries taken from an outbox: send them, and on the receiver's acknowledgement call
/// [`Outbox::acknowledge`] with `upto`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch<T> {
    /// The highest sequence number in the batch; the acknowledgement names it.
    pub upto: u64,
    /// The entries, oldest first.
    pub events: Vec<T>,
}

/// What [`Outbox::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// Entries that were new (not already queued by id).
    pub added: usize,
    /// Entries dropped because the outbox was over its capacity.
    pub dropped: u64,
}

/// An outbox in one table of a store's database; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outbox {
    table: &'static str,
    capacity: u64,
}

impl Outbox {
    /// The outbox in `table`, holding at most `capacity` entries.
    ///
    /// Panics unless `table` is a plain identifier (ASCII letters, digits and `_`): it is
    /// written into SQL. Used in a `const`, a bad name fails the build.
    pub const fn new(table: &'static str, capacity: u64) -> Outbox {
        let bytes = table.as_bytes();
        assert!(!bytes.is_empty(), "an outbox table needs a name");
        let mut i = 0;
        while i < bytes.len() {
            assert!(
                bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_',
                "an outbox table name is a plain identifier"
            );
            i += 1;
        }
        Outbox { table, capacity }
    }

    /// The most entries this outbox keeps.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    fn sql(&self, action: &'static str) -> impl FnOnce(rusqlite::Error) -> OutboxError {
        let table = self.table;
        move |source| OutboxError::Sqlite {
            table,
            action,
            source,
        }
    }

    /// Queue `entries` durably (committed when this returns), then drop entries beyond the
    /// capacity. An entry whose id is already queued is skipped.
    pub fn push<T: Entry>(
        &self,
        conn: &mut Connection,
        entries: &[T],
    ) -> Result<Pushed, OutboxError> {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql("begin push"))?;
        let mut added = 0;
        {
            let mut insert = tx
                .prepare_cached(&format!(
                    "INSERT OR IGNORE INTO {} (event_id, expendable, event) VALUES (?1, ?2, ?3)",
                    self.table
                ))
                .map_err(self.sql("prepare push"))?;
            for entry in entries {
                let json = serde_json::to_string(entry).map_err(|source| OutboxError::Encode {
                    table: self.table,
                    source,
                })?;
                added += insert
                    .execute(params![&entry.id()[..], entry.expendable(), json])
                    .map_err(self.sql("push"))?;
            }
        }
        let dropped = self.trim(&tx, self.capacity)?;
        tx.commit().map_err(self.sql("commit push"))?;
        Ok(Pushed { added, dropped })
    }

    /// The oldest `max` entries, or `None` when the outbox is empty.
    pub fn next_batch<T: Entry>(
        &self,
        conn: &Connection,
        max: usize,
    ) -> Result<Option<Batch<T>>, OutboxError> {
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT seq, event FROM {} ORDER BY seq LIMIT ?1",
                self.table
            ))
            .map_err(self.sql("prepare batch"))?;
        let rows = stmt
            .query_map([i64::try_from(max).unwrap_or(i64::MAX)], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(self.sql("read batch"))?;
        let mut upto = 0;
        let mut events = Vec::new();
        for row in rows {
            let (seq, json) = row.map_err(self.sql("read batch"))?;
            // AUTOINCREMENT sequence numbers start at 1.
            let seq = u64::try_from(seq).unwrap_or(0);
            let event = serde_json::from_str(&json).map_err(|source| OutboxError::Corrupt {
                table: self.table,
                seq,
                source,
            })?;
            upto = seq;
            events.push(event);
        }
        Ok((!events.is_empty()).then_some(Batch { upto, events }))
    }

    /// The receiver stored everything up to `upto`: remove it. Returns how many entries
    /// left.
    pub fn acknowledge(&self, conn: &Connection, upto: u64) -> Result<usize, OutboxError> {
        conn.execute(
            &format!("DELETE FROM {} WHERE seq <= ?1", self.table),
            [i64::try_from(upto).unwrap_or(i64::MAX)],
        )
        .map_err(self.sql("acknowledge"))
    }

    /// Remove the entry with this id (one the receiver refuses for good, which would
    /// otherwise block the outbox forever). Returns whether it was queued.
    pub fn remove(&self, conn: &Connection, id: &[u8; 16]) -> Result<bool, OutboxError> {
        conn.execute(
            &format!("DELETE FROM {} WHERE event_id = ?1", self.table),
            [&id[..]],
        )
        .map(|n| n > 0)
        .map_err(self.sql("remove an entry"))
    }

    /// Remove every entry (nobody can receive them any more). Returns how many.
    pub fn clear(&self, conn: &Connection) -> Result<usize, OutboxError> {
        conn.execute(&format!("DELETE FROM {}", self.table), [])
            .map_err(self.sql("clear"))
    }

    /// Entries waiting.
    pub fn pending(&self, conn: &Connection) -> Result<u64, OutboxError> {
        conn.query_row(&format!("SELECT COUNT(*) FROM {}", self.table), [], |r| {
            r.get::<_, i64>(0)
        })
        .map(|n| u64::try_from(n).unwrap_or(0))
        .map_err(self.sql("count"))
    }

    /// Keep at most `max` entries, dropping the oldest expendable ones first and then the
    /// oldest of the rest. Returns how many were dropped. [`push`](Self::push) calls it
    /// with the capacity; call it inside a transaction to make it atomic with other work.
    pub fn trim(&self, conn: &Connection, max: u64) -> Result<u64, OutboxError> {
        let pending = self.pending(conn)?;
        let Some(excess) = pending.checked_sub(max).filter(|e| *e > 0) else {
            return Ok(0);
        };
        let excess = i64::try_from(excess).unwrap_or(i64::MAX);
        let expendable = conn
            .execute(
                &format!(
                    "DELETE FROM {0} WHERE seq IN
                       (SELECT seq FROM {0} WHERE expendable ORDER BY seq LIMIT ?1)",
                    self.table
                ),
                [excess],
            )
            .map_err(self.sql("drop expendable entries"))?;
        let rest = excess - i64::try_from(expendable).unwrap_or(excess);
        let others = if rest > 0 {
            conn.execute(
                &format!(
                    "DELETE FROM {0} WHERE seq IN (SELECT seq FROM {0} ORDER BY seq LIMIT ?1)",
                    self.table
                ),
                [rest],
            )
            .map_err(self.sql("drop the oldest entries"))?
        } else {
            0
        };
        Ok((expendable + others) as u64)
    }
}
