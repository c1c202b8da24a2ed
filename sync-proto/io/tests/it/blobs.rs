//! Integration tests of the blob store: visibility, idempotence, limits, resumable downloads,
//! crash recovery and reconciliation of the index with the files on open.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use taplink_sync_io::blobs::{BlobError, BlobStore};
use taplink_sync_proto::ids::MediaHash;
use tempfile::TempDir;

fn store() -> (TempDir, BlobStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    (dir, store)
}

/// Deterministic, non-repeating test content.
fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

fn blob_path(dir: &Path, hash: &MediaHash) -> PathBuf {
    let hex = hash.to_string();
    dir.join("blobs").join(&hex[..2]).join(&hex)
}

fn partial_path(dir: &Path, hash: &MediaHash) -> PathBuf {
    dir.join("partial").join(hash.to_string())
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every file under `blobs/`, as (shard, name).
fn blob_files(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for shard in entries(&dir.join("blobs")) {
        for name in entries(&dir.join("blobs").join(&shard)) {
            files.push(name);
        }
    }
    files.sort();
    files
}

/// Download `data` into the store in chunks of the given sizes (the last chunk takes the rest).
fn download(store: &BlobStore, data: &[u8], chunk: usize) -> MediaHash {
    let hash = MediaHash::of(data);
    let mut p = store.partial(hash, data.len() as u64).unwrap();
    while (p.offset() as usize) < data.len() {
        let at = p.offset() as usize;
        let end = (at + chunk).min(data.len());
        p.write_chunk(at as u64, &data[at..end]).unwrap();
    }
    p.finish().unwrap()
}

#[test]
fn put_then_has_size_read_range_list_and_total_size() {
    let (_dir, store) = store();
    let a = content(1000, 1);
    let b = content(70_000, 2);
    let ha = store.put(&a).unwrap();
    let hb = store.put(&b).unwrap();
    assert_eq!(ha, MediaHash::of(&a));
    assert_eq!(hb, MediaHash::of(&b));
    assert!(store.has(&ha).unwrap() && store.has(&hb).unwrap());
    assert!(!store.has(&MediaHash::of(b"absent")).unwrap());
    assert_eq!(store.size(&hb).unwrap(), Some(70_000));
    assert_eq!(store.size(&MediaHash::of(b"absent")).unwrap(), None);

    assert_eq!(store.read_range(&ha, 0, usize::MAX).unwrap(), a);
    assert_eq!(
        store.read_range(&hb, 65_000, 100).unwrap(),
        &b[65_000..65_100]
    );
    // A read past the end is cut short; at the end it is empty; beyond it is an error.
    assert_eq!(store.read_range(&hb, 69_990, 100).unwrap(), &b[69_990..]);
    assert!(store.read_range(&hb, 70_000, 100).unwrap().is_empty());
    assert!(matches!(
        store.read_range(&hb, 70_001, 1),
        Err(BlobError::ReadBeyondEnd {
            offset: 70_001,
            size: 70_000,
            ..
        })
    ));
    assert!(matches!(
        store.read_range(&MediaHash::of(b"absent"), 0, 1),
        Err(BlobError::NotFound(h)) if h == MediaHash::of(b"absent")
    ));

    let mut expected = vec![(ha, 1000), (hb, 70_000)];
    expected.sort();
    assert_eq!(store.list().unwrap(), expected);
    assert_eq!(store.total_size().unwrap(), 71_000);
}

#[test]
fn put_is_idempotent() {
    let (dir, store) = store();
    let data = content(5000, 3);
    let first = store.put(&data).unwrap();
    let second = store.put(&data).unwrap();
    let (third, size) = store.put_reader(data.as_slice(), 10_000, None).unwrap();
    assert_eq!((first, second, third, size), (first, first, first, 5000));
    assert_eq!(store.list().unwrap(), vec![(first, 5000)]);
    assert_eq!(store.total_size().unwrap(), 5000);
    assert_eq!(blob_files(dir.path()), vec![first.to_string()]);
    assert!(entries(&dir.path().join("tmp")).is_empty());
}

#[test]
fn the_empty_blob_can_be_put_and_downloaded() {
    let (_dir, store) = store();
    let hash = store.put(&[]).unwrap();
    assert_eq!(hash, MediaHash::of(&[]));
    assert_eq!(store.read_range(&hash, 0, 10).unwrap(), Vec::<u8>::new());
    assert!(store.remove(&hash).unwrap());
    let p = store.partial(hash, 0).unwrap();
    assert_eq!(p.offset(), 0);
    assert_eq!(p.finish().unwrap(), hash);
    assert!(store.has(&hash).unwrap());
}

#[test]
fn put_reader_over_the_limit_is_refused_and_leaves_no_files() {
    let (dir, store) = store();
    let data = content(200_000, 4);
    match store.put_reader(data.as_slice(), 150_000, None) {
        Err(BlobError::TooLarge { size, max }) => {
            assert_eq!(max, 150_000);
            assert!(size > 150_000, "size {size}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(entries(&dir.path().join("tmp")).is_empty());
    assert!(blob_files(dir.path()).is_empty());
    assert!(store.list().unwrap().is_empty());
    // Exactly at the limit is fine.
    let (hash, size) = store
        .put_reader(data.as_slice(), data.len() as u64, None)
        .unwrap();
    assert_eq!((hash, size), (MediaHash::of(&data), 200_000));
}

#[test]
fn put_reader_with_the_wrong_expected_hash_stores_nothing() {
    let (dir, store) = store();
    let data = content(10_000, 5);
    let wrong = MediaHash::of(b"something else");
    match store.put_reader(data.as_slice(), u64::MAX, Some(wrong)) {
        Err(BlobError::HashMismatch { expected, actual }) => {
            assert_eq!((expected, actual), (wrong, MediaHash::of(&data)));
        }
        other => panic!("expected HashMismatch, got {other:?}"),
    }
    assert!(entries(&dir.path().join("tmp")).is_empty());
    assert!(blob_files(dir.path()).is_empty());
    assert!(!store.has(&MediaHash::of(&data)).unwrap());
    let right = MediaHash::of(&data);
    assert_eq!(
        store
            .put_reader(data.as_slice(), u64::MAX, Some(right))
            .unwrap(),
        (right, 10_000)
    );
}

#[test]
fn a_failing_reader_stores_nothing() {
    struct Failing(usize);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("connection reset"));
            }
            let n = self.0.min(buf.len());
            buf[..n].fill(9);
            self.0 -= n;
            Ok(n)
        }
    }
    let (dir, store) = store();
    assert!(matches!(
        store.put_reader(Failing(100_000), u64::MAX, None),
        Err(BlobError::Input { .. })
    ));
    assert!(entries(&dir.path().join("tmp")).is_empty());
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn open_file_gives_the_whole_blob_and_its_size() {
    let (_dir, store) = store();
    let data = content(3000, 6);
    let hash = store.put(&data).unwrap();
    let (mut file, size) = store.open_file(&hash).unwrap();
    let mut read = Vec::new();
    file.read_to_end(&mut read).unwrap();
    assert_eq!((size, read), (3000, data));
    assert!(matches!(
        store.open_file(&MediaHash::of(b"absent")),
        Err(BlobError::NotFound(_))
    ));
}

#[test]
fn remove_deletes_the_file_and_the_row() {
    let (dir, store) = store();
    let data = content(100, 7);
    let hash = store.put(&data).unwrap();
    let (mut open, _) = store.open_file(&hash).unwrap();
    assert!(store.remove(&hash).unwrap());
    assert!(!store.remove(&hash).unwrap());
    assert!(!store.has(&hash).unwrap());
    assert!(!blob_path(dir.path(), &hash).exists());
    assert_eq!(store.total_size().unwrap(), 0);
    // A reader that opened it before keeps its bytes.
    let mut read = Vec::new();
    open.read_to_end(&mut read).unwrap();
    assert_eq!(read, data);
}

#[test]
fn touch_updates_last_used_and_refuses_unknown_blobs() {
    let (dir, store) = store();
    let hash = store.put(b"touch me").unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("index.sqlite")).unwrap();
    conn.execute("UPDATE blobs SET last_used = 1", []).unwrap();
    store.touch(&hash).unwrap();
    let (added, used): (i64, i64) = conn
        .query_row("SELECT added_at, last_used FROM blobs", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert!(used > 1 && used >= added, "added {added}, last_used {used}");
    assert!(matches!(
        store.touch(&MediaHash::of(b"absent")),
        Err(BlobError::NotFound(_))
    ));
}

#[test]
fn a_download_in_chunks_becomes_visible_only_when_finished() {
    let (dir, store) = store();
    let data = content(100_000, 8);
    let hash = MediaHash::of(&data);
    let mut p = store.partial(hash, data.len() as u64).unwrap();
    assert_eq!((p.offset(), p.total_len(), p.hash()), (0, 100_000, hash));
    for chunk in data.chunks(16_384) {
        p.write_chunk(p.offset(), chunk).unwrap();
        assert!(!store.has(&hash).unwrap());
        assert!(matches!(
            store.read_range(&hash, 0, 1),
            Err(BlobError::NotFound(_))
        ));
        assert!(matches!(
            store.open_file(&hash),
            Err(BlobError::NotFound(_))
        ));
    }
    assert_eq!(p.offset(), 100_000);
    assert!(store.list().unwrap().is_empty());
    assert_eq!(store.total_size().unwrap(), 0);
    assert!(blob_files(dir.path()).is_empty());

    assert_eq!(p.finish().unwrap(), hash);
    assert!(store.has(&hash).unwrap());
    assert_eq!(store.read_range(&hash, 0, usize::MAX).unwrap(), data);
    assert!(!partial_path(dir.path(), &hash).exists());
    assert_eq!(blob_files(dir.path()), vec![hash.to_string()]);
}

#[test]
fn finishing_early_is_refused_and_the_download_resumes() {
    let (_dir, store) = store();
    let data = content(10_000, 9);
    let hash = MediaHash::of(&data);
    let mut p = store.partial(hash, 10_000).unwrap();
    p.write_chunk(0, &data[..4000]).unwrap();
    assert!(matches!(
        p.finish(),
        Err(BlobError::Incomplete {
            offset: 4000,
            total_len: 10_000,
            ..
        })
    ));
    assert!(!store.has(&hash).unwrap());
    let mut p = store.partial(hash, 10_000).unwrap();
    assert_eq!(p.offset(), 4000);
    p.write_chunk(4000, &data[4000..]).unwrap();
    assert_eq!(p.finish().unwrap(), hash);
    assert_eq!(store.read_range(&hash, 0, usize::MAX).unwrap(), data);
}

#[test]
fn chunks_at_the_wrong_offset_or_past_the_end_are_refused_without_effect() {
    let (_dir, store) = store();
    let data = content(1000, 10);
    let hash = MediaHash::of(&data);
    let mut p = store.partial(hash, 1000).unwrap();
    p.write_chunk(0, &data[..300]).unwrap();
    for wrong in [0, 299, 301, 1000, u64::MAX] {
        match p.write_chunk(wrong, &data[300..400]) {
            Err(BlobError::OffsetMismatch { expected, got, .. }) => {
                assert_eq!((expected, got), (300, wrong));
            }
            other => panic!("expected OffsetMismatch, got {other:?}"),
        }
    }
    match p.write_chunk(300, &[0u8; 701]) {
        Err(BlobError::BeyondEnd {
            offset,
            len,
            total_len,
            ..
        }) => assert_eq!((offset, len, total_len), (300, 701, 1000)),
        other => panic!("expected BeyondEnd, got {other:?}"),
    }
    assert_eq!(p.offset(), 300);
    p.write_chunk(300, &data[300..]).unwrap();
    assert_eq!(p.finish().unwrap(), hash);
    assert_eq!(store.read_range(&hash, 0, usize::MAX).unwrap(), data);
}

#[test]
fn a_second_partial_for_the_same_hash_is_busy_until_the_first_is_dropped() {
    let (_dir, store) = store();
    let data = content(2000, 11);
    let hash = MediaHash::of(&data);
    let other = content(2000, 12);
    let mut first = store.partial(hash, 2000).unwrap();
    first.write_chunk(0, &data[..500]).unwrap();
    assert!(matches!(store.partial(hash, 2000), Err(BlobError::Busy(h)) if h == hash));
    // A clone of the store shares the claim.
    assert!(matches!(
        store.clone().partial(hash, 2000),
        Err(BlobError::Busy(_))
    ));
    // Other hashes are independent.
    let second = store.partial(MediaHash::of(&other), 2000).unwrap();
    drop(second);
    drop(first);
    let mut again = store.partial(hash, 2000).unwrap();
    assert_eq!(again.offset(), 500);
    again.write_chunk(500, &data[500..]).unwrap();
    again.finish().unwrap();
    assert!(matches!(
        store.partial(hash, 2000),
        Err(BlobError::AlreadyComplete(h)) if h == hash
    ));
}

#[test]
fn a_partial_can_move_to_another_thread() {
    let (_dir, store) = store();
    let data = content(50_000, 13);
    let hash = MediaHash::of(&data);
    let mut p = store.partial(hash, 50_000).unwrap();
    p.write_chunk(0, &data[..20_000]).unwrap();
    let rest = data[20_000..].to_vec();
    let finished = std::thread::spawn(move || {
        p.write_chunk(20_000, &rest).unwrap();
        p.finish().unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(finished, hash);
    assert_eq!(store.read_range(&hash, 0, usize::MAX).unwrap(), data);
}

#[test]
fn concurrent_puts_of_the_same_bytes_store_one_blob() {
    let (dir, store) = store();
    let data = content(300_000, 14);
    let hashes: Vec<MediaHash> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| store.put(&data).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(hashes.iter().all(|h| *h == MediaHash::of(&data)));
    assert_eq!(store.list().unwrap(), vec![(hashes[0], 300_000)]);
    assert_eq!(blob_files(dir.path()), vec![hashes[0].to_string()]);
    assert!(entries(&dir.path().join("tmp")).is_empty());
    assert_eq!(store.read_range(&hashes[0], 0, usize::MAX).unwrap(), data);
}

#[test]
fn a_synced_download_resumes_after_the_store_is_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(120_000, 15);
    let hash = MediaHash::of(&data);
    {
        let store = BlobStore::open(dir.path()).unwrap();
        let mut p = store.partial(hash, 120_000).unwrap();
        p.write_chunk(0, &data[..30_000]).unwrap();
        p.write_chunk(30_000, &data[30_000..50_000]).unwrap();
        assert_eq!(p.synced_offset(), 0);
        p.sync().unwrap();
        assert_eq!(p.synced_offset(), 50_000);
        // Dropped without finish: the process goes away.
    }
    let store = BlobStore::open(dir.path()).unwrap();
    assert!(!store.has(&hash).unwrap());
    let mut p = store.partial(hash, 120_000).unwrap();
    assert_eq!(p.offset(), 50_000);
    p.write_chunk(50_000, &data[50_000..]).unwrap();
    assert_eq!(p.finish().unwrap(), hash);
    assert_eq!(store.read_range(&hash, 0, usize::MAX).unwrap(), data);
}

#[test]
fn a_flusher_syncs_from_another_thread_while_the_download_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(200_000, 17);
    let hash = MediaHash::of(&data);
    let store = BlobStore::open(dir.path()).unwrap();
    let mut p = store.partial(hash, 200_000).unwrap();
    let mut flusher = p.flusher().unwrap();
    std::thread::scope(|scope| {
        p.write_chunk(0, &data[..80_000]).unwrap();
        let syncing = scope.spawn(move || flusher.sync());
        // The download does not wait for the flusher.
        p.write_chunk(80_000, &data[80_000..150_000]).unwrap();
        syncing.join().unwrap().unwrap();
    });
    // What the flusher made durable is its own business; the Partial counts its own syncs.
    assert_eq!(p.synced_offset(), 0);
    p.write_chunk(150_000, &data[150_000..]).unwrap();
    assert_eq!(p.finish().unwrap(), hash);
    assert_eq!(store.read_range(&hash, 0, usize::MAX).unwrap(), data);
}

/// Set in the child process of [`a_download_killed_with_sigkill_resumes_from_the_file_length`].
const CRASH_CHILD_DIR: &str = "TAPLINK_BLOBS_CRASH_CHILD_DIR";

/// Real `kill -9` mid-transfer: this test re-runs itself as a child process that writes
/// chunks (syncing only the first part), reports readiness and is then killed by the parent.
#[test]
fn a_download_killed_with_sigkill_resumes_from_the_file_length() {
    const TEST: &str = "blobs::a_download_killed_with_sigkill_resumes_from_the_file_length";
    let data = content(90_000, 16);
    let hash = MediaHash::of(&data);

    if let Some(dir) = std::env::var_os(CRASH_CHILD_DIR) {
        let store = BlobStore::open(Path::new(&dir)).unwrap();
        let mut p = store.partial(hash, 90_000).unwrap();
        p.write_chunk(0, &data[..40_000]).unwrap();
        p.sync().unwrap();
        // Written after the last sync: after kill -9 these are still in the page cache.
        p.write_chunk(40_000, &data[40_000..60_000]).unwrap();
        println!("CHILD-READY");
        // Block until killed; the parent never writes to our stdin.
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        panic!("the parent should have killed this process");
    }

    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CRASH_CHILD_DIR, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let ready = stdout
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains("CHILD-READY"));
    child.kill().unwrap(); // SIGKILL on Unix: no destructors, no flush, no unlock.
    child.wait().unwrap();
    assert!(ready, "the child exited before writing its chunks");

    let store = BlobStore::open(dir.path()).unwrap();
    assert!(!store.has(&hash).unwrap());
    let mut p = store.partial(hash, 90_000).unwrap();
    assert_eq!(p.offset(), 60_000);
    p.write_chunk(60_000, &data[60_000..]).unwrap();
    assert_eq!(p.finish().unwrap(), hash);
    assert_eq!(store.read_range(&hash, 0, usize::MAX).unwrap(), data);
}

