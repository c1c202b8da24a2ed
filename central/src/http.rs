//! Central's HTTP side: health, metrics and the admin REST API (`/api/v1`).
//!
//! | Method | Path                                   | Action | Success                      |
//! |--------|----------------------------------------|-------|------------------------------|
//! | GET    | `/healthz`                             | public | 200 `{"status":"ok","db":"ok"}` (503 if the registry fails) |
//! | GET    | `/metrics`                             | public | 200 OpenMetrics text         |
//! | POST   | `/api/v1/venues`                       | venue_create | 201 venue (`{name, timezone}` in) |
//! | GET    | `/api/v1/venues`                       | venue_read | 200 `{"venues": [...]}` (those in reach) |
//! | GET    | `/api/v1/venues/{id}`                  | venue_read | 200 venue                    |
//! | PATCH  | `/api/v1/venues/{id}`                  | venue_edit | 200 venue (`{tags}` in)      |
//! | GET    | `/api/v1/venues/{id}/document`         | venue_read | 200 the venue document |
//! | POST   | `/api/v1/venues/{id}/ops`              | content_write (+ each op's own) | 200 (one `VenueCommand` or an array, all or nothing; 422 names the refused one) |
//! | POST   | `/api/v1/venues/{id}/enrollment-codes` | hub_enroll | 201 `{code, venue_id, expires_at, central_fingerprint}` (optional `{ttl}` in, e.g. `"2h"`) |
//! | POST   | `/api/v1/venues/{id}/kiosk-codes`      | kiosk_code_manage | 201 `{id, venue_id, code, name, group, playlist, expires_at}` (`{name, expires_in_hours?, group?, playlist?}` in) |
//! | GET    | `/api/v1/venues/{id}/kiosk-codes`      | kiosk_code_manage | 200 `{"kiosk_codes": [...]}` (never the codes) |
//! | DELETE | `/api/v1/venues/{id}/kiosk-codes/{code id}` | kiosk_code_manage | 204 (revoked, or forgotten if used) |
//! | POST   | `/api/v1/auth/login`                   | secret | 200 `{csrf_token, user}` + session cookie |
//! | POST   | `/api/v1/auth/logout`                  | user  | 204                          |
//! | GET    | `/api/v1/auth/me`                      | user  | 200 `{kind, user, role}`     |
//! | GET/POST | `/api/v1/users`                      | user_manage | 200 `{"users": [...]}` / 201 user |
//! | PATCH/DELETE | `/api/v1/users/{id}`             | user_manage | 200 user (role, scope, `disabled`, password reset) / 204 |
//! | GET/POST | `/api/v1/tokens`                     | token_manage | 200 `{"tokens": [...]}` (yours) / 201 `{"token", "id", …}` shown once |
//! | DELETE | `/api/v1/tokens/{id}`                  | token_manage | 204 (revoked) |
//! | GET    | `/api/v1/hubs[?venue=<id>]`            | health_read | 200 `{"hubs": [...]}` (those in reach) |
//! | GET    | `/api/v1/hubs/{id}`                    | health_read | 200 hub                |
//! | POST   | `/api/v1/hubs/{id}/revoke`             | hub_revoke | 200 hub (revoking twice keeps the first time) |
//! | GET    | `/api/v1/reports/proof-of-play[?venue=&kiosk=&media=&from=&to=&format=csv\|json&granularity=day\|raw]` | venue_read | 200 streamed CSV or JSON array: plays per kiosk, media and venue-local day, or each play (those in reach without `venue`) |
//!
//! Callers: `Authorization: Bearer <admin token>` (acts as an admin), or a signed-in
//! session (`http/auth.rs`); the action is checked with `authz::authorize` against the
//! route's venue. Every error is JSON `{"error": "<sentence>"}` ([`ApiError`]). Bodies are limited to
//! [`BODY_LIMIT`] bytes. Handlers never touch SQLite on the async runtime: registry calls
//! run in `spawn_blocking`.

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{Method, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use taplink_sync_io::web::access::{Access, Gate, Routes};
use taplink_sync_io::web::guard::{self, HostPolicy};
use taplink_sync_proto::authz::Action;

use crate::state::AppState;

mod auth;
mod content;
mod error;
mod hubs;
mod kiosk_codes;
mod reports;
mod tokens;
mod users;
mod venues;

use auth::Required;
pub use auth::{
    CLI_USER_AGENT, CSRF_HEADER, Caller, LoginRequest, LoginResponse, MeResponse, SESSION_COOKIE,
    UserJson,
};
use error::blocking;
pub use error::{ApiError, ApiJson, ApiPath, ErrorBody};
pub use hubs::{HubJson, HubList};
use hubs::{get_hub, list_hubs, revoke_hub};
pub use kiosk_codes::{CreateKioskCodeRequest, KioskCodeJson, KioskCodeList, KioskGrantJson};
use kiosk_codes::{delete_kiosk_code, get_kiosk_codes, post_kiosk_code};
pub use tokens::{CreateTokenRequest, CreatedToken, TokenJson, TokenList};
pub use users::{CreateUserRequest, UpdateUserRequest, UserList};
pub use venues::{
    CreateEnrollmentCodeRequest, CreateVenueRequest, EnrollmentCodeJson, UpdateVenueRequest,
    VenueJson, VenueList,
};
use venues::{get_venue, list_venues, post_enrollment_code, post_venue};

/// Largest request body accepted: 64 KiB, far more than any admin request needs.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Every route of central with who may use it: the one place access is declared.
pub fn routes(state: &AppState) -> Routes<AppState> {
    let gate = CentralGate(state.clone());
    let g = &gate;
    let act = Access::Act;
    Routes::new()
        .route(g, "/healthz", &["GET"], Access::Public, get(healthz))
        .route(g, "/metrics", &["GET"], Access::Public, get(metrics))
        .route(
            g,
            "/api/v1/venues",
            &["GET"],
            act(Action::VenueRead),
            get(list_venues),
        )
        .route(
            g,
            "/api/v1/venues",
            &["POST"],
            act(Action::VenueCreate),
            post(post_venue),
        )
        .route(
            g,
            "/api/v1/venues/{id}",
            &["GET"],
            act(Action::VenueRead),
            get(get_venue),
        )
        .route(
            g,
            "/api/v1/venues/{id}",
            &["PATCH"],
            act(Action::VenueEdit),
            patch(venues::patch_venue),
        )
        .route(
            g,
            "/api/v1/venues/{id}/document",
            &["GET"],
            act(Action::VenueRead),
            get(content::get_document),
        )
        .route(
            g,
            "/api/v1/venues/{id}/ops",
            &["POST"],
            act(Action::ContentWrite),
            post(content::post_ops),
        )
        .route(
            g,
            "/api/v1/venues/{id}/enrollment-codes",
            &["POST"],
            act(Action::HubEnroll),
            post(post_enrollment_code),
        )
        .route(
            g,
            "/api/v1/venues/{id}/kiosk-codes",
            &["GET", "POST"],
            act(Action::KioskCodeManage),
            get(get_kiosk_codes).post(post_kiosk_code),
        )
        .route(
            g,
            "/api/v1/venues/{id}/kiosk-codes/{code}",
            &["DELETE"],
            act(Action::KioskCodeManage),
            delete(delete_kiosk_code),
        )
        .route(
            g,
            "/api/v1/auth/login",
            &["POST"],
            Access::Secret,
            post(auth::login),
        )
        .route(
            g,
            "/api/v1/auth/logout",
            &["POST"],
            Access::User,
            post(auth::logout),
        )
        .route(g, "/api/v1/auth/me", &["GET"], Access::User, get(auth::me))
        .route(
            g,
            "/api/v1/users",
            &["GET", "POST"],
            act(Action::UserManage),
            get(users::list_users).post(users::post_user),
        )
        .route(
            g,
            "/api/v1/users/{id}",
            &["PATCH", "DELETE"],
            act(Action::UserManage),
            patch(users::patch_user).delete(users::delete_user),
        )
        .route(
            g,
            "/api/v1/tokens",
            &["GET", "POST"],
            act(Action::TokenManage),
            get(tokens::list_tokens).post(tokens::post_token),
        )
        .route(
            g,
            "/api/v1/tokens/{id}",
            &["DELETE"],
            act(Action::TokenManage),
            delete(tokens::delete_token),
        )
        .route(
            g,
            "/api/v1/hubs",
            &["GET"],
            act(Action::HealthRead),
            get(list_hubs),
        )
        .route(
            g,
            "/api/v1/hubs/{id}",
            &["GET"],
            act(Action::HealthRead),
            get(get_hub),
        )
        .route(
            g,
            "/api/v1/hubs/{id}/revoke",
            &["POST"],
            act(Action::HubRevoke),
            post(revoke_hub),
        )
        .route(
            g,
            "/api/v1/reports/proof-of-play",
            &["GET"],
            act(Action::VenueRead),
            get(reports::proof_of_play),
        )
}

/// How central enforces each [`Access`]: admin routes need an admin token; there are no
/// kiosk, staff or loopback routes here, and such a route would refuse everyone.
#[derive(Debug, Clone)]
pub struct CentralGate(pub AppState);

impl Gate<AppState> for CentralGate {
    fn guard(&self, access: Access, route: MethodRouter<AppState>) -> MethodRouter<AppState> {
        match access {
            Access::Public => route,
            // `route_layer`: only requests that match a route are checked, so an unknown
            // path is a 404 rather than a 401.
            // The handler checks the guessing throttle and counts each failure itself.
            Access::Secret => route,
            Access::User => route.route_layer(middleware::from_fn_with_state(
                (self.0.clone(), Required::User),
                auth::authenticate,
            )),
            Access::Act(action) => route.route_layer(middleware::from_fn_with_state(
                (self.0.clone(), Required::Act(action)),
                auth::authenticate,
            )),
            _ => route.route_layer(middleware::from_fn(|_req: Request, _next: Next| async {
                ApiError::Unauthorized.into_response()
            })),
        }
    }
}

/// The HTTP application: every route of [`routes`], request metrics, the body limit, JSON
/// writes and the `Host` check.
pub fn app(state: AppState) -> Router {
    let rules = std::sync::Arc::new(guard::RequestRules {
        hosts: HostPolicy::new(state.config.public_names.clone()),
        not_json: &[],
    });
    let (router, _) = routes(&state).into_parts();
    router
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(rules, guard::request_rules))
        .with_state(state)
}

