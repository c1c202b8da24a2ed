//! The HTTP router, driven with `oneshot` requests.

use axum::http::{StatusCode, header};
use std::sync::Arc;
use taplink_central::enroll_token::EnrollmentToken;
use taplink_central::http::{BODY_LIMIT, app};
use taplink_certs::{Fingerprint, cert_der_from_pem};
use taplink_sync_proto::ids::VenueId;
use taplink_sync_proto::wire::{Heartbeat, TelemetryEvent, TelemetryKind};

use chrono::TimeDelta;
use taplink_sync_proto::clock::ManualClock;

use crate::support::{Initialised, at, call, cert_of, hub, request, t0};

#[tokio::test]
async fn the_api_needs_a_valid_bearer_token() {
    let init = Initialised::new();
    let app = app(init.state());
    let token = init.token();

    let cases = [
        request("GET", "/api/v1/venues", None, None),
        request("GET", "/api/v1/venues", Some("tla1-wrong"), None),
        request(
            "POST",
            "/api/v1/venues",
            None,
            Some(r#"{"name":"a","timezone":"UTC"}"#),
        ),
        {
            let mut r = request("GET", "/api/v1/hubs", None, None);
            r.headers_mut().insert(
                header::AUTHORIZATION,
                format!("Basic {token}").parse().unwrap(),
            );
            r
        },
    ];
    for req in cases {
        let uri = req.uri().clone();
        let answer = call(&app, req).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(answer.headers[header::WWW_AUTHENTICATE], "Bearer");
        assert!(answer.error().contains("admin token"), "{}", answer.error());
    }
    // Nothing was created by the refused POST.
    let answer = call(&app, request("GET", "/api/v1/venues", Some(&token), None)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["venues"], serde_json::json!([]));
}

#[tokio::test]
async fn venues_are_created_listed_and_fetched() {
    let init = Initialised::new();
    let app = app(init.state());
    let token = init.token();

    let body = r#"{"name": "Bar One", "timezone": "Europe/Berlin"}"#;
    let created = call(
        &app,
        request("POST", "/api/v1/venues", Some(&token), Some(body)),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let venue = created.json();
    let id = venue["id"].as_str().unwrap().to_owned();
    id.parse::<VenueId>().unwrap();
    assert_eq!(venue["name"], "Bar One");
    assert_eq!(venue["timezone"], "Europe/Berlin");
    assert!(venue["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        created.headers[header::LOCATION],
        format!("/api/v1/venues/{id}")
    );

    let list = call(&app, request("GET", "/api/v1/venues", Some(&token), None)).await;
    assert_eq!(list.json()["venues"], serde_json::json!([venue]));

    let one = call(
        &app,
        request("GET", &format!("/api/v1/venues/{id}"), Some(&token), None),
    )
    .await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json(), venue);

    let ghost = VenueId::from_bytes([1; 16]);
    let missing = call(
        &app,
        request(
            "GET",
            &format!("/api/v1/venues/{ghost}"),
            Some(&token),
            None,
        ),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.error().contains(&ghost.to_string()));

    let bad = call(
        &app,
        request("GET", "/api/v1/venues/not-an-id", Some(&token), None),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.error().contains("venue id"), "{}", bad.error());
}

#[tokio::test]
async fn malformed_bodies_are_400s_that_name_the_field() {
    let init = Initialised::new();
    let app = app(init.state());
    let token = init.token();
    let cases = [
        (r#"{"name": "Bar"}"#, "timezone"),
        (r#"{"name": 5, "timezone": "UTC"}"#, "name"),
        (r#"{"name": "Bar", "timezone": "UTC", "tz": "UTC"}"#, "tz"),
        (
            r#"{"name": "Bar", "timezone": "Mars/Olympus_Mons"}"#,
            "timezone",
        ),
        (r#"{"name": " ", "timezone": "UTC"}"#, "name"),
        (r#"{"name": "Bar", "timezone": "#, "JSON"),
        ("[]", "struct"),
    ];
    for (body, field) in cases {
        let answer = call(
            &app,
            request("POST", "/api/v1/venues", Some(&token), Some(body)),
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            answer.text()
        );
        let error = answer.error();
        assert!(error.contains(field), "{body}: {error}");
    }

    let mut no_type = request("POST", "/api/v1/venues", Some(&token), None);
    *no_type.body_mut() = r#"{"name": "Bar", "timezone": "UTC"}"#.into();
    let answer = call(&app, no_type).await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(answer.error().contains("application/json"));

    let list = call(&app, request("GET", "/api/v1/venues", Some(&token), None)).await;
    assert_eq!(
        list.json()["venues"],
        serde_json::json!([]),
        "nothing was created"
    );
}

#[tokio::test]
async fn an_oversized_body_is_a_413() {
    let init = Initialised::new();
    let app = app(init.state());
    let name = "x".repeat(BODY_LIMIT);
    let body = format!(r#"{{"name": "{name}", "timezone": "UTC"}}"#);
    let answer = call(
        &app,
        request("POST", "/api/v1/venues", Some(&init.token()), Some(&body)),
    )
    .await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        answer.error().contains(&BODY_LIMIT.to_string()),
        "{}",
        answer.error()
    );
}

#[tokio::test]
async fn an_enrollment_code_pins_centrals_certificate_and_redeems_once() {
    let init = Initialised::new();
    // A fixed clock makes the expiry exact.
    let state = init.state().with_clock(Arc::new(ManualClock::new(t0())));
    let app = app(state.clone());
    let token = init.token();
    let venue = state.registry.create_venue("Bar", "UTC", t0()).unwrap().id;

    let answer = call(
        &app,
        request(
            "POST",
            &format!("/api/v1/venues/{venue}/enrollment-codes"),
            Some(&token),
            None,
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
    assert_eq!(answer.headers[header::CACHE_CONTROL], "no-store");
    let body = answer.json();
    let parsed: EnrollmentToken = body["code"].as_str().unwrap().parse().unwrap();

    // Central's certificate, read from disk independently of the server's state.
    let pem = std::fs::read_to_string(init.data_dir.join("server.pem")).unwrap();
    let central = Fingerprint::of(&cert_der_from_pem(&pem).unwrap());
    assert_eq!(parsed.central, central);
    assert_eq!(body["central_fingerprint"], central.to_string());
    assert_eq!(body["venue_id"], venue.to_string());
    // The default lifetime from config.json: 24 hours.
    assert_eq!(body["expires_at"], "2026-03-02T12:00:00Z");

    // The secret in the token is the one the registry stored (by hash).
    let later = at(TimeDelta::hours(1));
    assert_eq!(
        state
            .registry
            .redeem_enrollment_code(&parsed.secret, hub(1), later)
            .unwrap(),
        venue
    );
    assert!(
        state
            .registry
            .redeem_enrollment_code(&parsed.secret, hub(2), later)
            .is_err()
    );

    let ghost = VenueId::from_bytes([3; 16]);
    let answer = call(
        &app,
        request(
            "POST",
            &format!("/api/v1/venues/{ghost}/enrollment-codes"),
            Some(&token),
            None,
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn hubs_are_listed_filtered_shown_and_revoked() {
    let init = Initialised::new();
    let state = init.state();
    let app = app(state.clone());
    let token = init.token();
    let now = state.now();
    let v1 = state.registry.create_venue("One", "UTC", now).unwrap().id;
    let v2 = state.registry.create_venue("Two", "UTC", now).unwrap().id;
    let (s1, f1) = cert_of(1);
    let (s2, f2) = cert_of(2);
    state.registry.record_hub(hub(1), v1, &s1, f1, now).unwrap();
    state
        .registry
        .record_hub(hub(2), v2, &s2, f2, now + TimeDelta::seconds(1))
        .unwrap();
    let mut revocations = state.subscribe_hub_revocations();

    let all = call(&app, request("GET", "/api/v1/hubs", Some(&token), None)).await;
    assert_eq!(all.status, StatusCode::OK);
    let hubs = all.json()["hubs"].as_array().unwrap().clone();
    assert_eq!(hubs.len(), 2);
    assert_eq!(hubs[0]["id"], hub(1).to_string());
    assert_eq!(hubs[0]["venue_id"], v1.to_string());
    assert_eq!(hubs[0]["state"], "active");
    assert_eq!(hubs[0]["cert_serial"], s1.to_string());
    assert_eq!(hubs[0]["cert_fingerprint"], f1.to_string());

    let only = call(
        &app,
        request(
            "GET",
            &format!("/api/v1/hubs?venue={v2}"),
            Some(&token),
            None,
        ),
    )
    .await;
    let only = only.json()["hubs"].as_array().unwrap().clone();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["id"], hub(2).to_string());

    let bad = call(
        &app,
        request("GET", "/api/v1/hubs?venue=nope", Some(&token), None),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.error().contains("`venue`"), "{}", bad.error());
    let ghost = VenueId::from_bytes([8; 16]);
    let unknown = call(
        &app,
        request(
            "GET",
            &format!("/api/v1/hubs?venue={ghost}"),
            Some(&token),
            None,
        ),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let revoked = call(
        &app,
        request(
            "POST",
            &format!("/api/v1/hubs/{}/revoke", hub(2)),
            Some(&token),
            None,
        ),
    )
    .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text());
    assert_eq!(revoked.json()["state"], "revoked");
    assert!(revoked.json()["revoked_at"].is_string());
    assert_eq!(revocations.try_recv().unwrap(), hub(2));
    assert_eq!(state.registry.revoked_serials().unwrap()[0].serial, s2);

    let shown = call(
        &app,
        request(
            "GET",
            &format!("/api/v1/hubs/{}", hub(2)),
            Some(&token),
            None,
        ),
    )
    .await;
    assert_eq!(shown.json()["state"], "revoked");

    let missing = call(
        &app,
        request(
            "POST",
            &format!("/api/v1/hubs/{}/revoke", hub(9)),
            Some(&token),
            None,
        ),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.error().contains(&hub(9).to_string()));
}

#[tokio::test]
async fn healthz_answers_ok_and_unknown_routes_are_json_404s() {
    let init = Initialised::new();
    let app = app(init.state());
    let health = call(&app, request("GET", "/healthz", None, None)).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(
        health.json(),
        serde_json::json!({"status": "ok", "db": "ok"})
    );

    let nothing = call(&app, request("GET", "/nothing", None, None)).await;
    assert_eq!(nothing.status, StatusCode::NOT_FOUND);
    assert!(nothing.error().contains("/nothing"));

    let wrong_method = call(&app, request("DELETE", "/healthz", None, None)).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(wrong_method.error().contains("DELETE"));
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_report_the_registry() {
    let init = Initialised::new();
    let state = init.state();
    let app = app(state.clone());
    let token = init.token();
    let now = state.now();
    let venue = state.registry.create_venue("One", "UTC", now).unwrap().id;
    let (s, f) = cert_of(1);
    state
        .registry
        .record_hub(hub(1), venue, &s, f, now)
        .unwrap();
    let event = TelemetryEvent {
        id: [1; 16],
        kiosk: None,
        at_ms: 0,
        kind: TelemetryKind::Heartbeat(Heartbeat {
            on_screen: None,
            manifest_version: "v1".into(),
            disk_free_bytes: 0,
            temperature_mc: None,
            uptime_s: 0,
            software: "hub".into(),
        }),
    };
    assert_eq!(
        state
            .store_telemetry(hub(1), std::slice::from_ref(&event))
            .unwrap(),
        1
    );
    assert_eq!(state.store_telemetry(hub(1), &[event]).unwrap(), 0);

    call(
        &app,
        request(
            "GET",
            &format!("/api/v1/venues/{venue}"),
            Some(&token),
            None,
        ),
    )
    .await;
    call(
        &app,
        request("GET", &format!("/api/v1/venues/{venue}"), None, None),
    )
    .await;
    call(&app, request("GET", "/nothing", None, None)).await;

    let answer = call(&app, request("GET", "/metrics", None, None)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = answer.text();
    for line in [
        r#"taplink_central_http_requests_total{route="/api/v1/venues/{id}",method="GET",status="200"} 1"#,
        r#"taplink_central_http_requests_total{route="/api/v1/venues/{id}",method="GET",status="401"} 1"#,
        r#"taplink_central_http_requests_total{route="unmatched",method="GET",status="404"} 1"#,
        "taplink_central_venues 1",
        r#"taplink_central_hubs{state="active"} 1"#,
        r#"taplink_central_hubs{state="revoked"} 0"#,
        "taplink_central_telemetry_events_total 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

mod kiosk_codes {
    use std::sync::Arc;

    use axum::http::{StatusCode, header};
    use chrono::TimeDelta;
    use serde_json::json;
    use taplink_central::http::app;
    use taplink_central::venue::create_venue;
    use taplink_sync_proto::clock::ManualClock;
    use taplink_sync_proto::doc::{self, load_venue};
    use taplink_sync_proto::ids::{GrantId, KioskId, PlaylistId, VenueId};
    use taplink_sync_proto::kiosk_code::KioskCode;
    use taplink_sync_proto::wire::DocId;

    use crate::support::{Initialised, call, request, t0};

    /// Central on a clock that tests move forward, with one venue that has a playlist.
    struct Setup {
        init: Initialised,
        state: taplink_central::AppState,
        app: axum::Router,
        venue: VenueId,
        playlist: PlaylistId,
        clock: Arc<ManualClock>,
    }

    fn setup() -> Setup {
        let init = Initialised::new();
        let clock = Arc::new(ManualClock::new(t0()));
        let state = init.state().with_clock(clock.clone());
        let venue = create_venue(&state.registry, &state.docs, "Bar One", "UTC", t0())
            .unwrap()
            .id;
        let playlist = PlaylistId::random();
        state
            .docs
            .edit(DocId::Venue(venue), |am| {
                doc::create_playlist(am, playlist, "Bar loop")
            })
            .unwrap();
        Setup {
            app: app(state.clone()),
            init,
            state,
            venue,
            playlist,
            clock,
        }
    }

    impl Setup {
        /// Set the clock to `secs` seconds after `t0`.
        fn at_offset(&self, secs: i64) {
            self.clock.set(t0() + TimeDelta::seconds(secs));
        }

        fn uri(&self) -> String {
            format!("/api/v1/venues/{}/kiosk-codes", self.venue)
        }

        async fn post(&self, body: serde_json::Value) -> crate::support::Answer {
            let token = self.init.token();
            call(
                &self.app,
                request("POST", &self.uri(), Some(&token), Some(&body.to_string())),
            )
            .await
        }

        async fn list(&self) -> serde_json::Value {
            let token = self.init.token();
            let answer = call(&self.app, request("GET", &self.uri(), Some(&token), None)).await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
            answer.json()["kiosk_codes"].clone()
        }

        async fn delete(&self, id: &str) -> crate::support::Answer {
            let token = self.init.token();
            let uri = format!("{}/{id}", self.uri());
            call(&self.app, request("DELETE", &uri, Some(&token), None)).await
        }

        fn venue_doc(&self) -> doc::VenueDoc {
            self.state
                .docs
                .read(DocId::Venue(self.venue), |am| load_venue(am))
                .unwrap()
                .unwrap()
        }
    }

    #[tokio::test]
    async fn kiosk_codes_are_created_once_stored_hashed_listed_and_revoked() {
        let s = setup();
        let created = s.post(json!({"name": "Bar screen"})).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
        assert_eq!(created.headers[header::CACHE_CONTROL], "no-store");
        let first = created.json();
        let code: KioskCode = first["code"].as_str().unwrap().parse().unwrap();
        assert_eq!(first["code"].as_str().unwrap().len(), 19);
        assert_eq!(first["name"], "Bar screen");
        assert_eq!(first["venue_id"], s.venue.to_string());
        assert_eq!(first["group"], json!(null));
        // The default lifetime: a week.
        assert_eq!(first["expires_at"], "2026-03-08T12:00:00Z");
        let first_id: GrantId = first["id"].as_str().unwrap().parse().unwrap();

        s.at_offset(1);
        let created = s
            .post(json!({
                "name": "Door screen",
                "expires_in_hours": 2,
                "group": "entrance",
                "playlist": s.playlist,
            }))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
        let second = created.json();
        assert_eq!(second["expires_at"], "2026-03-01T14:00:01Z");
        assert_eq!(second["group"], "entrance");
        assert_eq!(second["playlist"], s.playlist.to_string());
        let second_id: GrantId = second["id"].as_str().unwrap().parse().unwrap();

        // The venue document holds the hash of the code, never the code.
        let venue = s.venue_doc();
        let grant = &venue.kiosk_grants[&first_id];
        assert_eq!(grant.code_hash, code.hash());
        assert_eq!(grant.name, "Bar screen");
        assert_eq!(grant.created_at_ms, t0().timestamp() * 1000);
        assert_eq!(grant.consumed_by, None);
        let text = first["code"].as_str().unwrap();
        let doc_bytes = s
            .state
            .docs
            .read(DocId::Venue(s.venue), |am| am.save())
            .unwrap();
        let compact = text.replace('-', "");
        for needle in [text, compact.as_str()] {
            assert!(
                !doc_bytes
                    .windows(needle.len())
                    .any(|w| w == needle.as_bytes()),
                "the code is in the document"
            );
        }

        let listed = s.list().await;
        assert_eq!(listed.as_array().unwrap().len(), 2);
        assert_eq!(listed[0]["id"], first_id.to_string());
        assert_eq!(listed[0]["state"], "open");
        assert_eq!(listed[0]["created_at"], "2026-03-01T12:00:00Z");
        assert!(listed[0].get("code").is_none(), "{listed}");
        assert_eq!(listed[1]["group"], "entrance");

        // A hub redeemed the second (as its change arrives by sync); three hours later it
        // reads used, the first still open.
        let kiosk = KioskId::random();
        let redeemed_at = (t0() + TimeDelta::hours(1)).timestamp() * 1000;
        s.state
            .docs
            .edit(DocId::Venue(s.venue), |am| {
                doc::redeem_kiosk_grant(am, second_id, kiosk, redeemed_at).map(drop)
            })
            .unwrap();
        s.at_offset(3 * 3600);
        let listed = s.list().await;
        assert_eq!(listed[0]["state"], "open");
        assert_eq!(listed[1]["state"], "used");
        assert_eq!(listed[1]["kiosk"], kiosk.to_string());
        assert_eq!(listed[1]["used_at"], "2026-03-01T13:00:00Z");
        // Eight days on, the first has expired.
        s.at_offset(8 * 24 * 3600);
        assert_eq!(s.list().await[0]["state"], "expired");

        // Revoking removes it from the document; twice is a 404.
        let revoked = s.delete(&first_id.to_string()).await;
        assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.text());
        assert!(!s.venue_doc().kiosk_grants.contains_key(&first_id));
        let again = s.delete(&first_id.to_string()).await;
        assert_eq!(again.status, StatusCode::NOT_FOUND);
        assert!(again.error().contains("kiosk code"), "{}", again.error());
        // Forgetting a used code keeps its kiosk.
        assert_eq!(
            s.delete(&second_id.to_string()).await.status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(s.list().await, json!([]));
        assert!(s.venue_doc().kiosks.contains_key(&kiosk));
    }

    #[tokio::test]
    async fn kiosk_codes_need_the_admin_token() {
        let s = setup();
        let grant = GrantId::random();
        for (method, uri, body) in [
            ("POST", s.uri(), Some(r#"{"name": "x"}"#)),
            ("GET", s.uri(), None),
            ("DELETE", format!("{}/{grant}", s.uri()), None),
        ] {
            for token in [None, Some("tla1-wrong")] {
                let answer = call(&s.app, request(method, &uri, token, body)).await;
                assert_eq!(
                    answer.status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {token:?}"
                );
            }
        }
        assert!(s.venue_doc().kiosk_grants.is_empty());
    }

    #[tokio::test]
    async fn bad_kiosk_code_requests_are_refused_naming_the_problem() {
        let s = setup();
        let long = "x".repeat(101);
        let ghost_playlist = PlaylistId::random().to_string();
        let cases = [
            (json!({"name": ""}), "name"),
            (json!({"name": "  "}), "name"),
            (json!({"name": long}), "name"),
            (json!({"name": "a\u{7}b"}), "name"),
            (json!({"name": "ok", "group": ""}), "group"),
            (json!({"name": "ok", "group": "a\nb"}), "group"),
            (
                json!({"name": "ok", "playlist": ghost_playlist}),
                "playlist",
            ),
            (json!({"name": "ok", "playlist": "nope"}), "playlist id"),
            (
                json!({"name": "ok", "expires_in_hours": 0}),
                "expires_in_hours",
            ),
            (
                json!({"name": "ok", "expires_in_hours": 2161}),
                "expires_in_hours",
            ),
            (
                json!({"name": "ok", "expires_in_hours": -1}),
                "expires_in_hours",
            ),
            (
                json!({"name": "ok", "expires_in_hours": "soon"}),
                "expires_in_hours",
            ),
            (json!({"name": "ok", "code": "7KQ4-MP2X-9RTA-B3HZ"}), "code"),
            (json!({}), "name"),
        ];
        for (body, named) in cases {
            let answer = s.post(body.clone()).await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
            assert!(answer.error().contains(named), "{body}: {}", answer.error());
        }
        assert!(s.venue_doc().kiosk_grants.is_empty(), "nothing was stored");

        let token = s.init.token();
        let ghost = VenueId::random();
        for (method, uri, body, status, says) in [
            (
                "POST",
                format!("/api/v1/venues/{ghost}/kiosk-codes"),
                Some(r#"{"name": "x"}"#),
                StatusCode::NOT_FOUND,
                "venue",
            ),
            (
                "GET",
                format!("/api/v1/venues/{ghost}/kiosk-codes"),
                None,
                StatusCode::NOT_FOUND,
                "venue",
            ),
            (
                "GET",
                "/api/v1/venues/nope/kiosk-codes".to_owned(),
                None,
                StatusCode::BAD_REQUEST,
                "venue id",
            ),
            (
                "DELETE",
                format!("{}/nope", s.uri()),
                None,
                StatusCode::BAD_REQUEST,
                "kiosk code id",
            ),
            (
                "DELETE",
                format!("{}/{}", s.uri(), GrantId::random()),
                None,
                StatusCode::NOT_FOUND,
                "kiosk code",
            ),
            (
                "DELETE",
                format!("/api/v1/venues/{ghost}/kiosk-codes/{}", GrantId::random()),
                None,
                StatusCode::NOT_FOUND,
                "venue",
            ),
        ] {
            let answer = call(&s.app, request(method, &uri, Some(&token), body)).await;
            assert_eq!(answer.status, status, "{method} {uri}");
            assert!(answer.error().contains(says), "{uri}: {}", answer.error());
        }
    }
}

/// A fault inside central (here the registry lost a table behind its back) is a `500` with
/// a fixed sentence: SQLite's message stays in central's log.
#[tokio::test]
async fn internal_errors_answer_a_fixed_sentence_without_the_detail() {
    let init = Initialised::new();
    let state = init.state();
    let app = app(state.clone());
    let token = init.token();
    let other = rusqlite::Connection::open(init.config().data().registry_db()).unwrap();
    other.execute_batch("DROP TABLE venues").unwrap();
    drop(other);

    let answer = call(&app, request("GET", "/api/v1/venues", Some(&token), None)).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    let body = answer.text();
    for leak in ["venues", "no such table", "sqlite", "SQLite"] {
        assert!(!body.contains(leak), "the body leaks {leak:?}: {body}");
    }
    assert_eq!(
        answer.error(),
        "central could not complete this request; the failure has been logged on central for its operator"
    );
}

/// `POST …/enrollment-codes` takes an optional `{ttl}`; a bad one is refused naming it.
#[tokio::test]
async fn an_enrollment_codes_lifetime_can_be_given_and_is_checked() {
    let init = Initialised::new();
    let state = init.state().with_clock(Arc::new(ManualClock::new(t0())));
    let app = app(state.clone());
    let token = init.token();
    let venue = state.registry.create_venue("Bar", "UTC", t0()).unwrap().id;
    let uri = format!("/api/v1/venues/{venue}/enrollment-codes");

    let answer = call(
        &app,
        request("POST", &uri, Some(&token), Some(r#"{"ttl":"2h"}"#)),
    )
    .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
    assert_eq!(answer.json()["expires_at"], "2026-03-01T14:00:00Z");

    for (body, named) in [(r#"{"ttl":"soon"}"#, "`ttl`"), (r#"{"tll":"2h"}"#, "tll")] {
        let answer = call(&app, request("POST", &uri, Some(&token), Some(body))).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(answer.error().contains(named), "{body}: {}", answer.error());
    }
}
