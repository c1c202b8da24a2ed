//! The telemetry outbox: kiosk and hub events wait here, durably, until central has
//! acknowledged them. Central stores events idempotently by id, so a batch resent after a
//! lost acknowledgement is harmless; an event leaves the outbox only after its ack.
//!
//! This is `taplink_sync_io::outbox` on the `outbox` table of the hub's [`Store`]
//! (`synchronous=FULL`: accepting an event from a kiosk is an acknowledgement), bounded to
//! [`CAPACITY`] events so that a hub cut off from central for weeks does not fill its disk.

use taplink_sync_io::outbox::{Outbox, Pushed};
use taplink_sync_proto::wire::TelemetryEvent;

use super::{Store, StoreError};

/// The most events the outbox keeps; beyond it the oldest heartbeats go first, then the
/// oldest events (about 300 bytes each: a few hundred MB at most).
pub const CAPACITY: u64 = 1_000_000;

const OUTBOX: Outbox = Outbox::new("outbox", CAPACITY);

/// A batch taken from the outbox: send it, and on its ack call [`Store::acknowledge`].
pub type Batch = taplink_sync_io::outbox::Batch<TelemetryEvent>;

impl Store {
    /// Queue events durably; an event whose id is already queued is skipped. Returns how
    /// many were new. Beyond [`CAPACITY`] the oldest are dropped, with a warning.
    pub fn push(&self, events: &[TelemetryEvent]) -> Result<usize, StoreError> {
        let Pushed { added, dropped } = OUTBOX.push(&mut self.conn(), events)?;
        if dropped > 0 {
            tracing::warn!(dropped, "telemetry outbox full; dropped the oldest events");
        }
        Ok(added)
    }

    /// The oldest `max` events, or `None` when the outbox is empty.
    pub fn next_batch(&self, max: usize) -> Result<Option<Batch>, StoreError> {
        Ok(OUTBOX.next_batch(&self.conn(), max)?)
    }

    /// Central acknowledged everything up to `upto`: drop it.
    pub fn acknowledge(&self, upto: u64) -> Result<usize, StoreError> {
        Ok(OUTBOX.acknowledge(&self.conn(), upto)?)
    }

    /// Events waiting.
    pub fn pending(&self) -> Result<u64, StoreError> {
        Ok(OUTBOX.pending(&self.conn())?)
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
