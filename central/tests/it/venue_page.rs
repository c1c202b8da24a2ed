//! The dashboard's venue page: kiosk health from heartbeats, content proof against the
//! manifest central computes with the kiosks' own function, "why this is playing", the
//! playlists with their windows, and who may open it.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::{DateTime, Datelike, NaiveTime, TimeDelta, Utc, Weekday};
use serde_json::json;
use taplink_central::AppState;
use taplink_central::http::app;
use taplink_sync_proto::clock::ManualClock;
use taplink_sync_proto::doc::VenueDoc;
use taplink_sync_proto::ids::{HubId, KioskId, MediaHash, PlaylistId, VenueId};
use taplink_sync_proto::manifest::manifest;
use taplink_sync_proto::wire::{Heartbeat, TelemetryEvent, TelemetryKind};

use crate::support::{Answer, Initialised, call, cert_of, now, request, user_session};

const PASSWORD: &str = "correct horse battery";

/// A Wednesday at 12:00 UTC a few days from now: inside "Mon–Fri 11:00–14:00".
fn wednesday_noon() -> DateTime<Utc> {
    let mut day = now().date_naive() + TimeDelta::days(2);
    while day.weekday() != Weekday::Wed {
        day += TimeDelta::days(1);
    }
    day.and_time(NaiveTime::from_hms_opt(12, 0, 0).unwrap())
        .and_utc()
}

fn page(uri: &str, cookie: &str) -> Request<Body> {
    Request::builder()
        .uri(uri)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap()
}

fn beat(n: u8, kiosk: KioskId, at: DateTime<Utc>, version: &str, on: MediaHash) -> TelemetryEvent {
    TelemetryEvent {
        id: [n; 16],
        kiosk: Some(kiosk),
        at_ms: at.timestamp_millis(),
        kind: TelemetryKind::Heartbeat(Heartbeat {
            on_screen: Some(on),
            manifest_version: version.to_owned(),
            disk_free_bytes: 12_345_678_901,
            temperature_mc: Some(48_567),
            uptime_s: 3600,
            software: "taplink-kiosk 0.4.2".to_owned(),
        }),
    }
}

