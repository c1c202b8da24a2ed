//! `bench reconnect`: many hubs reconnecting at once to one central after a regional
//! outage. A real central (`CentralNode`, its QUIC endpoint with admission control) and
//! light simulated hubs ([`SimHub`]) in one process on 127.0.0.1.
//!
//! Phase 1: every hub connects for the first time and syncs its venue and the org
//! document. Then every connection is closed (the outage) and central's sessions end.
//! Phase 2, the measured one: every hub reconnects at the same instant, with the sync
//! states persisted in phase 1, and the bench measures the time until each hub's driver
//! reported `Synced`. A hub whose attempt fails retries with the real uplink's full-jitter
//! backoff (500 ms doubling to 60 s); failed attempts are counted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use taplink_sync_io::node::Backoff;
use taplink_sync_proto::ids::VenueId;

use super::simhub::{Connected, SimHub, wait_disconnected};
use super::{Table, cpu, verdict};
use crate::mesh::CentralNode;

/// Most simulated hubs the bench accepts.
const MAX_HUBS: usize = 10_000;
/// Most client endpoints (UDP sockets) the bench accepts.
const MAX_ENDPOINTS: usize = 256;
/// The real uplink's default backoff: first and largest delay.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(60));

/// Options of `bench reconnect`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Simulated hubs.
    #[arg(long, default_value_t = 2000)]
    pub hubs: usize,
    /// Venues the hubs are spread over (default: one venue per hub).
    #[arg(long)]
    pub venues: Option<usize>,
    /// Client endpoints (UDP sockets) the hubs share.
    #[arg(long, default_value_t = 16)]
    pub endpoints: usize,
    /// The target: every hub in sync within this many seconds of the reconnect.
    #[arg(long, default_value_t = 10)]
    pub target_secs: u64,
    /// Give up on a phase after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub limit_secs: u64,
}

/// One phase's outcome.
#[derive(Debug, Clone, Default)]
pub struct Phase {
    /// Time from the start until each hub that made it was in sync, sorted.
    pub synced: Vec<Duration>,
    /// QUIC handshake time of each successful attempt (connect to handshake done), sorted.
    pub handshakes: Vec<Duration>,
    /// Session time of each successful attempt (handshake done to `Synced`), sorted.
    pub sessions: Vec<Duration>,
    /// Hubs not in sync when the phase's limit passed.
    pub never: usize,
    /// Failed connection attempts (each retried after a backoff).
    pub failed_attempts: usize,
    /// Failed attempts by reason.
    pub reasons: BTreeMap<String, usize>,
    /// Process CPU time during the phase (central and every simulated hub).
    pub cpu: Duration,
    /// Retry tokens central sent during the phase.
    pub retries: u64,
    /// Connections central refused during the phase.
    pub refused: u64,
}

impl Phase {
    /// Time until the last hub was in sync, if all were.
    pub fn all_synced(&self) -> Option<Duration> {
        (self.never == 0).then(|| self.synced.last().copied().unwrap_or_default())
    }

    fn quantile(&self, q: f64) -> Duration {
        quantile(&self.synced, q)
    }

    fn within(&self, limit: Duration) -> usize {
        self.synced.iter().filter(|t| **t <= limit).count()
    }
}

/// What `bench reconnect` measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The options it ran with.
    pub args: Args,
    /// Venues created.
    pub venues: usize,
    /// Wall time to create the venues and provision the hubs.
    pub setup: Duration,
    /// Every hub's first connection and initial sync.
    pub first: Phase,
    /// The reconnect after the outage.
    pub reconnect: Phase,
    /// Peak resident memory of the whole process (central and every simulated hub), if
    /// the OS tells.
    pub peak_rss: Option<u64>,
}

impl Report {
    /// Whether the reconnect met the target: all in sync within it, no failed attempt.
    pub fn met(&self) -> bool {
        let target = Duration::from_secs(self.args.target_secs);
        self.reconnect.all_synced().is_some_and(|t| t <= target)
            && self.reconnect.failed_attempts == 0
    }