#[test]
fn a_corrupted_partial_fails_verification_is_deleted_and_restarts_at_zero() {
    let (dir, store) = store();
    let data = content(64_000, 17);
    let hash = MediaHash::of(&data);
    let mut p = store.partial(hash, 64_000).unwrap();
    p.write_chunk(0, &data[..32_000]).unwrap();
    p.sync().unwrap();
    drop(p);
    // Damage the stored prefix, as a power loss or a bad disk could.
    let path = partial_path(dir.path(), &hash);
    let mut bytes = fs::read(&path).unwrap();
    bytes[12_345] ^= 0x40;
    fs::write(&path, &bytes).unwrap();

    let mut p = store.partial(hash, 64_000).unwrap();
    assert_eq!(p.offset(), 32_000);
    p.write_chunk(32_000, &data[32_000..]).unwrap();
    match p.finish() {
        Err(BlobError::HashMismatch { expected, actual }) => {
            assert_eq!(expected, hash);
            assert_ne!(actual, hash);
        }
        other => panic!("expected HashMismatch, got {other:?}"),
    }
    assert!(!path.exists());
    assert!(!store.has(&hash).unwrap());
    assert!(blob_files(dir.path()).is_empty());

    let p = store.partial(hash, 64_000).unwrap();
    assert_eq!(p.offset(), 0);
    drop(p);
    assert_eq!(download(&store, &data, 10_000), hash);
    assert_eq!(store.read_range(&hash, 0, usize::MAX).unwrap(), data);
}

