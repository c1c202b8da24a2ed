//! `bench screen`: change-to-screen latency. An admin's edit at central, a click on "Save" in
//! central's playlist editor (the dashboard's form, posted over HTTP with a signed-in
//! admin's session, as the browser posts it), or a staff edit at the hub, until every
//! connected kiosk agent holds the new manifest (the one its player page shows from its
//! next poll).
//!
//! Central runs in this process, the hub is the real `taplink-hub` binary (synced to
//! central over QUIC on loopback), and the kiosk agents are real `taplink-kiosk` agents in
//! this process, paired through the hub's API and long-polling it as they do in a venue.
//! Each round changes the duration of an item every kiosk plays, then waits (at most 10 s)
//! until each agent has adopted a manifest with a new version; a kiosk that does not is a
//! miss. Rounds start 100–300 ms apart (random), taking turns: central, the editor, the hub.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use rand::{Rng, SeedableRng};
use serde_json::json;
use taplink_kiosk::state::Phase;
use taplink_sync_proto::doc;
use taplink_sync_proto::ids::ItemId;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::bench::hub_rig::HubRig;
use crate::bench::{Table, ms, verdict};

/// Options of `bench screen`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Kiosk agents connected to the hub.
    #[arg(long, default_value_t = 10)]
    pub kiosks: usize,
    /// Rounds per origin (central, hub).
    #[arg(long, default_value_t = 100)]
    pub rounds: usize,
    /// Seed of the pauses between rounds.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Then cut the venue's WAN (the hub reaches central through a proxy) and time this
    /// many more staff edits at the hub with the internet down.
    #[arg(long, default_value_t = 100)]
    pub offline_rounds: usize,
}

/// Latencies of one origin's edits, one per kiosk and round, sorted.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// Edit to adopted manifest.
    pub latencies: Vec<Duration>,
    /// Kiosk-rounds that did not see the change within 10 s.
    pub missed: usize,
}

impl Series {
    /// The `q` quantile (0..=1).
    pub fn quantile(&self, q: f64) -> Duration {
        crate::bench::quantile(&self.latencies, q)
    }
}

/// What `bench screen` measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The options.
    pub args: Args,
    /// Edits at central.
    pub central: Series,
    /// "Save" in central's playlist editor.
    pub editor: Series,
    /// Edits at the hub (staff API).
    pub hub: Series,
    /// Edits at the hub with the WAN cut.
    pub hub_offline: Series,
}

/// How long one round may take per kiosk.
const ROUND_LIMIT: Duration = Duration::from_secs(10);

