//! The durable store of CRDT documents and per-peer sync states, used by central and hubs.
//!
//! One SQLite file holds, per document, a compressed snapshot (`AutoCommit::save`) plus the
//! chunks of changes appended since (`docs` and `doc_changes`), and for each (peer, document)
//! the encoded automerge `sync::State` (`peer_states`). Appending is cheap (the new changes
//! only) and durable when it returns; [`DocDb::compact`] folds the chunks back into one
//! snapshot when [`CompactionPolicy`] says they have grown.
//!
//! **Why the store tracks the persisted heads itself.** automerge 0.12's
//! `AutoCommit::save_incremental()` returns the changes after a "save cursor", but
//! `AutoCommit::load` starts that cursor *empty*: the first `save_incremental()` after a load
//! returns the document's whole history, change by change, uncompressed (measured: 2.5 MB
//! after one edit of a 20,011-change venue document whose snapshot is 48 KB, where the new
//! change alone is 137 B; this is the "30x" of CRATE-NOTES). So the store does not
//! rely on the caller's cursor: `docs.heads` records the heads of everything the file
//! holds, and [`DocDb::append`] writes `am.save_after(those heads)`, which is exactly what
//! the file lacks whether `am` came from a load, a fork or a sync. The recorded heads are
//! also checked on load: a lost chunk cannot go unnoticed.
//!
//! **Strict loading.** `load_incremental` logs and skips a chunk tail it cannot parse, so
//! the store parses each chunk itself (automerge's chunk framing, then `Change::try_from`
//! and the header checksum per change) and fails naming the document and the chunk's `seq`.
//!
//! **Durability.** WAL with `synchronous=FULL`: a hub acknowledges changes to its peer once
//! they are stored, so a returned [`DocDb::append`] must survive power loss. Compaction is
//! one transaction, so a crash leaves either the old snapshot and chunks or the new
//! snapshot, never a mix.
//!
//! **Blocking API.** One connection behind a mutex; every method blocks on SQLite (and an
//! fsync for writes). Async callers run it in `tokio::task::spawn_blocking`, or call it
//! directly where a few milliseconds of blocking is acceptable. The costly CPU work
//! (`save()`, parsing chunks) runs outside the mutex.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use automerge::{AutoCommit, AutomergeError, Change, ChangeHash, ReadDoc as _};
use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};
use taplink_sync_proto::clock::{Clock, SystemClock};
use taplink_sync_proto::wire::DocId;

/// Schema migrations; entry `i` takes the database from `user_version` `i` to `i + 1`.
///
/// Append only: a shipped migration is never edited, since databases in the field have
/// already run it.
const MIGRATIONS: &[&str] = &[
    // 1: documents as snapshot + appended chunks, and per-peer sync states.
    //
    // `heads` is the concatenation of the 32-byte hashes covering everything stored for the
    // document (snapshot and chunks); see the module docs for why the store keeps it.
    // `peer_states` has no foreign key to `docs`: a replica saves its sync state during the
    // first sync of a document, before it has stored the document.
    "CREATE TABLE docs (
        doc TEXT PRIMARY KEY NOT NULL,
        snapshot BLOB NOT NULL,
        snapshot_changes INTEGER NOT NULL,
        heads BLOB NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE doc_changes (
        doc TEXT NOT NULL REFERENCES docs(doc) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (doc, seq)
    ) STRICT;
    CREATE TABLE peer_states (
        peer TEXT NOT NULL,
        doc TEXT NOT NULL,
        state BLOB NOT NULL,
        PRIMARY KEY (peer, doc)
    ) STRICT;",
];

/// The schema version this build writes: the number of migrations.
// The list holds a handful of entries; the cast cannot truncate.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Largest WAL file kept after a checkpoint, so one burst of writes does not leave a large
/// file behind for good.
const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// The four bytes that open every automerge storage chunk.
const CHUNK_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

/// Bytes in an automerge change hash.
const HASH_LEN: usize = 32;