#[test]
fn garbage_appended_to_a_partial_is_caught_by_the_final_check() {
    let (dir, store) = store();
    let data = content(8000, 18);
    let hash = MediaHash::of(&data);
    let mut p = store.partial(hash, 8000).unwrap();
    p.write_chunk(0, &data[..3000]).unwrap();
    drop(p);
    // A power loss can leave a tail of zeros past what was synced.
    let path = partial_path(dir.path(), &hash);
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0u8; 1000]);
    fs::write(&path, &bytes).unwrap();

    let mut p = store.partial(hash, 8000).unwrap();
    assert_eq!(p.offset(), 4000);
    p.write_chunk(4000, &data[4000..]).unwrap();
    assert!(matches!(p.finish(), Err(BlobError::HashMismatch { .. })));
    assert_eq!(download(&store, &data, 999), hash);
}

#[test]
fn a_partial_longer_than_the_blob_is_discarded() {
    let (dir, store) = store();
    let data = content(1000, 19);
    let hash = MediaHash::of(&data);
    fs::write(partial_path(dir.path(), &hash), content(1500, 20)).unwrap();
    let p = store.partial(hash, 1000).unwrap();
    assert_eq!(p.offset(), 0);
    drop(p);
    assert_eq!(
        fs::metadata(partial_path(dir.path(), &hash)).unwrap().len(),
        0
    );
    assert_eq!(download(&store, &data, 100), hash);
}

