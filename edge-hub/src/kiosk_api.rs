//! The kiosks' LAN API, as `docs/kiosk-api.md` specifies it: pairing (kiosk asks, staff
//! approve, or a kiosk code from central pre-approves; kiosk collects its device token
//! once), token revocation, the manifest with ETag and long-poll, media with byte ranges,
//! and status events into the outbox.
//!
//! Kiosk endpoints (`/api/v1/kiosk/…`) authenticate with [`KioskAuth`]: a device token
//! that this hub issued, not revoked, for a kiosk that is still in the venue document. The
//! kiosk's identity comes only from its token, so no request can read or report for another
//! kiosk.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer};
use serde_json::json;
use taplink_sync_io::docs::EditError;
use taplink_sync_proto::doc::{
    DocOpError, Redemption, add_kiosk, find_kiosk_grant, redeem_kiosk_grant,
};
use taplink_sync_proto::ids::{KioskId, MediaHash};
use taplink_sync_proto::kiosk_code::KioskCode;
use taplink_sync_proto::manifest::{Manifest, ManifestError};
use taplink_sync_proto::wire::{MAX_TELEMETRY_BATCH, TelemetryEvent, TelemetryKind};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, sleep_until};
use tracing::info;

use crate::error::{ApiError, body as limited, internal, parse_json};
use crate::http::{HubState, Staff, bearer, edit_error, venue_doc, view_error};
use crate::metrics::Metrics;
use crate::store::{DeviceError, NewPairing, PairingCode, PairingId, PairingStatus, TokenState};
use crate::view::{Snapshot, ViewError};
use prometheus_client::metrics::counter::Counter;
use taplink_sync_io::web::guard::ClientIp;
use taplink_sync_io::web::serve::{self, etag, etag_matches};

/// The longest manifest long-poll, in seconds; longer `wait`s are shortened to this.
pub const MAX_WAIT_SECS: u64 = 60;

/// Long-polls waiting at once; beyond this a long-poll answers `304` at once and the kiosk
/// simply asks again, so a flood of requests cannot pin unbounded tasks.
pub const MAX_LONG_POLLS: i64 = 1024;

/// Long-polls one kiosk (one device token) may have waiting at once: a kiosk needs one
/// (two for a moment while it reconnects); a stolen token cannot take the hub's whole
/// budget.
pub const MAX_LONG_POLLS_PER_KIOSK: usize = 4;

/// Shortest wait for a schedule change: guards against spinning if the clock and `next.at`
/// disagree (the clock is injectable, and a wall clock can be stepped).
const MIN_RECHECK: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------

/// A request made with an active device token of a kiosk that is in the venue document,
/// and that document as it was when the request arrived.
#[derive(Debug, Clone)]
pub struct KioskAuth {
    /// The kiosk the token belongs to.
    pub kiosk: KioskId,
    /// The venue document when the request arrived.
    pub venue: Snapshot,
}

fn removed() -> ApiError {
    ApiError::Unauthorized(
        "this kiosk was removed from the venue; pair it again to show content".into(),
    )
}

/// The kiosk a request's device token belongs to, checked by the hub's gate for every
/// route declared [`taplink_sync_io::web::access::Access::Kiosk`].
pub(crate) async fn authenticate(
    s: &Arc<HubState>,
    headers: &HeaderMap,
) -> Result<KioskAuth, ApiError> {
    let token = bearer(headers, "device token")?;
    // A token seen before is answered from memory; otherwise SQLite, off the async
    // workers (the store's connection may be busy with an fsync).
    let state = match s.store.cached_token(token) {
        Some(kiosk) => TokenState::Active(kiosk),
        None => {
            let (store, token) = (s.store.clone(), token.to_owned());
            blocking(
                move || store.token(&token),
                internal("looking up a device token"),
            )
            .await?
        }
    };
    let kiosk = match state {
        TokenState::Active(kiosk) => kiosk,
        TokenState::Revoked(_) => {
            return Err(ApiError::Unauthorized(
                "this kiosk's device token was revoked; pair the kiosk again".into(),
            ));
        }
        TokenState::Unknown => {
            return Err(ApiError::Unauthorized(
                "unknown device token: this hub did not issue it; pair the kiosk with this hub"
                    .into(),
            ));
        }
    };
    let venue = s.view.snapshot(&s.docs).map_err(view_error)?;
    if !venue.doc.kiosks.contains_key(&kiosk) {
        return Err(removed());
    }
    Ok(KioskAuth { kiosk, venue })
}

