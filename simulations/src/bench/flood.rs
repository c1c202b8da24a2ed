//! `bench flood`: the real `taplink-hub` binary, serving HTTPS as in a venue, while a
//! hostile LAN client throws thousands of idle and slow connections and a guessing run at
//! it. Measured side by side in one run: `/healthz` (a new connection each, as a monitor
//! probes) and a kiosk's manifest poll (its keep-alive connection), first on a quiet hub,
//! then under the flood; and the hub's resident memory under the flood.
//!
//! The flood: `--idle` connections that never send a byte (from many loopback addresses,
//! so the per-address cap alone cannot stop them), `--slow` connections that trickle a
//! request head one byte a second, and a client that guesses device tokens as fast as the
//! hub answers. Every loop is bounded by `--seconds`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use crate::bench::hub_rig::HubRig;
use crate::bench::procs::Memory;
use crate::bench::{Table, ms, verdict};
use crate::mesh::{Target, http_with};

/// Options of `bench flood`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Idle connections (never a byte sent).
    #[arg(long, default_value_t = 2_000)]
    pub idle: usize,
    /// Slow connections (a request head trickled at one byte a second).
    #[arg(long, default_value_t = 200)]
    pub slow: usize,
    /// Probes of each kind per phase (quiet, flooded).
    #[arg(long, default_value_t = 300)]
    pub probes: usize,
    /// Longest time the flood runs.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
}

/// Latencies of one kind of probe, sorted.
#[derive(Debug, Clone, Default)]
pub struct Probes {
    /// Successful probes' latencies.
    pub latencies: Vec<Duration>,
    /// Probes that failed (no answer, or not the expected status).
    pub failed: usize,
}

impl Probes {
    fn quantile(&self, q: f64) -> Duration {
        crate::bench::quantile(&self.latencies, q)
    }
}

/// What `bench flood` measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The options.
    pub args: Args,
    /// `/healthz` on a quiet hub, and under the flood.
    pub health: [Probes; 2],
    /// Manifest polls on a quiet hub, and under the flood.
    pub manifest: [Probes; 2],
    /// The hub's memory before the flood, and its largest `VmRSS` sample during it.
    pub memory: [Memory; 2],
    /// Flood connections the hub accepted then closed (evicted or timed out), and those
    /// it refused at once (over a cap).
    pub closed_and_refused: (u64, u64),
    /// Guesses answered `401` and `429`.
    pub guesses: (u64, u64),
}

/// The memory target under the flood, in bytes (MB: 10^6 bytes).
const HUB_TARGET: u64 = 64_000_000;

/// Run the benchmark.
pub async fn run(args: &Args) -> Result<Report> {
    ensure!(args.probes > 0 && args.seconds > 0, "nothing to measure");
    // This process opens the flood's descriptors.
    taplink_sync_io::web::listener::descriptor_budget();
    // The hub's own connection caps (64 per address, 1,500 in all), as in a venue.
    let rig = HubRig::start_configured(true, |_| {}).await?;
    let paired = rig.pair(1).await?;
    let auth = format!("Bearer {}", paired[0].token);
    let before = rig.hub.memory()?;

    let quiet_health = probe_health(rig.target, args.probes).await?;
    let quiet_manifest = probe_manifest(rig.target, &auth, args.probes).await?;

    let stop = Instant::now() + Duration::from_secs(args.seconds);
    let opened = Arc::new(AtomicU64::new(0));
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..args.idle {
        let opened = opened.clone();
        flood.spawn(idle_connection(rig.addr, source(i), stop, None, opened));
    }
    for i in 0..args.slow {
        let opened = opened.clone();
        flood.spawn(idle_connection(
            rig.addr,
            source(args.idle + i),
            stop,
            Some(Duration::from_secs(1)),
            opened,
        ));
    }
    let guesses = tokio::spawn(guess(rig.target, stop));
    // Let the flood fill the hub before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sampler = tokio::spawn(sample_until(rig.hub.pid(), stop));
    let flooded_health = probe_health(rig.target, args.probes).await?;
    let flooded_manifest = probe_manifest(rig.target, &auth, args.probes).await?;
    let peak = sampler.await.context("sampler")??;
    let guesses = guesses.await.context("guesser")??;
    flood.abort_all();
    while flood.join_next().await.is_some() {}
    let metrics =
        String::from_utf8_lossy(&http_with(rig.target, "GET", "/metrics", &[], b"").await?.1)
            .into_owned();
    let counter = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0)
    };
    let closed = counter("taplink_hub_http_connections_evicted_total ")
        + counter("taplink_hub_http_connections_timed_out_total ")
        + counter("taplink_hub_http_tls_handshakes_failed_total ");
    Ok(Report {
        args: args.clone(),
        health: [quiet_health, flooded_health],
        manifest: [quiet_manifest, flooded_manifest],
        memory: [before, peak],
        closed_and_refused: (
            closed,
            counter("taplink_hub_http_connections_refused_total "),
        ),
        guesses,
    })
}

