//! `/api/v1/users`: the organisation's people (admins only).

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use taplink_sync_proto::authz::{Role, Scope, VenueTag};
use taplink_sync_proto::ids::VenueId;

use crate::state::AppState;
use crate::store::NewUser;

use super::auth::UserJson;
use super::error::{ApiError, ApiJson, blocking};

/// `POST /api/v1/users` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    /// The username (3 to 64 characters of letters, digits, `.`, `_`, `-`, `@`; unique
    /// whatever the letter case).
    pub username: String,
    /// The name shown to people (default: the username).
    #[serde(default)]
    pub display_name: String,
    /// `admin`, `technician`, `store_staff` or `viewer`.
    pub role: Role,
    /// Venues the role applies to.
    #[serde(default)]
    pub venues: BTreeSet<VenueId>,
    /// Venue tags the role applies to (every venue carrying one).
    #[serde(default)]
    pub tags: BTreeSet<VenueTag>,
    /// The password (at least 10 characters).
    pub password: String,
}

/// `GET /api/v1/users` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserList {
    /// Every user, by username.
    pub users: Vec<UserJson>,
}

/// `POST /api/v1/users`.
pub(super) async fn post_user(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateUserRequest>,
) -> Result<Response, ApiError> {
    if body.role != Role::Admin && body.venues.is_empty() && body.tags.is_empty() {
        return Err(ApiError::InvalidField {
            field: "venues",
            message: format!(
                "a {} acts only in its venues: give at least one venue or tag",
                body.role
            ),
        });
    }
    for venue in &body.venues {
        let registry = state.registry.clone();
        let id = *venue;
        if blocking(move || registry.venue(id)).await?.is_none() {
            return Err(ApiError::InvalidField {
                field: "venues",
                message: format!("venue {venue} does not exist"),
            });
        }
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
    Ok((StatusCode::CREATED, Json(UserJson::from(&user))).into_response())
}

/// `GET /api/v1/users`.
pub(super) async fn list_users(State(state): State<AppState>) -> Result<Json<UserList>, ApiError> {
    let registry = state.registry.clone();
    let users = blocking(move || registry.list_users()).await?;
    Ok(Json(UserList {
        users: users.iter().map(UserJson::from).collect(),
    }))
}
