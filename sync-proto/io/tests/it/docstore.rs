//! Tests of the document store: round trips, appends, compaction, crashes, corruption,
//! schema versions, and a property test against an in-memory replica.

use std::path::{Path, PathBuf};

use automerge::{AutoCommit, ChangeHash, ROOT, ReadDoc as _};
use proptest::prelude::*;
use taplink_sync_io::docstore::{CompactionPolicy, DocDb, DocDbError, StoredDataError};
use taplink_sync_io::sqlite::OpenError;
use taplink_sync_proto::doc::{add_kiosk, load_venue, new_venue_doc, rename_kiosk};
use taplink_sync_proto::ids::{KioskId, VenueId};
use taplink_sync_proto::wire::DocId;

fn venue(n: u8) -> DocId {
    DocId::Venue(VenueId::from_bytes([n; 16]))
}

fn kiosk(n: u8) -> KioskId {
    KioskId::from_bytes([n; 16])
}

/// A venue document with `kiosks` kiosks, each added in its own change.
fn venue_doc(kiosks: u8) -> AutoCommit {
    let mut am = new_venue_doc("Main Street", "Europe/Berlin").unwrap();
    for k in 0..kiosks {
        add_kiosk(&mut am, kiosk(k), &format!("kiosk {k}")).unwrap();
        am.commit();
    }
    am
}

/// Renames kiosk `k` and commits: one change.
fn rename(am: &mut AutoCommit, k: u8, name: &str) {
    rename_kiosk(am, kiosk(k), name).unwrap();
    am.commit();
}

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("docs.sqlite")
}

fn sorted_heads(am: &mut AutoCommit) -> Vec<ChangeHash> {
    let mut heads = am.get_heads();
    heads.sort_unstable();
    heads
}

/// Asserts that two replicas have the same heads and the same content.
fn assert_same(a: &mut AutoCommit, b: &mut AutoCommit) {
    assert_eq!(sorted_heads(a), sorted_heads(b), "heads differ");
    assert_eq!(
        a.hydrate(&ROOT, None).unwrap(),
        b.hydrate(&ROOT, None).unwrap(),
        "content differs"
    );
}

fn load(db: &DocDb, doc: DocId) -> AutoCommit {
    db.load(doc).unwrap().expect("document is stored")
}

#[test]
fn doc_db_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<DocDb>();
}

#[test]
fn create_then_load_round_trips_heads_and_content() {
    let dir = tempfile::tempdir().unwrap();
    let db = DocDb::open(&db_path(&dir)).unwrap();
    let mut am = venue_doc(3);
    db.create(venue(1), &mut am).unwrap();
    let mut loaded = load(&db, venue(1));
    assert_same(&mut am, &mut loaded);
    assert_eq!(load_venue(&loaded).unwrap().kiosks.len(), 3);
    let stats = db.stats(venue(1)).unwrap().unwrap();
    assert_eq!(stats.snapshot_changes, 4);
    assert_eq!(stats.chunks, 0);
    assert_eq!(db.list().unwrap(), vec![venue(1)]);
}

#[test]
fn create_refuses_an_existing_document() {
    let dir = tempfile::tempdir().unwrap();
    let db = DocDb::open(&db_path(&dir)).unwrap();
    let mut am = venue_doc(1);
    db.create(venue(1), &mut am).unwrap();
    let err = db.create(venue(1), &mut venue_doc(2)).unwrap_err();
    assert!(
        matches!(err, DocDbError::Exists(d) if d == venue(1)),
        "{err}"
    );
    // The first document is untouched.
    assert_same(&mut am, &mut load(&db, venue(1)));
}

#[test]
fn an_empty_document_round_trips() {
    // A hub stores the document it starts syncing into before the first change arrives.
    let dir = tempfile::tempdir().unwrap();
    let db = DocDb::open(&db_path(&dir)).unwrap();
    let mut empty = AutoCommit::new();
    db.create(DocId::Org, &mut empty).unwrap();
    let mut loaded = load(&db, DocId::Org);
    assert!(loaded.get_heads().is_empty());
    // Changes synced in later are appended as usual.
    let mut source = venue_doc(1);
    loaded.merge(&mut source).unwrap();
    assert!(db.append(DocId::Org, &mut loaded).unwrap() > 0);
    assert_same(&mut source, &mut load(&db, DocId::Org));
}

