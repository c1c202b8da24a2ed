//! Who is asking: sign-in sessions and the one authentication layer of central's routes.
//!
//! - `POST /api/v1/auth/login` `{"username","password"}` → `200` with the session cookie
//!   (`taplink_session`: HttpOnly, SameSite=Strict, Secure unless central listens on
//!   loopback) and `{"csrf_token", "user"}`. Failures answer one sentence whatever went
//!   wrong, and count against both the client's address and the account in the guessing
//!   throttle.
//! - `POST /api/v1/auth/logout` ends the session; `GET /api/v1/auth/me` says who you are.
//!
//! [`authenticate`] is the layer behind `Access::User` and `Access::Act` routes
//! ([`Access`](taplink_sync_io::web::access::Access)): the bootstrap admin token (`Authorization: Bearer`), or a
//! live session whose writes carry the session's CSRF token in `X-CSRF-Token`. It puts the
//! [`Caller`] into the request for handlers, which authorize actions on venues with
//! `taplink_sync_proto::authz::authorize`.

use axum::RequestExt as _;
use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use taplink_sync_io::web::guard;
use taplink_sync_proto::authz::{Action, Denied, Principal, Role, Scope, Target, authorize};
use taplink_sync_proto::ids::{HubId, VenueId};
use taplink_sync_proto::note::{Author, Via};

use crate::state::AppState;
use crate::store::{AuditRecord, User, UserError, Venue};

use super::error::{ApiError, ApiJson, blocking};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "taplink_session";
/// The header a cookie-authenticated write must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Who is making a request, once [`authenticate`] let it through.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The bootstrap admin token (`taplink-central init` wrote it; revoke it once a first
    /// admin user exists).
    AdminToken,
    /// A signed-in user.
    User(User),
    /// An API token (`tlt1-…`), acting with its own role and scope.
    Token(crate::store::ApiToken),
}

impl Caller {
    /// The caller as a principal for `authorize`.
    pub fn principal(&self) -> Principal {
        match self {
            Caller::AdminToken => Principal {
                role: Role::Admin,
                scope: Scope::default(),
            },
            Caller::User(user) => user.principal(),
            Caller::Token(token) => token.principal.clone(),
        }
    }

    /// The caller as the author of a change ([`taplink_sync_proto::note`]) or an audit
    /// entry: ids, never names.
    pub fn author(&self) -> Author {
        match self {
            Caller::AdminToken => Author::AdminToken,
            Caller::User(user) => Author::User {
                id: user.id.to_string(),
            },
            Caller::Token(token) => Author::Token {
                id: token.id.clone(),
            },
        }
    }
}

/// The `User-Agent` prefix of central's own command line.
pub const CLI_USER_AGENT: &str = "taplink-central-cli/";

/// Through what a request came: the command line (its user agent), a browser session, or
/// the API.
fn via(req: &Request, caller: &Caller) -> Via {
    let agent = req
        .headers()
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if agent.starts_with(CLI_USER_AGENT) {
        Via::Cli
    } else if matches!(caller, Caller::User(_)) && cookie(req.headers(), SESSION_COOKIE).is_some() {
        Via::Web
    } else {
        Via::Api
    }
}

/// Which callers a route lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Required {
    /// Anyone signed in (or the admin token).
    User,
    /// Callers whose role and scope allow this action on the route's venue (the `{id}` of
    /// `/api/v1/venues/{id}…` and of the dashboard's `/venues/{id}…`, the venue of the hub `/api/v1/hubs/{id}…`, or the `venue`
    /// query parameter of other routes), or on the organisation for routes without one.
    Act(Action),
}

/// What a route's path says its request is about, for [`authorize`].
enum Subject {
    /// No venue in the path: the organisation (lists are filtered venue by venue).
    Org,
    /// This venue, with its tags.
    Venue(Venue),
    /// A venue or hub id that names nothing (or does not parse): non-admins are told it is
    /// outside their venues, so that they learn nothing of other venues.
    Unknown,
}