/// Why a [`DocDb`] operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DocDbError {
    /// SQLite failed; `action` says what the store was doing.
    #[error("document store: {action}: {source}")]
    Sqlite {
        /// What the store was doing, e.g. "append a chunk".
        action: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// [`DocDb::create`] was called for a document the store already holds.
    #[error("document {0} is already stored; load it instead of creating it")]
    Exists(DocId),
    /// An operation that needs a stored document was given one the store does not hold.
    #[error("document {0} is not stored; create it first")]
    NotFound(DocId),
    /// A stored document does not load. `seq` names the chunk (`doc_changes.seq`) when one
    /// chunk is at fault; `None` means the snapshot or the document as a whole.
    #[error("document {doc} does not load{}: {source}", describe_seq(.seq))]
    Load {
        /// The document.
        doc: DocId,
        /// The failing chunk, or `None` for the snapshot / the whole document.
        seq: Option<u64>,
        /// What is wrong with the stored data.
        #[source]
        source: StoredDataError,
    },
    /// The database could not be opened: not WAL, a newer schema, a failed migration, ….
    #[error("document store: {0}")]
    Open(#[from] crate::sqlite::OpenError),
    /// A stored document id is neither `org` nor `venue/<id>`.
    #[error("stored document id {0:?} is neither `org` nor `venue/<id>`")]
    BadDocId(String),
    /// [`DocDb::compact`] was given a document that lacks changes the store holds;
    /// replacing the stored state by its snapshot would lose them.
    #[error(
        "refusing to compact {doc}: the given document lacks {missing} stored head(s); \
         load the stored document and merge it first"
    )]
    MissingChanges {
        /// The document.
        doc: DocId,
        /// How many stored heads the given document lacks.
        missing: usize,
    },
}

/// What is wrong with a stored document's bytes (the source of [`DocDbError::Load`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoredDataError {
    /// automerge rejected the snapshot.
    #[error("snapshot: {0}")]
    Snapshot(#[source] Box<AutomergeError>),
    /// The chunk is not a run of whole automerge change chunks (bad magic bytes, a length
    /// running past the end, an empty chunk).
    #[error("chunk framing at byte {offset}: {reason}")]
    Framing {
        /// Byte offset in the chunk.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A change in the chunk does not parse.
    #[error("change at byte {offset}: {source}")]
    Change {
        /// Byte offset of the change in the chunk.
        offset: usize,
        /// automerge's parse error.
        #[source]
        source: automerge::LoadChangeError,
    },
    /// A change's bytes do not match the checksum in its header.
    #[error("change at byte {offset} fails its checksum")]
    Checksum {
        /// Byte offset of the change in the chunk.
        offset: usize,
    },
    /// automerge refused to apply the chunk's changes.
    #[error("changes do not apply: {0}")]
    Apply(#[source] Box<AutomergeError>),
    /// After every chunk was applied, changes that the recorded heads or the stored
    /// changes depend on are still absent: a chunk was lost.
    #[error("{0} change(s) the stored heads depend on are absent (a lost chunk?)")]
    Incomplete(usize),
    /// The recorded heads are not a whole number of 32-byte hashes.
    #[error("recorded heads are {0} bytes, not a multiple of 32")]
    BadHeads(usize),
}

fn describe_seq(seq: &Option<u64>) -> String {
    match seq {
        Some(seq) => format!(" at chunk seq {seq}"),
        None => String::new(),
    }
}

/// When [`DocDb::compaction_due`] says a document's chunks should be folded into a snapshot.
///
/// Compaction is due when there are more than `max_chunks` chunks, or when the chunks hold
/// more bytes than `max(snapshot bytes, min_chunk_bytes)`. The count bounds the rows and
/// per-chunk work of a load; the byte rule keeps the chunks (uncompressed changes) from
/// outgrowing the compressed snapshot, while the floor stops a small document from being
/// rewritten after every few edits. Compacting costs one `save()` of the whole document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionPolicy {
    /// Most chunks kept before compacting. Default 256.
    pub max_chunks: u64,
    /// Chunk bytes always tolerated, however small the snapshot. Default 64 KiB.
    pub min_chunk_bytes: u64,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        Self {
            max_chunks: 256,
            min_chunk_bytes: 64 * 1024,
        }
    }
}

