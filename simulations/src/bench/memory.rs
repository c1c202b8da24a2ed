//! `bench memory`: resident memory of the real binaries at work. The hub (`taplink-hub`)
//! with many paired kiosks all long-polling their manifest while staff edit the playlist
//! (each edit answers every poll with a new manifest, and they all poll again); and one
//! kiosk agent (`taplink-kiosk`) paired, with its media cached, following the same edits.
//!
//! Memory is read from `/proc/<pid>/status` every 100 ms: `VmRSS` (resident now; the
//! figure reported is the largest sample) and `VmHWM` (the kernel's own peak).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::bench::hub_rig::HubRig;
use crate::bench::load::{self, Request};
use crate::bench::procs::{Memory, Proc, binary, free_addr, mib, until};
use crate::bench::{Table, verdict};
use crate::mesh::http;

/// Options of `bench memory`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Paired kiosks long-polling the hub.
    #[arg(long, default_value_t = 200)]
    pub kiosks: usize,
    /// Seconds the long-polls run (and memory is sampled).
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Playlist edits at the hub while they run (spread over the time).
    #[arg(long, default_value_t = 5)]
    pub edits: u64,
}

/// What `bench memory` measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The options.
    pub args: Args,
    /// The hub after its first sync, before any kiosk.
    pub hub_idle: Memory,
    /// The hub's largest `VmRSS` sample with the kiosks long-polling, and its `VmHWM` after.
    pub hub_loaded: Memory,
    /// Manifests the long-polls received (each edit sends one to every kiosk).
    pub manifests_received: u64,
    /// The kiosk agent's largest `VmRSS` sample while following the edits, and its `VmHWM`.
    pub kiosk: Memory,
}

/// The targets, in bytes (MB: 10^6 bytes, the stricter reading).
const HUB_TARGET: u64 = 64_000_000;
const KIOSK_TARGET: u64 = 20_000_000;

/// Run the benchmark.
pub async fn run(args: &Args) -> Result<Report> {
    ensure!(args.kiosks > 0 && args.seconds > 0, "nothing to measure");
    // HTTPS, as in a venue: TLS state is part of what a connection costs.
    let rig = HubRig::start_with(true).await?;
    let hub_idle = rig.hub.memory()?;
    let paired = rig.pair(args.kiosks).await?;
    let (playlist, item) = rig.first_item().await?;

    // The hub with every kiosk long-polling (a minute per poll, as kiosks do).
    let path = "/api/v1/kiosk/manifest?wait=60";
    let requests: Vec<Request> = paired
        .iter()
        .map(|p| {
            Request::get(
                rig.addr,
                path,
                &[("Authorization", &format!("Bearer {}", p.token))],
            )
        })
        .collect();
    let window = Duration::from_secs(args.seconds);
    let polls = tokio::spawn(load::run(rig.target, requests, Duration::ZERO, window, &[]));
    let (hub_loaded, ()) = tokio::try_join!(sample(rig.hub.pid(), window), async {
        edits(&rig, &playlist, &item, args.edits, window, 1_000).await
    })?;
    let polls = polls.await.context("long-polls panicked")??;
    ensure!(
        polls.errors == 0,
        "long-polls failed: {}",
        polls.first_error.as_deref().unwrap_or("?")
    );
    let hub_loaded = Memory {
        rss: hub_loaded.rss,
        peak: rig.hub.memory()?.peak,
    };

    // One kiosk agent following the same venue.
    let kiosk = kiosk_memory(&rig, &playlist, &item, args).await?;
    Ok(Report {
        args: args.clone(),
        hub_idle,
        hub_loaded,
        manifests_received: polls.count(200),
        kiosk,
    })
}

/// Staff change the first item's duration `n` times over `window`.
async fn edits(
    rig: &HubRig,
    playlist: &impl ToString,
    item: &str,
    n: u64,
    window: Duration,
    base_ms: u64,
) -> Result<()> {
    for i in 0..n {
        tokio::time::sleep(window / u32::try_from(n + 1)?).await;
        rig.op(&json!({
            "op": "set_item_duration", "playlist": playlist.to_string(), "item": item,
            "duration_ms": base_ms + 1_000 * (i + 1)
        }))
        .await?;
    }
    Ok(())
}

