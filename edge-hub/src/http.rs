//! The hub's local HTTP API: health, metrics, the venue document, operations, media upload
//! and download, and telemetry intake, plus the kiosks' LAN API ([`crate::kiosk_api`]). It
//! works whether or not central is reachable.
//!
//! The staff endpoints here have no authentication yet (it arrives with the staff UI): they
//! are for the venue's own network, and the hub listens on loopback by default.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::json;
use taplink_sync_io::blobs::BlobStore;
use taplink_sync_io::docs::{Documents, EditError};
use taplink_sync_proto::doc::{DocOpError, MediaMeta, VenueCommand, VenueDoc, add_media};
use taplink_sync_proto::ids::MediaHash;
use taplink_sync_proto::wire::{DocId, MAX_TELEMETRY_BATCH, TelemetryEvent};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
pub use crate::error::ApiError;
use crate::error::{MAX_JSON_BODY, body as limited, internal, parse_json};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::uplink::UplinkStatus;

/// What the handlers share.
#[derive(Debug)]
pub struct HubState {
    /// This hub's venue document id.
    pub venue: DocId,
    /// Documents.
    pub docs: Arc<Documents>,
    /// Media.
    pub blobs: Arc<BlobStore>,
    /// The hub's database: telemetry outbox, pairings, device tokens.
    pub store: Arc<Store>,
    /// Woken when telemetry is queued.
    pub outbox_ready: Arc<Notify>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The uplink's state.
    pub uplink: watch::Receiver<UplinkStatus>,
    /// Largest media upload.
    pub max_upload: u64,
    /// Where uploads are staged while they arrive.
    pub upload_dir: std::path::PathBuf,
    /// The wall clock manifests and pairing expiry are computed with.
    pub clock: Arc<dyn Clock>,
    /// Cancelled when the hub shuts down: long-polls answer at once.
    pub shutdown: CancellationToken,
    /// The venue document and kiosks' manifests as the kiosk API reads them (cached).
    pub view: crate::view::VenueView,
}

/// The router.
pub fn app(state: Arc<HubState>) -> Router {
    let max_upload = usize::try_from(state.max_upload).unwrap_or(usize::MAX);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/venue", get(venue))
        .route("/api/v1/venue/ops", post(apply_op))
        .route("/api/v1/events", post(events))
        .route("/api/v1/media/{hash}", get(media))
        .merge(crate::kiosk_api::routes())
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .merge(
            Router::new()
                .route("/api/v1/media", put(upload))
                .layer(DefaultBodyLimit::max(max_upload)),
        )
        .with_state(state)
}

async fn healthz(State(s): State<Arc<HubState>>) -> Json<serde_json::Value> {
    let uplink = s.uplink.borrow().clone();
    Json(json!({
        "status": "ok",
        "venue": s.venue.to_string(),
        "central": if uplink.connected { "connected" } else { "disconnected" },
        "synced": uplink.synced,
        "last_error": uplink.last_error,
    }))
}

async fn metrics(State(s): State<Arc<HubState>>) -> impl IntoResponse {
    if let Ok(n) = s.store.pending() {
        s.metrics
            .outbox_pending
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    if let Ok(n) = s.store.paired_kiosks() {
        s.metrics
            .kiosks_paired
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

async fn venue(State(s): State<Arc<HubState>>) -> Result<Json<serde_json::Value>, ApiError> {
    let doc = venue_doc(&s)?;
    Ok(Json(serde_json::to_value(&*doc).map_err(internal)?))
}

/// The venue document as it is now, or `NotSynced` before central's copy has arrived.
pub(crate) fn venue_doc(s: &HubState) -> Result<Arc<VenueDoc>, ApiError> {
    s.view.doc(&s.docs).map_err(view_error)
}

/// The API's answer to a failed read of the view.
pub(crate) fn view_error(e: crate::view::ViewError) -> ApiError {
    match e {
        crate::view::ViewError::NotSynced => ApiError::NotSynced,
        other => internal(other),
    }
}

async fn apply_op(
    State(s): State<Arc<HubState>>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let command: VenueCommand = parse_json(&limited(body)?)?;
    ensure_synced(&s)?;
    s.docs
        .edit(s.venue, |am| command.apply(am))
        .map_err(edit_error)?;
    s.metrics.local_edits.inc();
    Ok(Json(json!({ "status": "applied" })))
}

fn ensure_synced(s: &HubState) -> Result<(), ApiError> {
    venue_doc(s).map(drop)
}

pub(crate) fn edit_error(e: EditError<DocOpError>) -> ApiError {
    match e {
        EditError::Refused(e) => ApiError::Refused(e),
        other => internal(other),
    }
}

#[derive(Debug, Deserialize)]
struct UploadQuery {
    name: String,
    content_type: String,
}

/// Stream an upload to a staging file (never the whole file in memory), store it by hash,
/// and add it to the venue's media.
async fn upload(
    State(s): State<Arc<HubState>>,
    Query(q): Query<UploadQuery>,
    body: Body,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    ensure_synced(&s)?;
    let staging = tempfile::NamedTempFile::new_in(&s.upload_dir).map_err(internal)?;
    let mut file = tokio::fs::File::from_std(staging.reopen().map_err(internal)?);
    let mut body = body;
    let mut size = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::TooLarge(format!("upload refused: {e}")))?;
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        size += chunk.len() as u64;
        if size > s.max_upload {
            return Err(ApiError::TooLarge(format!(
                "upload exceeds the {}-byte limit",
                s.max_upload
            )));
        }
        file.write_all(&chunk).await.map_err(internal)?;
    }
    file.flush().await.map_err(internal)?;
    let blobs = s.blobs.clone();
    let max = s.max_upload;
    let (hash, size) = tokio::task::spawn_blocking(move || {
        let reader = staging.reopen()?;
        blobs
            .put_reader(reader, max, None)
            .map_err(std::io::Error::other)
    })
    .await
    .map_err(internal)?
    .map_err(internal)?;
    let meta = MediaMeta {
        name: q.name,
        content_type: q.content_type,
        size,
    };
    s.docs
        .edit(s.venue, |am| add_media(am, hash, &meta))
        .map_err(edit_error)?;
    s.metrics.local_edits.inc();
    Ok((
        StatusCode::CREATED,
        Json(json!({ "hash": hash.to_string(), "size": size })),
    ))
}

/// `GET /api/v1/media/{hash}` (staff): any blob this hub holds, streamed like the kiosk
/// media endpoint (`Range`, `ETag`, `304`), typed from the venue document when it is one
/// of the venue's media.
async fn media(
    State(s): State<Arc<HubState>>,
    Path(hash): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let hash: MediaHash = hash
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("media hash in the path: {e}")))?;
    let content_type = s
        .view
        .doc(&s.docs)
        .ok()
        .and_then(|doc| doc.media.get(&hash).map(|m| m.content_type.clone()))
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    crate::kiosk_api::blob_response(&s, hash, &content_type, &headers, None).await
}

async fn events(
    State(s): State<Arc<HubState>>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let events: Vec<TelemetryEvent> = parse_json(&limited(body)?)?;
    if events.len() > MAX_TELEMETRY_BATCH {
        return Err(ApiError::TooLarge(format!(
            "{} events in one request; at most {MAX_TELEMETRY_BATCH}",
            events.len()
        )));
    }
    let store = s.store.clone();
    let added = tokio::task::spawn_blocking(move || store.push(&events))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    s.outbox_ready.notify_one();
    Ok(Json(json!({ "accepted": added })))
}
