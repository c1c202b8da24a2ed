//! The dashboard: central's web pages for admins, technicians, store staff and viewers.
//!
//! Server-rendered HTML (maud: templates compiled into the binary, no build step), one
//! stylesheet; the few scripts (uploads, live overview, dragging items) only enhance pages that work without them. Every page is a route declared in `http::routes()` with
//! its `Access`, so it passes the same authentication layer and the same `authorize` as the
//! API: a page a role may not use is refused (as a page), and a link or button to it is
//! not shown (`Viewer::may`). A caller who is not signed in is sent to `/login`. Forms post
//! their session's CSRF token as the `csrf_token` field (`store::csrf_token_for`); the
//! layer checks it like the API's `X-CSRF-Token` header.
//!
//! | Page | Access |
//! |------|--------|
//! | `GET /login`, `POST /login` | public / secret (the sign-in throttle) |
//! | `POST /logout` | user |
//! | `GET /` (the fleet overview) | venue_read |
//! | `GET /live/overview?venues=` (its live updates: server-sent events) | venue_read |
//! | `GET /assets/fleet.js` | public |
//! | `GET /media[?venue=]` (the library; uploads and deletions through the API) | venue_read |
//! | `GET /assets/media.js` | public |
//! | `GET /reports` (proof of play: chart and table) | venue_read |
//! | `GET /venues/{id}/provisioning`, `POST /venues/{id}/kiosk-codes` | kiosk_code_manage |
//! | `POST /venues/{id}/enrollment-codes` (the code shown once, with a QR code) | hub_enroll |
//! | `POST /venues/{id}/kiosk-codes/{code}/revoke` | kiosk_code_manage |
//! | `POST /venues/{id}/kiosks/{kiosk}/remove` (unpair) | pairing_manage |
//! | `POST /hubs/{id}/revoke` | hub_revoke |
//! | `GET /audit` | audit_read |
//! | `GET /tokens`, `POST /tokens`, `POST /tokens/{id}/revoke` (one's own API tokens; an admin's: all) | token_manage |
//! | `GET /people`, `POST /people`, `POST /people/{id}` (add, disable, enable, reset) | user_manage |
//! | `GET /venues/{id}` (a venue: kiosk health, content proof, why this is playing, playlists with their week) | venue_read on that venue |
//! | `POST /venues/{id}/playlists` (create one, `name`) | content_write |
//! | `GET /venues/{id}/playlists/{playlist}` (the editor; controls only with content_write) | venue_read |
//! | `POST /venues/{id}/playlists/{playlist}` (one editor form, `op`; see `dashboard/playlist.rs`) | content_write |
//! | `GET /assets/playlist.js` | public |
//! | `GET /assets/style.css` | public |

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use taplink_sync_proto::authz::{Action, Principal, Role, Target, authorize};

use crate::http::{ApiError, Caller, SESSION_COOKIE};
use crate::state::AppState;

mod audit;
mod fleet;
mod login;
mod media;
mod people;
mod playlist;
mod provisioning;
mod reports;
mod timeline;
mod tokens;
mod venue;

pub(crate) use audit::audit;
pub(crate) use fleet::{live as live_overview, overview};
pub(crate) use login::{login_form, login_submit, logout};
pub(crate) use media::{media, script as media_script};
pub(crate) use people::{add_person, change_person, people};
pub(crate) use playlist::{
    change as change_playlist, create as create_playlist, editor as playlist_editor,
};
pub(crate) use provisioning::{
    new_enrollment_code, new_kiosk_code, provisioning, remove_kiosk, revoke_hub, revoke_kiosk_code,
};
pub(crate) use reports::reports;
pub(crate) use tokens::{make_token, revoke as revoke_token, tokens};
pub(crate) use venue::venue_page;

/// The stylesheet.
const STYLE: &str = include_str!("dashboard/style.css");

/// The playlist editor's drag and drop.
const PLAYLIST_JS: &str = include_str!("dashboard/playlist.js");

/// The overview's live updates.
const FLEET_JS: &str = include_str!("dashboard/fleet.js");

/// `GET /assets/fleet.js`.
pub(crate) async fn fleet_script() -> Response {
    asset(JAVASCRIPT, FLEET_JS)
}

/// `GET /assets/playlist.js`.
pub(crate) async fn playlist_script() -> Response {
    asset(JAVASCRIPT, PLAYLIST_JS)
}

/// `GET /assets/style.css`.
pub(crate) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// The type of the dashboard's scripts.
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// One of the dashboard's files, compiled into the binary: cached for an hour.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Who is looking at a page: for the header, the forms' CSRF token, and which controls to
/// show.
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    /// The name to show.
    pub name: String,
    /// Their role.
    pub role: Role,
    /// Their role and scope.
    pub principal: Principal,
    /// The session's CSRF token, for forms.
    pub csrf: String,
}

impl Viewer {
    /// The viewer of a request let through by the authentication layer.
    pub(crate) fn of(caller: &Caller, headers: &HeaderMap) -> Viewer {
        let principal = caller.principal();
        let name = match caller {
            Caller::User(user) => {
                if user.display_name.is_empty() {
                    user.username.clone()
                } else {
                    user.display_name.clone()
                }
            }
            Caller::Token(token) => format!("token {}", token.name),
            Caller::AdminToken => "admin token".to_owned(),
        };
        let csrf = crate::http::cookie_value(headers, SESSION_COOKIE)
            .map(crate::store::csrf_token_for)
            .unwrap_or_default();
        Viewer {
            name,
            role: principal.role,
            principal,
            csrf,
        }
    }