impl CompactionPolicy {
    /// Whether a document with these stats should be compacted.
    pub fn is_due(&self, stats: &DocStats) -> bool {
        stats.chunks > self.max_chunks
            || stats.chunk_bytes > stats.snapshot_bytes.max(self.min_chunk_bytes)
    }
}

/// The stored size of one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocStats {
    /// Bytes of the snapshot.
    pub snapshot_bytes: u64,
    /// Changes the snapshot holds.
    pub snapshot_changes: u64,
    /// Chunks appended since the snapshot.
    pub chunks: u64,
    /// Bytes of those chunks.
    pub chunk_bytes: u64,
    /// Last write to the document, milliseconds since the Unix epoch (this machine's clock).
    pub updated_at_ms: i64,
}

/// What one compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactStats {
    /// Snapshot bytes before.
    pub old_snapshot_bytes: u64,
    /// Chunks removed.
    pub chunks_removed: u64,
    /// Bytes of the chunks removed.
    pub chunk_bytes_removed: u64,
    /// Snapshot bytes after.
    pub new_snapshot_bytes: u64,
}

/// The durable store of documents and per-peer sync states; see the module docs.
#[derive(Debug)]
pub struct DocDb {
    conn: Mutex<Connection>,
    policy: CompactionPolicy,
    /// Where `updated_at` is read.
    clock: Arc<dyn Clock>,
}

impl DocDb {
    /// Opens (creating if absent) the store at `path` with the default [`CompactionPolicy`],
    /// applying any pending schema migrations.
    pub fn open(path: &Path) -> Result<DocDb, DocDbError> {
        Self::open_with(path, CompactionPolicy::default())
    }

    /// Opens the store at `path` with the given compaction policy.
    pub fn open_with(path: &Path, policy: CompactionPolicy) -> Result<DocDb, DocDbError> {
        let options = crate::sqlite::Options {
            journal_size_limit: JOURNAL_SIZE_LIMIT,
            foreign_keys: true,
            ..crate::sqlite::Options::default()
        };
        let conn = crate::sqlite::open(path, MIGRATIONS, &options)?;
        Ok(DocDb {
            conn: Mutex::new(conn),
            policy,
            clock: SystemClock::shared(),
        })
    }

    /// The same store, reading `updated_at` from `clock` (the node's) rather than the
    /// system clock.
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> DocDb {
        DocDb { clock, ..self }
    }

    /// The compaction policy in force.
    pub fn policy(&self) -> CompactionPolicy {
        self.policy
    }

