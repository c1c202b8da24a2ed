//! The durable outbox the hub's telemetry and the kiosk's event buffer share.

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use taplink_sync_io::outbox::{Entry, Outbox, OutboxError, Pushed};
use taplink_sync_io::sqlite::{Options, open};

/// The table shape the outbox's module docs ask for.
const MIGRATIONS: &[&str] = &["CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id BLOB NOT NULL UNIQUE,
    expendable INTEGER NOT NULL DEFAULT 0,
    event TEXT NOT NULL
);"];

const EVENTS: Outbox = Outbox::new("events", 1_000);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Event {
    id: u8,
    heartbeat: bool,
}

impl Entry for Event {
    fn id(&self) -> [u8; 16] {
        [self.id; 16]
    }

    fn expendable(&self) -> bool {
        self.heartbeat
    }
}

fn heartbeat(n: u8) -> Event {
    Event {
        id: n,
        heartbeat: true,
    }
}

fn played(n: u8) -> Event {
    Event {
        id: n,
        heartbeat: false,
    }
}

fn db(dir: &tempfile::TempDir) -> Connection {
    open(
        &dir.path().join("db.sqlite"),
        MIGRATIONS,
        &Options::default(),
    )
    .unwrap()
}

fn all(conn: &Connection) -> Vec<Event> {
    EVENTS
        .next_batch(conn, 100)
        .unwrap()
        .map(|b| b.events)
        .unwrap_or_default()
}

#[test]
fn entries_leave_only_when_acknowledged_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = db(&dir);
    let pushed = EVENTS
        .push(&mut conn, &[heartbeat(1), played(2), heartbeat(3)])
        .unwrap();
    assert_eq!(
        pushed,
        Pushed {
            added: 3,
            dropped: 0
        }
    );
    assert_eq!(
        EVENTS.push(&mut conn, &[played(2)]).unwrap().added,
        0,
        "same id once"
    );
    let batch = EVENTS.next_batch::<Event>(&conn, 2).unwrap().unwrap();
    assert_eq!(batch.events, vec![heartbeat(1), played(2)]);
    // No acknowledgement (the answer was lost): a reopened database gives the same batch,
    // with the same ids, which the receiver deduplicates.
    drop(conn);
    let mut conn = db(&dir);
    assert_eq!(EVENTS.next_batch(&conn, 2).unwrap(), Some(batch.clone()));
    // An entry pushed after the batch was taken survives its acknowledgement.
    EVENTS.push(&mut conn, &[played(4)]).unwrap();
    assert_eq!(EVENTS.acknowledge(&conn, batch.upto).unwrap(), 2);
    assert_eq!(all(&conn), vec![heartbeat(3), played(4)]);
    assert_eq!(EVENTS.pending(&conn).unwrap(), 2);
    assert!(EVENTS.remove(&conn, &[3; 16]).unwrap());
    assert!(!EVENTS.remove(&conn, &[3; 16]).unwrap());
    assert_eq!(EVENTS.clear(&conn).unwrap(), 1);
    assert_eq!(EVENTS.next_batch::<Event>(&conn, 10).unwrap(), None);
}

#[test]
fn trimming_drops_the_oldest_heartbeats_before_any_proof_of_play() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = db(&dir);
    EVENTS
        .push(
            &mut conn,
            &[
                played(1),
                heartbeat(2),
                played(3),
                heartbeat(4),
                heartbeat(5),
            ],
        )
        .unwrap();
    assert_eq!(EVENTS.trim(&conn, 10).unwrap(), 0);
    assert_eq!(EVENTS.trim(&conn, 3).unwrap(), 2);
    assert_eq!(all(&conn), vec![played(1), played(3), heartbeat(5)]);
    assert_eq!(EVENTS.trim(&conn, 1).unwrap(), 2);
    assert_eq!(all(&conn), vec![played(3)]);
}

#[test]
fn a_full_outbox_drops_and_counts_in_the_push_that_overflows_it() {
    let small = Outbox::new("events", 3);
    let dir = tempfile::tempdir().unwrap();
    let mut conn = db(&dir);
    small
        .push(&mut conn, &[played(1), heartbeat(2), played(3)])
        .unwrap();
    let pushed = small.push(&mut conn, &[played(4), played(5)]).unwrap();
    assert_eq!(
        pushed,
        Pushed {
            added: 2,
            dropped: 2
        }
    );
    assert_eq!(all(&conn), vec![played(3), played(4), played(5)]);
    assert_eq!(small.capacity(), 3);
}

#[test]
fn a_push_is_committed_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = db(&dir);
    EVENTS.push(&mut conn, &[played(1)]).unwrap();
    // Another connection (another process) sees it at once: nothing is left uncommitted.
    let other = Connection::open(dir.path().join("db.sqlite")).unwrap();
    assert_eq!(EVENTS.pending(&other).unwrap(), 1);
}

#[test]
fn a_row_that_does_not_decode_is_reported_with_its_sequence_number() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = db(&dir);
    EVENTS.push(&mut conn, &[played(1)]).unwrap();
    conn.execute("UPDATE events SET event = 'not json'", [])
        .unwrap();
    let err = EVENTS.next_batch::<Event>(&conn, 10).unwrap_err();
    assert!(matches!(err, OutboxError::Corrupt { seq: 1, .. }), "{err}");
}
