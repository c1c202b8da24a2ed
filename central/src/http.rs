//! Central's HTTP side: health, metrics and the admin REST API (`/api/v1`).
//!
//! | Method | Path                                   | Auth  | Success                      |
//! |--------|----------------------------------------|-------|------------------------------|
//! | GET    | `/healthz`                             | none  | 200 `{"status":"ok","db":"ok"}` (503 if the registry fails) |
//! | GET    | `/metrics`                             | none  | 200 OpenMetrics text         |
//! | POST   | `/api/v1/venues`                       | admin | 201 venue (`{name, timezone}` in) |
//! | GET    | `/api/v1/venues`                       | admin | 200 `{"venues": [...]}`      |
//! | GET    | `/api/v1/venues/{id}`                  | admin | 200 venue                    |
//! | POST   | `/api/v1/venues/{id}/enrollment-codes` | admin | 201 `{code, venue_id, expires_at, central_fingerprint}` (optional `{ttl}` in, e.g. `"2h"`) |
//! | POST   | `/api/v1/venues/{id}/kiosk-codes`      | admin | 201 `{id, venue_id, code, name, group, playlist, expires_at}` (`{name, expires_in_hours?, group?, playlist?}` in) |
//! | GET    | `/api/v1/venues/{id}/kiosk-codes`      | admin | 200 `{"kiosk_codes": [...]}` (never the codes) |
//! | DELETE | `/api/v1/venues/{id}/kiosk-codes/{code id}` | admin | 204 (revoked, or forgotten if used) |
//! | GET    | `/api/v1/hubs[?venue=<id>]`            | admin | 200 `{"hubs": [...]}`        |
//! | GET    | `/api/v1/hubs/{id}`                    | admin | 200 hub                      |
//! | POST   | `/api/v1/hubs/{id}/revoke`             | admin | 200 hub (revoking twice keeps the first time) |
//!
//! "admin" means `Authorization: Bearer <admin token>`; without a valid one the answer is
//! 401. Every error is JSON `{"error": "<sentence>"}` ([`ApiError`]). Bodies are limited to
//! [`BODY_LIMIT`] bytes. Handlers never touch SQLite on the async runtime: registry calls
//! run in `spawn_blocking`.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection};
use axum::extract::{
    DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Path, Query, Request, State,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};
use axum::{Json, Router};
use data_encoding::HEXLOWER;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use taplink_sync_io::web::access::{Access, Gate, Routes};
use taplink_sync_io::web::guard::{self, HostPolicy};
use taplink_sync_proto::doc::DocOpError;
use taplink_sync_proto::doc::KioskGrant;
use taplink_sync_proto::ids::{GrantId, HubId, KioskId, PlaylistId, VenueId};

use crate::config::Ttl;
use crate::enroll_token::EnrollmentToken;
use crate::kiosk_codes::{
    DEFAULT_KIOSK_CODE_TTL_HOURS, KioskCodeError, KioskCodeRequest, create_kiosk_code,
    list_kiosk_codes, revoke_kiosk_code,
};
use crate::state::AppState;
use crate::store::{HubRecord, RegistryError, Venue};
use crate::timefmt::{from_unix_ms, rfc3339};
use crate::venue::{CreateVenueError, create_venue};

