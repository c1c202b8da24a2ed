//! People at the hub: store staff and technicians sign in with their central account,
//! checked against the venue's signed roster (`store/roster.rs`), so it works with the
//! internet down. The same rules as central: argon2 through
//! `taplink_sync_io::password` (an unknown name costs the same as a wrong password), the
//! guessing throttle of every secret route, an HttpOnly SameSite=Strict session cookie
//! (`Secure` unless the hub serves plain HTTP in a lab), the CSRF token derived from it
//! (`X-CSRF-Token` on every write), and `authorize` with the role the roster gives, in this
//! venue only.
//!
//! - `POST /api/v1/auth/login` `{username, password}` → `200 {csrf_token, user}` + cookie.
//! - `POST /api/v1/auth/logout` → `204`.
//! - `GET /api/v1/auth/me` → `{kind, user?, role?}`.
//!
//! A session is checked against the roster held *now* on every request: a person the
//! newest roster disables or no longer lists is refused at once, and their sessions end.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use taplink_sync_io::password::{self, MAX_PASSWORD_BYTES, SESSION_MAX, csrf_token_for};
use taplink_sync_io::web::guard;
use taplink_sync_proto::authz::{Action, Principal, Role, Scope, Target, authorize};
use taplink_sync_proto::ids::{UserId, VenueId};

use crate::error::{ApiError, body as limited, parse_json};
use crate::http::{HubState, Staff};
use crate::store::roster::HeldRoster;

/// The session cookie's name (central's too).
pub const SESSION_COOKIE: &str = "taplink_session";
/// The header a signed-in person's writes carry the CSRF token in (central's too).
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A person signed in at the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// Their central id.
    pub id: UserId,
    /// Their role, from the roster.
    pub role: Role,
}

impl Person {
    /// Whether they may take `action` in this hub's venue (`authorize`, the one
    /// permission check, with the scope of this venue: the roster lists only people whose
    /// scope covers it).
    pub fn authorize(&self, venue: VenueId, action: Action) -> Result<(), ApiError> {
        let principal = Principal {
            role: self.role,
            scope: Scope {
                venues: BTreeSet::from([venue]),
                tags: BTreeSet::new(),
            },
        };
        authorize(
            &principal,
            action,
            Target::Venue {
                id: venue,
                tags: &BTreeSet::new(),
            },
        )
        .map_err(|denied| ApiError::Forbidden(denied.to_string()))
    }
}

pub(crate) use taplink_sync_io::web::guard::cookie;

/// Whether the held roster may still sign people in: always while the hub is in touch
/// with central, and while offline for `roster_valid_offline_s` after the last contact
/// (if set; by default for as long as the hub is offline).
fn roster_usable(s: &HubState, held: &HeldRoster, now: chrono::DateTime<chrono::Utc>) -> bool {
    match s.roster_valid_offline {
        None => true,
        Some(limit) => s.uplink.borrow().connected || now - held.contact_at <= limit,
    }
}

/// The refusal when the roster is too old to trust.
fn stale() -> ApiError {
    ApiError::Unauthorized(
        "this hub has been out of touch with central for longer than its roster may be used (roster_valid_offline_s); reconnect it to central, or use `taplink-hub local-admin` on the device".into(),
    )
}

/// The staff of a request that carries a session cookie: the person, if their session is
/// live and the roster held now lists them enabled; writes need the session's CSRF token.
pub(crate) async fn session_staff(
    s: &Arc<HubState>,
    headers: &HeaderMap,
    writes: bool,
) -> Result<Staff, ApiError> {
    let Some(secret) = cookie(headers, SESSION_COOKIE).map(str::to_owned) else {
        return Err(ApiError::Unauthorized(
            "sign in first (POST /api/v1/auth/login), or send `Authorization: Bearer <staff token>`".into(),
        ));
    };
    if writes {
        let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if sent != Some(csrf_token_for(&secret).as_str()) {
            return Err(ApiError::Forbidden(
                "missing or wrong X-CSRF-Token header: send the csrf_token from sign-in".into(),
            ));
        }
    }
    let (store, now) = (s.store.clone(), s.clock.now());
    let hub = s.clone();
    let found = tokio::task::spawn_blocking(move || {
        let Some(user) = store.session_user(&secret, now)? else {
            return Ok(None);
        };
        let roster = store.held_roster()?;
        if roster
            .as_ref()
            .is_some_and(|h| !roster_usable(&hub, h, now))
        {
            return Ok(Some(Err(())));
        }
        let person = roster
            .as_ref()
            .and_then(|h| h.roster.users.iter().find(|u| u.id == user));
        match person {
            Some(p) if !p.disabled => Ok(Some(Ok((p.id, p.username.clone(), p.role)))),
            _ => {
                // Disabled or gone in the newest roster: every session of theirs ends.
                store.end_sessions_of(user)?;
                Ok(None)
            }
        }
    })
    .await
    .map_err(|e| ApiError::internal("the session check task failed", e))?
    .map_err(|e: crate::store::StoreError| ApiError::internal("checking a session", e))?;
    match found {
        Some(Err(())) => Err(stale()),
        Some(Ok((id, username, role))) => Ok(Staff {
            name: username,
            person: Some(Person { id, role }),
        }),
        None => Err(ApiError::Unauthorized(
            "your session has ended (signed out, expired, or your account was disabled); sign in again".into(),
        )),
    }
}