    /// Stores a brand-new document: its full save becomes the snapshot.
    ///
    /// Fails with [`DocDbError::Exists`] if the store already holds `doc`.
    pub fn create(&self, doc: DocId, am: &mut AutoCommit) -> Result<(), DocDbError> {
        let snapshot = am.save();
        let heads = encode_heads(&am.get_heads());
        let changes = am.stats().num_changes;
        let key = doc.to_string();
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite("begin create"))?;
        let exists = tx
            .query_row("SELECT 1 FROM docs WHERE doc = ?1", [&key], |_| Ok(()))
            .optional()
            .map_err(sqlite("look up a document"))?
            .is_some();
        if exists {
            return Err(DocDbError::Exists(doc));
        }
        tx.execute(
            "INSERT INTO docs (doc, snapshot, snapshot_changes, heads, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![key, snapshot, to_i64(changes), heads, self.now_ms()],
        )
        .map_err(sqlite("insert a document"))?;
        tx.commit().map_err(sqlite("commit create"))?;
        tracing::debug!(%doc, snapshot_bytes = snapshot.len(), "created document");
        Ok(())
    }

    /// Loads the snapshot and every appended chunk into an [`AutoCommit`]; `None` if the
    /// store does not hold `doc`.
    ///
    /// Any chunk that fails to parse or apply is an error naming the document and the
    /// chunk's `seq`; nothing is skipped. After loading, every recorded head and every
    /// dependency must be present, or the load fails with [`StoredDataError::Incomplete`].
    pub fn load(&self, doc: DocId) -> Result<Option<AutoCommit>, DocDbError> {
        let key = doc.to_string();
        let (snapshot, heads, chunks) = {
            let mut conn = self.lock();
            // One read transaction so the snapshot and the chunks belong together.
            let tx = conn.transaction().map_err(sqlite("begin load"))?;
            let row: Option<(Vec<u8>, Vec<u8>)> = tx
                .query_row(
                    "SELECT snapshot, heads FROM docs WHERE doc = ?1",
                    [&key],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(sqlite("read a snapshot"))?;
            let Some((snapshot, heads)) = row else {
                return Ok(None);
            };
            let chunks = {
                let mut stmt = tx
                    .prepare_cached("SELECT seq, data FROM doc_changes WHERE doc = ?1 ORDER BY seq")
                    .map_err(sqlite("read chunks"))?;
                stmt.query_map([&key], |row| Ok((row.get::<_, i64>(0)?, row.get(1)?)))
                    .map_err(sqlite("read chunks"))?
                    .collect::<Result<Vec<(i64, Vec<u8>)>, _>>()
                    .map_err(sqlite("read chunks"))?
            };
            tx.commit().map_err(sqlite("end load"))?;
            (snapshot, heads, chunks)
        };
        let fail = |seq: Option<i64>, source| DocDbError::Load {
            doc,
            seq: seq.map(|s| s.unsigned_abs()),
            source,
        };
        let heads = decode_heads(&heads).map_err(|e| fail(None, e))?;
        let mut am = AutoCommit::load(&snapshot)
            .map_err(|e| fail(None, StoredDataError::Snapshot(Box::new(e))))?;
        for (seq, data) in chunks {
            let changes = parse_chunk(&data).map_err(|e| fail(Some(seq), e))?;
            am.apply_changes(changes)
                .map_err(|e| fail(Some(seq), StoredDataError::Apply(Box::new(e))))?;
        }
        // Reports the recorded heads the document lacks, plus the missing dependencies of
        // changes automerge holds back for want of them.
        let missing = am.get_missing_deps(&heads);
        if !missing.is_empty() {
            return Err(fail(None, StoredDataError::Incomplete(missing.len())));
        }
        Ok(Some(am))
    }

    /// Persists whatever `am` holds that the store does not, as one chunk; returns the bytes
    /// written (0, and nothing written, when there is nothing new). Durable when it returns.
    ///
    /// "What the store does not hold" is computed from the heads the store recorded, not
    /// from `am`'s save cursor (see the module docs), so `am` may come from [`Self::load`],
    /// a fork or a sync, and may even lack stored changes: nothing stored is lost.
    pub fn append(&self, doc: DocId, am: &mut AutoCommit) -> Result<usize, DocDbError> {
        let key = doc.to_string();
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite("begin append"))?;
        let stored = stored_heads(&tx, doc, &key)?;
        let bytes = am.save_after(&stored);
        if bytes.is_empty() {
            return Ok(0);
        }
        // The new record must cover both what `am` holds and any stored head it lacks
        // (possible only if `am` is a stale replica).
        let mut covered = absent_from(am, &stored);
        covered.extend(am.get_heads());
        covered.sort_unstable();
        covered.dedup();
        let seq: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM doc_changes WHERE doc = ?1",
                [&key],
                |row| row.get(0),
            )
            .map_err(sqlite("number a chunk"))?;
        tx.execute(
            "INSERT INTO doc_changes (doc, seq, data) VALUES (?1, ?2, ?3)",
            params![key, seq, bytes],
        )
        .map_err(sqlite("append a chunk"))?;
        tx.execute(
            "UPDATE docs SET heads = ?2, updated_at = ?3 WHERE doc = ?1",
            params![key, encode_heads(&covered), self.now_ms()],
        )
        .map_err(sqlite("record heads"))?;
        tx.commit().map_err(sqlite("commit append"))?;
        tracing::trace!(%doc, seq, bytes = bytes.len(), "appended chunk");
        Ok(bytes.len())
    }

    /// Replaces the snapshot and every chunk by one fresh snapshot of `am` (`am.save()`) in
    /// one transaction: a crash leaves either the old state or the new one.
    ///
    /// The new snapshot also persists anything `am` holds that was not yet appended. Fails
    /// with [`DocDbError::MissingChanges`] (changing nothing) if `am` lacks a stored change.
    pub fn compact(&self, doc: DocId, am: &mut AutoCommit) -> Result<CompactStats, DocDbError> {
        // The O(document) work happens before taking the lock; `am` is borrowed mutably,
        // so it cannot change between this save and the check below.
        let snapshot = am.save();
        let heads = am.get_heads();
        let changes = am.stats().num_changes;
        let key = doc.to_string();
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite("begin compact"))?;
        let stored = stored_heads(&tx, doc, &key)?;
        let missing = absent_from(am, &stored).len();
        if missing > 0 {
            return Err(DocDbError::MissingChanges { doc, missing });
        }
        let before = read_stats(&tx, &key)?.ok_or(DocDbError::NotFound(doc))?;
        tx.execute("DELETE FROM doc_changes WHERE doc = ?1", [&key])
            .map_err(sqlite("delete compacted chunks"))?;
        tx.execute(
            "UPDATE docs SET snapshot = ?2, snapshot_changes = ?3, heads = ?4, updated_at = ?5
             WHERE doc = ?1",
            params![
                key,
                snapshot,
                to_i64(changes),
                encode_heads(&heads),
                self.now_ms()
            ],
        )
        .map_err(sqlite("write a snapshot"))?;
        tx.commit().map_err(sqlite("commit compact"))?;
        let stats = CompactStats {
            old_snapshot_bytes: before.snapshot_bytes,
            chunks_removed: before.chunks,
            chunk_bytes_removed: before.chunk_bytes,
            new_snapshot_bytes: snapshot.len() as u64,
        };
        tracing::debug!(%doc, ?stats, "compacted document");
        Ok(stats)
    }

    /// Whether the policy says `doc` should be compacted ([`CompactionPolicy::is_due`]);
    /// `false` for a document the store does not hold.
    pub fn compaction_due(&self, doc: DocId) -> Result<bool, DocDbError> {
        Ok(self
            .stats(doc)?
            .is_some_and(|stats| self.policy.is_due(&stats)))
    }

    /// Compacts `doc` from `am` if [`Self::compaction_due`]; for a background task that
    /// calls it after appends. `None` when nothing was due.
    pub fn compact_if_due(
        &self,
        doc: DocId,
        am: &mut AutoCommit,
    ) -> Result<Option<CompactStats>, DocDbError> {
        if self.compaction_due(doc)? {
            self.compact(doc, am).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Every stored document, in [`DocId`] order.
    pub fn list(&self) -> Result<Vec<DocId>, DocDbError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT doc FROM docs")
            .map_err(sqlite("list documents"))?;
        let keys = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(sqlite("list documents"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sqlite("list documents"))?;
        let mut docs = keys
            .into_iter()
            .map(|k| parse_doc_id(&k))
            .collect::<Result<Vec<_>, _>>()?;
        docs.sort_unstable();
        Ok(docs)
    }

    /// The stored size of `doc`; `None` if the store does not hold it.
    pub fn stats(&self, doc: DocId) -> Result<Option<DocStats>, DocDbError> {
        let conn = self.lock();
        read_stats(&conn, &doc.to_string())
    }

    /// Stores (replacing any previous one) `peer`'s sync state for `doc`: the bytes of
    /// automerge's `sync::State::encode()`. `peer` is a hub id, `"central"`, etc.
    pub fn save_peer_state(&self, peer: &str, doc: DocId, state: &[u8]) -> Result<(), DocDbError> {
        let conn = self.lock();
        conn.prepare_cached(
            "INSERT INTO peer_states (peer, doc, state) VALUES (?1, ?2, ?3)
             ON CONFLICT (peer, doc) DO UPDATE SET state = excluded.state",
        )
        .and_then(|mut stmt| stmt.execute(params![peer, doc.to_string(), state]))
        .map_err(sqlite("save a peer state"))?;
        Ok(())
    }

    /// Every sync state stored for `peer`, by document.
    pub fn peer_states(&self, peer: &str) -> Result<BTreeMap<DocId, Vec<u8>>, DocDbError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT doc, state FROM peer_states WHERE peer = ?1")
            .map_err(sqlite("read peer states"))?;
        let rows = stmt
            .query_map([peer], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?))
            })
            .map_err(sqlite("read peer states"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sqlite("read peer states"))?;
        rows.into_iter()
            .map(|(key, state)| Ok((parse_doc_id(&key)?, state)))
            .collect()
    }

    fn now_ms(&self) -> i64 {
        // A clock before 1970 is a broken clock; 0 records "unknown" rather than failing a write.
        self.clock.now().timestamp_millis().max(0)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while the mutex was held happened inside a rusqlite call or with a
        // `Transaction` alive, whose drop rolls back; the connection stays consistent, so
        // the poison flag carries nothing worth failing for.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn stored_heads(conn: &Connection, doc: DocId, key: &str) -> Result<Vec<ChangeHash>, DocDbError> {
    let bytes: Vec<u8> = conn
        .query_row("SELECT heads FROM docs WHERE doc = ?1", [key], |row| {
            row.get(0)
        })
        .optional()
        .map_err(sqlite("read heads"))?
        .ok_or(DocDbError::NotFound(doc))?;
    decode_heads(&bytes).map_err(|source| DocDbError::Load {
        doc,
        seq: None,
        source,
    })
}