impl FromRequestParts<Arc<HubState>> for KioskAuth {
    type Rejection = ApiError;

    /// Put in place by the gate; absent only on a route not declared for kiosks.
    async fn from_request_parts(
        parts: &mut Parts,
        _: &Arc<HubState>,
    ) -> Result<Self, Self::Rejection> {
        parts.extensions.remove::<KioskAuth>().ok_or_else(|| {
            ApiError::internal(
                "a kiosk handler on a route not declared Access::Kiosk",
                "no kiosk credentials in the request",
            )
        })
    }
}

// ---------------------------------------------------------------------------------------
// Pairing
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreatePairing {
    device: String,
    /// A kiosk code from central: the pairing is pre-approved by its grant.
    #[serde(default)]
    provisioning_code: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Approve {
    code: String,
    name: String,
}

fn device_error(e: DeviceError) -> ApiError {
    match e {
        DeviceError::UnknownCode(_) | DeviceError::UnknownPairing(_) => {
            ApiError::NotFound(e.to_string())
        }
        DeviceError::Expired | DeviceError::AlreadyCollected | DeviceError::CodeUsed => {
            ApiError::Gone(e.to_string())
        }
        DeviceError::PreApproved => ApiError::Conflict(e.to_string()),
        DeviceError::InvalidDevice => ApiError::BadRequest(e.to_string()),
        other => ApiError::internal("pairing: the device store failed", other),
    }
}

async fn blocking<T: Send + 'static, E>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
    map: impl FnOnce(E) -> ApiError,
) -> Result<T, ApiError>
where
    E: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(internal("a blocking task failed"))?
        .map_err(map)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `POST /api/v1/pairings`: a kiosk asks to be paired and gets a code to show, or, with a
/// kiosk code from central, a pairing that is approved already.
pub(crate) async fn create_pairing(
    State(s): State<Arc<HubState>>,
    ClientIp(ip): ClientIp,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let req: CreatePairing = parse_json(&limited(body)?)?;
    if let Some(code) = req.provisioning_code {
        let result = preapproved(&s, req.device, &code).await;
        if matches!(result, Err(ApiError::NotFound(_) | ApiError::BadRequest(_))) {
            s.metrics.throttle.fail(ip, "kiosk_code");
        } else if result.is_ok() {
            s.metrics.throttle.succeed(ip);
        }
        return result;
    }
    let (store, now, client) = (s.store.clone(), s.clock.now(), ip.to_string());
    let p = blocking(
        move || store.create_pairing(&req.device, &client, now),
        device_error,
    )
    .await?;
    info!(code = %p.code, "kiosk pairing requested");
    Ok(created(&p, false))
}

fn created(p: &NewPairing, preapproved: bool) -> (StatusCode, Json<serde_json::Value>) {
    (
        StatusCode::CREATED,
        Json(json!({
            "pairing": p.id.to_string(),
            "code": p.code.to_string(),
            "expires_at": rfc3339(p.expires_at),
            "preapproved": preapproved,
        })),
    )
}

/// A pairing request with a kiosk code: look the code's hash up among the venue
/// document's grants, then approve at once, in the crash-safe order of
/// [`crate::store::devices`] — reserve the kiosk id (hub database), then redeem the grant
/// (the kiosk joins the venue document and the grant is marked used by it, in one
/// change). The token is created when the kiosk collects it, as for staff approval.
///
/// Works with the WAN down: the grant came with the venue document. A retry (lost answer,
/// crash, kiosk restart) before the token is collected gets the same pairing back.
async fn preapproved(
    s: &Arc<HubState>,
    device: String,
    text: &str,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let code: KioskCode = text
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("provisioning_code: {e}")))?;
    let result = redeem(s, device, &code).await;
    if matches!(result, Err(ApiError::NotFound(_) | ApiError::Gone(_))) {
        s.metrics.kiosk_codes_refused.inc();
    }
    result
}