#[test]
fn unknown_document_loads_as_none_and_appends_as_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let db = DocDb::open(&db_path(&dir)).unwrap();
    assert!(db.load(venue(9)).unwrap().is_none());
    assert!(db.stats(venue(9)).unwrap().is_none());
    assert!(!db.compaction_due(venue(9)).unwrap());
    let err = db.append(venue(9), &mut venue_doc(1)).unwrap_err();
    assert!(
        matches!(err, DocDbError::NotFound(d) if d == venue(9)),
        "{err}"
    );
    let err = db.compact(venue(9), &mut venue_doc(1)).unwrap_err();
    assert!(matches!(err, DocDbError::NotFound(_)), "{err}");
}

#[test]
fn many_small_appends_reload_equal() {
    let dir = tempfile::tempdir().unwrap();
    let db = DocDb::open(&db_path(&dir)).unwrap();
    let mut am = venue_doc(4);
    db.create(venue(1), &mut am).unwrap();
    for i in 0..60u8 {
        rename(&mut am, i % 4, &format!("name {i}"));
        let written = db.append(venue(1), &mut am).unwrap();
        // One rename is one small change, whatever the history before it.
        assert!(
            written > 0 && written < 300,
            "append {i} wrote {written} bytes"
        );
    }
    let stats = db.stats(venue(1)).unwrap().unwrap();
    assert_eq!(stats.chunks, 60);
    assert_same(&mut am, &mut load(&db, venue(1)));
}

#[test]
fn append_without_changes_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let db = DocDb::open(&db_path(&dir)).unwrap();
    let mut am = venue_doc(1);
    db.create(venue(1), &mut am).unwrap();
    assert_eq!(db.append(venue(1), &mut am).unwrap(), 0);
    rename(&mut am, 0, "renamed");
    assert!(db.append(venue(1), &mut am).unwrap() > 0);
    assert_eq!(db.append(venue(1), &mut am).unwrap(), 0);
    // A freshly loaded copy has nothing new either.
    assert_eq!(db.append(venue(1), &mut load(&db, venue(1))).unwrap(), 0);
    assert_eq!(db.stats(venue(1)).unwrap().unwrap().chunks, 1);
}

#[test]
fn append_after_load_stores_only_the_new_change() {
    let dir = tempfile::tempdir().unwrap();
    let db = DocDb::open(&db_path(&dir)).unwrap();
    let mut am = venue_doc(20);
    for i in 0..200u16 {
        rename(&mut am, (i % 20) as u8, &format!("name {i}"));
    }
    db.create(venue(1), &mut am).unwrap();

    let mut loaded = load(&db, venue(1));
    let before = loaded.get_heads();
    rename(&mut loaded, 3, "after load");
    let expected = loaded.save_after(&before).len();
    let written = db.append(venue(1), &mut loaded).unwrap();
    assert_eq!(
        written, expected,
        "append wrote more than the one new change"
    );
    // automerge's own save_incremental() would have written the whole history here.
    let whole = loaded.fork().save_incremental().len();
    eprintln!("append after load: {written} B; save_incremental after load: {whole} B");
    assert!(written * 20 < whole);
    assert_same(&mut loaded, &mut load(&db, venue(1)));
}

#[test]
fn append_after_a_merge_stores_only_the_merged_changes() {
    let dir = tempfile::tempdir().unwrap();
    let db = DocDb::open(&db_path(&dir)).unwrap();
    let mut central = venue_doc(10);
    for i in 0..300u16 {
        rename(&mut central, (i % 10) as u8, &format!("name {i}"));
    }
    db.create(venue(1), &mut central).unwrap();
    let snapshot = db.stats(venue(1)).unwrap().unwrap().snapshot_bytes;

    let mut hub = load(&db, venue(1));
    let mut other = central.fork();
    for i in 0..5u8 {
        rename(&mut other, i, &format!("from the other replica {i}"));
    }
    hub.merge(&mut other).unwrap();
    let written = db.append(venue(1), &mut hub).unwrap();
    let incremental = hub.fork().save_incremental().len();
    eprintln!(
        "load + merge of 5 changes into a {}-change doc: snapshot {snapshot} B, append {written} B, \
         save_incremental {incremental} B ({:.1}x the snapshot)",
        hub.get_changes(&[]).len(),
        incremental as f64 / snapshot as f64
    );
    assert_eq!(written, hub.save_after(&central.get_heads()).len());
    assert_same(&mut hub, &mut load(&db, venue(1)));
}

