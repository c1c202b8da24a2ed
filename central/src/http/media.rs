//! Media through central: upload a file to a venue or to the org library, and take it out
//! of the venue's document (or the library) again. The request is the hub's
//! (`PUT /api/v1/media?name=N`, the raw bytes as the body, their type as `Content-Type`),
//! received by the same code ([`taplink_sync_io::web::media::receive_upload`]).
//!
//! - `PUT /api/v1/media?name=N[&content_type=T][&venue=V]`: streamed to a staging file in
//!   `<data dir>/uploads/` within `max_upload_bytes` and, for a venue, the venue's share of
//!   `venue_media_quota_bytes`; its type checked by content; stored by hash; then added to
//!   the venue's media (`VenueCommand::AddMedia`) or the org library. `201 {"hash", "size",
//!   "content_type", "name", "venue"}` (`venue` null for the library).
//! - `DELETE /api/v1/media/{hash}[?venue=V][&force=true]`: removed from the venue's media
//!   (refused with `409` naming the playlists and items that show it, unless `force=true`,
//!   which removes those items in the same change) or from the org library. `200 {"hash",
//!   "venue", "removed_items"}`.
//!
//! - `GET /api/v1/media/{hash}[?venue=V]`: the file's bytes, for the dashboard's previews
//!   and for API clients, when the hash is one of the venue's media (or the library's):
//!   `ETag`, `Range`, immutable caching and the media safety headers
//!   (`taplink_sync_io::web::serve::blob_response`, as the hub serves its kiosks). `404`
//!   for a hash that is not the venue's, or whose bytes have not reached central yet.
//!
//! The writing routes need `media_write` on their subject (reading needs `venue_read`) on their subject (the `venue` query parameter); the org
//! library, without `venue`, is an admin's (`org_write`, checked here). Every document
//! change goes through [`apply_venue_commands`] or [`edit_noted`], so it carries its author
//! and lands in the audit log. The blob stays in central's media store after a delete:
//! another venue, or the library, may hold the same bytes.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use taplink_sync_io::web::media::{self as media_type, UploadError, UploadLimits};
use taplink_sync_io::web::serve;
use taplink_sync_proto::authz::{Action, Target, authorize};
use taplink_sync_proto::doc::{
    DocOpError, MediaMeta, VenueCommand, add_library_media, check_media_meta, load_venue,
    remove_library_media,
};
use taplink_sync_proto::ids::{ItemId, MediaHash, PlaylistId, VenueId};
use taplink_sync_proto::note::Via;
use taplink_sync_proto::wire::DocId;

use crate::state::AppState;

use super::auth::{Caller, ChangeAudited};
use super::content::{Refused, apply_venue_commands, edit_noted};
use super::error::{ApiError, ApiPath, blocking};

/// `PUT /api/v1/media` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UploadQuery {
    /// The file's name as people see it.
    name: String,
    /// Optional: when given it must name the `Content-Type` header's type.
    #[serde(default)]
    content_type: Option<String>,
    /// The venue; without it, the org library.
    #[serde(default)]
    venue: Option<String>,
}

/// `PUT /api/v1/media` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MediaJson {
    /// The BLAKE3 hash of the bytes (hex): the media's id.
    pub hash: String,
    /// Bytes.
    pub size: u64,
    /// The media type, checked against the bytes.
    pub content_type: String,
    /// The name.
    pub name: String,
    /// The venue it was added to, or null for the org library.
    pub venue: Option<String>,
}

/// `DELETE /api/v1/media/{hash}` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeleteQuery {
    /// The venue; without it, the org library.
    #[serde(default)]
    venue: Option<String>,
    /// Also remove the playlist items that show the media.
    #[serde(default)]
    force: bool,
}

/// A playlist item removed with its media.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RemovedItem {
    /// The playlist.
    pub playlist: String,
    /// The item.
    pub item: String,
}

/// `DELETE /api/v1/media/{hash}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeletedMedia {
    /// The media's hash.
    pub hash: String,
    /// The venue it was removed from, or null for the org library.
    pub venue: Option<String>,
    /// The items removed with it (`force=true`).
    pub removed_items: Vec<RemovedItem>,
}