/// The venue a request is about, from its matched path and path parameters.
async fn subject_of(state: &AppState, req: &mut Request) -> Result<Subject, ApiError> {
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let id = match req.extract_parts::<RawPathParams>().await {
        Ok(params) => params
            .iter()
            .find(|(name, _)| *name == "id")
            .map(|(_, value)| value.to_owned()),
        Err(_) => None,
    };
    let registry = state.registry.clone();
    let venue = if names_venue_in_path(&template) {
        let Some(Ok(venue)) = id.map(|id| id.parse::<VenueId>()) else {
            return Ok(Subject::Unknown);
        };
        blocking(move || registry.venue(venue)).await?
    } else if template.starts_with("/api/v1/hubs/{id}") || template.starts_with("/hubs/{id}") {
        let Some(Ok(hub)) = id.map(|id| id.parse::<HubId>()) else {
            return Ok(Subject::Unknown);
        };
        blocking(move || {
            Ok::<_, crate::store::RegistryError>(match registry.hub(hub)? {
                Some(hub) => registry.venue(hub.venue)?,
                None => None,
            })
        })
        .await?
    } else if let Some(venue) = venue_query(req.uri().query()) {
        // Routes without a venue in the path (media, reports, audit) name one in the query.
        let Ok(venue) = venue.parse::<VenueId>() else {
            return Ok(Subject::Unknown);
        };
        blocking(move || registry.venue(venue)).await?
    } else {
        return Ok(Subject::Org);
    };
    Ok(venue.map_or(Subject::Unknown, Subject::Venue))
}

/// Whether a route template's `{id}` is a venue: the API's `/api/v1/venues/{id}…` and the
/// dashboard's `/venues/{id}…`.
fn names_venue_in_path(template: &str) -> bool {
    template.starts_with("/api/v1/venues/{id}") || template.starts_with("/venues/{id}")
}

/// The `venue` query parameter, if the query has one (percent-decoded).
pub(super) fn venue_query(query: Option<&str>) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query?).ok()?;
    pairs
        .into_iter()
        .find(|(name, _)| name == "venue")
        .map(|(_, value)| value)
}

/// Refuse a caller whose role or scope does not allow `action` on the request's subject.
async fn check_action(
    state: &AppState,
    caller: &Caller,
    action: Action,
    req: &mut Request,
) -> Result<(), ApiError> {
    let principal = caller.principal();
    if principal.role == Role::Admin {
        // Admins act everywhere; the handler answers 404 for what does not exist.
        return Ok(());
    }
    let denied = match subject_of(state, req).await? {
        Subject::Org => authorize(&principal, action, Target::Org).err(),
        Subject::Venue(venue) => authorize(
            &principal,
            action,
            Target::Venue {
                id: venue.id,
                tags: &venue.tags,
            },
        )
        .err(),
        Subject::Unknown => authorize(&principal, action, Target::Org)
            .err()
            .or(Some(Denied::OutOfScope)),
    };
    match denied {
        None => Ok(()),
        Some(denied) => Err(ApiError::Forbidden {
            reason: denied.to_string(),
        }),
    }
}

pub(crate) use taplink_sync_io::web::guard::cookie;

/// Whether a route template is one of the dashboard's pages (not the API): its refusals
/// are pages (a sign-in redirect, a 403 page) rather than JSON.
pub fn is_page(template: &str) -> bool {
    !template.starts_with("/api/") && template != "/healthz" && template != "/metrics"
}

/// The one authentication layer: see the module docs. A wrong admin token counts against
/// the client in the guessing throttle; a client that must wait is refused unchecked. For
/// the dashboard's pages a caller who is not signed in is sent to `/login`, and a refusal
/// is a page.
pub(super) async fn authenticate(
    State((state, required)): State<(AppState, Required)>,
    req: Request,
    next: Next,
) -> Response {
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let page_path = req.uri().path().to_owned();
    let caller_for_page = cookie(req.headers(), SESSION_COOKIE).map(str::to_owned);
    match authenticate_api(state.clone(), required, req, next).await {
        Ok(response) => response,
        Err(e) if is_page(&template) => {
            crate::dashboard::refusal(&state, e, &page_path, caller_for_page.as_deref()).await
        }
        Err(e) => e.into_response(),
    }
}