fn read_stats(conn: &Connection, key: &str) -> Result<Option<DocStats>, DocDbError> {
    // length() of a BLOB reads the record header only, not the bytes.
    conn.query_row(
        "SELECT length(d.snapshot), d.snapshot_changes, d.updated_at,
                (SELECT COUNT(*) FROM doc_changes c WHERE c.doc = d.doc),
                (SELECT COALESCE(SUM(length(c.data)), 0) FROM doc_changes c WHERE c.doc = d.doc)
         FROM docs d WHERE d.doc = ?1",
        [key],
        |row| {
            Ok(DocStats {
                snapshot_bytes: row.get::<_, i64>(0)?.unsigned_abs(),
                snapshot_changes: row.get::<_, i64>(1)?.unsigned_abs(),
                updated_at_ms: row.get(2)?,
                chunks: row.get::<_, i64>(3)?.unsigned_abs(),
                chunk_bytes: row.get::<_, i64>(4)?.unsigned_abs(),
            })
        },
    )
    .optional()
    .map_err(sqlite("read document stats"))
}

/// The hashes among `hashes` that `am` does not hold.
fn absent_from(am: &mut AutoCommit, hashes: &[ChangeHash]) -> Vec<ChangeHash> {
    hashes
        .iter()
        .filter(|h| am.get_change_meta_by_hash(h).is_none())
        .copied()
        .collect()
}

