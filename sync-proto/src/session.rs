//! The sync session: one peer connection's protocol state, as a deterministic state machine.
//!
//! In the manner of quinn-proto, a [`Session`] does no I/O and reads no clock. The owner
//! feeds it received messages ([`Session::handle_message`]), local document changes
//! ([`Session::local_change`]) and expired timers ([`Session::handle_timeout`]), each with
//! the current time, and polls it for messages to send ([`Session::poll_transmit`]),
//! events ([`Session::poll_event`]) and its next deadline ([`Session::poll_timeout`]). The
//! documents themselves stay with the owner and are lent for each call through
//! [`DocStore`], so one document can be shared by many sessions (central serves one venue
//! document to that venue's hub session and to its admin API).
//!
//! Per document it runs automerge's sync protocol with a persisted per-peer `sync::State`
//! (only the shared heads survive a reconnect, which is what makes a warm resync cheap).
//! The changes of a sync message travel as one automerge bundle when that is smaller
//! (`bundle_changes`: about ten times smaller for runs of small edits).
//! The transport may lose or reorder messages (the harness does both): a document whose
//! reply is overdue is re-sent with a *sync reset* after an exponentially backed-off
//! retransmission timeout, and an idle session probes its peer with the document heads
//! ([`Message::Changed`]) so a stuck round restarts by itself.
//!
//! Authorization is decided by the owner, who builds the session with the set of documents
//! the peer may sync and whether the peer may *write* each ([`Access`]); the session
//! refuses anything else with an [`ErrorCode::Forbidden`] message to the peer and a
//! [`Event::Refused`] for the log, and carries on with its other documents.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use automerge::AutoCommit;
use automerge::sync::{self, SyncDoc};

use crate::wire::{
    ChangeHash, DocHeads, DocId, ErrorCode, Hello, Message, PROTOCOL_VERSION, PeerIdentity,
};

/// How many messages that overtook the peer's hello (they travel on other streams) are
/// kept for after it; more than this before a hello is a protocol violation.
pub const MAX_EARLY_MESSAGES: usize = 64;

/// What the peer may do with one of our documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The peer receives our changes but may not change the document (a hub and the org
    /// document, seen from central). Changes it sends anyway are refused, not applied.
    Read,
    /// Both sides' changes merge.
    Write,
}

/// Gives a session the documents it syncs, for the duration of one call.
pub trait DocStore {
    /// The document, if this store has it.
    fn doc_mut(&mut self, id: DocId) -> Option<&mut AutoCommit>;
}

impl DocStore for BTreeMap<DocId, AutoCommit> {
    fn doc_mut(&mut self, id: DocId) -> Option<&mut AutoCommit> {
        self.get_mut(&id)
    }
}

/// How a session behaves; [`SessionConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Who we are, sent in our hello.
    pub identity: PeerIdentity,
    /// Who the peer must say it is (central takes it from the peer's certificate).
    pub expected_peer: PeerIdentity,
    /// Our software version, sent in our hello.
    pub software: String,
    /// The documents this session syncs and what the peer may do with each.
    pub docs: BTreeMap<DocId, Access>,
    /// How long to wait for the peer's hello before giving up.
    pub handshake_timeout: Duration,
    /// First retransmission timeout of an unanswered sync message.
    pub initial_rto: Duration,
    /// Cap of the exponentially backed-off retransmission timeout.
    pub max_rto: Duration,
    /// After this long without sending anything, probe the peer with our heads.
    pub idle_probe: Duration,
}

impl SessionConfig {
    /// A configuration with default timers: 10 s handshake, 1 s to 30 s retransmission,
    /// 30 s idle probe.
    pub fn new(
        identity: PeerIdentity,
        expected_peer: PeerIdentity,
        software: impl Into<String>,
        docs: BTreeMap<DocId, Access>,
    ) -> Self {
        Self {
            identity,
            expected_peer,
            software: software.into(),
            docs,
            handshake_timeout: Duration::from_secs(10),
            initial_rto: Duration::from_secs(1),
            max_rto: Duration::from_secs(30),
            idle_probe: Duration::from_secs(30),
        }
    }
}