async fn authenticate_api(
    state: AppState,
    required: Required,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let ip = guard::client_ip(&req);
    let throttle = &state.metrics.throttle;
    if let Err(wait) = throttle.check(ip) {
        return Ok(guard::throttled_response(wait));
    }
    let caller = if let Some(token) = guard::bearer_token(req.headers()) {
        let token = token.to_owned();
        let kind = if token.starts_with(crate::store::TOKEN_PREFIX) {
            "api_token"
        } else {
            "admin_token"
        };
        let registry = state.registry.clone();
        let now = state.now();
        let found = blocking(move || {
            if token.starts_with(crate::store::TOKEN_PREFIX) {
                Ok::<_, crate::store::RegistryError>(
                    registry.check_api_token(&token, now)?.map(Caller::Token),
                )
            } else {
                Ok(registry
                    .check_admin_token(&token)?
                    .then_some(Caller::AdminToken))
            }
        })
        .await?;
        let Some(caller) = found else {
            throttle.fail(ip, kind);
            return Err(ApiError::Unauthorized);
        };
        throttle.succeed(ip);
        caller
    } else if let Some(secret) = cookie(req.headers(), SESSION_COOKIE) {
        let secret = secret.to_owned();
        let mut csrf = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if csrf.is_none() && is_form(req.headers()) {
            // A dashboard form carries the token as its `csrf_token` field.
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, super::BODY_LIMIT)
                .await
                .map_err(|_| ApiError::BodyTooLarge {
                    limit: super::BODY_LIMIT,
                })?;
            csrf = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
                .ok()
                .and_then(|pairs| {
                    pairs
                        .into_iter()
                        .find(|(k, _)| k == "csrf_token")
                        .map(|(_, v)| v)
                });
            req = Request::from_parts(parts, axum::body::Body::from(bytes));
        }
        let registry = state.registry.clone();
        let now = state.now();
        let found = blocking(move || registry.session_user(&secret, csrf.as_deref(), now)).await?;
        let Some((user, csrf_ok)) = found else {
            return Err(ApiError::NotSignedIn);
        };
        let safe = matches!(*req.method(), Method::GET | Method::HEAD);
        if !safe && !csrf_ok {
            return Err(ApiError::Forbidden {
                reason: "a signed-in write must carry the session's csrf_token in the X-CSRF-Token header".into(),
            });
        }
        Caller::User(user)
    } else {
        return Err(ApiError::NotSignedIn);
    };
    if let Required::Act(action) = required {
        check_action(&state, &caller, action, &mut req).await?;
    }
    let via = via(&req, &caller);
    req.extensions_mut().insert(via);
    req.extensions_mut().insert(caller.clone());
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return Ok(next.run(req).await);
    }
    // A write: keep what was asked (a JSON body, within the body limit) for the audit log.
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let venue = request_venue(&template, &mut req).await;
    let method = req.method().clone();
    let query = req.uri().query().map(str::to_owned);
    let (req, body) = if is_form(req.headers()) {
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, super::BODY_LIMIT)
            .await
            .map_err(|_| ApiError::BodyTooLarge {
                limit: super::BODY_LIMIT,
            })?;
        let fields = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
            .ok()
            .map(|pairs| {
                pairs
                    .into_iter()
                    .filter(|(k, _)| k != "csrf_token")
                    .map(|(k, v)| (k, serde_json::Value::from(v)))
                    .collect::<serde_json::Map<_, _>>()
                    .into()
            });
        (
            Request::from_parts(parts, axum::body::Body::from(bytes)),
            fields,
        )
    } else if is_json(req.headers()) {
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, super::BODY_LIMIT)
            .await
            .map_err(|_| ApiError::BodyTooLarge {
                limit: super::BODY_LIMIT,
            })?;
        let body = serde_json::from_slice::<serde_json::Value>(&bytes).ok();
        (
            Request::from_parts(parts, axum::body::Body::from(bytes)),
            body,
        )
    } else {
        (req, None)
    };
    let response = next.run(req).await;
    // A page's form that worked answers with a redirect (a failed one re-renders with 4xx).
    let done = response.status().is_success()
        || (is_page(&template) && response.status().is_redirection());
    if done && response.extensions().get::<ChangeAudited>().is_none() {
        let record = AuditRecord {
            at_ms: state.now().timestamp_millis(),
            actor: actor_of(&caller),
            via,
            origin: "central".to_owned(),
            venue,
            action: format!("{method} {template}"),
            detail: serde_json::json!({
                "query": query,
                "body": body.map(|b| redact(&template, b)),
                "status": response.status().as_u16(),
            }),
            heads: Vec::new(),
            flag: None,
        };
        let registry = state.registry.clone();
        let now = state.now();
        if let Err(e) = blocking(move || registry.record_audit(&record, now)).await {
            // The change is made and durable; say loudly that its record is missing.
            tracing::error!(error = ?e, action = %format!("{method} {template}"), "could not record a change in the audit log");
        }
    }
    Ok(response)
}

