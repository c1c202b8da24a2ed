//! `/api/v1/users`: the organisation's people (admins only).

use std::collections::BTreeSet;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use taplink_sync_proto::authz::{Role, Scope, VenueTag};
use taplink_sync_proto::ids::{UserId, VenueId};

use crate::state::AppState;
use crate::store::{NewUser, UserPatch};

use super::auth::{Caller, UserJson};
use super::error::{ApiError, ApiJson, ApiPath, blocking};

/// `POST /api/v1/users` body.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    /// The username (3 to 64 characters of letters, digits, `.`, `_`, `-`, `@`; unique
    /// whatever the letter case).
    pub username: String,
    /// The name shown to people (default: the username).
    #[serde(default)]
    pub display_name: String,
    /// `admin`, `technician`, `store_staff` or `viewer`.
    #[schema(value_type = String)]
    pub role: Role,
    /// Venues the role applies to.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub venues: BTreeSet<VenueId>,
    /// Venue tags the role applies to (every venue carrying one).
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub tags: BTreeSet<VenueTag>,
    /// The password (at least 10 characters).
    pub password: String,
}

/// `GET /api/v1/users` answer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserList {
    /// Every user, by username.
    pub users: Vec<UserJson>,
}

/// `POST /api/v1/users`.
pub(super) async fn post_user(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateUserRequest>,
) -> Result<Response, ApiError> {
    let user = create_user(&state, body).await?;
    Ok((StatusCode::CREATED, Json(UserJson::from(&user))).into_response())
}

/// Create a user as `POST /api/v1/users` does (the dashboard's People page too): a
/// non-admin needs a venue or tag, and every venue must exist.
pub(crate) async fn create_user(
    state: &AppState,
    body: CreateUserRequest,
) -> Result<crate::store::User, ApiError> {
    if body.role != Role::Admin && body.venues.is_empty() && body.tags.is_empty() {
        return Err(ApiError::InvalidField {
            field: "venues",
            message: format!(
                "a {} acts only in its venues: give at least one venue or tag",
                body.role
            ),
        });
    }
    let (registry, venues) = (state.registry.clone(), body.venues.clone());
    let missing = blocking(move || {
        for venue in venues {
            if registry.venue(venue)?.is_none() {
                return Ok(Some(venue));
            }
        }
        Ok::<_, crate::store::RegistryError>(None)
    })
    .await?;
    if let Some(venue) = missing {
        return Err(ApiError::InvalidField {
            field: "venues",
            message: format!("venue {venue} does not exist"),
        });
    }
    let new = NewUser {
        username: body.username,
        display_name: body.display_name,
        role: body.role,
        scope: Scope {
            venues: body.venues,
            tags: body.tags,
        },
        password: body.password,
    };
    let registry = state.registry.clone();
    let now = state.now();
    let user = blocking(move || registry.create_user(new, now)).await?;
    tracing::info!(user = %user.username, role = %user.role, "user created");
    // Hub sessions re-check their venue's roster.
    let _ = state.rosters_changed.send(());
    Ok(user)
}

/// `GET /api/v1/users`.
pub(super) async fn list_users(State(state): State<AppState>) -> Result<Json<UserList>, ApiError> {
    let registry = state.registry.clone();
    let users = blocking(move || registry.list_users()).await?;
    Ok(Json(UserList {
        users: users.iter().map(UserJson::from).collect(),
    }))
}

/// `PATCH /api/v1/users/{id}` body; a field left out is not changed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    /// A new display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// A new role (ends the user's sessions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub role: Option<Role>,
    /// New venues of the scope (with `tags`, replaces the scope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub venues: Option<BTreeSet<VenueId>>,
    /// New tags of the scope (with `venues`, replaces the scope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub tags: Option<BTreeSet<VenueTag>>,
    /// `true` disables the account (its sessions end at once), `false` enables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// A new password (a reset; the user's sessions end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// Refuse an admin's change that would lock themselves out.
fn not_yourself(caller: &Caller, id: UserId, what: &str) -> Result<(), ApiError> {
    match caller {
        Caller::User(me) if me.id == id => Err(ApiError::Conflict {
            message: format!("you cannot {what} your own account; another admin can"),
        }),
        _ => Ok(()),
    }
}

/// `PATCH /api/v1/users/{id}`.
pub(super) async fn patch_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<UserId>,
    ApiJson(body): ApiJson<UpdateUserRequest>,
) -> Result<Json<UserJson>, ApiError> {
    let user = update_user(&state, &caller, id, body).await?;
    Ok(Json(UserJson::from(&user)))
}

/// Change a user as `PATCH /api/v1/users/{id}` does (the dashboard's People page too):
/// nobody disables or demotes themselves.
pub(crate) async fn update_user(
    state: &AppState,
    caller: &Caller,
    id: UserId,
    body: UpdateUserRequest,
) -> Result<crate::store::User, ApiError> {
    if body.disabled == Some(true) {
        not_yourself(caller, id, "disable")?;
    }
    if body.role.is_some_and(|r| r != Role::Admin) {
        not_yourself(caller, id, "demote")?;
    }
    let scope = match (body.venues, body.tags) {
        (None, None) => None,
        (venues, tags) => Some(Scope {
            venues: venues.unwrap_or_default(),
            tags: tags.unwrap_or_default(),
        }),
    };
    let patch = UserPatch {
        display_name: body.display_name,
        role: body.role,
        scope,
        disabled: body.disabled,
        password: body.password,
    };
    let registry = state.registry.clone();
    let user = blocking(move || registry.update_user(id, patch))
        .await?
        .ok_or(ApiError::NotFound {
            what: format!("user {id}"),
        })?;
    tracing::info!(user = %user.username, role = %user.role, disabled = user.disabled, "user changed");
    let _ = state.rosters_changed.send(());
    Ok(user)
}

/// `DELETE /api/v1/users/{id}`: the account and its sessions go.
pub(super) async fn delete_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<UserId>,
) -> Result<StatusCode, ApiError> {
    not_yourself(&caller, id, "delete")?;
    let registry = state.registry.clone();
    if !blocking(move || registry.delete_user(id)).await? {
        return Err(ApiError::NotFound {
            what: format!("user {id}"),
        });
    }
    tracing::info!(user = %id, "user deleted");
    let _ = state.rosters_changed.send(());
    Ok(StatusCode::NO_CONTENT)
}
