//! Alerts open after their threshold and clear on recovery; the webhook gets both, is
//! retried when it fails, and never holds anything up.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::TimeDelta;
use serde_json::json;
use taplink_central::AppState;
use taplink_central::alerts::{Webhook, evaluate_once};
use taplink_sync_proto::clock::ManualClock;
use taplink_sync_proto::ids::KioskId;
use taplink_sync_proto::wire::{Heartbeat, TelemetryEvent, TelemetryKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Initialised, cert_of, now};

/// A webhook on loopback that answers 500 to its first request and 200 after, keeping
/// every body it got.
async fn webhook_server() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    let got: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let seen = got.clone();
    tokio::spawn(async move {
        let mut requests = 0;
        // Bounded: a test never sends more than this many.
        while requests < 50 {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            requests += 1;
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let n = socket.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + length {
                        break Some(buf[end + 4..end + 4 + length].to_vec());
                    }
                }
            };
            let status = if requests == 1 {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            if requests > 1
                && let Some(body) = body
                && let Ok(json) = serde_json::from_slice(&body)
            {
                seen.lock().unwrap().push(json);
            }
            let _ = socket
                .write_all(
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await;
        }
    });
    (url, got)
}

fn heartbeat(
    n: u8,
    kiosk: KioskId,
    at: chrono::DateTime<chrono::Utc>,
    disk: u64,
    temp_mc: i32,
) -> TelemetryEvent {
    TelemetryEvent {
        id: [n; 16],
        kiosk: Some(kiosk),
        at_ms: at.timestamp_millis(),
        kind: TelemetryKind::Heartbeat(Heartbeat {
            on_screen: None,
            manifest_version: "v1".into(),
            disk_free_bytes: disk,
            temperature_mc: Some(temp_mc),
            uptime_s: 60,
            software: "taplink-kiosk".into(),
        }),
    }
}

