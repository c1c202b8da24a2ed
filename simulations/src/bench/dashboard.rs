//! `bench dashboard`: central's dashboard pages at fleet scale, as an admin signed in with
//! a session cookie, over real HTTP.
//!
//! The fleet of `bench lists` (its `fill`: 1,000 venues, every fifth tagged, a hub recorded
//! for nine in ten, 20 kiosks, 3 media and 2 playlists each, 50,000 audit entries), then
//! what a dashboard shows on top of it:
//! - **Content that plays**: in each venue the first playlist is the default, every fourth
//!   kiosk has the second as its own and every fifth is in a group `bar` that plays it too;
//!   one of its items has a weekday window, so manifests have a schedule to compute.
//! - **Hubs online**: `--online` venues, spread over those with a hub, get a simulated hub
//!   ([`SimHub`]: a certificate from central's CA, the real session driver over QUIC)
//!   that stays connected while the pages are timed, in place of the recorded one (which
//!   is revoked). The other recorded hubs that were seen are offline since two hours ago.
//! - **Heartbeats**: `--beats` per kiosk, one a minute, ending now for a venue whose hub is
//!   online and when its hub was last heard from for one that is offline; the timed
//!   venue's kiosks have `--history` each. Each reports what its manifest puts on screen
//!   and the version central computes for it, except one kiosk in seven that reported a
//!   version and then another (behind, after a matching report), one in seven that never
//!   reported the current one (behind), and one in `--silent-every` silent for two hours.
//!   A venue whose hub never connected has none (unknown).
//! - **Alerts**: one evaluation (`alerts::evaluate_once`) opens what these conditions call
//!   for: the offline hubs, and kiosks silent for longer than ten minutes (those of offline
//!   hubs included). Central's own evaluation keeps running every 30 s meanwhile, as it
//!   does in production.
//!
//! Then, on one keep-alive connection with the admin's session cookie, `--requests` GETs
//! in a row of each page, after one unmeasured GET that also gives the page's weight:
//! the HTML, plus each stylesheet, script or image it links (each fetched once). The times
//! are the client's, on loopback, from sending the request to the whole body: server time
//! plus a loopback round trip, which `GET /healthz` on the same connection (the baseline)
//! shows.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use chrono::{DateTime, TimeDelta, Utc};
use taplink_central::store::{HubRecord, Reach};
use taplink_sync_proto::doc::{self, VenueDoc, load_venue};
use taplink_sync_proto::ids::{KioskId, PlaylistId, VenueId};
use taplink_sync_proto::manifest::manifest;
use taplink_sync_proto::schedule::{ScheduleWindow, Weekdays};
use taplink_sync_proto::wire::{DocId, Heartbeat, TelemetryEvent, TelemetryKind};

use super::simhub::{Connected, SimHub};
use super::{Table, clock, http_client, lists, ms, quantile, sign_in, verdict};
use crate::mesh::CentralNode;

/// `bench dashboard` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Venues.
    #[arg(long, default_value_t = 1_000)]
    pub venues: usize,
    /// Kiosks in each venue.
    #[arg(long, default_value_t = 20)]
    pub kiosks_per_venue: usize,
    /// Audit entries in all (as `bench lists`).
    #[arg(long, default_value_t = 50_000)]
    pub audit: usize,
    /// Venues whose hub is connected (simulated hubs over QUIC), spread over the venues
    /// with a hub (nine in ten); at most that many.
    #[arg(long, default_value_t = 800)]
    pub online: usize,
    /// Heartbeats stored per kiosk, one a minute.
    #[arg(long, default_value_t = 10)]
    pub beats: usize,
    /// Heartbeats per kiosk of the venue whose page is timed (one day at one a minute).
    #[arg(long, default_value_t = 1_440)]
    pub history: usize,
    /// One kiosk in this many has been silent for two hours (0: none).
    #[arg(long, default_value_t = 50)]
    pub silent_every: usize,
    /// Requests timed per page.
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
}