async fn redeem(
    s: &Arc<HubState>,
    device: String,
    code: &KioskCode,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let unknown = || {
        ApiError::NotFound(
            "unknown kiosk code: it is mistyped, was revoked at central, or has not reached this hub yet (the hub learns new codes when it syncs with central)".into(),
        )
    };
    let expired = |at_ms: i64| {
        let at = DateTime::from_timestamp_millis(at_ms).map_or_else(|| at_ms.to_string(), rfc3339);
        ApiError::Gone(format!(
            "this kiosk code expired at {at}; ask central for a new one, or pair the kiosk with staff approval"
        ))
    };
    let venue = venue_doc(s)?;
    let now = s.clock.now();
    let now_ms = now.timestamp_millis();
    let (grant, found) = find_kiosk_grant(&venue, &code.hash()).ok_or_else(unknown)?;
    if found.consumed_by.is_none() && now_ms >= found.expires_at_ms {
        return Err(expired(found.expires_at_ms));
    }
    let consumed_by = found.consumed_by;
    let store = s.store.clone();
    let pairing = PairingId::of_kiosk_code(code);
    let granted = blocking(
        move || store.reserve_granted(grant, pairing, consumed_by, &device, now),
        device_error,
    )
    .await?;
    let (docs, venue_id, kiosk) = (s.docs.clone(), s.venue, granted.kiosk);
    let note = kiosk_note(kiosk, now_ms, "redeem_kiosk_code");
    let redeemed = tokio::task::spawn_blocking(move || {
        docs.edit_noted(venue_id, &note, |am| {
            redeem_kiosk_grant(am, grant, kiosk, now_ms)
        })
    })
    .await
    .map_err(internal("redeeming a kiosk code in the venue document"))?;
    match redeemed {
        Ok(Redemption::Redeemed) => {
            s.metrics.local_edits.inc();
            s.metrics.kiosk_codes_redeemed.inc();
        }
        // A retry: step 2 happened before.
        Ok(Redemption::AlreadyRedeemed) => {}
        Err(EditError::Refused(DocOpError::GrantUsed { .. })) => {
            return Err(device_error(DeviceError::CodeUsed));
        }
        Err(EditError::Refused(DocOpError::GrantExpired { expires_at_ms, .. })) => {
            return Err(expired(expires_at_ms));
        }
        // Revoked at central, synced here since we read the document.
        Err(EditError::Refused(DocOpError::GrantNotFound(_))) => return Err(unknown()),
        Err(e) => return Err(edit_error(e)),
    }
    info!(%grant, %kiosk, retry = !granted.fresh, "kiosk pairing pre-approved by a kiosk code from central");
    Ok(created(&granted.pairing, true))
}

/// `POST /api/v1/pairings/approve`: staff approve a code; the kiosk joins the venue
/// document. The order of the steps is explained in [`crate::store::devices`].
pub(crate) async fn approve(
    State(s): State<Arc<HubState>>,
    ClientIp(ip): ClientIp,
    staff: Staff,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    staff.authorize(&s, taplink_sync_proto::authz::Action::PairingManage)?;
    let req: Approve = parse_json(&limited(body)?)?;
    let code: PairingCode = req.code.parse().map_err(device_error)?;
    // Refuse before reserving anything while there is no document to add the kiosk to.
    venue_doc(&s)?;
    let (store, now) = (s.store.clone(), s.clock.now());
    let approval = blocking(move || store.reserve_kiosk(&code, now), device_error)
        .await
        .inspect_err(|e| {
            if matches!(e, ApiError::NotFound(_)) {
                s.metrics.throttle.fail(ip, "pairing_code");
            }
        })?;
    let (docs, venue, kiosk) = (s.docs.clone(), s.venue, approval.kiosk);
    let note = kiosk_note(kiosk, s.clock.now().timestamp_millis(), "pair_kiosk");
    let added = tokio::task::spawn_blocking(move || {
        docs.edit_noted(venue, &note, |am| add_kiosk(am, kiosk, &req.name))
    })
    .await
    .map_err(internal("adding the kiosk to the venue document"))?;
    match added {
        Ok(()) => {
            s.metrics.local_edits.inc();
        }
        // A retried approval: step 2 happened before.
        Err(EditError::Refused(DocOpError::KioskExists(_))) => {}
        Err(EditError::Refused(e @ DocOpError::InvalidName { .. })) => {
            return Err(ApiError::BadRequest(format!("name: {e}")));
        }
        Err(e) => return Err(edit_error(e)),
    }
    info!(code = %code, kiosk = %approval.kiosk, staff = %staff.name, retry = !approval.fresh, "kiosk pairing approved");
    Ok(Json(json!({ "kiosk": approval.kiosk.to_string() })))
}