// ---------------------------------------------------------------------------------------
// Middleware
// ---------------------------------------------------------------------------------------

async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    // Only standard methods become label values, so clients cannot create series at will.
    let standard = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::HEAD,
        Method::OPTIONS,
    ];
    let method = if standard.contains(req.method()) {
        req.method().as_str().to_owned()
    } else {
        "other".to_owned()
    };
    let response = next.run(req).await;
    state
        .metrics
        .http_request(&route, &method, response.status().as_u16());
    response
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::NoRoute {
        method,
        path: uri.path().chars().take(200).collect(),
    }
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method,
        path: uri.path().chars().take(200).collect(),
    }
}

// ---------------------------------------------------------------------------------------
// Health and metrics
// ---------------------------------------------------------------------------------------

/// `GET /healthz` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// `ok` when the registry answered a query.
    pub db: String,
}

async fn healthz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let registry = state.registry.clone();
    let ping = tokio::task::spawn_blocking(move || registry.ping())
        .await
        .map_err(|e| ApiError::internal("health check task failed", e))?;
    match ping {
        Ok(()) => Ok(Json(Health {
            status: "ok".to_owned(),
            db: "ok".to_owned(),
        })),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            Err(ApiError::Unavailable {
                reason: "the registry database does not answer".to_owned(),
            })
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let registry = state.registry.clone();
    let counts = blocking(move || registry.counts()).await?;
    state.metrics.set_counts(counts);
    Ok(taplink_sync_io::web::metrics_response(
        state.metrics.registry(),
    ))
}
