//! `/people` (admins): the organisation's users — roles, scopes, disabling, password
//! resets, and adding a person. The forms call the same functions as the users API
//! (`http::create_user`, `http::update_user`), so the same rules hold (a non-admin needs a
//! venue or tag; nobody disables or demotes themselves).

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::{Markup, html};
use serde::Deserialize;
use taplink_sync_proto::authz::{Role, VenueTag};
use taplink_sync_proto::ids::{UserId, VenueId};

use crate::http::{ApiError, Caller, CreateUserRequest, UpdateUserRequest};
use crate::state::AppState;
use crate::store::{User, Venue};

use super::{Section, Viewer, html_response, page, role_name};

/// A notice after a change (`?done=`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Done {
    done: Option<String>,
}

async fn load(state: &AppState) -> Result<(Vec<User>, Vec<Venue>), ApiError> {
    let registry = state.registry.clone();
    tokio::task::spawn_blocking(move || {
        Ok::<_, ApiError>((registry.list_users()?, registry.list_venues()?))
    })
    .await
    .map_err(|e| ApiError::internal("loading people", e))?
}

fn scope_text(user: &User, names: &BTreeMap<VenueId, String>) -> Markup {
    html! {
        @if user.role == Role::Admin {
            span.muted { "Every venue" }
        } @else {
            @for v in &user.scope.venues {
                span.tag { (names.get(v).map_or_else(|| v.to_string(), Clone::clone)) }
            }
            @for t in &user.scope.tags { span.tag { "tag " (t) } }
        }
    }
}