#[test]
fn open_drops_rows_whose_files_are_missing() {
    let dir = tempfile::tempdir().unwrap();
    let (kept, lost) = (content(500, 21), content(600, 22));
    {
        let store = BlobStore::open(dir.path()).unwrap();
        store.put(&kept).unwrap();
        store.put(&lost).unwrap();
    }
    fs::remove_file(blob_path(dir.path(), &MediaHash::of(&lost))).unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    assert_eq!(store.list().unwrap(), vec![(MediaHash::of(&kept), 500)]);
    assert!(!store.has(&MediaHash::of(&lost)).unwrap());
    assert_eq!(store.total_size().unwrap(), 500);
}

#[test]
fn a_file_vanishing_while_open_is_reported_as_not_found_and_dropped() {
    let (dir, store) = store();
    let hash = store.put(b"here today").unwrap();
    fs::remove_file(blob_path(dir.path(), &hash)).unwrap();
    assert!(matches!(
        store.read_range(&hash, 0, 4),
        Err(BlobError::NotFound(_))
    ));
    assert!(!store.has(&hash).unwrap());
}

#[test]
fn open_indexes_valid_files_without_rows_and_deletes_corrupt_ones() {
    let dir = tempfile::tempdir().unwrap();
    drop(BlobStore::open(dir.path()).unwrap());
    let valid = content(40_000, 23);
    let valid_hash = MediaHash::of(&valid);
    let path = blob_path(dir.path(), &valid_hash);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, &valid).unwrap();

    // Named as one blob, holding another's bytes.
    let named = MediaHash::of(b"the name");
    let corrupt_path = blob_path(dir.path(), &named);
    fs::create_dir_all(corrupt_path.parent().unwrap()).unwrap();
    fs::write(&corrupt_path, b"not the name").unwrap();

    // A file whose name is not a hash, and a blob in the wrong shard.
    fs::write(path.parent().unwrap().join("junk"), b"x").unwrap();
    let misplaced = MediaHash::of(b"misplaced");
    let wrong_shard = if misplaced.to_string().starts_with("00") {
        "01"
    } else {
        "00"
    };
    fs::create_dir_all(dir.path().join("blobs").join(wrong_shard)).unwrap();
    fs::write(
        dir.path()
            .join("blobs")
            .join(wrong_shard)
            .join(misplaced.to_string()),
        b"misplaced",
    )
    .unwrap();

    let store = BlobStore::open(dir.path()).unwrap();
    assert_eq!(store.list().unwrap(), vec![(valid_hash, 40_000)]);
    assert_eq!(store.read_range(&valid_hash, 0, usize::MAX).unwrap(), valid);
    assert!(!corrupt_path.exists());
    assert!(!store.has(&named).unwrap());
    assert_eq!(blob_files(dir.path()), vec![valid_hash.to_string()]);
}

