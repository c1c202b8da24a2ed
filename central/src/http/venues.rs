//! `/api/v1/venues`: create, list and read venues, and their hub enrollment codes.

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use taplink_sync_proto::authz::{Action, Principal, Target, VenueTag, authorize};
use taplink_sync_proto::doc::VenueCommand;
use taplink_sync_proto::ids::VenueId;
use taplink_sync_proto::note::Via;

use crate::config::Ttl;
use crate::enroll_token::EnrollmentToken;
use crate::state::AppState;
use crate::store::{HubState, Venue, VenueFilter};
use crate::timefmt::rfc3339;
use crate::venue::create_venue;

use super::BODY_LIMIT;
use super::auth::Caller;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, blocking, param};
use super::lists::{list_error, page_limit, reach_of};

/// `POST /api/v1/venues` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVenueRequest {
    /// Display name, 1 to 100 characters.
    pub name: String,
    /// IANA time zone name, e.g. `Europe/Berlin`.
    pub timezone: String,
}

/// A venue as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VenueJson {
    /// The venue id.
    #[schema(value_type = String)]
    pub id: VenueId,
    /// Display name.
    pub name: String,
    /// IANA time zone name.
    pub timezone: String,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Its tags (`region:north`), which scopes name venues by.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub tags: BTreeSet<VenueTag>,
    /// Its hub's state: `online`, `offline`, `never_connected` or `no_hub`.
    #[schema(value_type = Option<HubState>)]
    pub hub_state: Option<HubState>,
}

impl From<&Venue> for VenueJson {
    fn from(v: &Venue) -> VenueJson {
        VenueJson {
            id: v.id,
            name: v.name.clone(),
            timezone: v.timezone.clone(),
            created_at: rfc3339(v.created_at),
            tags: v.tags.clone(),
            hub_state: None,
        }
    }
}

/// `GET /api/v1/venues` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VenueList {
    /// The venues of this page, oldest first.
    pub venues: Vec<VenueJson>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/venues` query.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VenueParams {
    tag: Option<String>,
    q: Option<String>,
    hub_state: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

pub(super) async fn post_venue(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateVenueRequest>,
) -> Result<Response, ApiError> {
    let registry = state.registry.clone();
    let docs = state.docs.clone();
    let now = state.now();
    let new =
        blocking(move || create_venue(&registry, &docs, &body.name, &body.timezone, now)).await?;
    tracing::info!(venue = %new.id, name = %new.name, "venue created");
    let location = format!("/api/v1/venues/{}", new.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(VenueJson {
            hub_state: Some(HubState::NoHub),
            ..VenueJson::from(&new)
        }),
    )
        .into_response())
}

/// `GET /api/v1/venues[?tag=&q=&hub_state=&cursor=&limit=]`: a page of the venues in reach.
pub(super) async fn list_venues(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(p): ApiQuery<VenueParams>,
) -> Result<Json<VenueList>, ApiError> {
    let filter = VenueFilter {
        tag: p.tag,
        q: p.q,
        hub_state: param("hub_state", p.hub_state.as_deref())?,
    };
    let limit = page_limit(p.limit.as_deref())?;
    let reach = reach_of(&caller);
    let online = state.online.ids();
    let registry = state.registry.clone();
    let page = blocking(move || {
        registry
            .venues_page(&reach, &filter, &online, p.cursor.as_deref(), limit)
            .map_err(list_error)
    })
    .await?;
    Ok(Json(VenueList {
        venues: page
            .items
            .iter()
            .map(|(v, hub_state)| VenueJson {
                hub_state: Some(*hub_state),
                ..VenueJson::from(v)
            })
            .collect(),
        next_cursor: page.next,
    }))
}

/// Whether `principal` may take `action` on `venue` (lists show only such venues).
pub(super) fn in_reach(principal: &Principal, action: Action, venue: &Venue) -> bool {
    authorize(
        principal,
        action,
        Target::Venue {
            id: venue.id,
            tags: &venue.tags,
        },
    )
    .is_ok()
}

/// `PATCH /api/v1/venues/{id}` body: what to change (absent fields stay).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateVenueRequest {
    /// The venue's new name (in its document, so the hub shows it too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The venue's new IANA time zone (in its document: schedules follow it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The venue's new tags (replacing the old ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub tags: Option<BTreeSet<VenueTag>>,
}

/// `PATCH /api/v1/venues/{id}`: rename, move to another time zone (both through the venue
/// document), and retag (the registry).
pub(super) async fn patch_venue(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(via): Extension<Via>,
    ApiPath(id): ApiPath<VenueId>,
    ApiJson(body): ApiJson<UpdateVenueRequest>,
) -> Result<Json<VenueJson>, ApiError> {
    let mut commands = Vec::new();
    if let Some(name) = body.name {
        commands.push(VenueCommand::RenameVenue { name });
    }
    if let Some(timezone) = body.timezone {
        commands.push(VenueCommand::SetTimezone { timezone });
    }
    if !commands.is_empty() {
        super::content::apply_venue_commands(&state, &caller, via, id, commands).await?;
    }
    let registry = state.registry.clone();
    let venue = blocking(move || match body.tags {
        Some(tags) => registry.set_venue_tags(id, &tags),
        None => registry
            .venue(id)?
            .ok_or(crate::store::RegistryError::UnknownVenue { venue: id }),
    })
    .await?;
    tracing::info!(venue = %id, "venue updated");
    venue_json(&state, venue).await.map(Json)
}

/// A venue with its hub's state.
async fn venue_json(state: &AppState, venue: Venue) -> Result<VenueJson, ApiError> {
    let registry = state.registry.clone();
    let online = state.online.ids();
    let id = venue.id;
    let hub_state = blocking(move || registry.hub_state(id, &online)).await?;
    Ok(VenueJson {
        hub_state: Some(hub_state),
        ..VenueJson::from(&venue)
    })
}

pub(super) async fn get_venue(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<VenueId>,
) -> Result<Json<VenueJson>, ApiError> {
    let registry = state.registry.clone();
    let venue = blocking(move || registry.venue(id))
        .await?
        .ok_or(ApiError::NotFound {
            what: format!("venue {id}"),
        })?;
    venue_json(&state, venue).await.map(Json)
}

/// `POST /api/v1/venues/{id}/enrollment-codes` body: give `code` to whoever installs the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EnrollmentCodeJson {
    /// The enrollment token (`tl1-...`, see [`EnrollmentToken`]); shown only this once.
    pub code: String,
    /// The venue the hub will join.
    #[schema(value_type = String)]
    pub venue_id: VenueId,
    /// The first instant the code is no longer accepted, RFC 3339.
    pub expires_at: String,
    /// Central's certificate fingerprint (`sha256:<hex>`), also inside `code`.
    pub central_fingerprint: String,
}

/// `POST /api/v1/venues/{id}/enrollment-codes` body; optional (an empty body takes every
/// default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnrollmentCodeRequest {
    /// How long the code stays valid: a whole number and a unit, e.g. `30m`, `24h`, `7d`
    /// (default: the config's `enrollment_code_ttl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