/// Largest request body accepted: 64 KiB, far more than any admin request needs.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Every route of central with who may use it: the one place access is declared.
pub fn routes(state: &AppState) -> Routes<AppState> {
    let gate = CentralGate(state.clone());
    let g = &gate;
    let admin = Access::Admin;
    Routes::new()
        .route(g, "/healthz", &["GET"], Access::Public, get(healthz))
        .route(g, "/metrics", &["GET"], Access::Public, get(metrics))
        .route(
            g,
            "/api/v1/venues",
            &["GET", "POST"],
            admin,
            get(list_venues).post(post_venue),
        )
        .route(g, "/api/v1/venues/{id}", &["GET"], admin, get(get_venue))
        .route(
            g,
            "/api/v1/venues/{id}/enrollment-codes",
            &["POST"],
            admin,
            post(post_enrollment_code),
        )
        .route(
            g,
            "/api/v1/venues/{id}/kiosk-codes",
            &["GET", "POST"],
            admin,
            get(get_kiosk_codes).post(post_kiosk_code),
        )
        .route(
            g,
            "/api/v1/venues/{id}/kiosk-codes/{code}",
            &["DELETE"],
            admin,
            delete(delete_kiosk_code),
        )
        .route(g, "/api/v1/hubs", &["GET"], admin, get(list_hubs))
        .route(g, "/api/v1/hubs/{id}", &["GET"], admin, get(get_hub))
        .route(
            g,
            "/api/v1/hubs/{id}/revoke",
            &["POST"],
            admin,
            post(revoke_hub),
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
            Access::Admin => route.route_layer(middleware::from_fn_with_state(
                self.0.clone(),
                require_admin,
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
// Errors
// ---------------------------------------------------------------------------------------

/// Why an HTTP request failed. Each variant is one status; the body is
/// `{"error": "<the Display text>"}`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 401: no `Authorization: Bearer` header, or a token that is unknown or revoked.
    #[error(
        "missing or wrong admin token: send `Authorization: Bearer <token>` with the token \
         `taplink-central init` wrote to <data dir>/admin-token"
    )]
    Unauthorized,
    /// 400: the body is not JSON of the expected shape (the message names the field).
    #[error("invalid request body: {message}")]
    InvalidBody {
        /// What the JSON parser reported.
        message: String,
    },
    /// 400: a field has a value the server refuses.
    #[error("field `{field}`: {message}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// Why it was refused.
        message: String,
    },
    /// 400: a path segment is not a valid id.
    #[error("invalid path: {message}")]
    InvalidPath {
        /// What is wrong with it.
        message: String,
    },
    /// 400: a query parameter is invalid.
    #[error("invalid query parameter `{param}`: {message}")]
    InvalidQuery {
        /// The parameter (or `query` for the whole query string).
        param: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// 413: the body exceeds [`BODY_LIMIT`].
    #[error("the request body is larger than the {limit}-byte limit")]
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// 415: a JSON body was sent without `Content-Type: application/json`.
    #[error("send the body as JSON with the header `Content-Type: application/json`")]
    UnsupportedMediaType,
    /// 404: the named thing does not exist.
    #[error("{what} does not exist")]
    NotFound {
        /// What was asked for, e.g. `venue 0123...`.
        what: String,
    },
    /// 404: no route has this path.
    #[error("no route for {method} {path}; the admin API lives under /api/v1")]
    NoRoute {
        /// The request method.
        method: Method,
        /// The request path.
        path: String,
    },
    /// 405: the route exists but not with this method.
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The request method.
        method: Method,
        /// The request path.
        path: String,
    },
    /// 409: the request conflicts with the current state.
    #[error("{message}")]
    Conflict {
        /// What conflicts.
        message: String,
    },
    /// 503: the registry cannot be used right now.
    #[error("central is unavailable: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
    /// 500: a bug or a storage failure. The response says only this fixed sentence: the
    /// detail (which may name files, tables or internal state) went to central's log with
    /// what was being done when the error was made ([`ApiError::internal`]).
    #[error(
        "central could not complete this request; the failure has been logged on central for its operator"
    )]
    Internal,
}

impl ApiError {
    /// Log `error` with `context` and return [`ApiError::Internal`].
    fn internal(context: &'static str, error: impl Display) -> ApiError {
        tracing::error!(%error, "central request failed: {context}");
        ApiError::Internal
    }