/// `POST /api/v1/auth/login` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    username: String,
    password: String,
}

/// `POST /api/v1/auth/login` (secret: behind the guessing throttle).
pub(crate) async fn login(
    State(s): State<Arc<HubState>>,
    guard::ClientIp(ip): guard::ClientIp,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let login: Login = parse_json(&limited(body)?)?;
    if login.password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::BadRequest(format!(
            "field `password`: at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    let (store, hub, now) = (s.store.clone(), s.clone(), s.clock.now());
    let checked = tokio::task::spawn_blocking(move || {
        let held = store.held_roster()?;
        let Some(held) = held else {
            return Ok(Err(false));
        };
        if !roster_usable(&hub, &held, now) {
            return Ok(Err(true));
        }
        let user = held.roster.user(&login.username).cloned();
        let ok = match &user {
            Some(u) => password::verify_password(&login.password, &u.password_hash) && !u.disabled,
            None => {
                let _ = password::verify_password(&login.password, password::decoy_hash());
                false
            }
        };
        Ok::<_, crate::store::StoreError>(Ok(user.filter(|_| ok)))
    })
    .await
    .map_err(|e| ApiError::internal("the sign-in task failed", e))?
    .map_err(|e| ApiError::internal("reading the roster", e))?;
    let user = match checked {
        Err(true) => return Err(stale()),
        Err(false) => {
            return Err(ApiError::Unauthorized(
                "this hub has no roster from central yet (it has never reached central), so nobody can sign in; use a staff token made on the hub (`taplink-hub token create`)".into(),
            ));
        }
        Ok(None) => {
            s.metrics.throttle.fail(ip, "password");
            return Err(ApiError::Unauthorized("wrong username or password".into()));
        }
        Ok(Some(user)) => user,
    };
    s.metrics.throttle.succeed(ip);
    let (store, now, id) = (s.store.clone(), s.clock.now(), user.id);
    let secret = tokio::task::spawn_blocking(move || store.create_session(id, now))
        .await
        .map_err(|e| ApiError::internal("the session task failed", e))?
        .map_err(|e| ApiError::internal("creating a session", e))?;
    tracing::info!(user = %user.id, role = %user.role, "signed in at the hub");
    let secure = if s.plain_http { "" } else { "; Secure" };
    let cookie = format!(
        "{SESSION_COOKIE}={secret}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        SESSION_MAX.num_seconds()
    );
    let mut response = Json(json!({
        "csrf_token": csrf_token_for(&secret),
        "user": { "id": user.id, "username": user.username, "role": user.role },
    }))
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

/// `POST /api/v1/auth/logout`.
pub(crate) async fn logout(
    State(s): State<Arc<HubState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(secret) = cookie(&headers, SESSION_COOKIE).map(str::to_owned) {
        let store = s.store.clone();
        tokio::task::spawn_blocking(move || store.end_session(&secret))
            .await
            .map_err(|e| ApiError::internal("the sign-out task failed", e))?
            .map_err(|e| ApiError::internal("ending a session", e))?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("taplink_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    Ok(response)
}

/// `GET /api/v1/auth/me`.
pub(crate) async fn me(staff: Staff) -> Json<serde_json::Value> {
    Json(match &staff.person {
        Some(p) => json!({ "kind": "user", "user": p.id, "username": staff.name, "role": p.role }),
        None => json!({ "kind": "staff_token", "name": staff.name }),
    })
}