/// The query, or a 400 naming what is wrong with it (serde names the field).
fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query.map(|Query(q)| q).map_err(|e| ApiError::InvalidQuery {
        param: "query",
        message: e.body_text(),
    })
}

/// The `venue` query parameter as an id.
fn venue_param(venue: Option<&str>) -> Result<Option<VenueId>, ApiError> {
    venue
        .map(|v| {
            v.parse::<VenueId>().map_err(|e| ApiError::InvalidQuery {
                param: "venue",
                message: e.to_string(),
            })
        })
        .transpose()
}

/// The org library (a query without `venue`) is organisation-wide: beyond the route's
/// `media_write`, a change to it needs `org_write` (admins). Checked before the query is
/// parsed, so that a caller who may not learns nothing from its validation.
fn authorize_library(caller: &Caller, raw_query: Option<&str>) -> Result<(), ApiError> {
    if super::auth::venue_query(raw_query).is_some() {
        return Ok(());
    }
    authorize(&caller.principal(), Action::OrgWrite, Target::Org).map_err(|denied| {
        ApiError::Forbidden {
            reason: format!(
                "the org library (no `venue` in the query): {denied}; name a venue of yours with `venue=<id>`"
            ),
        }
    })
}

/// Refuse an unknown venue before any byte is read.
async fn known_venue(state: &AppState, id: VenueId) -> Result<(), ApiError> {
    let registry = state.registry.clone();
    blocking(move || registry.venue(id))
        .await?
        .map(drop)
        .ok_or(ApiError::NotFound {
            what: format!("venue {id}"),
        })
}

/// Bytes of venue `id`'s media central holds: what counts against the venue's quota (as
/// the sync endpoint counts it before fetching a hub's media).
async fn venue_media_held(state: &AppState, id: VenueId) -> Result<u64, ApiError> {
    let (docs, blobs) = (state.docs.clone(), state.blobs.clone());
    let held = tokio::task::spawn_blocking(move || {
        let doc = match docs.read(DocId::Venue(id), |am| load_venue(am)) {
            Ok(Ok(doc)) => doc,
            Ok(Err(e)) => return Err(e.to_string()),
            // A venue in the registry without a document holds nothing yet.
            Err(_) => return Ok(0),
        };
        let mut held = 0u64;
        for (hash, meta) in &doc.media {
            if blobs.has(hash).map_err(|e| e.to_string())? {
                held = held.saturating_add(meta.size);
            }
        }
        Ok(held)
    })
    .await
    .map_err(|e| ApiError::internal("measuring a venue's media", e))?;
    held.map_err(|e| ApiError::internal("measuring a venue's media", e))
}

/// Central's answer to a refused upload; `quota` describes the venue's quota, if any.
fn upload_error(e: UploadError, quota: Option<(VenueId, u64, u64)>) -> ApiError {
    match e {
        e @ (UploadError::NoType | UploadError::Type(_)) => ApiError::MediaRefused {
            message: e.to_string(),
        },
        e @ UploadError::TypeDiffers { .. } => ApiError::InvalidQuery {
            param: "content_type",
            message: e.to_string(),
        },
        UploadError::TooLarge { max } => ApiError::UploadTooLarge {
            message: format!(
                "the file is larger than the {max}-byte upload limit (max_upload_bytes in central's config)"
            ),
        },
        e @ UploadError::SvgTooLarge { .. } => ApiError::UploadTooLarge {
            message: e.to_string(),
        },
        UploadError::OverQuota { received, .. } => {
            let message = match quota {
                Some((venue, held, quota)) => format!(
                    "venue {venue}'s media storage at central is full: {held} of {quota} bytes used, and this upload needs at least {received} more; delete unused media or raise venue_media_quota_bytes"
                ),
                None => "the media storage is full".to_owned(),
            };
            ApiError::InsufficientStorage { message }
        }
        e @ UploadError::Interrupted(_) => ApiError::InvalidBody {
            message: e.to_string(),
        },
        e => ApiError::internal("receiving an upload", e),
    }
}

