//! `bench reconverge`: a venue document with a long history, replicated at central and a
//! hub, many edits on each side during an outage, then one reconnect. Measures the frame
//! bytes of the sync (the deterministic harness, the real codec) and the CPU time the two
//! sessions spend on it.
//!
//! The outage is modelled as a real one is: the connection is gone, both sides edit their
//! own replica with no session watching, and the next connection starts from the per-peer
//! sync states persisted before the outage.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use automerge::AutoCommit;
use taplink_sync_proto::doc::{load_venue, new_org_doc};
use taplink_sync_proto::harness::{Harness, LinkConfig, Peer, Side};
use taplink_sync_proto::ids::{HubId, VenueId};
use taplink_sync_proto::session::{Event, Session, SessionConfig};
use taplink_sync_proto::wire::{DocId, decode_frame, encode_frame};

use super::venue_history::{Editor, actor};
use super::{Table, central_session, cpu, hub_session, kib, ms, verdict};

/// Virtual time the harness may take to converge before the bench gives up.
const SYNC_LIMIT: Duration = Duration::from_secs(600);
/// Frames the lock-step run may exchange before the bench gives up.
const MAX_FRAMES: usize = 100_000;
/// Most lock-step repetitions the bench accepts.
const MAX_REPEAT: usize = 50;
/// Target from issue 3: bytes on the wire for the reconvergence.
pub const TARGET_BYTES: u64 = 300 * 1024;
/// Target from issue 3: CPU time of the sync.
pub const TARGET_CPU: Duration = Duration::from_millis(100);

/// Options of `bench reconverge`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Changes in the venue document before the outage.
    #[arg(long, default_value_t = 20_000)]
    pub changes: usize,
    /// Edits made on each side during the outage.
    #[arg(long, default_value_t = 1_000)]
    pub offline: usize,
    /// Edits made on each side while connected, before the outage.
    #[arg(long, default_value_t = 20)]
    pub online: usize,
    /// Seed of the document and of the edits.
    #[arg(long, default_value_t = 3)]
    pub seed: u64,
    /// Lock-step runs of the reconnect for the CPU figures (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
}

/// What `bench reconverge` measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The options it ran with.
    pub args: Args,
    /// Wall time to build the document's history (not part of any figure).
    pub build_time: Duration,
    /// Encoded size of the document (`save()`), for scale.
    pub doc_size: usize,
    /// Frame bytes of the first connection (replicas already equal, no persisted state).
    pub first_connect_bytes: u64,
    /// Frame bytes of the reconvergence, both directions.
    pub bytes: u64,
    /// Of which central sent.
    pub central_bytes: u64,
    /// Of which the hub sent.
    pub hub_bytes: u64,
    /// Frames of the reconvergence, both directions.
    pub frames: u64,
    /// Virtual time to converge at 20 ms one-way latency (round trips × 40 ms).
    pub virtual_time: Duration,
    /// Thread CPU time of the harness run (both sessions, codec, virtual link).
    pub harness_cpu: Duration,
    /// Wall time of the harness run.
    pub harness_wall: Duration,
    /// CPU time central's session spent (median lock-step run: decode, handle, encode).
    pub central_cpu: Duration,
    /// CPU time the hub's session spent (lock-step run).
    pub hub_cpu: Duration,
    /// CPU time of one `save_incremental` of the merged venue document (what persisting
    /// the received changes serialises before SQLite), on central.
    pub save_incremental_cpu: Duration,
    /// Central's offline changes in the encodings automerge offers.
    pub payload: Payload,
}

