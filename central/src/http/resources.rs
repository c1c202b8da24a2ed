//! REST resources for people over the venue operations: kiosks, playlists, items and
//! assignments. Each request becomes one or more `VenueCommand`s applied through
//! `content::apply_venue_commands` — authorized op by op, one change, noted and audited —
//! so a REST edit and the same edit sent to `POST …/ops` are indistinguishable.
//!
//! | Method | Path (under `/api/v1/venues/{id}`) | Body | Success |
//! |--------|------|------|---------|
//! | PATCH  | `/kiosks/{kiosk}` | `{name?, group?, orientation?}` (`group: null` clears) | 200 |
//! | DELETE | `/kiosks/{kiosk}` | — | 204 |
//! | POST   | `/playlists` | `{name}` | 201 `{id}` |
//! | PATCH  | `/playlists/{playlist}` | `{name}` | 200 |
//! | DELETE | `/playlists/{playlist}` | — | 204 |
//! | POST   | `/playlists/{playlist}/items` | `{media, duration_ms, at?, window?}` | 201 `{item}` |
//! | PATCH  | `/playlists/{playlist}/items/{item}` | `{duration_ms?, window?, at?}` (`window: null`: always) | 200 |
//! | DELETE | `/playlists/{playlist}/items/{item}` | — | 204 |
//! | PUT    | `/assignments` | `{kiosks?: {kiosk: playlist\|null}, groups?: {group: playlist\|null}, default?: playlist\|null}` | 200 |

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;
use taplink_sync_proto::doc::{Orientation, Placement, VenueCommand};
use taplink_sync_proto::ids::{ItemId, KioskId, MediaHash, PlaylistId, VenueId};
use taplink_sync_proto::note::Via;
use taplink_sync_proto::schedule::ScheduleWindow;

use crate::state::AppState;

use super::auth::{Caller, ChangeAudited};
use super::content::apply_venue_commands;
use super::error::{ApiError, ApiJson};

/// `Some(None)` for an explicit `null`, `None` (with `#[serde(default)]`) when absent.
fn explicit<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The ids of a resource path, each parsed (a bad one is a 400 naming it).
fn parse<T: std::str::FromStr>(what: &str, text: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e: T::Err| ApiError::InvalidPath {
        message: format!("{what}: {e}"),
    })
}

async fn apply(
    state: &AppState,
    caller: &Caller,
    via: Via,
    venue: &str,
    commands: Vec<VenueCommand>,
) -> Result<(), ApiError> {
    let venue: VenueId = parse("venue", venue)?;
    if commands.is_empty() {
        return Err(ApiError::InvalidBody {
            message: "nothing to change: give at least one field".to_owned(),
        });
    }
    apply_venue_commands(state, caller, via, venue, commands)
        .await
        .map(drop)
}

fn applied(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Extension(ChangeAudited), Json(body)).into_response()
}

fn deleted() -> Response {
    (StatusCode::NO_CONTENT, Extension(ChangeAudited)).into_response()
}

/// `PATCH …/kiosks/{kiosk}` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KioskPatch {
    /// A new name.
    #[serde(default)]
    pub name: Option<String>,
    /// A new group, or `null` for none.
    #[serde(default, deserialize_with = "explicit")]
    #[schema(value_type = Option<String>)]
    pub group: Option<Option<String>>,
    /// How the screen is mounted.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub orientation: Option<Orientation>,
}

pub(super) async fn patch_kiosk(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(via): Extension<Via>,
    Path((venue, kiosk)): Path<(String, String)>,
    ApiJson(body): ApiJson<KioskPatch>,
) -> Result<Response, ApiError> {
    let id: KioskId = parse("kiosk", &kiosk)?;
    let mut commands = Vec::new();
    if let Some(name) = body.name {
        commands.push(VenueCommand::RenameKiosk { id, name });
    }
    if let Some(group) = body.group {
        commands.push(VenueCommand::SetKioskGroup { id, group });
    }
    if let Some(orientation) = body.orientation {
        commands.push(VenueCommand::SetOrientation { id, orientation });
    }
    apply(&state, &caller, via, &venue, commands).await?;
    Ok(applied(StatusCode::OK, json!({ "kiosk": id })))
}

pub(super) async fn delete_kiosk(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(via): Extension<Via>,
    Path((venue, kiosk)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id: KioskId = parse("kiosk", &kiosk)?;
    apply(
        &state,
        &caller,
        via,
        &venue,
        vec![VenueCommand::RemoveKiosk { id }],
    )
    .await?;
    Ok(deleted())
}

/// `POST …/playlists` and `PATCH …/playlists/{playlist}` body.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaylistBody {
    /// The playlist's name.
    pub name: String,
}

pub(super) async fn post_playlist(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(via): Extension<Via>,
    Path(venue): Path<String>,
    ApiJson(body): ApiJson<PlaylistBody>,
) -> Result<Response, ApiError> {
    let id = PlaylistId::random();
    let command = VenueCommand::CreatePlaylist {
        id,
        name: body.name,
    };
    apply(&state, &caller, via, &venue, vec![command]).await?;
    Ok(applied(StatusCode::CREATED, json!({ "id": id })))
}

