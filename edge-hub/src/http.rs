//! The hub's local HTTP API: health, metrics, the venue document, operations, media upload
//! and download, plus the kiosks' LAN API ([`crate::kiosk_api`]). It works whether or not
//! central is reachable.
//!
//! Every route declares who may use it where it is registered ([`routes`], through
//! [`Routes`]), and [`HubGate`] enforces that: kiosk routes need a device token, staff
//! routes a staff token (`taplink-hub token create`) or the session of a person signed in
//! with their central account against the venue's roster (`crate::people`; writes with the
//! session's CSRF token, and each handler `Staff::authorize`s its action for a person),
//! secret routes (signing in, a kiosk asking to pair, polling its pairing) are open but
//! every wrong secret counts against the client in the guessing throttle. Writes must be JSON (uploads their media type), and `Host` must be
//! one of the hub's names (DNS rebinding).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use serde::Deserialize;
use serde_json::json;
use taplink_sync_io::blobs::BlobStore;
use taplink_sync_io::docs::{Documents, EditError};
use taplink_sync_io::web::access::{Access, Gate, Routes};
use taplink_sync_io::web::guard::{self, HostPolicy};
use taplink_sync_io::web::media as media_type;
use taplink_sync_proto::doc::{DocOpError, MediaMeta, VenueCommand, VenueDoc, add_media};
use taplink_sync_proto::ids::MediaHash;
use taplink_sync_proto::wire::DocId;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use crate::error::ApiError;
use crate::error::{MAX_JSON_BODY, body as limited, internal, parse_json};
use crate::kiosk_api;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::uplink::UplinkStatus;
use taplink_sync_proto::clock::Clock;
use taplink_sync_proto::note::{Author, ChangeNote, Via};

/// What the handlers share.
#[derive(Debug)]
pub struct HubState {
    /// This hub's venue document id.
    pub venue: DocId,
    /// Documents.
    pub docs: Arc<Documents>,
    /// Media.
    pub blobs: Arc<BlobStore>,
    /// The hub's database: telemetry outbox, pairings, device and staff tokens.
    pub store: Arc<Store>,
    /// Woken when telemetry is queued.
    pub outbox_ready: Arc<Notify>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The uplink's state.
    pub uplink: watch::Receiver<UplinkStatus>,
    /// Largest media upload.
    pub max_upload: u64,
    /// Most bytes of media the hub stores; an upload beyond it is refused with `507`.
    pub media_quota: u64,
    /// Where uploads are staged while they arrive.
    pub upload_dir: std::path::PathBuf,
    /// The wall clock manifests and pairing expiry are computed with.
    pub clock: Arc<dyn Clock>,
    /// Cancelled when the hub shuts down: long-polls answer at once.
    pub shutdown: CancellationToken,
    /// The venue document and kiosks' manifests as the kiosk API reads them (cached).
    pub view: crate::view::VenueView,
    /// The names the API answers to besides IP literals and `localhost`.
    pub hosts: Arc<HostPolicy>,
    /// Manifest long-polls waiting, per kiosk (capped per device token).
    pub long_polls: crate::kiosk_api::LongPolls,
    /// This hub's venue.
    pub venue_id: taplink_sync_proto::ids::VenueId,
    /// `roster_valid_offline_s`: how long after the last contact with central the roster
    /// still signs people in (`None`: while offline).
    pub roster_valid_offline: Option<chrono::TimeDelta>,
    /// Whether the API is served over plain HTTP (a lab): session cookies then lack
    /// `Secure`, which a browser would not send back over HTTP.
    pub plain_http: bool,
}

