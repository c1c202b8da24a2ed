//! Media through central: uploads to a venue and to the org library, typed by content and
//! bounded by the upload limit and the venue's quota, and deletes that refuse while a
//! playlist shows the media unless forced.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::json;
use taplink_central::http::app;
use taplink_central::store::AuditQuery;
use taplink_central::{AppState, Config};
use taplink_sync_proto::doc::load_org;
use taplink_sync_proto::ids::{ItemId, MediaHash, PlaylistId, VenueId};
use taplink_sync_proto::wire::DocId;

use crate::support::{Answer, Initialised, call, now, request, user_session};

fn png(len: usize, seed: u8) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect();
    bytes[..8].copy_from_slice(b"\x89PNG\r\n\x1a\n");
    bytes
}

fn webm() -> Vec<u8> {
    let mut bytes = vec![0x1A, 0x45, 0xDF, 0xA3];
    bytes.extend((0..5000u32).map(|i| (i % 251) as u8));
    bytes
}

fn mp4() -> Vec<u8> {
    let mut bytes = b"\0\0\0\x20ftypisom\0\0\x02\0".to_vec();
    bytes.extend((0..5000u32).map(|i| (i % 241) as u8));
    bytes
}

/// How a request is authenticated: the admin token, or a session cookie with its CSRF
/// token.
enum Auth<'a> {
    Token(&'a str),
    Session { cookie: &'a str, csrf: &'a str },
}

impl Auth<'_> {
    fn apply(&self, b: axum::http::request::Builder) -> axum::http::request::Builder {
        match self {
            Auth::Token(token) => b.header(header::AUTHORIZATION, format!("Bearer {token}")),
            Auth::Session { cookie, csrf } => b
                .header(header::COOKIE, *cookie)
                .header("X-CSRF-Token", *csrf),
        }
    }
}

async fn upload(
    app: &Router,
    auth: &Auth<'_>,
    query: &str,
    content_type: &str,
    bytes: Vec<u8>,
) -> Answer {
    let req = auth
        .apply(Request::put(format!("/api/v1/media?{query}")))
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(bytes))
        .unwrap();
    call(app, req).await
}

async fn delete(app: &Router, auth: &Auth<'_>, path: &str) -> Answer {
    let req = auth
        .apply(Request::delete(path))
        .body(Body::empty())
        .unwrap();
    call(app, req).await
}

struct Setup {
    init: Initialised,
    state: AppState,
    app: Router,
    token: String,
}

fn setup(configure: impl FnOnce(&mut Config)) -> Setup {
    let init = Initialised::new();
    let mut config = init.config();
    configure(&mut config);
    let state = AppState::load(config).unwrap();
    let app = app(state.clone());
    let token = init.token();
    Setup {
        init,
        state,
        app,
        token,
    }
}

impl Setup {
    fn venue(&self, name: &str) -> VenueId {
        taplink_central::venue::create_venue(
            &self.state.registry,
            &self.state.docs,
            name,
            "UTC",
            now(),
        )
        .unwrap()
        .id
    }