#[test]
fn compaction_replaces_chunks_and_reload_is_equal() {
    let dir = tempfile::tempdir().unwrap();
    let db = DocDb::open(&db_path(&dir)).unwrap();
    let mut am = venue_doc(3);
    db.create(venue(1), &mut am).unwrap();
    for i in 0..30u8 {
        rename(&mut am, i % 3, &format!("name {i}"));
        db.append(venue(1), &mut am).unwrap();
    }
    let before = db.stats(venue(1)).unwrap().unwrap();
    let stats = db.compact(venue(1), &mut am).unwrap();
    assert_eq!(stats.chunks_removed, 30);
    assert_eq!(stats.chunk_bytes_removed, before.chunk_bytes);
    assert_eq!(stats.old_snapshot_bytes, before.snapshot_bytes);
    let after = db.stats(venue(1)).unwrap().unwrap();
    assert_eq!((after.chunks, after.chunk_bytes), (0, 0));
    assert_eq!(after.snapshot_bytes, stats.new_snapshot_bytes);
    assert_eq!(after.snapshot_changes, 34);
    assert_same(&mut am, &mut load(&db, venue(1)));
    // Appends continue after a compaction and number from 1 again.
    rename(&mut am, 0, "after compaction");
    db.append(venue(1), &mut am).unwrap();
    assert_same(&mut am, &mut load(&db, venue(1)));
}

#[test]
fn compaction_refuses_a_replica_that_lacks_stored_changes() {
    let dir = tempfile::tempdir().unwrap();
    let db = DocDb::open(&db_path(&dir)).unwrap();
    let mut am = venue_doc(2);
    db.create(venue(1), &mut am).unwrap();
    let mut stale = am.fork();
    rename(&mut am, 0, "stored");
    db.append(venue(1), &mut am).unwrap();
    rename(&mut stale, 1, "stale edit");
    let err = db.compact(venue(1), &mut stale).unwrap_err();
    assert!(
        matches!(err, DocDbError::MissingChanges { doc, missing: 1 } if doc == venue(1)),
        "{err}"
    );
    // Nothing was lost, and appending the stale replica keeps both sides.
    db.append(venue(1), &mut stale).unwrap();
    let mut loaded = load(&db, venue(1));
    am.merge(&mut stale).unwrap();
    assert_same(&mut am, &mut loaded);
}

#[test]
fn compaction_due_follows_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let policy = CompactionPolicy {
        max_chunks: 5,
        min_chunk_bytes: 64 * 1024,
    };
    let db = DocDb::open_with(&db_path(&dir), policy).unwrap();
    assert_eq!(db.policy(), policy);
    let mut am = venue_doc(2);
    db.create(venue(1), &mut am).unwrap();
    for i in 0..5u8 {
        rename(&mut am, i % 2, &format!("name {i}"));
        db.append(venue(1), &mut am).unwrap();
        assert!(
            !db.compaction_due(venue(1)).unwrap(),
            "due after {} chunks",
            i + 1
        );
        assert!(db.compact_if_due(venue(1), &mut am).unwrap().is_none());
    }
    rename(&mut am, 0, "sixth");
    db.append(venue(1), &mut am).unwrap();
    assert!(db.compaction_due(venue(1)).unwrap());
    let stats = db.compact_if_due(venue(1), &mut am).unwrap().unwrap();
    assert_eq!(stats.chunks_removed, 6);
    assert!(!db.compaction_due(venue(1)).unwrap());

    // The byte rule: one large chunk beyond max(snapshot, floor) is due on its own.
    let small_floor = DocDb::open_with(
        &dir.path().join("other.sqlite"),
        CompactionPolicy {
            max_chunks: 1000,
            min_chunk_bytes: 100,
        },
    )
    .unwrap();
    let mut am = venue_doc(1);
    small_floor.create(venue(2), &mut am).unwrap();
    for i in 0..50u8 {
        rename(
            &mut am,
            0,
            &format!("a longer name for kiosk zero, take {i}"),
        );
    }
    small_floor.append(venue(2), &mut am).unwrap();
    let s = small_floor.stats(venue(2)).unwrap().unwrap();
    assert!(s.chunk_bytes > s.snapshot_bytes, "{s:?}");
    assert!(small_floor.compaction_due(venue(2)).unwrap());
}