/// Something the owner should know or act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The peer's hello was accepted; documents start syncing.
    Established {
        /// The peer's hello.
        peer: Hello,
    },
    /// Changes from the peer were applied to this document: persist it and tell other
    /// sessions and local readers.
    DocChanged {
        /// The document.
        doc: DocId,
    },
    /// The shared heads with this peer moved: persist this state to make the next
    /// reconnect cheap (pass it back through [`Session::new`]).
    PeerStateChanged {
        /// The document.
        doc: DocId,
        /// `automerge::sync::State::encode()` bytes.
        state: Vec<u8>,
    },
    /// Something the peer sent was refused; the peer was told, the session continues.
    Refused {
        /// The document concerned, if any.
        doc: Option<DocId>,
        /// Why.
        code: ErrorCode,
        /// A sentence for the log.
        reason: String,
    },
    /// The peer refused something of ours.
    PeerError {
        /// Why.
        code: ErrorCode,
        /// The peer's sentence.
        reason: String,
    },
    /// A message for the owner (blobs, telemetry), passed through untouched once the
    /// session is established.
    Application(Message),
    /// The session cannot go on: the owner should close the connection with this reason.
    Closed {
        /// Why.
        code: ErrorCode,
        /// A sentence for the log and the peer.
        reason: String,
    },
}

/// Per-document sync progress with this peer.
#[derive(Debug)]
struct DocSync {
    access: Access,
    state: sync::State,
    /// When an unanswered sync message is considered lost.
    rto_deadline: Option<Instant>,
    /// The next retransmission timeout (doubles on each expiry, up to `max_rto`).
    rto: Duration,
    /// The heads the peer last advertised (hello, sync message or probe).
    peer_heads: Option<Vec<automerge::ChangeHash>>,
    /// Our heads when we last sent the peer our whole document in this round.
    whole_doc_sent: Option<Vec<automerge::ChangeHash>>,
}

#[derive(Debug)]
enum Phase {
    /// Our hello is sent; waiting for the peer's until the deadline.
    Handshake { deadline: Instant },
    /// Hellos exchanged.
    Established,
    /// Closed with a reason; nothing more happens.
    Closed,
}

/// One peer connection's sync protocol state. See the module docs.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    phase: Phase,
    docs: BTreeMap<DocId, DocSync>,
    transmit: VecDeque<Message>,
    events: VecDeque<Event>,
    /// Messages that arrived before the peer's hello, replayed after it.
    early: Vec<Message>,
    /// When we last queued anything for the peer (drives the idle probe).
    last_sent: Instant,
}

impl Session {
    /// A session that starts by sending our hello. `persisted` holds the encoded per-peer
    /// sync states from an earlier connection to the same peer (see
    /// [`Event::PeerStateChanged`]); a state that does not decode is dropped, which costs
    /// one full exchange, never correctness.
    pub fn new(
        config: SessionConfig,
        persisted: &BTreeMap<DocId, Vec<u8>>,
        docs: &mut impl DocStore,
        now: Instant,
    ) -> Self {
        let syncs = config
            .docs
            .iter()
            .map(|(&id, &access)| {
                let mut state = persisted
                    .get(&id)
                    .and_then(|bytes| sync::State::decode(bytes).ok())
                    .unwrap_or_default();
                // Central marks read-only documents so that a well-behaved hub does not even
                // send changes; anything sent anyway is refused in `receive_doc_sync`.
                state.read_only = access == Access::Read;
                state.their_capabilities = Some(peer_capabilities());
                let sync = DocSync {
                    access,
                    state,
                    rto_deadline: None,
                    rto: config.initial_rto,
                    peer_heads: None,
                    whole_doc_sent: None,
                };
                (id, sync)
            })
            .collect();
        let hello = Hello {
            protocol: PROTOCOL_VERSION,
            software: config.software.clone(),
            identity: config.identity.clone(),
            docs: config
                .docs
                .keys()
                .map(|&doc| DocHeads {
                    doc,
                    heads: to_wire(&heads_of(docs, doc)),
                })
                .collect(),
        };
        let deadline = now + config.handshake_timeout;
        let mut session = Self {
            config,
            phase: Phase::Handshake { deadline },
            docs: syncs,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            early: Vec::new(),
            last_sent: now,
        };
        session.send(now, Message::Hello(hello));
        session
    }