/// The fleet overview's target: p99 server time.
const OVERVIEW_P99: Duration = Duration::from_millis(100);
/// A venue page's target: p99 server time.
const VENUE_P99: Duration = Duration::from_millis(50);
/// The overview's target: page weight, bytes (300 KB).
const OVERVIEW_WEIGHT: usize = 300_000;
/// The admin's password.
const PASSWORD: &str = "bench admin password";
/// How long simulated hubs may take to connect, all together.
const CONNECT_LIMIT: Duration = Duration::from_secs(300);
/// Simulated hubs connecting at once.
const CONNECTING: usize = 32;
/// Client endpoints (UDP sockets) the simulated hubs share.
const ENDPOINTS: usize = 8;
/// How long an offline hub (and its kiosks) has not been heard from.
const OFFLINE_FOR: TimeDelta = TimeDelta::hours(2);

/// What the fleet held when the pages were timed.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    /// The fleet of `bench lists`.
    pub lists: lists::Fleet,
    /// Venues by hub state: online, offline, never connected, no hub.
    pub states: Vec<(String, usize)>,
    /// Offline venues whose kiosks were playing when last heard from.
    pub offline_playing: usize,
    /// Simulated hubs connected.
    pub connected: usize,
    /// Heartbeats stored.
    pub heartbeats: u64,
    /// Open alerts.
    pub alerts: usize,
    /// How long one evaluation of the alerts took (central repeats it every 30 s).
    pub evaluation: Duration,
    /// How long making everything took.
    pub fill: Duration,
}

/// One page, timed.
#[derive(Debug, Clone)]
pub struct PageTimes {
    /// What it is.
    pub name: String,
    /// Its path.
    pub path: String,
    /// Whether it is the fleet overview (else a venue page).
    pub overview: bool,
    /// Venue rows (overview) or kiosk rows (venue page) on it.
    pub rows: usize,
    /// What it says, e.g. the content proofs of a venue page's kiosks.
    pub detail: String,
    /// Bytes of its HTML.
    pub html: usize,
    /// What it links (path, bytes).
    pub assets: Vec<(String, usize)>,
    /// Each request's time to the whole body, sorted.
    pub times: Vec<Duration>,
}

impl PageTimes {
    /// The 99th percentile.
    pub fn p99(&self) -> Duration {
        quantile(&self.times, 0.99)
    }

    /// The HTML and everything it links.
    pub fn weight(&self) -> usize {
        self.html + self.assets.iter().map(|(_, n)| n).sum::<usize>()
    }
}

/// The figures.
#[derive(Debug, Clone)]
pub struct Report {
    /// The fleet.
    pub fleet: Fleet,
    /// `GET /healthz`, sorted.
    pub baseline: Vec<Duration>,
    /// Every page.
    pub pages: Vec<PageTimes>,
}

impl Report {
    /// Whether every page met its targets.
    pub fn met(&self) -> bool {
        self.pages.iter().all(|p| {
            if p.overview {
                p.p99() < OVERVIEW_P99 && p.weight() < OVERVIEW_WEIGHT
            } else {
                p.p99() < VENUE_P99
            }
        })
    }
}

