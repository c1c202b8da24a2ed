//! Content-addressed media storage for central, hubs and (later) kiosks: complete blobs named
//! by their BLAKE3 hash, resumable downloads verified before they become visible, and a SQLite
//! index of what is complete.
//!
//! # Layout
//!
//! ```text
//! <dir>/LOCK                 held (flock) by the one BlobStore that has <dir> open
//! <dir>/index.sqlite         one row per complete blob: hash, size, added_at, last_used
//! <dir>/blobs/<2 hex>/<hash> complete, verified blobs (<hash> is 64 lowercase hex)
//! <dir>/partial/<hash>       downloads in progress
//! <dir>/tmp/                 uploads being hashed (deleted on open)
//! ```
//!
//! The filesystem holds the bytes; the index says what is complete, and `has`, `size`, `list`
//! and `total_size` answer from it alone. Every name in these directories belongs to the
//! store: [`BlobStore::open`] deletes files it does not recognise (it never deletes
//! directories) and reconciles the index with `blobs/`:
//! - a row whose file is missing (or has the wrong size) is dropped;
//! - a file under `blobs/` without a row is hashed, indexed if it matches its name and
//!   deleted if not;
//! - everything in `tmp/` is deleted, and partial files of blobs that are complete.
//!
//! # Visibility and crash safety
//!
//! Nothing is written under `blobs/` except by `rename` of a file that has been verified
//! against its hash and fsynced, so `blobs/` never holds a partially written file. The order
//! is always: write elsewhere, hash, fsync, rename into `blobs/`, fsync both directories,
//! commit the index row (SQLite `synchronous=FULL`, because the caller acknowledges a blob to
//! its peer once this returns). A crash after the rename but before the commit leaves a file
//! without a row, which the next `open` re-verifies and indexes. [`BlobStore::remove`] deletes
//! the file before the row, so a crash in between leaves a row without a file, which `open`
//! drops: a removed blob never comes back.
//!
//! # Resume contract for downloads
//!
//! [`BlobStore::partial`] starts or resumes the download of a blob whose hash and total length
//! are known. **The length of the partial file when it is opened is the resume offset**
//! ([`Partial::offset`]): ask the peer for the bytes from there.
//! - Bytes written by a process killed with `kill -9` (or a panic, or a dropped `Partial`) are
//!   in the page cache and survive, so they count.
//! - After a power loss the file may be shorter than what was written (only what
//!   [`Partial::sync`] or its [`Flusher`] made durable is certain) or end in garbage. A
//!   shorter file simply resumes earlier; garbage is caught by the final check, which deletes
//!   the partial file and returns [`BlobError::HashMismatch`]; the caller then restarts
//!   from 0.
//! - A partial file longer than the announced total length cannot be a prefix of the blob
//!   and is discarded (the download restarts from 0).
//! - Plain BLAKE3 cannot verify a prefix, so the bytes of a partial are *unverified* until
//!   [`Partial::finish`] hashes the whole blob; "verified" means the whole blob is verified
//!   before it is visible. Verified streaming (bao, BLAKE3's tree mode with an outboard of
//!   interior hashes) would let each chunk be checked on arrival and a bad peer be detected
//!   early; that is a later improvement and would not change this API's shape.
//! - The hash of the bytes is computed incrementally as chunks are written; when resuming, the
//!   existing prefix is hashed once by `partial()`, so `finish` costs O(new bytes) and never
//!   re-reads the file.
//! - At most one [`Partial`] per hash is alive at a time ([`BlobError::Busy`] otherwise);
//!   dropping it without `finish` keeps the file for a later resume.
//!
//! # Concurrency
//!
//! The API is synchronous and blocking (file I/O and fsync): async callers use
//! `tokio::task::spawn_blocking`. [`BlobStore`] is `Send + Sync` and cheap to clone (clones
//! share one store); the SQLite connection sits behind a `Mutex`, which also serialises the
//! commit and removal steps against each other and against opening a blob for reading. Hashing
//! and writing uploads and chunks happen outside that lock. [`Partial`] is `Send` and owns its
//! state, so a download can move between tasks. One directory is opened by one `BlobStore` at
//! a time (an exclusive lock on `LOCK`, [`BlobError::Locked`] otherwise).

