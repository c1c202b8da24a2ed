//! The one error type of the blob store, naming the path or hash each failure is about.

use std::io;
use std::path::{Path, PathBuf};

use taplink_sync_proto::ids::MediaHash;

/// Why a [`BlobStore`](super::BlobStore) or [`Partial`](super::Partial) operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// A filesystem operation on the store's directory failed (disk full, permissions, I/O).
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "rename partial blob into place".
        action: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// Reading the caller's input (an upload body) failed; nothing was stored.
    #[error("cannot read the blob being stored: {source}")]
    Input {
        /// The reader's error.
        source: io::Error,
    },
    /// The SQLite index failed.
    #[error("blob index {}: cannot {action}: {source}", path.display())]
    Sqlite {
        /// What was being done, e.g. "insert row".
        action: &'static str,
        /// The index database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// Another `BlobStore`, in this process or another, has this directory open. Two stores
    /// on one directory would delete each other's temp files and race on partial files.
    #[error("blob store {} is already open (lock file held)", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The index database could not be opened: not WAL, a newer schema, a failed
    /// migration, ….
    #[error("blob index: {0}")]
    Open(#[from] crate::sqlite::OpenError),
    /// The index holds a row this build cannot read (a hash that is not 32 bytes, a negative
    /// size). Deleting `index.sqlite` is safe: `open` rebuilds it by re-hashing every blob.
    #[error("blob index {} is corrupt: {detail}", path.display())]
    CorruptIndex {
        /// The index database file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// No complete blob with this hash is stored (partial downloads do not count).
    #[error("blob {0} is not in the store")]
    NotFound(MediaHash),
    /// `partial` was asked for a blob that is already complete: there is nothing to download.
    #[error("blob {0} is already complete")]
    AlreadyComplete(MediaHash),
    /// The input is larger than the limit; nothing was stored.
    #[error("blob is too large: at least {size} bytes, the limit is {max}")]
    TooLarge {
        /// Bytes read before refusing; the input may be longer.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The bytes do not hash to the expected BLAKE3 hash; nothing was stored, and a partial
    /// download's file was deleted so that the next attempt starts from 0.
    #[error("blob hash mismatch: expected {expected}, got {actual}")]
    HashMismatch {
        /// The hash the caller asked for.
        expected: MediaHash,
        /// The hash of the bytes actually received.
        actual: MediaHash,
    },
    /// A chunk of a partial download does not start where the partial file ends.
    #[error("chunk of blob {hash} starts at {got}, expected {expected}")]
    OffsetMismatch {
        /// The blob being downloaded.
        hash: MediaHash,
        /// Where the next chunk must start: [`Partial::offset`](super::Partial::offset).
        expected: u64,
        /// Where the refused chunk starts.
        got: u64,
    },
    /// A chunk of a partial download ends past the blob's announced length.
    #[error("chunk of blob {hash} at {offset} (+{len} bytes) ends past its length {total_len}")]
    BeyondEnd {
        /// The blob being downloaded.
        hash: MediaHash,
        /// Where the refused chunk starts.
        offset: u64,
        /// Its length.
        len: u64,
        /// The blob's announced length.
        total_len: u64,
    },
    /// A read of a complete blob starts past its end.
    #[error("read of blob {hash} at {offset} starts past its end at {size}")]
    ReadBeyondEnd {
        /// The blob being read.
        hash: MediaHash,
        /// The requested start.
        offset: u64,
        /// The blob's size.
        size: u64,
    },
    /// `finish` was called before all bytes were written. The partial file is kept; call
    /// `partial` again to resume.
    #[error("blob {hash} is incomplete: {offset} of {total_len} bytes")]
    Incomplete {
        /// The blob being downloaded.
        hash: MediaHash,
        /// Bytes written.
        offset: u64,
        /// Bytes expected.
        total_len: u64,
    },
    /// Another live [`Partial`](super::Partial) is downloading this blob.
    #[error("blob {0} is already being downloaded")]
    Busy(MediaHash),
    /// An earlier write to this [`Partial`](super::Partial) failed, so its file may hold bytes
    /// its hasher has not seen. Drop it and call `partial` again: that resumes from what is
    /// actually on disk.
    #[error("partial download of blob {0} failed earlier; reopen it to resume")]
    PartialBroken(MediaHash),
}

/// A `map_err` adapter for filesystem errors.
pub(super) fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BlobError {
    let path = path.to_path_buf();
    move |source| BlobError::Io {
        action,
        path,
        source,
    }
}