    /// The figures as a table.
    pub fn table(&self) -> Table {
        let a = &self.args;
        let target = Duration::from_secs(a.target_secs);
        let mut t = Table::new(format!(
            "bench reconnect: {} hubs reconnecting at once to one central on 127.0.0.1",
            a.hubs
        ));
        t.note(format!(
            "{} venues, hubs share {} client UDP sockets; setup (venues, certificates, registry, hub databases) took {:.1} s",
            self.venues,
            a.endpoints,
            self.setup.as_secs_f64()
        ));
        if let Some(rss) = self.peak_rss {
            t.note(format!(
                "peak resident memory of the process (central and all simulated hubs): {} MiB",
                rss / (1024 * 1024)
            ));
        }
        for (name, p) in [
            ("first connection", &self.first),
            ("reconnect", &self.reconnect),
        ] {
            let all = p
                .all_synced()
                .map_or_else(|| format!("{} never synced", p.never), secs);
            let target_cell = if name == "reconnect" {
                format!(
                    "≤ {} s: {}",
                    a.target_secs,
                    verdict(p.all_synced().is_some_and(|d| d <= target))
                )
            } else {
                String::new()
            };
            t.row(format!("{name}: all hubs in sync after"), all, target_cell);
            t.row(
                format!("{name}: in sync within {} s", a.target_secs),
                format!("{} of {}", p.within(target), a.hubs),
                "",
            );
            t.row(
                format!("{name}: p50 / p99"),
                format!("{} / {}", secs(p.quantile(0.5)), secs(p.quantile(0.99))),
                "",
            );
            t.row(
                format!("{name}: QUIC handshake p50 / p99 / max"),
                format!(
                    "{} / {} / {}",
                    secs(quantile(&p.handshakes, 0.5)),
                    secs(quantile(&p.handshakes, 0.99)),
                    secs(quantile(&p.handshakes, 1.0))
                ),
                "",
            );
            t.row(
                format!("{name}: session, handshake to Synced, p50 / p99 / max"),
                format!(
                    "{} / {} / {}",
                    secs(quantile(&p.sessions, 0.5)),
                    secs(quantile(&p.sessions, 0.99)),
                    secs(quantile(&p.sessions, 1.0))
                ),
                "",
            );
            t.row(
                format!("{name}: failed attempts (retried)"),
                p.failed_attempts.to_string(),
                if name == "reconnect" {
                    format!("0: {}", verdict(p.failed_attempts == 0))
                } else {
                    String::new()
                },
            );
            t.row(
                format!("{name}: central's retry tokens / refusals"),
                format!("{} / {}", p.retries, p.refused),
                "",
            );
            t.row(
                format!("{name}: process CPU (central and all hubs)"),
                secs(p.cpu),
                "",
            );
            for (reason, n) in &p.reasons {
                t.note(format!("{name}: {n} attempts failed: {reason}"));
            }
        }
        t
    }
}

/// The `q` quantile of sorted durations (zero for none).
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let Some(last) = sorted.len().checked_sub(1) else {
        return Duration::ZERO;
    };
    let i = (last as f64 * q).round() as usize;
    sorted[i.min(last)]
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Run the benchmark.
pub async fn run(args: &Args) -> Result<Report> {
    ensure!(
        (1..=MAX_HUBS).contains(&args.hubs),
        "--hubs must be 1 to {MAX_HUBS}"
    );
    ensure!(
        (1..=MAX_ENDPOINTS).contains(&args.endpoints),
        "--endpoints must be 1 to {MAX_ENDPOINTS}"
    );
    let venues = args.venues.unwrap_or(args.hubs).clamp(1, args.hubs);
    let tmp = tempfile::tempdir()?;
    let central = CentralNode::start(&tmp.path().join("central")).await?;

    let setup_start = super::clock::now();
    let hubs_dir = tmp.path().join("hubs");
    let hub_count = args.hubs;
    // Provisioning is SQLite and certificate work; keep it off the runtime's workers,
    // which serve central meanwhile.
    let hubs: Vec<Arc<SimHub>> = tokio::task::block_in_place(|| -> Result<_> {
        let venue_ids = (0..venues)
            .map(|i| central.create_venue(&format!("Venue {i}"), "Europe/London"))
            .collect::<Result<Vec<VenueId>>>()?;
        (0..hub_count)
            .map(|i| {
                SimHub::provision(
                    &central,
                    venue_ids[i % venues],
                    &hubs_dir.join(i.to_string()),
                )
                .map(Arc::new)
            })
            .collect()
    })?;
    let endpoints = (0..args.endpoints)
        .map(|_| shared_client_endpoint())
        .collect::<Result<Vec<_>>>()?;
    let setup = setup_start.elapsed();
    let limit = Duration::from_secs(args.limit_secs);

    let (first, connections) = phase(&central, &hubs, &endpoints, limit).await;
    close_all(connections).await?;
    wait_disconnected(&central, Duration::from_secs(30)).await?;

    let (reconnect, connections) = phase(&central, &hubs, &endpoints, limit).await;
    close_all(connections).await?;
    for endpoint in &endpoints {
        endpoint.close(0u32.into(), b"bench done");
    }
    central.central.shutdown().await?;
    Ok(Report {
        args: args.clone(),
        venues,
        setup,
        first,
        reconnect,
        peak_rss: peak_rss(),
    })
}