    /// Whether the hellos have been exchanged and the session is not closed.
    pub fn is_established(&self) -> bool {
        matches!(self.phase, Phase::Established)
    }

    /// Whether the session has closed (see [`Event::Closed`]).
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Whether this document is in sync as far as this session knows: the peer's last
    /// advertised heads are ours, and no reply is outstanding.
    pub fn is_synced(&self, doc: DocId, docs: &mut impl DocStore) -> bool {
        let Some(sync) = self.docs.get(&doc) else {
            return false;
        };
        let ours = heads_of(docs, doc);
        sync.rto_deadline.is_none() && sync.peer_heads.as_ref() == Some(&ours)
    }

    /// The encoded per-peer sync state of a document, to persist.
    pub fn peer_state(&self, doc: DocId) -> Option<Vec<u8>> {
        self.docs.get(&doc).map(|s| s.state.encode())
    }

    /// The next message to send to the peer, in order.
    pub fn poll_transmit(&mut self) -> Option<Message> {
        self.transmit.pop_front()
    }

    /// The next event for the owner, in order.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Session::handle_timeout`] should next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Closed => None,
            Phase::Handshake { deadline } => Some(deadline),
            Phase::Established => {
                let rto = self.docs.values().filter_map(|d| d.rto_deadline).min();
                let probe = self.last_sent + self.config.idle_probe;
                Some(rto.map_or(probe, |r| r.min(probe)))
            }
        }
    }

    /// A document changed locally: start a sync round for it at once (push, not poll).
    pub fn local_change(&mut self, now: Instant, doc: DocId, docs: &mut impl DocStore) {
        if self.is_established() && self.docs.contains_key(&doc) {
            self.generate(now, doc, docs);
        }
    }

    /// Fire whatever timers have expired at `now`.
    pub fn handle_timeout(&mut self, now: Instant, docs: &mut impl DocStore) {
        match self.phase {
            Phase::Closed => {}
            Phase::Handshake { deadline } => {
                if now >= deadline {
                    self.close(
                        ErrorCode::Unauthorized,
                        format!(
                            "no hello from the peer within {:?}",
                            self.config.handshake_timeout
                        ),
                    );
                }
            }
            Phase::Established => {
                let expired: Vec<DocId> = self
                    .docs
                    .iter()
                    .filter(|(_, d)| d.rto_deadline.is_some_and(|t| now >= t))
                    .map(|(&id, _)| id)
                    .collect();
                for doc in expired {
                    self.retransmit(now, doc, docs);
                }
                if now >= self.last_sent + self.config.idle_probe {
                    let probes: Vec<Message> = self
                        .docs
                        .keys()
                        .map(|&doc| Message::Changed {
                            doc,
                            heads: to_wire(&heads_of(docs, doc)),
                        })
                        .collect();
                    for probe in probes {
                        self.send(now, probe);
                    }
                }
            }
        }
    }

    /// Process one message from the peer.
    pub fn handle_message(&mut self, now: Instant, msg: Message, docs: &mut impl DocStore) {
        match (&self.phase, msg) {
            (Phase::Closed, _) => {}
            (Phase::Handshake { .. }, Message::Hello(hello)) => {
                self.receive_hello(now, hello, docs)
            }
            (Phase::Handshake { .. }, Message::Error { code, reason }) => {
                self.events.push_back(Event::PeerError {
                    code,
                    reason: reason.clone(),
                });
                self.close(code, format!("peer refused the session: {reason}"));
            }
            (Phase::Handshake { .. }, other) => {
                if self.early.len() < MAX_EARLY_MESSAGES {
                    self.early.push(other);
                } else {
                    self.close(
                        ErrorCode::Malformed,
                        format!(
                            "more than {MAX_EARLY_MESSAGES} messages before the peer's Hello (last: {})",
                            other.kind()
                        ),
                    );
                }
            }
            (Phase::Established, Message::Hello(_)) => {
                self.refuse(
                    None,
                    ErrorCode::Malformed,
                    "second Hello on one session".into(),
                );
            }
            (Phase::Established, Message::DocSync { doc, data }) => {
                self.receive_doc_sync(now, doc, &data, docs);
            }
            (Phase::Established, Message::Changed { doc, heads }) => {
                self.receive_changed(now, doc, &heads, docs);
            }
            (Phase::Established, Message::Error { code, reason }) => {
                self.events.push_back(Event::PeerError { code, reason });
            }
            (Phase::Established, other) => self.events.push_back(Event::Application(other)),
        }
    }

    fn receive_hello(&mut self, now: Instant, hello: Hello, docs: &mut impl DocStore) {
        if hello.protocol != PROTOCOL_VERSION {
            let reason = format!(
                "peer speaks protocol version {}, we speak {PROTOCOL_VERSION}",
                hello.protocol
            );
            self.send(now, error(ErrorCode::UnsupportedVersion, &reason));
            return self.close(ErrorCode::UnsupportedVersion, reason);
        }
        if hello.identity != self.config.expected_peer {
            let reason = format!(
                "peer says it is {:?} but its certificate says {:?}",
                hello.identity, self.config.expected_peer
            );
            self.send(now, error(ErrorCode::Unauthorized, &reason));
            return self.close(ErrorCode::Unauthorized, reason);
        }
        self.phase = Phase::Established;
        let peer_heads: BTreeMap<DocId, Vec<automerge::ChangeHash>> = hello
            .docs
            .iter()
            .map(|d| (d.doc, from_wire(&d.heads)))
            .collect();
        let ids: Vec<DocId> = self.docs.keys().copied().collect();
        for doc in ids {
            // Warm path: the peer's heads are ours and were already shared last time, so
            // there is nothing to exchange for this document.
            let ours = heads_of(docs, doc);
            let Some(sync) = self.docs.get_mut(&doc) else {
                continue;
            };
            sync.peer_heads = peer_heads.get(&doc).cloned();
            let unchanged =
                sync.peer_heads.as_ref() == Some(&ours) && sync.state.shared_heads == ours;
            if !unchanged {
                self.generate(now, doc, docs);
            }
        }
        self.events.push_back(Event::Established { peer: hello });
        for early in std::mem::take(&mut self.early) {
            self.handle_message(now, early, docs);
        }
    }

    fn receive_doc_sync(
        &mut self,
        now: Instant,
        doc: DocId,
        data: &[u8],
        docs: &mut impl DocStore,
    ) {
        let Some(sync) = self.docs.get(&doc) else {
            return self.refuse(
                Some(doc),
                ErrorCode::Forbidden,
                format!("document {doc} is not shared with this peer"),
            );
        };
        let message = match sync::Message::decode(data) {
            Ok(m) => m,
            Err(e) => {
                return self.refuse(
                    Some(doc),
                    ErrorCode::Malformed,
                    format!("sync message for {doc} does not decode: {e}"),
                );
            }
        };
        if sync.access == Access::Read && !message.changes.is_empty() {
            return self.refuse(
                Some(doc),
                ErrorCode::Forbidden,
                format!("document {doc} is read-only for this peer; its changes were not applied"),
            );
        }
        let Some(automerge_doc) = docs.doc_mut(doc) else {
            return self.refuse(
                Some(doc),
                ErrorCode::Internal,
                format!("document {doc} is not loaded here"),
            );
        };
        let sync = self
            .docs
            .get_mut(&doc)
            .expect("presence checked at the top of this function");
        // The peer forgot what it knew of us (a retransmission or probe reset): it waits
        // for our heads even if we have nothing new, so it must get a reply.
        let reply_due = message
            .flags
            .is_some_and(|f| f.contains(sync::MessageFlags::SYNC_RESET));
        sync.peer_heads = Some(message.heads.clone());
        let before = automerge_doc.get_heads();
        let shared_before = sync.state.shared_heads.clone();
        if let Err(e) = automerge_doc
            .sync()
            .receive_sync_message(&mut sync.state, message)
        {
            return self.refuse(
                Some(doc),
                ErrorCode::Malformed,
                format!("sync message for {doc} could not be applied: {e}"),
            );
        }
        // Any reply from the peer answers what we had in flight.
        sync.rto_deadline = None;
        sync.rto = self.config.initial_rto;
        let changed = automerge_doc.get_heads() != before;
        // The changes first: their owner persists them before the sync state that says the
        // peer and we share them, so a crash in between never leaves a state that claims
        // changes the document lacks.
        if changed {
            self.events.push_back(Event::DocChanged { doc });
        }
        if sync.state.shared_heads != shared_before {
            let state = sync.state.encode();
            self.events
                .push_back(Event::PeerStateChanged { doc, state });
        }
        if !self.generate(now, doc, docs) && reply_due {
            if let Some(sync) = self.docs.get_mut(&doc) {
                sync.state.have_responded = false;
            }
            self.generate(now, doc, docs);
        }
    }

    fn receive_changed(
        &mut self,
        now: Instant,
        doc: DocId,
        heads: &[ChangeHash],
        docs: &mut impl DocStore,
    ) {
        let Some(sync) = self.docs.get_mut(&doc) else {
            return self.refuse(
                Some(doc),
                ErrorCode::Forbidden,
                format!("document {doc} is not shared with this peer"),
            );
        };
        let theirs = from_wire(heads);
        let in_step = theirs == heads_of(docs, doc);
        sync.peer_heads = Some(theirs);
        if !in_step {
            // The peer's view differs from ours: whatever round was in flight is stale, so
            // start afresh, and make the peer resend what it thinks it already sent.
            reset_state(&mut sync.state);
            self.generate(now, doc, docs);
        }
    }

    /// Generate and queue the next sync message for `doc`, if automerge has one; returns
    /// whether it did.
    fn generate(&mut self, now: Instant, doc: DocId, docs: &mut impl DocStore) -> bool {
        let Some(automerge_doc) = docs.doc_mut(doc) else {
            return false;
        };
        let Some(sync) = self.docs.get_mut(&doc) else {
            return false;
        };
        let sent_before = sync.state.sent_hashes.clone();
        let Some(mut message) = automerge_doc.sync().generate_sync_message(&mut sync.state) else {
            return false;
        };
        let carried: Vec<automerge::ChangeHash> = sync
            .state
            .sent_hashes
            .difference(&sent_before)
            .copied()
            .collect();
        let ours = automerge_doc.get_heads();
        if is_whole_doc(&message.changes) {
            // A peer that starts empty asks for our heads before our document reaches it,
            // and automerge answers an empty peer with the whole document again (it takes
            // empty heads for a peer that lost its data). Send each version once per
            // round; one that was lost goes again after the retransmission timeout.
            if sync.whole_doc_sent.as_ref() == Some(&ours) {
                message.changes = sync::ChunkList::empty();
            } else {
                sync.whole_doc_sent = Some(ours.clone());
            }
        }
        bundle_changes(automerge_doc, &mut message, carried);
        // A reply is due unless this message only confirms that both sides already hold
        // the same heads.
        let settled = message.changes.is_empty()
            && message.need.is_empty()
            && sync.peer_heads.as_ref() == Some(&ours);
        sync.rto_deadline = (!settled).then(|| now + sync.rto);
        self.send(
            now,
            Message::DocSync {
                doc,
                data: message.encode(),
            },
        );
        true
    }

    fn retransmit(&mut self, now: Instant, doc: DocId, docs: &mut impl DocStore) {
        let max_rto = self.config.max_rto;
        let Some(sync) = self.docs.get_mut(&doc) else {
            return;
        };
        sync.rto = (sync.rto * 2).min(max_rto);
        sync.rto_deadline = None;
        sync.whole_doc_sent = None;
        reset_state(&mut sync.state);
        self.generate(now, doc, docs);
    }

    fn refuse(&mut self, doc: Option<DocId>, code: ErrorCode, reason: String) {
        self.transmit.push_back(error(code, &reason));
        self.events.push_back(Event::Refused { doc, code, reason });
    }

    fn close(&mut self, code: ErrorCode, reason: String) {
        self.phase = Phase::Closed;
        self.events.push_back(Event::Closed { code, reason });
    }

    fn send(&mut self, now: Instant, msg: Message) {
        self.last_sent = now;
        self.transmit.push_back(msg);
    }
}