    /// The venues the viewer's lists may show.
    pub(crate) fn reach(&self) -> crate::store::Reach {
        if self.principal.role == Role::Admin {
            crate::store::Reach::All
        } else {
            crate::store::Reach::Scope(self.principal.scope.clone())
        }
    }

    /// Whether the viewer may take `action` somewhere (on the organisation, or in a venue
    /// of their scope): whether to show its link or button.
    pub(crate) fn may(&self, action: Action) -> bool {
        self.principal.role == Role::Admin
            || authorize(&self.principal, action, Target::Org).is_ok()
                && (!self.principal.scope.venues.is_empty()
                    || !self.principal.scope.tags.is_empty())
    }
}

/// Which section a page belongs to (marked in the navigation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    /// The fleet overview.
    Fleet,
    /// People (admins).
    People,
    /// The audit log.
    Audit,
    /// Proof of play.
    Reports,
    /// The media library.
    Media,
    /// API tokens.
    Tokens,
    /// None of the navigation's.
    Other,
}

/// A whole page: the header with the navigation the viewer may use, then `body`.
pub(crate) fn page(viewer: Option<&Viewer>, section: Section, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Taplink" }
                link rel="stylesheet" href="/assets/style.css";
            }
            body {
                @if let Some(viewer) = viewer {
                    header.top {
                        a.brand href="/" { "Taplink" }
                        nav aria-label="Sections" {
                            @if viewer.may(Action::VenueRead) {
                                a href="/" aria-current=[(section == Section::Fleet).then_some("page")] { "Venues" }
                            }
                            @if viewer.may(Action::UserManage) {
                                a href="/people" aria-current=[(section == Section::People).then_some("page")] { "People" }
                            }
                            @if viewer.may(Action::VenueRead) {
                                a href="/media" aria-current=[(section == Section::Media).then_some("page")] { "Media" }
                            }
                            @if viewer.may(Action::VenueRead) {
                                a href="/reports" aria-current=[(section == Section::Reports).then_some("page")] { "Proof of play" }
                            }
                            @if viewer.may(Action::AuditRead) {
                                a href="/audit" aria-current=[(section == Section::Audit).then_some("page")] { "Audit log" }
                            }
                            @if viewer.may(Action::TokenManage) {
                                a href="/tokens" aria-current=[(section == Section::Tokens).then_some("page")] { "API tokens" }
                            }
                            a href="/api/docs/" { "API" }
                        }
                        div.who {
                            span { (viewer.name) " · " span.muted style="color:#dfe6f0" { (role_name(viewer.role)) } }
                            form method="post" action="/logout" {
                                input type="hidden" name="csrf_token" value=(viewer.csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A small preview of a media file, fetched from `GET /api/v1/media/{hash}` (which checks
/// the viewer may read it): the image itself, scaled and loaded lazily, or a video's first
/// frame (`preload="metadata"` reads only its start), over a placeholder that names the
/// kind when the browser shows neither.
pub(crate) fn thumb(
    hash: &str,
    content_type: &str,
    venue: Option<taplink_sync_proto::ids::VenueId>,
    name: &str,
) -> Markup {
    let src = match venue {
        Some(v) => format!("/api/v1/media/{hash}?venue={v}"),
        None => format!("/api/v1/media/{hash}"),
    };
    let video = content_type.starts_with("video/");
    html! {
        span.thumb data-kind=(if video { "video" } else { "image" }) {
            @if video {
                video src={ (src) "#t=0.5" } preload="metadata" muted playsinline aria-label={ "First frame of " (name) } {}
            } @else {
                img src=(src) loading="lazy" decoding="async" alt={ "Preview of " (name) };
            }
        }
    }
}

/// A role as people say it.
pub(crate) fn role_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "Admin",
        Role::Technician => "Technician",
        Role::StoreStaff => "Store staff",
        Role::Viewer => "Viewer",
    }
}

/// An HTML answer.
pub(crate) fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// What a page answers when the authentication layer refuses: not signed in → the
/// sign-in page (coming back here after); anything else → a page that says why.
pub(crate) async fn refusal(
    _state: &AppState,
    error: ApiError,
    path: &str,
    _session: Option<&str>,
) -> Response {
    match error {
        ApiError::NotSignedIn | ApiError::Unauthorized => {
            let next = if path == "/" {
                String::new()
            } else {
                format!("?next={}", urlencode(path))
            };
            axum::response::Redirect::to(&format!("/login{next}")).into_response()
        }
        other => {
            let status = other.status();
            let message = other.to_string();
            html_response(
                status,
                page(
                    None,
                    Section::Other,
                    "Not allowed",
                    html! {
                        div.card {
                            h1 { "You cannot open this page" }
                            p { (message) }
                            p { a href="/" { "Back to the overview" } " · " a href="/login" { "Sign in as someone else" } }
                        }
                    },
                ),
            )
        }
    }
}

/// `text` percent-encoded for a query string.
pub(crate) fn urlencode(text: &str) -> String {
    serde_urlencoded::to_string([("", text)])
        .map(|s| s.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}
