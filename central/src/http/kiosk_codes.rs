//! `/api/v1/venues/{id}/kiosk-codes`: kiosk provisioning codes (pairings pre-approved in
//! the venue document).

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use taplink_sync_proto::doc::KioskGrant;
use taplink_sync_proto::ids::{GrantId, KioskId, PlaylistId, VenueId};

use crate::kiosk_codes::{
    DEFAULT_KIOSK_CODE_TTL_HOURS, KioskCodeRequest, create_kiosk_code, list_kiosk_codes,
    revoke_kiosk_code,
};
use crate::state::AppState;
use crate::timefmt::{from_unix_ms, rfc3339};

use super::error::{ApiError, ApiJson, ApiPath, blocking};

/// `POST /api/v1/venues/{id}/kiosk-codes` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKioskCodeRequest {
    /// The name the kiosk gets, 1 to 100 characters without control characters.
    pub name: String,
    /// Hours until the code expires, 1 to 2160 (90 days); default 168 (a week).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_hours: Option<u32>,
    /// The group the kiosk joins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The kiosk's own playlist (must exist in the venue document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub playlist: Option<PlaylistId>,
}

/// `POST /api/v1/venues/{id}/kiosk-codes` answer: give `code` to whoever sets up the kiosk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KioskCodeJson {
    /// The code's id (its grant in the venue document), to list or revoke it.
    #[schema(value_type = String)]
    pub id: GrantId,
    /// The venue.
    #[schema(value_type = String)]
    pub venue_id: VenueId,
    /// The code (`XXXX-XXXX-XXXX-XXXX`); shown only this once, stored only hashed.
    pub code: String,
    /// The kiosk's name.
    pub name: String,
    /// Its group.
    pub group: Option<String>,
    /// Its playlist.
    #[schema(value_type = Option<String>)]
    pub playlist: Option<PlaylistId>,
    /// The first instant the code is no longer accepted, RFC 3339.
    pub expires_at: String,
}

/// A kiosk code as listed (without the code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KioskGrantJson {
    /// The code's id.
    #[schema(value_type = String)]
    pub id: GrantId,
    /// The kiosk's name.
    pub name: String,
    /// Its group.
    pub group: Option<String>,
    /// Its playlist.
    #[schema(value_type = Option<String>)]
    pub playlist: Option<PlaylistId>,
    /// When it was created, RFC 3339.
    pub created_at: String,
    /// When it expires (or expired), RFC 3339.
    pub expires_at: String,
    /// `open` (can pair a kiosk), `used` (paired `kiosk`) or `expired`.
    pub state: String,
    /// The kiosk it paired, once the hub's redemption has reached central.
    #[schema(value_type = Option<String>)]
    pub kiosk: Option<KioskId>,
    /// When it paired that kiosk (the hub's clock), RFC 3339.
    pub used_at: Option<String>,
}

/// `GET /api/v1/venues/{id}/kiosk-codes` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KioskCodeList {
    /// The venue's kiosk codes, oldest first.
    pub kiosk_codes: Vec<KioskGrantJson>,
}

fn ms_rfc3339(ms: i64) -> String {
    from_unix_ms(ms).map_or_else(|_| ms.to_string(), rfc3339)
}

impl KioskGrantJson {
    fn new(id: GrantId, g: KioskGrant, now_ms: i64) -> KioskGrantJson {
        let state = if g.consumed_by.is_some() {
            "used"
        } else if g.is_open(now_ms) {
            "open"
        } else {
            "expired"
        };
        KioskGrantJson {
            id,
            state: state.to_owned(),
            created_at: ms_rfc3339(g.created_at_ms),
            expires_at: ms_rfc3339(g.expires_at_ms),
            kiosk: g.consumed_by,
            used_at: g.consumed_at_ms.map(ms_rfc3339),
            name: g.name,
            group: g.group,
            playlist: g.playlist,
        }
    }
}

pub(super) async fn post_kiosk_code(
    State(state): State<AppState>,
    ApiPath(venue): ApiPath<VenueId>,
    ApiJson(body): ApiJson<CreateKioskCodeRequest>,
) -> Result<Response, ApiError> {
    let answer = issue_kiosk_code(&state, venue, body).await?;
    Ok((
        StatusCode::CREATED,
        // The body holds a secret: no cache may keep it.
        [(header::CACHE_CONTROL, "no-store")],
        Json(answer),
    )
        .into_response())
}

/// A new kiosk code for `venue` (shown once): the API's and the dashboard's.
pub(crate) async fn issue_kiosk_code(
    state: &AppState,
    venue: VenueId,
    body: CreateKioskCodeRequest,
) -> Result<KioskCodeJson, ApiError> {
    let registry = state.registry.clone();
    let docs = state.docs.clone();
    let now = state.now();
    let request = KioskCodeRequest {
        name: body.name,
        expires_in_hours: body
            .expires_in_hours
            .unwrap_or(DEFAULT_KIOSK_CODE_TTL_HOURS),
        group: body.group,
        playlist: body.playlist,
    };
    let issued =
        blocking(move || create_kiosk_code(&registry, &docs, venue, &request, now)).await?;
    let expires_at = ms_rfc3339(issued.stored.expires_at_ms);
    tracing::info!(%venue, code = %issued.grant, name = %issued.stored.name, %expires_at, "kiosk code created");
    Ok(KioskCodeJson {
        id: issued.grant,
        venue_id: venue,
        code: issued.code.to_string(),
        name: issued.stored.name,
        group: issued.stored.group,
        playlist: issued.stored.playlist,
        expires_at,
    })
}

pub(super) async fn get_kiosk_codes(
    State(state): State<AppState>,
    ApiPath(venue): ApiPath<VenueId>,
) -> Result<Json<KioskCodeList>, ApiError> {
    kiosk_code_list(&state, venue).await.map(Json)
}

/// The venue's kiosk codes (never the codes): the API's and the dashboard's.
pub(crate) async fn kiosk_code_list(
    state: &AppState,
    venue: VenueId,
) -> Result<KioskCodeList, ApiError> {
    let registry = state.registry.clone();
    let docs = state.docs.clone();
    let now_ms = crate::timefmt::to_unix_ms(state.now());
    let grants = blocking(move || list_kiosk_codes(&registry, &docs, venue)).await?;
    Ok(KioskCodeList {
        kiosk_codes: grants
            .into_iter()
            .map(|(id, g)| KioskGrantJson::new(id, g, now_ms))
            .collect(),
    })
}

pub(super) async fn delete_kiosk_code(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let invalid = |message: String| ApiError::InvalidPath { message };
    let Path((venue, grant)) = path.map_err(|e| invalid(e.body_text()))?;
    let venue: VenueId = venue.parse().map_err(|e| invalid(format!("{e}")))?;
    let grant: GrantId = grant
        .parse()
        .map_err(|e| invalid(format!("kiosk code id: {e}")))?;
    revoke(&state, venue, grant).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revoke (or forget, if used) kiosk code `grant` of `venue`: the API's and the
/// dashboard's one way.
pub(crate) async fn revoke(
    state: &AppState,
    venue: VenueId,
    grant: GrantId,
) -> Result<(), ApiError> {
    let registry = state.registry.clone();
    let docs = state.docs.clone();
    blocking(move || revoke_kiosk_code(&registry, &docs, venue, grant)).await?;
    tracing::info!(%venue, code = %grant, "kiosk code revoked");
    Ok(())
}