/// Run the benchmark.
pub fn run(args: &Args) -> Result<Report> {
    ensure!(
        (1..=MAX_REPEAT).contains(&args.repeat),
        "--repeat must be 1 to {MAX_REPEAT}"
    );
    let hub = HubId::from_bytes([0x4b; 16]);
    let venue = VenueId::from_bytes([0x56; 16]);
    let venue_doc = DocId::Venue(venue);

    let started = super::clock::now();
    let (mut origin, editor) = Editor::build(args.changes, args.seed)?;
    let build_time = started.elapsed();
    let saved = origin.save();
    let mut org = new_org_doc("Europe/London", 10_000)?;
    let org_saved = org.save();
    // Both replicas start from central's saved document, as a hub's first sync leaves it.
    let replica = |seed: u64| -> Result<BTreeMap<DocId, AutoCommit>> {
        Ok(BTreeMap::from([
            (venue_doc, AutoCommit::load(&saved)?.with_actor(actor(seed))),
            (
                DocId::Org,
                AutoCommit::load(&org_saved)?.with_actor(actor(seed)),
            ),
        ]))
    };
    let now = super::clock::now();
    let mut h = Harness::new(
        Peer::new(central_session(hub, venue), replica(args.seed + 1)?, now),
        Peer::new(hub_session(hub, venue), replica(args.seed + 2)?, now),
        LinkConfig::default(),
        args.seed,
        now,
    );
    h.run_until_synced(SYNC_LIMIT)
        .context("the first connection did not converge")?;
    let first_connect_bytes = h.bytes_sent();

    // A little live traffic, so the persisted states are those of a working connection.
    let mut central_editor = editor.reseeded(args.seed + 11);
    let mut hub_editor = editor.reseeded(args.seed + 12);
    for _ in 0..args.online {
        live_edit(&mut h, Side::A, venue_doc, &mut central_editor)?;
        live_edit(&mut h, Side::B, venue_doc, &mut hub_editor)?;
    }
    h.run_until_synced(SYNC_LIMIT)
        .context("live edits did not converge")?;
    check_converged(&mut h.a.docs, &mut h.b.docs)?;

    // The outage: no session, edits on both sides.
    for (peer, editor) in [(&mut h.a, &mut central_editor), (&mut h.b, &mut hub_editor)] {
        let am = peer
            .docs
            .get_mut(&venue_doc)
            .context("both replicas hold the venue")?;
        editor.refresh(am)?;
        for _ in 0..args.offline {
            editor.change(am)?;
        }
    }
    let payload = offline_payload(&mut h.a.docs, &h.a.persisted, venue_doc)?;
    let snapshot = (
        (h.a.docs.clone(), h.a.persisted.clone()),
        (h.b.docs.clone(), h.b.persisted.clone()),
    );

    // Reconnect through the harness: bytes, and CPU of the whole run.
    let bytes_before = (h.a.bytes_sent, h.b.bytes_sent);
    let frames_before = h.a.frames_sent + h.b.frames_sent;
    let (cpu0, wall0) = (cpu::thread_time(), super::clock::now());
    h.reconnect();
    let virtual_time = h
        .run_until_synced(SYNC_LIMIT)
        .context("the reconnect did not converge")?;
    let (harness_cpu, harness_wall) = (cpu::thread_time() - cpu0, wall0.elapsed());
    check_converged(&mut h.a.docs, &mut h.b.docs)?;
    let central_bytes = h.a.bytes_sent - bytes_before.0;
    let hub_bytes = h.b.bytes_sent - bytes_before.1;
    let frames = h.a.frames_sent + h.b.frames_sent - frames_before;
    let merged =
        h.a.docs
            .get_mut(&venue_doc)
            .context("central holds the venue")?;
    // Every edit is exactly one change (`Editor::change`), so nothing may be missing.
    let expected = args.changes + 2 * (args.online + args.offline);
    ensure!(
        merged.get_changes(&[]).len() == expected,
        "the merged venue holds {} changes, expected {expected}",
        merged.get_changes(&[]).len()
    );
    load_venue(merged)?;

    // The same reconnect in lock step, timing each side on its own, a few times over
    // (the median resists the other users of a shared machine).
    let ((a_docs, a_state), (b_docs, b_state)) = snapshot;
    let mut runs = Vec::new();
    let mut last = None;
    for _ in 0..args.repeat {
        let mut central = Node::new(central_session(hub, venue), a_docs.clone(), a_state.clone());
        let mut hub_node = Node::new(hub_session(hub, venue), b_docs.clone(), b_state.clone());
        lockstep(&mut central, &mut hub_node)?;
        check_converged(&mut central.docs, &mut hub_node.docs)?;
        runs.push((central.cpu + hub_node.cpu, central.cpu, hub_node.cpu));
        last = Some(central);
    }
    runs.sort();
    let (_, central_cpu, hub_cpu) = runs[runs.len() / 2];
    let mut central = last.context("--repeat is at least 1")?;

    let am = central
        .docs
        .get_mut(&venue_doc)
        .context("central holds the venue")?;
    // Persisting after the merge saves what the last persisted save did not include.
    let t0 = cpu::thread_time();
    let increment = am.save_incremental();
    let save_incremental_cpu = cpu::thread_time() - t0;
    std::hint::black_box(increment);

    Ok(Report {
        args: args.clone(),
        build_time,
        doc_size: saved.len(),
        first_connect_bytes,
        bytes: central_bytes + hub_bytes,
        central_bytes,
        hub_bytes,
        frames,
        virtual_time,
        harness_cpu,
        harness_wall,
        central_cpu,
        hub_cpu,
        save_incremental_cpu,
        payload,
    })
}