/// Splits a chunk written by [`DocDb::append`] (concatenated automerge change chunks)
/// into changes, strictly: any framing, parse or checksum failure is an error.
///
/// Each change chunk is: 4 magic bytes, a 4-byte checksum (the first bytes of the change's
/// SHA-256 hash), a 1-byte chunk type, a ULEB128 length, then that many bytes.
fn parse_chunk(data: &[u8]) -> Result<Vec<Change>, StoredDataError> {
    if data.is_empty() {
        return Err(StoredDataError::Framing {
            offset: 0,
            reason: "empty chunk",
        });
    }
    let mut changes = Vec::new();
    let mut offset = 0;
    while offset < data.len() {
        let rest = &data[offset..];
        let framing = |reason| StoredDataError::Framing { offset, reason };
        if rest.len() < 9 {
            return Err(framing("truncated change header"));
        }
        if rest[..4] != CHUNK_MAGIC {
            return Err(framing("missing automerge magic bytes"));
        }
        let (len, len_bytes) = read_uleb128(&rest[9..]).ok_or(framing("bad length field"))?;
        let end = len
            .checked_add(9 + len_bytes)
            .filter(|&end| end <= rest.len())
            .ok_or(framing("change runs past the end of the chunk"))?;
        let piece = &rest[..end];
        let change =
            Change::try_from(piece).map_err(|source| StoredDataError::Change { offset, source })?;
        // `Change::try_from` does not verify the header checksum; a flipped bit would
        // otherwise load as a different change.
        if piece[4..8] != change.hash().0[..4] {
            return Err(StoredDataError::Checksum { offset });
        }
        changes.push(change);
        offset += end;
    }
    Ok(changes)
}