/// The slice of `html` from the element carrying `marker` to the next `</tr>` or
/// `</section>`.
fn part<'a>(html: &'a str, marker: &str, end: &str) -> &'a str {
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in {html}"));
    let rest = &html[start..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

async fn document(app: &axum::Router, token: &str, venue: VenueId) -> VenueDoc {
    let answer = call(
        app,
        request(
            "GET",
            &format!("/api/v1/venues/{venue}/document"),
            Some(token),
            None,
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    serde_json::from_slice(&answer.body).unwrap()
}

async fn ops(app: &axum::Router, token: &str, venue: VenueId, batch: serde_json::Value) {
    let answer: Answer = call(
        app,
        request(
            "POST",
            &format!("/api/v1/venues/{venue}/ops"),
            Some(token),
            Some(&batch.to_string()),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
}

fn record_hub(state: &AppState, venue: VenueId) -> HubId {
    let (serial, fp) = cert_of(7);
    let hub = HubId::random();
    state
        .registry
        .record_hub(hub, venue, &serial, fp, state.now())
        .unwrap();
    hub
}

#[tokio::test]
async fn venue_page_shows_health_content_proof_why_playing_and_playlists() {
    let init = Initialised::new();
    let t = wednesday_noon();
    let state = init.state().with_clock(Arc::new(ManualClock::new(t)));
    let app = app(state.clone());
    let token = init.token();
    let venue = crate::support::venue(&state, "The Anchor");
    let other = crate::support::venue(&state, "The Crown");

    let (lunch, welcome) = (PlaylistId::random(), PlaylistId::random());
    let (bar, door, back, patio) = (
        KioskId::random(),
        KioskId::random(),
        KioskId::random(),
        KioskId::random(),
    );
    let media = |name: &str| MediaHash::of(name.as_bytes());
    let (burger, soup, late, hello) = (
        media("burger"),
        media("soup"),
        media("late"),
        media("hello"),
    );
    let add = |hash: MediaHash, name: &str| {
        json!({"op": "add_media", "hash": hash.to_string(),
               "meta": {"name": name, "content_type": "image/png", "size": 4}})
    };
    let item = |list: PlaylistId, hash: MediaHash, ms: u64, window: serde_json::Value| {
        json!({"op": "insert_item", "playlist": list.to_string(), "item": taplink_sync_proto::ids::ItemId::random().to_string(),
               "at": "end", "media": hash.to_string(), "duration_ms": ms, "window": window})
    };
    ops(
        &app,
        &token,
        venue,
        json!([
            {"op": "set_timezone", "timezone": "UTC"},
            add(burger, "burger.png"),
            add(soup, "soup.png"),
            add(late, "late.png"),
            add(hello, "hello.png"),
            {"op": "create_playlist", "id": lunch.to_string(), "name": "Lunch"},
            {"op": "create_playlist", "id": welcome.to_string(), "name": "Welcome"},
            item(lunch, burger, 10_000, serde_json::Value::Null),
            // Monday to Friday (bits 0..=4), 11:00–14:00.
            item(lunch, soup, 5_000, json!({"days": 31, "start_min": 660, "end_min": 840})),
            // Friday (bit 4) 22:00 until 02:00 on Saturday.
            item(lunch, late, 7_500, json!({"days": 16, "start_min": 1320, "end_min": 120})),
            item(welcome, hello, 8_000, serde_json::Value::Null),
            {"op": "add_kiosk", "id": bar.to_string(), "name": "Bar left"},
            {"op": "set_kiosk_group", "id": bar.to_string(), "group": "bar"},
            {"op": "assign_group_playlist", "group": "bar", "playlist": lunch.to_string()},
            {"op": "add_kiosk", "id": door.to_string(), "name": "Door"},
            {"op": "assign_playlist", "kiosk": door.to_string(), "playlist": welcome.to_string()},
            {"op": "add_kiosk", "id": back.to_string(), "name": "Back office"},
            {"op": "add_kiosk", "id": patio.to_string(), "name": "Patio"},
            {"op": "assign_playlist", "kiosk": patio.to_string(), "playlist": welcome.to_string()},
            {"op": "set_default_playlist", "playlist": welcome.to_string()},
        ]),
    )
    .await;

    // Heartbeats as a hub delivers them: the bar reports what central computes now; the
    // door did, then fell behind; the patio never reported the current manifest; the back
    // office never sent one.
    let doc = document(&app, &token, venue).await;
    let current = |kiosk| manifest(&doc, kiosk, t).unwrap().version;
    let hub = record_hub(&state, venue);
    let minutes = |m| t - TimeDelta::minutes(m);
    let events = [
        beat(1, bar, minutes(3), &current(bar), soup),
        beat(2, door, minutes(10), &current(door), hello),
        beat(3, door, minutes(5), "0ld", hello),
        beat(4, door, minutes(2), "0ld", hello),
        beat(5, patio, minutes(4), "stale", hello),
    ];
    assert_eq!(state.store_telemetry(hub, &events).unwrap(), 5);

    let viewer = json!({"username": "vic", "role": "viewer", "venues": [venue.to_string()], "password": PASSWORD});
    let (vic, _) = user_session(&app, &token, viewer).await;

    // The overview links to the page.
    let overview = call(&app, page("/", &vic)).await.text();
    assert!(
        overview.contains(&format!(r#"href="/venues/{venue}""#)),
        "{overview}"
    );

    let answer = call(&app, page(&format!("/venues/{venue}"), &vic)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let html = answer.text();
    // The header.
    assert!(
        html.contains("The Anchor") && html.contains("UTC"),
        "{html}"
    );
    assert!(html.contains("Never connected"), "{html}");

    // Health and proof, kiosk by kiosk.
    let row = part(&html, &format!(r#"data-kiosk="{bar}""#), "</tr>");
    for expected in [
        "Bar left",
        "bar",
        "Landscape",
        "3 min ago",
        "soup.png",
        "12.3 GB",
        "48.5 °C",
        "taplink-kiosk 0.4.2",
        "Up to date",
    ] {
        assert!(row.contains(expected), "{expected} missing: {row}");
    }
    let row = part(&html, &format!(r#"data-kiosk="{door}""#), "</tr>");
    let since = (t - TimeDelta::minutes(5))
        .format("%a %-d %b %H:%M")
        .to_string();
    assert!(
        row.contains(&format!("Behind since {since}")),
        "behind since its first report after the last matching one: {row}"
    );
    assert!(!row.contains("Up to date"), "{row}");
    let row = part(&html, &format!(r#"data-kiosk="{patio}""#), "</tr>");
    let last = (t - TimeDelta::minutes(4))
        .format("%a %-d %b %H:%M")
        .to_string();
    assert!(row.contains(&format!("Behind since {last}")), "{row}");
    assert!(
        row.contains("has not reported the current manifest"),
        "{row}"
    );
    let row = part(&html, &format!(r#"data-kiosk="{back}""#), "</tr>");
    assert!(row.contains("Unknown") && row.contains("never"), "{row}");
    assert!(!row.contains("Up to date"), "{row}");

    // Why this is playing.
    let why = part(
        &html,
        &format!(r#"class="card why" data-kiosk="{bar}""#),
        "</section>",
    );
    assert!(why.contains("Lunch") && why.contains("group bar"), "{why}");
    assert!(
        why.contains("soup.png · 5 s · in its window Mon–Fri 11:00–14:00"),
        "{why}"
    );
    assert!(why.contains("burger.png · 10 s · always"), "{why}");
    assert!(!why.contains("late.png"), "not in its window now: {why}");
    let next = t + TimeDelta::hours(2);
    assert!(
        why.contains(&format!(
            "from <strong>{}</strong>, burger.png.",
            next.format("%a %-d %b %H:%M")
        )),
        "{why}"
    );
    let why = part(
        &html,
        &format!(r#"class="card why" data-kiosk="{door}""#),
        "</section>",
    );
    assert!(why.contains("own playlist"), "{why}");
    assert!(why.contains("no change in the coming week"), "{why}");
    let why = part(
        &html,
        &format!(r#"class="card why" data-kiosk="{back}""#),
        "</section>",
    );
    assert!(why.contains("venue default"), "{why}");

    // Playlists with their items in order and who uses them.
    let list = part(&html, &format!(r#"data-playlist="{lunch}""#), "</section>");
    let (b, s, l) = (
        list.find("burger.png").unwrap(),
        list.find("soup.png").unwrap(),
        list.find("late.png").unwrap(),
    );
    assert!(b < s && s < l, "in playlist order: {list}");
    assert!(list.contains("Fri 22:00–02:00 next day"), "{list}");
    assert!(list.contains("7.5 s"), "{list}");
    assert!(list.contains("group bar"), "{list}");
    let list = part(
        &html,
        &format!(r#"data-playlist="{welcome}""#),
        "</section>",
    );
    assert!(
        list.contains("kiosk Door")
            && list.contains("kiosk Patio")
            && list.contains("venue default"),
        "{list}"
    );

    // A viewer gets nothing editable: the only form is signing out.
    assert_eq!(html.matches("<form").count(), 1, "{html}");
    assert_eq!(html.matches("<input").count(), 1, "{html}");

    // Without a default, the back office has nothing assigned.
    ops(
        &app,
        &token,
        venue,
        json!([{"op": "set_default_playlist", "playlist": null}]),
    )
    .await;
    let html = call(&app, page(&format!("/venues/{venue}"), &vic))
        .await
        .text();
    let why = part(
        &html,
        &format!(r#"class="card why" data-kiosk="{back}""#),
        "</section>",
    );
    assert!(why.contains("Nothing assigned"), "{why}");

    // The door catches up: up to date again.
    let doc = document(&app, &token, venue).await;
    let door_now = manifest(&doc, door, t).unwrap().version;
    assert_eq!(
        state
            .store_telemetry(hub, &[beat(6, door, minutes(1), &door_now, hello)])
            .unwrap(),
        1
    );
    let html = call(&app, page(&format!("/venues/{venue}"), &vic))
        .await
        .text();
    let row = part(&html, &format!(r#"data-kiosk="{door}""#), "</tr>");
    assert!(row.contains("Up to date"), "{row}");

    // Store staff of another venue get the 403 page; nobody gets a venue that does not exist.
    let staff = json!({"username": "sue", "role": "store_staff", "venues": [other.to_string()], "password": PASSWORD});
    let (sue, _) = user_session(&app, &token, staff).await;
    let refused = call(&app, page(&format!("/venues/{venue}"), &sue)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let text = refused.text();
    assert!(text.contains("You cannot open this page"), "{text}");
    assert!(
        !text.contains("Bar left") && !text.contains("The Anchor"),
        "{text}"
    );
    let theirs = call(&app, page(&format!("/venues/{other}"), &sue)).await;
    assert_eq!(theirs.status, StatusCode::OK, "{}", theirs.text());
    let missing = call(
        &app,
        request(
            "GET",
            &format!("/venues/{}", VenueId::random()),
            Some(&token),
            None,
        ),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.text().contains("No such venue"));
}