/// Fewest changes worth re-encoding as a bundle (one change gains nothing).
const MIN_BUNDLE_CHANGES: usize = 2;

/// The magic bytes that open every automerge storage chunk; a 4-byte checksum and the
/// chunk type follow.
const CHUNK_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
/// Chunk types of a single change, plain or compressed (0 is a whole document, 3 a bundle).
const CHANGE_CHUNK_TYPES: [u8; 2] = [1, 2];

/// Re-encode the changes of an outgoing sync message as one automerge *bundle* when that
/// is smaller, which it is by about ten times for runs of small changes: automerge sends
/// every change as its own chunk (about 160 bytes for a rename, most of it the actor id,
/// the dependency hash and the header), while a bundle shares those columns the way a
/// saved document does. The receiver's `receive_sync_message` loads either form
/// (`load_incremental` accepts bundle chunks) and computes the same change hashes, so
/// nothing else in the protocol changes. `carried` holds the hashes this message carries
/// (the ones `generate_sync_message` just added to the state's `sent_hashes`).
///
/// The bundle format is marked experimental by automerge: messages are transient, so the
/// only exposure is two peers built with different automerge versions, which is why an
/// automerge upgrade that changes it must raise `PROTOCOL_VERSION`. Whole-document
/// messages (already columnar) and anything unexpected are left as automerge made them.
fn bundle_changes(
    doc: &AutoCommit,
    message: &mut sync::Message,
    carried: Vec<automerge::ChangeHash>,
) {
    if carried.len() < MIN_BUNDLE_CHANGES
        || message.version != sync::MessageVersion::V2
        || message.changes.len() != 1
    {
        return;
    }
    let Some(data) = message.changes.iter().next() else {
        return;
    };
    let is_changes = data.get(..4) == Some(&CHUNK_MAGIC[..])
        && data.get(8).is_some_and(|t| CHANGE_CHUNK_TYPES.contains(t));
    if !is_changes {
        return;
    }
    // A failure only means we send the changes as automerge made them.
    if let Ok(bundle) = doc.bundle(carried)
        && bundle.bytes().len() < data.len()
    {
        message.changes = sync::ChunkList::from(bundle.bytes().to_vec());
    }
}