/// Run the bench.
pub async fn run(args: &Args) -> Result<Report> {
    let dir = tempfile::tempdir()?;
    let node = CentralNode::start(&dir.path().join("central")).await?;
    let started = clock::now();
    let lists_args = lists::Args {
        venues: args.venues,
        kiosks_per_venue: args.kiosks_per_venue,
        audit: args.audit,
        requests: 0,
    };
    let (lists_fleet, venues, sample) = lists::fill(&node, &lists_args).await?;
    eprintln!(
        "dashboard: filled {} venues, {} kiosks, {} hubs, {} audit entries",
        lists_fleet.venues, lists_fleet.kiosks, lists_fleet.hubs, lists_fleet.audit
    );
    furnish(&node, &venues).await?;
    let (connections, endpoints, hub_of) = connect_hubs(
        &node,
        &venues,
        sample,
        args.online,
        &dir.path().join("hubs"),
    )
    .await?;
    let heartbeats = beat(&node, &venues, &hub_of, sample, args)?;
    let state = node.central.state();
    let evaluating = clock::now();
    let change = taplink_central::alerts::evaluate_once(state, None)?;
    let evaluation = evaluating.elapsed();
    eprintln!(
        "dashboard: {} hubs connected, {heartbeats} heartbeats, {} alerts opened",
        connections.len(),
        change.opened.len()
    );
    let online = state.online.ids();
    let states = state
        .registry
        .venue_state_counts(&Reach::All, &online)?
        .into_iter()
        .map(|(s, n)| {
            let name = serde_json::to_value(s)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            (name, n)
        })
        .collect();
    let offline_ids: Vec<VenueId> = venues
        .iter()
        .copied()
        .filter(|v| {
            hub_of
                .get(v)
                .is_some_and(|h| h.last_seen.is_some() && !online.contains(&h.id))
        })
        .collect();
    let offline_playing = state
        .registry
        .venue_summaries(
            &offline_ids,
            state.now() - state.config.alert_offline_after.duration(),
        )?
        .values()
        .filter(|s| s.kiosks_last_playing > 0)
        .count();
    let mut fleet = Fleet {
        lists: lists_fleet,
        states,
        offline_playing,
        connected: connections.len(),
        heartbeats: state.registry.telemetry_count()?,
        alerts: state.registry.open_alerts(None)?.len(),
        evaluation,
        fill: Duration::ZERO,
    };
    fleet.fill = started.elapsed();
    eprintln!(
        "dashboard: ready in {:.1} s; timing the pages",
        fleet.fill.as_secs_f64()
    );

    let base = format!("http://{}", node.central.http_addr());
    let (status, body) = node
        .admin(
            "POST",
            "/api/v1/users",
            Some(&serde_json::json!({
                "username": "bench-admin", "role": "admin", "password": PASSWORD,
            })),
        )
        .await?;
    ensure!(status == 201, "creating the admin: {status} {body}");
    let (cookie, status) = sign_in(&http_client(None)?, &base, "bench-admin", PASSWORD).await?;
    let cookie = cookie.with_context(|| format!("signing in: {status}"))?;
    let admin = Session {
        base,
        client: http_client(None)?,
        cookie,
    };

    let requests = args.requests.max(1);
    let mut baseline = Vec::with_capacity(requests);
    for _ in 0..requests {
        let started = clock::now();
        let (status, _) = admin.get("/healthz").await?;
        baseline.push(started.elapsed());
        ensure!(status == 200, "/healthz answered {status}");
    }
    baseline.sort();

    let last = last_page(&admin).await?;
    let specs = [
        ("overview, first page", "/".to_owned(), true),
        (
            "overview ?state=offline",
            "/?state=offline".to_owned(),
            true,
        ),
        (
            "overview ?tag=region:north",
            format!("/?tag={}", lists::TAG),
            true,
        ),
        ("overview, deepest full page (cursor)", last, true),
        ("venue page", format!("/venues/{sample}"), false),
    ];
    let mut pages = Vec::with_capacity(specs.len());
    for (name, path, overview) in specs {
        pages.push(time_page(&admin, name, &path, overview, requests).await?);
    }

    for c in connections {
        c.close().await?;
    }
    for endpoint in &endpoints {
        endpoint.close(0u32.into(), b"bench done");
    }
    node.central.shutdown().await?;
    Ok(Report {
        fleet,
        baseline,
        pages,
    })
}