/// Every route of the hub with who may use it: the one place access is declared.
pub fn routes(state: &Arc<HubState>) -> Routes<Arc<HubState>> {
    let gate = HubGate(state.clone());
    let g = &gate;
    let json_routes = Routes::new()
        .route(g, "/healthz", &["GET"], Access::Public, get(healthz))
        .route(g, "/metrics", &["GET"], Access::Public, get(metrics))
        .route(g, "/api/v1/status", &["GET"], Access::Staff, get(status))
        .route(
            g,
            "/api/v1/auth/login",
            &["POST"],
            Access::Secret,
            post(crate::people::login),
        )
        .route(
            g,
            "/api/v1/auth/logout",
            &["POST"],
            Access::Staff,
            post(crate::people::logout),
        )
        .route(
            g,
            "/api/v1/auth/me",
            &["GET"],
            Access::Staff,
            get(crate::people::me),
        )
        .route(g, "/api/v1/venue", &["GET"], Access::Staff, get(venue))
        .route(
            g,
            "/api/v1/venue/ops",
            &["POST"],
            Access::Staff,
            post(apply_op),
        )
        .route(
            g,
            "/api/v1/media/{hash}",
            &["GET"],
            Access::Staff,
            get(media),
        )
        .route(
            g,
            "/api/v1/pairings",
            &["POST"],
            Access::Secret,
            post(kiosk_api::create_pairing),
        )
        .route(
            g,
            "/api/v1/pairings/approve",
            &["POST"],
            Access::Staff,
            post(kiosk_api::approve),
        )
        .route(
            g,
            "/api/v1/pairings/{id}",
            &["GET"],
            Access::Secret,
            get(kiosk_api::poll_pairing),
        )
        .route(
            g,
            "/api/v1/kiosks/{kiosk}/token",
            &["DELETE"],
            Access::Staff,
            delete(kiosk_api::revoke),
        )
        .route(
            g,
            "/api/v1/kiosk/manifest",
            &["GET"],
            Access::Kiosk,
            get(kiosk_api::get_manifest),
        )
        .route(
            g,
            "/api/v1/kiosk/media/{hash}",
            &["GET"],
            Access::Kiosk,
            get(kiosk_api::media),
        )
        .route(
            g,
            "/api/v1/kiosk/events",
            &["POST"],
            Access::Kiosk,
            post(kiosk_api::events),
        )
        .map_router(|r| r.layer(DefaultBodyLimit::max(MAX_JSON_BODY)));
    let max_upload = usize::try_from(state.max_upload).unwrap_or(usize::MAX);
    let upload_routes = Routes::new()
        .route(g, "/api/v1/media", &["PUT"], Access::Staff, put(upload))
        .map_router(|r| r.layer(DefaultBodyLimit::max(max_upload)));
    json_routes.merge(upload_routes)
}

/// The router.
pub fn app(state: Arc<HubState>) -> Router {
    let (router, _) = routes(&state).into_parts();
    router
        .fallback(no_route)
        .layer(from_fn_with_state(
            Arc::new(guard::RequestRules {
                hosts: state.hosts.as_ref().clone(),
                // Uploads declare their media type; the handler checks it.
                not_json: &[("PUT", "/api/v1/media")],
            }),
            guard::request_rules,
        ))
        .with_state(state)
}

async fn no_route() -> ApiError {
    ApiError::NotFound("no such endpoint on this hub; see docs/kiosk-api.md".into())
}

/// How the hub enforces each [`Access`].
#[derive(Debug, Clone)]
pub struct HubGate(pub Arc<HubState>);

impl Gate<Arc<HubState>> for HubGate {
    fn guard(
        &self,
        access: Access,
        route: MethodRouter<Arc<HubState>>,
    ) -> MethodRouter<Arc<HubState>> {
        let s = self.0.clone();
        // The layer added last runs first: the throttle before the credential check.
        let throttled = |route: MethodRouter<Arc<HubState>>| {
            route.route_layer(from_fn_with_state(s.clone(), throttle_gate))
        };
        match access {
            Access::Public => route,
            Access::Secret => throttled(route),
            Access::Kiosk => {
                throttled(route.route_layer(from_fn_with_state(s.clone(), kiosk_gate)))
            }
            Access::Staff => {
                throttled(route.route_layer(from_fn_with_state(s.clone(), staff_gate)))
            }
            // No admin and no loopback-only page on a hub: such a route refuses everyone.
            _ => route.route_layer(from_fn(|_req: Request, _next: Next| async {
                ApiError::Unauthorized("this endpoint is not served by a hub".into())
                    .into_response()
            })),
        }
    }
}

/// Every route with a secret (secret, kiosk and staff routes): a client that guessed wrong
/// too often waits before any secret of it is checked, even a right one.
async fn throttle_gate(State(s): State<Arc<HubState>>, req: Request, next: Next) -> Response {
    let ip = guard::client_ip(&req);
    if let Err(wait) = s.metrics.throttle.check(ip) {
        return guard::throttled_response(wait);
    }
    next.run(req).await
}

/// Kiosk routes: an active device token of a kiosk in the venue document; the handler
/// gets it as [`kiosk_api::KioskAuth`].
async fn kiosk_gate(State(s): State<Arc<HubState>>, mut req: Request, next: Next) -> Response {
    let ip = guard::client_ip(&req);
    match kiosk_api::authenticate(&s, req.headers()).await {
        Ok(auth) => {
            req.extensions_mut().insert(auth);
            next.run(req).await
        }
        Err(e) => {
            if matches!(e, ApiError::Unauthorized(_)) {
                s.metrics.throttle.fail(ip, "device_token");
            }
            e.into_response()
        }
    }
}

