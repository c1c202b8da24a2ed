//! The player server through its router (`oneshot`): the page, its state, media with
//! ranges, proof of play, health and metrics.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use taplink_kiosk::follower::adopt;
use taplink_kiosk::player::{self, Health, PlayerState};
use taplink_kiosk::state::Phase;
use taplink_sync_proto::ids::MediaHash;
use taplink_sync_proto::wire::TelemetryKind;
use tower::ServiceExt;

use crate::{KIOSK, PLAYLIST, item, manifest, set_paired, shared};

async fn get(
    app: axum::Router,
    uri: &str,
    headers: &[(header::HeaderName, &str)],
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut req = Request::get(uri);
    for (name, value) in headers {
        req = req.header(name, *value);
    }
    let resp = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

async fn post(app: axum::Router, uri: &str, body: String) -> (StatusCode, Vec<u8>) {
    let req = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    (
        status,
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
}

#[tokio::test]
async fn the_page_is_self_contained() {
    let dir = tempfile::tempdir().unwrap();
    let app = player::app(shared(dir.path()));
    let (status, headers, body) = get(app, "/", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains("/player/state") && page.contains("/player/played"));
    // No external resources: no stylesheet or script links, no absolute URLs.
    for forbidden in ["<link", "src=\"http", "http://", "https://", "@import"] {
        assert!(!page.contains(forbidden), "page contains {forbidden}");
    }
}

#[tokio::test]
async fn state_follows_pairing_and_carries_the_manifest_and_what_is_cached() {
    let dir = tempfile::tempdir().unwrap();
    let shared = shared(dir.path());
    let app = player::app(shared.clone());

    let (_, _, body) = get(app.clone(), "/player/state", &[]).await;
    let state: PlayerState = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (state.status.as_str(), state.manifest.is_none()),
        ("searching", true)
    );

    shared.status.send_modify(|s| {
        s.phase = Phase::Pairing {
            code: "K7Q-4MP".into(),
            expires_at: shared.clock.now(),
        }
    });
    let (_, _, body) = get(app.clone(), "/player/state", &[]).await;
    let state: PlayerState = serde_json::from_slice(&body).unwrap();
    assert_eq!(state.status, "pairing");
    assert_eq!(state.pairing.unwrap().code, "K7Q-4MP");
    assert_eq!(state.device, "test screen");

    set_paired(&shared);
    let cached = shared.blobs.put(b"png bytes").unwrap();
    let missing = MediaHash::of(b"not downloaded yet");
    let m = manifest(
        "v1",
        vec![item(1, cached, "image/png")],
        vec![item(2, missing, "video/mp4")],
    );
    adopt(&shared, m.clone());
    assert_eq!(
        shared.store.manifest().unwrap(),
        Some(m.clone()),
        "on disk first"
    );
    let uri = format!("/player/state?on_screen={cached}");
    let (_, _, body) = get(app.clone(), &uri, &[]).await;
    let state: PlayerState = serde_json::from_slice(&body).unwrap();
    assert_eq!(state.status, "paired");
    assert_eq!(state.manifest, Some(m));
    assert_eq!(
        state.ready.into_iter().collect::<Vec<_>>(),
        vec![(cached, 9)],
        "only what is in the cache is ready"
    );
    assert_eq!(
        shared.on_screen(),
        Some(cached),
        "the page's report is kept"
    );
}

#[tokio::test]
async fn media_is_served_from_the_cache_with_ranges_and_immutable_caching() {
    let dir = tempfile::tempdir().unwrap();
    let shared = shared(dir.path());
    let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let hash = shared.blobs.put(&data).unwrap();
    set_paired(&shared);
    adopt(
        &shared,
        manifest("v1", vec![item(1, hash, "video/mp4")], vec![]),
    );
    let app = player::app(shared.clone());
    let uri = format!("/media/{hash}");

    let (status, headers, body) = get(app.clone(), &uri, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, data);
    assert_eq!(headers[header::CONTENT_TYPE], "video/mp4");
    assert_eq!(headers[header::CONTENT_LENGTH], "10000");
    assert_eq!(headers[header::ACCEPT_RANGES], "bytes");
    assert_eq!(headers[header::ETAG], format!("\"{hash}\"").as_str());
    assert_eq!(
        headers[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    // Never run as a page, whatever the file holds.
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(
        headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .starts_with("sandbox")
    );
    assert_eq!(headers[header::CONTENT_DISPOSITION], "inline");

    let (status, headers, body) = get(app.clone(), &uri, &[(header::RANGE, "bytes=100-199")]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, &data[100..200]);
    assert_eq!(headers[header::CONTENT_RANGE], "bytes 100-199/10000");
    assert_eq!(headers[header::CONTENT_LENGTH], "100");

    let (status, _, body) = get(app.clone(), &uri, &[(header::RANGE, "bytes=-10")]).await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::PARTIAL_CONTENT, &data[9_990..])
    );

    let (status, headers, body) = get(app.clone(), &uri, &[(header::RANGE, "bytes=10000-")]).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(headers[header::CONTENT_RANGE], "bytes */10000");
    assert!(body.is_empty());

    let etag = format!("\"{hash}\"");
    let (status, _, body) = get(app.clone(), &uri, &[(header::IF_NONE_MATCH, etag.as_str())]).await;
    assert_eq!((status, body.len()), (StatusCode::NOT_MODIFIED, 0));

    let absent = format!("/media/{}", MediaHash::of(b"absent"));
    let (status, _, _) = get(app.clone(), &absent, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = get(app, "/media/..%2Fkiosk.sqlite", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

fn played_body(id: &str, media: MediaHash) -> String {
    serde_json::json!({
        "id": id,
        "playlist": PLAYLIST.to_string(),
        "item": taplink_sync_proto::ids::ItemId::from_bytes([1; 16]).to_string(),
        "media": media.to_string(),
        "started_ms": 1_790_000_000_000i64,
        "duration_ms": 5_000,
    })
    .to_string()
}

#[tokio::test]
async fn proof_of_play_from_the_page_is_buffered_once_per_id() {
    let dir = tempfile::tempdir().unwrap();
    let shared = shared(dir.path());
    let app = player::app(shared.clone());
    let media = MediaHash::of(b"shown");
    let id = "00112233445566778899aabbccddeeff";

    let (status, _) = post(app.clone(), "/player/played", played_body(id, media)).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "not paired: nothing to report"
    );
    assert_eq!(shared.store.pending().unwrap(), 0);

    set_paired(&shared);
    for _ in 0..2 {
        // The page retries after a lost answer: still one event.
        let (status, _) = post(app.clone(), "/player/played", played_body(id, media)).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let batch = shared.store.next_batch(10).unwrap().unwrap();
    assert_eq!(batch.events.len(), 1);
    let event = &batch.events[0];
    assert_eq!(hex(&event.id), id);
    match &event.kind {
        TelemetryKind::ProofOfPlay(p) => {
            assert_eq!(
                (p.playlist, p.media, p.started_ms, p.duration_ms),
                (PLAYLIST, media, 1_790_000_000_000, 5_000)
            );
        }
        other => panic!("expected proof of play, got {other:?}"),
    }

    for bad in [
        played_body("xyz", media),
        played_body(id, media).replace("\"duration_ms\":5000", "\"duration_ms\":999999999999"),
        played_body(id, media).replace('}', ",\"extra\":1}"),
        "not json".into(),
    ] {
        let (status, body) = post(app.clone(), "/player/played", bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        let err: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(err["error"].is_string(), "{bad}");
    }
    let (status, _) = post(app, "/player/played", "x".repeat(5_000)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(shared.store.pending().unwrap(), 1);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn health_and_metrics_report_pairing_manifest_cache_and_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let shared = shared(dir.path());
    let app = player::app(shared.clone());
    let (_, _, body) = get(app.clone(), "/healthz", &[]).await;
    let health: Health = serde_json::from_slice(&body).unwrap();
    assert!(!health.paired && health.manifest_version.is_none());

    set_paired(&shared);
    let hash = shared.blobs.put(&[7u8; 1234]).unwrap();
    adopt(
        &shared,
        manifest("v7", vec![item(1, hash, "image/png")], vec![]),
    );
    let id = "ffeeddccbbaa99887766554433221100";
    let (status, _) = post(app.clone(), "/player/played", played_body(id, hash)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    get(app.clone(), "/player/state", &[]).await;

    let (status, _, body) = get(app.clone(), "/healthz", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let health: Health = serde_json::from_slice(&body).unwrap();
    assert!(health.paired);
    assert_eq!(health.kiosk, Some(KIOSK.to_string()));
    assert_eq!(health.manifest_version.as_deref(), Some("v7"));
    assert_eq!((health.cache_bytes, health.events_pending), (1234, 1));
    assert!(health.player_connected);

    let (status, _, body) = get(app, "/metrics", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    for line in [
        "taplink_kiosk_cache_bytes 1234",
        "taplink_kiosk_events_pending 1",
        "taplink_kiosk_manifest{version=\"v7\"} 1",
        "taplink_kiosk_plays_reported_total 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

const SECURITY_MD: &str = include_str!("../../../docs/security.md");

#[tokio::test]
async fn every_player_route_is_declared_documented_and_local() {
    use taplink_sync_io::web::access::{Access, check_documented};
    let routes = player::routes();
    check_documented(routes.declared(), SECURITY_MD, "player").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = player::app(shared(dir.path()));
    let lan_peer: std::net::SocketAddr = "192.168.1.50:40000".parse().unwrap();
    let local_peer: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
    for route in routes.declared() {
        for method in route.methods {
            let path = route
                .path
                .replace("{hash}", &MediaHash::of(b"x").to_string());
            for peer in [lan_peer, local_peer] {
                let mut req = Request::builder().method(*method).uri(&path);
                if *method == "POST" {
                    req = req.header(header::CONTENT_TYPE, "application/json");
                }
                let mut req = req.body(Body::from("{}")).unwrap();
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                let status = app.clone().oneshot(req).await.unwrap().status();
                let refused = status == StatusCode::FORBIDDEN;
                let should = route.access == Access::Loopback && peer == lan_peer;
                assert_eq!(refused, should, "{method} {path} from {peer}: {status}");
            }
        }
    }
    // A page of another site rebound to 127.0.0.1 is refused by name.
    let (status, _, _) = get(
        app,
        "/player/state",
        &[(header::HOST, "rebound.example:8680")],
    )
    .await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
}
