//! Helpers shared by the integration tests: fixed times, data directories, requests.

use std::path::PathBuf;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use chrono::{DateTime, TimeDelta, Utc};
use http_body_util::BodyExt;
use taplink_central::init::{InitOptions, InitReport, init};
use taplink_central::store::Registry;
use taplink_central::{AppState, Config};
use taplink_certs::{Fingerprint, Serial};
use taplink_sync_proto::ids::HubId;
use tempfile::TempDir;
use tower::ServiceExt;

/// A fixed instant (2026-03-01T12:00:00Z) so registry tests control time exactly.
pub(crate) fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_772_366_400, 0).unwrap()
}

/// The system clock's now (init issues certificates that must be valid at present).
pub(crate) fn now() -> DateTime<Utc> {
    taplink_sync_proto::clock::Clock::now(&taplink_sync_proto::clock::SystemClock)
}

pub(crate) fn at(offset: TimeDelta) -> DateTime<Utc> {
    t0() + offset
}

/// A venue made as the API makes one (registry entry and document), in Europe/London.
pub(crate) fn venue(state: &AppState, name: &str) -> taplink_sync_proto::ids::VenueId {
    taplink_central::venue::create_venue(&state.registry, &state.docs, name, "Europe/London", now())
        .unwrap()
        .id
}

/// A fresh registry in a temporary directory.
pub(crate) fn registry() -> (TempDir, Registry) {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::create(&dir.path().join("central.sqlite")).unwrap();
    (dir, registry)
}

/// A data directory made by `init` inside a temporary directory.
pub(crate) struct Initialised {
    pub _tmp: TempDir,
    pub data_dir: PathBuf,
    pub report: InitReport,
}

impl Initialised {
    pub(crate) fn new() -> Initialised {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("data");
        let report = init(&InitOptions::new(&data_dir), crate::support::now()).unwrap();
        Initialised {
            _tmp: tmp,
            data_dir,
            report,
        }
    }

    pub(crate) fn config(&self) -> Config {
        Config::load(&self.data_dir.join("config.json")).unwrap()
    }

    pub(crate) fn state(&self) -> AppState {
        AppState::load(self.config()).unwrap()
    }

    pub(crate) fn token(&self) -> String {
        self.report.admin_token.as_str().to_owned()
    }
}

/// A hub certificate's serial and fingerprint, distinct per `n`.
pub(crate) fn cert_of(n: u8) -> (Serial, Fingerprint) {
    let serial: Serial = format!("4{n:x}").repeat(8).parse().unwrap();
    (serial, Fingerprint::of(&[n; 8]))
}

pub(crate) fn hub(n: u8) -> HubId {
    HubId::from_bytes([n; 16])
}

/// A request with an optional bearer token and JSON body.
pub(crate) fn request(
    method: &str,
    uri: &str,
    token: Option<&str>,
    json: Option<&str>,
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    match json {
        Some(body) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    }
}

pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    /// The `error` sentence of an error body.
    pub(crate) fn error(&self) -> String {
        self.json()["error"].as_str().unwrap().to_owned()
    }
}

pub(crate) async fn call(app: &Router, req: Request<Body>) -> Answer {
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let streaming = headers
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"));
    let body = if streaming {
        // An event stream does not end: its first event is the answer.
        let mut body = response.into_body();
        let frame = tokio::time::timeout(std::time::Duration::from_secs(20), body.frame())
            .await
            .expect("an event stream sends its first event within 20 s");
        frame
            .and_then(|f| f.ok())
            .and_then(|f| f.into_data().ok())
            .map(|d| d.to_vec())
            .unwrap_or_default()
    } else {
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec()
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// A request carrying the session cookie and, if given, a CSRF token.
pub(crate) fn with_session(
    method: &str,
    uri: &str,
    cookie: &str,
    csrf: Option<&str>,
    json: Option<&str>,
) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::COOKIE, cookie);
    if let Some(csrf) = csrf {
        builder = builder.header("X-CSRF-Token", csrf);
    }
    match json {
        Some(body) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    }
}

/// Make a user as the admin (`body` has at least `username`, `role` and `password`), sign
/// them in, and return the session's cookie (`name=value`) and CSRF token.
pub(crate) async fn user_session(
    app: &Router,
    admin_token: &str,
    body: serde_json::Value,
) -> (String, String) {
    let made = call(
        app,
        request(
            "POST",
            "/api/v1/users",
            Some(admin_token),
            Some(&body.to_string()),
        ),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text());
    let login = serde_json::json!({"username": body["username"], "password": body["password"]});
    let signed = call(
        app,
        request("POST", "/api/v1/auth/login", None, Some(&login.to_string())),
    )
    .await;
    assert_eq!(signed.status, StatusCode::OK, "{}", signed.text());
    let cookie = signed.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csrf = signed.json()["csrf_token"].as_str().unwrap().to_owned();
    (cookie, csrf)
}