mod error;
mod index;
mod partial;

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use taplink_sync_proto::clock::{Clock, SystemClock};
use taplink_sync_proto::ids::MediaHash;

pub use self::error::BlobError;
use self::error::io_err;
use self::index::Index;
use self::partial::Claim;
pub use self::partial::{Flusher, Partial};

const LOCK_FILE: &str = "LOCK";
const INDEX_FILE: &str = "index.sqlite";
const BLOBS_DIR: &str = "blobs";
const PARTIAL_DIR: &str = "partial";
const TMP_DIR: &str = "tmp";

/// Read and hash in pieces of this size: large enough for BLAKE3's SIMD paths, small enough to
/// keep per-call memory flat.
const COPY_BUF: usize = 64 * 1024;

/// A content-addressed blob store in one directory. See the [module docs](self) for the
/// layout, the crash-safety and resume contracts.
///
/// `Send + Sync`; clones share the same store. All methods block.
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobStore")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

/// The shared state of a store and its live `Partial`s.
struct Inner {
    dir: PathBuf,
    blobs_dir: PathBuf,
    partial_dir: PathBuf,
    tmp_dir: PathBuf,
    /// The index, and the lock that serialises commits, removals and opens of complete blobs.
    index: Mutex<Index>,
    /// Hashes with a live `Partial`.
    active: Mutex<HashSet<MediaHash>>,
    /// Where the last-used times of blobs are read.
    clock: Arc<dyn Clock>,
    /// Held for the store's lifetime; the flock is released when the file is closed.
    _lock: File,
}

impl BlobStore {
    /// Open the store in `dir`, creating it if needed, and reconcile the index with the files
    /// (see the [module docs](self)). Re-hashes only files that have no index row.
    pub fn open(dir: &Path) -> Result<BlobStore, BlobError> {
        Self::open_with_clock(dir, SystemClock::shared())
    }

    /// [`open`](Self::open), reading the time blobs are last used at from `clock` (the
    /// node's).
    pub fn open_with_clock(dir: &Path, clock: Arc<dyn Clock>) -> Result<BlobStore, BlobError> {
        let blobs_dir = dir.join(BLOBS_DIR);
        let partial_dir = dir.join(PARTIAL_DIR);
        let tmp_dir = dir.join(TMP_DIR);
        for d in [dir, &blobs_dir, &partial_dir, &tmp_dir] {
            crate::private::create_dir(d).map_err(io_err("create directory", d))?;
        }
        let lock = take_lock(&dir.join(LOCK_FILE))?;
        remove_stray_files(&tmp_dir, |_| false)?;
        let index = Index::open(&dir.join(INDEX_FILE))?;
        let inner = Inner {
            dir: dir.to_path_buf(),
            blobs_dir,
            partial_dir,
            tmp_dir,
            index: Mutex::new(index),
            active: Mutex::new(HashSet::new()),
            clock,
            _lock: lock,
        };
        inner.reconcile()?;
        Ok(BlobStore {
            inner: Arc::new(inner),
        })
    }

    /// The directory this store lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Whether a complete blob with this hash is stored.
    pub fn has(&self, hash: &MediaHash) -> Result<bool, BlobError> {
        self.inner.index().contains(hash)
    }

    /// The size of a complete blob, or `None` if it is not stored.
    pub fn size(&self, hash: &MediaHash) -> Result<Option<u64>, BlobError> {
        self.inner.index().size(hash)
    }

    /// Every complete blob and its size, ordered by hash.
    pub fn list(&self) -> Result<Vec<(MediaHash, u64)>, BlobError> {
        self.inner.index().list()
    }

    /// Every complete blob and its size, least recently used first (by the time of its
    /// last [`touch`](Self::touch) or store): the order in which a cache evicts.
    pub fn list_least_recently_used(&self) -> Result<Vec<(MediaHash, u64)>, BlobError> {
        self.inner.index().list_by_last_used()
    }

    /// The summed size of the complete blobs (partial downloads and temp files not counted).
    pub fn total_size(&self) -> Result<u64, BlobError> {
        self.inner.index().total_size()
    }

