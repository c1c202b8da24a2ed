//! The session driver: runs one [`Session`] over one QUIC connection.
//!
//! Streams: the dialing side (the hub) opens one bidirectional *control* stream and both
//! sides send `Hello`, `Changed`, telemetry and `Error` frames on it. Each side sends the
//! sync messages of each document on a unidirectional stream of its own, opened on first
//! use, so a large initial sync never blocks telemetry or another document. Bidirectional
//! streams after the control stream are blob transfers, served by [`crate::transfer`].
//!
//! Order of work for every received frame: hand it to the session; make every change it
//! applied durable ([`Documents::persist`]) and persist the per-peer sync state; only then
//! send what the session queued. So nothing leaves this process that acknowledges a change
//! which is not yet on disk.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use taplink_sync_proto::session::{DocStore, Event, Session, SessionConfig};
use taplink_sync_proto::wire::{ChangeHash, DocId, ErrorCode, Hello, MAX_FRAME_LEN, Message};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::docs::{Documents, Origin};
use crate::frames::{FrameError, FrameReader, write_frame};
use crate::transfer::BlobServer;

/// How often a sync that is not yet complete logs its progress.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// A connection from which no datagram arrived for this long is dead. QUIC keep-alives
/// ([`crate::net::KEEP_ALIVE`]) are the probe: a live peer acknowledges one within a round
/// trip, so silence over several keep-alive intervals means the path is gone. Without this
/// check a cut link is noticed only at the QUIC idle timeout, and the node's status would
/// claim a connection that no longer exists for that long.
pub const DEAD_AFTER: std::time::Duration = std::time::Duration::from_secs(6);

/// How often the driver checks that the peer is still heard.
const LIVENESS_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Frames from all of a connection's receive streams wait here for the driver; a full
/// queue stops the readers, and QUIC flow control then slows the peer.
const INBOUND_QUEUE: usize = 256;

/// What the driver needs to know about one connection.
#[derive(Debug, Clone)]
pub struct ConnectionParams {
    /// The session's configuration (identities, documents and access).
    pub session: SessionConfig,
    /// Key under which per-peer sync states are persisted (the hub id, or `central`).
    pub peer_key: String,
    /// This connection's origin for change notifications (non-zero, unique per connection).
    pub origin: Origin,
    /// Whether we dialed (and so open the control stream).
    pub dialer: bool,
}

/// What the driver tells its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// The peer's hello was accepted.
    Established(Hello),
    /// A message for the owner (telemetry, telemetry acks, peer errors).
    Message(Message),
    /// A document received changes from the peer (already durable).
    DocChanged(DocId),
    /// Whether the documents are in sync with the peer changed, or they reached new common
    /// heads (a quiescent point).
    Sync(SyncState),
}

/// Where a connection's documents stand with the peer.
///
/// `synced` is proven, not assumed: the peer's last advertised heads of every document are
/// ours and no reply is outstanding, so both sides hold exactly `heads`. It turns false as
/// soon as either side changes a document, and stays false until the peer acknowledges the
/// change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncState {
    /// Both sides acknowledged the same heads of every document.
    pub synced: bool,
    /// The heads both sides acknowledged at the last quiescent point (empty before the first).
    pub heads: BTreeMap<DocId, Vec<ChangeHash>>,
}

/// The owner's side of a connection.
#[derive(Debug)]
pub struct AppLink {
    /// Messages the owner wants sent on the control stream (telemetry batches, acks).
    pub to_peer: mpsc::Receiver<Message>,
    /// Where the driver reports to the owner.
    pub from_peer: mpsc::Sender<Inbound>,
}

/// How a connection ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum DriverEnd {
    /// Our owner cancelled it.
    Cancelled,
    /// The session closed (handshake timeout, identity or version mismatch).
    SessionClosed {
        /// The code.
        code: ErrorCode,
        /// The sentence.
        reason: String,
    },
    /// The connection or a stream failed, or the peer broke framing.
    Failed(String),
}

impl std::fmt::Display for DriverEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DriverEnd::Cancelled => f.write_str("cancelled"),
            DriverEnd::SessionClosed { code, reason } => {
                write!(f, "session closed ({code:?}): {reason}")
            }
            DriverEnd::Failed(why) => write!(f, "connection failed: {why}"),
        }
    }
}

