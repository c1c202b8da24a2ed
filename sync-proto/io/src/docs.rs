//! Live documents: a node's automerge documents in memory, persisted through [`DocDb`]
//! before anyone is told of a change, with a broadcast of every change.
//!
//! Central and hubs share this: sync sessions lock the documents they sync for one message
//! at a time ([`Documents::with_locked`]), local edits go through [`Documents::edit`], and
//! every durable change is announced on [`Documents::subscribe`] so that other sessions push
//! it to their peers and long-polls wake.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use automerge::{ActorId, AutoCommit, transaction::CommitOptions};
use taplink_sync_proto::note::ChangeNote;
use taplink_sync_proto::session::DocStore;
use taplink_sync_proto::wire::DocId;
use tokio::sync::broadcast;

use crate::docstore::{DocDb, DocDbError};

/// Who made a change: `LOCAL` for an API or CLI edit, otherwise the id of the connection
/// whose peer sent it (so that connection does not echo it back).
pub type Origin = u64;

/// The origin of edits made on this node itself.
pub const LOCAL: Origin = 0;

/// A durable change to a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocChange {
    /// The document.
    pub doc: DocId,
    /// Who made it.
    pub origin: Origin,
}

/// Why a document operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentsError {
    /// No such document on this node.
    #[error("document {0} does not exist here")]
    Unknown(DocId),
    /// The document already exists.
    #[error("document {0} already exists")]
    Exists(DocId),
    /// Storage failed; nothing was acknowledged.
    #[error(transparent)]
    Db(#[from] DocDbError),
}

/// Why an edit failed: the edit itself refused (nothing was changed) or storage failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EditError<E> {
    /// The edit refused; the document is unchanged.
    #[error(transparent)]
    Refused(E),
    /// The document is unknown or storage failed.
    #[error(transparent)]
    Documents(#[from] DocumentsError),
}

type Shared = Arc<Mutex<AutoCommit>>;

/// A node's documents. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Documents {
    db: Arc<DocDb>,
    actor: ActorId,
    docs: RwLock<BTreeMap<DocId, Shared>>,
    changes: broadcast::Sender<DocChange>,
}

