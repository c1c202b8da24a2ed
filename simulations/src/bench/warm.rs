//! `bench warm`: what a reconnect costs when nothing changed (and after one offline
//! change), on a venue document with a long history. Twice: frame bytes through the
//! deterministic harness, and UDP bytes of a real QUIC connection between a real central
//! and a simulated hub on loopback (quinn's connection statistics, so QUIC headers, ACKs
//! and the TLS handshake with both certificates are included).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use automerge::AutoCommit;
use taplink_sync_proto::doc::new_org_doc;
use taplink_sync_proto::harness::{Harness, LinkConfig, Peer};
use taplink_sync_proto::ids::{HubId, VenueId};
use taplink_sync_proto::wire::DocId;

use super::simhub::{CENTRAL_NAME, SimHub, wait_disconnected};
use super::venue_history::{Editor, actor, media_blobs};
use super::{Table, central_session, hub_session, kib, verdict};
use crate::mesh::CentralNode;

/// Target from issue 3: bytes of a warm resync of an unchanged document.
pub const TARGET_BYTES: u64 = 2 * 1024;
/// Virtual time the harness may take before the bench gives up.
const SYNC_LIMIT: Duration = Duration::from_secs(600);
/// Real time a QUIC connection may take to get in sync before the bench gives up.
const CONNECT_LIMIT: Duration = Duration::from_secs(60);
/// How long to let trailing ACKs cross after the hub reports `Synced`.
const SETTLE: Duration = Duration::from_millis(300);

/// Options of `bench warm`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Changes in the venue document.
    #[arg(long, default_value_t = 20_000)]
    pub changes: usize,
    /// Seed of the document.
    #[arg(long, default_value_t = 5)]
    pub seed: u64,
    /// Skip the QUIC part (harness only).
    #[arg(long)]
    pub no_quic: bool,
}

/// What `bench warm` measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The options it ran with.
    pub args: Args,
    /// Harness: frame bytes of a reconnect with nothing changed.
    pub harness_unchanged: u64,
    /// Harness: frames of that reconnect.
    pub harness_unchanged_frames: u64,
    /// Harness: frame bytes of a reconnect after one offline change at the hub.
    pub harness_one_change: u64,
    /// QUIC figures, unless skipped.
    pub quic: Option<QuicFigures>,
}

/// Bytes of real QUIC connections (UDP payload bytes both ways, from quinn's statistics).
#[derive(Debug, Clone, Copy)]
pub struct QuicFigures {
    /// The hub's first connection: handshake and the initial sync of the whole document.
    pub first_sync: u64,
    /// A connection that runs no session, 300 ms after its handshake: TLS 1.3 with both
    /// certificates, QUIC's connection ids and path MTU probes.
    pub bare: Traffic,
    /// A reconnect with nothing changed, until the hub's `Synced`.
    pub warm_total: u64,
    /// The same reconnect 300 ms after `Synced` (trailing ACKs included).
    pub warm_settled: Traffic,
    /// Wall time of the warm reconnect, from `connect` to `Synced`.
    pub warm_time: Duration,
}

/// UDP traffic of one connection, both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    /// Payload bytes.
    pub bytes: u64,
    /// Datagrams.
    pub datagrams: u64,
    /// Path MTU probes (padded PINGs) this side sent and received.
    pub mtu_probes: u64,
}

impl Traffic {
    fn of(s: &quinn::ConnectionStats) -> Traffic {
        Traffic {
            bytes: s.udp_tx.bytes + s.udp_rx.bytes,
            datagrams: s.udp_tx.datagrams + s.udp_rx.datagrams,
            // Keep-alives are PINGs too, but the first comes 10 s after the handshake.
            mtu_probes: s.frame_tx.ping + s.frame_rx.ping,
        }
    }
}

/// Run the benchmark.
pub async fn run(args: &Args) -> Result<Report> {
    let a = args.clone();
    let (harness_unchanged, harness_unchanged_frames, harness_one_change) =
        tokio::task::spawn_blocking(move || harness_figures(&a)).await??;
    let quic = if args.no_quic {
        None
    } else {
        Some(quic_figures(args).await?)
    };
    Ok(Report {
        args: args.clone(),
        harness_unchanged,
        harness_unchanged_frames,
        harness_one_change,
        quic,
    })
}