/// Sizes of central's offline changes in the forms automerge can carry them.
#[derive(Debug, Clone, Copy)]
pub struct Payload {
    /// Changes central made since the state persisted with the hub.
    pub changes: usize,
    /// Their encoded size as separate change chunks (what a sync message carries).
    pub chunks: usize,
    /// Their size as one automerge bundle (columnar, like a saved document).
    pub bundle: usize,
}

fn offline_payload(
    docs: &mut BTreeMap<DocId, AutoCommit>,
    persisted: &BTreeMap<DocId, Vec<u8>>,
    doc: DocId,
) -> Result<Payload> {
    let state = persisted
        .get(&doc)
        .context("a sync state was persisted before the outage")?;
    let shared = automerge::sync::State::decode(state)?.shared_heads;
    let am = docs.get_mut(&doc).context("central holds the venue")?;
    let changes = am.get_changes(&shared);
    let chunks = changes.iter().map(|c| c.raw_bytes().len()).sum();
    let bundle = am.bundle(changes.iter().map(|c| c.hash()))?.bytes().len();
    Ok(Payload {
        changes: changes.len(),
        chunks,
        bundle,
    })
}

/// One edit on `side` while connected, pushed by its session at once.
fn live_edit(h: &mut Harness, side: Side, doc: DocId, editor: &mut Editor) -> Result<()> {
    let am = h
        .peer(side)
        .docs
        .get_mut(&doc)
        .context("the peer holds the venue")?;
    editor.refresh(am)?;
    let mut outcome = Ok(());
    h.edit(side, doc, |am| outcome = editor.change(am));
    outcome
}

/// Both sides hold the same heads of every document.
fn check_converged(
    a: &mut BTreeMap<DocId, AutoCommit>,
    b: &mut BTreeMap<DocId, AutoCommit>,
) -> Result<()> {
    for (id, doc) in a.iter_mut() {
        let other = b
            .get_mut(id)
            .context("both sides hold the same documents")?;
        let (mut ha, mut hb) = (doc.get_heads(), other.get_heads());
        ha.sort();
        hb.sort();
        ensure!(ha == hb, "{id} did not converge");
    }
    Ok(())
}

/// One side of the lock-step run: its session, documents, persisted states and the CPU
/// time spent on its behalf.
struct Node {
    session: Session,
    docs: BTreeMap<DocId, AutoCommit>,
    persisted: BTreeMap<DocId, Vec<u8>>,
    cpu: Duration,
}

impl Node {
    fn new(
        config: SessionConfig,
        mut docs: BTreeMap<DocId, AutoCommit>,
        persisted: BTreeMap<DocId, Vec<u8>>,
    ) -> Self {
        let t0 = cpu::thread_time();
        let session = Session::new(config, &persisted, &mut docs, super::clock::now());
        Self {
            session,
            docs,
            persisted,
            cpu: cpu::thread_time() - t0,
        }
    }

