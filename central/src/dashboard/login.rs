//! Signing in and out of the dashboard.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use taplink_sync_io::web::guard;

use crate::http::{ApiError, SESSION_COOKIE};
use crate::state::AppState;

use super::{Section, html_response, page};

/// Where to go after signing in.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Next {
    next: Option<String>,
}

/// Only a path of this site: never another origin (`//evil.example`, `https://…`).
fn local(next: Option<&str>) -> &str {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => {
            path
        }
        _ => "/",
    }
}

fn form(next: &str, error: Option<&str>, username: &str) -> Markup {
    page(
        None,
        Section::Other,
        "Sign in",
        html! {
            div.login.card {
                h1 { "Sign in to Taplink" }
                @if let Some(error) = error {
                    p.notice.error role="alert" { (error) }
                }
                form method="post" action={ "/login?next=" (super::urlencode(next)) } {
                    // After a failed try the username is kept: the cursor goes to the password.
                    label for="username" { "Username"
                        input id="username" name="username" type="text" autocomplete="username" required autofocus[username.is_empty()] value=(username);
                    }
                    label for="password" { "Password"
                        input id="password" name="password" type="password" autocomplete="current-password" required autofocus[!username.is_empty()];
                    }
                    button type="submit" { "Sign in" }
                }
            }
        },
    )
}

/// `GET /login`.
pub(crate) async fn login_form(Query(next): Query<Next>) -> Response {
    html_response(StatusCode::OK, form(local(next.next.as_deref()), None, ""))
}

/// The sign-in form's fields.
#[derive(Debug, Deserialize)]
pub(crate) struct Credentials {
    username: String,
    password: String,
}

/// `POST /login`: the API's sign-in (same throttles, same one answer for every failure),
/// then the session cookie and back to where the person was going.
pub(crate) async fn login_submit(
    State(state): State<AppState>,
    guard::ClientIp(ip): guard::ClientIp,
    Query(next): Query<Next>,
    Form(credentials): Form<Credentials>,
) -> Response {
    let next = local(next.next.as_deref()).to_owned();
    let username = credentials.username.clone();
    match crate::http::sign_in(&state, ip, credentials.username, credentials.password).await {
        Ok(Ok(session)) => match crate::http::session_cookie(&state, &session.secret) {
            Ok(cookie) => {
                let mut response = Redirect::to(&next).into_response();
                response.headers_mut().insert(header::SET_COOKIE, cookie);
                response
            }
            Err(e) => e.into_response(),
        },
        Ok(Err(_throttled)) => html_response(
            StatusCode::TOO_MANY_REQUESTS,
            form(
                &next,
                Some("Too many failed sign-ins. Wait a little, then try again."),
                &username,
            ),
        ),
        Err(ApiError::SignInFailed) => html_response(
            StatusCode::UNAUTHORIZED,
            form(&next, Some("Wrong username or password."), &username),
        ),
        Err(e) => e.into_response(),
    }
}

/// `POST /logout`: the session ends; back to the sign-in page.
pub(crate) async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(secret) = crate::http::cookie_value(&headers, SESSION_COOKIE) {
        let secret = secret.to_owned();
        let registry = state.registry.clone();
        let _ = tokio::task::spawn_blocking(move || registry.end_session(&secret)).await;
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        axum::http::HeaderValue::from_static(crate::http::CLEARED_COOKIE),
    );
    response
}
