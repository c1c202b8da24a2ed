//! The proof-of-play report over a real socket (daily totals in venue-local days, raw plays,
//! filters, scope, bad parameters) and telemetry retention (expired plays rolled up into
//! daily totals that the report reads, so its numbers do not change).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::{StatusCode, header};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use taplink_central::http::app;
use taplink_central::{AppState, Central};
use taplink_sync_proto::clock::ManualClock;
use taplink_sync_proto::ids::{HubId, ItemId, KioskId, MediaHash, PlaylistId, VenueId};
use taplink_sync_proto::wire::{Heartbeat, ProofOfPlay, TelemetryEvent, TelemetryKind};

use crate::support::{Initialised, cert_of, hub, user_session};

const PASSWORD: &str = "correct horse battery";

fn utc(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn kiosk(n: u8) -> KioskId {
    KioskId::from_bytes([n; 16])
}

fn media(n: u8) -> MediaHash {
    MediaHash::of(&[n])
}

/// A play of `media` on `kiosk` that started at `started` and was reported at `at`.
fn play(id: u32, kiosk: KioskId, media: MediaHash, started: &str, ms: u64) -> TelemetryEvent {
    let started = utc(started).timestamp_millis();
    play_reported(id, kiosk, media, started, ms, started + ms as i64)
}

fn play_reported(
    id: u32,
    kiosk: KioskId,
    media: MediaHash,
    started_ms: i64,
    ms: u64,
    at_ms: i64,
) -> TelemetryEvent {
    let mut event_id = [0u8; 16];
    event_id[..4].copy_from_slice(&id.to_be_bytes());
    event_id[15] = 0x50;
    TelemetryEvent {
        id: event_id,
        kiosk: Some(kiosk),
        at_ms,
        kind: TelemetryKind::ProofOfPlay(ProofOfPlay {
            playlist: PlaylistId::from_bytes([7; 16]),
            item: ItemId::from_bytes([8; 16]),
            media,
            started_ms,
            duration_ms: ms,
        }),
    }
}

fn heartbeat(id: u32, at_ms: i64) -> TelemetryEvent {
    let mut event_id = [0u8; 16];
    event_id[..4].copy_from_slice(&id.to_be_bytes());
    event_id[15] = 0x48;
    TelemetryEvent {
        id: event_id,
        kiosk: Some(kiosk(1)),
        at_ms,
        kind: TelemetryKind::Heartbeat(Heartbeat {
            on_screen: None,
            manifest_version: "v1".into(),
            disk_free_bytes: 1 << 30,
            temperature_mc: None,
            uptime_s: 60,
            software: "taplink-kiosk".into(),
        }),
    }
}

/// Central serving on real sockets with a manual clock.
struct Served {
    _init: Initialised,
    central: Central,
    state: AppState,
    clock: Arc<ManualClock>,
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Served {
    async fn start(at: &str) -> Served {
        let init = Initialised::new();
        let mut config = init.config();
        config.http_listen = "127.0.0.1:0".parse().unwrap();
        config.quic_listen = "127.0.0.1:0".parse().unwrap();
        let clock = Arc::new(ManualClock::new(utc(at)));
        let state = AppState::load_with_clock(config, clock.clone()).unwrap();
        let central = Central::start(state.clone()).await.unwrap();
        let base = format!("http://{}", central.http_addr());
        let http = reqwest::Client::builder()
            .no_proxy()
            .use_preconfigured_tls(taplink_certs::tls::plain_http_client_config())
            .build()
            .unwrap();
        let token = init.token();
        Served {
            _init: init,
            central,
            state,
            clock,
            http,
            base,
            token,
        }
    }

    fn venue(&self, name: &str, tz: &str) -> VenueId {
        self.state
            .registry
            .create_venue(name, tz, self.state.now())
            .unwrap()
            .id
    }

    fn hub_in(&self, venue: VenueId, n: u8) -> HubId {
        let (serial, fp) = cert_of(n);
        self.state
            .registry
            .record_hub(hub(n), venue, &serial, fp, self.state.now())
            .unwrap();
        hub(n)
    }

    /// GET `path` with the admin token (or `cookie`): status and body text.
    async fn get(&self, path: &str, cookie: Option<&str>) -> (StatusCode, String) {
        let mut request = self.http.get(format!("{}{path}", self.base));
        request = match cookie {
            Some(cookie) => request.header(header::COOKIE, cookie),
            None => request.bearer_auth(&self.token),
        };
        let response = request.send().await.unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        (status, response.text().await.unwrap())
    }

    async fn ok(&self, path: &str) -> String {
        let (status, body) = self.get(path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        body
    }

    async fn stop(self) {
        self.central.shutdown().await.unwrap();
    }
}

/// CSV text as a header and rows of named fields.
fn csv(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header line").split(',').collect();
    lines
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields.len(), header.len(), "{line}");
            header
                .iter()
                .zip(fields)
                .map(|(h, f)| ((*h).to_owned(), f.to_owned()))
                .collect()
        })
        .collect()
}