/// The loopback source address of flood connection `i`: 50 connections per address, under
/// the hub's per-address cap, so that only the total cap (and eviction) stands in the way.
fn source(i: usize) -> SocketAddr {
    let n = i / 50;
    SocketAddr::from(([127, 1, (n / 250) as u8, (n % 250 + 1) as u8], 0))
}

/// One flood connection: connect, then say nothing (or trickle a byte every `trickle`),
/// reconnecting a second after the hub closes it, until `stop`.
async fn idle_connection(
    hub: SocketAddr,
    from: SocketAddr,
    stop: Instant,
    trickle: Option<Duration>,
    opened: Arc<AtomicU64>,
) {
    while Instant::now() < stop {
        let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
            return;
        };
        if socket.bind(from).is_err() {
            return;
        }
        let Ok(Ok(mut stream)) = tokio::time::timeout_at(stop, socket.connect(hub)).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        opened.fetch_add(1, Ordering::Relaxed);
        match trickle {
            None => {
                // Wait for the hub to close it (or the end).
                let mut buf = [0u8; 64];
                let _ = tokio::time::timeout_at(
                    stop,
                    tokio::io::AsyncReadExt::read(&mut stream, &mut buf),
                )
                .await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Some(every) => {
                // A TLS ClientHello never completes: one byte of a record at a time.
                for byte in b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
                    .iter()
                    .cycle()
                {
                    if Instant::now() >= stop || stream.write_all(&[*byte]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(every).await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Guess device tokens as fast as the hub answers, until `stop`, from an address of the
/// guesser's own (another host on the LAN): (401s, 429s).
async fn guess(hub: Target, stop: Instant) -> Result<(u64, u64)> {
    let fp = hub.tls.context("the flood bench runs over HTTPS")?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(taplink_certs::tls::lan_client_config(
        taplink_certs::tls::HubPin::Exact(fp),
    )?));
    let (mut unauthorized, mut throttled) = (0, 0);
    let mut i = 0u64;
    while Instant::now() < stop {
        i += 1;
        let attempt = async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::from(([127, 2, 0, 1], 0)))?;
            let tcp = socket.connect(hub.addr).await?;
            let name = rustls::pki_types::ServerName::IpAddress(hub.addr.ip().into());
            let mut stream = tls.connect(name, tcp).await?;
            let request = format!(
                "GET /api/v1/kiosk/manifest HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer tlk1-guess{i}\r\nConnection: close\r\n\r\n",
                hub.addr
            );
            stream.write_all(request.as_bytes()).await?;
            let mut head = [0u8; 12];
            tokio::io::AsyncReadExt::read_exact(&mut stream, &mut head).await?;
            anyhow::Ok(
                String::from_utf8_lossy(&head[9..12])
                    .parse::<u16>()
                    .unwrap_or(0),
            )
        };
        match tokio::time::timeout_at(stop, attempt).await {
            Ok(Ok(401)) => unauthorized += 1,
            Ok(Ok(429)) => throttled += 1,
            _ => {}
        }
    }
    Ok((unauthorized, throttled))
}

/// `n` `/healthz` probes, each on a new connection (handshake included).
async fn probe_health(hub: Target, n: usize) -> Result<Probes> {
    let mut probes = Probes::default();
    for _ in 0..n {
        let sent = Instant::now();
        match tokio::time::timeout(
            Duration::from_secs(5),
            http_with(hub, "GET", "/healthz", &[], b""),
        )
        .await
        {
            Ok(Ok((200, _))) => probes.latencies.push(sent.elapsed()),
            _ => probes.failed += 1,
        }
    }
    probes.latencies.sort();
    Ok(probes)
}

/// `n` conditional manifest polls on one keep-alive HTTPS connection, as a kiosk makes
/// them (`304`s).
async fn probe_manifest(hub: Target, auth: &str, n: usize) -> Result<Probes> {
    let requests = vec![crate::bench::load::Request::get(
        hub.addr,
        "/api/v1/kiosk/manifest",
        &[("Authorization", auth)],
    )];
    // One connection, bounded by count rather than time: the load tool's closed loop. A
    // connection that breaks counts as a failed probe, and a new one takes over.
    let mut probes = Probes::default();
    while probes.latencies.len() + probes.failed < n {
        let left = n - probes.latencies.len() - probes.failed;
        match crate::bench::load::run_count(hub, requests.clone(), left).await {
            Ok(report) => probes.latencies.extend(
                report
                    .latencies_us
                    .iter()
                    .map(|us| Duration::from_micros(u64::from(*us))),
            ),
            Err(_) => probes.failed += 1,
        }
    }
    probes.latencies.sort();
    Ok(probes)
}

/// The largest `VmRSS` of `pid` until `stop`, sampled every 100 ms, with its `VmHWM`.
async fn sample_until(pid: u32, stop: Instant) -> Result<Memory> {
    let mut rss = 0;
    while Instant::now() < stop {
        rss = rss.max(Memory::of(pid)?.rss);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Memory {
        rss,
        peak: Memory::of(pid)?.peak,
    })
}

impl Report {
    /// The figures as a table.
    pub fn table(&self) -> Table {
        let mut t = Table::new(format!(
            "bench flood: the hub (HTTPS) under {} idle and {} slow connections and a guessing run",
            self.args.idle, self.args.slow
        ));
        t.note(format!(
            "{} probes of each kind on a quiet hub, then under the flood; the flood's tasks, the probes and the hub share the machine",
            self.args.probes
        ));
        for (name, probes) in [
            ("/healthz (new connection each)", &self.health),
            ("manifest 304 (keep-alive)", &self.manifest),
        ] {
            for (phase, p) in ["quiet", "flooded"].iter().zip(probes) {
                t.row(
                    format!("{name}, {phase}: p50 / p99"),
                    format!("{} / {}", ms(p.quantile(0.5)), ms(p.quantile(0.99))),
                    format!("{} failed", p.failed),
                );
            }
        }
        let answered = self.health[1].failed == 0 && self.manifest[1].failed == 0;
        t.row(
            "every probe answered under the flood",
            if answered { "yes" } else { "no" },
            verdict(answered),
        );
        t.row(
            "hub memory: quiet / flooded (largest VmRSS)",
            format!(
                "{} / {}",
                crate::bench::procs::mib(self.memory[0].rss),
                crate::bench::procs::mib(self.memory[1].rss)
            ),
            format!("< 64 MB: {}", verdict(self.memory[1].rss < HUB_TARGET)),
        );
        t.row(
            "flood connections closed by the hub / refused at once",
            format!(
                "{} / {}",
                self.closed_and_refused.0, self.closed_and_refused.1
            ),
            "",
        );
        t.row(
            "guesses answered 401 / 429 (throttled)",
            format!("{} / {}", self.guesses.0, self.guesses.1),
            "",
        );
        t
    }
}
