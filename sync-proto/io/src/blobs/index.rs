//! The SQLite index of complete blobs: what `has`, `size`, `list` and `total_size` answer from.
//!
//! One row per complete, verified blob. The filesystem is the truth about bytes; this index is
//! the truth about membership, and `BlobStore::open` reconciles the two.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use taplink_sync_proto::ids::MediaHash;

use super::BlobError;

/// Migration `i` takes the schema from version `i` to `i + 1` (`PRAGMA user_version`).
const MIGRATIONS: &[&str] = &["CREATE TABLE blobs (
         hash      BLOB    NOT NULL PRIMARY KEY CHECK (length(hash) = 32),
         size      INTEGER NOT NULL CHECK (size >= 0),
         added_at  INTEGER NOT NULL,
         last_used INTEGER NOT NULL
     ) STRICT, WITHOUT ROWID;
     CREATE INDEX blobs_by_last_used ON blobs (last_used);"];

/// The schema version this build writes.
#[cfg(test)]
pub(super) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The WAL is truncated back to this size after checkpoints; the index is small, so this only
/// bounds the file after a burst of writes.
const JOURNAL_SIZE_LIMIT: i64 = 4 * 1024 * 1024;

/// The open index database.
#[derive(Debug)]
pub(super) struct Index {
    conn: Connection,
    path: PathBuf,
}

impl Index {
    /// Open (creating if needed) and migrate the index at `path`.
    pub(super) fn open(path: &Path) -> Result<Self, BlobError> {
        let options = crate::sqlite::Options {
            journal_size_limit: JOURNAL_SIZE_LIMIT,
            ..crate::sqlite::Options::default()
        };
        let conn = crate::sqlite::open(path, MIGRATIONS, &options)?;
        Ok(Self {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub(super) fn size(&self, hash: &MediaHash) -> Result<Option<u64>, BlobError> {
        let size: Option<i64> = self
            .conn
            .prepare_cached("SELECT size FROM blobs WHERE hash = ?1")
            .and_then(|mut st| {
                st.query_row([hash.as_bytes().as_slice()], |row| row.get(0))
                    .optional()
            })
            .map_err(self.err("look up blob"))?;
        size.map(|s| self.size_from_sql(s)).transpose()
    }

    pub(super) fn contains(&self, hash: &MediaHash) -> Result<bool, BlobError> {
        Ok(self.size(hash)?.is_some())
    }

    /// Every complete blob, ordered by hash.
    pub(super) fn list(&self) -> Result<Vec<(MediaHash, u64)>, BlobError> {
        let rows: Vec<(Vec<u8>, i64)> = self
            .conn
            .prepare_cached("SELECT hash, size FROM blobs ORDER BY hash")
            .and_then(|mut st| {
                st.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect()
            })
            .map_err(self.err("list blobs"))?;
        rows.into_iter()
            .map(|(hash, size)| Ok((self.hash_from_sql(hash)?, self.size_from_sql(size)?)))
            .collect()
    }

    /// Every complete blob, least recently used first (ties by hash).
    pub(super) fn list_by_last_used(&self) -> Result<Vec<(MediaHash, u64)>, BlobError> {
        let rows: Vec<(Vec<u8>, i64)> = self
            .conn
            .prepare_cached("SELECT hash, size FROM blobs ORDER BY last_used, hash")
            .and_then(|mut st| {
                st.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect()
            })
            .map_err(self.err("list blobs by last use"))?;
        rows.into_iter()
            .map(|(hash, size)| Ok((self.hash_from_sql(hash)?, self.size_from_sql(size)?)))
            .collect()
    }

    pub(super) fn total_size(&self) -> Result<u64, BlobError> {
        // SUM over INTEGER is an integer (it raises an error rather than wrapping on overflow).
        let total: i64 = self
            .conn
            .query_row("SELECT COALESCE(SUM(size), 0) FROM blobs", [], |row| {
                row.get(0)
            })
            .map_err(self.err("sum blob sizes"))?;
        self.size_from_sql(total)
    }

    /// Record a complete blob; if it is already recorded, only bump `last_used`.
    pub(super) fn insert(&self, hash: &MediaHash, size: u64, now_ms: i64) -> Result<(), BlobError> {
        let size = size_to_sql(size)?;
        self.conn
            .prepare_cached(
                "INSERT INTO blobs (hash, size, added_at, last_used) VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT (hash) DO UPDATE SET last_used = excluded.last_used",
            )
            .and_then(|mut st| st.execute(params![hash.as_bytes().as_slice(), size, now_ms]))
            .map_err(self.err("insert blob row"))?;
        Ok(())
    }

    /// Drop a blob's row; whether there was one.
    pub(super) fn remove(&self, hash: &MediaHash) -> Result<bool, BlobError> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM blobs WHERE hash = ?1")
            .and_then(|mut st| st.execute([hash.as_bytes().as_slice()]))
            .map_err(self.err("delete blob row"))?;
        Ok(n > 0)
    }

    /// Set a blob's `last_used`; whether it has a row.
    pub(super) fn touch(&self, hash: &MediaHash, now_ms: i64) -> Result<bool, BlobError> {
        let n = self
            .conn
            .prepare_cached("UPDATE blobs SET last_used = ?2 WHERE hash = ?1")
            .and_then(|mut st| st.execute(params![hash.as_bytes().as_slice(), now_ms]))
            .map_err(self.err("update last_used"))?;
        Ok(n > 0)
    }

    fn err(&self, action: &'static str) -> impl FnOnce(rusqlite::Error) -> BlobError {
        sql_err(action, &self.path)
    }

    fn corrupt(&self, detail: String) -> BlobError {
        BlobError::CorruptIndex {
            path: self.path.clone(),
            detail,
        }
    }

    fn hash_from_sql(&self, bytes: Vec<u8>) -> Result<MediaHash, BlobError> {
        let len = bytes.len();
        <[u8; 32]>::try_from(bytes)
            .map(MediaHash::from_bytes)
            .map_err(|_| self.corrupt(format!("a hash of {len} bytes, expected 32")))
    }

    fn size_from_sql(&self, size: i64) -> Result<u64, BlobError> {
        u64::try_from(size).map_err(|_| self.corrupt(format!("a negative size {size}")))
    }
}

/// SQLite integers are signed; a blob of 8 EiB or more cannot be recorded.
fn size_to_sql(size: u64) -> Result<i64, BlobError> {
    i64::try_from(size).map_err(|_| BlobError::TooLarge {
        size,
        max: i64::MAX.unsigned_abs(),
    })
}

fn sql_err(action: &'static str, path: &Path) -> impl FnOnce(rusqlite::Error) -> BlobError {
    let path = path.to_path_buf();
    move |source| BlobError::Sqlite {
        action,
        path,
        source,
    }
}