    /// Read up to `max_len` bytes from `offset` of a complete blob (never a partial one).
    ///
    /// Returns fewer bytes only at the end of the blob; `offset == size` gives an empty vector,
    /// `offset > size` is [`BlobError::ReadBeyondEnd`], an unknown hash [`BlobError::NotFound`].
    /// Allocates at most what is left of the blob, whatever `max_len` is.
    pub fn read_range(
        &self,
        hash: &MediaHash,
        offset: u64,
        max_len: usize,
    ) -> Result<Vec<u8>, BlobError> {
        let (mut file, size) = self.open_file(hash)?;
        let Some(left) = size.checked_sub(offset) else {
            return Err(BlobError::ReadBeyondEnd {
                hash: *hash,
                offset,
                size,
            });
        };
        // `want <= max_len`, so it fits in a usize.
        let want = left.min(u64::try_from(max_len).unwrap_or(u64::MAX));
        let want_usize = usize::try_from(want).unwrap_or(max_len);
        let path = self.inner.blob_path(hash);
        file.seek(SeekFrom::Start(offset))
            .map_err(io_err("seek blob", &path))?;
        let mut buf = Vec::with_capacity(want_usize);
        file.take(want)
            .read_to_end(&mut buf)
            .map_err(io_err("read blob", &path))?;
        if buf.len() != want_usize {
            // The file is shorter than its row says: someone truncated it behind our back.
            return Err(BlobError::Io {
                action: "read blob",
                path,
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("blob file is shorter than its indexed size {size}"),
                ),
            });
        }
        Ok(buf)
    }

    /// A file opened for reading a complete blob, and its size (for HTTP range serving).
    ///
    /// The file stays readable even if the blob is removed meanwhile (on Unix the bytes live
    /// until the last handle is closed). A row whose file has vanished is dropped and reported
    /// as [`BlobError::NotFound`].
    pub fn open_file(&self, hash: &MediaHash) -> Result<(File, u64), BlobError> {
        // Holding the index lock while opening keeps `remove` from deleting the file between
        // the lookup and the open.
        let index = self.inner.index();
        let Some(size) = index.size(hash)? else {
            return Err(BlobError::NotFound(*hash));
        };
        let path = self.inner.blob_path(hash);
        match File::open(&path) {
            Ok(file) => Ok((file, size)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::warn!(%hash, path = %path.display(), "blob file vanished; dropping its index row");
                index.remove(hash)?;
                Err(BlobError::NotFound(*hash))
            }
            Err(e) => Err(io_err("open blob", &path)(e)),
        }
    }

    /// Store bytes we have in full (an upload): temp file, hash, fsync, rename, fsync
    /// directories, index row. Idempotent: storing a blob that is already there only updates
    /// its `last_used`.
    pub fn put(&self, data: &[u8]) -> Result<MediaHash, BlobError> {
        let hash = MediaHash::of(data);
        if self.inner.touch_if_present(&hash)? {
            return Ok(hash);
        }
        let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
        self.put_reader(data, len, Some(hash)).map(|(hash, _)| hash)
    }

    /// Store everything `reader` yields, at most `max_size` bytes, and return its hash and
    /// size. Idempotent like [`put`](Self::put).
    ///
    /// More than `max_size` bytes is [`BlobError::TooLarge`]; bytes that do not hash to
    /// `expected` (when given) are [`BlobError::HashMismatch`]; a failing reader is
    /// [`BlobError::Input`]. In every error case nothing is stored and the temp file is gone.
    pub fn put_reader(
        &self,
        mut reader: impl Read,
        max_size: u64,
        expected: Option<MediaHash>,
    ) -> Result<(MediaHash, u64), BlobError> {
        let mut tmp = TempFile::create(&self.inner.tmp_dir)?;
        // Reading one byte past the limit tells "exactly max_size" from "too large".
        let (hasher, size) =
            match hash_reader(&mut reader, max_size.saturating_add(1), Some(&mut tmp.file)) {
                Ok(done) => done,
                Err(CopyError::Read(source)) => return Err(BlobError::Input { source }),
                Err(CopyError::Write(source)) => {
                    return Err(io_err("write temp blob", &tmp.path)(source));
                }
            };
        if size > max_size {
            return Err(BlobError::TooLarge {
                size,
                max: max_size,
            });
        }
        let hash = MediaHash::from(hasher.finalize());
        if let Some(expected) = expected
            && expected != hash
        {
            return Err(BlobError::HashMismatch {
                expected,
                actual: hash,
            });
        }
        tmp.file
            .sync_all()
            .map_err(io_err("sync temp blob", &tmp.path))?;
        self.inner.commit(&tmp.path, &hash, size)?;
        tmp.keep = true;
        Ok((hash, size))
    }

    /// Start or resume the download of a blob whose hash and total length are known.
    ///
    /// [`Partial::offset`] says where to resume (see the [module docs](self) for the
    /// contract). [`BlobError::Busy`] if another live `Partial` has this hash;
    /// [`BlobError::AlreadyComplete`] if the blob is already stored (any stale partial file is
    /// deleted).
    pub fn partial(&self, hash: MediaHash, total_len: u64) -> Result<Partial, BlobError> {
        let claim = Claim::take(&self.inner, hash)?;
        if self.inner.index().contains(&hash)? {
            remove_if_exists(&self.inner.partial_path(&hash), "delete stale partial blob")?;
            return Err(BlobError::AlreadyComplete(hash));
        }
        Partial::open(claim, total_len)
    }

    /// Remove a complete blob; whether it was stored. Readers that already opened it keep
    /// reading it. Partial downloads are not affected.
    pub fn remove(&self, hash: &MediaHash) -> Result<bool, BlobError> {
        let index = self.inner.index();
        // File first: a crash before the row is deleted leaves a row without a file, which
        // `open` drops. The other order would leave a file without a row, which `open`
        // re-verifies and indexes, bringing the removed blob back.
        remove_if_exists(&self.inner.blob_path(hash), "delete blob")?;
        let had_row = index.remove(hash)?;
        if had_row {
            tracing::debug!(%hash, "removed blob");
        }
        Ok(had_row)
    }

    /// Record that a complete blob was just used (for least-recently-used eviction);
    /// [`BlobError::NotFound`] if it is not stored.
    pub fn touch(&self, hash: &MediaHash) -> Result<(), BlobError> {
        if self.inner.touch_if_present(hash)? {
            Ok(())
        } else {
            Err(BlobError::NotFound(*hash))
        }
    }
}