/// `GET /api/v1/pairings/{id}`: the kiosk polls; once approved it gets its token, once.
pub(crate) async fn poll_pairing(
    State(s): State<Arc<HubState>>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let no_store = || [(header::CACHE_CONTROL, "no-store")];
    let pending = || (no_store(), Json(json!({ "status": "pending" }))).into_response();
    let unknown = |e: ApiError| {
        if matches!(e, ApiError::NotFound(_)) {
            s.metrics.throttle.fail(ip, "pairing_id");
        }
        e
    };
    let id: PairingId = id.parse().map_err(device_error).map_err(unknown)?;
    let now = s.clock.now();
    let store = s.store.clone();
    let status = blocking(move || store.pairing(&id, now), device_error)
        .await
        .map_err(unknown)?;
    match status {
        PairingStatus::Pending => Ok(pending()),
        PairingStatus::Expired => Err(ApiError::NotFound(
            "this pairing has expired; start a new one".into(),
        )),
        PairingStatus::Collected => Err(ApiError::Gone(
            "this pairing's token was already collected; it is never shown twice".into(),
        )),
        PairingStatus::Approved { kiosk } => {
            // Step 3 happens only once step 2 (the kiosk in the venue document) has: until
            // then, e.g. after a crash between the steps, the pairing still reads pending.
            if !venue_doc(&s)?.kiosks.contains_key(&kiosk) {
                return Ok(pending());
            }
            let store = s.store.clone();
            let collected = blocking(move || store.collect_token(&id, now), device_error).await?;
            info!(kiosk = %collected.kiosk, "kiosk collected its device token");
            Ok((
                no_store(),
                Json(json!({
                    "status": "approved",
                    "kiosk": collected.kiosk.to_string(),
                    "venue": match s.venue { taplink_sync_proto::wire::DocId::Venue(v) => v.to_string(), taplink_sync_proto::wire::DocId::Org => String::new() },
                    "token": collected.token,
                })),
            )
                .into_response())
        }
    }
}

