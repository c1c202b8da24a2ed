//! A deterministic two-peer network for sync sessions: virtual clock, loss, reordering and
//! partitions, all from one seed. Used by this crate's tests and by `simulations`.
//!
//! Every message crosses the "wire" as an encoded frame (the real codec), so byte counts
//! are what a real connection would carry, excluding QUIC and TLS overhead.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::{Duration, Instant};

use automerge::AutoCommit;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::session::{Event, Session, SessionConfig};
use crate::wire::{DocId, decode_frame, encode_frame};

/// How the virtual link between the two peers behaves.
#[derive(Debug, Clone, Copy)]
pub struct LinkConfig {
    /// One-way delay of every frame.
    pub latency: Duration,
    /// Extra random delay, uniform in `0..=jitter`; frames overtake each other when it
    /// exceeds their spacing.
    pub jitter: Duration,
    /// Probability that a frame is lost, `0.0..=1.0`.
    pub loss: f64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(20),
            jitter: Duration::ZERO,
            loss: 0.0,
        }
    }
}

/// One side of the harness: its session, its documents and what it has seen.
#[derive(Debug)]
pub struct Peer {
    /// The configuration its sessions are built with (again on each reconnect).
    pub config: SessionConfig,
    /// Its session on the current connection.
    pub session: Session,
    /// Its documents.
    pub docs: BTreeMap<DocId, AutoCommit>,
    /// Per-peer sync states persisted from [`Event::PeerStateChanged`], as a real owner would.
    pub persisted: BTreeMap<DocId, Vec<u8>>,
    /// Every event its sessions produced, in order.
    pub events: Vec<Event>,
    /// Frame bytes it has put on the wire (lost ones included).
    pub bytes_sent: u64,
    /// Frames it has put on the wire (lost ones included).
    pub frames_sent: u64,
}

impl Peer {
    /// A peer with these documents, connecting for the first time at `now`.
    pub fn new(config: SessionConfig, mut docs: BTreeMap<DocId, AutoCommit>, now: Instant) -> Self {
        let persisted = BTreeMap::new();
        let session = Session::new(config.clone(), &persisted, &mut docs, now);
        Self {
            config,
            session,
            docs,
            persisted,
            events: Vec::new(),
            bytes_sent: 0,
            frames_sent: 0,
        }
    }

    /// Whether every document of this peer is in sync as far as its session knows.
    pub fn all_synced(&mut self) -> bool {
        let ids: Vec<DocId> = self.config.docs.keys().copied().collect();
        ids.into_iter()
            .all(|doc| self.session.is_synced(doc, &mut self.docs))
    }

    fn drain_events(&mut self) {
        while let Some(event) = self.session.poll_event() {
            if let Event::PeerStateChanged { doc, state } = &event {
                self.persisted.insert(*doc, state.clone());
            }
            self.events.push(event);
        }
    }
}

/// Which way a frame travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    /// Peer `a`.
    A,
    /// Peer `b`.
    B,
}

/// A frame on the virtual wire: arrival time, sequence number (keeps equal times in send
/// order), destination, bytes.
type InFlight = (Instant, u64, Side, Vec<u8>);

/// Two peers and the link between them, driven by a virtual clock.
#[derive(Debug)]
pub struct Harness {
    /// The first peer (central, by convention).
    pub a: Peer,
    /// The second peer (a hub, by convention).
    pub b: Peer,
    /// The virtual time now.
    pub now: Instant,
    /// The link's behaviour; may be changed between steps.
    pub link: LinkConfig,
    partitioned: bool,
    /// Frames in flight: (arrival time, sequence number, destination, bytes).
    in_flight: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    rng: ChaCha8Rng,
    start: Instant,
    /// How many times a closed session made the harness reconnect.
    pub reconnects: u32,
    /// Whether to log every frame sent into `trace` (for debugging a failing seed).
    pub record_trace: bool,
    /// One line per frame sent while `record_trace` is on.
    pub trace: Vec<String>,
}

impl Harness {
    /// Two peers on a link, with all randomness from `seed`.
    pub fn new(a: Peer, b: Peer, link: LinkConfig, seed: u64, now: Instant) -> Self {
        let mut h = Self {
            a,
            b,
            now,
            link,
            partitioned: false,
            in_flight: BinaryHeap::new(),
            seq: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            start: now,
            reconnects: 0,
            record_trace: false,
            trace: Vec::new(),
        };
        h.flush();
        h
    }

    /// Cut (`true`) or heal (`false`) the link; a cut drops every frame sent meanwhile.
    pub fn set_partitioned(&mut self, partitioned: bool) {
        self.partitioned = partitioned;
    }

