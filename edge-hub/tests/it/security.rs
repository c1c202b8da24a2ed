//! The hub on a hostile LAN (docs/security.md), in process: every route declared and
//! locked, staff tokens, JSON writes and `Host` checks, the guessing throttle, uploads typed
//! by content and bounded by the quota, media served safely, long-polls per device token.
//! The listener's timeouts and caps on real sockets and the private data directory need an
//! enrolled hub and a central: `simulations/tests/it/hub_security.rs`.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::json;
use taplink_edge_hub::http::routes;
use taplink_sync_io::web::access::{Access, check_documented};
use taplink_sync_proto::doc::{MediaMeta, add_media};
use taplink_sync_proto::ids::{KioskId, MediaHash};

use crate::kiosk_api::{Reply, TestHub};

const SECURITY_MD: &str = include_str!("../../../docs/security.md");

/// Every bounded wait in these tests.
const BOUND: Duration = Duration::from_secs(20);

/// A path of a route template with every `{param}` filled with something well-formed.
fn concrete(template: &str) -> String {
    template
        .replace("{hash}", &MediaHash::of(b"nothing").to_string())
        .replace("{kiosk}", &KioskId::random().to_string())
        .replace("{id}", "aaaaaaaaaaaaaaaaaaaaaaaaaa")
}

async fn anonymous(hub: &TestHub, method: &str, path: &str) -> Reply {
    let mut req = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(path);
    let body = if matches!(method, "POST" | "PUT") {
        req = req.header(header::CONTENT_TYPE, "application/json");
        Body::from("{}")
    } else {
        Body::empty()
    };
    hub.send(req.body(body).unwrap()).await
}