/// Reads an unsigned LEB128 number; returns it and the bytes it took, or `None` if it is
/// unterminated or does not fit a `usize`.
fn read_uleb128(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut value: u64 = 0;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        let low = u64::from(byte & 0x7f);
        let shift = 7 * u32::try_from(i).ok()?;
        let shifted = low.checked_shl(shift)?;
        if shifted >> shift != low {
            return None;
        }
        value |= shifted;
        if byte & 0x80 == 0 {
            return Some((usize::try_from(value).ok()?, i + 1));
        }
    }
    None
}

fn encode_heads(heads: &[ChangeHash]) -> Vec<u8> {
    heads.iter().flat_map(|h| h.0).collect()
}

fn decode_heads(bytes: &[u8]) -> Result<Vec<ChangeHash>, StoredDataError> {
    if !bytes.len().is_multiple_of(HASH_LEN) {
        return Err(StoredDataError::BadHeads(bytes.len()));
    }
    Ok(bytes
        .chunks_exact(HASH_LEN)
        .map(|c| {
            let mut hash = [0u8; HASH_LEN];
            hash.copy_from_slice(c);
            ChangeHash(hash)
        })
        .collect())
}

fn parse_doc_id(key: &str) -> Result<DocId, DocDbError> {
    key.parse()
        .map_err(|_| DocDbError::BadDocId(key.chars().take(64).collect()))
}