    async fn document(&self, venue: VenueId) -> serde_json::Value {
        let answer = call(
            &self.app,
            request(
                "GET",
                &format!("/api/v1/venues/{venue}/document"),
                Some(&self.token),
                None,
            ),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        answer.json()
    }

    fn staged_files(&self) -> usize {
        std::fs::read_dir(self.init.data_dir.join("uploads"))
            .unwrap()
            .count()
    }
}

#[tokio::test]
async fn images_and_videos_are_uploaded_to_a_venue_and_the_library() {
    let s = setup(|_| {});
    let venue = s.venue("The Anchor");
    let admin = Auth::Token(&s.token);
    for (name, content_type, bytes) in [
        ("menu.png", "image/png", png(20_000, 3)),
        ("promo.webm", "video/webm", webm()),
        ("promo.mp4", "video/mp4", mp4()),
    ] {
        let hash = MediaHash::of(&bytes).to_string();
        let size = bytes.len();
        let query = format!("name={name}&content_type={content_type}&venue={venue}");
        let answer = upload(&s.app, &admin, &query, content_type, bytes).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
        assert_eq!(
            answer.json(),
            json!({"hash": hash, "size": size, "content_type": content_type, "name": name, "venue": venue.to_string()})
        );
        let doc = s.document(venue).await;
        assert_eq!(doc["media"][&hash]["name"], name);
        assert_eq!(doc["media"][&hash]["content_type"], content_type);
        assert!(s.state.blobs.has(&hash.parse().unwrap()).unwrap());
    }

    // The org library: no venue in the query.
    let logo = png(500, 5);
    let hash = MediaHash::of(&logo);
    let answer = upload(&s.app, &admin, "name=logo.png", "image/png", logo).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
    assert_eq!(answer.json()["venue"], serde_json::Value::Null);
    let org = s.state.docs.read(DocId::Org, |am| load_org(am)).unwrap();
    assert_eq!(org.unwrap().library[&hash].name, "logo.png");
    assert_eq!(s.staged_files(), 0, "no staged file is left behind");

    // Each change carries its author into the audit log.
    let entries = s
        .state
        .registry
        .list_audit(&AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        })
        .unwrap();
    let uploads: Vec<_> = entries
        .iter()
        .filter(|e| {
            let detail = e.detail.to_string();
            detail.contains("\"add_media\"") || detail.contains("\"add_library_media\"")
        })
        .collect();
    assert_eq!(uploads.len(), 4, "{entries:#?}");
    assert!(
        uploads.iter().all(|e| e.actor == "admin_token"),
        "{uploads:#?}"
    );
}

#[tokio::test]
async fn wrong_types_oversized_files_and_a_full_quota_are_refused_and_nothing_is_kept() {
    let s = setup(|c| {
        c.max_upload_bytes = 1 << 20;
        c.venue_media_quota_bytes = 3 << 19;
    });
    let venue = s.venue("The Anchor");
    let admin = Auth::Token(&s.token);
    let q = format!("name=x&venue={venue}");
    let html = b"<html><script>alert(document.cookie)</script></html>".to_vec();
    let svg = b"<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>".to_vec();
    for (what, content_type, bytes, named) in [
        ("html as png", "image/png", html.clone(), "content"),
        ("html as html", "text/html", html, "text/html"),
        (
            "jpeg as png",
            "image/png",
            vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 0],
            "image/jpeg",
        ),
        ("svg with a handler", "image/svg+xml", svg, "SVG"),
    ] {
        let answer = upload(&s.app, &admin, &q, content_type, bytes).await;
        assert_eq!(
            answer.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{what}: {}",
            answer.text()
        );
        assert!(answer.error().contains(named), "{what}: {}", answer.error());
    }
    // No Content-Type at all.
    let req = Request::put(format!("/api/v1/media?{q}"))
        .header(header::AUTHORIZATION, format!("Bearer {}", s.token))
        .body(Body::from(png(100, 1)))
        .unwrap();
    let answer = call(&s.app, req).await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        answer.error().contains("Content-Type"),
        "{}",
        answer.error()
    );
    // The query names its own mistakes.
    for (query, field) in [
        (format!("venue={venue}"), "name"),
        (
            format!("name=a&venue={venue}&content_type=image/gif"),
            "content_type",
        ),
        ("name=a&venue=nope".to_owned(), "venue"),
        (format!("name=a&venue={venue}&colour=red"), "colour"),
    ] {
        let answer = upload(&s.app, &admin, &query, "image/png", png(100, 1)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            answer.error().contains(field),
            "{query}: {}",
            answer.error()
        );
    }
    let unknown = format!("name=a&venue={}", VenueId::random());
    let answer = upload(&s.app, &admin, &unknown, "image/png", png(100, 1)).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);

    // Larger than max_upload_bytes (1 MiB).
    let answer = upload(&s.app, &admin, &q, "image/png", png((1 << 20) + 1, 2)).await;
    assert_eq!(
        answer.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        answer.text()
    );
    assert!(
        answer.error().contains("max_upload_bytes"),
        "{}",
        answer.error()
    );
    assert!(
        s.document(venue).await["media"]
            .as_object()
            .unwrap()
            .is_empty()
    );
    assert!(
        s.state.blobs.list().unwrap().is_empty(),
        "nothing refused was kept"
    );

    // The venue's quota (1.5 MiB): 900 KiB fit, 700 KiB more do not.
    let first = upload(&s.app, &admin, &q, "image/png", png(900 << 10, 7)).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text());
    let second = upload(&s.app, &admin, &q, "image/png", png(700 << 10, 9)).await;
    assert_eq!(
        second.status,
        StatusCode::INSUFFICIENT_STORAGE,
        "{}",
        second.text()
    );
    assert!(
        second.error().contains("venue_media_quota_bytes"),
        "{}",
        second.error()
    );
    // The library has no venue quota.
    let lib = upload(
        &s.app,
        &admin,
        "name=big.png",
        "image/png",
        png(700 << 10, 9),
    )
    .await;
    assert_eq!(lib.status, StatusCode::CREATED, "{}", lib.text());
    assert_eq!(
        s.document(venue).await["media"].as_object().unwrap().len(),
        1
    );
    assert_eq!(s.state.blobs.list().unwrap().len(), 2);
    assert_eq!(s.staged_files(), 0, "no staged file is left behind");
}