impl Inner {
    /// Lock the index.
    fn index(&self) -> MutexGuard<'_, Index> {
        // A panic while the lock was held cannot have left the index half-written: every
        // write is one SQLite statement or transaction, which is atomic.
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn shard_dir(&self, hash: &MediaHash) -> PathBuf {
        let hex = hash.to_string();
        self.blobs_dir.join(&hex[..2])
    }

    fn blob_path(&self, hash: &MediaHash) -> PathBuf {
        self.shard_dir(hash).join(hash.to_string())
    }

    fn partial_path(&self, hash: &MediaHash) -> PathBuf {
        self.partial_dir.join(hash.to_string())
    }

    /// Unix time in milliseconds, 0 for a clock before 1970 (a Pi without RTC may boot there).
    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis().max(0)
    }

    fn touch_if_present(&self, hash: &MediaHash) -> Result<bool, BlobError> {
        self.index().touch(hash, self.now_ms())
    }

    /// Move a verified, fsynced file into `blobs/` and commit its row. The caller has checked
    /// that `src` hashes to `hash` and holds `size` bytes.
    fn commit(&self, src: &Path, hash: &MediaHash, size: u64) -> Result<(), BlobError> {
        let index = self.index();
        if index.contains(hash)? {
            // Stored meanwhile (a concurrent upload of the same bytes): keep the existing file
            // rather than replace it under its readers.
            remove_if_exists(src, "delete duplicate blob")?;
            index.insert(hash, size, self.now_ms())?;
            return Ok(());
        }
        let shard = self.shard_dir(hash);
        if !shard.is_dir() {
            let made = {
                use std::os::unix::fs::DirBuilderExt;
                fs::DirBuilder::new()
                    .mode(crate::private::DIR_MODE)
                    .create(&shard)
            };
            match made {
                Ok(()) => sync_dir(&self.blobs_dir)?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("create blob directory", &shard)(e)),
            }
        }
        let dest = self.blob_path(hash);
        fs::rename(src, &dest).map_err(io_err("move verified blob into", &dest))?;
        sync_dir(&shard)?;
        if let Some(src_dir) = src.parent() {
            sync_dir(src_dir)?;
        }
        index.insert(hash, size, self.now_ms())?;
        tracing::debug!(%hash, size, "stored blob");
        Ok(())
    }

    /// Make the index agree with `blobs/`, and clear out `partial/` (see the module docs).
    fn reconcile(&self) -> Result<(), BlobError> {
        let index = self.index();
        let mut known = HashSet::new();
        for (hash, size) in index.list()? {
            let path = self.blob_path(&hash);
            match fs::metadata(&path) {
                Ok(meta) if meta.is_file() && meta.len() == size => {
                    known.insert(hash);
                }
                Ok(meta) => {
                    // Not what was committed: drop the row; if it is a file, the walk below
                    // re-verifies it like any file without a row.
                    tracing::warn!(%hash, path = %path.display(), indexed = size, on_disk = meta.len(),
                        "blob file does not match its index row; re-verifying");
                    index.remove(&hash)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    tracing::warn!(%hash, path = %path.display(), "blob file missing; dropping its index row");
                    index.remove(&hash)?;
                }
                Err(e) => return Err(io_err("stat blob", &path)(e)),
            }
        }

        for shard in read_dir(&self.blobs_dir)? {
            let (shard_path, shard_name, shard_type) = shard;
            let is_shard = shard_type.is_dir()
                && shard_name
                    .to_str()
                    .is_some_and(|n| n.len() == 2 && n.bytes().all(is_lower_hex));
            if !is_shard {
                remove_stray(&shard_path, shard_type)?;
                continue;
            }
            for (path, name, file_type) in read_dir(&shard_path)? {
                let hash = parse_hash_name(&name).filter(|h| {
                    file_type.is_file() && h.to_string().starts_with(&*shard_name.to_string_lossy())
                });
                let Some(hash) = hash else {
                    remove_stray(&path, file_type)?;
                    continue;
                };
                if known.contains(&hash) {
                    continue;
                }
                let mut file = File::open(&path).map_err(io_err("open blob", &path))?;
                let (hasher, size) = hash_reader(&mut file, u64::MAX, None)
                    .map_err(|e| io_err("hash blob", &path)(e.into_io()))?;
                drop(file);
                let actual = MediaHash::from(hasher.finalize());
                if actual == hash {
                    tracing::info!(%hash, size, "indexed a verified blob that had no index row");
                    index.insert(&hash, size, self.now_ms())?;
                    known.insert(hash);
                } else {
                    tracing::warn!(expected = %hash, %actual, path = %path.display(), "deleting corrupt blob");
                    remove_if_exists(&path, "delete corrupt blob")?;
                }
            }
        }

        remove_stray_files(&self.partial_dir, |name| {
            // Keep partials of blobs that are not complete; they are resume state.
            parse_hash_name(name).is_some_and(|h| !known.contains(&h))
        })?;
        tracing::debug!(dir = %self.dir.display(), blobs = known.len(), "opened blob store");
        Ok(())
    }
}

