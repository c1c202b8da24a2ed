//! Central's HTTP side: health, metrics and the admin REST API (`/api/v1`).
//!
//! | Method | Path                                   | Action | Success                      |
//! |--------|----------------------------------------|-------|------------------------------|
//! | GET    | `/healthz`                             | public | 200 `{"status":"ok","db":"ok"}` (503 if the registry fails) |
//! | GET    | `/metrics`                             | public | 200 OpenMetrics text         |
//! | GET    | `/api/v1/openapi.json`                 | public | 200 the OpenAPI 3.1 document (`http/openapi.rs`) |
//! | GET    | `/api/docs/` (and its assets)          | public | 200 Swagger UI, offline (`/api/docs` redirects) |
//! | POST   | `/api/v1/venues`                       | venue_create | 201 venue (`{name, timezone}` in) |
//! | GET    | `/api/v1/venues[?tag=&q=&hub_state=&cursor=&limit=]` | venue_read | 200 `{venues, next_cursor}` (those in reach, each with `hub_state`) |
//! | GET    | `/api/v1/venues/{id}`                  | venue_read | 200 venue                    |
//! | PATCH  | `/api/v1/venues/{id}`                  | venue_edit | 200 venue (`{name?, timezone?, tags?}` in; name and time zone through the document) |
//! | GET    | `/api/v1/venues/{id}/document`         | venue_read | 200 the venue document |
//! | POST   | `/api/v1/venues/{id}/ops`              | content_write (+ each op's own) | 200 (one `VenueCommand` or an array, all or nothing; 422 names the refused one) |
//! | PATCH/DELETE | `/api/v1/venues/{id}/kiosks/{kiosk}` | kiosk_edit / pairing_manage | 200 / 204 (`{name?, group?, orientation?}` in; `http/resources.rs`) |
//! | POST   | `/api/v1/venues/{id}/playlists`        | content_write | 201 `{id}` (`{name}` in) |
//! | PATCH/DELETE | `/api/v1/venues/{id}/playlists/{playlist}` | content_write | 200 / 204 (`{name}` in) |
//! | POST   | `/api/v1/venues/{id}/playlists/{playlist}/items` | content_write | 201 `{item}` (`{media, duration_ms, at?, window?}` in) |
//! | PATCH/DELETE | `/api/v1/venues/{id}/playlists/{playlist}/items/{item}` | content_write | 200 / 204 (`{duration_ms?, window?, at?}` in) |
//! | PUT    | `/api/v1/venues/{id}/assignments`      | content_write | 200 (`{kiosks?, groups?, default?}` in) |
//! | GET    | `/api/v1/kiosks[?venue=&cursor=&limit=]` | venue_read | 200 `{kiosks, next_cursor}` (catalog, venues in reach) |
//! | GET    | `/api/v1/media[?venue=&cursor=&limit=]` | venue_read | 200 `{media, next_cursor}` with `used_by` (the org library without `venue`) |
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
//! | GET    | `/api/v1/audit?venue=&actor=&from=&to=&cursor=&limit=&format=json\|csv` | audit_read | 200 `{entries, next_cursor}` newest first, or a streamed CSV (venues in reach) |
//! | GET    | `/api/v1/hubs[?venue=<id>]`            | health_read | 200 `{"hubs": [...]}` (those in reach) |
//! | GET    | `/api/v1/hubs/{id}`                    | health_read | 200 hub                |
//! | POST   | `/api/v1/hubs/{id}/revoke`             | hub_revoke | 200 hub (revoking twice keeps the first time) |
//! | PUT    | `/api/v1/media?name=N[&content_type=T][&venue=V]` | media_write (library: + org_write) | 201 `{hash, size, content_type, name, venue}` (raw bytes in, their type as `Content-Type`; 413 too large, 415 wrong type, 507 over the venue's quota) |
//! | GET    | `/api/v1/media/{hash}[?venue=V]` | venue_read | 200 the file (`ETag`, `Range` → 206/416; 404 unless the venue, or the library, lists it) |
//! | DELETE | `/api/v1/media/{hash}[?venue=V][&force=true]` | media_write (library: + org_write) | 200 `{hash, venue, removed_items}` (409 names the playlist items that show it, unless `force=true` removes them too) |
//! | GET    | `/api/v1/reports/proof-of-play[?venue=&kiosk=&media=&from=&to=&format=csv\|json&granularity=day\|raw]` | venue_read | 200 streamed CSV or JSON array: plays per kiosk, media and venue-local day, or each play (those in reach without `venue`) |
//!
//! Callers: `Authorization: Bearer <admin token>` (acts as an admin), or a signed-in
//! session (`http/auth.rs`); the action is checked with `authz::authorize` against the
//! route's venue (the `venue` query parameter of the media routes; without it the org
//! library). Every error is JSON `{"error": "<sentence>"}` ([`ApiError`]). Bodies are limited to
//! [`BODY_LIMIT`] bytes, media uploads to `max_upload_bytes` (their body is not JSON). Handlers never touch SQLite on the async runtime: registry calls
//! run in `spawn_blocking`.

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{Method, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use taplink_sync_io::web::access::{Access, Gate, Routes};
use taplink_sync_io::web::guard::{self, HostPolicy};
use taplink_sync_proto::authz::Action;

use crate::dashboard;
use crate::state::AppState;

mod audit;
mod auth;
mod content;
mod csv;
mod error;
mod hubs;
mod kiosk_codes;
mod lists;
mod media;
mod openapi;
mod reports;
mod resources;
mod tokens;
mod users;
mod venues;

pub use audit::{AuditEntryJson, AuditPage};
pub(crate) use audit::{AuditParams, audit_page, audit_query};
pub(crate) use auth::ChangeAudited;
use auth::Required;
pub use auth::is_page;
pub(crate) use auth::{CLEARED_COOKIE, cookie as cookie_value, session_cookie, sign_in};
pub use auth::{
    CLI_USER_AGENT, CSRF_HEADER, Caller, LoginRequest, LoginResponse, MeResponse, SESSION_COOKIE,
    UserJson,
};
pub(crate) use content::apply_venue_commands;
use error::blocking;
pub use error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
pub use hubs::{HubJson, HubList};
use hubs::{get_hub, list_hubs, revoke_hub};
pub use kiosk_codes::{CreateKioskCodeRequest, KioskCodeJson, KioskCodeList, KioskGrantJson};
use kiosk_codes::{delete_kiosk_code, get_kiosk_codes, post_kiosk_code};
pub(crate) use kiosk_codes::{issue_kiosk_code, kiosk_code_list, revoke as revoke_kiosk_code};
pub use lists::{KioskList, MediaList};
pub use media::{DeletedMedia, MediaJson, RemovedItem};
pub use openapi::{Body as OpenApiBody, Mismatch, OPS, Op, document, documented_statuses};
pub use resources::{Assignments, ItemPatch, KioskPatch, NewItem, PlaylistBody};
pub use tokens::{CreateTokenRequest, CreatedToken, TokenJson, TokenList};
pub(crate) use tokens::{create_token, revoke_token, token_list};
pub use users::{CreateUserRequest, UpdateUserRequest, UserList};
pub(crate) use users::{create_user, update_user};
pub(crate) use venues::issue_enrollment_code;
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
    let json_routes = Routes::new()
        .route(g, "/healthz", &["GET"], Access::Public, get(healthz))
        .route(g, "/metrics", &["GET"], Access::Public, get(metrics))
        .route(
            g,
            "/",
            &["GET"],
            act(Action::VenueRead),
            get(dashboard::overview),
        )
        .route(
            g,
            "/live/overview",
            &["GET"],
            act(Action::VenueRead),
            get(dashboard::live_overview),
        )
        .route(
            g,
            "/assets/fleet.js",
            &["GET"],
            Access::Public,
            get(dashboard::fleet_script),
        )
        .route(
            g,
            "/venues/{id}",
            &["GET"],
            act(Action::VenueRead),
            get(dashboard::venue_page),
        )
        .route(
            g,
            "/venues/{id}/playlists",
            &["POST"],
            act(Action::ContentWrite),
            post(dashboard::create_playlist),
        )
        .route(
            g,
            "/venues/{id}/playlists/{playlist}",
            &["GET"],
            act(Action::VenueRead),
            get(dashboard::playlist_editor),
        )
        .route(
            g,
            "/venues/{id}/playlists/{playlist}",
            &["POST"],
            act(Action::ContentWrite),
            post(dashboard::change_playlist),
        )
        .route(
            g,
            "/login",
            &["GET"],
            Access::Public,
            get(dashboard::login_form),
        )
        .route(
            g,
            "/login",
            &["POST"],
            Access::Secret,
            post(dashboard::login_submit),
        )
        .route(
            g,
            "/logout",
            &["POST"],
            Access::User,
            post(dashboard::logout),
        )
        .route(
            g,
            "/audit",
            &["GET"],
            act(Action::AuditRead),
            get(dashboard::audit),
        )
        .route(
            g,
            "/reports",
            &["GET"],
            act(Action::VenueRead),
            get(dashboard::reports),
        )
        .route(
            g,
            "/media",
            &["GET"],
            act(Action::VenueRead),
            get(dashboard::media),
        )
        .route(
            g,
            "/assets/media.js",
            &["GET"],
            Access::Public,
            get(dashboard::media_script),
        )
        .route(
            g,
            "/assets/playlist.js",
            &["GET"],
            Access::Public,
            get(dashboard::playlist_script),
        )
        .route(
            g,
            "/venues/{id}/provisioning",
            &["GET"],
            act(Action::KioskCodeManage),
            get(dashboard::provisioning),
        )
        .route(
            g,
            "/venues/{id}/enrollment-codes",
            &["POST"],
            act(Action::HubEnroll),
            post(dashboard::new_enrollment_code),
        )
        .route(
            g,
            "/venues/{id}/kiosk-codes",
            &["POST"],
            act(Action::KioskCodeManage),
            post(dashboard::new_kiosk_code),
        )
        .route(
            g,
            "/venues/{id}/kiosk-codes/{code}/revoke",
            &["POST"],
            act(Action::KioskCodeManage),
            post(dashboard::revoke_kiosk_code),
        )
        .route(
            g,
            "/venues/{id}/kiosks/{kiosk}/remove",
            &["POST"],
            act(Action::PairingManage),
            post(dashboard::remove_kiosk),
        )
        .route(
            g,
            "/hubs/{id}/revoke",
            &["POST"],
            act(Action::HubRevoke),
            post(dashboard::revoke_hub),
        )
        .route(
            g,
            "/people",
            &["GET", "POST"],
            act(Action::UserManage),
            get(dashboard::people).post(dashboard::add_person),
        )
        .route(
            g,
            "/people/{id}",
            &["POST"],
            act(Action::UserManage),
            post(dashboard::change_person),
        )
        .route(
            g,
            "/tokens",
            &["GET", "POST"],
            act(Action::TokenManage),
            get(dashboard::tokens).post(dashboard::make_token),
        )
        .route(
            g,
            "/tokens/{id}/revoke",
            &["POST"],
            act(Action::TokenManage),
            post(dashboard::revoke_token),
        )
        .route(
            g,
            "/assets/style.css",
            &["GET"],
            Access::Public,
            get(dashboard::style),
        )
        .route(
            g,
            "/api/v1/openapi.json",
            &["GET"],
            Access::Public,
            get(openapi::openapi_json),
        )
        .route(
            g,
            "/api/docs",
            &["GET"],
            Access::Public,
            get(openapi::swagger_redirect),
        )
        .route(
            g,
            "/api/docs/",
            &["GET"],
            Access::Public,
            get(openapi::swagger_index),
        )
        .route(
            g,
            "/api/docs/{*file}",
            &["GET"],
            Access::Public,
            get(openapi::swagger_asset),
        )
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
            "/api/v1/venues/{id}/kiosks/{kiosk}",
            &["PATCH"],
            act(Action::KioskEdit),
            patch(resources::patch_kiosk),
        )
        .route(
            g,
            "/api/v1/venues/{id}/kiosks/{kiosk}",
            &["DELETE"],
            act(Action::PairingManage),
            delete(resources::delete_kiosk),
        )
        .route(
            g,
            "/api/v1/venues/{id}/playlists",
            &["POST"],
            act(Action::ContentWrite),
            post(resources::post_playlist),
        )
        .route(
            g,
            "/api/v1/venues/{id}/playlists/{playlist}",
            &["PATCH", "DELETE"],
            act(Action::ContentWrite),
            patch(resources::patch_playlist).delete(resources::delete_playlist),
        )
        .route(
            g,
            "/api/v1/venues/{id}/playlists/{playlist}/items",
            &["POST"],
            act(Action::ContentWrite),
            post(resources::post_item),
        )
        .route(
            g,
            "/api/v1/venues/{id}/playlists/{playlist}/items/{item}",
            &["PATCH", "DELETE"],
            act(Action::ContentWrite),
            patch(resources::patch_item).delete(resources::delete_item),
        )
        .route(
            g,
            "/api/v1/venues/{id}/assignments",
            &["PUT"],
            act(Action::ContentWrite),
            put(resources::put_assignments),
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
            "/api/v1/kiosks",
            &["GET"],
            act(Action::VenueRead),
            get(lists::list_kiosks),
        )
        .route(
            g,
            "/api/v1/media",
            &["GET"],
            act(Action::VenueRead),
            get(lists::list_media),
        )
        .route(
            g,
            "/api/v1/audit",
            &["GET"],
            act(Action::AuditRead),
            get(audit::get_audit),
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
        .route(
            g,
            "/api/v1/media/{hash}",
            &["GET"],
            act(Action::VenueRead),
            get(media::get_media),
        )
        .route(
            g,
            "/api/v1/media/{hash}",
            &["DELETE"],
            act(Action::MediaWrite),
            delete(media::delete_media),
        )
        .map_router(|r| r.layer(DefaultBodyLimit::max(BODY_LIMIT)));
    let max_upload = usize::try_from(state.config.max_upload_bytes).unwrap_or(usize::MAX);
    let upload_routes = Routes::new()
        .route(
            g,
            "/api/v1/media",
            &["PUT"],
            act(Action::MediaWrite),
            put(media::put_media),
        )
        .map_router(|r| r.layer(DefaultBodyLimit::max(max_upload)));
    json_routes.merge(upload_routes)
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

/// The HTTP application: every route of [`routes`] (each with its body limit), request
/// metrics, JSON writes and the `Host` check.
pub fn app(state: AppState) -> Router {
    let rules = std::sync::Arc::new(guard::RequestRules {
        hosts: HostPolicy::new(state.config.public_names.clone()),
        // The media upload is raw bytes; the dashboard's forms are forms (and carry the
        // session's CSRF token as a field).
        not_json: &[
            ("PUT", "/api/v1/media"),
            ("POST", "/login"),
            ("POST", "/logout"),
            ("POST", "/people"),
            ("POST", "/people/{id}"),
            ("POST", "/venues/{id}/enrollment-codes"),
            ("POST", "/venues/{id}/kiosk-codes"),
            ("POST", "/hubs/{id}/revoke"),
            ("POST", "/venues/{id}/kiosk-codes/{code}/revoke"),
            ("POST", "/venues/{id}/kiosks/{kiosk}/remove"),
            ("POST", "/tokens"),
            ("POST", "/tokens/{id}/revoke"),
            ("POST", "/venues/{id}/playlists"),
            ("POST", "/venues/{id}/playlists/{playlist}"),
        ],
    });
    let (router, _) = routes(&state).into_parts();
    router
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
