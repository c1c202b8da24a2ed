//! The local player server, on loopback, for Chromium in kiosk mode: the player page, the
//! state it polls, proof of play it reports, the cached media it shows, and `/healthz` and
//! `/metrics`.
//!
//! The page never depends on the hub: every byte it shows comes from the cache here, and
//! when this server stops answering, the page keeps looping over what it already loaded.
//!
//! - `GET /` — the page (`player.html`, self-contained).
//! - `GET /player/state[?on_screen=<hash>]` — [`PlayerState`] JSON; the page says what is
//!   on screen with each poll (the heartbeat's `on_screen`).
//! - `POST /player/played` — one showing, [`Played`] JSON (at most 4 KiB): buffered as
//!   proof of play. `204`, or `409` when the kiosk is not paired.
//! - `GET /media/<hash>` — a cached file, with `Range` (`206`/`416`), `ETag` and
//!   immutable caching.

use std::collections::BTreeMap;
use std::io::SeekFrom;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use serde::{Deserialize, Serialize};
use taplink_sync_io::blobs::BlobError;
use taplink_sync_io::web::access::{Access, Gate, Routes};
use taplink_sync_io::web::guard;
use taplink_sync_io::web::media;
use taplink_sync_proto::ids::{ItemId, MediaHash, PlaylistId};
use taplink_sync_proto::manifest::Manifest;
use taplink_sync_proto::wire::{ProofOfPlay, TelemetryKind};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;
use tracing::{error, warn};

use crate::hub::{KioskEvent, hex16};
use crate::reporter;
use crate::state::{Phase, Shared};

/// The player page.
const PAGE: &str = include_str!("player.html");

/// Largest `POST /player/played` body.
const MAX_PLAYED_BODY: usize = 4 * 1024;

/// Longest showing accepted from the page: a day.
const MAX_PLAY_MS: u64 = 24 * 60 * 60 * 1000;

/// Every route of the player server with who may use it: the page and what it reads and
/// reports are for programs on this machine (Chromium) only; health and metrics are
/// public like every node's.
pub fn routes() -> Routes<Arc<Shared>> {
    let g = &PlayerGate;
    let local = Access::Loopback;
    Routes::new()
        .route(g, "/", &["GET"], local, get(page))
        .route(g, "/player/state", &["GET"], local, get(state))
        .route(
            g,
            "/player/played",
            &["POST"],
            local,
            post(played).layer(DefaultBodyLimit::max(MAX_PLAYED_BODY)),
        )
        .route(g, "/media/{hash}", &["GET"], local, get(media))
        .route(g, "/healthz", &["GET"], Access::Public, get(healthz))
        .route(g, "/metrics", &["GET"], Access::Public, get(metrics))
}

/// How the player server enforces each [`Access`]: it has no credentials of its own, so a
/// route declared for anyone but the public or this machine refuses everyone.
#[derive(Debug, Clone, Copy)]
pub struct PlayerGate;

impl Gate<Arc<Shared>> for PlayerGate {
    fn guard(&self, access: Access, route: MethodRouter<Arc<Shared>>) -> MethodRouter<Arc<Shared>> {
        match access {
            Access::Public => route,
            Access::Loopback => route.route_layer(axum::middleware::from_fn(guard::loopback_only)),
            _ => route.route_layer(axum::middleware::from_fn(
                |_req: axum::extract::Request, _next: axum::middleware::Next| async {
                    ApiError(StatusCode::FORBIDDEN, "not served here".into()).into_response()
                },
            )),
        }
    }
}

/// The router of the player server: [`routes`], JSON writes, and `Host` only `localhost`
/// or an IP address (a page on another site rebound to 127.0.0.1 is refused).
pub fn app(shared: Arc<Shared>) -> Router {
    let (router, _) = routes().into_parts();
    router
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(guard::RequestRules::default()),
            guard::request_rules,
        ))
        .with_state(shared)
}

async fn page() -> impl IntoResponse {
    (
        [
            // The page is part of the agent: reload it from the agent, never a stale copy.
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self' blob:; style-src 'self' 'unsafe-inline'; script-src 'unsafe-inline'",
            ),
        ],
        Html(PAGE),
    )
}

/// The page's view of a pairing in progress.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PairingView {
    /// The code to show.
    pub code: String,
    /// When it expires (hub clock).
    pub expires_at: String,
}

/// What `GET /player/state` returns.
#[derive(Debug, Serialize, Deserialize)]
pub struct PlayerState {
    /// `searching` (for a hub), `unpaired` (asking for a code), `pairing` (showing a code)
    /// or `paired`.
    pub status: String,
    /// The code to show, while pairing.
    pub pairing: Option<PairingView>,
    /// Why the hub refused this kiosk's kiosk code, while it waits for staff instead.
    pub pair_code_refused: Option<String>,
    /// This kiosk's name.
    pub device: String,
    /// Whether the hub answers (for a small status mark; playback does not depend on it).
    pub hub_reachable: bool,
    /// The manifest to play, if any.
    pub manifest: Option<Manifest>,
    /// The manifest's media that is cached (playable), with sizes.
    pub ready: BTreeMap<MediaHash, u64>,
    /// Add to the page's clock to get the hub's (for `next.at`).
    pub clock_offset_ms: i64,
}