/// Run the sync protocol on `conn` until it ends. Blob requests from the peer are served
/// by `blobs` if given.
pub async fn drive(
    conn: quinn::Connection,
    params: ConnectionParams,
    docs: Arc<Documents>,
    mut app: AppLink,
    blobs: Option<BlobServer>,
    cancel: CancellationToken,
) -> DriverEnd {
    let (inbound_tx, mut inbound) = mpsc::channel::<Result<Message, FrameError>>(INBOUND_QUEUE);
    let mut changes = docs.subscribe();
    let readers = CancellationToken::new();
    let _stop_readers = readers.clone().drop_guard();

    // The control stream: the dialer opens it (the peer sees it with our hello); the
    // listener learns it from the acceptor, which tells streams apart by their first frame
    // (`Hello` for control, `BlobRequest` for a blob transfer).
    let (control_tx, control_rx) = tokio::sync::oneshot::channel();
    let control_slot = (!params.dialer).then_some(control_tx);
    spawn_acceptors(
        &conn,
        inbound_tx.clone(),
        blobs,
        control_slot,
        readers.clone(),
    );
    let (mut control_send, first) = if params.dialer {
        match conn.open_bi().await {
            Ok((send, recv)) => {
                let reader = FrameReader::new(recv, MAX_FRAME_LEN);
                spawn_reader(reader, inbound_tx.clone(), readers.clone());
                (send, None)
            }
            Err(e) => return DriverEnd::Failed(format!("cannot open the control stream: {e}")),
        }
    } else {
        let control = tokio::select! {
            _ = cancel.cancelled() => return DriverEnd::Cancelled,
            c = control_rx => c,
        };
        match control {
            Ok((send, reader, hello)) => {
                spawn_reader(reader, inbound_tx.clone(), readers.clone());
                (send, Some(hello))
            }
            Err(_) => {
                let why = conn.close_reason().map_or_else(
                    || "the peer opened no control stream".to_owned(),
                    |e| e.to_string(),
                );
                return DriverEnd::Failed(why);
            }
        }
    };
    drop(inbound_tx);

    let doc_ids: Vec<DocId> = params.session.docs.keys().copied().collect();
    let persisted = match docs.db().peer_states(&params.peer_key) {
        Ok(states) => states,
        Err(e) => return DriverEnd::Failed(format!("cannot load sync states: {e}")),
    };
    let mut session = docs.with_locked(&doc_ids, |locked| {
        Session::new(params.session.clone(), &persisted, locked, now())
    });
    if let Some(hello) = first {
        docs.with_locked(&doc_ids, |locked| {
            session.handle_message(now(), hello, locked)
        });
    }
    let mut doc_streams: BTreeMap<DocId, quinn::SendStream> = BTreeMap::new();
    let mut state = SyncState::default();
    let mut owner_sends = true;
    let mut liveness = tokio::time::interval(LIVENESS_CHECK);
    liveness.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard = (conn.stats().udp_rx.datagrams, now());
    let mut recheck = true;
    let started = now();
    let mut ever_synced = false;
    let mut frames_in = 0u64;
    let mut last_report = started;

    loop {
        // Durability first: everything the session applied goes to disk before any frame
        // that acknowledges it is sent.
        while let Some(event) = session.poll_event() {
            if let Some(end) = handle_event(event, &params, &docs, &app).await {
                conn.close(2u32.into(), b"session closed");
                return end;
            }
        }
        while let Some(msg) = session.poll_transmit() {
            let sent = match &msg {
                Message::DocSync { doc, .. } => match doc_streams.get_mut(doc) {
                    Some(stream) => write_frame(stream, &msg).await,
                    None => match conn.open_uni().await {
                        Ok(stream) => {
                            write_frame(doc_streams.entry(*doc).or_insert(stream), &msg).await
                        }
                        Err(e) => {
                            return DriverEnd::Failed(format!(
                                "cannot open a document stream: {e}"
                            ));
                        }
                    },
                },
                _ => write_frame(&mut control_send, &msg).await,
            };
            if let Err(e) = sent {
                return DriverEnd::Failed(e.to_string());
            }
        }
        // The sync state can only have moved if something happened (a liveness tick is not
        // something).
        if recheck {
            let heads = docs.with_locked(&doc_ids, |locked| {
                let synced = doc_ids.iter().all(|d| session.is_synced(*d, locked));
                synced.then(|| {
                    doc_ids
                        .iter()
                        .filter_map(|d| {
                            locked
                                .doc_mut(*d)
                                .map(|am| (*d, am.get_heads().iter().map(|h| h.0).collect()))
                        })
                        .collect::<BTreeMap<DocId, Vec<ChangeHash>>>()
                })
            });
            if let Some(heads) = heads {
                if !ever_synced {
                    let stats = conn.stats();
                    info!(
                        peer = %params.peer_key,
                        elapsed_ms = now().duration_since(started).as_millis() as u64,
                        frames_in,
                        bytes_in = stats.udp_rx.bytes,
                        bytes_out = stats.udp_tx.bytes,
                        "initial sync complete"
                    );
                    ever_synced = true;
                }
                if !state.synced || state.heads != heads {
                    debug!(peer = %params.peer_key, "in sync");
                    state = SyncState {
                        synced: true,
                        heads,
                    };
                    let _ = app.from_peer.send(Inbound::Sync(state.clone())).await;
                }
            } else {
                if state.synced {
                    state.synced = false;
                    let _ = app.from_peer.send(Inbound::Sync(state.clone())).await;
                }
                if now().duration_since(last_report) >= PROGRESS_EVERY {
                    // A long (initial or catch-up) sync reports that it is moving.
                    last_report = now();
                    info!(peer = %params.peer_key, frames_in, bytes_in = conn.stats().udp_rx.bytes, "sync in progress");
                }
            }
        }

        let deadline = session.poll_timeout().map(tokio::time::Instant::from_std);
        let step = tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                conn.close(0u32.into(), b"shutting down");
                return DriverEnd::Cancelled;
            }
            frame = inbound.recv() => match frame {
                Some(Ok(msg)) => Step::Message(msg),
                // A stream that fails to read is a lost connection, not a peer's bad frame.
                Some(Err(FrameError::Read(e))) => Step::ReadFailed(e),
                Some(Err(e)) => Step::BadFrame(e),
                None => Step::Gone,
            },
            change = changes.recv() => match change {
                Ok(c) if c.origin == params.origin => Step::Nothing,
                Ok(c) => Step::Changed(vec![c.doc]),
                Err(broadcast::error::RecvError::Lagged(_)) => Step::Changed(doc_ids.clone()),
                Err(broadcast::error::RecvError::Closed) => Step::Gone,
            },
            // Once the owner drops its sender, stop polling it (it would answer at once,
            // forever, and spin this loop).
            out = app.to_peer.recv(), if owner_sends => match out {
                Some(msg) => Step::Send(msg),
                None => {
                    owner_sends = false;
                    Step::Nothing
                }
            },
            _ = sleep_until(deadline) => Step::Timeout,
            _ = liveness.tick() => Step::Liveness,
        };
        let now = now();
        recheck = !matches!(step, Step::Liveness | Step::Nothing);
        match step {
            Step::Nothing => {}
            Step::Gone => {
                let why = conn
                    .close_reason()
                    .map_or_else(|| "all streams ended".to_owned(), |e| e.to_string());
                return DriverEnd::Failed(why);
            }
            Step::ReadFailed(e) => {
                let why = conn
                    .close_reason()
                    .map_or_else(|| e.to_string(), |c| c.to_string());
                return DriverEnd::Failed(why);
            }
            Step::BadFrame(e) => {
                warn!(peer = %params.peer_key, error = %e, "closing connection: bad frame");
                let reason = e.to_string();
                let _ = write_frame(
                    &mut control_send,
                    &Message::error(ErrorCode::Malformed, &reason),
                )
                .await;
                conn.close(1u32.into(), b"malformed frame");
                return DriverEnd::Failed(reason);
            }
            Step::Message(msg) => {
                frames_in += 1;
                docs.with_locked(&doc_ids, |locked| session.handle_message(now, msg, locked));
            }
            Step::Changed(ids) => docs.with_locked(&doc_ids, |locked| {
                for doc in ids {
                    session.local_change(now, doc, locked);
                }
            }),
            Step::Send(msg) => {
                if let Err(e) = write_frame(&mut control_send, &msg).await {
                    return DriverEnd::Failed(e.to_string());
                }
            }
            Step::Timeout => {
                docs.with_locked(&doc_ids, |locked| session.handle_timeout(now, locked));
            }
            Step::Liveness => {
                let datagrams = conn.stats().udp_rx.datagrams;
                if datagrams != heard.0 {
                    heard = (datagrams, now);
                } else if now.duration_since(heard.1) >= DEAD_AFTER {
                    let why = format!(
                        "nothing heard from the peer for {} s (link down?)",
                        DEAD_AFTER.as_secs()
                    );
                    warn!(peer = %params.peer_key, "{why}");
                    conn.close(6u32.into(), b"peer unresponsive");
                    return DriverEnd::Failed(why);
                }
            }
        }
    }
}