#[tokio::test]
async fn store_staff_upload_to_their_venue_only() {
    let s = setup(|_| {});
    let (ours, other) = (s.venue("Ours"), s.venue("Other"));
    let body = json!({"username": "sue", "role": "store_staff", "venues": [ours.to_string()], "password": "correct horse battery"});
    let (cookie, csrf) = user_session(&s.app, &s.token, body).await;
    let sue = Auth::Session {
        cookie: &cookie,
        csrf: &csrf,
    };
    let mine = upload(
        &s.app,
        &sue,
        &format!("name=a.png&venue={ours}"),
        "image/png",
        png(100, 1),
    )
    .await;
    assert_eq!(mine.status, StatusCode::CREATED, "{}", mine.text());
    let hash = mine.json()["hash"].as_str().unwrap().to_owned();
    let theirs = upload(
        &s.app,
        &sue,
        &format!("name=a.png&venue={other}"),
        "image/png",
        png(100, 2),
    )
    .await;
    assert_eq!(theirs.status, StatusCode::FORBIDDEN, "{}", theirs.text());
    let library = upload(&s.app, &sue, "name=a.png", "image/png", png(100, 3)).await;
    assert_eq!(library.status, StatusCode::FORBIDDEN, "{}", library.text());
    assert!(library.error().contains("library"), "{}", library.error());
    assert_eq!(
        s.state.blobs.list().unwrap().len(),
        1,
        "refused before storing"
    );
    // Without the CSRF token a cookie write is refused.
    let req = Request::put(format!("/api/v1/media?name=b.png&venue={ours}"))
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "image/png")
        .body(Body::from(png(100, 4)))
        .unwrap();
    assert_eq!(call(&s.app, req).await.status, StatusCode::FORBIDDEN);

    // Sue deletes in her venue, not in the library or another venue.
    let library_delete = delete(&s.app, &sue, &format!("/api/v1/media/{hash}")).await;
    assert_eq!(library_delete.status, StatusCode::FORBIDDEN);
    let other_delete = delete(&s.app, &sue, &format!("/api/v1/media/{hash}?venue={other}")).await;
    assert_eq!(other_delete.status, StatusCode::FORBIDDEN);
    let own_delete = delete(&s.app, &sue, &format!("/api/v1/media/{hash}?venue={ours}")).await;
    assert_eq!(own_delete.status, StatusCode::OK, "{}", own_delete.text());
    // The audit log names Sue, not the admin, for her changes.
    let entries = s
        .state
        .registry
        .list_audit(&AuditQuery {
            venue: Some(ours),
            limit: 100,
            ..AuditQuery::default()
        })
        .unwrap();
    let sue_id = s
        .state
        .registry
        .list_users()
        .unwrap()
        .into_iter()
        .find(|u| u.username == "sue")
        .unwrap()
        .id
        .to_string();
    let by_sue = entries
        .iter()
        .filter(|e| e.actor == format!("user:{sue_id}"))
        .count();
    assert!(by_sue >= 2, "{entries:#?}");
}

