//! `bench lists`: every list page of central's API at fleet scale, over real HTTP.
//!
//! A real central (plain HTTP on loopback) in a temporary directory, filled through its
//! own registry and documents: `--venues` venues (every fifth tagged `region:north`), a hub
//! recorded for nine in ten (two thirds of those seen once, so `offline`; the rest
//! `never_connected`), `--kiosks-per-venue` kiosks, three media and two playlists of three
//! items in each venue document (the catalog follows through `observe::after_change`, as
//! after any edit), and the audit log topped up to `--audit` entries in batches. Then
//! `--requests` requests in a row on one keep-alive connection for each list page, as the
//! admin token and as a technician signed in with a session cookie and scoped by the tag;
//! `GET /healthz` through the same server is the baseline. The deepest full page of a
//! list is found by walking its cursor chain once first.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result};
use taplink_central::store::AuditRecord;
use taplink_sync_proto::authz::VenueTag;
use taplink_sync_proto::doc::{self, MediaMeta, Placement};
use taplink_sync_proto::ids::{HubId, ItemId, KioskId, MediaHash, PlaylistId, VenueId};
use taplink_sync_proto::note::Via;
use taplink_sync_proto::wire::DocId;

use super::{Table, clock, http_client, ms, quantile, sign_in, verdict};
use crate::mesh::CentralNode;

/// `bench lists` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Venues.
    #[arg(long, default_value_t = 1_000)]
    pub venues: usize,
    /// Kiosks in each venue.
    #[arg(long, default_value_t = 20)]
    pub kiosks_per_venue: usize,
    /// Audit entries in all (the venue edits make some; the rest are appended).
    #[arg(long, default_value_t = 50_000)]
    pub audit: usize,
    /// Requests timed per page and caller.
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
}

/// The tag a fifth of the venues carry, and the technician's scope.
pub(crate) const TAG: &str = "region:north";
/// Every how many venues one is tagged.
const TAG_EVERY: usize = 5;
/// The technician's password.
const PASSWORD: &str = "bench technician password";

/// What the fleet held when the pages were timed.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    /// Venues.
    pub venues: usize,
    /// Venues carrying the tag.
    pub tagged: usize,
    /// Hubs recorded.
    pub hubs: usize,
    /// Kiosks in the catalog.
    pub kiosks: usize,
    /// Audit entries.
    pub audit: u64,
    /// How long filling it took.
    pub fill: Duration,
}

/// One list page, timed.
#[derive(Debug, Clone)]
pub struct PageTimes {
    /// Which page (method, path and what is special about it).
    pub name: String,
    /// `admin` (the bootstrap token) or `technician` (a session, scoped by tag).
    pub caller: &'static str,
    /// Rows on the page.
    pub rows: usize,
    /// Each request's time to the whole body, sorted.
    pub times: Vec<Duration>,
}

/// The figures.
#[derive(Debug, Clone)]
pub struct Report {
    /// The fleet.
    pub fleet: Fleet,
    /// `GET /healthz`, sorted.
    pub baseline: Vec<Duration>,
    /// Every page and caller.
    pub pages: Vec<PageTimes>,
}

impl PageTimes {
    /// The 99th percentile.
    pub fn p99(&self) -> Duration {
        quantile(&self.times, 0.99)
    }
}

impl Report {
    /// The page with the highest p99.
    pub fn worst(&self) -> Option<&PageTimes> {
        self.pages.iter().max_by_key(|p| p.p99())
    }
}