enum Step {
    Nothing,
    Gone,
    ReadFailed(quinn::ReadError),
    BadFrame(FrameError),
    Message(Message),
    Changed(Vec<DocId>),
    Send(Message),
    Timeout,
    Liveness,
}

/// The session's time: tokio's monotonic clock, so that a paused test runtime drives it.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Act on one session event; `Some` ends the connection.
async fn handle_event(
    event: Event,
    params: &ConnectionParams,
    docs: &Documents,
    app: &AppLink,
) -> Option<DriverEnd> {
    match event {
        Event::Established { peer } => {
            info!(peer = %params.peer_key, software = %peer.software, "sync session established");
            let _ = app.from_peer.send(Inbound::Established(peer)).await;
        }
        Event::DocChanged { doc } => {
            if let Err(e) = docs.persist(doc, params.origin) {
                // Not durable means not acknowledged: end the connection rather than reply.
                return Some(DriverEnd::Failed(format!("cannot persist {doc}: {e}")));
            }
            let _ = app.from_peer.send(Inbound::DocChanged(doc)).await;
        }
        Event::PeerStateChanged { doc, state } => {
            if let Err(e) = docs.db().save_peer_state(&params.peer_key, doc, &state) {
                // Losing a sync state only costs a fuller exchange next time.
                warn!(peer = %params.peer_key, %doc, error = %e, "cannot save sync state");
            }
        }
        Event::Refused { doc, code, reason } => {
            warn!(peer = %params.peer_key, doc = ?doc, ?code, %reason, "refused a peer's message");
        }
        Event::PeerError { code, reason } => {
            warn!(peer = %params.peer_key, ?code, %reason, "peer refused something of ours");
            let _ = app
                .from_peer
                .send(Inbound::Message(Message::Error { code, reason }))
                .await;
        }
        Event::Application(msg) => {
            let _ = app.from_peer.send(Inbound::Message(msg)).await;
        }
        Event::Closed { code, reason } => {
            warn!(peer = %params.peer_key, ?code, %reason, "sync session closed");
            return Some(DriverEnd::SessionClosed { code, reason });
        }
    }
    None
}