#[test]
fn open_re_verifies_a_file_whose_size_disagrees_with_its_row() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(2000, 24);
    let hash = MediaHash::of(&data);
    drop({
        let store = BlobStore::open(dir.path()).unwrap();
        store.put(&data).unwrap();
        store
    });
    fs::write(blob_path(dir.path(), &hash), &data[..1000]).unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    assert!(!store.has(&hash).unwrap());
    assert!(!blob_path(dir.path(), &hash).exists());
}

#[test]
fn open_deletes_temp_files_and_partials_of_complete_blobs_but_keeps_resume_state() {
    let dir = tempfile::tempdir().unwrap();
    let done = content(700, 25);
    let pending = content(900, 26);
    {
        let store = BlobStore::open(dir.path()).unwrap();
        store.put(&done).unwrap();
        let mut p = store.partial(MediaHash::of(&pending), 900).unwrap();
        p.write_chunk(0, &pending[..400]).unwrap();
    }
    fs::write(
        dir.path().join("tmp").join("0123456789abcdef.tmp"),
        b"half an upload",
    )
    .unwrap();
    fs::write(
        partial_path(dir.path(), &MediaHash::of(&done)),
        &done[..100],
    )
    .unwrap();
    fs::write(dir.path().join("partial").join("not-a-hash"), b"?").unwrap();

    let store = BlobStore::open(dir.path()).unwrap();
    assert!(entries(&dir.path().join("tmp")).is_empty());
    assert_eq!(
        entries(&dir.path().join("partial")),
        vec![MediaHash::of(&pending).to_string()]
    );
    let p = store.partial(MediaHash::of(&pending), 900).unwrap();
    assert_eq!(p.offset(), 400);
}