    /// The response status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::InvalidBody { .. }
            | ApiError::InvalidField { .. }
            | ApiError::InvalidPath { .. }
            | ApiError::InvalidQuery { .. } => StatusCode::BAD_REQUEST,
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotFound { .. } | ApiError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A sentence a person can act on.
    pub error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (
            status,
            Json(ErrorBody {
                error: self.to_string(),
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> ApiError {
        match e {
            RegistryError::Invalid { field, reason } => ApiError::InvalidField {
                field,
                message: reason,
            },
            RegistryError::UnknownVenue { venue } => ApiError::NotFound {
                what: format!("venue {venue}"),
            },
            RegistryError::UnknownHub { hub } => ApiError::NotFound {
                what: format!("hub {hub}"),
            },
            e @ RegistryError::HubExists { .. } => ApiError::Conflict {
                message: e.to_string(),
            },
            e @ (RegistryError::Sqlite { .. } | RegistryError::Encode { .. }) => {
                ApiError::internal("registry operation failed", e)
            }
        }
    }
}

impl From<CreateVenueError> for ApiError {
    fn from(e: CreateVenueError) -> ApiError {
        match e {
            CreateVenueError::Invalid(e @ DocOpError::UnknownTimezone(_)) => {
                ApiError::InvalidField {
                    field: "timezone",
                    message: e.to_string(),
                }
            }
            CreateVenueError::Invalid(e @ DocOpError::InvalidName { .. }) => {
                ApiError::InvalidField {
                    field: "name",
                    message: e.to_string(),
                }
            }
            CreateVenueError::Invalid(e) => ApiError::InvalidBody {
                message: e.to_string(),
            },
            CreateVenueError::Registry(e) => e.into(),
            e @ CreateVenueError::Document(_) => ApiError::internal(
                "venue created in the registry but its document was not stored",
                e,
            ),
        }
    }
}

impl From<KioskCodeError> for ApiError {
    fn from(e: KioskCodeError) -> ApiError {
        let field = |field, e: DocOpError| ApiError::InvalidField {
            field,
            message: e.to_string(),
        };
        match e {
            KioskCodeError::UnknownVenue { venue } => ApiError::NotFound {
                what: format!("venue {venue}"),
            },
            e @ KioskCodeError::InvalidTtl { .. } => ApiError::InvalidField {
                field: "expires_in_hours",
                message: e.to_string(),
            },
            KioskCodeError::Refused(e) => match e {
                DocOpError::InvalidName { what: "group", .. } => field("group", e),
                DocOpError::InvalidName { .. } => field("name", e),
                DocOpError::PlaylistNotFound(_) => field("playlist", e),
                DocOpError::InvalidGrant(_) => field("expires_in_hours", e),
                DocOpError::GrantNotFound(grant) => ApiError::NotFound {
                    what: format!("kiosk code {grant}"),
                },
                e @ DocOpError::TooManyGrants { .. } => ApiError::Conflict {
                    message: e.to_string(),
                },
                other => ApiError::internal("kiosk code refused by the venue document", other),
            },
            KioskCodeError::Registry(e) => e.into(),
            e @ (KioskCodeError::Documents(_) | KioskCodeError::Storage(_)) => {
                ApiError::internal("kiosk code: venue document failed", e)
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        let text = rejection.body_text();
        // axum prefixes serde's message (which names the field and position) with a
        // generic sentence; the rest is what a person needs.
        let detail = |prefix: &str| text.strip_prefix(prefix).unwrap_or(&text).to_owned();
        match rejection {
            JsonRejection::JsonDataError(_) => ApiError::InvalidBody {
                message: detail("Failed to deserialize the JSON body into the target type: "),
            },
            JsonRejection::JsonSyntaxError(_) => ApiError::InvalidBody {
                message: format!(
                    "not valid JSON: {}",
                    detail("Failed to parse the request body as JSON: ")
                ),
            },
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::BodyTooLarge { limit: BODY_LIMIT }
            }
            other => ApiError::InvalidBody {
                message: other.body_text(),
            },
        }
    }
}

// ---------------------------------------------------------------------------------------
// Extractors that answer with ApiError
// ---------------------------------------------------------------------------------------

/// A JSON body; malformed bodies become [`ApiError`]s that name the field.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(value)| ApiJson(value))
            .map_err(ApiError::from)
    }
}

/// One path parameter parsed with `FromStr` (ids); a bad one is a 400 naming the id kind.
#[derive(Debug, Clone, Copy)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: FromStr,
    T::Err: Display,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::InvalidPath {
                message: e.body_text(),
            })?;
        raw.parse()
            .map(ApiPath)
            .map_err(|e: T::Err| ApiError::InvalidPath {
                message: e.to_string(),
            })
    }
}