/// Give every venue content that plays (see the module's notes), one edit per venue.
async fn furnish(node: &CentralNode, venues: &[VenueId]) -> Result<()> {
    let state = node.central.state();
    let lunch = ScheduleWindow::new(Weekdays::WEEKDAYS, 11 * 60, 14 * 60)?;
    for venue in venues {
        let id = DocId::Venue(*venue);
        let view = state.docs.read(id, |am| load_venue(am))??;
        let mut lists: Vec<(&PlaylistId, &doc::Playlist)> = view.playlists.iter().collect();
        lists.sort_by(|a, b| a.1.name.cmp(&b.1.name));
        let (Some((house, _)), Some((specials, second))) = (lists.first(), lists.get(1)) else {
            anyhow::bail!("venue {venue} has fewer than two playlists");
        };
        let (house, specials) = (**house, **specials);
        let windowed = doc::ordered_items(second).first().map(|(item, _)| *item);
        let kiosks: Vec<KioskId> = view.kiosks.keys().copied().collect();
        state
            .docs
            .edit(id, |am| {
                doc::set_default_playlist(am, Some(house))?;
                doc::assign_group_playlist(am, "bar", Some(specials))?;
                if let Some(item) = windowed {
                    doc::set_item_window(am, specials, item, Some(lunch))?;
                }
                for (j, kiosk) in kiosks.iter().enumerate() {
                    if j % 4 == 1 {
                        doc::assign_playlist(am, *kiosk, Some(specials))?;
                    } else if j % 5 == 2 {
                        doc::set_kiosk_group(am, *kiosk, Some("bar"))?;
                    }
                }
                Ok::<_, doc::DocOpError>(())
            })
            .map_err(|e| anyhow::anyhow!("furnishing venue {venue}: {e}"))?;
        taplink_central::observe::after_change(state.clone(), id).await?;
    }
    Ok(())
}