/// Who made a staff request: a staff token of this hub (by name), or a person signed in
/// with their central account against the roster (`people.rs`).
#[derive(Debug, Clone)]
pub struct Staff {
    /// The staff token's name, or the person's username.
    pub name: String,
    /// The signed-in person; `None` for a staff token, which may take every staff action
    /// (made on the device by whoever administers it).
    pub person: Option<crate::people::Person>,
}

impl Staff {
    /// The change note of an edit this staff member makes (carried to central, whose
    /// audit log attributes it).
    pub fn note(&self, s: &HubState, ops: serde_json::Value) -> ChangeNote {
        let author = match &self.person {
            Some(p) => Author::User {
                id: p.id.to_string(),
            },
            None => Author::HubStaff {
                name: self.name.clone(),
            },
        };
        ChangeNote::new(author, Via::Api, s.clock.now().timestamp_millis(), ops)
    }
}

impl Staff {
    /// Whether this staff member may take `action` here: a staff token may take every
    /// staff action; a person what their role allows (`authorize`).
    pub fn authorize(
        &self,
        s: &HubState,
        action: taplink_sync_proto::authz::Action,
    ) -> Result<(), ApiError> {
        match &self.person {
            Some(p) => p.authorize(s.venue_id, action),
            None => Ok(()),
        }
    }
}

impl FromRequestParts<Arc<HubState>> for Staff {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &Arc<HubState>) -> Result<Self, ApiError> {
        parts.extensions.get::<Staff>().cloned().ok_or_else(|| {
            ApiError::internal(
                "a staff handler on a route not declared Access::Staff",
                "no staff credentials in the request",
            )
        })
    }
}

/// Staff routes: an active staff token of this hub.
async fn staff_gate(State(s): State<Arc<HubState>>, mut req: Request, next: Next) -> Response {
    let ip = guard::client_ip(&req);
    // A person signed in with their central account: a session cookie, no bearer token.
    if !req.headers().contains_key(header::AUTHORIZATION)
        && crate::people::cookie(req.headers(), crate::people::SESSION_COOKIE).is_some()
    {
        let writes = !matches!(
            *req.method(),
            axum::http::Method::GET | axum::http::Method::HEAD
        );
        return match crate::people::session_staff(&s, req.headers(), writes).await {
            Ok(staff) => {
                req.extensions_mut().insert(staff);
                next.run(req).await
            }
            Err(e) => e.into_response(),
        };
    }
    let token = match bearer(req.headers(), "staff token") {
        Ok(token) => token.to_owned(),
        Err(e) => return e.into_response(),
    };
    let (store, now) = (s.store.clone(), s.clock.now());
    let found = tokio::task::spawn_blocking(move || store.staff_token(&token, now)).await;
    match found {
        Ok(Ok(Some(name))) => {
            s.metrics.throttle.succeed(ip);
            req.extensions_mut().insert(Staff { name, person: None });
            next.run(req).await
        }
        Ok(Ok(None)) => {
            s.metrics.throttle.fail(ip, "staff_token");
            ApiError::Unauthorized(
                "unknown or revoked staff token; make one on the hub with `taplink-hub token create --name NAME`".into(),
            )
            .into_response()
        }
        Ok(Err(e)) => ApiError::internal("checking a staff token", e).into_response(),
        Err(e) => ApiError::internal("the staff token check task failed", e).into_response(),
    }
}

/// The token of an `Authorization: Bearer <token>` header; `what` names the credential in
/// the refusal.
pub(crate) fn bearer<'h>(headers: &'h HeaderMap, what: &str) -> Result<&'h str, ApiError> {
    if !headers.contains_key(header::AUTHORIZATION) {
        return Err(ApiError::Unauthorized(format!(
            "this endpoint needs an `Authorization: Bearer <{what}>` header"
        )));
    }
    taplink_sync_io::web::guard::bearer_token(headers).ok_or_else(|| {
        ApiError::Unauthorized(format!(
            "the Authorization header must be `Bearer <{what}>`"
        ))
    })
}

