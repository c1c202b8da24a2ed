//! The kiosks' LAN API (docs/kiosk-api.md) through the real router, over real documents,
//! media and the hub's SQLite store in a temporary directory.

use std::sync::Arc;
use std::time::Duration;

use automerge::AutoCommit;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use chrono::{DateTime, TimeDelta, Utc};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use taplink_edge_hub::http::{HubState, app};
use taplink_edge_hub::metrics::Metrics;
use taplink_edge_hub::store::{STORE_FILE, Store};
use taplink_sync_io::blobs::BlobStore;
use taplink_sync_io::docs::Documents;
use taplink_sync_io::docstore::DocDb;
use taplink_sync_proto::clock::ManualClock;
use taplink_sync_proto::doc::{
    DocOpError, KioskGrant, MediaMeta, Placement, add_kiosk_grant, add_media, create_playlist,
    insert_item, load_venue, new_venue_doc, redeem_kiosk_grant, remove_kiosk, remove_kiosk_grant,
    rename_kiosk, set_default_playlist,
};
use taplink_sync_proto::ids::{GrantId, ItemId, KioskId, MediaHash, PlaylistId, VenueId};
use taplink_sync_proto::kiosk_code::KioskCode;
use taplink_sync_proto::schedule::{ScheduleWindow, Weekdays};
use taplink_sync_proto::wire::DocId;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Every bounded wait in these tests.
const BOUND: Duration = Duration::from_secs(10);

/// 2026-11-02 (a Monday) 09:59:59 UTC: one second before a 10:00 schedule window opens.
fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_793_613_599, 0).unwrap()
}

pub(crate) struct TestHub {
    pub(crate) state: Arc<HubState>,
    pub(crate) clock: Arc<ManualClock>,
    /// A staff token of the hub.
    pub(crate) staff: String,
    _dir: tempfile::TempDir,
}

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: bytes::Bytes,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub(crate) fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }

    pub(crate) fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
}