#[test]
fn dropping_the_store_between_append_and_compaction_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut am = venue_doc(3);
    {
        let db = DocDb::open(&path).unwrap();
        db.create(venue(1), &mut am).unwrap();
        for i in 0..10u8 {
            rename(&mut am, i % 3, &format!("name {i}"));
            db.append(venue(1), &mut am).unwrap();
        }
        // The process dies here: no compaction, no orderly close.
        std::mem::forget(db);
    }
    let db = DocDb::open(&path).unwrap();
    assert_eq!(db.stats(venue(1)).unwrap().unwrap().chunks, 10);
    assert_same(&mut am, &mut load(&db, venue(1)));
}

#[test]
fn reopening_from_disk_sees_every_document_and_peer_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut a = venue_doc(2);
    let mut org = AutoCommit::new();
    {
        let db = DocDb::open(&path).unwrap();
        db.create(venue(1), &mut a).unwrap();
        db.create(DocId::Org, &mut org).unwrap();
        rename(&mut a, 1, "renamed");
        db.append(venue(1), &mut a).unwrap();
        db.save_peer_state("central", venue(1), b"state-bytes")
            .unwrap();
    }
    let db = DocDb::open(&path).unwrap();
    assert_eq!(db.list().unwrap(), vec![DocId::Org, venue(1)]);
    assert_same(&mut a, &mut load(&db, venue(1)));
    assert_eq!(
        db.peer_states("central")
            .unwrap()
            .get(&venue(1))
            .map(Vec::as_slice),
        Some(&b"state-bytes"[..])
    );
}

#[test]
fn peer_states_are_saved_replaced_and_kept_per_peer() {
    let dir = tempfile::tempdir().unwrap();
    let db = DocDb::open(&db_path(&dir)).unwrap();
    assert!(db.peer_states("central").unwrap().is_empty());

    // A real sync state: one round of automerge sync between two replicas.
    let mut ours = venue_doc(1);
    let mut theirs = ours.fork();
    rename(&mut theirs, 0, "theirs");
    let mut state = automerge::sync::State::new();
    let mut their_state = automerge::sync::State::new();
    use automerge::sync::SyncDoc as _;
    loop {
        let a = ours.sync().generate_sync_message(&mut state);
        if let Some(m) = &a {
            theirs
                .sync()
                .receive_sync_message(&mut their_state, m.clone())
                .unwrap();
        }
        let b = theirs.sync().generate_sync_message(&mut their_state);
        if let Some(m) = &b {
            ours.sync()
                .receive_sync_message(&mut state, m.clone())
                .unwrap();
        }
        if a.is_none() && b.is_none() {
            break;
        }
    }
    let encoded = state.encode();
    db.save_peer_state("hub-a", venue(1), &encoded).unwrap();
    db.save_peer_state("hub-a", DocId::Org, b"org state")
        .unwrap();
    db.save_peer_state("hub-b", venue(1), b"b's state").unwrap();

    let a = db.peer_states("hub-a").unwrap();
    assert_eq!(a.len(), 2);
    let decoded = automerge::sync::State::decode(&a[&venue(1)]).unwrap();
    assert_eq!(decoded.shared_heads, state.shared_heads);
    assert_eq!(a[&DocId::Org], b"org state");

    db.save_peer_state("hub-a", DocId::Org, b"newer").unwrap();
    assert_eq!(db.peer_states("hub-a").unwrap()[&DocId::Org], b"newer");
    assert_eq!(db.peer_states("hub-b").unwrap().len(), 1);
}

/// Opens a second, raw connection to the store's file, as a corrupting agent would.
fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