/// Marks a response whose change is recorded by the document's audit (its change note),
/// so the request is not recorded twice.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChangeAudited;

/// The audit log's actor for a caller.
pub(super) fn actor_of(caller: &Caller) -> String {
    match caller.author() {
        Author::User { id } => format!("user:{id}"),
        Author::Token { id } => format!("token:{id}"),
        _ => "admin_token".to_owned(),
    }
}

/// Fields never written to the audit log: secrets, and personal data (the log is kept
/// after a person is deleted; data-policy.md).
const REDACTED: &[&str] = &["password", "token", "username", "display_name"];

/// The only fields kept of a request about people (users, tokens), whose free text (a
/// token's name) may name someone.
const PEOPLE_FIELDS: &[&str] = &[
    "role",
    "venues",
    "tags",
    "expires_in_days",
    "disabled",
    "action",
];

/// `value` with every [`REDACTED`] field's value replaced, and on the people routes every
/// field but [`PEOPLE_FIELDS`].
fn redact(template: &str, value: serde_json::Value) -> serde_json::Value {
    let people = template.starts_with("/api/v1/users")
        || template.starts_with("/api/v1/tokens")
        || template.starts_with("/people");
    redact_value(value, &|key| {
        REDACTED.contains(&key) || (people && !PEOPLE_FIELDS.contains(&key))
    })
}

fn redact_value(value: serde_json::Value, hide: &dyn Fn(&str) -> bool) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| {
                if hide(&k) {
                    (k, serde_json::Value::from("(redacted)"))
                } else {
                    (k, redact_value(v, hide))
                }
            })
            .collect(),
        serde_json::Value::Array(items) => {
            items.into_iter().map(|v| redact_value(v, hide)).collect()
        }
        other => other,
    }
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// The venue a write names in its path (`/api/v1/venues/{id}…`, `/venues/{id}…`) or query.
async fn request_venue(template: &str, req: &mut Request) -> Option<VenueId> {
    if names_venue_in_path(template) {
        let params = req.extract_parts::<RawPathParams>().await.ok()?;
        let id = params.iter().find(|(name, _)| *name == "id")?.1.to_owned();
        id.parse().ok()
    } else {
        venue_query(req.uri().query())?.parse().ok()
    }
}

/// `POST /api/v1/auth/login` body.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The username (any letter case).
    pub username: String,
    /// The password.
    pub password: String,
}

/// A user as the API shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserJson {
    /// The id.
    pub id: String,
    /// The username.
    pub username: String,
    /// The display name.
    pub display_name: String,
    /// `admin`, `technician`, `store_staff` or `viewer`.
    #[schema(value_type = String)]
    pub role: Role,
    /// Venues and tags the role applies to (ignored for admins).
    #[schema(value_type = Object)]
    pub scope: Scope,
    /// Whether the account is disabled.
    pub disabled: bool,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Last sign-in, RFC 3339.
    pub last_login_at: Option<String>,
}

impl From<&User> for UserJson {
    fn from(u: &User) -> Self {
        UserJson {
            id: u.id.to_string(),
            username: u.username.clone(),
            display_name: u.display_name.clone(),
            role: u.role,
            scope: u.scope.clone(),
            disabled: u.disabled,
            created_at: crate::rfc3339(u.created_at),
            last_login_at: u.last_login_at.map(crate::rfc3339),
        }
    }
}