/// Run a blocking registry call off the async runtime.
async fn blocking<T, E>(f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Send + 'static,
    ApiError: From<E>,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal("registry task failed", e))?
        .map_err(ApiError::from)
}

// ---------------------------------------------------------------------------------------
// Middleware
// ---------------------------------------------------------------------------------------

/// Admin routes: a valid admin token. A client that sends wrong tokens waits longer and
/// longer before the next one is even checked (the guessing throttle).
async fn require_admin(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let ip = guard::client_ip(&req);
    let throttle = &state.metrics.throttle;
    if let Err(wait) = throttle.check(ip) {
        return Ok(guard::throttled_response(wait));
    }
    let token = bearer_token(req.headers())
        .ok_or(ApiError::Unauthorized)?
        .to_owned();
    let registry = state.registry.clone();
    if !blocking(move || registry.check_admin_token(&token)).await? {
        throttle.fail(ip, "admin_token");
        return Err(ApiError::Unauthorized);
    }
    throttle.succeed(ip);
    Ok(next.run(req).await)
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

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
    let text = state
        .metrics
        .encode()
        .map_err(|e| ApiError::internal("encoding metrics failed", e))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

// ---------------------------------------------------------------------------------------
// Venues
// ---------------------------------------------------------------------------------------

/// `POST /api/v1/venues` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateVenueRequest {
    /// Display name, 1 to 100 characters.
    pub name: String,
    /// IANA time zone name, e.g. `Europe/Berlin`.
    pub timezone: String,
}

/// A venue as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VenueJson {
    /// The venue id.
    pub id: VenueId,
    /// Display name.
    pub name: String,
    /// IANA time zone name.
    pub timezone: String,
    /// Creation time, RFC 3339.
    pub created_at: String,
}

impl From<&Venue> for VenueJson {
    fn from(v: &Venue) -> VenueJson {
        VenueJson {
            id: v.id,
            name: v.name.clone(),
            timezone: v.timezone.clone(),
            created_at: rfc3339(v.created_at),
        }
    }
}

/// `GET /api/v1/venues` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VenueList {
    /// Every venue, oldest first.
    pub venues: Vec<VenueJson>,
}

async fn post_venue(
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
        Json(VenueJson::from(&new)),
    )
        .into_response())
}

async fn list_venues(State(state): State<AppState>) -> Result<Json<VenueList>, ApiError> {
    let registry = state.registry.clone();
    let venues = blocking(move || registry.list_venues()).await?;
    Ok(Json(VenueList {
        venues: venues.iter().map(VenueJson::from).collect(),
    }))
}

async fn get_venue(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<VenueId>,
) -> Result<Json<VenueJson>, ApiError> {
    let registry = state.registry.clone();
    blocking(move || registry.venue(id))
        .await?
        .map(|v| Json(VenueJson::from(&v)))
        .ok_or(ApiError::NotFound {
            what: format!("venue {id}"),
        })
}

/// `POST /api/v1/venues/{id}/enrollment-codes` body: give `code` to whoever installs the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentCodeJson {
    /// The enrollment token (`tl1-...`, see [`EnrollmentToken`]); shown only this once.
    pub code: String,
    /// The venue the hub will join.
    pub venue_id: VenueId,
    /// The first instant the code is no longer accepted, RFC 3339.
    pub expires_at: String,
    /// Central's certificate fingerprint (`sha256:<hex>`), also inside `code`.
    pub central_fingerprint: String,
}