/// Run the bench.
pub async fn run(args: &Args) -> Result<Report> {
    let dir = tempfile::tempdir()?;
    let node = CentralNode::start(&dir.path().join("central")).await?;
    let started = clock::now();
    let (mut fleet, _, sample) = fill(&node, args).await?;
    fleet.fill = started.elapsed();
    eprintln!(
        "lists: filled {} venues, {} kiosks, {} hubs, {} audit entries in {:.1} s",
        fleet.venues,
        fleet.kiosks,
        fleet.hubs,
        fleet.audit,
        fleet.fill.as_secs_f64()
    );

    let base = format!("http://{}", node.central.http_addr());
    let admin = Caller::bearer(&base, &node.admin_token)?;
    let technician = Caller::technician(&base, &admin).await?;

    let requests = args.requests.max(1);
    let mut baseline = Vec::with_capacity(requests);
    for _ in 0..requests {
        let started = clock::now();
        let (status, _) = admin.get("/healthz").await?;
        baseline.push(started.elapsed());
        anyhow::ensure!(status == 200, "/healthz answered {status}");
    }
    baseline.sort();

    let v = sample.to_string();
    let actor = "token:bench-3";
    let specs: Vec<(String, String, bool)> = vec![
        ("venues, first page".into(), "/api/v1/venues".into(), false),
        (
            "venues, deepest full page".into(),
            "/api/v1/venues".into(),
            true,
        ),
        (
            format!("venues ?tag={TAG}"),
            format!("/api/v1/venues?tag={TAG}"),
            false,
        ),
        (
            "venues ?hub_state=offline".into(),
            "/api/v1/venues?hub_state=offline".into(),
            false,
        ),
        (
            "venues ?q=Venue 9".into(),
            "/api/v1/venues?q=Venue%209".into(),
            false,
        ),
        ("hubs, first page".into(), "/api/v1/hubs".into(), false),
        ("kiosks, first page".into(), "/api/v1/kiosks".into(), false),
        (
            "kiosks, deepest full page".into(),
            "/api/v1/kiosks".into(),
            true,
        ),
        (
            "kiosks ?venue=".into(),
            format!("/api/v1/kiosks?venue={v}"),
            false,
        ),
        (
            "media ?venue=".into(),
            format!("/api/v1/media?venue={v}"),
            false,
        ),
        ("audit, first page".into(), "/api/v1/audit".into(), false),
        (
            "audit, deepest full page".into(),
            "/api/v1/audit".into(),
            true,
        ),
        (
            "audit ?venue=".into(),
            format!("/api/v1/audit?venue={v}"),
            false,
        ),
        (
            format!("audit ?actor={actor}"),
            format!("/api/v1/audit?actor={actor}"),
            false,
        ),
    ];
    let mut pages = Vec::new();
    for caller in [&admin, &technician] {
        for (name, path, deep) in &specs {
            let path = if *deep {
                deepest_page(caller, path).await?
            } else {
                path.clone()
            };
            pages.push(time_page(caller, name, &path, requests).await?);
        }
    }
    node.central.shutdown().await?;
    Ok(Report {
        fleet,
        baseline,
        pages,
    })
}