/// A file in `tmp/`, deleted on drop unless `keep` is set (after it was renamed away).
struct TempFile {
    path: PathBuf,
    file: File,
    keep: bool,
}

impl TempFile {
    fn create(dir: &Path) -> Result<Self, BlobError> {
        let mut attempts = 0;
        loop {
            let path = dir.join(format!("{:016x}.tmp", rand::random::<u64>()));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    return Ok(Self {
                        path,
                        file,
                        keep: false,
                    });
                }
                // 64 random bits collide only if something else writes into tmp/.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 8 => {
                    attempts += 1;
                }
                Err(e) => return Err(io_err("create temp blob", &path)(e)),
            }
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Err(e) = fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            // `open` deletes whatever is left in tmp/, so this only costs space until then.
            tracing::warn!(path = %self.path.display(), error = %e, "cannot delete temp blob");
        }
    }
}

/// Why [`hash_reader`] stopped.
enum CopyError {
    /// The source failed.
    Read(io::Error),
    /// The destination failed.
    Write(io::Error),
}

impl CopyError {
    fn into_io(self) -> io::Error {
        match self {
            Self::Read(e) | Self::Write(e) => e,
        }
    }
}

/// Hash (and copy to `out`, if given) at most `limit` bytes of `reader`, stopping early at
/// its end. Returns the hasher and the number of bytes.
fn hash_reader(
    reader: &mut impl Read,
    limit: u64,
    mut out: Option<&mut File>,
) -> Result<(blake3::Hasher, u64), CopyError> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; COPY_BUF];
    let mut total = 0u64;
    while total < limit {
        let want = usize::try_from(limit - total).map_or(COPY_BUF, |left| left.min(COPY_BUF));
        let n = match reader.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        // A misbehaving `Read` impl may claim more than the buffer holds; refuse, don't panic.
        let chunk = buf.get(..n).ok_or_else(|| {
            CopyError::Read(io::Error::other(
                "reader returned more bytes than requested",
            ))
        })?;
        hasher.update(chunk);
        if let Some(out) = out.as_mut() {
            out.write_all(chunk).map_err(CopyError::Write)?;
        }
        total = total.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
    }
    Ok((hasher, total))
}