/// Daily rows as (venue, day, kiosk, media) → (plays, ms).
fn daily(
    rows: &[BTreeMap<String, String>],
) -> BTreeMap<(String, String, String, String), (u64, u64)> {
    rows.iter()
        .map(|r| {
            (
                (
                    r["venue_id"].clone(),
                    r["day_local"].clone(),
                    r["kiosk_id"].clone(),
                    r["media"].clone(),
                ),
                (r["plays"].parse().unwrap(), r["played_ms"].parse().unwrap()),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_report_counts_local_days_lists_raw_plays_filters_and_keeps_to_scope() {
    let s = Served::start("2026-03-05T12:00:00Z").await;
    // Berlin is UTC+1 in early March.
    let berlin = s.venue("Berlin", "Europe/Berlin");
    let london = s.venue("London", "UTC");
    let (hb, hl) = (s.hub_in(berlin, 1), s.hub_in(london, 2));
    let (k1, k2, k3) = (kiosk(1), kiosk(2), kiosk(3));
    let (m1, m2) = (media(1), media(2));
    let berlin_plays = [
        play(1, k1, m1, "2026-03-01T10:00:00Z", 10_000),
        // 23:30 UTC is 00:30 on the next day in Berlin.
        play(2, k1, m1, "2026-03-01T23:30:00Z", 20_000),
        play(3, k1, m2, "2026-03-01T12:00:00Z", 5_000),
        play(4, k2, m1, "2026-03-02T09:00:00Z", 15_000),
        heartbeat(5, utc("2026-03-01T12:00:00Z").timestamp_millis()),
    ];
    assert_eq!(s.state.store_telemetry(hb, &berlin_plays).unwrap(), 5);
    let london_plays = [play(6, k3, m1, "2026-03-01T23:30:00Z", 30_000)];
    assert_eq!(s.state.store_telemetry(hl, &london_plays).unwrap(), 1);

    let report = "/api/v1/reports/proof-of-play";
    let (b, l) = (berlin.to_string(), london.to_string());
    let (k1s, k2s, k3s) = (k1.to_string(), k2.to_string(), k3.to_string());
    let (m1s, m2s) = (m1.to_string(), m2.to_string());
    let key = |v: &str, d: &str, k: &str, m: &str| {
        (v.to_owned(), d.to_owned(), k.to_owned(), m.to_owned())
    };

    // Daily totals per kiosk and media in Berlin's days, with the day's start in UTC.
    let body = s.ok(&format!("{report}?venue={b}")).await;
    assert!(
        body.starts_with(
            "venue_id,venue_timezone,day_local,day_start_utc,kiosk_id,media,plays,played_ms\n"
        ),
        "{body}"
    );
    let rows = csv(&body);
    assert_eq!(
        daily(&rows),
        BTreeMap::from([
            (key(&b, "2026-03-01", &k1s, &m1s), (1, 10_000)),
            (key(&b, "2026-03-01", &k1s, &m2s), (1, 5_000)),
            (key(&b, "2026-03-02", &k1s, &m1s), (1, 20_000)),
            (key(&b, "2026-03-02", &k2s, &m1s), (1, 15_000)),
        ])
    );
    assert!(rows.iter().all(|r| r["venue_timezone"] == "Europe/Berlin"));
    let first = rows
        .iter()
        .find(|r| r["day_local"] == "2026-03-01")
        .unwrap();
    assert_eq!(first["day_start_utc"], "2026-02-28T23:00:00Z");
    let days: Vec<&str> = rows.iter().map(|r| r["day_local"].as_str()).collect();
    assert!(days.is_sorted(), "{days:?}");
    // London's play at the same instant stays on 1 March.
    let london_rows = csv(&s.ok(&format!("{report}?venue={l}")).await);
    assert_eq!(
        daily(&london_rows),
        BTreeMap::from([(key(&l, "2026-03-01", &k3s, &m1s), (1, 30_000))])
    );

    // Raw plays: local time with UTC beside it; heartbeats are not plays.
    let raw = csv(&s.ok(&format!("{report}?venue={b}&granularity=raw")).await);
    assert_eq!(raw.len(), 4);
    let late = raw
        .iter()
        .find(|r| r["started_utc"] == "2026-03-01T23:30:00Z")
        .unwrap();
    assert_eq!(late["started_local"], "2026-03-02T00:30:00+01:00");
    assert_eq!(late["day_local"], "2026-03-02");
    assert_eq!(late["duration_ms"], "20000");
    assert_eq!(late["kiosk_id"], k1s);
    assert_eq!(late["media"], m1s);
    assert_eq!(late["hub_id"], hb.to_string());
    assert_eq!(
        late["playlist_id"],
        PlaylistId::from_bytes([7; 16]).to_string()
    );
    let started: Vec<&str> = raw.iter().map(|r| r["started_utc"].as_str()).collect();
    assert!(started.is_sorted(), "{started:?}");

    // Filters.
    let served = &s;
    let only = |query: String| async move { csv(&served.ok(&format!("{report}?{query}")).await) };
    let by_kiosk = only(format!("venue={b}&kiosk={k2s}")).await;
    assert_eq!(by_kiosk.len(), 1);
    assert_eq!(by_kiosk[0]["kiosk_id"], k2s);
    let by_media = only(format!("venue={b}&media={m2s}")).await;
    assert_eq!(by_media.len(), 1);
    assert_eq!(by_media[0]["media"], m2s);
    let from = only(format!("venue={b}&from=2026-03-02")).await;
    assert!(from.len() == 2 && from.iter().all(|r| r["day_local"] == "2026-03-02"));
    let to = only(format!("venue={b}&to=2026-03-01")).await;
    assert!(to.len() == 2 && to.iter().all(|r| r["day_local"] == "2026-03-01"));
    let window = only(format!(
        "venue={b}&granularity=raw&from=2026-03-01T11:00:00Z&to=2026-03-01T23:59:00Z"
    ))
    .await;
    let started: Vec<&str> = window.iter().map(|r| r["started_utc"].as_str()).collect();
    assert_eq!(started, ["2026-03-01T12:00:00Z", "2026-03-01T23:30:00Z"]);

    // JSON: one streamed array, the same rows.
    let json: Value =
        serde_json::from_str(&s.ok(&format!("{report}?venue={b}&format=json")).await).unwrap();
    let items = json.as_array().unwrap();
    assert_eq!(items.len(), 4);
    assert!(items.iter().all(|i| i["venue_timezone"] == "Europe/Berlin"));
    let raw_json: Value = serde_json::from_str(
        &s.ok(&format!(
            "{report}?venue={b}&format=json&granularity=raw&kiosk={k2s}"
        ))
        .await,
    )
    .unwrap();
    assert_eq!(raw_json.as_array().unwrap().len(), 1);
    assert_eq!(raw_json[0]["started_local"], "2026-03-02T10:00:00+01:00");
    let empty: Value = serde_json::from_str(
        &s.ok(&format!("{report}?venue={b}&format=json&from=2027-01-01"))
            .await,
    )
    .unwrap();
    assert_eq!(empty, json!([]));

    // Without a venue, an admin gets every venue.
    let everything = csv(&s.ok(report).await);
    assert_eq!(everything.len(), 5);

    // Store staff of Berlin: London is refused, and without a venue only Berlin is there.
    let router = app(s.state.clone());
    let (cookie, _) = user_session(
        &router,
        &s.token,
        json!({"username": "sue", "role": "store_staff", "venues": [b], "password": PASSWORD}),
    )
    .await;
    let (status, body) = s.get(&format!("{report}?venue={l}"), Some(&cookie)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = s.get(&format!("{report}?venue={b}"), Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(csv(&body).len(), 4);
    let (status, body) = s.get(report, Some(&cookie)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mine = csv(&body);
    assert_eq!(mine.len(), 4);
    assert!(mine.iter().all(|r| r["venue_id"] == b), "{body}");
    let (status, _) = s
        .get(&format!("{report}?venue={b}&granularity=raw"), None)
        .await;
    assert_eq!(status, StatusCode::OK);

    // Bad parameters: 400 naming the parameter.
    for (query, param) in [
        (format!("venue={b}&from=yesterday"), "`from`"),
        (format!("venue={b}&to=2026-13-01"), "`to`"),
        (format!("venue={b}&from=2026-03-02&to=2026-03-01"), "`to`"),
        (format!("venue={b}&kiosk=nope"), "`kiosk`"),
        (format!("venue={b}&media=abc"), "`media`"),
        (format!("venue={b}&format=xml"), "`format`"),
        (format!("venue={b}&granularity=hour"), "`granularity`"),
        ("venue=not-a-venue".to_owned(), "`venue`"),
        (format!("venue={b}&colour=red"), "colour"),
    ] {
        let (status, body) = s.get(&format!("{report}?{query}"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        let error: Value = serde_json::from_str(&body).unwrap();
        let error = error["error"].as_str().unwrap();
        assert!(error.contains(param), "{query}: {error}");
    }
    let (status, _) = s
        .get(&format!("{report}?venue={}", VenueId::random()), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn expiry_rolls_plays_up_and_the_daily_report_keeps_its_numbers() {
    let s = Served::start("2026-03-05T12:00:00Z").await;
    let venue = s.venue("Berlin", "Europe/Berlin");
    let h = s.hub_in(venue, 1);
    let mut events = Vec::new();
    let base = utc("2026-03-01T00:00:00Z").timestamp_millis();
    // 1,200 plays over three days (more than two expiry batches), on two kiosks, three
    // media, and heartbeats.
    for i in 0..1_200u32 {
        let started = base + i64::from(i) * 200_000;
        events.push(play_reported(
            i,
            kiosk(1 + (i % 2) as u8),
            media((i % 3) as u8),
            started,
            1_000 + u64::from(i),
            started + 5_000,
        ));
    }
    for i in 0..100u32 {
        events.push(heartbeat(10_000 + i, base + i64::from(i) * 60_000));
    }
    for batch in events.chunks(250) {
        s.state.store_telemetry(h, batch).unwrap();
    }
    // A play started on 1 March but reported only now: it stays raw after expiry while the
    // rest of its day is rolled up, and the day's total sums both.
    let straggler_at = utc("2026-06-09T12:00:00Z").timestamp_millis();
    s.state
        .store_telemetry(
            h,
            &[play_reported(
                50_000,
                kiosk(1),
                media(0),
                base + 60_000,
                7_000,
                straggler_at,
            )],
        )
        .unwrap();
    assert_eq!(s.state.registry.telemetry_count().unwrap(), 1_301);

    let report = format!("/api/v1/reports/proof-of-play?venue={venue}");
    let daily_before = s.ok(&report).await;
    let daily_json_before = s.ok(&format!("{report}&format=json")).await;
    let totals = daily(&csv(&daily_before));
    assert_eq!(totals.values().map(|t| t.0).sum::<u64>(), 1_201);
    assert!(totals.keys().any(|k| k.1 == "2026-03-03"), "{daily_before}");

    // Nothing is old enough yet.
    let nothing = taplink_central::retention::expire_once(&s.state)
        .await
        .unwrap();
    assert_eq!(nothing.deleted, 0);

    // Past the 90 days: every row but the straggler expires, in batches; the report's daily
    // numbers are the same, now read from the rollups.
    s.clock.advance(TimeDelta::days(100));
    let ingest_state = s.state.clone();
    let ingesting = tokio::spawn(async move {
        // Hubs keep delivering while expiry runs.
        let now = utc("2026-06-13T00:00:00Z").timestamp_millis();
        let mut stored = 0;
        for b in 0..20u32 {
            let batch: Vec<_> = (0..10u32)
                .map(|i| play_reported(100_000 + b * 10 + i, kiosk(9), media(9), now, 1_000, now))
                .collect();
            let state = ingest_state.clone();
            stored += tokio::task::spawn_blocking(move || state.store_telemetry(h, &batch))
                .await
                .unwrap()
                .unwrap();
            tokio::task::yield_now().await;
        }
        stored
    });
    let expired = taplink_central::retention::expire_once(&s.state)
        .await
        .unwrap();
    assert_eq!(ingesting.await.unwrap(), 200);
    assert_eq!(expired.deleted, 1_300);
    assert_eq!(expired.plays_rolled_up, 1_200);
    assert!(expired.batches >= 3, "{expired:?}");
    assert_eq!(s.state.registry.telemetry_count().unwrap(), 201);

    let rollups: i64 = rusqlite::Connection::open(s.state.registry.path())
        .unwrap()
        .query_row("SELECT count(*) FROM play_rollups", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rollups, totals.len() as i64);

    let june = "&to=2026-05-31";
    assert_eq!(s.ok(&format!("{report}{june}")).await, daily_before);
    assert_eq!(
        s.ok(&format!("{report}{june}&format=json")).await,
        daily_json_before
    );
    // Raw plays are gone but the straggler.
    let raw = csv(&s.ok(&format!("{report}&granularity=raw{june}")).await);
    assert_eq!(raw.len(), 1);
    assert_eq!(raw[0]["duration_ms"], "7000");

    // A second pass finds nothing and changes nothing.
    let again = taplink_central::retention::expire_once(&s.state)
        .await
        .unwrap();
    assert_eq!(again.deleted, 0);
    assert_eq!(s.ok(&format!("{report}{june}")).await, daily_before);

    // The metric counts what expired.
    let metrics = s.ok("/metrics").await;
    assert!(
        metrics.contains("taplink_central_telemetry_expired_total 1300"),
        "{metrics}"
    );
    assert!(metrics.contains("taplink_central_plays_rolled_up_total 1200"));
    s.stop().await;
}

/// The dashboard's proof-of-play page: the same totals, per media per venue-local day, as
/// a chart and a table.
#[tokio::test]
async fn the_report_page_charts_plays_per_media_per_local_day() {
    let s = Served::start("2026-03-05T12:00:00Z").await;
    let berlin = s.venue("Berlin", "Europe/Berlin");
    let hb = s.hub_in(berlin, 1);
    let (k1, k2) = (kiosk(1), kiosk(2));
    let (m1, m2) = (media(1), media(2));
    let plays = [
        play(1, k1, m1, "2026-03-01T10:00:00Z", 10_000),
        play(2, k2, m1, "2026-03-01T11:00:00Z", 10_000),
        play(3, k1, m2, "2026-03-01T23:30:00Z", 5_000),
    ];
    assert_eq!(s.state.store_telemetry(hb, &plays).unwrap(), 3);
    let page = s
        .ok(&format!(
            "/reports?venue={berlin}&from=2026-03-01&to=2026-03-03"
        ))
        .await;
    assert!(page.contains("<svg"), "{page}");
    // m1 twice on 1 March; m2 once on 2 March in Berlin (23:30 UTC is 00:30 there).
    assert!(page.contains("2026-03-01: ? — 2 plays"), "{page}");
    assert!(page.contains("2026-03-02: ? — 1 plays"), "{page}");
    assert!(page.contains(&format!(r#"data-media="{m1}""#)));
    let (status, refused) = s.get("/reports?venue=nonsense", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let (status, too_long) = s
        .get(
            &format!("/reports?venue={berlin}&from=2026-01-01&to=2026-03-03"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{too_long}");
    s.stop().await;
}