/// `DELETE /api/v1/kiosks/{kiosk}/token`: the kiosk's tokens stop working.
pub(crate) async fn revoke(
    State(s): State<Arc<HubState>>,
    staff: Staff,
    Path(kiosk): Path<String>,
) -> Result<StatusCode, ApiError> {
    staff.authorize(&s, taplink_sync_proto::authz::Action::PairingManage)?;
    let kiosk: KioskId = kiosk
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("kiosk id: {e}")))?;
    let (store, now) = (s.store.clone(), s.clock.now());
    match blocking(
        move || store.revoke_tokens(kiosk, now),
        internal("revoking a kiosk's tokens"),
    )
    .await?
    {
        None => Err(ApiError::NotFound(format!(
            "this hub never issued a token to kiosk {kiosk}"
        ))),
        Some(revoked) => {
            info!(%kiosk, revoked, staff = %staff.name, "kiosk device token revoked");
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Manifest
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
pub(crate) struct ManifestQuery {
    wait: Option<u64>,
}

fn build(s: &HubState, venue: &Snapshot, kiosk: KioskId) -> Result<Arc<Manifest>, ApiError> {
    s.view
        .manifest(venue, kiosk, s.clock.now())
        .map_err(|e| match e {
            ViewError::Manifest(ManifestError::UnknownKiosk(_)) => removed(),
            other => view_error(other),
        })
}

fn manifest_sent(s: &HubState, m: Arc<Manifest>) -> Response {
    s.metrics.manifests_sent.inc();
    (
        [
            (header::ETAG, etag(&m.version)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        Json(&*m),
    )
        .into_response()
}

fn manifest_unchanged(s: &HubState, version: &str) -> Response {
    s.metrics.manifests_not_modified.inc();
    (StatusCode::NOT_MODIFIED, [(header::ETAG, etag(version))]).into_response()
}

/// The instant (on tokio's clock) at which the wall clock reads `at`.
fn instant_at(at: DateTime<Utc>, now: DateTime<Utc>) -> Instant {
    Instant::now()
        + (at - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
            .max(MIN_RECHECK)
}

/// Long-polls waiting, per kiosk.
#[derive(Debug, Default)]
pub struct LongPolls(Arc<std::sync::Mutex<std::collections::HashMap<KioskId, usize>>>);

/// Counts a long-poll as open (in all and for its kiosk) for as long as it lives.
struct LongPoll {
    metrics: Arc<Metrics>,
    polls: Arc<std::sync::Mutex<std::collections::HashMap<KioskId, usize>>>,
    kiosk: KioskId,
}

impl LongPoll {
    /// A place for one more long-poll of `kiosk`, unless it or the hub has its fill.
    fn start(s: &HubState, kiosk: KioskId) -> Option<Self> {
        if s.metrics.long_polls_open.get() >= MAX_LONG_POLLS {
            return None;
        }
        let mut polls = s
            .long_polls
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let open = polls.entry(kiosk).or_default();
        if *open >= MAX_LONG_POLLS_PER_KIOSK {
            return None;
        }
        *open += 1;
        s.metrics.long_polls_open.inc();
        Some(Self {
            metrics: s.metrics.clone(),
            polls: s.long_polls.0.clone(),
            kiosk,
        })
    }
}

impl Drop for LongPoll {
    fn drop(&mut self) {
        self.metrics.long_polls_open.dec();
        let mut polls = self
            .polls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(open) = polls.get_mut(&self.kiosk) {
            *open -= 1;
            if *open == 0 {
                polls.remove(&self.kiosk);
            }
        }
    }
}

/// `GET /api/v1/kiosk/manifest[?wait=s]`.
pub(crate) async fn get_manifest(
    State(s): State<Arc<HubState>>,
    auth: KioskAuth,
    headers: HeaderMap,
    query: Result<Query<ManifestQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|e| ApiError::BadRequest(format!("query string: {}", e.body_text())))?;
    let wait = Duration::from_secs(query.wait.unwrap_or(0).min(MAX_WAIT_SECS));
    // Beyond the hub's or this kiosk's cap, a long-poll answers at once (`304`) and the
    // kiosk simply asks again.
    let open = (!wait.is_zero() && !s.shutdown.is_cancelled())
        .then(|| LongPoll::start(&s, auth.kiosk))
        .flatten();
    let long_poll = open.is_some();
    // A long-poll subscribes before the first manifest is built, so a change in between
    // still wakes it (a plain poll does not: subscribing takes the channel's lock).
    let mut changes = long_poll.then(|| s.docs.subscribe());
    let mut current = build(&s, &auth.venue, auth.kiosk)?;
    if !etag_matches(&headers, &current.version) {
        return Ok(manifest_sent(&s, current));
    }
    let Some(changes) = changes.as_mut() else {
        return Ok(manifest_unchanged(&s, &current.version));
    };
    let _open = open;
    let deadline = Instant::now() + wait;
    loop {
        let next_at = current
            .next
            .as_ref()
            .map(|n| instant_at(n.at, s.clock.now()));
        tokio::select! {
            biased;
            _ = s.shutdown.cancelled() => break,
            _ = sleep_until(deadline) => break,
            change = changes.recv() => match change {
                Ok(c) if c.doc != s.venue => continue,
                // A lagged receiver may have missed a venue change: look.
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                // Only when the documents are gone, i.e. the hub is stopping.
                Err(RecvError::Closed) => break,
            },
            _ = sleep_until(next_at.unwrap_or(deadline)), if next_at.is_some() => {}
        }
        let venue = s.view.snapshot(&s.docs).map_err(view_error)?;
        let fresh = build(&s, &venue, auth.kiosk)?;
        if !etag_matches(&headers, &fresh.version) {
            return Ok(manifest_sent(&s, fresh));
        }
        current = fresh;
    }
    Ok(manifest_unchanged(&s, &current.version))
}

// ---------------------------------------------------------------------------------------
// Media
// ---------------------------------------------------------------------------------------

/// A blob of this hub as an HTTP response (`web::serve::blob_response`, the one way every
/// node serves stored bytes), its bytes counted into `counter`.
pub(crate) async fn blob_response(
    s: &HubState,
    hash: MediaHash,
    content_type: &str,
    headers: &HeaderMap,
    counter: Option<Counter>,
) -> Result<Response, ApiError> {
    serve::blob_response(s.blobs.clone(), hash, content_type, headers, counter)
        .await
        .map_err(|e| match e {
            serve::ServeError::NotFound(_) => ApiError::NotFound(format!(
                "media {hash} is not on this hub yet (it is still being fetched from central); try again later"
            )),
            serve::ServeError::RangeNotSatisfiable { size } => {
                ApiError::RangeNotSatisfiable { size }
            }
            other => ApiError::internal("serving a media file", other),
        })
}

/// `GET /api/v1/kiosk/media/{hash}`: a media file of the venue, streamed from disk.
pub(crate) async fn media(
    State(s): State<Arc<HubState>>,
    auth: KioskAuth,
    Path(hash): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let hash: MediaHash = hash
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("media hash in the path: {e}")))?;
    let Some(meta) = auth.venue.doc.media.get(&hash) else {
        return Err(ApiError::NotFound(format!(
            "media {hash} is not in this venue's media"
        )));
    };
    let counter = Some(s.metrics.kiosk_media_bytes.clone());
    blob_response(&s, hash, &meta.content_type, &headers, counter).await
}

// ---------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------

/// One event as a kiosk posts it. There is no kiosk field: the hub takes it from the token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KioskEvent {
    #[serde(deserialize_with = "event_id")]
    id: [u8; 16],
    at_ms: i64,
    kind: TelemetryKind,
}

fn event_id<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
    use serde::de::Error;
    let text = String::deserialize(d)?;
    data_encoding::HEXLOWER_PERMISSIVE
        .decode(text.as_bytes())
        .ok()
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .ok_or_else(|| {
            D::Error::custom(format!(
                "id must be 32 hex characters (16 bytes), got {:?}",
                text.chars().take(40).collect::<String>()
            ))
        })
}