#[derive(Debug, Deserialize)]
struct StateQuery {
    on_screen: Option<String>,
}

async fn state(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<StateQuery>,
) -> Json<PlayerState> {
    shared.saw_screen(q.on_screen.and_then(|h| h.parse().ok()));
    let status = shared.status();
    let (name, pairing) = match &status.phase {
        Phase::Searching => ("searching", None),
        Phase::Unpaired => ("unpaired", None),
        Phase::Pairing { code, expires_at } => (
            "pairing",
            Some(PairingView {
                code: code.clone(),
                expires_at: expires_at.to_rfc3339(),
            }),
        ),
        Phase::Paired { .. } => ("paired", None),
    };
    Json(PlayerState {
        status: name.into(),
        pairing,
        pair_code_refused: status.pair_code_refused.clone(),
        device: shared.config.device_name.clone(),
        hub_reachable: status.hub_reachable,
        manifest: status.manifest.as_deref().cloned(),
        ready: (*status.ready).clone(),
        clock_offset_ms: status.clock_offset_ms,
    })
}

/// One showing, as the page reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Played {
    /// Chosen by the page (32 hex), so that its retries are idempotent.
    #[serde(with = "hex16")]
    pub id: [u8; 16],
    /// The manifest's playlist.
    pub playlist: PlaylistId,
    /// The item shown.
    pub item: ItemId,
    /// Its media.
    pub media: MediaHash,
    /// When it appeared, ms since the Unix epoch.
    pub started_ms: i64,
    /// How long it was on screen.
    pub duration_ms: u64,
}

/// An error answer of the player server: a status and a sentence.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

async fn played(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    match record_played(&shared, &body) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

fn record_played(shared: &Shared, body: &[u8]) -> Result<(), ApiError> {
    let played: Played = serde_json::from_slice(body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("played: {e}")))?;
    if played.duration_ms > MAX_PLAY_MS || played.started_ms <= 0 {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "started_ms must be a Unix time in ms and duration_ms at most a day".into(),
        ));
    }
    if !matches!(shared.status.borrow().phase, Phase::Paired { .. }) {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "this kiosk is not paired; nothing to report".into(),
        ));
    }
    let event = KioskEvent {
        id: played.id,
        at_ms: shared.now_ms(),
        kind: TelemetryKind::ProofOfPlay(ProofOfPlay {
            playlist: played.playlist,
            item: played.item,
            media: played.media,
            started_ms: played.started_ms,
            duration_ms: played.duration_ms,
        }),
    };
    reporter::record(shared, &[event]).map_err(|e| {
        error!(error = %e, "cannot buffer proof of play");
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "cannot store the report now".into(),
        )
    })?;
    shared.metrics.plays_reported.inc();
    Ok(())
}

/// A `Range` header's meaning for a body of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// No (usable) range: the whole body, `200`.
    Full,
    /// Bytes `start..=end`, `206`.
    Part {
        /// First byte.
        start: u64,
        /// Last byte (inclusive).
        end: u64,
    },
    /// Outside the body: `416`.
    Unsatisfiable,
}

/// Interpret a `Range` header (RFC 9110 §14.1.2): one `bytes` range, `a-b`, `a-` or
/// `-suffix`. Anything else (other units, several ranges, nonsense) is ignored, which the
/// RFC allows, and the whole body is served.
pub fn parse_range(header: Option<&str>, size: u64) -> ByteRange {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return ByteRange::Full;
    };
    if spec.contains(',') {
        return ByteRange::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return ByteRange::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let parse = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match (first.is_empty(), parse(first), parse(last)) {
        // `-n`: the last n bytes.
        (true, _, Some(n)) => {
            if n == 0 || size == 0 {
                ByteRange::Unsatisfiable
            } else {
                ByteRange::Part {
                    start: size.saturating_sub(n),
                    end: size - 1,
                }
            }
        }
        (false, Some(start), end) if last.is_empty() || end.is_some() => {
            if end.is_some_and(|e| e < start) {
                return ByteRange::Full;
            }
            if start >= size {
                return ByteRange::Unsatisfiable;
            }
            ByteRange::Part {
                start,
                end: end.map_or(size - 1, |e| e.min(size - 1)),
            }
        }
        _ => ByteRange::Full,
    }
}

