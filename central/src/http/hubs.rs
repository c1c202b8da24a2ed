//! `/api/v1/hubs`: enrolled hubs, their sync status, and revocation.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::{Extension, Json};
use data_encoding::HEXLOWER;
use serde::{Deserialize, Serialize};
use taplink_sync_proto::ids::{HubId, VenueId};

use crate::state::AppState;
use crate::store::{HubRecord, RegistryError};
use crate::timefmt::rfc3339;

use super::error::{ApiError, ApiPath, ApiQuery, blocking, param};
use super::lists::{list_error, page_limit, reach_of};

/// A hub as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HubJson {
    /// The hub id.
    #[schema(value_type = String)]
    pub id: HubId,
    /// Its venue.
    #[schema(value_type = String)]
    pub venue_id: VenueId,
    /// `active` or `revoked`.
    pub state: String,
    /// Whether it has a sync connection to central right now.
    pub online: bool,
    /// Its certificate's serial number (hex).
    pub cert_serial: String,
    /// Its certificate's fingerprint (`sha256:<hex>`).
    pub cert_fingerprint: String,
    /// Enrollment time, RFC 3339.
    pub enrolled_at: String,
    /// Revocation time, RFC 3339, if revoked.
    pub revoked_at: Option<String>,
    /// When central last heard from it.
    pub last_seen: Option<String>,
    /// When it last finished a sync.
    pub last_sync: Option<String>,
    /// The software version it reported.
    pub software: Option<String>,
    /// The document heads it last reported: document id to hex change hashes.
    pub heads: Option<BTreeMap<String, Vec<String>>>,
}

impl HubJson {
    /// Mark whether the hub is connected now.
    fn online_in(mut self, state: &AppState) -> HubJson {
        self.online = state.online.contains(self.id);
        self
    }
}

impl From<&HubRecord> for HubJson {
    fn from(h: &HubRecord) -> HubJson {
        HubJson {
            id: h.id,
            venue_id: h.venue,
            state: if h.revoked_at.is_some() {
                "revoked"
            } else {
                "active"
            }
            .to_owned(),
            online: false,
            cert_serial: h.cert_serial.to_string(),
            cert_fingerprint: h.cert_fingerprint.to_string(),
            enrolled_at: rfc3339(h.enrolled_at),
            revoked_at: h.revoked_at.map(rfc3339),
            last_seen: h.last_seen.map(rfc3339),
            last_sync: h.last_sync.map(rfc3339),
            software: h.software.clone(),
            heads: h.heads.as_ref().map(|heads| {
                heads
                    .iter()
                    .map(|d| {
                        (
                            d.doc.to_string(),
                            d.heads.iter().map(|c| HEXLOWER.encode(c)).collect(),
                        )
                    })
                    .collect()
            }),
        }
    }
}

/// `GET /api/v1/hubs` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HubList {
    /// The hubs of this page, in enrollment order.
    pub hubs: Vec<HubJson>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/hubs` query.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HubsQuery {
    /// Only this venue's hubs.
    venue: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

/// `GET /api/v1/hubs[?venue=&cursor=&limit=]`: a page of the hubs of venues in reach.
pub(super) async fn list_hubs(
    State(state): State<AppState>,
    Extension(caller): Extension<super::auth::Caller>,
    ApiQuery(query): ApiQuery<HubsQuery>,
) -> Result<Json<HubList>, ApiError> {
    let venue: Option<VenueId> = param("venue", query.venue.as_deref())?;
    let limit = page_limit(query.limit.as_deref())?;
    let reach = reach_of(&caller);
    let registry = state.registry.clone();
    let page = blocking(move || {
        if let Some(venue) = venue
            && registry.venue(venue)?.is_none()
        {
            return Err(ApiError::from(RegistryError::UnknownVenue { venue }));
        }
        registry
            .hubs_page(&reach, venue, query.cursor.as_deref(), limit)
            .map_err(list_error)
    })
    .await?;
    Ok(Json(HubList {
        hubs: page
            .items
            .iter()
            .map(|h| HubJson::from(h).online_in(&state))
            .collect(),
        next_cursor: page.next,
    }))
}

pub(super) async fn get_hub(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<HubId>,
) -> Result<Json<HubJson>, ApiError> {
    let registry = state.registry.clone();
    blocking(move || registry.hub(id))
        .await?
        .map(|h| Json(HubJson::from(&h).online_in(&state)))
        .ok_or(ApiError::NotFound {
            what: format!("hub {id}"),
        })
}

pub(super) async fn revoke_hub(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<HubId>,
) -> Result<Json<HubJson>, ApiError> {
    let registry = state.registry.clone();
    let now = state.now();
    let record = blocking(move || registry.revoke_hub(id, now)).await?;
    tracing::info!(hub = %id, venue = %record.venue, serial = %record.cert_serial, "hub revoked");
    // SEAM(quic): tell the QUIC endpoint, which must reissue its CRL from
    // `Registry::revoked_serials`, rebuild its TLS server config and close the hub's
    // connections.
    state.notify_hub_revoked(id);
    Ok(Json(HubJson::from(&record).online_in(&state)))
}
