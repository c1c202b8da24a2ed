//! `/tokens`: a person's API tokens (an admin sees everyone's) — make one (shown once),
//! see when each was last used, revoke. The forms call the tokens API's own functions
//! (`http::create_token`, `token_list`, `revoke_token`), so its rules hold: a token has
//! its maker's role or viewer, and a scope within the maker's.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::{Markup, html};
use serde::Deserialize;
use taplink_sync_proto::authz::Role;

use crate::http::{ApiError, Caller, CreateTokenRequest, CreatedToken, TokenList};
use crate::state::AppState;

use super::{Section, Viewer, html_response, page, role_name, urlencode};

/// A notice after a change (`?done=`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Done {
    #[serde(default)]
    done: Option<String>,
}

fn render(
    viewer: &Viewer,
    list: &TokenList,
    made: Option<&CreatedToken>,
    notice: Option<&str>,
    error: Option<&ApiError>,
) -> Markup {
    let body = html! {
        h1 { "API tokens" }
        p.muted {
            "A token lets a script or another system use " a href="/api/docs/" { "the API" }
            " as you, or with less: it has your role or viewer, and acts only in your venues. Send it as "
            code { "Authorization: Bearer <token>" } "."
        }
        @if let Some(notice) = notice { p.notice.ok role="status" { (notice) } }
        @if let Some(error) = error { p.notice.error role="alert" { (error) } }
        @if let Some(made) = made {
            section.card.shown-once aria-label="New token" {
                h2 { "Your new token " (made.record.name) }
                p { "Copy it now: it is shown only once. Keep it like a password." }
                p { code.code data-token { (made.token) } }
                p.muted { "Valid until " (made.record.expires_at) "." }
            }
        }
        form.card.inline method="post" action="/tokens" {
            input type="hidden" name="csrf_token" value=(viewer.csrf);
            label for="token-name" { "Name" input id="token-name" name="name" required maxlength="100" placeholder="menu-board sync"; }
            label for="token-role" { "Role"
                select id="token-role" name="role" {
                    option value=(role_value(viewer.role)) selected { (role_name(viewer.role)) " (yours)" }
                    @if viewer.role != Role::Viewer { option value="viewer" { "Viewer (read only)" } }
                }
            }
            label for="token-days" { "Valid for"
                select id="token-days" name="expires_in_days" {
                    option value="30" { "30 days" }
                    option value="90" selected { "90 days" }
                    option value="365" { "1 year" }
                }
            }
            button type="submit" { "Make a token" }
        }
        @if list.tokens.is_empty() {
            div.card { p { "No tokens yet." } }
        } @else {
            table.fleet {
                thead { tr { th { "Name" } th { "Role" } th { "Made" } th { "Expires" } th { "Last used" } th { "State" } th {} } }
                tbody {
                    @for t in &list.tokens {
                        tr data-token-id=(t.id) {
                            td data-label="Name" { strong { (t.name) } }
                            td data-label="Role" { (role_name(t.role)) }
                            td data-label="Made" { (t.created_at) }
                            td data-label="Expires" { (t.expires_at) }
                            td data-label="Last used" { (t.last_used_at.clone().unwrap_or_else(|| "never".to_owned())) }
                            td data-label="State" {
                                @if t.revoked_at.is_some() { span.state.offline { "Revoked" } } @else { span.state.online { "Active" } }
                            }
                            td {
                                @if t.revoked_at.is_none() {
                                    form method="post" action={ "/tokens/" (t.id) "/revoke" } {
                                        input type="hidden" name="csrf_token" value=(viewer.csrf);
                                        button.secondary type="submit" aria-label={ "Revoke " (t.name) } { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page(Some(viewer), Section::Tokens, "API tokens", body)
}

fn role_value(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::Technician => "technician",
        Role::StoreStaff => "store_staff",
        Role::Viewer => "viewer",
    }
}

async fn show(
    state: &AppState,
    caller: &Caller,
    viewer: &Viewer,
    made: Option<&CreatedToken>,
    notice: Option<&str>,
    error: Option<&ApiError>,
) -> Response {
    match crate::http::token_list(state, caller).await {
        Ok(list) => {
            let status = error.map_or(StatusCode::OK, ApiError::status);
            html_response(status, render(viewer, &list, made, notice, error))
        }
        Err(e) => e.into_response(),
    }
}

/// `GET /tokens`.
pub(crate) async fn tokens(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(done): Query<Done>,
) -> Response {
    let viewer = Viewer::of(&caller, &headers);
    show(&state, &caller, &viewer, None, done.done.as_deref(), None).await
}

/// The new-token form.
#[derive(Debug, Deserialize)]
pub(crate) struct NewToken {
    name: String,
    role: String,
    expires_in_days: i64,
}

/// `POST /tokens`: make a token; the page shows it once.
pub(crate) async fn make_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Form(form): Form<NewToken>,
) -> Response {
    let viewer = Viewer::of(&caller, &headers);
    let role = serde_json::from_value::<Role>(serde_json::Value::from(form.role)).map_err(|_| {
        ApiError::InvalidField {
            field: "role",
            message: "choose a role".to_owned(),
        }
    });
    let made = match role {
        Ok(role) => {
            let request = CreateTokenRequest {
                name: form.name.trim().to_owned(),
                role: Some(role),
                venues: None,
                tags: None,
                expires_in_days: Some(form.expires_in_days),
            };
            crate::http::create_token(&state, &caller, request).await
        }
        Err(e) => Err(e),
    };
    match made {
        Ok(made) => show(&state, &caller, &viewer, Some(&made), None, None).await,
        Err(e) => show(&state, &caller, &viewer, None, None, Some(&e)).await,
    }
}

/// `POST /tokens/{id}/revoke`.
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match crate::http::revoke_token(&state, &caller, id).await {
        Ok(()) => Redirect::to(&format!("/tokens?done={}", urlencode("Revoked."))).into_response(),
        Err(e) => {
            let viewer = Viewer::of(&caller, &headers);
            show(&state, &caller, &viewer, None, None, Some(&e)).await
        }
    }
}