/// `GET /healthz` (public): whether the hub runs and is in touch with central; nothing
/// that identifies the venue or explains an error (that is `/api/v1/status`, for staff).
async fn healthz(State(s): State<Arc<HubState>>) -> Json<serde_json::Value> {
    let uplink = s.uplink.borrow().clone();
    Json(json!({
        "status": "ok",
        "central": if uplink.connected { "connected" } else { "disconnected" },
        "synced": uplink.synced,
        "heads": heads_json(&uplink),
    }))
}

/// `GET /api/v1/status` (staff): `/healthz` plus the venue and the uplink's last error.
async fn status(State(s): State<Arc<HubState>>) -> Result<Json<serde_json::Value>, ApiError> {
    let uplink = s.uplink.borrow().clone();
    let (docs, store, venue) = (s.docs.clone(), s.store.clone(), s.venue);
    let (unacknowledged, roster) =
        tokio::task::spawn_blocking(move || (unacknowledged(&docs, venue), store.held_roster()))
            .await
            .map_err(|e| ApiError::internal("the status task failed", e))?;
    let roster = roster.map_err(|e| ApiError::internal("reading the roster", e))?;
    let now = s.clock.now();
    Ok(Json(json!({
        "status": "ok",
        "venue": s.venue.to_string(),
        "central": if uplink.connected { "connected" } else { "disconnected" },
        "since": uplink.since.map(|t| t.to_rfc3339()),
        "synced": uplink.synced,
        "heads": heads_json(&uplink),
        "last_error": uplink.last_error,
        "unacknowledged": unacknowledged,
        "roster": roster.map(|h| json!({
            "version": h.roster.version,
            "users": h.roster.users.len(),
            "issued_at": chrono::DateTime::from_timestamp_millis(h.roster.issued_at_ms).map(|t| t.to_rfc3339()),
            "received_at": h.received_at.to_rfc3339(),
            "age_s": (now - h.received_at).num_seconds(),
        })),
    })))
}

/// Most unacknowledged changes listed in the status (the count is always whole).
const UNACKNOWLEDGED_LISTED: usize = 50;

