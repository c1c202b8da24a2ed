//! A download in progress: appends chunks to `partial/<hash>`, hashes them as they come and
//! moves the file into `blobs/` once the whole blob verifies.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, PoisonError};

use taplink_sync_proto::ids::MediaHash;

use super::error::io_err;
use super::{BlobError, Inner, hash_reader, sync_dir};

/// A download of one blob whose hash and length are known, resumable across crashes.
///
/// At most one `Partial` per hash is alive per store ([`BlobError::Busy`] otherwise); dropping
/// it without [`finish`](Self::finish) keeps the partial file so that the next
/// [`BlobStore::partial`](super::BlobStore::partial) resumes from it. See the
/// [module docs](super) for the resume contract.
pub struct Partial {
    claim: Claim,
    total_len: u64,
    path: PathBuf,
    file: File,
    /// Bytes in the file, all of them fed to `hasher`.
    offset: u64,
    /// Bytes known to be on stable storage.
    synced: u64,
    /// Whether the file's directory entry is known to be on stable storage.
    dir_synced: bool,
    hasher: blake3::Hasher,
    /// A write failed part-way: the file may hold bytes the hasher has not seen.
    broken: bool,
}

impl fmt::Debug for Partial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Partial")
            .field("hash", &self.claim.hash)
            .field("path", &self.path)
            .field("offset", &self.offset)
            .field("synced", &self.synced)
            .field("total_len", &self.total_len)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl Partial {
    /// Open or create the partial file for a claimed hash and hash the prefix already there.
    pub(super) fn open(claim: Claim, total_len: u64) -> Result<Self, BlobError> {
        let hash = claim.hash;
        let path = claim.inner.partial_path(&hash);
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err("open partial blob", &path))?;
        let mut len = file
            .metadata()
            .map_err(io_err("stat partial blob", &path))?
            .len();
        if len > total_len {
            // The peer announced a different length than last time, or the file is damaged:
            // either way its bytes cannot be a prefix of this blob.
            tracing::warn!(%hash, len, total_len, "partial blob longer than the blob; restarting it");
            file.set_len(0)
                .map_err(io_err("truncate partial blob", &path))?;
            len = 0;
        }
        let mut hasher = blake3::Hasher::new();
        if len > 0 {
            file.seek(SeekFrom::Start(0))
                .map_err(io_err("seek partial blob", &path))?;
            let (prefix, read) = hash_reader(&mut file, len, None)
                .map_err(|e| io_err("hash partial blob prefix", &path)(e.into_io()))?;
            hasher = prefix;
            if read != len {
                // The file shrank under us (someone else touched our directory); trust what
                // was read, which is what the hasher saw.
                tracing::warn!(%hash, len, read, "partial blob shrank while hashing its prefix");
                file.set_len(read)
                    .map_err(io_err("truncate partial blob", &path))?;
                len = read;
            }
        }
        file.seek(SeekFrom::Start(len))
            .map_err(io_err("seek partial blob", &path))?;
        if len > 0 {
            tracing::debug!(%hash, offset = len, total_len, "resuming partial blob");
        }
        Ok(Self {
            claim,
            total_len,
            path,
            file,
            offset: len,
            // After a power loss, bytes that were in the file at open may not have been synced;
            // `synced` counts only what this Partial has made durable itself.
            synced: 0,
            dir_synced: existed,
            hasher,
            broken: false,
        })
    }

    /// The blob being downloaded.
    pub fn hash(&self) -> MediaHash {
        self.claim.hash
    }

    /// Where the next chunk must start: the bytes in the partial file. Right after
    /// [`BlobStore::partial`](super::BlobStore::partial) this is the resume offset (the file's
    /// length); it advances with every [`write_chunk`](Self::write_chunk), and is durable up to
    /// [`synced_offset`](Self::synced_offset).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The bytes this `Partial` has made durable with [`sync`](Self::sync) (0 before the
    /// first sync, even when resuming): what survives a power loss for certain.
    pub fn synced_offset(&self) -> u64 {
        self.synced
    }

    /// The blob's length, as given to [`BlobStore::partial`](super::BlobStore::partial).
    pub fn total_len(&self) -> u64 {
        self.total_len
    }

    /// Append a chunk that starts exactly at [`offset`](Self::offset).
    ///
    /// A chunk at another offset is refused with [`BlobError::OffsetMismatch`], one that ends
    /// past [`total_len`](Self::total_len) with [`BlobError::BeyondEnd`]; neither changes
    /// anything. If the write itself fails the `Partial` is broken
    /// ([`BlobError::PartialBroken`] from then on): drop it and reopen to resume.
    pub fn write_chunk(&mut self, offset: u64, data: &[u8]) -> Result<(), BlobError> {
        let hash = self.claim.hash;
        if self.broken {
            return Err(BlobError::PartialBroken(hash));
        }
        if offset != self.offset {
            return Err(BlobError::OffsetMismatch {
                hash,
                expected: self.offset,
                got: offset,
            });
        }
        let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
        let end = offset.checked_add(len).filter(|&end| end <= self.total_len);
        let Some(end) = end else {
            return Err(BlobError::BeyondEnd {
                hash,
                offset,
                len,
                total_len: self.total_len,
            });
        };
        if let Err(source) = self.file.write_all(data) {
            self.broken = true;
            return Err(BlobError::Io {
                action: "write partial blob",
                path: self.path.clone(),
                source,
            });
        }
        self.hasher.update(data);
        self.offset = end;
        Ok(())
    }

    /// Flush the partial file to stable storage, so that [`offset`](Self::offset) survives a
    /// power loss (a crash or `kill -9` loses nothing written even without it).
    pub fn sync(&mut self) -> Result<(), BlobError> {
        if self.broken {
            return Err(BlobError::PartialBroken(self.claim.hash));
        }
        self.file
            .sync_data()
            .map_err(io_err("sync partial blob", &self.path))?;
        if !self.dir_synced {
            // A new file's directory entry is only durable once its directory is synced.
            sync_dir(&self.claim.inner.partial_dir)?;
            self.dir_synced = true;
        }
        self.synced = self.offset;
        Ok(())
    }

    /// A second handle on the partial file that makes what was written durable from another
    /// thread while this `Partial` keeps writing: a download can then overlap each fsync with
    /// the next bytes instead of stalling on it. What it syncs is not counted in
    /// [`synced_offset`](Self::synced_offset); [`sync`](Self::sync) and
    /// [`finish`](Self::finish) stay the durable points of this `Partial`.
    pub fn flusher(&self) -> Result<Flusher, BlobError> {
        let file = self
            .file
            .try_clone()
            .map_err(io_err("open partial blob for syncing", &self.path))?;
        Ok(Flusher {
            file,
            path: self.path.clone(),
            dir: (!self.dir_synced).then(|| self.claim.inner.partial_dir.clone()),
        })
    }

    /// Verify the whole blob and make it visible.
    ///
    /// Requires [`offset`](Self::offset) `== total_len` ([`BlobError::Incomplete`] otherwise;
    /// the file is kept for a resume). If the BLAKE3 hash of the bytes is not the expected one
    /// the partial file is deleted and [`BlobError::HashMismatch`] returned, so the next
    /// attempt starts from 0. Otherwise the file is synced, renamed into `blobs/`, the
    /// directories synced and the index row committed; only then do
    /// [`has`](super::BlobStore::has) and [`read_range`](super::BlobStore::read_range) see it.
    pub fn finish(self) -> Result<MediaHash, BlobError> {
        let hash = self.claim.hash;
        if self.broken {
            return Err(BlobError::PartialBroken(hash));
        }
        if self.offset != self.total_len {
            return Err(BlobError::Incomplete {
                hash,
                offset: self.offset,
                total_len: self.total_len,
            });
        }
        let actual = MediaHash::from(self.hasher.finalize());
        if actual != hash {
            drop(self.file);
            match fs::remove_file(&self.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("delete corrupt partial blob", &self.path)(e)),
            }
            tracing::warn!(expected = %hash, %actual, "downloaded blob failed verification; discarded");
            return Err(BlobError::HashMismatch {
                expected: hash,
                actual,
            });
        }
        self.file
            .sync_all()
            .map_err(io_err("sync partial blob", &self.path))?;
        drop(self.file);
        self.claim.inner.commit(&self.path, &hash, self.total_len)?;
        tracing::debug!(%hash, size = self.total_len, "download complete");
        Ok(hash)
    }
}