/// `POST /api/v1/venues/{id}/enrollment-codes` body; optional (an empty body takes every
/// default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEnrollmentCodeRequest {
    /// How long the code stays valid: a whole number and a unit, e.g. `30m`, `24h`, `7d`
    /// (default: the config's `enrollment_code_ttl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

async fn post_enrollment_code(
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
    let ttl = match request.ttl {
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
    Ok((
        StatusCode::CREATED,
        // The body holds a secret: no cache may keep it.
        [(header::CACHE_CONTROL, "no-store")],
        Json(EnrollmentCodeJson {
            code: token.to_string(),
            venue_id: venue,
            expires_at: rfc3339(code.expires_at),
            central_fingerprint: central.to_string(),
        }),
    )
        .into_response())
}

// ---------------------------------------------------------------------------------------
// Kiosk codes
// ---------------------------------------------------------------------------------------

/// `POST /api/v1/venues/{id}/kiosk-codes` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKioskCodeRequest {
    /// The name the kiosk gets, 1 to 100 characters without control characters.
    pub name: String,
    /// Hours until the code expires, 1 to 2160 (90 days); default 168 (a week).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_hours: Option<u32>,
    /// The group the kiosk joins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The kiosk's own playlist (must exist in the venue document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playlist: Option<PlaylistId>,
}

/// `POST /api/v1/venues/{id}/kiosk-codes` answer: give `code` to whoever sets up the kiosk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KioskCodeJson {
    /// The code's id (its grant in the venue document), to list or revoke it.
    pub id: GrantId,
    /// The venue.
    pub venue_id: VenueId,
    /// The code (`XXXX-XXXX-XXXX-XXXX`); shown only this once, stored only hashed.
    pub code: String,
    /// The kiosk's name.
    pub name: String,
    /// Its group.
    pub group: Option<String>,
    /// Its playlist.
    pub playlist: Option<PlaylistId>,
    /// The first instant the code is no longer accepted, RFC 3339.
    pub expires_at: String,
}

/// A kiosk code as listed (without the code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KioskGrantJson {
    /// The code's id.
    pub id: GrantId,
    /// The kiosk's name.
    pub name: String,
    /// Its group.
    pub group: Option<String>,
    /// Its playlist.
    pub playlist: Option<PlaylistId>,
    /// When it was created, RFC 3339.
    pub created_at: String,
    /// When it expires (or expired), RFC 3339.
    pub expires_at: String,
    /// `open` (can pair a kiosk), `used` (paired `kiosk`) or `expired`.
    pub state: String,
    /// The kiosk it paired, once the hub's redemption has reached central.
    pub kiosk: Option<KioskId>,
    /// When it paired that kiosk (the hub's clock), RFC 3339.
    pub used_at: Option<String>,
}

/// `GET /api/v1/venues/{id}/kiosk-codes` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KioskCodeList {
    /// The venue's kiosk codes, oldest first.
    pub kiosk_codes: Vec<KioskGrantJson>,
}

fn ms_rfc3339(ms: i64) -> String {
    from_unix_ms(ms).map_or_else(|_| ms.to_string(), rfc3339)
}

impl KioskGrantJson {
    fn new(id: GrantId, g: KioskGrant, now_ms: i64) -> KioskGrantJson {
        let state = if g.consumed_by.is_some() {
            "used"
        } else if g.is_open(now_ms) {
            "open"
        } else {
            "expired"
        };
        KioskGrantJson {
            id,
            state: state.to_owned(),
            created_at: ms_rfc3339(g.created_at_ms),
            expires_at: ms_rfc3339(g.expires_at_ms),
            kiosk: g.consumed_by,
            used_at: g.consumed_at_ms.map(ms_rfc3339),
            name: g.name,
            group: g.group,
            playlist: g.playlist,
        }
    }
}