/// Take the exclusive lock on the store's directory.
fn take_lock(path: &Path) -> Result<File, BlobError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(crate::private::FILE_MODE)
        .open(path)
        .map_err(io_err("open lock file", path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(BlobError::Locked {
            path: path.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(io_err("lock", path)(e)),
    }
}

/// The entries of a directory: path, name, type.
fn read_dir(dir: &Path) -> Result<Vec<(PathBuf, std::ffi::OsString, fs::FileType)>, BlobError> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("list directory", dir))? {
        let entry = entry.map_err(io_err("list directory", dir))?;
        let file_type = entry.file_type().map_err(io_err("stat", &entry.path()))?;
        entries.push((entry.path(), entry.file_name(), file_type));
    }
    Ok(entries)
}

/// Delete every file in `dir` whose name `keep` rejects; directories are left with a warning.
fn remove_stray_files(dir: &Path, keep: impl Fn(&OsStr) -> bool) -> Result<(), BlobError> {
    for (path, name, file_type) in read_dir(dir)? {
        if !keep(&name) {
            remove_stray(&path, file_type)?;
        }
    }
    Ok(())
}

/// Delete a file the store did not expect; leave a directory (never delete a tree we did not
/// make) with a warning.
fn remove_stray(path: &Path, file_type: fs::FileType) -> Result<(), BlobError> {
    if file_type.is_dir() {
        tracing::warn!(path = %path.display(), "unexpected directory in the blob store; left alone");
        return Ok(());
    }
    tracing::info!(path = %path.display(), "deleting stray file in the blob store");
    remove_if_exists(path, "delete stray file")
}

fn remove_if_exists(path: &Path, action: &'static str) -> Result<(), BlobError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(action, path)(e)),
    }
}