fn sqlite(action: &'static str) -> impl FnOnce(rusqlite::Error) -> DocDbError {
    move |source| DocDbError::Sqlite { action, source }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use automerge::ROOT;
    use automerge::transaction::Transactable as _;

    use super::*;

    /// A document with `n` changes, each setting one key.
    fn doc_with_changes(n: usize) -> AutoCommit {
        let mut am = AutoCommit::new();
        for i in 0..n {
            am.put(ROOT, format!("k{}", i % 7), i as i64).unwrap();
            am.commit();
        }
        am
    }

    #[test]
    fn uleb128_reads_lengths_and_rejects_bad_ones() {
        assert_eq!(read_uleb128(&[0x00]), Some((0, 1)));
        assert_eq!(read_uleb128(&[0x7f, 0xaa]), Some((127, 1)));
        assert_eq!(read_uleb128(&[0xe5, 0x8e, 0x26]), Some((624_485, 3)));
        // Unterminated.
        assert_eq!(read_uleb128(&[0x80, 0x80]), None);
        assert_eq!(read_uleb128(&[]), None);
        // More than 64 bits.
        assert_eq!(
            read_uleb128(&[0xff; 9].iter().chain(&[0x7f]).copied().collect::<Vec<_>>()),
            None
        );
    }

    #[test]
    fn parse_chunk_splits_what_save_after_writes() {
        let mut am = doc_with_changes(3);
        let heads = am.get_heads();
        let mut more = am.fork();
        for i in 0..5 {
            more.put(ROOT, "x", i).unwrap();
            more.commit();
        }
        am.merge(&mut more).unwrap();
        let bytes = am.save_after(&heads);
        let changes = parse_chunk(&bytes).unwrap();
        assert_eq!(changes.len(), 5);
        let expected: Vec<_> = am.get_changes(&heads).iter().map(Change::hash).collect();
        let got: Vec<_> = changes.iter().map(Change::hash).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn parse_chunk_rejects_bad_framing_and_checksums() {
        let mut am = doc_with_changes(2);
        let one = am.save_after(&[]);
        let first_len = parse_chunk(&one).unwrap()[0].raw_bytes().len();

        let framing = |data: &[u8]| match parse_chunk(data) {
            Err(StoredDataError::Framing { offset, .. }) => offset,
            other => panic!("expected a framing error, got {other:?}"),
        };
        assert_eq!(framing(&[]), 0);
        assert_eq!(framing(b"not a change at all"), 0);
        // Cut inside the second change: the first parses, the second runs past the end.
        assert_eq!(framing(&one[..one.len() - 3]), first_len);
        // Trailing bytes after whole changes.
        let mut trailing = one.clone();
        trailing.extend_from_slice(&[0x85, 0x6f]);
        assert_eq!(framing(&trailing), one.len());

        let mut bad_sum = one.clone();
        bad_sum[5] ^= 0xff;
        assert!(matches!(
            parse_chunk(&bad_sum),
            Err(StoredDataError::Checksum { offset: 0 })
        ));
    }

    #[test]
    fn heads_encode_and_decode() {
        let mut am = doc_with_changes(2);
        let mut other = am.fork();
        am.put(ROOT, "a", 1).unwrap();
        other.put(ROOT, "b", 2).unwrap();
        am.merge(&mut other).unwrap();
        let heads = am.get_heads();
        assert_eq!(heads.len(), 2);
        assert_eq!(decode_heads(&encode_heads(&heads)).unwrap(), heads);
        assert!(decode_heads(&[]).unwrap().is_empty());
        assert!(matches!(
            decode_heads(&[0; 33]),
            Err(StoredDataError::BadHeads(33))
        ));
    }

    /// The automerge behaviour this module is designed around: after `AutoCommit::load`, the
    /// save cursor is empty and `save_incremental()` returns every change in the document.
    /// If automerge starts placing the cursor at the loaded heads, this fails and the
    /// module docs need revisiting (the store stays correct either way).
    #[test]
    fn save_incremental_after_load_is_whole_history() {
        let mut am = doc_with_changes(50);
        let saved = am.save();
        let mut loaded = AutoCommit::load(&saved).unwrap();
        let before = loaded.get_heads();
        loaded.put(ROOT, "new", 1).unwrap();
        loaded.commit();
        let incremental = loaded.save_incremental();
        assert_eq!(parse_chunk(&incremental).unwrap().len(), 51);
        assert_eq!(parse_chunk(&loaded.save_after(&before)).unwrap().len(), 1);
        // Once called, the cursor does advance.
        loaded.put(ROOT, "newer", 2).unwrap();
        loaded.commit();
        assert_eq!(parse_chunk(&loaded.save_incremental()).unwrap().len(), 1);
    }

    #[test]
    fn policy_applies_both_rules() {
        let policy = CompactionPolicy::default();
        let stats = |snapshot_bytes, chunks, chunk_bytes| DocStats {
            snapshot_bytes,
            snapshot_changes: 0,
            chunks,
            chunk_bytes,
            updated_at_ms: 0,
        };
        assert!(!policy.is_due(&stats(1000, 256, 60_000)));
        assert!(policy.is_due(&stats(1000, 257, 100)));
        // Below the 64 KiB floor a small snapshot does not trigger compaction...
        assert!(!policy.is_due(&stats(1000, 10, 65_536)));
        assert!(policy.is_due(&stats(1000, 10, 65_537)));
        // ...and above it the snapshot size is the bar.
        assert!(!policy.is_due(&stats(1_000_000, 10, 1_000_000)));
        assert!(policy.is_due(&stats(1_000_000, 10, 1_000_001)));
    }

    #[test]
    fn load_error_names_doc_and_seq() {
        let doc: DocId = "org".parse().unwrap();
        let err = DocDbError::Load {
            doc,
            seq: Some(7),
            source: StoredDataError::Checksum { offset: 3 },
        };
        assert_eq!(
            err.to_string(),
            "document org does not load at chunk seq 7: change at byte 3 fails its checksum"
        );
        let err = DocDbError::Load {
            doc,
            seq: None,
            source: StoredDataError::Incomplete(2),
        };
        assert_eq!(
            err.to_string(),
            "document org does not load: 2 change(s) the stored heads depend on are absent \
             (a lost chunk?)"
        );
    }
}