fn harness_figures(args: &Args) -> Result<(u64, u64, u64)> {
    let hub = HubId::from_bytes([0x4b; 16]);
    let venue = VenueId::from_bytes([0x56; 16]);
    let venue_doc = DocId::Venue(venue);
    let (mut origin, mut editor) = Editor::build(args.changes, args.seed)?;
    let saved = origin.save();
    let org = new_org_doc("Europe/London", 10_000)?.save();
    let replica = |seed: u64| -> Result<BTreeMap<DocId, AutoCommit>> {
        Ok(BTreeMap::from([
            (venue_doc, AutoCommit::load(&saved)?.with_actor(actor(seed))),
            (DocId::Org, AutoCommit::load(&org)?.with_actor(actor(seed))),
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
    h.run_until_synced(SYNC_LIMIT).context("first connection")?;

    let (bytes, frames) = (h.bytes_sent(), h.a.frames_sent + h.b.frames_sent);
    h.reconnect();
    h.run_until_synced(SYNC_LIMIT).context("warm reconnect")?;
    let unchanged = h.bytes_sent() - bytes;
    let unchanged_frames = h.a.frames_sent + h.b.frames_sent - frames;

    // One edit at the hub while no session runs, then a reconnect.
    let am =
        h.b.docs
            .get_mut(&venue_doc)
            .context("the hub holds the venue")?;
    editor.refresh(am)?;
    editor.change(am)?;
    let bytes = h.bytes_sent();
    h.reconnect();
    h.run_until_synced(SYNC_LIMIT)
        .context("reconnect after one change")?;
    let one_change = h.bytes_sent() - bytes;
    let (ha, hb) = (
        h.a.docs.get_mut(&venue_doc).map(|d| d.get_heads()),
        h.b.docs.get_mut(&venue_doc).map(|d| d.get_heads()),
    );
    ensure!(ha == hb, "the venue did not converge");
    Ok((unchanged, unchanged_frames, one_change))
}

async fn quic_figures(args: &Args) -> Result<QuicFigures> {
    let tmp = tempfile::tempdir()?;
    let central = CentralNode::start(&tmp.path().join("central")).await?;
    let venue = central.create_venue("The Anchor", "Europe/London")?;
    let (changes, seed) = (args.changes, args.seed);
    let state = central.central.state();
    // Central holds the media the venue references (as after an admin upload), so
    // nobody fetches anything and the figures are the documents' alone.
    for blob in media_blobs(seed) {
        state.blobs.put(&blob)?;
    }
    // One edit holding the whole history: one durable append instead of one per change.
    state
        .docs
        .edit(DocId::Venue(venue), |am| {
            Editor::populate(am, changes, seed).map(|_| ())
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let hub = SimHub::provision(&central, venue, &tmp.path().join("hub"))?;
    let endpoint = taplink_sync_io::net::client_endpoint(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let addr = central.quic_addr();

    let first = tokio::time::timeout(CONNECT_LIMIT, hub.connect(&endpoint, addr))
        .await
        .context("first sync took too long")??;
    tokio::time::sleep(SETTLE).await;
    let first_sync = first.udp_bytes();
    first.close().await?;
    wait_disconnected(&central, Duration::from_secs(10)).await?;

    // A connection that runs no session: the handshake and QUIC's own traffic.
    let bare = endpoint
        .connect_with(hub.client.clone(), addr, CENTRAL_NAME)?
        .await?;
    tokio::time::sleep(SETTLE).await;
    let bare_stats = bare.stats();
    bare.close(0u32.into(), b"bench");
    wait_disconnected(&central, Duration::from_secs(10)).await?;

    let warm = tokio::time::timeout(CONNECT_LIMIT, hub.connect(&endpoint, addr))
        .await
        .context("warm reconnect took too long")??;
    let warm_total = warm.udp_bytes();
    let warm_time = warm.synced;
    tokio::time::sleep(SETTLE).await;
    let settled = warm.conn.stats();
    warm.close().await?;
    endpoint.close(0u32.into(), b"bench done");
    central.central.shutdown().await?;
    Ok(QuicFigures {
        first_sync,
        bare: Traffic::of(&bare_stats),
        warm_total,
        warm_settled: Traffic::of(&settled),
        warm_time,
    })
}

impl Report {
    /// The figures as a table.
    pub fn table(&self) -> Table {
        let mut t = Table::new(format!(
            "bench warm: reconnect of a hub to central, {}-change venue document",
            self.args.changes
        ));
        t.row(
            "harness: unchanged documents, frame bytes both ways",
            format!(
                "{} B ({} frames)",
                self.harness_unchanged, self.harness_unchanged_frames
            ),
            format!("< 2 KB: {}", verdict(self.harness_unchanged < TARGET_BYTES)),
        );
        t.row(
            "harness: after one offline change at the hub",
            format!("{} B", self.harness_one_change),
            format!(
                "< 2 KB: {}",
                verdict(self.harness_one_change < TARGET_BYTES)
            ),
        );
        if let Some(q) = &self.quic {
            t.note("QUIC: real central (CentralNode) and a simulated hub on 127.0.0.1; UDP payload bytes both ways from quinn's ConnectionStats");
            let session = q.warm_settled.bytes.saturating_sub(q.bare.bytes);
            t.row(
                "QUIC: first connection and initial sync",
                kib(q.first_sync),
                "",
            );
            t.row(
                "QUIC: connection without a session (handshake, MTU probes), 300 ms",
                format!(
                    "{} B ({} datagrams, {} MTU probes)",
                    q.bare.bytes, q.bare.datagrams, q.bare.mtu_probes
                ),
                "",
            );
            t.row(
                "QUIC: warm reconnect, connect to Synced",
                format!("{} B", q.warm_total),
                "",
            );
            t.row(
                "QUIC: warm reconnect, 300 ms after Synced",
                format!(
                    "{} B ({} datagrams)",
                    q.warm_settled.bytes, q.warm_settled.datagrams
                ),
                "",
            );
            t.row(
                "QUIC: what the session adds (settled warm − bare)",
                format!("{session} B"),
                format!("< 2 KB: {}", verdict(session < TARGET_BYTES)),
            );
            t.row(
                "QUIC: warm reconnect wall time, connect to Synced",
                super::ms(q.warm_time),
                "",
            );
        }
        t
    }
}