/// `POST /api/v1/kiosk/events`: status and proof of play, stored in the outbox before the
/// answer, idempotent by event id.
pub(crate) async fn events(
    State(s): State<Arc<HubState>>,
    auth: KioskAuth,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body = limited(body)?;
    let items: Vec<serde_json::Value> = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!("the body must be a JSON array of events: {e}"))
    })?;
    if items.len() > MAX_TELEMETRY_BATCH {
        return Err(ApiError::TooLarge(format!(
            "{} events in one request; send at most {MAX_TELEMETRY_BATCH}",
            items.len()
        )));
    }
    let now_ms = s.clock.now().timestamp_millis();
    let events = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let e: KioskEvent = serde_json::from_value(item)
                .map_err(|e| ApiError::BadRequest(format!("event {i}: {e}")))?;
            let event = TelemetryEvent {
                id: e.id,
                kiosk: Some(auth.kiosk),
                at_ms: e.at_ms,
                kind: e.kind,
            };
            match event.implausible(now_ms) {
                Some(problem) => Err(ApiError::BadRequest(format!("event {i}: {problem}"))),
                None => Ok(event),
            }
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let total = events.len();
    let store = s.store.clone();
    let added = blocking(
        move || store.push(&events),
        internal("storing kiosk events in the outbox"),
    )
    .await?;
    if added > 0 {
        s.metrics.kiosk_events_accepted.inc_by(added as u64);
        s.outbox_ready.notify_one();
    }
    Ok(Json(json!({ "accepted": total, "new": added })))
}

/// The change note of a kiosk pairing itself (approved by staff or a kiosk code).
fn kiosk_note(kiosk: KioskId, at_ms: i64, op: &str) -> taplink_sync_proto::note::ChangeNote {
    taplink_sync_proto::note::ChangeNote::new(
        taplink_sync_proto::note::Author::Device {
            device: "kiosk".to_owned(),
            id: kiosk.to_string(),
        },
        taplink_sync_proto::note::Via::System,
        at_ms,
        serde_json::json!({ "op": op, "kiosk": kiosk.to_string() }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            m
        };
        assert_eq!(
            bearer(&h("Bearer tlk1-abc"), "device token").unwrap(),
            "tlk1-abc"
        );
        assert_eq!(
            bearer(&h("bearer  tlk1-abc "), "device token").unwrap(),
            "tlk1-abc"
        );
        assert!(bearer(&h("Basic dXNlcg=="), "device token").is_err());
        assert!(bearer(&h("Bearer"), "device token").is_err());
        assert!(bearer(&HeaderMap::new(), "device token").is_err());
    }
}