/// `POST /api/v1/auth/login` answer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoginResponse {
    /// Send it back in `X-CSRF-Token` on every write made with the session cookie.
    pub csrf_token: String,
    /// Who signed in.
    pub user: UserJson,
}

/// Sign `username` in from `ip`: the throttles per address and per account, one answer
/// for every failure. `Ok(Err(response))` is the throttle's 429. The API's and the
/// dashboard's sign-in both come here.
pub(crate) async fn sign_in(
    state: &AppState,
    ip: std::net::IpAddr,
    username: String,
    password: String,
) -> Result<Result<crate::store::Session, Response>, ApiError> {
    let account = username.to_lowercase();
    let (by_ip, by_account) = (&state.metrics.throttle, &state.metrics.account_throttle);
    if let Err(wait) = by_ip.check(ip).and(by_account.check(account.clone())) {
        return Ok(Err(guard::throttled_response(wait)));
    }
    let registry = state.registry.clone();
    let now = state.now();
    let signed = blocking(move || match registry.sign_in(&username, &password, now) {
        Err(UserError::BadCredentials) => Ok(None),
        other => other.map(Some),
    })
    .await?;
    let Some(session) = signed else {
        by_ip.fail(ip, "password");
        by_account.fail(account, "password");
        return Err(ApiError::SignInFailed);
    };
    by_ip.succeed(ip);
    by_account.succeed(account);
    tracing::info!(user = %session.user.username, "signed in");
    Ok(Ok(session))
}

/// The `Set-Cookie` value of a new session (Secure unless central listens on loopback).
pub(crate) fn session_cookie(state: &AppState, secret: &str) -> Result<HeaderValue, ApiError> {
    let secure = if state.config.http_listen.ip().is_loopback() {
        ""
    } else {
        "; Secure"
    };
    let cookie = format!(
        "{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        crate::store::SESSION_MAX.num_seconds()
    );
    HeaderValue::from_str(&cookie).map_err(|e| ApiError::internal("session cookie", e))
}

/// The `Set-Cookie` value that ends a session in the browser.
pub(crate) const CLEARED_COOKIE: &str =
    "taplink_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0";

/// `POST /api/v1/auth/login`.
pub(super) async fn login(
    State(state): State<AppState>,
    guard::ClientIp(ip): guard::ClientIp,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let LoginRequest { username, password } = body;
    let session = match sign_in(&state, ip, username, password).await? {
        Ok(session) => session,
        Err(throttled) => return Ok(throttled),
    };
    let mut response = Json(LoginResponse {
        csrf_token: session.csrf_token,
        user: UserJson::from(&session.user),
    })
    .into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&state, &session.secret)?);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `POST /api/v1/auth/logout`: the session ends and the cookie is cleared.
pub(super) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(secret) = cookie(&headers, SESSION_COOKIE) {
        let secret = secret.to_owned();
        let registry = state.registry.clone();
        blocking(move || registry.end_session(&secret)).await?;
    }
    let mut response = axum::http::StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, HeaderValue::from_static(CLEARED_COOKIE));
    Ok(response)
}

/// `GET /api/v1/auth/me` answer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MeResponse {
    /// `user`, `token` or `admin_token`.
    pub kind: String,
    /// The user, when signed in as one.
    pub user: Option<UserJson>,
    /// The role in effect.
    #[schema(value_type = String)]
    pub role: Role,
}

/// `GET /api/v1/auth/me`.
pub(super) async fn me(Extension(caller): Extension<Caller>) -> Json<MeResponse> {
    Json(match &caller {
        Caller::Token(token) => MeResponse {
            kind: "token".into(),
            user: None,
            role: token.principal.role,
        },
        Caller::AdminToken => MeResponse {
            kind: "admin_token".into(),
            user: None,
            role: Role::Admin,
        },
        Caller::User(user) => MeResponse {
            kind: "user".into(),
            user: Some(UserJson::from(user)),
            role: user.role,
        },
    })
}