    /// Decode and handle one frame, keep the states the session says to persist, and
    /// encode what it queued; returns the frames to send. Timed to this node.
    fn receive(&mut self, frame: Option<&[u8]>) -> Result<Vec<Vec<u8>>> {
        let t0 = cpu::thread_time();
        if let Some(frame) = frame {
            let msg = decode_frame(frame)?;
            self.session
                .handle_message(super::clock::now(), msg, &mut self.docs);
        }
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::PeerStateChanged { doc, state } => {
                    self.persisted.insert(doc, state);
                }
                Event::Closed { reason, .. } => bail!("session closed: {reason}"),
                _ => {}
            }
        }
        let mut out = Vec::new();
        while let Some(msg) = self.session.poll_transmit() {
            out.push(encode_frame(&msg)?);
        }
        self.cpu += cpu::thread_time() - t0;
        Ok(out)
    }
}

/// Deliver frames between the two nodes, in order and without loss, until none is left.
fn lockstep(a: &mut Node, b: &mut Node) -> Result<()> {
    let mut wire: VecDeque<(bool, Vec<u8>)> = VecDeque::new();
    for frame in a.receive(None)? {
        wire.push_back((false, frame));
    }
    for frame in b.receive(None)? {
        wire.push_back((true, frame));
    }
    let mut delivered = 0;
    while let Some((to_a, frame)) = wire.pop_front() {
        delivered += 1;
        ensure!(
            delivered <= MAX_FRAMES,
            "no convergence after {MAX_FRAMES} frames"
        );
        let (node, back_to_a) = if to_a {
            (&mut *a, false)
        } else {
            (&mut *b, true)
        };
        for reply in node.receive(Some(&frame))? {
            wire.push_back((back_to_a, reply));
        }
    }
    Ok(())
}

impl Report {
    /// The figures as a table.
    pub fn table(&self) -> Table {
        let a = &self.args;
        let mut t = Table::new(format!(
            "bench reconverge: {} offline edits on each side of a {}-change venue document",
            a.offline, a.changes
        ));
        t.note(format!(
            "document: {} changes, {} saved; built in {:.1} s; {} live edits per side before the outage",
            a.changes,
            kib(self.doc_size as u64),
            self.build_time.as_secs_f64(),
            a.online
        ));
        t.note(format!(
            "first connection of the two equal replicas (no persisted state): {}",
            kib(self.first_connect_bytes)
        ));
        let cpu_total = self.central_cpu + self.hub_cpu;
        t.row(
            "frame bytes on the wire, both directions",
            kib(self.bytes),
            format!("< 300 KiB: {}", verdict(self.bytes < TARGET_BYTES)),
        );
        t.row("  sent by central", kib(self.central_bytes), "");
        t.row("  sent by the hub", kib(self.hub_bytes), "");
        t.row("frames", self.frames.to_string(), "");
        t.row(
            "virtual time at 20 ms one-way latency",
            ms(self.virtual_time),
            "",
        );
        t.note(format!(
            "CPU: thread CPU time of each session (decode, handle, encode) in lock step, median of {} runs",
            a.repeat
        ));
        t.row("CPU, central's session", ms(self.central_cpu), "");
        t.row("CPU, the hub's session", ms(self.hub_cpu), "");
        t.row(
            "CPU, both sessions",
            ms(cpu_total),
            format!("< 100 ms: {}", verdict(cpu_total < TARGET_CPU)),
        );
        t.row(
            "harness run: thread CPU / wall (both sides, one thread)",
            format!("{} / {}", ms(self.harness_cpu), ms(self.harness_wall)),
            "",
        );
        let p = &self.payload;
        t.note(format!(
            "central's {} offline changes: {} as change chunks (what sync sends, {} B each), {} as one automerge bundle",
            p.changes,
            kib(p.chunks as u64),
            p.chunks / p.changes.max(1),
            kib(p.bundle as u64)
        ));
        t.row(
            "save_incremental of the merged document (persisting, not sync)",
            ms(self.save_incremental_cpu),
            "",
        );
        t
    }
}