#[tokio::test]
async fn alerts_open_after_their_threshold_clear_on_recovery_and_reach_the_webhook() {
    let init = Initialised::new();
    let (url, got) = webhook_server().await;
    let mut config = init.config();
    config.alert_webhook_url = Some(url.clone());
    let t0 = now();
    let clock = Arc::new(ManualClock::new(t0));
    let state = AppState::load_with_clock(config, clock.clone()).unwrap();
    let venue = crate::support::venue(&state, "The Anchor");
    let (serial, fp) = cert_of(1);
    let hub = taplink_sync_proto::ids::HubId::random();
    state
        .registry
        .record_hub(hub, venue, &serial, fp, t0)
        .unwrap();
    state.registry.touch_hub(hub, t0, None, None, None).unwrap();
    let kiosk = KioskId::random();
    let app = taplink_central::http::app(state.clone());
    let op = json!({"op": "add_kiosk", "id": kiosk.to_string(), "name": "Bar"});
    let added = crate::support::call(
        &app,
        crate::support::request(
            "POST",
            &format!("/api/v1/venues/{venue}/ops"),
            Some(&init.token()),
            Some(&op.to_string()),
        ),
    )
    .await;
    assert_eq!(added.status, axum::http::StatusCode::OK, "{}", added.text());
    // A hot kiosk with a nearly full disk.
    state
        .store_telemetry(hub, &[heartbeat(1, kiosk, t0, 100 << 20, 85_000)])
        .unwrap();

    let tracker = tokio_util::task::TaskTracker::new();
    let cancel = tokio_util::sync::CancellationToken::new();
    let webhook = Webhook::start(url, state.clone(), &tracker, cancel.clone());
    let change = evaluate_once(&state, Some(&webhook)).unwrap();
    let mut kinds: Vec<&str> = change.opened.iter().map(|a| a.kind.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        ["disk_low", "temperature_high"],
        "the hub is not late yet"
    );
    // Evaluating again changes nothing: each condition is one alert.
    assert_eq!(
        evaluate_once(&state, Some(&webhook)).unwrap(),
        Default::default()
    );

    // Eleven minutes of silence: the hub and the kiosk are offline; a silent kiosk's
    // last report no longer counts.
    clock.advance(TimeDelta::minutes(11));
    let change = evaluate_once(&state, Some(&webhook)).unwrap();
    let mut opened: Vec<&str> = change.opened.iter().map(|a| a.kind.as_str()).collect();
    opened.sort_unstable();
    assert_eq!(opened, ["hub_offline", "kiosk_offline"]);
    let mut cleared: Vec<&str> = change.cleared.iter().map(|a| a.kind.as_str()).collect();
    cleared.sort_unstable();
    assert_eq!(cleared, ["disk_low", "temperature_high"]);
    let metrics =
        crate::support::call(&app, crate::support::request("GET", "/metrics", None, None))
            .await
            .text();
    assert!(
        metrics.contains(r#"taplink_central_alerts_open{kind="hub_offline"} 1"#),
        "{metrics}"
    );

    // The overview shows them, in words.
    let overview = crate::support::call(
        &app,
        crate::support::request("GET", "/", Some(&init.token()), None),
    )
    .await
    .text();
    assert!(
        overview.contains("Hub offline") && overview.contains("Kiosk offline"),
        "{overview}"
    );

    // Recovery: the hub is heard from and the kiosk reports, cool and roomy.
    let back = taplink_sync_proto::clock::Clock::now(clock.as_ref());
    state
        .registry
        .touch_hub(hub, back, None, None, None)
        .unwrap();
    state
        .store_telemetry(hub, &[heartbeat(2, kiosk, back, 8 << 30, 45_000)])
        .unwrap();
    let change = evaluate_once(&state, Some(&webhook)).unwrap();
    assert!(change.opened.is_empty());
    assert_eq!(change.cleared.len(), 2);
    assert!(state.registry.open_alerts(None).unwrap().is_empty());

    // The webhook got every event, the first after a retry (its first answer was 500).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let n = got.lock().unwrap().len();
        if n >= 8 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the webhook got {n} of 8 events"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = got.lock().unwrap().clone();
    assert_eq!(
        events.iter().filter(|e| e["event"] == "opened").count(),
        4,
        "{events:?}"
    );
    assert_eq!(
        events.iter().filter(|e| e["event"] == "cleared").count(),
        4,
        "{events:?}"
    );
    assert_eq!(state.metrics.alert_webhook_sent.get(), 8);
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
}

/// The version central computes for `kiosk` at `at`.
fn current_version(
    state: &AppState,
    venue: taplink_sync_proto::ids::VenueId,
    kiosk: KioskId,
    at: chrono::DateTime<chrono::Utc>,
) -> String {
    let doc = state
        .docs
        .read(taplink_sync_proto::wire::DocId::Venue(venue), |am| {
            taplink_sync_proto::doc::load_venue(am)
        })
        .unwrap()
        .unwrap();
    taplink_sync_proto::manifest::manifest(&doc, kiosk, at)
        .unwrap()
        .version
}

#[tokio::test]
async fn content_behind_opens_after_its_threshold_and_clears_when_the_kiosk_catches_up() {
    let init = Initialised::new();
    let mut config = init.config();
    config.alert_content_behind_after = "5m".parse().unwrap();
    let t0 = now();
    let clock = Arc::new(ManualClock::new(t0));
    let state = AppState::load_with_clock(config, clock.clone()).unwrap();
    let venue = crate::support::venue(&state, "The Anchor");
    let (serial, fp) = cert_of(1);
    let hub = taplink_sync_proto::ids::HubId::random();
    state
        .registry
        .record_hub(hub, venue, &serial, fp, t0)
        .unwrap();
    let kiosk = KioskId::random();
    let app = taplink_central::http::app(state.clone());
    let op = json!({"op": "add_kiosk", "id": kiosk.to_string(), "name": "Bar"});
    let added = crate::support::call(
        &app,
        crate::support::request(
            "POST",
            &format!("/api/v1/venues/{venue}/ops"),
            Some(&init.token()),
            Some(&op.to_string()),
        ),
    )
    .await;
    assert_eq!(added.status, axum::http::StatusCode::OK, "{}", added.text());
    let current = current_version(&state, venue, kiosk, t0);
    let beat = |n: u8, at, version: &str| {
        let mut event = heartbeat(n, kiosk, at, 8 << 30, 40_000);
        if let TelemetryKind::Heartbeat(h) = &mut event.kind {
            h.manifest_version = version.into();
        }
        event
    };
    // Up to date: nothing.
    state
        .store_telemetry(hub, &[beat(1, t0, &current)])
        .unwrap();
    assert!(evaluate_once(&state, None).unwrap().opened.is_empty());
    // It keeps reporting an old version (its hub cannot reach it, say): behind, but not
    // for long enough yet.
    let mut n = 2;
    for minutes in [1, 3, 5] {
        let at = t0 + TimeDelta::minutes(minutes);
        clock.set(at);
        state
            .store_telemetry(hub, &[beat(n, at, "an-old-version")])
            .unwrap();
        n += 1;
        assert!(
            evaluate_once(&state, None).unwrap().opened.is_empty(),
            "at {minutes} min"
        );
    }
    // Past five minutes behind (since its first report after the matching one, at 1 min).
    let at = t0 + TimeDelta::minutes(7);
    clock.set(at);
    state
        .store_telemetry(hub, &[beat(n, at, "an-old-version")])
        .unwrap();
    let change = evaluate_once(&state, None).unwrap();
    let opened: Vec<&str> = change.opened.iter().map(|a| a.kind.as_str()).collect();
    assert_eq!(opened, ["content_behind"]);
    assert!(
        change.opened[0].detail.contains("Bar at The Anchor"),
        "{}",
        change.opened[0].detail
    );
    // It catches up: cleared.
    let at = t0 + TimeDelta::minutes(8);
    clock.set(at);
    state
        .store_telemetry(hub, &[beat(n + 1, at, &current)])
        .unwrap();
    let change = evaluate_once(&state, None).unwrap();
    let cleared: Vec<&str> = change.cleared.iter().map(|a| a.kind.as_str()).collect();
    assert_eq!(cleared, ["content_behind"]);
}