/// This hub's own changes of the venue document that central has not acknowledged: those
/// not in the heads both sides last shared (the persisted sync state with central, so
/// the answer survives a restart while offline), newest first, each with who made it, when
/// (the hub's clock) and what. `count` is `null` before the first sync with central.
fn unacknowledged(docs: &Documents, venue: DocId) -> serde_json::Value {
    let shared = docs
        .db()
        .peer_states("central")
        .ok()
        .and_then(|states| states.get(&venue).cloned())
        .and_then(|bytes| automerge::sync::State::decode(&bytes).ok())
        .map(|state| state.shared_heads);
    let Some(shared) = shared else {
        return json!({ "count": null, "changes": [] });
    };
    let changes = docs
        .read(venue, |am| {
            let me = am.get_actor().clone();
            am.get_changes(&shared)
                .into_iter()
                .filter(|c| c.actor_id() == &me)
                .map(|c| {
                    let note = c
                        .message()
                        .and_then(taplink_sync_proto::note::ChangeNote::from_message);
                    json!({
                        "at": note.as_ref().and_then(|n| chrono::DateTime::from_timestamp_millis(n.at_ms)).map(|t| t.to_rfc3339()),
                        "by": note.as_ref().map(|n| &n.by),
                        "ops": note.as_ref().map(|n| &n.ops),
                    })
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let count = changes.len();
    let listed: Vec<_> = changes
        .into_iter()
        .rev()
        .take(UNACKNOWLEDGED_LISTED)
        .collect();
    json!({ "count": count, "changes": listed })
}

/// The heads both sides acknowledged at the last quiescent point, as central's hub record
/// shows them: document id to hex change hashes.
fn heads_json(uplink: &UplinkStatus) -> serde_json::Value {
    uplink
        .heads
        .iter()
        .map(|(doc, heads)| {
            let hex: Vec<String> = heads
                .iter()
                .map(|h| data_encoding::HEXLOWER.encode(h))
                .collect();
            (doc.to_string(), json!(hex))
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
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
    taplink_sync_io::web::metrics_response(s.metrics.registry())
}

async fn venue(State(s): State<Arc<HubState>>) -> Result<Json<serde_json::Value>, ApiError> {
    let doc = venue_doc(&s)?;
    Ok(Json(
        serde_json::to_value(&*doc).map_err(internal("encoding the venue document"))?,
    ))
}

/// The venue document as it is now, or `NotSynced` before central's copy has arrived.
pub(crate) fn venue_doc(s: &HubState) -> Result<Arc<VenueDoc>, ApiError> {
    s.view.doc(&s.docs).map_err(view_error)
}

/// The API's answer to a failed read of the view.
pub(crate) fn view_error(e: crate::view::ViewError) -> ApiError {
    match e {
        crate::view::ViewError::NotSynced => ApiError::NotSynced,
        other => ApiError::internal("reading the venue document", other),
    }
}

async fn apply_op(
    State(s): State<Arc<HubState>>,
    staff: Staff,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let command: VenueCommand = parse_json(&limited(body)?)?;
    staff.authorize(&s, command.action())?;
    ensure_synced(&s)?;
    let note = staff.note(&s, serde_json::to_value(&command).unwrap_or_default());
    s.docs
        .edit_noted(s.venue, &note, |am| command.apply(am))
        .map_err(edit_error)?;
    s.metrics.local_edits.inc();
    info!(staff = %staff.name, "venue operation applied");
    Ok(Json(json!({ "status": "applied" })))
}

fn ensure_synced(s: &HubState) -> Result<(), ApiError> {
    venue_doc(s).map(drop)
}

pub(crate) fn edit_error(e: EditError<DocOpError>) -> ApiError {
    match e {
        EditError::Refused(e) => ApiError::Refused(e),
        other => ApiError::internal("editing the venue document", other),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    name: String,
    /// Optional: when given it must equal the request's `Content-Type`.
    #[serde(default)]
    content_type: Option<String>,
}

/// `PUT /api/v1/media?name=NAME` with the file as the body and its media type as
/// `Content-Type`: received by [`media_type::receive_upload`] (streamed to a staging file,
/// never whole in memory, within the upload limit and the hub's media quota, its type
/// checked by content), stored by hash, and added to the venue's media.
async fn upload(
    State(s): State<Arc<HubState>>,
    staff: Staff,
    query: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    staff.authorize(&s, taplink_sync_proto::authz::Action::MediaWrite)?;
    let Query(q) = query.map_err(|e| ApiError::BadRequest(format!("query: {}", e.body_text())))?;
    let header = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let declared = media_type::upload_type(header, q.content_type.as_deref())
        .map_err(|e| upload_error(e, 0, 0))?;
    ensure_synced(&s)?;
    let blobs = s.blobs.clone();
    let used = tokio::task::spawn_blocking(move || blobs.total_size())
        .await
        .map_err(internal("measuring the media store"))?
        .map_err(internal("measuring the media store"))?;
    let quota = s.media_quota;
    let limits = media_type::UploadLimits {
        max_bytes: s.max_upload,
        quota_left: quota.saturating_sub(used),
    };
    let staged = media_type::receive_upload(body, declared, &limits, &s.upload_dir)
        .await
        .map_err(|e| upload_error(e, used, quota))?;
    let blobs = s.blobs.clone();
    let (hash, size) = tokio::task::spawn_blocking(move || staged.store(&blobs))
        .await
        .map_err(internal("storing the upload in the media store"))?
        .map_err(internal("storing the upload in the media store"))?;
    let meta = MediaMeta {
        name: q.name,
        content_type: declared.to_owned(),
        size,
    };
    let note = staff.note(
        &s,
        json!({ "op": "add_media", "hash": hash.to_string(), "meta": &meta }),
    );
    s.docs
        .edit_noted(s.venue, &note, |am| add_media(am, hash, &meta))
        .map_err(edit_error)?;
    s.metrics.local_edits.inc();
    info!(staff = %staff.name, %hash, size, content_type = declared, "media uploaded");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "hash": hash.to_string(), "size": size, "content_type": declared })),
    ))
}

/// The hub's answer to a refused upload; `used` of `quota` bytes of media were stored.
fn upload_error(e: media_type::UploadError, used: u64, quota: u64) -> ApiError {
    use media_type::UploadError as E;
    match e {
        e @ (E::NoType | E::Type(_)) => ApiError::UnsupportedMediaType(e.to_string()),
        e @ E::TypeDiffers { .. } => ApiError::BadRequest(e.to_string()),
        e @ (E::TooLarge { .. } | E::SvgTooLarge { .. }) => ApiError::TooLarge(e.to_string()),
        E::OverQuota { received, .. } => ApiError::InsufficientStorage(format!(
            "the hub's media storage is full: {used} of {quota} bytes used, and this upload needs {received} more; delete unused media or raise media_quota_bytes"
        )),
        E::Interrupted(e) => ApiError::BadRequest(format!("the upload was cut short: {e}")),
        e => ApiError::internal("receiving an upload", e),
    }
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