    /// The peer on this side.
    pub fn peer(&mut self, side: Side) -> &mut Peer {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    /// Change a document on one side with `edit`, then tell that side's session.
    pub fn edit(&mut self, side: Side, doc: DocId, edit: impl FnOnce(&mut AutoCommit)) {
        let now = self.now;
        let peer = self.peer(side);
        let d = peer
            .docs
            .get_mut(&doc)
            .expect("harness edit of a document the peer does not hold");
        edit(d);
        d.commit();
        peer.session.local_change(now, doc, &mut peer.docs);
        peer.drain_events();
        self.flush();
    }

    /// Drop the connection and open a new one: both sessions restart from their persisted
    /// per-peer sync states; frames in flight are lost.
    pub fn reconnect(&mut self) {
        self.in_flight.clear();
        let now = self.now;
        for peer in [&mut self.a, &mut self.b] {
            peer.session = Session::new(peer.config.clone(), &peer.persisted, &mut peer.docs, now);
        }
        self.flush();
    }

    /// Total frame bytes both peers have sent.
    pub fn bytes_sent(&self) -> u64 {
        self.a.bytes_sent + self.b.bytes_sent
    }

    /// Advance to the next delivery or timer and process it. Returns `false` when nothing
    /// at all is scheduled.
    pub fn step(&mut self) -> bool {
        let next_frame = self.in_flight.peek().map(|Reverse((t, ..))| *t);
        let next = [
            next_frame,
            self.a.session.poll_timeout(),
            self.b.session.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { return false };
        self.now = self.now.max(next);
        let now = self.now;
        while let Some(Reverse((t, ..))) = self.in_flight.peek() {
            if *t > now {
                break;
            }
            let Some(Reverse((_, _, to, bytes))) = self.in_flight.pop() else {
                break;
            };
            let peer = self.peer(to);
            // Frames come from our own encoder, so a decode failure is a codec bug.
            let msg = decode_frame(&bytes).expect("harness frame from our own encoder decodes");
            peer.session.handle_message(now, msg, &mut peer.docs);
            peer.drain_events();
        }
        for peer in [&mut self.a, &mut self.b] {
            if peer.session.poll_timeout().is_some_and(|t| t <= now) {
                peer.session.handle_timeout(now, &mut peer.docs);
                peer.drain_events();
            }
        }
        self.flush();
        // A real owner closes a failed connection and dials again (with backoff, which
        // the virtual clock makes moot).
        if self.a.session.is_closed() || self.b.session.is_closed() {
            self.reconnects += 1;
            self.reconnect();
        }
        true
    }

    /// Run until `until` of virtual time has passed.
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.next_scheduled().is_some_and(|t| t <= end) {
            self.step();
        }
        self.now = self.now.max(end);
    }

    /// Run until both peers hold every document in sync and nothing is in flight, or until
    /// `limit` of virtual time has passed. Returns the virtual time it took, or `None` on
    /// the limit.
    pub fn run_until_synced(&mut self, limit: Duration) -> Option<Duration> {
        let start = self.now;
        loop {
            if self.in_flight.is_empty() && self.a.all_synced() && self.b.all_synced() {
                return Some(self.now - start);
            }
            if self.now - start > limit || !self.step() {
                return None;
            }
        }
    }

    fn next_scheduled(&self) -> Option<Instant> {
        let next_frame = self.in_flight.peek().map(|Reverse((t, ..))| *t);
        [
            next_frame,
            self.a.session.poll_timeout(),
            self.b.session.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Put every message the sessions queued on the wire.
    fn flush(&mut self) {
        for from in [Side::A, Side::B] {
            let to = match from {
                Side::A => Side::B,
                Side::B => Side::A,
            };
            while let Some(msg) = self.peer(from).session.poll_transmit() {
                if self.record_trace {
                    let line = format!(
                        "{:?} {from:?}->{to:?} {}",
                        self.now - self.start,
                        describe(&msg)
                    );
                    self.trace.push(line);
                }
                let frame = encode_frame(&msg).expect("sessions only queue encodable messages");
                let peer = self.peer(from);
                peer.bytes_sent += frame.len() as u64;
                peer.frames_sent += 1;
                let lost = self.partitioned || self.rng.random_bool(self.link.loss);
                if lost {
                    continue;
                }
                let jitter = if self.link.jitter.is_zero() {
                    Duration::ZERO
                } else {
                    self.rng.random_range(Duration::ZERO..=self.link.jitter)
                };
                let at = self.now + self.link.latency + jitter;
                self.seq += 1;
                self.in_flight.push(Reverse((at, self.seq, to, frame)));
            }
        }
    }
}

/// A one-line description of a message for the trace: sync messages show their heads,
/// needs and change counts (first byte of each hash).
fn describe(msg: &crate::wire::Message) -> String {
    let crate::wire::Message::DocSync { doc, data } = msg else {
        return msg.kind().to_owned();
    };
    let Ok(m) = automerge::sync::Message::decode(data) else {
        return format!("DocSync {doc} (undecodable)");
    };
    let short = |v: &[automerge::ChangeHash]| {
        v.iter()
            .map(|h| format!("{:02x}", h.0[0]))
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        "DocSync {doc} heads=[{}] need=[{}] changes={} flags={:?}",
        short(&m.heads),
        short(&m.need),
        m.changes.len(),
        m.flags
    )
}