/// Fill the fleet; returns what it holds, its venues in the order they were made, and a
/// tagged venue with kiosks and media. `bench dashboard` fills the same fleet.
pub(crate) async fn fill(
    node: &CentralNode,
    args: &Args,
) -> Result<(Fleet, Vec<VenueId>, VenueId)> {
    let state = node.central.state();
    let registry = &state.registry;
    let tag: VenueTag = TAG.parse()?;
    let mut fleet = Fleet::default();
    let mut venues = Vec::with_capacity(args.venues);
    for i in 0..args.venues.max(1) {
        let venue = taplink_central::venue::create_venue(
            registry,
            &state.docs,
            &format!("Venue {i}"),
            "Europe/Berlin",
            state.now(),
        )?
        .id;
        if i % TAG_EVERY == 0 {
            registry.set_venue_tags(venue, &BTreeSet::from([tag.clone()]))?;
            fleet.tagged += 1;
        }
        if i % 10 != 9 {
            let hub = HubId::random();
            let serial: taplink_certs::Serial = format!("7{:07x}", i).parse()?;
            let fingerprint = taplink_certs::Fingerprint::of(&(i as u64).to_le_bytes());
            registry.record_hub(hub, venue, &serial, fingerprint, state.now())?;
            if i % 3 != 0 {
                registry.touch_hub(hub, state.now(), Some("bench"), None, None)?;
            }
            fleet.hubs += 1;
        }
        let kiosks = args.kiosks_per_venue;
        state
            .docs
            .edit(DocId::Venue(venue), |am| {
                for k in 0..kiosks {
                    doc::add_kiosk(am, KioskId::random(), &format!("Kiosk {k}"))?;
                }
                let hashes: Vec<MediaHash> = (0..3)
                    .map(|m| MediaHash::of(format!("{venue}/{m}").as_bytes()))
                    .collect();
                for (m, hash) in hashes.iter().enumerate() {
                    let meta = MediaMeta {
                        name: format!("clip-{m}.mp4"),
                        content_type: "video/mp4".into(),
                        size: 1_000_000 + m as u64,
                    };
                    doc::add_media(am, *hash, &meta)?;
                }
                for p in 0..2 {
                    let playlist = PlaylistId::random();
                    doc::create_playlist(am, playlist, &format!("Playlist {p}"))?;
                    for hash in &hashes {
                        doc::insert_item(
                            am,
                            playlist,
                            ItemId::random(),
                            Placement::End,
                            *hash,
                            10_000,
                            None,
                        )?;
                    }
                }
                Ok::<_, doc::DocOpError>(())
            })
            .map_err(|e| anyhow::anyhow!("filling venue {venue}: {e}"))?;
        taplink_central::observe::after_change(state.clone(), DocId::Venue(venue)).await?;
        venues.push(venue);
        if (i + 1) % 100 == 0 {
            eprintln!("lists: {} venues", i + 1);
        }
    }
    fleet.venues = venues.len();
    fleet.kiosks = venues.len() * args.kiosks_per_venue;

    // Top up the audit log, one transaction per venue: entries as API edits would leave
    // them, by ten token actors, a minute apart, ending now.
    let have = usize::try_from(registry.audit_len()?).unwrap_or(usize::MAX);
    let missing = args.audit.saturating_sub(have);
    let per_venue = missing.div_ceil(venues.len());
    let now_ms = state.now().timestamp_millis();
    let mut written = 0usize;
    for venue in &venues {
        let n = per_venue.min(missing - written);
        if n == 0 {
            break;
        }
        let heads = state.docs.read(DocId::Venue(*venue), |am| am.get_heads())?;
        let records: Vec<AuditRecord> = (written..written + n)
            .map(|k| AuditRecord {
                at_ms: now_ms - i64::try_from(missing - k).unwrap_or(0) * 60_000,
                actor: format!("token:bench-{}", k % 10),
                via: Via::Api,
                origin: "central".into(),
                venue: Some(*venue),
                action: "document.change".into(),
                detail: serde_json::json!({ "ops": [{
                    "op": "rename_kiosk", "kiosk": KioskId::random(), "name": format!("Kiosk {k}")
                }] }),
                heads: heads.clone(),
                flag: None,
            })
            .collect();
        // The cursor moves to the heads it already had (`after_change` recorded them).
        registry.append_audit(DocId::Venue(*venue), &records, &heads, state.now())?;
        written += n;
        if written / 10_000 != (written - n) / 10_000 {
            eprintln!("lists: {written} audit entries appended");
        }
    }
    fleet.audit = registry.audit_len()?;
    let sample = venues
        .iter()
        .step_by(TAG_EVERY)
        .nth(venues.len() / TAG_EVERY / 2)
        .copied()
        .context("no venue")?;
    Ok((fleet, venues, sample))
}

/// One caller's keep-alive connection to central.
struct Caller {
    name: &'static str,
    base: String,
    client: reqwest::Client,
    auth: (reqwest::header::HeaderName, String),
}

impl Caller {
    /// The admin, with the bootstrap token.
    fn bearer(base: &str, token: &str) -> Result<Caller> {
        Ok(Caller {
            name: "admin",
            base: base.to_owned(),
            client: http_client(None)?,
            auth: (reqwest::header::AUTHORIZATION, format!("Bearer {token}")),
        })
    }