/// Whether a sync message's changes are one whole saved document (chunk type 0), as
/// automerge sends to a peer that has nothing.
fn is_whole_doc(changes: &sync::ChunkList) -> bool {
    let mut chunks = changes.iter();
    match (chunks.next(), chunks.next()) {
        (Some(data), None) => data.get(..4) == Some(&CHUNK_MAGIC[..]) && data.get(8) == Some(&0),
        _ => false,
    }
}

/// What every Taplink peer's automerge (0.12 or later) understands: compressed whole-document
/// messages and the sync-reset flag. Knowing it from the start means a reset never falls
/// back to advertising empty heads.
fn peer_capabilities() -> Vec<sync::Capability> {
    vec![sync::Capability::MessageV2, sync::Capability::SyncReset]
}

/// Forget everything about the current round but the shared heads (what a reconnect
/// would remember), and ask the peer to clear the record of what it sent us, so that
/// changes lost in transit are sent again.
fn reset_state(state: &mut sync::State) {
    let read_only = state.read_only;
    let capabilities = state.their_capabilities.take();
    let shared = std::mem::take(&mut state.shared_heads);
    *state = sync::State::new();
    state.shared_heads = shared;
    state.their_capabilities = capabilities;
    state.read_only = read_only;
    state.needs_reset = true;
}

fn heads_of(docs: &mut impl DocStore, doc: DocId) -> Vec<automerge::ChangeHash> {
    docs.doc_mut(doc).map(|d| d.get_heads()).unwrap_or_default()
}

fn to_wire(heads: &[automerge::ChangeHash]) -> Vec<ChangeHash> {
    heads.iter().map(|h| h.0).collect()
}

fn from_wire(heads: &[ChangeHash]) -> Vec<automerge::ChangeHash> {
    heads.iter().copied().map(automerge::ChangeHash).collect()
}

fn error(code: ErrorCode, reason: &str) -> Message {
    Message::Error {
        code,
        reason: reason.to_owned(),
    }
}
