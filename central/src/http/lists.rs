//! Paged lists served from the catalog (`store/catalog.rs`): `GET /api/v1/kiosks` and
//! `GET /api/v1/media`, and the paging every list shares (`cursor`, `limit`, `next_cursor`).

use axum::extract::State;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use taplink_sync_proto::authz::Role;
use taplink_sync_proto::ids::VenueId;

use crate::state::AppState;
use crate::store::{KioskRow, MediaRow, Reach, RegistryError};

use super::auth::Caller;
use super::error::{ApiError, ApiQuery, blocking, param};

/// Rows in a page unless `limit` says otherwise.
pub(super) const DEFAULT_LIMIT: usize = 100;
/// Most rows in a page.
pub(super) const MAX_LIMIT: usize = 1000;

/// The `limit` parameter: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] if absent.
pub(super) fn page_limit(limit: Option<&str>) -> Result<usize, ApiError> {
    let limit: Option<usize> = param("limit", limit)?;
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(l) if (1..=MAX_LIMIT).contains(&l) => Ok(l),
        Some(_) => Err(ApiError::InvalidQuery {
            param: "limit",
            message: format!("give 1 to {MAX_LIMIT}"),
        }),
    }
}

/// The venues a caller's lists may show.
pub(super) fn reach_of(caller: &Caller) -> Reach {
    let principal = caller.principal();
    if principal.role == Role::Admin {
        Reach::All
    } else {
        Reach::Scope(principal.scope)
    }
}

/// A registry error of a list: a bad cursor is the caller's mistake.
pub(super) fn list_error(e: RegistryError) -> ApiError {
    match e {
        RegistryError::Invalid {
            field: "cursor",
            reason,
        } => ApiError::InvalidQuery {
            param: "cursor",
            message: reason,
        },
        other => ApiError::from(other),
    }
}

/// The query of a list of one venue's (or every venue's) rows.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListParams {
    venue: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

/// `GET /api/v1/kiosks` answer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KioskList {
    /// The kiosks, by id.
    pub kiosks: Vec<KioskRow>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/kiosks[?venue=]`: kiosks of the venues in reach, by id.
pub(super) async fn list_kiosks(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Json<KioskList>, ApiError> {
    let venue: Option<VenueId> = param("venue", p.venue.as_deref())?;
    let limit = page_limit(p.limit.as_deref())?;
    let reach = reach_of(&caller);
    let registry = state.registry.clone();
    let page = blocking(move || {
        registry
            .kiosks_page(&reach, venue, p.cursor.as_deref(), limit)
            .map_err(list_error)
    })
    .await?;
    Ok(Json(KioskList {
        kiosks: page.items,
        next_cursor: page.next,
    }))
}

/// `GET /api/v1/media` answer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MediaList {
    /// The media, by hash, each with `used_by` (the playlist items showing it).
    pub media: Vec<MediaRow>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/media[?venue=]`: a venue's media, or the org library, with where each is
/// used.
pub(super) async fn list_media(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Json<MediaList>, ApiError> {
    let venue: Option<VenueId> = param("venue", p.venue.as_deref())?;
    let limit = page_limit(p.limit.as_deref())?;
    let reach = reach_of(&caller);
    let registry = state.registry.clone();
    let page = blocking(move || {
        if let Some(venue) = venue
            && registry.venue(venue)?.is_none()
        {
            return Err(ApiError::NotFound {
                what: format!("venue {venue}"),
            });
        }
        registry
            .media_page(&reach, venue, p.cursor.as_deref(), limit)
            .map_err(list_error)
    })
    .await?;
    Ok(Json(MediaList {
        media: page.items,
        next_cursor: page.next,
    }))
}