/// `VmHWM` of this process in bytes (Linux), the peak resident set.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A client endpoint that many simulated hubs share. Real hubs have a socket each; one
/// socket carrying a hundred hubs' handshakes needs a large receive buffer, or the kernel
/// drops the burst and the simulation measures its own socket: `net::client_endpoint`
/// asks for the same one as central's.
fn shared_client_endpoint() -> Result<quinn::Endpoint> {
    Ok(taplink_sync_io::net::client_endpoint(SocketAddr::from((
        [127, 0, 0, 1],
        0,
    )))?)
}

/// Every hub connects at once and retries until in sync or `limit` passed.
async fn phase(
    central: &CentralNode,
    hubs: &[Arc<SimHub>],
    endpoints: &[quinn::Endpoint],
    limit: Duration,
) -> (Phase, Vec<Connected>) {
    let admission = central.central.state().admission.clone();
    let retries0 = admission.retries.load(std::sync::atomic::Ordering::Relaxed);
    let refused0 = admission.refused.load(std::sync::atomic::Ordering::Relaxed);
    let addr = central.quic_addr();
    let cpu0 = cpu::process_time();
    let start = tokio::time::Instant::now();
    let deadline = start + limit;
    let tasks: Vec<_> = hubs
        .iter()
        .enumerate()
        .map(|(i, hub)| {
            let hub = hub.clone();
            let endpoint = endpoints[i % endpoints.len()].clone();
            tokio::spawn(async move {
                let mut errors = Vec::new();
                let mut backoff = Backoff::new(BACKOFF);
                loop {
                    match tokio::time::timeout_at(deadline, hub.connect(&endpoint, addr)).await {
                        Ok(Ok(conn)) => return (Some((start.elapsed(), conn)), errors),
                        Ok(Err(e)) => errors.push(reason(&e)),
                        Err(_) => return (None, errors),
                    }
                    let delay = backoff.next_delay();
                    if tokio::time::Instant::now() + delay >= deadline {
                        return (None, errors);
                    }
                    tokio::time::sleep(delay).await;
                }
            })
        })
        .collect();
    let mut result = Phase::default();
    let mut connections = Vec::new();
    for task in tasks {
        match task.await {
            Ok((synced, errors)) => {
                result.failed_attempts += errors.len();
                for e in errors {
                    *result.reasons.entry(e).or_default() += 1;
                }
                match synced {
                    Some((at, conn)) => {
                        result.synced.push(at);
                        result.handshakes.push(conn.handshake);
                        result
                            .sessions
                            .push(conn.synced.saturating_sub(conn.handshake));
                        connections.push(conn);
                    }
                    None => result.never += 1,
                }
            }
            Err(e) => {
                result.never += 1;
                *result
                    .reasons
                    .entry(format!("task failed: {e}"))
                    .or_default() += 1;
            }
        }
    }
    result.synced.sort();
    result.handshakes.sort();
    result.sessions.sort();
    result.cpu = cpu::process_time() - cpu0;
    result.retries = admission.retries.load(std::sync::atomic::Ordering::Relaxed) - retries0;
    result.refused = admission.refused.load(std::sync::atomic::Ordering::Relaxed) - refused0;
    (result, connections)
}

/// An error's outer message, clipped, so that equal causes count together.
fn reason(e: &anyhow::Error) -> String {
    e.to_string().chars().take(120).collect()
}

/// Close every connection (the outage), concurrently.
async fn close_all(connections: Vec<Connected>) -> Result<()> {
    let closing: Vec<_> = connections
        .into_iter()
        .map(|c| tokio::spawn(c.close()))
        .collect();
    for c in closing {
        c.await.context("closing task failed")??;
    }
    Ok(())
}