#[test]
fn a_corrupt_chunk_fails_the_load_naming_doc_and_seq() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let db = DocDb::open(&path).unwrap();
    let mut am = venue_doc(2);
    db.create(venue(1), &mut am).unwrap();
    for i in 0..3u8 {
        rename(&mut am, i % 2, &format!("name {i}"));
        db.append(venue(1), &mut am).unwrap();
    }
    raw(&path)
        .execute(
            "UPDATE doc_changes SET data = ?1 WHERE doc = ?2 AND seq = 2",
            rusqlite::params![
                b"garbage, not an automerge change".to_vec(),
                venue(1).to_string()
            ],
        )
        .unwrap();
    let err = db.load(venue(1)).unwrap_err();
    let DocDbError::Load { doc, seq, source } = &err else {
        panic!("expected a load error, got {err}");
    };
    assert_eq!((*doc, *seq), (venue(1), Some(2)));
    assert!(
        matches!(source, StoredDataError::Framing { offset: 0, .. }),
        "{source}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&venue(1).to_string()) && message.contains("seq 2"),
        "{message}"
    );
}

#[test]
fn a_flipped_bit_in_a_chunk_fails_the_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let db = DocDb::open(&path).unwrap();
    let mut am = venue_doc(1);
    db.create(venue(1), &mut am).unwrap();
    rename(&mut am, 0, "a name long enough to flip a bit in");
    db.append(venue(1), &mut am).unwrap();
    let conn = raw(&path);
    let mut data: Vec<u8> = conn
        .query_row("SELECT data FROM doc_changes WHERE seq = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    // The last byte is inside the change's operation columns, past the header.
    let last = data.len() - 1;
    data[last] ^= 0x01;
    conn.execute("UPDATE doc_changes SET data = ?1 WHERE seq = 1", [data])
        .unwrap();
    let err = db.load(venue(1)).unwrap_err();
    assert!(
        matches!(
            err,
            DocDbError::Load {
                seq: Some(1),
                source: StoredDataError::Checksum { offset: 0 },
                ..
            }
        ),
        "expected a checksum error at seq 1, got {err}"
    );
}