fn render(
    viewer: &Viewer,
    me: Option<UserId>,
    users: &[User],
    venues: &[Venue],
    notice: Option<&str>,
    error: Option<&str>,
) -> Markup {
    let names: BTreeMap<VenueId, String> = venues.iter().map(|v| (v.id, v.name.clone())).collect();
    let body = html! {
        h1 { "People" }
        @if let Some(notice) = notice { p.notice role="status" style="background:#dafbe1;border:1px solid #4ac26b" { (notice) } }
        @if let Some(error) = error { p.notice.error role="alert" { (error) } }
        table.fleet {
            thead { tr { th { "Person" } th { "Role" } th { "Venues" } th { "Status" } th { "Last sign-in" } th { "Actions" } } }
            tbody {
                @for user in users {
                    tr data-user=(user.username) {
                        td data-label="Person" { strong { (user.display_name) } br; span.muted { (user.username) } }
                        td data-label="Role" { (role_name(user.role)) }
                        td data-label="Venues" { (scope_text(user, &names)) }
                        td data-label="Status" { @if user.disabled { span.state.offline { "Disabled" } } @else { span.state.online { "Active" } } }
                        td data-label="Last sign-in" { (user.last_login_at.map_or_else(|| "never".to_owned(), crate::rfc3339)) }
                        td data-label="Actions" {
                            @if Some(user.id) == me {
                                span.muted { "You" }
                            } @else {
                                form method="post" action={ "/people/" (user.id) } style="display:inline" {
                                    input type="hidden" name="csrf_token" value=(viewer.csrf);
                                    @if user.disabled {
                                        button.secondary type="submit" name="action" value="enable" { "Enable" }
                                    } @else {
                                        button.secondary type="submit" name="action" value="disable" { "Disable" }
                                    }
                                }
                                form method="post" action={ "/people/" (user.id) } style="display:flex;gap:.5rem;margin-top:.5rem;flex-wrap:wrap" {
                                    input type="hidden" name="csrf_token" value=(viewer.csrf);
                                    input type="hidden" name="action" value="reset";
                                    label { "New password" input type="password" name="password" autocomplete="new-password" minlength="10" required; }
                                    button.secondary type="submit" { "Reset password" }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.card style="margin-top:1rem" {
            h2 { "Add a person" }
            form.filters method="post" action="/people" {
                input type="hidden" name="csrf_token" value=(viewer.csrf);
                label for="new-username" { "Username" input id="new-username" name="username" required autocomplete="off"; }
                label for="new-display" { "Name shown" input id="new-display" name="display_name"; }
                label for="new-role" { "Role"
                    select id="new-role" name="role" {
                        @for role in Role::ALL { option value=(role.as_str()) selected[role == Role::StoreStaff] { (role_name(role)) } }
                    }
                }
                label for="new-venues" { "Venues"
                    select id="new-venues" name="venues" multiple size="4" {
                        @for v in venues { option value=(v.id) { (v.name) } }
                    }
                }
                label for="new-tags" { "Venue tags (comma-separated)" input id="new-tags" name="tags" placeholder="region:north"; }
                label for="new-password" { "Password" input id="new-password" name="password" type="password" autocomplete="new-password" minlength="10" required; }
                button type="submit" { "Add person" }
            }
            p.muted { "Store staff, technicians and viewers act only in the venues and tags you give them. API tokens are made by each person on " a href="/tokens" { "API tokens" } "." }
        }
    };
    page(Some(viewer), Section::People, "People", body)
}

fn my_id(caller: &Caller) -> Option<UserId> {
    match caller {
        Caller::User(user) => Some(user.id),
        _ => None,
    }
}

/// `GET /people`.
pub(crate) async fn people(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(done): Query<Done>,
) -> Response {
    let viewer = Viewer::of(&caller, &headers);
    match load(&state).await {
        Ok((users, venues)) => html_response(
            StatusCode::OK,
            render(
                &viewer,
                my_id(&caller),
                &users,
                &venues,
                done.done.as_deref(),
                None,
            ),
        ),
        Err(e) => e.into_response(),
    }
}

/// Re-render the page with `error` (nothing changed).
async fn failed(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    error: &ApiError,
) -> Response {
    let viewer = Viewer::of(caller, headers);
    match load(state).await {
        Ok((users, venues)) => html_response(
            error.status(),
            render(
                &viewer,
                my_id(caller),
                &users,
                &venues,
                None,
                Some(&error.to_string()),
            ),
        ),
        Err(e) => e.into_response(),
    }
}

/// `POST /people`: add a person.
pub(crate) async fn add_person(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    };
    let parsed = (|| {
        let role: Role =
            serde_json::from_value(serde_json::Value::from(get("role"))).map_err(|_| {
                ApiError::InvalidField {
                    field: "role",
                    message: "choose a role".to_owned(),
                }
            })?;
        let venues: BTreeSet<VenueId> = fields
            .iter()
            .filter(|(k, _)| k == "venues")
            .map(|(_, v)| v.parse())
            .collect::<Result<_, _>>()
            .map_err(
                |e: taplink_sync_proto::ids::ParseIdError| ApiError::InvalidField {
                    field: "venues",
                    message: e.to_string(),
                },
            )?;
        let tags: BTreeSet<VenueTag> = get("tags")
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(
                |e: taplink_sync_proto::authz::ParseTagError| ApiError::InvalidField {
                    field: "tags",
                    message: e.to_string(),
                },
            )?;
        Ok::<_, ApiError>(CreateUserRequest {
            username: get("username"),
            display_name: get("display_name"),
            role,
            venues,
            tags,
            password: fields
                .iter()
                .find(|(k, _)| k == "password")
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
        })
    })();
    let result = match parsed {
        Ok(request) => crate::http::create_user(&state, request).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(user) => Redirect::to(&format!(
            "/people?done={}",
            super::urlencode(&format!("Added {}.", user.username))
        ))
        .into_response(),
        Err(e) => failed(&state, &caller, &headers, &e).await,
    }
}

/// A row's form: `action` is `disable`, `enable` or `reset` (with `password`).
#[derive(Debug, Deserialize)]
pub(crate) struct RowAction {
    action: String,
    #[serde(default)]
    password: Option<String>,
}

/// `POST /people/{id}`: disable, enable, or reset a person's password.
pub(crate) async fn change_person(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<RowAction>,
) -> Response {
    let Ok(id) = id.parse::<UserId>() else {
        return failed(
            &state,
            &caller,
            &headers,
            &ApiError::NotFound {
                what: "this person".to_owned(),
            },
        )
        .await;
    };
    let (request, said) = match form.action.as_str() {
        "disable" => (
            UpdateUserRequest {
                disabled: Some(true),
                ..Default::default()
            },
            "disabled",
        ),
        "enable" => (
            UpdateUserRequest {
                disabled: Some(false),
                ..Default::default()
            },
            "enabled",
        ),
        "reset" => (
            UpdateUserRequest {
                password: form.password,
                ..Default::default()
            },
            "given a new password",
        ),
        _ => {
            let e = ApiError::InvalidField {
                field: "action",
                message: "use disable, enable or reset".to_owned(),
            };
            return failed(&state, &caller, &headers, &e).await;
        }
    };
    match crate::http::update_user(&state, &caller, id, request).await {
        Ok(user) => Redirect::to(&format!(
            "/people?done={}",
            super::urlencode(&format!("{} was {said}.", user.username))
        ))
        .into_response(),
        Err(e) => failed(&state, &caller, &headers, &e).await,
    }
}