    /// A technician scoped by the tag, made by `admin` and signed in with a password.
    async fn technician(base: &str, admin: &Caller) -> Result<Caller> {
        let created = admin
            .client
            .post(format!("{base}/api/v1/users"))
            .header(admin.auth.0.clone(), &admin.auth.1)
            .json(&serde_json::json!({
                "username": "bench-tech", "role": "technician", "tags": [TAG], "password": PASSWORD,
            }))
            .send()
            .await?;
        anyhow::ensure!(
            created.status() == 201,
            "creating the technician: {}",
            created.status()
        );
        let (cookie, status) = sign_in(&http_client(None)?, base, "bench-tech", PASSWORD).await?;
        let cookie = cookie.with_context(|| format!("signing in: {status}"))?;
        Ok(Caller {
            name: "technician",
            base: base.to_owned(),
            client: http_client(None)?,
            auth: (reqwest::header::COOKIE, cookie),
        })
    }

    /// GET `path`: the status and the body as JSON (`null` when it is not JSON).
    async fn get(&self, path: &str) -> Result<(u16, serde_json::Value)> {
        let answer = self
            .client
            .get(format!("{}{path}", self.base))
            .header(self.auth.0.clone(), &self.auth.1)
            .send()
            .await?;
        let status = answer.status().as_u16();
        let body = answer.bytes().await?;
        Ok((
            status,
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        ))
    }
}

/// The rows of a list answer: its one array.
fn rows(body: &serde_json::Value) -> usize {
    body.as_object()
        .and_then(|o| o.values().find_map(serde_json::Value::as_array))
        .map_or(0, Vec::len)
}

/// `path` with the cursor of its deepest full page (as many rows as the first page),
/// found by walking the cursor chain once.
async fn deepest_page(caller: &Caller, path: &str) -> Result<String> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let (status, mut body) = caller.get(path).await?;
    anyhow::ensure!(status == 200, "{} GET {path}: {status}", caller.name);
    let full = rows(&body);
    let mut deepest = path.to_owned();
    for _ in 0..100_000 {
        let Some(next) = body["next_cursor"].as_str() else {
            return Ok(deepest);
        };
        let page = format!("{path}{sep}cursor={next}");
        let (status, next_body) = caller.get(&page).await?;
        anyhow::ensure!(status == 200, "{} GET {page}: {status}", caller.name);
        if rows(&next_body) == full {
            deepest.clone_from(&page);
        }
        body = next_body;
    }
    anyhow::bail!("{path}: the cursor chain does not end")
}

/// `requests` GETs of `path` in a row, each timed to the whole body.
async fn time_page(caller: &Caller, name: &str, path: &str, requests: usize) -> Result<PageTimes> {
    let mut times = Vec::with_capacity(requests);
    let mut rows_seen = 0;
    for _ in 0..requests {
        let started = clock::now();
        let (status, body) = caller.get(path).await?;
        times.push(started.elapsed());
        anyhow::ensure!(status == 200, "{} GET {path}: {status} {body}", caller.name);
        rows_seen = rows(&body);
    }
    times.sort();
    Ok(PageTimes {
        name: name.to_owned(),
        caller: caller.name,
        rows: rows_seen,
        times,
    })
}

impl Report {
    /// The figures as a table.
    pub fn table(&self) -> Table {
        let mut t = Table::new("bench lists: central's list pages at fleet scale, over HTTP");
        let f = &self.fleet;
        t.note(format!(
            "{} venues ({} tagged {TAG}), {} hubs, {} kiosks, {} audit entries (filled in {:.1} s)",
            f.venues,
            f.tagged,
            f.hubs,
            f.kiosks,
            f.audit,
            f.fill.as_secs_f64()
        ));
        t.note(format!(
            "{} requests in a row per page and caller on one keep-alive connection, default \
             page size; admin = bootstrap token, technician = session cookie scoped by {TAG}",
            self.baseline.len()
        ));
        let target = Duration::from_millis(20);
        t.row(
            "baseline GET /healthz: p50 / p99 / max",
            spread(&self.baseline),
            "",
        );
        for page in &self.pages {
            t.row(
                format!("{} {} ({} rows)", page.caller, page.name, page.rows),
                spread(&page.times),
                format!("p99 < 20 ms: {}", verdict(page.p99() < target)),
            );
        }
        if let Some(worst) = self.worst() {
            t.row(
                format!("worst p99: {} {}", worst.caller, worst.name),
                ms(worst.p99()),
                format!("< 20 ms: {}", verdict(worst.p99() < target)),
            );
        }
        t
    }
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