/// `PUT /api/v1/media?name=N[&content_type=T][&venue=V]`.
pub(super) async fn put_media(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(via): Extension<Via>,
    RawQuery(raw_query): RawQuery,
    query_params: Result<Query<UploadQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Extension<ChangeAudited>, Json<MediaJson>), ApiError> {
    authorize_library(&caller, raw_query.as_deref())?;
    let q = query(query_params)?;
    let venue = venue_param(q.venue.as_deref())?;
    let header_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let content_type = media_type::upload_type(header_type, q.content_type.as_deref())
        .map_err(|e| upload_error(e, None))?;
    // The name is checked before the bytes arrive, so a bad one costs no upload.
    check_media_meta(&MediaMeta {
        name: q.name.clone(),
        content_type: content_type.to_owned(),
        size: 0,
    })
    .map_err(|e| ApiError::InvalidQuery {
        param: "name",
        message: e.to_string(),
    })?;
    let mut limits = UploadLimits {
        max_bytes: state.config.max_upload_bytes,
        quota_left: u64::MAX,
    };
    let mut quota = None;
    // The org library has no quota of its own (only admins add to it).
    if let Some(id) = venue {
        known_venue(&state, id).await?;
        let held = venue_media_held(&state, id).await?;
        let venue_quota = state.config.venue_media_quota_bytes;
        limits.quota_left = venue_quota.saturating_sub(held);
        quota = Some((id, held, venue_quota));
    }
    let staged = media_type::receive_upload(
        body,
        content_type,
        &limits,
        &state.config.data().upload_dir(),
    )
    .await
    .map_err(|e| upload_error(e, quota))?;
    let blobs = state.blobs.clone();
    let (hash, size) = tokio::task::spawn_blocking(move || staged.store(&blobs))
        .await
        .map_err(|e| ApiError::internal("storing an upload in the media store", e))?
        .map_err(|e| ApiError::internal("storing an upload in the media store", e))?;
    let meta = MediaMeta {
        name: q.name,
        content_type: content_type.to_owned(),
        size,
    };
    let answer = MediaJson {
        hash: hash.to_string(),
        size,
        content_type: content_type.to_owned(),
        name: meta.name.clone(),
        venue: venue.map(|v| v.to_string()),
    };
    match venue {
        Some(id) => {
            let add = VenueCommand::AddMedia { hash, meta };
            apply_venue_commands(&state, &caller, via, id, vec![add]).await?;
        }
        None => {
            let ops = json!([{"op": "add_library_media", "hash": hash.to_string(), "meta": &meta}]);
            edit_noted(&state, &caller, via, DocId::Org, ops, move |am| {
                add_library_media(am, hash, &meta)
            })
            .await
            .map_err(|refused| match refused {
                Refused::Op(e) => ApiError::Unprocessable {
                    message: format!("the org library refused the media: {e}"),
                },
                Refused::Api(e) => e,
            })?;
        }
    }
    tracing::info!(%hash, size, content_type, venue = ?answer.venue, "media uploaded");
    Ok((StatusCode::CREATED, Extension(ChangeAudited), Json(answer)))
}

/// `GET /api/v1/media/{hash}` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReadQuery {
    /// The venue; without it, the org library.
    #[serde(default)]
    venue: Option<String>,
}