/// Makes a [`Partial`]'s written bytes durable from another thread ([`Partial::flusher`]).
#[derive(Debug)]
pub struct Flusher {
    file: File,
    path: PathBuf,
    /// The partial directory, until this flusher has synced it once (a new file's entry).
    dir: Option<PathBuf>,
}

impl Flusher {
    /// Flush everything written to the partial file so far to stable storage.
    pub fn sync(&mut self) -> Result<(), BlobError> {
        self.file
            .sync_data()
            .map_err(io_err("sync partial blob", &self.path))?;
        if let Some(dir) = &self.dir {
            sync_dir(dir)?;
            self.dir = None;
        }
        Ok(())
    }
}

/// This store's claim on downloading one hash; released when dropped.
pub(super) struct Claim {
    inner: Arc<Inner>,
    hash: MediaHash,
}

impl Claim {
    /// Claim `hash`, or [`BlobError::Busy`] if a live `Partial` has it.
    pub(super) fn take(inner: &Arc<Inner>, hash: MediaHash) -> Result<Self, BlobError> {
        let mut active = inner.active.lock().unwrap_or_else(PoisonError::into_inner);
        if !active.insert(hash) {
            return Err(BlobError::Busy(hash));
        }
        Ok(Self {
            inner: Arc::clone(inner),
            hash,
        })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        // A poisoned set is still a valid set: insert and remove cannot panic half-way.
        self.inner
            .active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.hash);
    }
}