async fn post_kiosk_code(
    State(state): State<AppState>,
    ApiPath(venue): ApiPath<VenueId>,
    ApiJson(body): ApiJson<CreateKioskCodeRequest>,
) -> Result<Response, ApiError> {
    let registry = state.registry.clone();
    let docs = state.docs.clone();
    let now = state.now();
    let request = KioskCodeRequest {
        name: body.name,
        expires_in_hours: body
            .expires_in_hours
            .unwrap_or(DEFAULT_KIOSK_CODE_TTL_HOURS),
        group: body.group,
        playlist: body.playlist,
    };
    let issued =
        blocking(move || create_kiosk_code(&registry, &docs, venue, &request, now)).await?;
    let expires_at = ms_rfc3339(issued.stored.expires_at_ms);
    tracing::info!(%venue, code = %issued.grant, name = %issued.stored.name, %expires_at, "kiosk code created");
    Ok((
        StatusCode::CREATED,
        // The body holds a secret: no cache may keep it.
        [(header::CACHE_CONTROL, "no-store")],
        Json(KioskCodeJson {
            id: issued.grant,
            venue_id: venue,
            code: issued.code.to_string(),
            name: issued.stored.name,
            group: issued.stored.group,
            playlist: issued.stored.playlist,
            expires_at,
        }),
    )
        .into_response())
}

async fn get_kiosk_codes(
    State(state): State<AppState>,
    ApiPath(venue): ApiPath<VenueId>,
) -> Result<Json<KioskCodeList>, ApiError> {
    let registry = state.registry.clone();
    let docs = state.docs.clone();
    let now_ms = crate::timefmt::to_unix_ms(state.now());
    let grants = blocking(move || list_kiosk_codes(&registry, &docs, venue)).await?;
    Ok(Json(KioskCodeList {
        kiosk_codes: grants
            .into_iter()
            .map(|(id, g)| KioskGrantJson::new(id, g, now_ms))
            .collect(),
    }))
}

async fn delete_kiosk_code(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let invalid = |message: String| ApiError::InvalidPath { message };
    let Path((venue, grant)) = path.map_err(|e| invalid(e.body_text()))?;
    let venue: VenueId = venue.parse().map_err(|e| invalid(format!("{e}")))?;
    let grant: GrantId = grant
        .parse()
        .map_err(|e| invalid(format!("kiosk code id: {e}")))?;
    let registry = state.registry.clone();
    let docs = state.docs.clone();
    blocking(move || revoke_kiosk_code(&registry, &docs, venue, grant)).await?;
    tracing::info!(%venue, code = %grant, "kiosk code revoked");
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------
// Hubs
// ---------------------------------------------------------------------------------------

/// A hub as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubJson {
    /// The hub id.
    pub id: HubId,
    /// Its venue.
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubList {
    /// The hubs, in enrollment order.
    pub hubs: Vec<HubJson>,
}

/// `GET /api/v1/hubs` query.
#[derive(Debug, Clone, Deserialize)]
struct HubsQuery {
    /// Only this venue's hubs.
    venue: Option<String>,
}

async fn list_hubs(
    State(state): State<AppState>,
    query: Result<Query<HubsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<HubList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::InvalidQuery {
        param: "query",
        message: e.body_text(),
    })?;
    let venue = query
        .venue
        .map(|v| v.parse::<VenueId>())
        .transpose()
        .map_err(|e| ApiError::InvalidQuery {
            param: "venue",
            message: e.to_string(),
        })?;
    let registry = state.registry.clone();
    let hubs = blocking(move || {
        if let Some(venue) = venue
            && registry.venue(venue)?.is_none()
        {
            return Err(RegistryError::UnknownVenue { venue });
        }
        registry.list_hubs(venue)
    })
    .await?;
    Ok(Json(HubList {
        hubs: hubs
            .iter()
            .map(|h| HubJson::from(h).online_in(&state))
            .collect(),
    }))
}

async fn get_hub(
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

async fn revoke_hub(
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