/// Run the benchmark.
pub async fn run(args: &Args) -> Result<Report> {
    ensure!(args.kiosks > 0 && args.rounds > 0, "nothing to measure");
    let rig = HubRig::start_behind_wan().await?;
    let (playlist, item) = rig.first_item().await?;
    let item: ItemId = item.parse()?;

    let mut agents = Vec::new();
    for i in 0..args.kiosks {
        let mut config = taplink_kiosk::Config::new(rig.dir.path().join(format!("kiosk-{i}")));
        config.player_listen = "127.0.0.1:0".parse()?;
        config.hub = Some(rig.addr);
        config.hub_plain_http = true;
        config.device_name = format!("bench-{i}");
        config.pairing_poll_ms = 100;
        // One at a time: all come from 127.0.0.1, and the hub keeps only a few waiting
        // pairings per address (older ones give way), as a venue's LAN would not.
        let agent = taplink_kiosk::Kiosk::bind(config).await?;
        pair(&rig, &agent, i).await?;
        agents.push(agent);
    }
    // Every agent reports each manifest it adopts.
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, String, Instant)>();
    for (i, agent) in agents.iter().enumerate() {
        let mut watch = agent.watch();
        let tx = tx.clone();
        tokio::spawn(async move {
            while watch.changed().await.is_ok() {
                let version = watch
                    .borrow_and_update()
                    .manifest
                    .as_ref()
                    .map(|m| m.version.clone());
                if let Some(version) = version
                    && tx.send((i, version, Instant::now())).is_err()
                {
                    return;
                }
            }
        });
    }
    let version_of = |agent: &taplink_kiosk::Kiosk| {
        agent
            .status()
            .manifest
            .as_ref()
            .map(|m| m.version.clone())
            .unwrap_or_default()
    };
    crate::bench::procs::until(ROUND_LIMIT, "every kiosk holding a manifest", async || {
        agents
            .iter()
            .all(|a| !version_of(a).is_empty())
            .then_some(())
    })
    .await?;

    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let mut report = Report {
        args: args.clone(),
        central: Series::default(),
        editor: Series::default(),
        hub: Series::default(),
        hub_offline: Series::default(),
    };
    // An admin signed in to the dashboard, posting the editor's form.
    let base = format!("http://{}", rig.central.central.http_addr());
    let password = "bench password 1";
    let (status, body) = rig
        .central
        .admin(
            "POST",
            "/api/v1/users",
            Some(&json!({ "username": "editor", "display_name": "Ed Editor", "role": "admin", "password": password })),
        )
        .await?;
    ensure!(
        status == 201,
        "creating the editor's admin: {status} {body}"
    );
    let browser = crate::bench::http_client(None)?;
    let (cookie, status) = crate::bench::sign_in(&browser, &base, "editor", password).await?;
    let cookie = cookie.with_context(|| format!("signing in answered {status}"))?;
    let csrf =
        taplink_central::store::csrf_token_for(cookie.split_once('=').map_or("", |(_, v)| v));
    let editor_url = format!("{base}/venues/{}/playlists/{playlist}", rig.venue);
    let mut duration_ms = 5_000u64;
    let online_rounds = args.rounds * 3;
    for round in 0..online_rounds + args.offline_rounds {
        if round == online_rounds
            && let Some(wan) = &rig.wan
        {
            wan.cut();
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..=300))).await;
        while rx.try_recv().is_ok() {}
        let before: Vec<String> = agents.iter().map(version_of).collect();
        duration_ms += 10;
        let origin = if round >= online_rounds { 3 } else { round % 3 };
        let t0 = Instant::now();
        if origin == 0 {
            rig.central.edit_venue(rig.venue, |am| {
                doc::set_item_duration(am, playlist, item, duration_ms)
            })?;
        } else if origin == 1 {
            // The editor's "Save" of one item: its duration and (unchanged) window.
            let seconds = format!("{}.{:03}", duration_ms / 1000, duration_ms % 1000);
            let answer = browser
                .post(&editor_url)
                .header(reqwest::header::COOKIE, &cookie)
                .form(&[
                    ("csrf_token", csrf.as_str()),
                    ("op", "item"),
                    ("item", &item.to_string()),
                    ("duration_s", &seconds),
                    ("when", "always"),
                ])
                .send()
                .await?;
            let status = answer.status().as_u16();
            answer.bytes().await?;
            // reqwest follows the redirect back to the editor page.
            ensure!(status == 200, "the editor's save answered {status}");
        } else {
            rig.op(&json!({
                "op": "set_item_duration", "playlist": playlist, "item": item,
                "duration_ms": duration_ms
            }))
            .await?;
        }
        let series = match origin {
            0 => &mut report.central,
            1 => &mut report.editor,
            2 => &mut report.hub,
            _ => &mut report.hub_offline,
        };
        let mut seen = vec![false; agents.len()];
        let deadline = t0 + ROUND_LIMIT;
        while seen.iter().any(|s| !s) {
            let Ok(Some((i, version, at))) = tokio::time::timeout_at(deadline, rx.recv()).await
            else {
                break;
            };
            if !seen[i] && version != before[i] {
                seen[i] = true;
                series.latencies.push(at - t0);
            }
        }
        series.missed += seen.iter().filter(|s| !**s).count();
    }
    report.central.latencies.sort();
    report.editor.latencies.sort();
    report.hub_offline.latencies.sort();
    report.hub.latencies.sort();
    for agent in agents {
        agent.shutdown().await?;
    }
    Ok(report)
}

/// Pair `agent` by approving the code it shows.
async fn pair(rig: &HubRig, agent: &taplink_kiosk::Kiosk, i: usize) -> Result<()> {
    let code = crate::bench::procs::until(ROUND_LIMIT, "a pairing code", async || {
        match agent.status().phase {
            Phase::Pairing { code, .. } => Some(code),
            _ => None,
        }
    })
    .await?;
    rig.approve(&code, &format!("Screen {}", i + 1)).await?;
    crate::bench::procs::until(ROUND_LIMIT, "the kiosk collecting its token", async || {
        agent.is_paired().then_some(())
    })
    .await
    .context("pairing")
}

impl Report {
    /// The figures as a table.
    pub fn table(&self) -> Table {
        let mut t = Table::new(format!(
            "bench screen: change-to-screen, edit until each of {} kiosk agents holds the new manifest",
            self.args.kiosks
        ));
        t.note(format!(
            "{} rounds per origin, alternating, 100–300 ms apart; {} samples per origin",
            self.args.rounds,
            self.args.rounds * self.args.kiosks
        ));
        t.note("central in-process, hub = real taplink-hub over QUIC on loopback, kiosk agents in-process over HTTP");
        for (name, series, target) in [
            ("edit at central", &self.central, Duration::from_secs(1)),
            (
                "\"Save\" in central's playlist editor",
                &self.editor,
                Duration::from_secs(1),
            ),
            ("edit at the hub", &self.hub, Duration::from_millis(200)),
            (
                "edit at the hub, WAN cut",
                &self.hub_offline,
                Duration::from_millis(200),
            ),
        ] {
            t.row(
                format!("{name}: p50 / max"),
                format!(
                    "{} / {}",
                    ms(series.quantile(0.5)),
                    ms(series.quantile(1.0))
                ),
                "",
            );
            let p99 = series.quantile(0.99);
            t.row(
                format!("{name}: p99"),
                ms(p99),
                format!(
                    "< {}: {}",
                    ms(target),
                    verdict(p99 < target && series.missed == 0)
                ),
            );
            t.row(
                format!("{name}: missed (> 10 s)"),
                series.missed.to_string(),
                "0",
            );
        }
        t
    }
}