#[tokio::test]
async fn a_delete_is_refused_while_a_playlist_shows_the_media_unless_forced() {
    let s = setup(|_| {});
    let venue = s.venue("The Anchor");
    let admin = Auth::Token(&s.token);
    let bytes = png(1000, 3);
    let hash = MediaHash::of(&bytes).to_string();
    let answer = upload(
        &s.app,
        &admin,
        &format!("name=menu.png&venue={venue}"),
        "image/png",
        bytes,
    )
    .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
    let (evening, item) = (PlaylistId::random(), ItemId::random());
    let ops = json!([
        {"op": "create_playlist", "id": evening.to_string(), "name": "Evening"},
        {"op": "insert_item", "playlist": evening.to_string(), "item": item.to_string(), "at": "end", "media": hash, "duration_ms": 5000},
    ]);
    let applied = call(
        &s.app,
        request(
            "POST",
            &format!("/api/v1/venues/{venue}/ops"),
            Some(&s.token),
            Some(&ops.to_string()),
        ),
    )
    .await;
    assert_eq!(applied.status, StatusCode::OK, "{}", applied.text());

    let path = format!("/api/v1/media/{hash}?venue={venue}");
    let refused = delete(&s.app, &admin, &path).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text());
    for named in [
        "Evening",
        &evening.to_string(),
        &item.to_string(),
        "force=true",
    ] {
        assert!(
            refused.error().contains(named),
            "{named}: {}",
            refused.error()
        );
    }
    let doc = s.document(venue).await;
    assert!(doc["media"].get(&hash).is_some());
    assert!(
        doc["playlists"][evening.to_string()]["items"]
            .get(item.to_string())
            .is_some()
    );

    let forced = delete(&s.app, &admin, &format!("{path}&force=true")).await;
    assert_eq!(forced.status, StatusCode::OK, "{}", forced.text());
    assert_eq!(
        forced.json(),
        json!({"hash": hash, "venue": venue.to_string(), "removed_items": [{"playlist": evening.to_string(), "item": item.to_string()}]})
    );
    let doc = s.document(venue).await;
    assert!(doc["media"].get(&hash).is_none());
    assert!(
        doc["playlists"][evening.to_string()]["items"]
            .as_object()
            .unwrap()
            .is_empty()
    );
    let again = delete(&s.app, &admin, &path).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.text());

    // The library: removed, then unknown.
    let logo = png(300, 9);
    let logo_hash = MediaHash::of(&logo).to_string();
    let answer = upload(&s.app, &admin, "name=logo.png", "image/png", logo).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
    let removed = delete(&s.app, &admin, &format!("/api/v1/media/{logo_hash}")).await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.text());
    assert_eq!(removed.json()["venue"], serde_json::Value::Null);
    let org = s.state.docs.read(DocId::Org, |am| load_org(am)).unwrap();
    assert!(org.unwrap().library.is_empty());
    let again = delete(&s.app, &admin, &format!("/api/v1/media/{logo_hash}")).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let bad = delete(&s.app, &admin, "/api/v1/media/not-a-hash").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}
