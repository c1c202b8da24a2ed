//! `/api/v1/tokens`: API tokens for automation. Anyone signed in may make tokens for
//! themselves, never wider than their own reach: the same role (or `viewer`), and a scope
//! within theirs (admins may make any). A token is shown once; `Authorization: Bearer
//! <token>` then works on every API route, as the token's role and scope allow.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::TimeDelta;
use serde::{Deserialize, Serialize};
use taplink_sync_proto::authz::{Principal, Role, Scope, VenueTag};
use taplink_sync_proto::ids::VenueId;

use crate::state::AppState;
use crate::store::{ApiToken, MAX_TOKEN_DAYS, NewApiToken};
use crate::timefmt::rfc3339;

use super::auth::Caller;
use super::error::{ApiError, ApiJson, ApiPath, blocking};

/// `POST /api/v1/tokens` body.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// What the token is for.
    pub name: String,
    /// Its role (default: the maker's).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub role: Option<Role>,
    /// Venues it acts in (with `tags`; default: the maker's scope).
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub venues: Option<BTreeSet<VenueId>>,
    /// Venue tags it acts in.
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub tags: Option<BTreeSet<VenueTag>>,
    /// Days until it stops working (default 90, at most 365).
    #[serde(default)]
    pub expires_in_days: Option<i64>,
}

/// A token as the API lists it (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenJson {
    /// The token's id.
    pub id: String,
    /// What it is for.
    pub name: String,
    /// Its role.
    #[schema(value_type = String)]
    pub role: Role,
    /// Its scope.
    #[schema(value_type = Object)]
    pub scope: Scope,
    /// Who made it (a user id; absent when made with the admin token).
    pub owner: Option<String>,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// When it stops working, RFC 3339.
    pub expires_at: String,
    /// Last use, RFC 3339.
    pub last_used_at: Option<String>,
    /// Revocation time, RFC 3339.
    pub revoked_at: Option<String>,
}

impl From<&ApiToken> for TokenJson {
    fn from(t: &ApiToken) -> Self {
        TokenJson {
            id: t.id.clone(),
            name: t.name.clone(),
            role: t.principal.role,
            scope: t.principal.scope.clone(),
            owner: t.owner.map(|o| o.to_string()),
            created_at: rfc3339(t.created_at),
            expires_at: rfc3339(t.expires_at),
            last_used_at: t.last_used_at.map(rfc3339),
            revoked_at: t.revoked_at.map(rfc3339),
        }
    }
}

/// `POST /api/v1/tokens` answer: the token, shown only this once.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedToken {
    /// Send it as `Authorization: Bearer <token>`.
    pub token: String,
    /// Its record.
    #[serde(flatten)]
    pub record: TokenJson,
}

/// `GET /api/v1/tokens` answer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenList {
    /// The caller's tokens (an admin's: every token), newest first.
    pub tokens: Vec<TokenJson>,
}

fn owner_of(caller: &Caller) -> Option<taplink_sync_proto::ids::UserId> {
    match caller {
        Caller::User(user) => Some(user.id),
        Caller::Token(token) => token.owner,
        Caller::AdminToken => None,
    }
}

/// `POST /api/v1/tokens`.
pub(super) async fn post_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<CreateTokenRequest>,
) -> Result<Response, ApiError> {
    let created = create_token(&state, &caller, body).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// Make a token for `caller` (the API's and the dashboard's one way): its role is the
/// caller's or viewer, its scope within the caller's, unless the caller is an admin.
pub(crate) async fn create_token(
    state: &AppState,
    caller: &Caller,
    body: CreateTokenRequest,
) -> Result<CreatedToken, ApiError> {
    let maker = caller.principal();
    let role = body.role.unwrap_or(maker.role);
    let scope = match (body.venues, body.tags) {
        (None, None) => maker.scope.clone(),
        (venues, tags) => Scope {
            venues: venues.unwrap_or_default(),
            tags: tags.unwrap_or_default(),
        },
    };
    let days = body.expires_in_days.unwrap_or(90);
    if !(1..=MAX_TOKEN_DAYS).contains(&days) {
        return Err(ApiError::InvalidField {
            field: "expires_in_days",
            message: format!("must be 1 to {MAX_TOKEN_DAYS}"),
        });
    }
    if maker.role != Role::Admin {
        if role != maker.role && role != Role::Viewer {
            return Err(ApiError::Forbidden {
                reason: format!(
                    "field `role`: a token can have your role ({}) or viewer, not {role}",
                    maker.role
                ),
            });
        }
        if !scope.is_within(&maker.scope) {
            return Err(ApiError::Forbidden {
                reason: "fields `venues`/`tags`: a token's scope must sit within yours".into(),
            });
        }
    }
    if role != Role::Admin && scope.venues.is_empty() && scope.tags.is_empty() {
        return Err(ApiError::InvalidField {
            field: "venues",
            message: format!("a {role} token acts only in its venues: give a venue or tag"),
        });
    }
    let new = NewApiToken {
        name: body.name,
        owner: owner_of(caller),
        principal: Principal { role, scope },
        lifetime: TimeDelta::days(days),
    };
    let registry = state.registry.clone();
    let now = state.now();
    let (token, record) = blocking(move || registry.create_api_token(new, now)).await?;
    tracing::info!(token = %record.id, name = %record.name, role = %record.principal.role, "api token created");
    Ok(CreatedToken {
        token,
        record: TokenJson::from(&record),
    })
}

/// `GET /api/v1/tokens`.
pub(super) async fn list_tokens(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<TokenList>, ApiError> {
    token_list(&state, &caller).await.map(Json)
}

/// The caller's tokens (an admin's: every token), newest first.
pub(crate) async fn token_list(state: &AppState, caller: &Caller) -> Result<TokenList, ApiError> {
    let registry = state.registry.clone();
    let all = caller.principal().role == Role::Admin;
    let owner = owner_of(caller);
    // A non-admin token made with the bootstrap admin token has no owner, and no tokens.
    let tokens = match (all, owner) {
        (true, _) => blocking(move || registry.list_api_tokens(None)).await?,
        (false, Some(owner)) => blocking(move || registry.list_api_tokens(Some(owner))).await?,
        (false, None) => Vec::new(),
    };
    Ok(TokenList {
        tokens: tokens.iter().map(TokenJson::from).collect(),
    })
}

/// `DELETE /api/v1/tokens/{id}`: revoke one's own token (an admin: any).
pub(super) async fn delete_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    revoke_token(&state, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revoke token `id` if it is the caller's (an admin: any).
pub(crate) async fn revoke_token(
    state: &AppState,
    caller: &Caller,
    id: String,
) -> Result<(), ApiError> {
    let registry = state.registry.clone();
    let all = caller.principal().role == Role::Admin;
    let owner = owner_of(caller);
    let now = state.now();
    let revoked = blocking(move || {
        let Some(token) = registry.api_token(&id)? else {
            return Ok::<_, crate::store::RegistryError>(false);
        };
        if !all && (owner.is_none() || token.owner != owner) {
            return Ok(false);
        }
        registry.revoke_api_token(&token.id, now)?;
        Ok(true)
    })
    .await?;
    if revoked {
        Ok(())
    } else {
        Err(ApiError::NotFound {
            what: "that token (among yours)".into(),
        })
    }
}