pub(super) async fn patch_playlist(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(via): Extension<Via>,
    Path((venue, playlist)): Path<(String, String)>,
    ApiJson(body): ApiJson<PlaylistBody>,
) -> Result<Response, ApiError> {
    let id: PlaylistId = parse("playlist", &playlist)?;
    let command = VenueCommand::RenamePlaylist {
        id,
        name: body.name,
    };
    apply(&state, &caller, via, &venue, vec![command]).await?;
    Ok(applied(StatusCode::OK, json!({ "id": id })))
}

pub(super) async fn delete_playlist(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(via): Extension<Via>,
    Path((venue, playlist)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id: PlaylistId = parse("playlist", &playlist)?;
    apply(
        &state,
        &caller,
        via,
        &venue,
        vec![VenueCommand::RemovePlaylist { id }],
    )
    .await?;
    Ok(deleted())
}

/// `POST …/playlists/{playlist}/items` body.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewItem {
    /// The media it shows (already in the venue's media).
    #[schema(value_type = String)]
    pub media: MediaHash,
    /// How long it shows, in milliseconds.
    pub duration_ms: u64,
    /// Where it goes: `"front"`, `"end"` (the default) or `{"after": <item>}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub at: Option<Placement>,
    /// When it may play (absent: always).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub window: Option<ScheduleWindow>,
}

pub(super) async fn post_item(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(via): Extension<Via>,
    Path((venue, playlist)): Path<(String, String)>,
    ApiJson(body): ApiJson<NewItem>,
) -> Result<Response, ApiError> {
    let playlist: PlaylistId = parse("playlist", &playlist)?;
    let item = ItemId::random();
    let command = VenueCommand::InsertItem {
        playlist,
        item,
        at: body.at.unwrap_or(Placement::End),
        media: body.media,
        duration_ms: body.duration_ms,
        window: body.window,
    };
    apply(&state, &caller, via, &venue, vec![command]).await?;
    Ok(applied(StatusCode::CREATED, json!({ "item": item })))
}

/// `PATCH …/playlists/{playlist}/items/{item}` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemPatch {
    /// A new duration, in milliseconds.
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// A new schedule window, or `null` for always.
    #[serde(default, deserialize_with = "explicit")]
    #[schema(value_type = Option<Object>)]
    pub window: Option<Option<ScheduleWindow>>,
    /// A new place in the playlist.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub at: Option<Placement>,
}

pub(super) async fn patch_item(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(via): Extension<Via>,
    Path((venue, playlist, item)): Path<(String, String, String)>,
    ApiJson(body): ApiJson<ItemPatch>,
) -> Result<Response, ApiError> {
    let playlist: PlaylistId = parse("playlist", &playlist)?;
    let item: ItemId = parse("item", &item)?;
    let mut commands = Vec::new();
    if let Some(duration_ms) = body.duration_ms {
        commands.push(VenueCommand::SetItemDuration {
            playlist,
            item,
            duration_ms,
        });
    }
    if let Some(window) = body.window {
        commands.push(VenueCommand::SetItemWindow {
            playlist,
            item,
            window,
        });
    }
    if let Some(at) = body.at {
        commands.push(VenueCommand::MoveItem { playlist, item, at });
    }
    apply(&state, &caller, via, &venue, commands).await?;
    Ok(applied(StatusCode::OK, json!({ "item": item })))
}

pub(super) async fn delete_item(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(via): Extension<Via>,
    Path((venue, playlist, item)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let playlist: PlaylistId = parse("playlist", &playlist)?;
    let item: ItemId = parse("item", &item)?;
    let command = VenueCommand::RemoveItem { playlist, item };
    apply(&state, &caller, via, &venue, vec![command]).await?;
    Ok(deleted())
}

/// `PUT …/assignments` body: which playlist plays where (`null` removes an assignment).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Assignments {
    /// Kiosks' own playlists.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub kiosks: BTreeMap<KioskId, Option<PlaylistId>>,
    /// Groups' playlists.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub groups: BTreeMap<String, Option<PlaylistId>>,
    /// The venue's default playlist (`null`: none).
    #[serde(default, deserialize_with = "explicit")]
    #[schema(value_type = Option<String>)]
    pub default: Option<Option<PlaylistId>>,
}

pub(super) async fn put_assignments(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(via): Extension<Via>,
    Path(venue): Path<String>,
    ApiJson(body): ApiJson<Assignments>,
) -> Result<Response, ApiError> {
    let mut commands: Vec<VenueCommand> = body
        .kiosks
        .into_iter()
        .map(|(kiosk, playlist)| VenueCommand::AssignPlaylist { kiosk, playlist })
        .collect();
    commands.extend(
        body.groups
            .into_iter()
            .map(|(group, playlist)| VenueCommand::AssignGroupPlaylist { group, playlist }),
    );
    if let Some(playlist) = body.default {
        commands.push(VenueCommand::SetDefaultPlaylist { playlist });
    }
    let count = commands.len();
    apply(&state, &caller, via, &venue, commands).await?;
    Ok(applied(
        StatusCode::OK,
        json!({ "status": "applied", "assignments": count }),
    ))
}