fn lock(doc: &Shared) -> MutexGuard<'_, AutoCommit> {
    // A panic while a document was locked can only have happened between automerge calls;
    // automerge's own state stays consistent, so carry on with it.
    doc.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Documents {
    /// Load every document stored in `db`; this node's own changes carry `actor`
    /// (`taplink_sync_proto::note::node_actor` of the node's id).
    pub fn open(db: Arc<DocDb>, actor: ActorId) -> Result<Self, DocumentsError> {
        let mut docs = BTreeMap::new();
        for id in db.list()? {
            if let Some(mut am) = db.load(id)? {
                am.set_actor(actor.clone());
                docs.insert(id, Arc::new(Mutex::new(am)));
            }
        }
        let (changes, _) = broadcast::channel(1024);
        Ok(Self {
            db,
            actor,
            docs: RwLock::new(docs),
            changes,
        })
    }

    /// The database behind these documents.
    pub fn db(&self) -> &Arc<DocDb> {
        &self.db
    }

    /// The actor of this node's own changes.
    pub fn actor(&self) -> &ActorId {
        &self.actor
    }

    /// Store a new document (durably) and announce it.
    pub fn create(&self, doc: DocId, mut am: AutoCommit) -> Result<(), DocumentsError> {
        am.set_actor(self.actor.clone());
        let mut docs = self.docs.write().unwrap_or_else(PoisonError::into_inner);
        if docs.contains_key(&doc) {
            return Err(DocumentsError::Exists(doc));
        }
        self.db.create(doc, &mut am)?;
        docs.insert(doc, Arc::new(Mutex::new(am)));
        drop(docs);
        let _ = self.changes.send(DocChange { doc, origin: LOCAL });
        Ok(())
    }

    /// Whether this node holds the document.
    pub fn contains(&self, doc: DocId) -> bool {
        self.get(doc).is_some()
    }

    /// The ids of every document here.
    pub fn list(&self) -> Vec<DocId> {
        self.docs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect()
    }

    fn get(&self, doc: DocId) -> Option<Shared> {
        if let Some(shared) = self
            .docs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&doc)
        {
            return Some(shared.clone());
        }
        // Another process (the CLI) may have created it in the database since we loaded.
        let mut am = self.db.load(doc).ok().flatten()?;
        am.set_actor(self.actor.clone());
        let mut docs = self.docs.write().unwrap_or_else(PoisonError::into_inner);
        Some(
            docs.entry(doc)
                .or_insert_with(|| Arc::new(Mutex::new(am)))
                .clone(),
        )
    }

    /// Read a document (`&mut` because automerge closes its transaction to read heads).
    pub fn read<R>(
        &self,
        doc: DocId,
        f: impl FnOnce(&mut AutoCommit) -> R,
    ) -> Result<R, DocumentsError> {
        let shared = self.get(doc).ok_or(DocumentsError::Unknown(doc))?;
        let mut am = lock(&shared);
        Ok(f(&mut am))
    }

    /// Apply a local edit made by the node itself (no author): on `Ok` it is committed,
    /// stored durably and announced before this returns; on `Err` it is rolled back and
    /// nothing changed.
    pub fn edit<R, E>(
        &self,
        doc: DocId,
        f: impl FnOnce(&mut AutoCommit) -> Result<R, E>,
    ) -> Result<R, EditError<E>> {
        self.commit_edit(doc, CommitOptions::default(), f)
    }

    /// [`edit`](Self::edit) on someone's behalf: the change carries `note` as its message
    /// (and the note's time), so its author travels with it through sync.
    pub fn edit_noted<R, E>(
        &self,
        doc: DocId,
        note: &ChangeNote,
        f: impl FnOnce(&mut AutoCommit) -> Result<R, E>,
    ) -> Result<R, EditError<E>> {
        let options = CommitOptions::default()
            .with_message(note.to_message())
            .with_time(note.at_ms.div_euclid(1000));
        self.commit_edit(doc, options, f)
    }

    fn commit_edit<R, E>(
        &self,
        doc: DocId,
        options: CommitOptions,
        f: impl FnOnce(&mut AutoCommit) -> Result<R, E>,
    ) -> Result<R, EditError<E>> {
        let shared = self.get(doc).ok_or(DocumentsError::Unknown(doc))?;
        let mut am = lock(&shared);
        match f(&mut am) {
            Ok(value) => {
                am.commit_with(options);
                self.db.append(doc, &mut am).map_err(DocumentsError::from)?;
                drop(am);
                let _ = self.changes.send(DocChange { doc, origin: LOCAL });
                Ok(value)
            }
            Err(e) => {
                am.rollback();
                Err(EditError::Refused(e))
            }
        }
    }

    /// Make durable what a sync session applied to `doc`, then announce it. Call before
    /// sending anything that acknowledges the change to the peer.
    pub fn persist(&self, doc: DocId, origin: Origin) -> Result<(), DocumentsError> {
        let shared = self.get(doc).ok_or(DocumentsError::Unknown(doc))?;
        let mut am = lock(&shared);
        let written = self.db.append(doc, &mut am)?;
        drop(am);
        if written > 0 {
            let _ = self.changes.send(DocChange { doc, origin });
        }
        Ok(())
    }

    /// Compact every document whose appended changes outgrew its snapshot.
    pub fn compact_due(&self) -> Result<usize, DocumentsError> {
        let mut compacted = 0;
        for doc in self.list() {
            if let Some(shared) = self.get(doc) {
                let mut am = lock(&shared);
                if self.db.compact_if_due(doc, &mut am)?.is_some() {
                    compacted += 1;
                }
            }
        }
        Ok(compacted)
    }

    /// Until `cancel`: every `every`, compact the documents that are due, off the async
    /// workers (compaction writes a whole snapshot).
    pub async fn compact_periodically(
        self: Arc<Self>,
        every: std::time::Duration,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let docs = self.clone();
            match tokio::task::spawn_blocking(move || docs.compact_due()).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(documents = n, "compacted documents"),
                Ok(Err(e)) => tracing::warn!(error = %e, "document compaction failed; will retry"),
                Err(e) => tracing::warn!(error = %e, "document compaction task failed"),
            }
        }
    }

    /// Every durable change from now on. A receiver that lags behind gets
    /// `RecvError::Lagged` and should treat every document as changed.
    pub fn subscribe(&self) -> broadcast::Receiver<DocChange> {
        self.changes.subscribe()
    }

    /// Run `f` with these documents locked (in id order, so sessions never deadlock); the
    /// ones this node does not hold are absent from the store `f` sees.
    pub fn with_locked<R>(&self, ids: &[DocId], f: impl FnOnce(&mut LockedDocs<'_>) -> R) -> R {
        let mut wanted: Vec<DocId> = ids.to_vec();
        wanted.sort();
        wanted.dedup();
        let shared: Vec<(DocId, Shared)> = wanted
            .into_iter()
            .filter_map(|id| self.get(id).map(|s| (id, s)))
            .collect();
        let mut locked = LockedDocs {
            guards: shared.iter().map(|(id, s)| (*id, lock(s))).collect(),
        };
        f(&mut locked)
    }
}

/// Documents locked for one session step; a [`DocStore`] for [`taplink_sync_proto::session::Session`].
#[derive(Debug)]
pub struct LockedDocs<'a> {
    guards: BTreeMap<DocId, MutexGuard<'a, AutoCommit>>,
}

impl DocStore for LockedDocs<'_> {
    fn doc_mut(&mut self, id: DocId) -> Option<&mut AutoCommit> {
        self.guards.get_mut(&id).map(|g| &mut **g)
    }
}