#[test]
fn deleting_the_index_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let blobs: Vec<Vec<u8>> = (0..5)
        .map(|i| content(1000 * (i + 1), 30 + i as u8))
        .collect();
    let mut expected: Vec<(MediaHash, u64)> = {
        let store = BlobStore::open(dir.path()).unwrap();
        blobs
            .iter()
            .map(|b| (store.put(b).unwrap(), b.len() as u64))
            .collect()
    };
    expected.sort();
    for name in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"] {
        let _ = fs::remove_file(dir.path().join(name));
    }
    let store = BlobStore::open(dir.path()).unwrap();
    assert_eq!(store.list().unwrap(), expected);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any content, cut into any chunks, with an optional restart (drop and resume) part-way,
    /// finishes to its hash with its bytes intact.
    #[test]
    fn any_chunking_finishes_to_the_right_hash(
        data in proptest::collection::vec(any::<u8>(), 0..20_000),
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..12),
        restart_after in any::<proptest::sample::Index>(),
    ) {
        let (_dir, store) = store();
        let hash = MediaHash::of(&data);
        let total = data.len();
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c.index(total + 1)).collect();
        bounds.push(0);
        bounds.push(total);
        bounds.sort_unstable();
        bounds.dedup();
        let restart = restart_after.index(bounds.len());

        let mut p = store.partial(hash, total as u64).unwrap();
        for (i, pair) in bounds.windows(2).enumerate() {
            if i == restart {
                drop(p);
                p = store.partial(hash, total as u64).unwrap();
            }
            prop_assert_eq!(p.offset(), pair[0] as u64);
            p.write_chunk(pair[0] as u64, &data[pair[0]..pair[1]]).unwrap();
        }
        prop_assert_eq!(p.finish().unwrap(), hash);
        prop_assert_eq!(store.read_range(&hash, 0, usize::MAX).unwrap(), data);
    }
}