async fn media(
    State(shared): State<Arc<Shared>>,
    Path(hash): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Ok(hash) = hash.parse::<MediaHash>() else {
        return ApiError(StatusCode::NOT_FOUND, "not a media hash".into()).into_response();
    };
    let etag = format!("\"{hash}\"");
    let mut out = HeaderMap::new();
    out.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, v);
    }
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if not_modified {
        return (StatusCode::NOT_MODIFIED, out).into_response();
    }
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    // A request from the start is a showing: mark the file used (for LRU eviction).
    let touch = !matches!(range_header.map(|r| r.trim()), Some(r) if r != "bytes=0-");
    let blobs = shared.blobs.clone();
    let opened = tokio::task::spawn_blocking(move || {
        let opened = blobs.open_file(&hash)?;
        if touch {
            blobs.touch(&hash)?;
        }
        Ok::<_, BlobError>(opened)
    })
    .await;
    let (file, size) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(BlobError::NotFound(_))) => {
            return ApiError(StatusCode::NOT_FOUND, format!("media {hash} is not cached"))
                .into_response();
        }
        Ok(Err(e)) => {
            warn!(%hash, error = %e, "cannot open cached media");
            return ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot read media".into(),
            )
            .into_response();
        }
        Err(e) => {
            warn!(%hash, error = %e, "media task failed");
            return ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot read media".into(),
            )
            .into_response();
        }
    };
    // Only an allowed media type is ever named, with the same safety headers as the hub's.
    let ct = media::served_type(&content_type(&shared, &hash).unwrap_or_default());
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    media::add_safety_headers(&mut out, ct);
    let (status, start, len) = match parse_range(range_header, size) {
        ByteRange::Full => (StatusCode::OK, 0, size),
        ByteRange::Part { start, end } => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")) {
                out.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        ByteRange::Unsatisfiable => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                out.insert(header::CONTENT_RANGE, v);
            }
            return (StatusCode::RANGE_NOT_SATISFIABLE, out).into_response();
        }
    };
    let mut file = tokio::fs::File::from_std(file);
    if start > 0
        && let Err(e) = file.seek(SeekFrom::Start(start)).await
    {
        warn!(%hash, error = %e, "cannot seek in cached media");
        return ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot read media".into(),
        )
        .into_response();
    }
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let body = Body::from_stream(ReaderStream::new(file.take(len)));
    (status, out, body).into_response()
}

/// The content type the manifest gives this media, if it is in it.
fn content_type(shared: &Shared, hash: &MediaHash) -> Option<String> {
    let manifest = shared.status.borrow().manifest.clone()?;
    manifest
        .now
        .iter()
        .chain(manifest.next.iter().flat_map(|n| n.items.iter()))
        .find(|i| i.media == *hash)
        .map(|i| i.content_type.clone())
}

/// What `GET /healthz` returns.
#[derive(Debug, Serialize, Deserialize)]
pub struct Health {
    /// Whether the kiosk holds a device token.
    pub paired: bool,
    /// Its kiosk id, when paired.
    pub kiosk: Option<String>,
    /// The hub in use.
    pub hub: Option<String>,
    /// Whether it answers.
    pub hub_reachable: bool,
    /// The manifest version being played.
    pub manifest_version: Option<String>,
    /// Bytes in the media cache.
    pub cache_bytes: u64,
    /// Events waiting for the hub.
    pub events_pending: u64,
    /// Whether the player page polled in the last 10 s.
    pub player_connected: bool,
    /// The agent's clock, RFC 3339.
    pub now: String,
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Json<Health> {
    let status = shared.status();
    let kiosk = match &status.phase {
        Phase::Paired { kiosk, .. } => Some(kiosk.to_string()),
        _ => None,
    };
    let screen = *shared
        .screen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Json(Health {
        paired: kiosk.is_some(),
        kiosk,
        hub: status.hub.map(|h| h.to_string()),
        hub_reachable: status.hub_reachable,
        manifest_version: status.manifest.as_ref().map(|m| m.version.clone()),
        cache_bytes: shared.blobs.total_size().unwrap_or(0),
        events_pending: shared.store.pending().unwrap_or(0),
        player_connected: screen
            .seen
            .is_some_and(|s| s.elapsed() <= crate::state::SCREEN_FRESH),
        now: shared.clock.now().to_rfc3339(),
    })
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    if let Ok(pending) = shared.store.pending() {
        shared
            .metrics
            .events_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
    }
    if let Ok(total) = shared.blobs.total_size() {
        shared
            .metrics
            .cache_bytes
            .set(i64::try_from(total).unwrap_or(i64::MAX));
    }
    taplink_sync_io::web::metrics_response(shared.metrics.registry())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        let r = |h: &str| parse_range(Some(h), 1000);
        assert_eq!(parse_range(None, 1000), ByteRange::Full);
        assert_eq!(r("bytes=0-99"), ByteRange::Part { start: 0, end: 99 });
        assert_eq!(
            r("bytes=900-"),
            ByteRange::Part {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            r("bytes=900-5000"),
            ByteRange::Part {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            r("bytes=-100"),
            ByteRange::Part {
                start: 900,
                end: 999
            }
        );
        assert_eq!(r("bytes=-5000"), ByteRange::Part { start: 0, end: 999 });
        assert_eq!(r("bytes=1000-"), ByteRange::Unsatisfiable);
        assert_eq!(r("bytes=-0"), ByteRange::Unsatisfiable);
        // Ignored: other units, several ranges, reversed or malformed.
        for h in [
            "items=0-1",
            "bytes=0-1,5-6",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=+1-2",
        ] {
            assert_eq!(r(h), ByteRange::Full, "{h}");
        }
        assert_eq!(parse_range(Some("bytes=0-"), 0), ByteRange::Unsatisfiable);
    }
}