#[tokio::test]
async fn every_hub_route_is_declared_documented_and_locked() {
    let hub = TestHub::new();
    let routes = routes(&hub.state);
    check_documented(routes.declared(), SECURITY_MD, "hub").unwrap();
    for route in routes.declared() {
        for method in route.methods {
            let path = concrete(route.path);
            let reply = anonymous(&hub, method, &path).await;
            match route.access {
                Access::Staff | Access::Kiosk => {
                    assert_eq!(
                        reply.status,
                        StatusCode::UNAUTHORIZED,
                        "{method} {path} answered a stranger"
                    );
                    assert_eq!(reply.header(header::WWW_AUTHENTICATE), "Bearer");
                }
                Access::Public => assert_eq!(reply.status, StatusCode::OK, "{method} {path}"),
                // Open doors, but only with a secret: never a success without one.
                Access::Secret => assert!(
                    reply.status.is_client_error() || reply.status == StatusCode::CREATED,
                    "{method} {path}: {}",
                    reply.status
                ),
                other => panic!("{method} {path}: a hub has no {other:?} routes"),
            }
        }
    }
    // A staff token is no device token, nor the other way round.
    let (_, device) = hub.pair("Bar").await;
    for (path, token) in [
        ("/api/v1/venue", device.as_str()),
        ("/api/v1/kiosk/manifest", hub.staff.as_str()),
    ] {
        let reply = hub.call(Method::GET, path, Some(token), None).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    // Public health says nothing about the venue or its errors.
    let health = hub.call(Method::GET, "/healthz", None, None).await.json();
    assert!(health.get("venue").is_none() && health.get("last_error").is_none());
    let status = hub
        .call(Method::GET, "/api/v1/status", Some(&hub.staff), None)
        .await
        .json();
    assert_eq!(status["venue"], hub.state.venue.to_string());
    // The old anonymous telemetry intake is gone.
    let old = anonymous(&hub, "POST", "/api/v1/events").await;
    assert_eq!(old.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_staff_token_opens_staff_routes_until_revoked() {
    let hub = TestHub::new();
    let op = json!({"op": "rename_venue", "name": "The Anchor"});
    let ok = hub
        .call(
            Method::POST,
            "/api/v1/venue/ops",
            Some(&hub.staff),
            Some(op.clone()),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.error());
    assert_eq!(hub.venue().settings.name, "The Anchor");
    let listed = hub.state.store.staff_tokens().unwrap();
    assert!(listed[0].last_used_at.is_some(), "use is recorded");
    hub.state
        .store
        .revoke_staff_token("tests", hub.state.clock.now())
        .unwrap();
    let refused = hub
        .call(
            Method::POST,
            "/api/v1/venue/ops",
            Some(&hub.staff),
            Some(op),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(
        refused.error().contains("token create"),
        "{}",
        refused.error()
    );
}

#[tokio::test]
async fn writes_must_be_json_and_the_host_ours() {
    let hub = TestHub::new();
    let op = json!({"op": "rename_venue", "name": "Renamed by a web page"}).to_string();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut req = Request::post("/api/v1/venue/ops")
            .header(header::AUTHORIZATION, format!("Bearer {}", hub.staff))
            .header(header::CONTENT_LENGTH, op.len());
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let reply = hub.send(req.body(Body::from(op.clone())).unwrap()).await;
        assert_eq!(
            reply.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}"
        );
        assert!(reply.error().contains("application/json"));
    }
    assert_ne!(hub.venue().settings.name, "Renamed by a web page");
    for (host, ok) in [
        ("evil.example", false),
        ("evil.example:8580", false),
        ("192.168.1.20:8580", true),
        ("localhost:8580", true),
    ] {
        let reply = hub
            .send(
                Request::get("/api/v1/venue")
                    .header(header::HOST, host)
                    .header(header::AUTHORIZATION, format!("Bearer {}", hub.staff))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        if ok {
            assert_eq!(reply.status, StatusCode::OK, "{host}");
        } else {
            assert_eq!(reply.status, StatusCode::MISDIRECTED_REQUEST, "{host}");
            assert!(reply.error().contains("evil.example"), "{}", reply.error());
        }
    }
}

#[tokio::test]
async fn guessing_is_slowed_and_counted() {
    use taplink_sync_io::web::guard::FREE_FAILURES;
    let hub = TestHub::new();
    // Device tokens: the free failures are answered 401, then the client must wait.
    for i in 0..FREE_FAILURES + 5 {
        let reply = hub.manifest(&format!("tlk1-guess{i}"), &[]).await;
        let expected = if i < FREE_FAILURES + 1 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(reply.status, expected, "attempt {i}");
    }
    let waiting = hub.manifest("tlk1-guess", &[]).await;
    assert!(waiting.header(header::RETRY_AFTER).parse::<u64>().unwrap() >= 1);
    // The same client is slowed everywhere a secret is checked: pairing ids, staff tokens.
    let poll = hub
        .call(
            Method::GET,
            "/api/v1/pairings/aaaaaaaaaaaaaaaaaaaaaaaaaa",
            None,
            None,
        )
        .await;
    assert_eq!(poll.status, StatusCode::TOO_MANY_REQUESTS);
    let staff = hub
        .call(Method::GET, "/api/v1/venue", Some(&hub.staff), None)
        .await;
    assert_eq!(
        staff.status,
        StatusCode::TOO_MANY_REQUESTS,
        "even a right token waits"
    );
    let metrics =
        String::from_utf8_lossy(&hub.call(Method::GET, "/metrics", None, None).await.body)
            .into_owned();
    assert!(
        metrics.contains(&format!(
            "taplink_hub_auth_failures_total{{kind=\"device_token\"}} {}",
            FREE_FAILURES + 1
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("taplink_hub_auth_throttled_total 7"),
        "{metrics}"
    );
}

#[tokio::test]
async fn pairing_ids_and_kiosk_codes_count_as_guesses() {
    let hub = TestHub::new();
    for i in 0..3 {
        let poll = hub
            .call(
                Method::GET,
                &format!("/api/v1/pairings/{}", "b".repeat(25) + &i.to_string()),
                None,
                None,
            )
            .await;
        assert_eq!(poll.status, StatusCode::NOT_FOUND);
    }
    let code = hub.pair_with_code("7KQ4-MP2X-9RTA-B3HZ").await;
    assert_eq!(code.status, StatusCode::NOT_FOUND);
    let metrics =
        String::from_utf8_lossy(&hub.call(Method::GET, "/metrics", None, None).await.body)
            .into_owned();
    assert!(metrics.contains("kind=\"pairing_id\"} 3"), "{metrics}");
    assert!(metrics.contains("kind=\"kiosk_code\"} 1"), "{metrics}");
}

/// A PNG of `len` bytes (a real signature, then filler).
fn png(len: usize, seed: u8) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect();
    bytes[..8].copy_from_slice(b"\x89PNG\r\n\x1a\n");
    bytes
}

async fn upload(hub: &TestHub, name: &str, content_type: &str, bytes: Vec<u8>) -> Reply {
    hub.send(
        Request::put(format!("/api/v1/media?name={name}"))
            .header(header::AUTHORIZATION, format!("Bearer {}", hub.staff))
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(bytes))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn uploads_are_typed_by_content_and_bounded_by_the_quota() {
    let hub = TestHub::new();
    let html = b"<html><script>alert(document.cookie)</script></html>".to_vec();
    let svg_script =
        b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>".to_vec();
    let svg_handler = b"<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>".to_vec();
    for (what, content_type, bytes, named) in [
        ("html as html", "text/html", html.clone(), "text/html"),
        ("html as png", "image/png", html, "content"),
        (
            "jpeg as png",
            "image/png",
            vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 0],
            "image/jpeg",
        ),
        ("svg with a script", "image/svg+xml", svg_script, "SVG"),
        ("svg with a handler", "image/svg+xml", svg_handler, "SVG"),
    ] {
        let reply = upload(&hub, "x", content_type, bytes).await;
        assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{what}");
        assert!(reply.error().contains(named), "{what}: {}", reply.error());
    }
    assert!(hub.venue().media.is_empty(), "nothing refused was kept");
    assert!(hub.state.blobs.list().unwrap().is_empty());

    // The quota (1.5 MiB here): 900 KiB fit, 700 KiB more do not, and nothing is kept of
    // them.
    let first = upload(&hub, "menu.png", "image/png", png(900 << 10, 7)).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.error());
    assert_eq!(first.json()["content_type"], "image/png");
    let second = upload(&hub, "promo.png", "image/png", png(700 << 10, 9)).await;
    assert_eq!(second.status, StatusCode::INSUFFICIENT_STORAGE);
    assert!(
        second.error().contains("media_quota_bytes"),
        "{}",
        second.error()
    );
    assert_eq!(hub.venue().media.len(), 1);
    assert_eq!(hub.state.blobs.list().unwrap().len(), 1);
    let leftovers = std::fs::read_dir(&hub.state.upload_dir).unwrap().count();
    assert_eq!(leftovers, 0, "no staged file is left behind");
}

/// A slide as the demo makes them (`taplink_simulations::demo::slide`): a plain SVG with
/// shapes and text, nothing active.
fn slide() -> Vec<u8> {
    br##"<svg xmlns="http://www.w3.org/2000/svg" width="1920" height="1080" viewBox="0 0 1920 1080">
<rect width="1920" height="1080" fill="#123456"/>
<circle cx="1600" cy="260" r="180" fill="#ffffff" fill-opacity="0.12"/>
<text x="120" y="560" font-family="sans-serif" font-size="150" font-weight="bold" fill="#ffffff">Menu</text>
<text x="124" y="690" font-family="sans-serif" font-size="64" fill="#ffffff" fill-opacity="0.85">today</text>
<text x="124" y="980" font-family="sans-serif" font-size="36" fill="#ffffff" fill-opacity="0.6">Taplink demo</text>
</svg>"##
        .to_vec()
}

#[tokio::test]
async fn served_media_carries_the_safety_headers() {
    let hub = TestHub::new();
    let svg = slide();
    let uploaded = upload(&hub, "menu.svg", "image/svg+xml", svg.clone()).await;
    assert_eq!(uploaded.status, StatusCode::CREATED, "{}", uploaded.error());
    let hash = MediaHash::of(&svg);
    // A file recorded with a type outside the list (by an older hub, say) is not typed by it.
    let html = b"<html>old</html>";
    let old = hub.state.blobs.put(html).unwrap();
    hub.edit(|am| {
        add_media(
            am,
            old,
            &MediaMeta {
                name: "old.html".into(),
                content_type: "text/html".into(),
                size: html.len() as u64,
            },
        )
    });
    let (_, token) = hub.pair("Bar").await;
    for (path, credential, expected_type, disposition) in [
        (
            format!("/api/v1/media/{hash}"),
            &hub.staff,
            "image/svg+xml",
            "attachment",
        ),
        (
            format!("/api/v1/kiosk/media/{hash}"),
            &token,
            "image/svg+xml",
            "attachment",
        ),
        (
            format!("/api/v1/kiosk/media/{old}"),
            &token,
            "application/octet-stream",
            "attachment",
        ),
    ] {
        let reply = hub.get(&path, credential, &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.header(header::CONTENT_TYPE), expected_type, "{path}");
        assert_eq!(reply.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert!(
            reply
                .header(header::CONTENT_SECURITY_POLICY)
                .starts_with("sandbox"),
            "{path}"
        );
        assert_eq!(reply.header(header::CONTENT_DISPOSITION), disposition);
    }
}

#[tokio::test]
async fn one_device_token_holds_at_most_four_long_polls() {
    use taplink_edge_hub::kiosk_api::MAX_LONG_POLLS_PER_KIOSK;
    use tower::ServiceExt;
    let hub = TestHub::new();
    let (_, token) = hub.pair("Bar").await;
    let (_, other) = hub.pair("Door").await;
    let etag_of = async |token: &str| {
        hub.manifest(token, &[])
            .await
            .header(header::ETAG)
            .to_owned()
    };
    let etags = [etag_of(&token).await, etag_of(&other).await];
    let poll = |token: &str| {
        let app = taplink_edge_hub::http::app(hub.state.clone());
        let etag = if token == other { &etags[1] } else { &etags[0] };
        let req = Request::get("/api/v1/kiosk/manifest?wait=60")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::IF_NONE_MATCH, etag.clone())
            .body(Body::empty())
            .unwrap();
        tokio::spawn(async move { app.oneshot(req).await.unwrap().status() })
    };
    let waiting: Vec<_> = (0..MAX_LONG_POLLS_PER_KIOSK)
        .map(|_| poll(&token))
        .collect();
    hub.long_polls_open(MAX_LONG_POLLS_PER_KIOSK as i64).await;
    // One more from the same token is answered at once, unchanged; another kiosk still
    // gets to wait.
    let extra = tokio::time::timeout(BOUND, poll(&token))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(extra, StatusCode::NOT_MODIFIED);
    let _other = poll(&other);
    hub.long_polls_open(MAX_LONG_POLLS_PER_KIOSK as i64 + 1)
        .await;
    hub.state.shutdown.cancel();
    for w in waiting {
        assert_eq!(w.await.unwrap(), StatusCode::NOT_MODIFIED);
    }
}

/// A fault inside the hub (here its upload staging directory vanished) is a `500` with a
/// fixed sentence: the path and the operating system's error stay in the hub's log.
#[tokio::test]
async fn internal_errors_answer_a_fixed_sentence_without_the_detail() {
    let hub = TestHub::new();
    std::fs::remove_dir_all(&hub.state.upload_dir).unwrap();
    let reply = upload(&hub, "slide.png", "image/png", png(64, 3)).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    let body = String::from_utf8_lossy(&reply.body).into_owned();
    let dir = hub.state.upload_dir.display().to_string();
    for leak in [dir.as_str(), "os error", "No such file", "uploads"] {
        assert!(!body.contains(leak), "the body leaks {leak:?}: {body}");
    }
    assert_eq!(
        reply.error(),
        "the hub could not complete this request; the failure has been logged on the hub for its operator"
    );
    assert!(hub.venue().media.is_empty(), "nothing was accepted");
}
