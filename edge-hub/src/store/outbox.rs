//! The telemetry outbox: kiosk and hub events wait here, durably, until central has
//! acknowledged them. Central stores events idempotently by id, so a batch resent after a
//! lost acknowledgement is harmless; an event leaves the outbox only after its ack.
//!
//! The table lives in the hub's [`Store`] (`synchronous=FULL`: accepting an event from a
//! kiosk is an acknowledgement).

use rusqlite::{OptionalExtension, params};
use taplink_sync_proto::wire::TelemetryEvent;

use super::{Store, StoreError, sql};

/// A batch taken from the outbox: send it, and on its ack call [`Store::acknowledge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The highest sequence number in the batch; the ack echoes it.
    pub upto: u64,
    /// The events, oldest first.
    pub events: Vec<TelemetryEvent>,
}

impl Store {
    /// Queue events durably; an event whose id is already queued is skipped. Returns how
    /// many were new.
    pub fn push(&self, events: &[TelemetryEvent]) -> Result<usize, StoreError> {
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
    pub fn next_batch(&self, max: usize) -> Result<Option<Batch>, StoreError> {
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
            let event = serde_json::from_str(&json).map_err(|e| StoreError::Corrupt {
                row: format!("outbox seq {seq}"),
                reason: e.to_string(),
            })?;
            upto = seq as u64;
            events.push(event);
        }
        Ok((!events.is_empty()).then_some(Batch { upto, events }))
    }

    /// Central acknowledged everything up to `upto`: drop it.
    pub fn acknowledge(&self, upto: u64) -> Result<usize, StoreError> {
        self.conn()
            .execute("DELETE FROM outbox WHERE seq <= ?1", [upto as i64])
            .map_err(sql("acknowledge"))
    }

    /// Events waiting.
    pub fn pending(&self) -> Result<u64, StoreError> {
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
        let path = dir.path().join(super::super::STORE_FILE);
        let outbox = Store::open(&path).unwrap();
        assert_eq!(outbox.push(&[event(1), event(2), event(3)]).unwrap(), 3);
        assert_eq!(outbox.push(&[event(2)]).unwrap(), 0, "same id queued once");
        let batch = outbox.next_batch(2).unwrap().unwrap();
        assert_eq!(batch.events, vec![event(1), event(2)]);
        // Not acknowledged: a restart sends the same batch again.
        drop(outbox);
        let outbox = Store::open(&path).unwrap();
        assert_eq!(outbox.next_batch(2).unwrap().unwrap(), batch);
        assert_eq!(outbox.acknowledge(batch.upto).unwrap(), 2);
        assert_eq!(
            outbox.next_batch(10).unwrap().unwrap().events,
            vec![event(3)]
        );
        assert_eq!(outbox.pending().unwrap(), 1);
    }
}