pub(super) async fn post_enrollment_code(
    State(state): State<AppState>,
    ApiPath(venue): ApiPath<VenueId>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::BodyTooLarge { limit: BODY_LIMIT }
        } else {
            ApiError::InvalidBody {
                message: rejection.body_text(),
            }
        }
    })?;
    let request: CreateEnrollmentCodeRequest = if body.is_empty() {
        CreateEnrollmentCodeRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidBody {
            message: e.to_string(),
        })?
    };
    let answer = issue_enrollment_code(&state, venue, request.ttl).await?;
    Ok((
        StatusCode::CREATED,
        // The body holds a secret: no cache may keep it.
        [(header::CACHE_CONTROL, "no-store")],
        Json(answer),
    )
        .into_response())
}

/// A new single-use enrollment code for `venue`, valid for `ttl` (e.g. `"2h"`; default the
/// config's `enrollment_code_ttl`): the API's and the dashboard's.
pub(crate) async fn issue_enrollment_code(
    state: &AppState,
    venue: VenueId,
    ttl: Option<String>,
) -> Result<EnrollmentCodeJson, ApiError> {
    let ttl = match ttl {
        None => state.config.enrollment_code_ttl,
        Some(ttl) => ttl.parse::<Ttl>().map_err(|e| ApiError::InvalidField {
            field: "ttl",
            message: e.to_string(),
        })?,
    }
    .duration();
    let registry = state.registry.clone();
    let now = state.now();
    let code = blocking(move || registry.create_enrollment_code(venue, ttl, now)).await?;
    let central = state.pki.server_fingerprint;
    let token = EnrollmentToken {
        secret: code.secret,
        central,
    };
    tracing::info!(%venue, expires_at = %rfc3339(code.expires_at), "enrollment code created");
    Ok(EnrollmentCodeJson {
        code: token.to_string(),
        venue_id: venue,
        expires_at: rfc3339(code.expires_at),
        central_fingerprint: central.to_string(),
    })
}