fn spawn_reader(
    mut reader: FrameReader,
    tx: mpsc::Sender<Result<Message, FrameError>>,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return,
                n = reader.next() => n,
            };
            match next {
                Ok(Some(msg)) => {
                    if tx.send(Ok(msg)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    });
}

/// The peer's control stream as the acceptor found it: its halves and its first frame.
type Control = (quinn::SendStream, FrameReader, Message);

/// Accept the peer's streams. Unidirectional ones carry document sync frames (to the
/// driver). A bidirectional one is the control stream if it starts with `Hello` (handed to
/// the driver through `control`, once) or a blob transfer if it starts with `BlobRequest`.
fn spawn_acceptors(
    conn: &quinn::Connection,
    tx: mpsc::Sender<Result<Message, FrameError>>,
    blobs: Option<BlobServer>,
    control: Option<tokio::sync::oneshot::Sender<Control>>,
    stop: CancellationToken,
) {
    let uni_conn = conn.clone();
    let uni_stop = stop.clone();
    let uni_tx = tx.clone();
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = uni_stop.cancelled() => return,
                s = uni_conn.accept_uni() => s,
            };
            match stream {
                Ok(recv) => {
                    let reader = FrameReader::new(recv, MAX_FRAME_LEN);
                    spawn_reader(reader, uni_tx.clone(), uni_stop.clone());
                }
                Err(_) => return,
            }
        }
    });
    let bi_conn = conn.clone();
    tokio::spawn(async move {
        let mut control = control;
        loop {
            let stream = tokio::select! {
                _ = stop.cancelled() => return,
                s = bi_conn.accept_bi() => s,
            };
            let Ok((mut send, recv)) = stream else { return };
            let mut reader = FrameReader::new(recv, MAX_FRAME_LEN);
            let first = tokio::select! {
                _ = stop.cancelled() => return,
                f = reader.next() => f,
            };
            let refusal = match first {
                Ok(Some(hello @ Message::Hello(_))) => match control.take() {
                    Some(slot) => {
                        let _ = slot.send((send, reader, hello));
                        continue;
                    }
                    None => {
                        Message::error(ErrorCode::Malformed, "a connection has one control stream")
                    }
                },
                Ok(Some(Message::BlobRequest { hash, offset })) => match &blobs {
                    Some(server) => {
                        let server = server.clone();
                        tokio::spawn(async move { server.serve(send, hash, offset).await });
                        continue;
                    }
                    None => Message::error(ErrorCode::NotFound, "this side serves no blobs"),
                },
                Ok(Some(other)) => Message::error(
                    ErrorCode::Malformed,
                    format!(
                        "a stream must start with Hello or BlobRequest, not {}",
                        other.kind()
                    ),
                ),
                Ok(None) | Err(_) => continue,
            };
            let _ = write_frame(&mut send, &refusal).await;
            let _ = send.finish();
        }
    });
}
