//! One sync connection's runtime, the same at both ends: central runs one per connected
//! hub, the hub one for its uplink.
//!
//! [`run`] starts, on the node's task tracker (so shutdown waits for a document append or a
//! blob write in progress), the session driver ([`crate::driver::drive`]) and the media
//! fetcher ([`crate::transfer::fetch_missing`]) for one QUIC connection, and returns a
//! [`Peer`]: the node awaits [`Peer::next`] for what concerns it (the peer's hello, sync
//! state, its application messages, the end) and sends its own messages with
//! [`Peer::send`]. Waking the fetcher whenever the venue document may have gained media —
//! the peer's changes, local edits, a quiescent point — happens here, once for both nodes.

use std::sync::Arc;

use taplink_sync_proto::wire::{DocId, Hello, Message};
use tokio::sync::{Notify, broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use crate::blobs::BlobStore;
use crate::docs::{DocChange, Documents};
use crate::driver::{AppLink, ConnectionParams, DriverEnd, Inbound, SyncState, drive};
use crate::transfer::{BlobPolicy, BlobServer, fetch_missing};

/// Messages the node may queue for the peer before [`Peer::send`] waits.
const OUTBOUND_QUEUE: usize = 16;
/// Driver reports waiting for the node.
const INBOUND_QUEUE: usize = 64;

/// Everything one connection needs besides the connection itself.
#[derive(Clone)]
pub struct PeerParams {
    /// The session (identities, documents, access) and how it is persisted.
    pub connection: ConnectionParams,
    /// The node's documents.
    pub docs: Arc<Documents>,
    /// The node's media.
    pub blobs: Arc<BlobStore>,
    /// Which of our blobs the peer may read.
    pub serve: BlobPolicy,
    /// The venue document whose media this side fetches from the peer.
    pub fetch_for: DocId,
    /// The venue's media quota at this side, if it enforces one on fetches.
    pub quota: Option<u64>,
    /// Called with the size of each blob fetched (metrics).
    pub on_fetched: Arc<dyn Fn(u64) + Send + Sync>,
}

impl std::fmt::Debug for PeerParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerParams")
            .field("connection", &self.connection)
            .field("fetch_for", &self.fetch_for)
            .field("quota", &self.quota)
            .finish_non_exhaustive()
    }
}

/// What the node hears from a connection.
#[derive(Debug)]
pub enum PeerEvent {
    /// The peer's hello was accepted: the session is established.
    Established(Hello),
    /// The documents' sync state with the peer changed (see [`SyncState`]).
    Sync(SyncState),
    /// A message for the node (telemetry, telemetry acks, the peer's refusals).
    Message(Message),
    /// The connection ended, for this reason; [`Peer::next`] returns nothing more.
    Ended(String),
}

/// A running connection; dropping it stops the driver and the fetcher.
#[derive(Debug)]
pub struct Peer {
    driver: Option<JoinHandle<DriverEnd>>,
    inbound: mpsc::Receiver<Inbound>,
    inbound_open: bool,
    outbound: mpsc::Sender<Message>,
    changes: broadcast::Receiver<DocChange>,
    blob_wake: Arc<Notify>,
    fetch_for: DocId,
    _stop: DropGuard,
}

/// Start the session driver and the media fetcher for `conn` on `tasks`; both stop when
/// `cancel` fires or the returned [`Peer`] is dropped.
pub fn run(
    conn: quinn::Connection,
    params: PeerParams,
    tasks: &TaskTracker,
    cancel: &CancellationToken,
) -> Peer {
    let (outbound, to_peer) = mpsc::channel(OUTBOUND_QUEUE);
    let (from_peer, inbound) = mpsc::channel(INBOUND_QUEUE);
    let cancel = cancel.child_token();
    let changes = params.docs.subscribe();
    let server = BlobServer::new(params.blobs.clone(), params.serve.clone());
    let driver = tasks.spawn(drive(
        conn.clone(),
        params.connection,
        params.docs.clone(),
        AppLink { to_peer, from_peer },
        Some(server),
        cancel.clone(),
    ));
    let blob_wake = Arc::new(Notify::new());
    let on_fetched = params.on_fetched;
    tasks.spawn(fetch_missing(
        conn,
        params.docs,
        params.fetch_for,
        params.blobs,
        blob_wake.clone(),
        cancel.clone(),
        params.quota,
        move |bytes| on_fetched(bytes),
    ));
    Peer {
        driver: Some(driver),
        inbound,
        inbound_open: true,
        outbound,
        changes,
        blob_wake,
        fetch_for: params.fetch_for,
        _stop: cancel.drop_guard(),
    }
}

impl Peer {
    /// The next event for the node. After [`PeerEvent::Ended`] it never returns.
    pub async fn next(&mut self) -> PeerEvent {
        loop {
            let Some(driver) = self.driver.as_mut() else {
                return std::future::pending().await;
            };
            tokio::select! {
                end = driver => {
                    self.driver = None;
                    return PeerEvent::Ended(match end {
                        Ok(end) => end.to_string(),
                        Err(e) => format!("sync driver failed: {e}"),
                    });
                }
                msg = self.inbound.recv(), if self.inbound_open => match msg {
                    Some(Inbound::Established(hello)) => {
                        self.blob_wake.notify_one();
                        return PeerEvent::Established(hello);
                    }
                    Some(Inbound::DocChanged(_)) => self.blob_wake.notify_one(),
                    Some(Inbound::Sync(state)) => {
                        self.blob_wake.notify_one();
                        return PeerEvent::Sync(state);
                    }
                    Some(Inbound::Message(msg)) => return PeerEvent::Message(msg),
                    // The driver is ending; its result follows.
                    None => self.inbound_open = false,
                },
                change = self.changes.recv() => {
                    // A local edit may have added media; a lagged receiver may have missed one.
                    let venue = self.fetch_for;
                    if matches!(change, Ok(c) if c.doc == venue)
                        || matches!(change, Err(broadcast::error::RecvError::Lagged(_)))
                    {
                        self.blob_wake.notify_one();
                    }
                }
            }
        }
    }

    /// Send `msg` to the peer on the control stream. `false` if the connection has ended.
    pub async fn send(&self, msg: Message) -> bool {
        self.outbound.send(msg).await.is_ok()
    }
}