/// Connect a simulated hub for `online` venues with a recorded hub (that record revoked),
/// `sample` and others spread over the fleet, and date the other seen hubs' last contact [`OFFLINE_FOR`] ago.
/// Returns the connections, their endpoints and each venue's live hub record.
async fn connect_hubs(
    node: &CentralNode,
    venues: &[VenueId],
    sample: VenueId,
    online: usize,
    dir: &std::path::Path,
) -> Result<(
    Vec<Connected>,
    Vec<quinn::Endpoint>,
    HashMap<VenueId, HubRecord>,
)> {
    let state = node.central.state();
    let now = state.now();
    let recorded: HashMap<VenueId, HubRecord> = state
        .registry
        .list_hubs(None)?
        .into_iter()
        .map(|h| (h.venue, h))
        .collect();
    let hubbed: Vec<VenueId> = venues
        .iter()
        .copied()
        .filter(|v| recorded.contains_key(v))
        .collect();
    // The timed venue's hub is online (the usual case), the others spread evenly: hubbed
    // venue k is online when the running share crosses an integer.
    let online = online.min(hubbed.len());
    let others: Vec<VenueId> = hubbed.iter().copied().filter(|v| *v != sample).collect();
    let spread = online.saturating_sub(usize::from(hubbed.contains(&sample)));
    let mut chosen: Vec<VenueId> = others
        .iter()
        .enumerate()
        .filter(|(k, _)| (k + 1) * spread / others.len() > k * spread / others.len())
        .map(|(_, v)| *v)
        .collect();
    if online > 0 && hubbed.contains(&sample) {
        chosen.push(sample);
    }
    // Certificates and SQLite files: keep them off the runtime's workers.
    let sims: Vec<Arc<SimHub>> = tokio::task::block_in_place(|| -> Result<_> {
        chosen
            .iter()
            .enumerate()
            .map(|(i, venue)| {
                state.registry.revoke_hub(recorded[venue].id, now)?;
                Ok(Arc::new(SimHub::provision(
                    node,
                    *venue,
                    &dir.join(i.to_string()),
                )?))
            })
            .collect()
    })?;
    let endpoints = (0..ENDPOINTS.min(sims.len().max(1)))
        .map(|_| {
            taplink_sync_io::net::client_endpoint(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let addr = node.quic_addr();
    let deadline = tokio::time::Instant::now() + CONNECT_LIMIT;
    let gate = Arc::new(tokio::sync::Semaphore::new(CONNECTING));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, sim) in sims.iter().enumerate() {
        let (sim, endpoint, gate) = (
            sim.clone(),
            endpoints[i % endpoints.len()].clone(),
            gate.clone(),
        );
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            loop {
                match tokio::time::timeout_at(deadline, sim.connect(&endpoint, addr)).await {
                    Ok(Ok(conn)) => return Ok(conn),
                    Ok(Err(e)) if tokio::time::Instant::now() < deadline => {
                        tracing::debug!(error = %e, "a simulated hub retries");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Ok(Err(e)) => return Err(e),
                    Err(_) => {
                        anyhow::bail!("a simulated hub did not connect within {CONNECT_LIMIT:?}")
                    }
                }
            }
        });
    }
    let mut connections = Vec::with_capacity(sims.len());
    while let Some(done) = tasks.join_next().await {
        connections.push(done??);
        if connections.len() % 100 == 0 {
            eprintln!("dashboard: {} hubs connected", connections.len());
        }
    }
    // The hubs not chosen that were seen have been offline for a while.
    let offline_since = now - OFFLINE_FOR;
    let mut hub_of = HashMap::with_capacity(hubbed.len());
    for venue in &hubbed {
        let mut record = recorded[venue].clone();
        if let Some(i) = chosen.iter().position(|v| v == venue) {
            record = state
                .registry
                .hub(sims[i].ids.hub)?
                .context("a simulated hub's record")?;
        } else if record.last_seen.is_some() {
            state
                .registry
                .touch_hub(record.id, offline_since, None, None, Some(offline_since))?;
            record.last_seen = Some(offline_since);
        }
        hub_of.insert(*venue, record);
    }
    Ok((connections, endpoints, hub_of))
}

/// Store the kiosks' heartbeats (see the module's notes); returns how many.
fn beat(
    node: &CentralNode,
    venues: &[VenueId],
    hub_of: &HashMap<VenueId, HubRecord>,
    sample: VenueId,
    args: &Args,
) -> Result<u64> {
    let state = node.central.state();
    let now = state.now();
    let online = state.online.ids();
    let mut stored = 0u64;
    let mut nth_kiosk = 0usize;
    for venue in venues {
        let Some(hub) = hub_of.get(venue) else {
            continue;
        };
        // A hub that never connected delivered nothing.
        let Some(seen) = hub.last_seen else {
            continue;
        };
        let end = if online.contains(&hub.id) { now } else { seen };
        let view: VenueDoc = state
            .docs
            .read(DocId::Venue(*venue), |am| load_venue(am))??;
        let n = if *venue == sample {
            args.history
        } else {
            args.beats
        };
        let mut events = Vec::new();
        for (j, (kiosk, _)) in view.kiosks.iter().enumerate() {
            nth_kiosk += 1;
            let silent = args.silent_every > 0 && nth_kiosk.is_multiple_of(args.silent_every);
            let last = if silent {
                end.min(now - OFFLINE_FOR)
            } else {
                end
            };
            events.extend(kiosk_beats(&view, *kiosk, j, now, last, n));
        }
        for batch in events.chunks(1_000) {
            stored += u64::from(state.store_telemetry(hub.id, batch)?);
        }
    }
    Ok(stored)
}

/// `n` heartbeats of kiosk number `j` of a venue, one a minute, the last a few seconds
/// before `last`: what its manifest at `now` shows, and the version central computes,
/// or another one (see the module's notes).
fn kiosk_beats(
    view: &VenueDoc,
    kiosk: KioskId,
    j: usize,
    now: DateTime<Utc>,
    last: DateTime<Utc>,
    n: usize,
) -> Vec<TelemetryEvent> {
    let computed = manifest(view, kiosk, now).ok();
    let current = computed
        .as_ref()
        .map(|m| m.version.clone())
        .unwrap_or_default();
    let on_screen = computed.and_then(|m| m.now.first().map(|i| i.media));
    let last = last - TimeDelta::seconds(i64::try_from(j % 60).unwrap_or(0));
    (0..n)
        .map(|b| {
            let version = match j % 7 {
                // Reported the current version, then another (content changed since).
                3 if b >= n / 2 => "an older manifest".to_owned(),
                // Never reported the current version.
                5 => "an older manifest".to_owned(),
                _ => current.clone(),
            };
            let back = i64::try_from(n - 1 - b).unwrap_or(0);
            TelemetryEvent {
                id: rand::random(),
                kiosk: Some(kiosk),
                at_ms: (last - TimeDelta::minutes(back)).timestamp_millis(),
                kind: TelemetryKind::Heartbeat(Heartbeat {
                    on_screen,
                    manifest_version: version,
                    disk_free_bytes: 12_000_000_000,
                    temperature_mc: Some(48_500),
                    uptime_s: 86_400,
                    software: "taplink-kiosk 0.1.0".to_owned(),
                }),
            }
        })
        .collect()
}

/// The admin's keep-alive connection to central, with the session cookie.
struct Session {
    base: String,
    client: reqwest::Client,
    cookie: String,
}

impl Session {
    /// GET `path`: the status and the body.
    async fn get(&self, path: &str) -> Result<(u16, bytes::Bytes)> {
        let answer = self
            .client
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::COOKIE, &self.cookie)
            .send()
            .await?;
        let status = answer.status().as_u16();
        Ok((status, answer.bytes().await?))
    }

    /// GET `path`, which must answer 200, as text.
    async fn page(&self, path: &str) -> Result<String> {
        let (status, body) = self.get(path).await?;
        let text = String::from_utf8(body.to_vec()).context("a page that is not UTF-8")?;
        ensure!(status == 200, "GET {path}: {status} {text}");
        Ok(text)
    }
}