#[test]
fn a_lost_chunk_fails_the_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let db = DocDb::open(&path).unwrap();
    let mut am = venue_doc(1);
    db.create(venue(1), &mut am).unwrap();
    for i in 0..3u8 {
        rename(&mut am, 0, &format!("name {i}"));
        db.append(venue(1), &mut am).unwrap();
    }
    raw(&path)
        .execute("DELETE FROM doc_changes WHERE seq = 2", [])
        .unwrap();
    let err = db.load(venue(1)).unwrap_err();
    assert!(
        matches!(
            err,
            DocDbError::Load {
                seq: None,
                source: StoredDataError::Incomplete(_),
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_corrupt_snapshot_fails_the_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let db = DocDb::open(&path).unwrap();
    db.create(venue(1), &mut venue_doc(1)).unwrap();
    raw(&path)
        .execute("UPDATE docs SET snapshot = x'00010203'", [])
        .unwrap();
    let err = db.load(venue(1)).unwrap_err();
    assert!(
        matches!(
            err,
            DocDbError::Load {
                seq: None,
                source: StoredDataError::Snapshot(_),
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_bad_stored_doc_id_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let db = DocDb::open(&path).unwrap();
    db.save_peer_state("central", DocId::Org, b"s").unwrap();
    raw(&path)
        .execute("UPDATE peer_states SET doc = 'not-a-doc'", [])
        .unwrap();
    let err = db.peer_states("central").unwrap_err();
    assert!(
        matches!(&err, DocDbError::BadDocId(s) if s == "not-a-doc"),
        "{err}"
    );
}

#[test]
fn a_newer_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    drop(DocDb::open(&path).unwrap());
    raw(&path).pragma_update(None, "user_version", 99).unwrap();
    let err = DocDb::open(&path).unwrap_err();
    assert!(
        matches!(err, DocDbError::Open(OpenError::NewerSchema { found: 99, supported, .. }) if supported == taplink_sync_io::docstore::SCHEMA_VERSION),
        "{err}"
    );
    assert!(err.to_string().contains("99"));
}

#[test]
fn the_file_is_wal_with_full_sync_and_versioned() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let _db = DocDb::open(&path).unwrap();
    let conn = raw(&path);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, taplink_sync_io::docstore::SCHEMA_VERSION);
}

/// Builds a venue document with `renames` kiosk renames on top of 10 kiosks and reports
/// what storing and loading it costs. 20,000 changes is the size the brief asks about.
#[test]
fn sizes_of_a_venue_doc_with_many_changes() {
    const RENAMES: u32 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let db = DocDb::open(&db_path(&dir)).unwrap();
    let started = tokio::time::Instant::now();
    let mut am = venue_doc(10);
    for i in 0..RENAMES {
        rename(&mut am, (i % 10) as u8, &format!("kiosk name {i}"));
    }
    let built = started.elapsed();

    let started = tokio::time::Instant::now();
    db.create(venue(1), &mut am).unwrap();
    let created = started.elapsed();
    let stats = db.stats(venue(1)).unwrap().unwrap();

    let started = tokio::time::Instant::now();
    let mut loaded = load(&db, venue(1));
    let load_time = started.elapsed();
    assert_same(&mut am, &mut loaded);

    rename(&mut loaded, 0, "one more");
    let started = tokio::time::Instant::now();
    let appended = db.append(venue(1), &mut loaded).unwrap();
    let append_time = started.elapsed();
    let incremental = loaded.fork().save_incremental().len();

    eprintln!(
        "venue doc, {} changes: built in {built:?}; snapshot {} B (create {created:?}); \
         load {load_time:?}; one rename after load: append {appended} B in {append_time:?}, \
         save_incremental would write {incremental} B",
        stats.snapshot_changes, stats.snapshot_bytes
    );
    assert_eq!(stats.snapshot_changes, u64::from(RENAMES) + 11);
    assert!(appended < 300);
}

#[derive(Debug, Clone)]
enum Op {
    /// Rename kiosk `k` on the in-memory replica.
    Edit(u8, u16),
    /// Another replica renames kiosk `k`; the in-memory replica merges it.
    MergeRemote(u8, u16),
    Append,
    Compact,
    /// Drop and reopen the store.
    Reopen,
    /// A crash: the in-memory replica is replaced by what the store holds.
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..3, any::<u16>()).prop_map(|(k, n)| Op::Edit(k, n)),
        2 => (0u8..3, any::<u16>()).prop_map(|(k, n)| Op::MergeRemote(k, n)),
        4 => Just(Op::Append),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn store_always_reloads_to_the_replica(ops in proptest::collection::vec(op(), 1..25)) {
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(&dir);
        let mut db = DocDb::open(&path).unwrap();
        let mut am = venue_doc(3);
        let mut remote = am.fork();
        db.create(venue(1), &mut am).unwrap();
        // The heads of what the store holds, as the test tracks it.
        let mut persisted = am.get_heads();

        for op in ops {
            match op {
                Op::Edit(k, n) => rename(&mut am, k, &format!("local {n}")),
                Op::MergeRemote(k, n) => {
                    rename(&mut remote, k, &format!("remote {n}"));
                    am.merge(&mut remote).unwrap();
                }
                Op::Append => {
                    let expected = am.save_after(&persisted).len();
                    prop_assert_eq!(db.append(venue(1), &mut am).unwrap(), expected);
                    persisted = am.get_heads();
                }
                Op::Compact => {
                    db.compact(venue(1), &mut am).unwrap();
                    persisted = am.get_heads();
                    prop_assert_eq!(db.stats(venue(1)).unwrap().unwrap().chunks, 0);
                }
                Op::Reopen => {
                    drop(db);
                    db = DocDb::open(&path).unwrap();
                }
                Op::Crash => {
                    am = load(&db, venue(1));
                    let mut expected = persisted.clone();
                    expected.sort_unstable();
                    prop_assert_eq!(sorted_heads(&mut am), expected);
                }
            }
        }
        db.append(venue(1), &mut am).unwrap();
        let mut loaded = load(&db, venue(1));
        prop_assert_eq!(sorted_heads(&mut loaded), sorted_heads(&mut am));
        prop_assert_eq!(loaded.hydrate(&ROOT, None).unwrap(), am.hydrate(&ROOT, None).unwrap());
        // And once more after a compaction.
        db.compact(venue(1), &mut am).unwrap();
        let mut compacted = load(&db, venue(1));
        prop_assert_eq!(sorted_heads(&mut compacted), sorted_heads(&mut am));
    }
}