/// `GET /api/v1/media/{hash}[?venue=V]`: a media file of the venue (or the library), only
/// if the venue's document lists it: a hash alone opens nothing of another venue.
pub(super) async fn get_media(
    State(state): State<AppState>,
    ApiPath(hash): ApiPath<MediaHash>,
    query_params: Result<Query<ReadQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<axum::response::Response, ApiError> {
    let venue = venue_param(query(query_params)?.venue.as_deref())?;
    let registry = state.registry.clone();
    let content_type = blocking(move || registry.catalog_media_type(venue, &hash))
        .await?
        .ok_or_else(|| ApiError::NotFound {
            what: match venue {
                Some(v) => format!("media {hash} in venue {v}"),
                None => format!("media {hash} in the org library"),
            },
        })?;
    serve::blob_response(state.blobs.clone(), hash, &content_type, &headers, None)
        .await
        .map_err(|e| match e {
            serve::ServeError::NotFound(_) => ApiError::NotFound {
                what: format!("the bytes of media {hash} at central (a hub has not sent them yet)"),
            },
            serve::ServeError::RangeNotSatisfiable { size } => {
                ApiError::RangeNotSatisfiable { size }
            }
            other => ApiError::internal("serving a media file", other),
        })
}

/// `DELETE /api/v1/media/{hash}[?venue=V][&force=true]`.
pub(super) async fn delete_media(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(via): Extension<Via>,
    RawQuery(raw_query): RawQuery,
    ApiPath(hash): ApiPath<MediaHash>,
    query_params: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<(Extension<ChangeAudited>, Json<DeletedMedia>), ApiError> {
    authorize_library(&caller, raw_query.as_deref())?;
    let q = query(query_params)?;
    let Some(id) = venue_param(q.venue.as_deref())? else {
        let ops = json!([{"op": "remove_library_media", "hash": hash.to_string()}]);
        edit_noted(&state, &caller, via, DocId::Org, ops, move |am| {
            remove_library_media(am, hash)
        })
        .await
        .map_err(|refused| match refused {
            Refused::Op(DocOpError::MediaNotFound(_)) => ApiError::NotFound {
                what: format!("media {hash} in the org library"),
            },
            Refused::Op(e) => ApiError::Unprocessable {
                message: e.to_string(),
            },
            Refused::Api(e) => e,
        })?;
        tracing::info!(%hash, "media removed from the org library");
        return Ok((
            Extension(ChangeAudited),
            Json(DeletedMedia {
                hash: hash.to_string(),
                venue: None,
                removed_items: Vec::new(),
            }),
        ));
    };
    known_venue(&state, id).await?;
    let docs = state.docs.clone();
    let doc = tokio::task::spawn_blocking(move || docs.read(DocId::Venue(id), |am| load_venue(am)))
        .await
        .map_err(|e| ApiError::internal("reading a venue document", e))?;
    let doc = match doc {
        Ok(Ok(doc)) => doc,
        Ok(Err(e)) => return Err(ApiError::internal("loading a venue document", e)),
        Err(_) => {
            return Err(ApiError::NotFound {
                what: format!("venue {id}'s document"),
            });
        }
    };
    if !doc.media.contains_key(&hash) {
        return Err(ApiError::NotFound {
            what: format!("media {hash} in venue {id}"),
        });
    }
    let users: Vec<(PlaylistId, &str, ItemId)> = doc
        .playlists
        .iter()
        .flat_map(|(pid, playlist)| {
            playlist
                .items
                .iter()
                .filter(|(_, item)| item.media == hash)
                .map(move |(iid, _)| (*pid, playlist.name.as_str(), *iid))
        })
        .collect();
    if !users.is_empty() && !q.force {
        let named: Vec<String> = users
            .iter()
            .map(|(pid, name, iid)| format!("playlist {name:?} ({pid}) item {iid}"))
            .collect();
        return Err(ApiError::Conflict {
            message: format!(
                "media {hash} is shown by {}; remove those items first, or delete with force=true to remove them too",
                named.join(", ")
            ),
        });
    }
    let removed_items: Vec<RemovedItem> = users
        .iter()
        .map(|(pid, _, iid)| RemovedItem {
            playlist: pid.to_string(),
            item: iid.to_string(),
        })
        .collect();
    let mut commands: Vec<VenueCommand> = users
        .iter()
        .map(|(playlist, _, item)| VenueCommand::RemoveItem {
            playlist: *playlist,
            item: *item,
        })
        .collect();
    commands.push(VenueCommand::RemoveMedia { hash });
    apply_venue_commands(&state, &caller, via, id, commands).await?;
    tracing::info!(%hash, venue = %id, items = removed_items.len(), "media removed from a venue");
    Ok((
        Extension(ChangeAudited),
        Json(DeletedMedia {
            hash: hash.to_string(),
            venue: Some(id.to_string()),
            removed_items,
        }),
    ))
}