/// The overview's deepest full page (as many venue rows as the first), found by following
/// its "next page" links. (When the venues fill the last page exactly, its link leads to
/// one more page, empty, as the API's cursor does.)
async fn last_page(session: &Session) -> Result<String> {
    let mut path = "/".to_owned();
    let mut deepest = path.clone();
    let mut full = None;
    for _ in 0..10_000 {
        let html = session.page(&path).await?;
        let rows = describe(&html, true).0;
        if *full.get_or_insert(rows) == rows {
            deepest.clone_from(&path);
        }
        match next_link(&html) {
            Some(next) => path = next,
            None => return Ok(deepest),
        }
    }
    anyhow::bail!("the overview's pages do not end")
}

/// The target of the page's `rel="next"` link.
fn next_link(html: &str) -> Option<String> {
    let rel = html.find(r#" rel="next""#)?;
    let tag = &html[html[..rel].rfind("<a ")?..rel];
    let start = tag.find(r#"href=""#)? + r#"href=""#.len();
    let href = &tag[start..];
    Some(href[..href.find('"')?].replace("&amp;", "&"))
}

/// The local paths the page links for the browser to fetch: stylesheets, scripts, images.
fn linked(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find('<') {
        rest = &rest[at + 1..];
        let tag = &rest[..rest.find('>').unwrap_or(rest.len())];
        let attr = if tag.starts_with("link ") && tag.contains(r#"rel="stylesheet""#) {
            "href=\""
        } else if tag.starts_with("script ") || tag.starts_with("img ") {
            "src=\""
        } else {
            continue;
        };
        if let Some(start) = tag.find(attr).map(|i| i + attr.len())
            && let Some(len) = tag[start..].find('"')
        {
            let path = tag[start..start + len].replace("&amp;", "&");
            if path.starts_with('/') && !found.contains(&path) {
                found.push(path);
            }
        }
    }
    found
}

/// What a page shows: venue rows and their hub states, or kiosk rows and their proofs.
fn describe(html: &str, overview: bool) -> (usize, String) {
    let (row, attr) = if overview {
        ("<tr data-venue=", "data-hub-state=\"")
    } else {
        ("<tr data-kiosk=", "data-proof=\"")
    };
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let rows = html.matches(row).count();
    for (at, _) in html.match_indices(attr) {
        let value = &html[at + attr.len()..];
        let value = &value[..value.find('"').unwrap_or(0)];
        *counts.entry(value).or_default() += 1;
    }
    if overview {
        *counts.entry("of them offline but playing").or_default() +=
            html.matches("data-offline-playing=\"true\"").count();
    }
    let detail = counts
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    (rows, detail)
}

/// One unmeasured GET of `path` (for its weight and what it shows), then `requests` in a
/// row, each timed to the whole body.
async fn time_page(
    session: &Session,
    name: &str,
    path: &str,
    overview: bool,
    requests: usize,
) -> Result<PageTimes> {
    let html = session.page(path).await?;
    let mut assets = Vec::new();
    for asset in linked(&html) {
        let (status, body) = session.get(&asset).await?;
        ensure!(status == 200, "GET {asset} (linked by {path}): {status}");
        assets.push((asset, body.len()));
    }
    let (rows, detail) = describe(&html, overview);
    let mut times = Vec::with_capacity(requests);
    for _ in 0..requests {
        let started = clock::now();
        let (status, _) = session.get(path).await?;
        times.push(started.elapsed());
        ensure!(status == 200, "GET {path}: {status}");
    }
    times.sort();
    Ok(PageTimes {
        name: name.to_owned(),
        path: path.to_owned(),
        overview,
        rows,
        detail,
        html: html.len(),
        assets,
        times,
    })
}

/// Bytes in decimal kilobytes, with the exact count.
fn kb(bytes: usize) -> String {
    format!("{:.1} kB ({bytes} B)", bytes as f64 / 1000.0)
}

/// p50 / p99 / max of sorted times.
fn spread(sorted: &[Duration]) -> String {
    format!(
        "{} / {} / {}",
        ms(quantile(sorted, 0.5)),
        ms(quantile(sorted, 0.99)),
        ms(sorted.last().copied().unwrap_or_default())
    )
}

impl Report {
    /// The figures as a table.
    pub fn table(&self) -> Table {
        let mut t = Table::new(
            "bench dashboard: central's dashboard pages at fleet scale, as an admin with a session cookie",
        );
        let f = &self.fleet;
        let l = &f.lists;
        t.note(format!(
            "{} venues ({} tagged {}), {} kiosks, {} audit entries; {} simulated hubs connected; \
             {} heartbeats; {} open alerts (one evaluation of them: {}; made in {:.1} s)",
            l.venues,
            l.tagged,
            lists::TAG,
            l.kiosks,
            l.audit,
            f.connected,
            f.heartbeats,
            f.alerts,
            ms(f.evaluation),
            f.fill.as_secs_f64()
        ));
        t.note(format!(
            "hub states: {}; {} offline venues were playing when last heard from",
            f.states
                .iter()
                .map(|(s, n)| format!("{n} {s}"))
                .collect::<Vec<_>>()
                .join(", "),
            f.offline_playing
        ));
        t.note(format!(
            "{} requests in a row per page on one keep-alive connection; client time on \
             loopback to the whole body (server time plus a loopback round trip: see the baseline)",
            self.baseline.len()
        ));
        t.row(
            "baseline GET /healthz: p50 / p99 / max",
            spread(&self.baseline),
            "",
        );
        for page in &self.pages {
            let (target, label) = if page.overview {
                (OVERVIEW_P99, "p99 < 100 ms")
            } else {
                (VENUE_P99, "p99 < 50 ms")
            };
            t.row(
                format!(
                    "{} ({} rows: {}): p50 / p99 / max",
                    page.name, page.rows, page.detail
                ),
                spread(&page.times),
                format!("{label}: {}", verdict(page.p99() < target)),
            );
            let parts = std::iter::once(format!("HTML {}", page.html))
                .chain(page.assets.iter().map(|(a, n)| format!("{a} {n}")))
                .collect::<Vec<_>>()
                .join(" + ");
            t.row(
                format!("  weight of {} ({parts})", page.path),
                kb(page.weight()),
                if page.overview {
                    format!("< 300 KB: {}", verdict(page.weight() < OVERVIEW_WEIGHT))
                } else {
                    String::new()
                },
            );
        }
        let worst = |overview: bool| {
            self.pages
                .iter()
                .filter(|p| p.overview == overview)
                .map(PageTimes::p99)
                .max()
                .unwrap_or_default()
        };
        let heaviest = self
            .pages
            .iter()
            .filter(|p| p.overview)
            .map(PageTimes::weight)
            .max()
            .unwrap_or_default();
        t.row(
            "verdict (issue 13): overview p99 / weight, venue page p99",
            format!(
                "{} / {} , {}",
                ms(worst(true)),
                kb(heaviest),
                ms(worst(false))
            ),
            format!("< 100 ms / < 300 KB, < 50 ms: {}", verdict(self.met())),
        );
        t
    }
}