impl TestHub {
    /// A hub whose venue document is a copy (fork) of `doc`.
    pub(crate) fn with_doc(venue: VenueId, doc: &mut AutoCommit) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(DocDb::open(&dir.path().join("docs.sqlite")).unwrap());
        let docs = Arc::new(Documents::open(db, automerge::ActorId::random()).unwrap());
        docs.create(DocId::Venue(venue), doc.fork()).unwrap();
        let blobs = Arc::new(BlobStore::open(&dir.path().join("media")).unwrap());
        let store = Arc::new(Store::open(&dir.path().join(STORE_FILE)).unwrap());
        let clock = Arc::new(ManualClock::new(t0()));
        let upload_dir = dir.path().join("uploads");
        std::fs::create_dir_all(&upload_dir).unwrap();
        let (_tx, uplink) = watch::channel(Default::default());
        let state = Arc::new(HubState {
            venue: DocId::Venue(venue),
            docs,
            blobs,
            store,
            outbox_ready: Arc::new(Notify::new()),
            metrics: Arc::new(Metrics::new()),
            uplink,
            max_upload: 1 << 20,
            media_quota: 3 << 19,
            upload_dir,
            clock: clock.clone(),
            shutdown: CancellationToken::new(),
            view: taplink_edge_hub::view::VenueView::new(DocId::Venue(venue)),
            hosts: Default::default(),
            long_polls: Default::default(),
            venue_id: venue,
            plain_http: true,
            roster_valid_offline: None,
        });
        let staff = state.store.create_staff_token("tests", t0()).unwrap();
        Self {
            state,
            clock,
            staff,
            _dir: dir,
        }
    }

    pub(crate) fn new() -> Self {
        let mut doc = new_venue_doc("Test venue", "Etc/UTC").unwrap();
        Self::with_doc(VenueId::random(), &mut doc)
    }

    pub(crate) fn edit(&self, f: impl FnOnce(&mut AutoCommit) -> Result<(), DocOpError>) {
        self.state.docs.edit(self.state.venue, f).unwrap();
    }

    pub(crate) fn venue(&self) -> taplink_sync_proto::doc::VenueDoc {
        self.state
            .docs
            .read(self.state.venue, |am| load_venue(am))
            .unwrap()
            .unwrap()
    }

    pub(crate) async fn send(&self, req: Request<Body>) -> Reply {
        let response = app(self.state.clone()).oneshot(req).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send(req.body(body).unwrap()).await
    }

    pub(crate) async fn get(
        &self,
        uri: &str,
        token: &str,
        extra: &[(header::HeaderName, &str)],
    ) -> Reply {
        let mut req = Request::get(uri).header(header::AUTHORIZATION, format!("Bearer {token}"));
        for (name, value) in extra {
            req = req.header(name, *value);
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    /// The whole pairing flow; returns the kiosk and its token.
    pub(crate) async fn pair(&self, name: &str) -> (KioskId, String) {
        let created = self
            .call(
                Method::POST,
                "/api/v1/pairings",
                None,
                Some(json!({"device": "test"})),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED);
        let created = created.json();
        let approved = self
            .call(
                Method::POST,
                "/api/v1/pairings/approve",
                Some(&self.staff),
                Some(json!({"code": created["code"], "name": name})),
            )
            .await;
        assert_eq!(approved.status, StatusCode::OK, "{}", approved.error());
        let pairing = created["pairing"].as_str().unwrap();
        let polled = self
            .call(
                Method::GET,
                &format!("/api/v1/pairings/{pairing}"),
                None,
                None,
            )
            .await;
        assert_eq!(polled.status, StatusCode::OK);
        let polled = polled.json();
        assert_eq!(polled["status"], "approved");
        (
            polled["kiosk"].as_str().unwrap().parse().unwrap(),
            polled["token"].as_str().unwrap().to_owned(),
        )
    }

    /// A grant for a kiosk named `name`, made an hour before t0 and expiring a day after it,
    /// as central's copy of the venue document would bring it; returns its id and code.
    pub(crate) fn grant(
        &self,
        name: &str,
        f: impl FnOnce(&mut KioskGrant),
    ) -> (GrantId, KioskCode) {
        let code = KioskCode::random();
        let id = GrantId::random();
        let mut grant = KioskGrant {
            code_hash: code.hash(),
            name: name.into(),
            group: None,
            playlist: None,
            created_at_ms: (t0() - TimeDelta::hours(1)).timestamp_millis(),
            expires_at_ms: (t0() + TimeDelta::days(1)).timestamp_millis(),
            consumed_by: None,
            consumed_at_ms: None,
        };
        f(&mut grant);
        let now = t0().timestamp_millis() - 1;
        self.edit(|am| add_kiosk_grant(am, id, &grant, now));
        (id, code)
    }

    /// `POST /api/v1/pairings` with a kiosk code.
    pub(crate) async fn pair_with_code(&self, code: &str) -> Reply {
        self.call(
            Method::POST,
            "/api/v1/pairings",
            None,
            Some(json!({"device": "Pi by the door", "provisioning_code": code})),
        )
        .await
    }

    pub(crate) async fn poll(&self, pairing: &Value) -> Reply {
        let poll = format!("/api/v1/pairings/{}", pairing.as_str().unwrap());
        self.call(Method::GET, &poll, None, None).await
    }

    pub(crate) async fn manifest(
        &self,
        token: &str,
        extra: &[(header::HeaderName, &str)],
    ) -> Reply {
        self.get("/api/v1/kiosk/manifest", token, extra).await
    }

    /// Wait (bounded) until `n` long-polls are open, i.e. subscribed to changes.
    pub(crate) async fn long_polls_open(&self, n: i64) {
        tokio::time::timeout(BOUND, async {
            while self.state.metrics.long_polls_open.get() != n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the long-poll never started waiting");
    }

    /// A playlist with one item (a window from 10:00 to 11:00 UTC, every day) made the
    /// venue default; returns the media hash.
    fn default_playlist_with_a_windowed_item(&self) -> MediaHash {
        let hash = self.state.blobs.put(b"a picture").unwrap();
        let playlist = PlaylistId::random();
        self.edit(|am| {
            add_media(am, hash, &meta(9))?;
            create_playlist(am, playlist, "Morning")?;
            insert_item(
                am,
                playlist,
                ItemId::random(),
                Placement::End,
                hash,
                10_000,
                Some(ScheduleWindow::new(Weekdays::ALL, 600, 660).unwrap()),
            )?;
            set_default_playlist(am, Some(playlist))
        });
        hash
    }
}

fn meta(size: u64) -> MediaMeta {
    MediaMeta {
        name: "picture.png".into(),
        content_type: "image/png".into(),
        size,
    }
}

fn quoted(tag: &str) -> String {
    format!("\"{tag}\"")
}

// ---------------------------------------------------------------------------------------
// Pairing
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn pairing_hands_out_the_token_exactly_once() {
    let hub = TestHub::new();
    let created = hub
        .call(
            Method::POST,
            "/api/v1/pairings",
            None,
            Some(json!({"device": "Pi 5, bar"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let created = created.json();
    let code = created["code"].as_str().unwrap();
    assert_eq!(code.len(), 7);
    assert_eq!(&code[3..4], "-");
    assert!(
        code.chars()
            .filter(|c| *c != '-')
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
    );
    assert!(!code.contains(['0', 'O', '1', 'I', 'L']), "{code}");
    let expires: DateTime<Utc> = created["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires, t0() + TimeDelta::minutes(15));
    let poll = format!("/api/v1/pairings/{}", created["pairing"].as_str().unwrap());

    let pending = hub.call(Method::GET, &poll, None, None).await;
    assert_eq!(
        (pending.status, pending.json()),
        (StatusCode::OK, json!({"status": "pending"}))
    );

    // Staff type the code as they like: lower case, no dash.
    let typed = code.replace('-', "").to_lowercase();
    let approved = hub
        .call(
            Method::POST,
            "/api/v1/pairings/approve",
            Some(&hub.staff),
            Some(json!({"code": typed, "name": "Bar screen"})),
        )
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.error());
    let kiosk: KioskId = approved.json()["kiosk"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        hub.venue().kiosks[&kiosk].name,
        "Bar screen",
        "the kiosk is in the venue document"
    );

    let collected = hub.call(Method::GET, &poll, None, None).await;
    assert_eq!(collected.status, StatusCode::OK);
    assert_eq!(collected.header(header::CACHE_CONTROL), "no-store");
    let collected = collected.json();
    assert_eq!(collected["status"], "approved");
    assert_eq!(collected["kiosk"], kiosk.to_string());
    let token = collected["token"].as_str().unwrap();
    assert!(token.starts_with("tlk1-") && token.len() == 57, "{token}");
    assert!(
        token[5..]
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
    );

    let again = hub.call(Method::GET, &poll, None, None).await;
    assert_eq!(again.status, StatusCode::GONE);
    assert!(
        again.error().contains("already collected"),
        "{}",
        again.error()
    );
    let reused = hub
        .call(
            Method::POST,
            "/api/v1/pairings/approve",
            Some(&hub.staff),
            Some(json!({"code": code, "name": "Bar screen"})),
        )
        .await;
    assert_eq!(reused.status, StatusCode::GONE);

    assert_eq!(hub.manifest(token, &[]).await.status, StatusCode::OK);
    assert_eq!(hub.venue().kiosks.len(), 1);
}

#[tokio::test]
async fn expired_and_unknown_codes_are_refused() {
    let hub = TestHub::new();
    let created = hub
        .call(
            Method::POST,
            "/api/v1/pairings",
            None,
            Some(json!({"device": ""})),
        )
        .await
        .json();
    hub.clock.advance(TimeDelta::minutes(15));
    let late = hub
        .call(
            Method::POST,
            "/api/v1/pairings/approve",
            Some(&hub.staff),
            Some(json!({"code": created["code"], "name": "Late"})),
        )
        .await;
    assert_eq!(late.status, StatusCode::GONE);
    assert!(late.error().contains("expired"), "{}", late.error());
    let poll = format!("/api/v1/pairings/{}", created["pairing"].as_str().unwrap());
    assert_eq!(
        hub.call(Method::GET, &poll, None, None).await.status,
        StatusCode::NOT_FOUND
    );

    for code in ["ZZZ-ZZZ", "OOO-OOO", "nonsense"] {
        let unknown = hub
            .call(
                Method::POST,
                "/api/v1/pairings/approve",
                Some(&hub.staff),
                Some(json!({"code": code, "name": "X"})),
            )
            .await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{code}");
        assert!(
            unknown.error().contains("no pairing has code"),
            "{}",
            unknown.error()
        );
    }
    for id in ["aaaaaaaaaaaaaaaaaaaaaaaaaa", "short"] {
        let unknown = hub
            .call(Method::GET, &format!("/api/v1/pairings/{id}"), None, None)
            .await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{id}");
    }
    assert!(hub.venue().kiosks.is_empty(), "nothing was added");
}

/// A crash after step 1 of approval (kiosk reserved, not yet in the document): the kiosk
/// sees "pending", and approving the code again finishes the job with the same kiosk.
#[tokio::test]
async fn an_interrupted_approval_is_finished_by_approving_again() {
    let hub = TestHub::new();
    let created = hub
        .call(
            Method::POST,
            "/api/v1/pairings",
            None,
            Some(json!({"device": "x"})),
        )
        .await
        .json();
    let code = created["code"].as_str().unwrap().parse().unwrap();
    let reserved = hub.state.store.reserve_kiosk(&code, t0()).unwrap();
    let poll = format!("/api/v1/pairings/{}", created["pairing"].as_str().unwrap());
    let polled = hub.call(Method::GET, &poll, None, None).await;
    assert_eq!(
        polled.json(),
        json!({"status": "pending"}),
        "no token for a kiosk outside the document"
    );

    let approved = hub
        .call(
            Method::POST,
            "/api/v1/pairings/approve",
            Some(&hub.staff),
            Some(json!({"code": created["code"], "name": "Door"})),
        )
        .await;
    assert_eq!(approved.json()["kiosk"], reserved.kiosk.to_string());
    // Approving once more (a double click) adds nothing either.
    let twice = hub
        .call(
            Method::POST,
            "/api/v1/pairings/approve",
            Some(&hub.staff),
            Some(json!({"code": created["code"], "name": "Door"})),
        )
        .await;
    assert_eq!(twice.json()["kiosk"], reserved.kiosk.to_string());
    assert_eq!(
        hub.venue().kiosks.keys().copied().collect::<Vec<_>>(),
        vec![reserved.kiosk]
    );
    let polled = hub.call(Method::GET, &poll, None, None).await.json();
    assert_eq!(polled["kiosk"], reserved.kiosk.to_string());
}

#[tokio::test]
async fn malformed_pairing_requests_name_the_field() {
    let hub = TestHub::new();
    let cases = [
        ("/api/v1/pairings", json!({}), "device"),
        (
            "/api/v1/pairings",
            json!({"device": "x", "kiosk": "y"}),
            "kiosk",
        ),
        (
            "/api/v1/pairings",
            json!({"device": "x".repeat(101)}),
            "device",
        ),
        ("/api/v1/pairings", json!({"device": 7}), "invalid type"),
        (
            "/api/v1/pairings/approve",
            json!({"code": "ABC-DEF"}),
            "name",
        ),
    ];
    for (uri, body, named) in cases {
        let token = uri.ends_with("approve").then_some(hub.staff.as_str());
        let reply = hub.call(Method::POST, uri, token, Some(body.clone())).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(reply.error().contains(named), "{body}: {}", reply.error());
    }
    let created = hub
        .call(
            Method::POST,
            "/api/v1/pairings",
            None,
            Some(json!({"device": "x"})),
        )
        .await
        .json();
    let blank = hub
        .call(
            Method::POST,
            "/api/v1/pairings/approve",
            Some(&hub.staff),
            Some(json!({"code": created["code"], "name": "  "})),
        )
        .await;
    assert_eq!(blank.status, StatusCode::BAD_REQUEST);
    assert!(blank.error().starts_with("name:"), "{}", blank.error());
    assert!(hub.venue().kiosks.is_empty());
}

// ---------------------------------------------------------------------------------------
// Pairing pre-approved by a kiosk code from central
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_kiosk_code_from_central_pairs_the_kiosk_without_staff() {
    let hub = TestHub::new();
    hub.default_playlist_with_a_windowed_item();
    let playlist = PlaylistId::random();
    hub.edit(|am| create_playlist(am, playlist, "Bar loop"));
    let (grant, code) = hub.grant("Bar screen", |g| {
        g.group = Some("bar".into());
        g.playlist = Some(playlist);
    });
    // Typed as a technician might: lower case, spaces for dashes.
    let typed = code.to_string().to_lowercase().replace('-', " ");
    let created = hub.pair_with_code(&typed).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.error());
    let created = created.json();
    assert_eq!(created["preapproved"], true);
    let expires: DateTime<Utc> = created["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires, t0() + TimeDelta::minutes(15));

    // The kiosk is in the venue document as central described it, and the grant is used.
    let venue = hub.venue();
    let (kiosk, entry) = venue.kiosks.iter().next().unwrap();
    assert_eq!(venue.kiosks.len(), 1);
    assert_eq!(entry.name, "Bar screen");
    assert_eq!(entry.group.as_deref(), Some("bar"));
    assert_eq!(entry.playlist, Some(playlist));
    let used = &venue.kiosk_grants[&grant];
    assert_eq!(used.consumed_by, Some(*kiosk));
    assert_eq!(used.consumed_at_ms, Some(t0().timestamp_millis()));

    // The first poll collects the token.
    let polled = hub.poll(&created["pairing"]).await;
    assert_eq!(polled.status, StatusCode::OK);
    let polled = polled.json();
    assert_eq!(polled["status"], "approved");
    assert_eq!(polled["kiosk"], kiosk.to_string());
    let token = polled["token"].as_str().unwrap();
    let manifest = hub.manifest(token, &[]).await;
    assert_eq!(manifest.status, StatusCode::OK);
    assert_eq!(manifest.json()["playlist"], playlist.to_string());
    assert_eq!(hub.state.metrics.kiosk_codes_redeemed.get(), 1);

    // The code is spent: presenting it again is refused and adds nothing.
    let again = hub.pair_with_code(&code.to_string()).await;
    assert_eq!(again.status, StatusCode::GONE);
    assert!(again.error().contains("already used"), "{}", again.error());
    assert_eq!(hub.venue().kiosks.len(), 1);
    assert_eq!(hub.state.metrics.kiosk_codes_refused.get(), 1);
}

#[tokio::test]
async fn a_retried_kiosk_code_gets_the_same_pairing_until_its_token_is_collected() {
    let hub = TestHub::new();
    let (grant, code) = hub.grant("Door screen", |_| {});
    let first = hub.pair_with_code(&code.to_string()).await.json();
    // The answer was lost; the kiosk asks again, later, even after the window to collect
    // the token passed: the same pairing, renewed, and still one kiosk.
    hub.clock.advance(TimeDelta::minutes(20));
    let second = hub.pair_with_code(&code.to_string()).await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.error());
    let second = second.json();
    assert_eq!(second["pairing"], first["pairing"]);
    assert_eq!(second["code"], first["code"]);
    let renewed: DateTime<Utc> = second["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        renewed,
        t0() + TimeDelta::minutes(20) + TimeDelta::minutes(15)
    );
    assert_eq!(hub.venue().kiosks.len(), 1);
    // Its pairing code is no way in for staff: the kiosk is named by central.
    let approve = hub
        .call(
            Method::POST,
            "/api/v1/pairings/approve",
            Some(&hub.staff),
            Some(json!({"code": second["code"], "name": "Renamed"})),
        )
        .await;
    assert_eq!(approve.status, StatusCode::CONFLICT);
    assert!(
        approve.error().contains("kiosk code"),
        "{}",
        approve.error()
    );
    let polled = hub.poll(&second["pairing"]).await.json();
    let kiosk: KioskId = polled["kiosk"].as_str().unwrap().parse().unwrap();
    assert_eq!(hub.venue().kiosks[&kiosk].name, "Door screen");
    assert_eq!(hub.venue().kiosk_grants[&grant].consumed_by, Some(kiosk));
    assert_eq!(hub.state.metrics.kiosk_codes_redeemed.get(), 1);

    // A crash after step 1 (kiosk reserved in the hub's database, not yet in the
    // document): the pairing reads pending, and the kiosk's retry finishes the job with
    // the reserved kiosk.
    let (grant, code) = hub.grant("Till screen", |_| {});
    let reserved = hub
        .state
        .store
        .reserve_granted(
            grant,
            taplink_edge_hub::store::PairingId::of_kiosk_code(&code),
            None,
            "x",
            hub.state.clock.now(),
        )
        .unwrap();
    let pending = hub
        .poll(&json!(reserved.pairing.id.to_string()))
        .await
        .json();
    assert_eq!(pending, json!({"status": "pending"}));
    let retried = hub.pair_with_code(&code.to_string()).await.json();
    assert_eq!(retried["pairing"], reserved.pairing.id.to_string());
    assert_eq!(
        hub.venue().kiosks[&reserved.kiosk].name,
        "Till screen",
        "the reserved kiosk joined the document"
    );
    assert_eq!(hub.venue().kiosks.len(), 2);
    let polled = hub.poll(&retried["pairing"]).await.json();
    assert_eq!(polled["kiosk"], reserved.kiosk.to_string());
}

#[tokio::test]
async fn wrong_expired_revoked_and_used_kiosk_codes_are_refused_with_the_reason() {
    let hub = TestHub::new();
    let cases: [(&str, StatusCode, &str); 5] = [
        (
            "7KQ4-MP2X-9RTA",
            StatusCode::BAD_REQUEST,
            "provisioning_code",
        ),
        (
            "7KQ4-MP2X-9RTA-B3HU",
            StatusCode::BAD_REQUEST,
            "provisioning_code",
        ),
        (
            &"7".repeat(10_000),
            StatusCode::BAD_REQUEST,
            "provisioning_code",
        ),
        (
            &KioskCode::random().to_string(),
            StatusCode::NOT_FOUND,
            "unknown kiosk code",
        ),
        // The staff code format is no kiosk code.
        ("K7Q-4MP", StatusCode::BAD_REQUEST, "16 characters"),
    ];
    for (code, status, says) in cases {
        let reply = hub.pair_with_code(code).await;
        assert_eq!(reply.status, status, "{code:.20}");
        assert!(
            reply.error().contains(says),
            "{code:.20}: {}",
            reply.error()
        );
    }
    let wrong_type = hub
        .call(
            Method::POST,
            "/api/v1/pairings",
            None,
            Some(json!({"device": "x", "provisioning_code": 5})),
        )
        .await;
    assert_eq!(wrong_type.status, StatusCode::BAD_REQUEST);
    assert!(
        wrong_type.error().contains("invalid type"),
        "{}",
        wrong_type.error()
    );

    let (_, expired) = hub.grant("Late", |g| {
        g.expires_at_ms = (t0() + TimeDelta::minutes(1)).timestamp_millis();
    });
    let (revoked_id, revoked) = hub.grant("Revoked", |_| {});
    hub.edit(|am| remove_kiosk_grant(am, revoked_id));
    let (used_id, used) = hub.grant("Used elsewhere", |_| {});
    let elsewhere = KioskId::random();
    hub.edit(|am| redeem_kiosk_grant(am, used_id, elsewhere, t0().timestamp_millis()).map(drop));
    hub.clock.advance(TimeDelta::minutes(1));
    let kiosks_before = hub.venue().kiosks.len();
    for (code, status, says) in [
        (expired, StatusCode::GONE, "expired"),
        (revoked, StatusCode::NOT_FOUND, "revoked"),
        (used, StatusCode::GONE, "already used"),
    ] {
        let reply = hub.pair_with_code(&code.to_string()).await;
        assert_eq!(reply.status, status, "{says}");
        assert!(reply.error().contains(says), "{says}: {}", reply.error());
    }
    assert_eq!(hub.venue().kiosks.len(), kiosks_before, "nothing was added");
    assert_eq!(hub.state.metrics.kiosk_codes_refused.get(), 4);

    // Before the venue document arrived, a code cannot be checked: 503, try again later.
    let empty = TestHub::with_doc(VenueId::random(), &mut AutoCommit::new());
    let reply = empty.pair_with_code(&KioskCode::random().to_string()).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
}

// ---------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn only_this_hubs_active_tokens_of_present_kiosks_are_accepted() {
    let mut doc = new_venue_doc("Shared venue", "Etc/UTC").unwrap();
    let venue = VenueId::random();
    let hub = TestHub::with_doc(venue, &mut doc);
    let other = TestHub::with_doc(venue, &mut doc);
    let (kiosk, token) = hub.pair("Bar").await;
    let (_, other_token) = other.pair("Elsewhere").await;
    // The other hub learns of this hub's kiosk too (as after a sync): only its token store
    // can refuse the token.
    let mut copy = hub
        .state
        .docs
        .read(hub.state.venue, |am| am.fork())
        .unwrap();
    other
        .state
        .docs
        .edit(other.state.venue, |am| am.merge(&mut copy).map(drop))
        .unwrap();
    assert!(other.venue().kiosks.contains_key(&kiosk));

    let endpoints = [
        "/api/v1/kiosk/manifest",
        "/api/v1/kiosk/media/00",
        "/api/v1/kiosk/events",
    ];
    for uri in endpoints {
        let method = if uri.ends_with("events") {
            Method::POST
        } else {
            Method::GET
        };
        let none = hub.call(method.clone(), uri, None, Some(json!([]))).await;
        assert_eq!(none.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert!(none.error().contains("Authorization"), "{}", none.error());
        assert_eq!(none.header(header::WWW_AUTHENTICATE), "Bearer");
        let wrong = hub
            .call(method.clone(), uri, Some("tlk1-wrong"), Some(json!([])))
            .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{uri}");
        let foreign = hub
            .call(method.clone(), uri, Some(&other_token), Some(json!([])))
            .await;
        assert_eq!(foreign.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert!(
            foreign.error().contains("did not issue"),
            "{}",
            foreign.error()
        );
    }
    let at_other = other.manifest(&token, &[]).await;
    assert_eq!(
        at_other.status,
        StatusCode::UNAUTHORIZED,
        "a token works only at its hub"
    );
    let basic = hub.get("/api/v1/kiosk/manifest", "", &[]).await;
    assert_eq!(basic.status, StatusCode::UNAUTHORIZED);

    assert_eq!(hub.manifest(&token, &[]).await.status, StatusCode::OK);
    let revoke = format!("/api/v1/kiosks/{kiosk}/token");
    assert_eq!(
        hub.call(Method::DELETE, &revoke, Some(&hub.staff), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let revoked = hub.manifest(&token, &[]).await;
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED);
    assert!(revoked.error().contains("revoked"), "{}", revoked.error());
    // Revoking is idempotent; a kiosk that never had a token here is unknown.
    assert_eq!(
        hub.call(Method::DELETE, &revoke, Some(&hub.staff), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let never = format!("/api/v1/kiosks/{}/token", KioskId::random());
    assert_eq!(
        hub.call(Method::DELETE, &never, Some(&hub.staff), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let bad = hub
        .call(
            Method::DELETE,
            "/api/v1/kiosks/nope/token",
            Some(&hub.staff),
            None,
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.error().contains("kiosk id"), "{}", bad.error());
}

#[tokio::test]
async fn a_kiosk_removed_from_the_venue_is_turned_away() {
    let hub = TestHub::new();
    let hash = hub.default_playlist_with_a_windowed_item();
    let (kiosk, token) = hub.pair("Gone soon").await;
    assert_eq!(hub.manifest(&token, &[]).await.status, StatusCode::OK);
    hub.edit(|am| remove_kiosk(am, kiosk));
    let manifest = hub.manifest(&token, &[]).await;
    let media = hub
        .get(&format!("/api/v1/kiosk/media/{hash}"), &token, &[])
        .await;
    let events = hub
        .call(
            Method::POST,
            "/api/v1/kiosk/events",
            Some(&token),
            Some(json!([])),
        )
        .await;
    for reply in [manifest, media, events] {
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert!(
            reply.error().contains("this kiosk was removed"),
            "{}",
            reply.error()
        );
    }
}

// ---------------------------------------------------------------------------------------
// Manifest
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_manifest_carries_its_version_as_etag_and_304s_when_unchanged() {
    let hub = TestHub::new();
    let hash = hub.default_playlist_with_a_windowed_item();
    let (kiosk, token) = hub.pair("Bar").await;
    let first = hub.manifest(&token, &[]).await;
    assert_eq!(first.status, StatusCode::OK);
    let m = first.json();
    assert_eq!(m["kiosk"], kiosk.to_string());
    assert_eq!(m["media"], json!([hash.to_string()]));
    assert_eq!(m["now"], json!([]), "the window opens at 10:00");
    assert_eq!(m["next"]["at"], "2026-11-02T10:00:00Z");
    let version = m["version"].as_str().unwrap();
    assert_eq!(first.header(header::ETAG), quoted(version));

    let same = hub
        .manifest(&token, &[(header::IF_NONE_MATCH, &quoted(version))])
        .await;
    assert_eq!(same.status, StatusCode::NOT_MODIFIED);
    assert!(same.body.is_empty());
    assert_eq!(same.header(header::ETAG), quoted(version));
    let stale = hub
        .manifest(&token, &[(header::IF_NONE_MATCH, "\"old\"")])
        .await;
    assert_eq!(stale.status, StatusCode::OK);

    // Time passing within one schedule state changes nothing; passing 10:00 does.
    hub.clock.advance(TimeDelta::milliseconds(500));
    let still = hub
        .manifest(&token, &[(header::IF_NONE_MATCH, &quoted(version))])
        .await;
    assert_eq!(still.status, StatusCode::NOT_MODIFIED);
    hub.clock.advance(TimeDelta::seconds(1));
    let now = hub
        .manifest(&token, &[(header::IF_NONE_MATCH, &quoted(version))])
        .await;
    assert_eq!(now.status, StatusCode::OK);
    assert_eq!(now.json()["now"][0]["media"], hash.to_string());

    let bad = hub
        .get("/api/v1/kiosk/manifest?wait=soon", &token, &[])
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.error().contains("wait"), "{}", bad.error());

    let metrics = hub.call(Method::GET, "/metrics", None, None).await;
    let text = String::from_utf8_lossy(&metrics.body);
    for line in [
        "taplink_hub_kiosk_manifests_sent_total 3",
        "taplink_hub_kiosk_manifests_not_modified_total 2",
        "taplink_hub_kiosks_paired 1",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}

#[tokio::test]
async fn a_long_poll_answers_as_soon_as_the_document_changes_the_manifest() {
    let hub = Arc::new(TestHub::new());
    let (_, token) = hub.pair("Bar").await;
    let version = hub.manifest(&token, &[]).await.json()["version"]
        .as_str()
        .unwrap()
        .to_owned();
    let waiting = {
        let (hub, token, tag) = (hub.clone(), token.clone(), quoted(&version));
        tokio::spawn(async move {
            hub.get(
                "/api/v1/kiosk/manifest?wait=60",
                &token,
                &[(header::IF_NONE_MATCH, &tag)],
            )
            .await
        })
    };
    hub.long_polls_open(1).await;
    // A default playlist changes what the kiosk plays.
    hub.default_playlist_with_a_windowed_item();
    let reply = tokio::time::timeout(BOUND, waiting)
        .await
        .expect("the long-poll did not wake on the change")
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    let fresh = reply.json()["version"].as_str().unwrap().to_owned();
    assert_ne!(fresh, version);
    assert_eq!(reply.header(header::ETAG), quoted(&fresh));
    hub.long_polls_open(0).await;
}

#[tokio::test]
async fn a_long_poll_answers_304_when_the_wait_ends_without_a_relevant_change() {
    let hub = Arc::new(TestHub::new());
    let (kiosk, token) = hub.pair("Bar").await;
    let version = hub.manifest(&token, &[]).await.json()["version"]
        .as_str()
        .unwrap()
        .to_owned();
    let waiting = {
        let (hub, token, tag) = (hub.clone(), token.clone(), quoted(&version));
        tokio::spawn(async move {
            hub.get(
                "/api/v1/kiosk/manifest?wait=1",
                &token,
                &[(header::IF_NONE_MATCH, &tag)],
            )
            .await
        })
    };
    hub.long_polls_open(1).await;
    // Renaming the kiosk changes the document but not the manifest: the poll keeps waiting.
    hub.edit(|am| rename_kiosk(am, kiosk, "Renamed"));
    let reply = tokio::time::timeout(BOUND, waiting).await.unwrap().unwrap();
    assert_eq!(reply.status, StatusCode::NOT_MODIFIED);
    assert_eq!(reply.header(header::ETAG), quoted(&version));
    assert_eq!(hub.state.metrics.long_polls_open.get(), 0);
}

#[tokio::test]
async fn a_long_poll_answers_when_the_next_schedule_change_arrives() {
    let hub = Arc::new(TestHub::new());
    hub.default_playlist_with_a_windowed_item();
    let (_, token) = hub.pair("Bar").await;
    let first = hub.manifest(&token, &[]).await.json();
    assert_eq!(first["now"], json!([]));
    let version = first["version"].as_str().unwrap().to_owned();
    let waiting = {
        let (hub, token, tag) = (hub.clone(), token.clone(), quoted(&version));
        tokio::spawn(async move {
            hub.get(
                "/api/v1/kiosk/manifest?wait=60",
                &token,
                &[(header::IF_NONE_MATCH, &tag)],
            )
            .await
        })
    };
    hub.long_polls_open(1).await;
    // The hub sleeps until next.at (one second away) and then looks at the clock again.
    hub.clock.set(t0() + TimeDelta::seconds(2));
    let reply = tokio::time::timeout(BOUND, waiting)
        .await
        .expect("the long-poll did not wake at next.at")
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["now"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn shutdown_ends_long_polls() {
    let hub = Arc::new(TestHub::new());
    let (_, token) = hub.pair("Bar").await;
    let version = hub.manifest(&token, &[]).await.json()["version"]
        .as_str()
        .unwrap()
        .to_owned();
    let waiting = {
        let (hub, token, tag) = (hub.clone(), token.clone(), quoted(&version));
        tokio::spawn(async move {
            hub.get(
                "/api/v1/kiosk/manifest?wait=60",
                &token,
                &[(header::IF_NONE_MATCH, &tag)],
            )
            .await
        })
    };
    hub.long_polls_open(1).await;
    hub.state.shutdown.cancel();
    let reply = tokio::time::timeout(BOUND, waiting).await.unwrap().unwrap();
    assert_eq!(reply.status, StatusCode::NOT_MODIFIED);
}

// ---------------------------------------------------------------------------------------
// Media
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn media_is_served_whole_or_by_range_only_for_the_venues_own_files() {
    let hub = TestHub::new();
    let data: Vec<u8> = (0..100u8).collect();
    let hash = hub.state.blobs.put(&data).unwrap();
    hub.edit(|am| add_media(am, hash, &meta(100)));
    let (_, token) = hub.pair("Bar").await;
    let uri = format!("/api/v1/kiosk/media/{hash}");

    let full = hub.get(&uri, &token, &[]).await;
    assert_eq!(full.status, StatusCode::OK);
    assert_eq!(full.body, data);
    assert_eq!(full.header(header::ETAG), quoted(&hash.to_string()));
    assert_eq!(
        full.header(header::CACHE_CONTROL),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(full.header(header::ACCEPT_RANGES), "bytes");
    assert_eq!(full.header(header::CONTENT_TYPE), "image/png");
    assert_eq!(full.header(header::CONTENT_LENGTH), "100");

    for (range, want, content_range) in [
        ("bytes=0-9", &data[0..10], "bytes 0-9/100"),
        ("bytes=10-", &data[10..], "bytes 10-99/100"),
        ("bytes=-5", &data[95..], "bytes 95-99/100"),
        ("bytes=90-1000", &data[90..], "bytes 90-99/100"),
    ] {
        let part = hub.get(&uri, &token, &[(header::RANGE, range)]).await;
        assert_eq!(part.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(part.body, want, "{range}");
        assert_eq!(part.header(header::CONTENT_RANGE), content_range, "{range}");
        assert_eq!(
            part.header(header::CONTENT_LENGTH),
            want.len().to_string(),
            "{range}"
        );
    }
    let beyond = hub
        .get(&uri, &token, &[(header::RANGE, "bytes=100-")])
        .await;
    assert_eq!(beyond.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(beyond.header(header::CONTENT_RANGE), "bytes */100");
    assert!(beyond.error().contains("100 bytes"), "{}", beyond.error());

    let cached = hub
        .get(
            &uri,
            &token,
            &[(header::IF_NONE_MATCH, &quoted(&hash.to_string()))],
        )
        .await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
    assert!(cached.body.is_empty());

    // On this hub's disk but not in the venue document: not served.
    let foreign = hub.state.blobs.put(b"another venue's file").unwrap();
    let not_ours = hub
        .get(&format!("/api/v1/kiosk/media/{foreign}"), &token, &[])
        .await;
    assert_eq!(not_ours.status, StatusCode::NOT_FOUND);
    assert!(
        not_ours.error().contains("not in this venue"),
        "{}",
        not_ours.error()
    );
    // In the document, not downloaded yet.
    let pending = MediaHash::of(b"still on its way");
    hub.edit(|am| add_media(am, pending, &meta(16)));
    let missing = hub
        .get(&format!("/api/v1/kiosk/media/{pending}"), &token, &[])
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(
        missing.error().contains("not on this hub yet"),
        "{}",
        missing.error()
    );
    let bad = hub.get("/api/v1/kiosk/media/xyz", &token, &[]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let metrics = hub.call(Method::GET, "/metrics", None, None).await;
    let text = String::from_utf8_lossy(&metrics.body);
    let served = 100 + 10 + 90 + 5 + 10;
    assert!(
        text.contains(&format!("taplink_hub_kiosk_media_bytes_total {served}")),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------

fn heartbeat(id: &str) -> Value {
    json!({
        "id": id,
        "at_ms": 1_793_613_599_000i64,
        "kind": {"Heartbeat": {
            "on_screen": null,
            "manifest_version": "v",
            "disk_free_bytes": 1,
            "temperature_mc": 45000,
            "uptime_s": 2,
            "software": "taplink-kiosk test"
        }}
    })
}

#[tokio::test]
async fn events_are_stored_once_for_the_tokens_kiosk() {
    let hub = TestHub::new();
    let (kiosk, token) = hub.pair("Bar").await;
    let batch = json!([
        heartbeat("000102030405060708090a0b0c0d0e0f"),
        heartbeat("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"),
    ]);
    let first = hub
        .call(
            Method::POST,
            "/api/v1/kiosk/events",
            Some(&token),
            Some(batch.clone()),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.error());
    assert_eq!(first.json(), json!({"accepted": 2, "new": 2}));
    tokio::time::timeout(BOUND, hub.state.outbox_ready.notified())
        .await
        .expect("the uplink was not told");
    // The kiosk retries after a lost answer: nothing is stored twice.
    let retry = hub
        .call(
            Method::POST,
            "/api/v1/kiosk/events",
            Some(&token),
            Some(batch),
        )
        .await;
    assert_eq!(retry.json(), json!({"accepted": 2, "new": 0}));
    assert_eq!(hub.state.store.pending().unwrap(), 2);
    let stored = hub.state.store.next_batch(10).unwrap().unwrap().events;
    assert_eq!(
        stored[0].id,
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
    );
    assert!(
        stored.iter().all(|e| e.kiosk == Some(kiosk)),
        "kiosk comes from the token"
    );
    let empty = hub
        .call(
            Method::POST,
            "/api/v1/kiosk/events",
            Some(&token),
            Some(json!([])),
        )
        .await;
    assert_eq!(empty.json(), json!({"accepted": 0, "new": 0}));
}

#[tokio::test]
async fn bad_event_batches_are_refused_with_a_reason() {
    let hub = TestHub::new();
    let (other, _) = hub.pair("Other").await;
    let (_, token) = hub.pair("Bar").await;
    let mut with_kiosk = heartbeat("00000000000000000000000000000001");
    with_kiosk["kiosk"] = json!(other.to_string());
    let mut no_time = heartbeat("00000000000000000000000000000002");
    no_time.as_object_mut().unwrap().remove("at_ms");
    let cases = [
        (json!({"events": []}), "JSON array"),
        (json!([heartbeat("abc")]), "id must be 32 hex"),
        (
            json!([heartbeat("00000000000000000000000000000003"), no_time]),
            "event 1: missing field `at_ms`",
        ),
        (json!([with_kiosk]), "unknown field `kiosk`"),
        (
            json!([{"id": "00000000000000000000000000000004", "at_ms": 1, "kind": {"Nap": {}}}]),
            "Nap",
        ),
    ];
    for (body, reason) in cases {
        let reply = hub
            .call(
                Method::POST,
                "/api/v1/kiosk/events",
                Some(&token),
                Some(body.clone()),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            reply.error().contains(reason),
            "{reason:?} not in {:?}",
            reply.error()
        );
    }
    let not_json = hub
        .send(
            Request::post("/api/v1/kiosk/events")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("[{"))
                .unwrap(),
        )
        .await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    assert!(not_json.error().contains("JSON"), "{}", not_json.error());

    let too_many: Vec<Value> = (0..1001u32)
        .map(|i| heartbeat(&format!("{i:032x}")))
        .collect();
    let reply = hub
        .call(
            Method::POST,
            "/api/v1/kiosk/events",
            Some(&token),
            Some(json!(too_many)),
        )
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(reply.error().contains("at most 1000"), "{}", reply.error());

    let huge = format!("[\"{}\"]", "x".repeat(1024 * 1024));
    let reply = hub
        .send(
            Request::post("/api/v1/kiosk/events")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(huge))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        reply.error().contains("1048576-byte limit"),
        "{}",
        reply.error()
    );
    assert_eq!(
        hub.state.store.pending().unwrap(),
        0,
        "nothing of a refused batch is kept"
    );
}