/// A file name that is a hash in its canonical form (64 lowercase hex).
fn parse_hash_name(name: &OsStr) -> Option<MediaHash> {
    let name = name.to_str()?;
    if name.len() != 64 || !name.bytes().all(is_lower_hex) {
        return None;
    }
    name.parse().ok()
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

/// Make a directory's entries (creations, renames) durable.
fn sync_dir(dir: &Path) -> Result<(), BlobError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("sync directory", dir))
    }
    // Elsewhere a directory cannot be opened as a file; the rename is all there is.
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}

    #[test]
    fn store_and_error_are_send_sync_and_partial_is_send() {
        assert_send_sync::<BlobStore>();
        assert_send_sync::<BlobError>();
        assert_send::<Partial>();
    }

    #[test]
    fn blob_paths_are_sharded_by_the_first_two_hex_digits() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let hash = MediaHash::of(b"x");
        let hex = hash.to_string();
        assert_eq!(
            store.inner.blob_path(&hash),
            dir.path().join("blobs").join(&hex[..2]).join(&hex)
        );
        assert_eq!(
            store.inner.partial_path(&hash),
            dir.path().join("partial").join(&hex)
        );
    }

    #[test]
    fn only_canonical_hash_names_parse() {
        let hash = MediaHash::of(b"x");
        let hex = hash.to_string();
        assert_eq!(parse_hash_name(OsStr::new(&hex)), Some(hash));
        assert_eq!(parse_hash_name(OsStr::new(&hex.to_uppercase())), None);
        assert_eq!(parse_hash_name(OsStr::new(&hex[..63])), None);
        assert_eq!(parse_hash_name(OsStr::new(&format!("{hex}.tmp"))), None);
        assert_eq!(
            parse_hash_name(OsStr::new(&format!("{}g", &hex[..63]))),
            None
        );
    }

    #[test]
    fn hash_reader_stops_at_the_limit_and_at_the_end() {
        let data = vec![7u8; 3 * COPY_BUF + 5];
        let (h, n) = hash_reader(&mut data.as_slice(), u64::MAX, None)
            .ok()
            .unwrap();
        assert_eq!(
            (MediaHash::from(h.finalize()), n),
            (MediaHash::of(&data), data.len() as u64)
        );
        let (h, n) = hash_reader(&mut data.as_slice(), 100_000, None)
            .ok()
            .unwrap();
        assert_eq!(
            (MediaHash::from(h.finalize()), n),
            (MediaHash::of(&data[..100_000]), 100_000)
        );
    }

    #[test]
    fn blobs_list_least_recently_used_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let a = store.put(b"a").unwrap();
        let b = store.put(b"bb").unwrap();
        let c = store.put(b"ccc").unwrap();
        // Explicit times: `touch` reads the clock in milliseconds, too coarse to order here.
        for (hash, used) in [(a, 30), (b, 10), (c, 20)] {
            assert!(store.inner.index().touch(&hash, used).unwrap());
        }
        assert_eq!(
            store.list_least_recently_used().unwrap(),
            vec![(b, 2), (c, 3), (a, 1)]
        );
    }

    #[test]
    fn a_second_store_on_the_same_directory_is_refused_until_the_first_closes() {
        let dir = tempfile::tempdir().unwrap();
        let first = BlobStore::open(dir.path()).unwrap();
        assert!(matches!(
            BlobStore::open(dir.path()),
            Err(BlobError::Locked { .. })
        ));
        drop(first);
        BlobStore::open(dir.path()).unwrap();
    }

    #[test]
    fn an_index_from_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(BlobStore::open(dir.path()).unwrap());
        let conn = rusqlite::Connection::open(dir.path().join(INDEX_FILE)).unwrap();
        conn.pragma_update(None, "user_version", index::SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        match BlobStore::open(dir.path()) {
            Err(BlobError::Open(crate::sqlite::OpenError::NewerSchema {
                found,
                supported,
                ..
            })) => assert_eq!(
                (found, supported),
                (index::SCHEMA_VERSION + 1, index::SCHEMA_VERSION)
            ),
            other => panic!("expected NewerSchema, got {other:?}"),
        }
    }

    #[test]
    fn a_corrupt_index_row_is_reported_not_panicked_on() {
        let dir = tempfile::tempdir().unwrap();
        drop(BlobStore::open(dir.path()).unwrap());
        let conn = rusqlite::Connection::open(dir.path().join(INDEX_FILE)).unwrap();
        // Bypass the CHECK constraints the way a hand edit or a foreign writer could.
        conn.execute_batch(
            "PRAGMA ignore_check_constraints = ON;
             INSERT INTO blobs VALUES (x'0102', 5, 0, 0);",
        )
        .unwrap();
        drop(conn);
        assert!(matches!(
            BlobStore::open(dir.path()),
            Err(BlobError::CorruptIndex { .. })
        ));
    }

    #[test]
    fn the_index_is_wal_and_versioned() {
        let dir = tempfile::tempdir().unwrap();
        let _store = BlobStore::open(dir.path()).unwrap();
        let conn = rusqlite::Connection::open(dir.path().join(INDEX_FILE)).unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!((mode.as_str(), version), ("wal", index::SCHEMA_VERSION));
    }
}