/// The largest `VmRSS` of `pid` sampled every 100 ms over `window` (and `VmHWM` at the end).
async fn sample(pid: u32, window: Duration) -> Result<Memory> {
    let end = tokio::time::Instant::now() + window;
    let mut rss = 0;
    while tokio::time::Instant::now() < end {
        rss = rss.max(Memory::of(pid)?.rss);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Memory {
        rss,
        peak: Memory::of(pid)?.peak,
    })
}

/// Pair a real kiosk agent, let it cache its media, then sample it while it follows edits.
async fn kiosk_memory(
    rig: &HubRig,
    playlist: &impl ToString,
    item: &str,
    args: &Args,
) -> Result<Memory> {
    let dir = rig.dir.path().join("kiosk");
    let player = free_addr()?;
    let (data, hub, player_s) = (
        dir.display().to_string(),
        rig.addr.to_string(),
        player.to_string(),
    );
    let fingerprint = rig.target.tls.context("the rig serves HTTPS")?.to_string();
    let mut agent = Proc::spawn(
        &binary("taplink-kiosk")?,
        &[
            "run",
            "--data",
            &data,
            "--hub",
            &hub,
            "--hub-fingerprint",
            &fingerprint,
            "--player",
            &player_s,
        ],
        &rig.dir.path().join("kiosk.log"),
    )?;
    let state = async || -> Option<Value> {
        let (status, body) = http(player, "GET", "/player/state", b"").await.ok()?;
        (status == 200)
            .then(|| serde_json::from_slice(&body).ok())
            .flatten()
    };
    let code = until(
        Duration::from_secs(30),
        "the kiosk's pairing code",
        async || {
            state().await?["pairing"]["code"]
                .as_str()
                .map(str::to_owned)
        },
    )
    .await?;
    rig.approve(&code, "Measured kiosk").await?;
    until(
        Duration::from_secs(60),
        "the kiosk playing with its media cached",
        async || {
            let s = state().await?;
            let media = s["manifest"]["media"].as_array()?;
            let ready = s["ready"].as_object()?;
            (!media.is_empty()
                && media
                    .iter()
                    .all(|m| ready.contains_key(m.as_str().unwrap_or(""))))
            .then_some(())
        },
    )
    .await?;
    agent.check_running()?;
    let window = Duration::from_secs(args.seconds);
    let (memory, ()) = tokio::try_join!(sample(agent.pid(), window), async {
        edits(rig, playlist, item, args.edits, window, 20_000).await
    })?;
    agent.check_running()?;
    Ok(memory)
}

impl Report {
    /// The figures as a table.
    pub fn table(&self) -> Table {
        let mut t = Table::new(format!(
            "bench memory: resident memory of the hub with {} kiosks long-polling, and of a kiosk agent",
            self.args.kiosks
        ));
        t.note(format!(
            "{} s of long-polls (wait=60) with {} playlist edits at the hub ({} manifests sent); memory sampled every 100 ms",
            self.args.seconds, self.args.edits, self.manifests_received
        ));
        t.row(
            "hub after its first sync, no kiosk: VmRSS",
            mib(self.hub_idle.rss),
            "",
        );
        t.row(
            format!(
                "hub, {} kiosks long-polling: largest VmRSS",
                self.args.kiosks
            ),
            mib(self.hub_loaded.rss),
            format!("< 64 MB: {}", verdict(self.hub_loaded.rss < HUB_TARGET)),
        );
        t.row(
            "hub: VmHWM (peak) at the end",
            mib(self.hub_loaded.peak),
            "",
        );
        t.row(
            "kiosk agent, paired, media cached, following edits: largest VmRSS",
            mib(self.kiosk.rss),
            format!("< 20 MB: {}", verdict(self.kiosk.rss < KIOSK_TARGET)),
        );
        t.row("kiosk agent: VmHWM (peak)", mib(self.kiosk.peak), "");
        t
    }
}
