//! People: users made by an admin, sign-in sessions with a cookie and a CSRF token, one
//! answer for every failed sign-in, the guessing throttle per account, and admin routes
//! closed to other roles.

use axum::Router;
use axum::http::{StatusCode, header};
use serde_json::json;
use taplink_central::http::app;
use taplink_sync_io::web::guard::FREE_FAILURES;

use crate::support::{Answer, Initialised, call, request, with_session};

const PASSWORD: &str = "correct horse battery";

async fn create_user(app: &Router, token: &str, body: serde_json::Value) -> Answer {
    call(
        app,
        request(
            "POST",
            "/api/v1/users",
            Some(token),
            Some(&body.to_string()),
        ),
    )
    .await
}

async fn login(app: &Router, username: &str, password: &str) -> Answer {
    let body = json!({"username": username, "password": password}).to_string();
    call(
        app,
        request("POST", "/api/v1/auth/login", None, Some(&body)),
    )
    .await
}

/// The `name=value` part of the session's `Set-Cookie`.
fn session_cookie(answer: &Answer) -> String {
    let set = answer.headers[header::SET_COOKIE].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn a_signed_in_admin_works_with_a_cookie_and_csrf_guards_every_write() {
    let init = Initialised::new();
    let app = app(init.state());
    let made = create_user(
        &app,
        &init.token(),
        json!({"username": "Ada", "role": "admin", "password": PASSWORD}),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text());
    assert_eq!(made.json()["username"], "Ada");
    assert!(made.json()["id"].is_string());
    assert!(made.json().get("password").is_none() && !made.text().contains("argon2"));
    // Usernames are unique whatever the letter case.
    let again = create_user(
        &app,
        &init.token(),
        json!({"username": "ada", "role": "viewer", "tags": ["region:north"], "password": PASSWORD}),
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text());

    let signed = login(&app, "ADA", PASSWORD).await;
    assert_eq!(signed.status, StatusCode::OK, "{}", signed.text());
    let set_cookie = signed.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    for attribute in ["taplink_session=", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    // Central listens on loopback in this test: plain HTTP there, so no `Secure`.
    assert!(!set_cookie.contains("Secure"), "{set_cookie}");
    let csrf = signed.json()["csrf_token"].as_str().unwrap().to_owned();
    assert_eq!(signed.json()["user"]["username"], "Ada");
    let cookie = session_cookie(&signed);

    let me = call(
        &app,
        with_session("GET", "/api/v1/auth/me", &cookie, None, None),
    )
    .await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text());
    assert_eq!(me.json()["kind"], "user");
    assert_eq!(me.json()["role"], "admin");
    assert_eq!(me.json()["user"]["username"], "Ada");

    // Reads need no CSRF token; writes do, and it must be this session's.
    let venues = call(
        &app,
        with_session("GET", "/api/v1/venues", &cookie, None, None),
    )
    .await;
    assert_eq!(venues.status, StatusCode::OK, "{}", venues.text());
    let venue = r#"{"name":"The Anchor","timezone":"Europe/London"}"#;
    for token in [None, Some("not-the-token")] {
        let refused = call(
            &app,
            with_session("POST", "/api/v1/venues", &cookie, token, Some(venue)),
        )
        .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{token:?}");
        assert!(
            refused.error().contains("X-CSRF-Token"),
            "{}",
            refused.error()
        );
    }
    let made = call(
        &app,
        with_session("POST", "/api/v1/venues", &cookie, Some(&csrf), Some(venue)),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text());

    // Signing out ends the session for good.
    let out = call(
        &app,
        with_session("POST", "/api/v1/auth/logout", &cookie, Some(&csrf), None),
    )
    .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert!(
        out.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let gone = call(
        &app,
        with_session("GET", "/api/v1/auth/me", &cookie, None, None),
    )
    .await;
    assert_eq!(gone.status, StatusCode::UNAUTHORIZED);
    // A made-up cookie is no session either.
    let forged = call(
        &app,
        with_session(
            "GET",
            "/api/v1/auth/me",
            "taplink_session=forged",
            None,
            None,
        ),
    )
    .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn failed_sign_ins_say_nothing_about_which_part_was_wrong_and_are_throttled() {
    let init = Initialised::new();
    let app = app(init.state());
    let made = create_user(
        &app,
        &init.token(),
        json!({"username": "grace", "role": "admin", "password": PASSWORD}),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED);
    let unknown = login(&app, "nobody", PASSWORD).await;
    let wrong = login(&app, "grace", "not the password").await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.error(), wrong.error());
    assert_eq!(wrong.error(), "wrong username or password");
    // Keep guessing: after the free failures the client (and the account) must wait, and
    // even the right password is not checked until then.
    let mut throttled = false;
    for _ in 0..FREE_FAILURES + 2 {
        let answer = login(&app, "grace", "still not it").await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            assert!(answer.headers.contains_key(header::RETRY_AFTER));
            throttled = true;
        }
    }
    assert!(throttled, "a guessing run was never slowed");
    let right = login(&app, "grace", PASSWORD).await;
    assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn other_roles_are_kept_off_admin_routes_and_users_are_checked_field_by_field() {
    let init = Initialised::new();
    let state = init.state();
    let app = app(state.clone());
    let token = init.token();
    let venue = state
        .registry
        .create_venue("The Anchor", "Europe/London", crate::support::now())
        .unwrap()
        .id;
    let made = create_user(
        &app,
        &token,
        json!({"username": "sam", "role": "store_staff", "venues": [venue.to_string()], "password": PASSWORD}),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text());
    assert_eq!(made.json()["scope"]["venues"][0], venue.to_string());
    let signed = login(&app, "sam", PASSWORD).await;
    let cookie = session_cookie(&signed);
    let me = call(
        &app,
        with_session("GET", "/api/v1/auth/me", &cookie, None, None),
    )
    .await;
    assert_eq!(me.json()["role"], "store_staff");
    // Staff read their venues, but admin-only routes stay shut.
    let venues = call(
        &app,
        with_session("GET", "/api/v1/venues", &cookie, None, None),
    )
    .await;
    assert_eq!(venues.status, StatusCode::OK);
    let csrf = signed.json()["csrf_token"].as_str().unwrap().to_owned();
    for (method, path, body) in [
        ("GET", "/api/v1/users", None),
        (
            "POST",
            "/api/v1/venues",
            Some(r#"{"name":"Mine","timezone":"UTC"}"#),
        ),
    ] {
        let refused = call(&app, with_session(method, path, &cookie, Some(&csrf), body)).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{method} {path}");
        assert!(refused.error().contains("admin"), "{}", refused.error());
    }

    for (body, field) in [
        (
            json!({"username": "bo", "role": "admin", "password": PASSWORD}),
            "username",
        ),
        (
            json!({"username": "bob", "role": "admin", "password": "short"}),
            "password",
        ),
        (
            json!({"username": "bob", "role": "root", "password": PASSWORD}),
            "role",
        ),
        (
            json!({"username": "bob", "role": "viewer", "password": PASSWORD}),
            "venues",
        ),
        (
            json!({"username": "bob", "role": "viewer", "tags": ["Not A Tag"], "password": PASSWORD}),
            "tag",
        ),
        (
            json!({"username": "bob", "role": "viewer", "venues": ["aaaaaaaaaaaaaaaaaaaaaaaaaa"], "password": PASSWORD}),
            "venue",
        ),
        (
            json!({"username": "bob", "role": "admin", "password": PASSWORD, "extra": 1}),
            "extra",
        ),
    ] {
        let refused = create_user(&app, &token, body.clone()).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            refused.error().contains(field),
            "{body}: {}",
            refused.error()
        );
    }
    let listed = call(&app, request("GET", "/api/v1/users", Some(&token), None)).await;
    let users = listed.json()["users"].as_array().unwrap().clone();
    assert_eq!(users.len(), 1, "nothing half-made: {users:?}");
}

#[tokio::test]
async fn disabling_resetting_and_deleting_a_user_take_effect_on_the_next_request() {
    let init = Initialised::new();
    let app = app(init.state());
    let token = init.token();
    let made = create_user(
        &app,
        &token,
        json!({"username": "ada", "role": "admin", "password": PASSWORD}),
    )
    .await;
    let ada = made.json()["id"].as_str().unwrap().to_owned();
    let made = create_user(
        &app,
        &token,
        json!({"username": "vic", "role": "viewer", "tags": ["region:north"], "password": PASSWORD}),
    )
    .await;
    let vic = made.json()["id"].as_str().unwrap().to_owned();
    let signed = login(&app, "ada", PASSWORD).await;
    let (ada_cookie, ada_csrf) = (
        session_cookie(&signed),
        signed.json()["csrf_token"].as_str().unwrap().to_owned(),
    );
    let admin = |method: &'static str, uri: String, body: Option<serde_json::Value>| {
        let (cookie, csrf) = (ada_cookie.clone(), ada_csrf.clone());
        let body = body.map(|b| b.to_string());
        with_session(method, &uri, &cookie, Some(&csrf), body.as_deref())
    };
    let vic_session = session_cookie(&login(&app, "vic", PASSWORD).await);
    let vic_me = || with_session("GET", "/api/v1/auth/me", &vic_session, None, None);
    assert_eq!(call(&app, vic_me()).await.status, StatusCode::OK);

    // Disabled: the live session stops at once, and signing in fails like a wrong password.
    let patched = call(
        &app,
        admin(
            "PATCH",
            format!("/api/v1/users/{vic}"),
            Some(json!({"disabled": true})),
        ),
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text());
    assert_eq!(patched.json()["disabled"], true);
    assert_eq!(call(&app, vic_me()).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        login(&app, "vic", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Enabled again with a new password: only the new one opens a session.
    let reset = call(
        &app,
        admin(
            "PATCH",
            format!("/api/v1/users/{vic}"),
            Some(json!({"disabled": false, "password": "a brand new password"})),
        ),
    )
    .await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.text());
    assert_eq!(
        login(&app, "vic", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&app, "vic", "a brand new password").await.status,
        StatusCode::OK
    );
    let short = call(
        &app,
        admin(
            "PATCH",
            format!("/api/v1/users/{vic}"),
            Some(json!({"password": "short"})),
        ),
    )
    .await;
    assert_eq!(short.status, StatusCode::BAD_REQUEST);
    assert!(short.error().contains("password"));

    // An admin cannot lock themselves out.
    for body in [
        json!({"disabled": true}),
        json!({"role": "viewer", "tags": ["x"]}),
    ] {
        let refused = call(
            &app,
            admin("PATCH", format!("/api/v1/users/{ada}"), Some(body)),
        )
        .await;
        assert_eq!(refused.status, StatusCode::CONFLICT);
    }
    let refused = call(&app, admin("DELETE", format!("/api/v1/users/{ada}"), None)).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);

    // Deleted: gone from the list, cannot sign in.
    let deleted = call(&app, admin("DELETE", format!("/api/v1/users/{vic}"), None)).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let again = call(&app, admin("DELETE", format!("/api/v1/users/{vic}"), None)).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(
        login(&app, "vic", "a brand new password").await.status,
        StatusCode::UNAUTHORIZED
    );
    let listed = call(&app, request("GET", "/api/v1/users", Some(&token), None)).await;
    assert_eq!(listed.json()["users"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn api_tokens_act_within_their_makers_reach_and_stop_when_revoked() {
    let init = Initialised::new();
    let state = init.state();
    let app = app(state.clone());
    let token = init.token();
    let ours = state
        .registry
        .create_venue("Ours", "UTC", crate::support::now())
        .unwrap()
        .id;
    let theirs = state
        .registry
        .create_venue("Theirs", "UTC", crate::support::now())
        .unwrap()
        .id;
    create_user(
        &app,
        &token,
        json!({"username": "sue", "role": "store_staff", "venues": [ours.to_string()], "password": PASSWORD}),
    )
    .await;
    let signed = login(&app, "sue", PASSWORD).await;
    let (cookie, csrf) = (
        session_cookie(&signed),
        signed.json()["csrf_token"].as_str().unwrap().to_owned(),
    );
    let make = |body: serde_json::Value| {
        with_session(
            "POST",
            "/api/v1/tokens",
            &cookie,
            Some(&csrf),
            Some(&body.to_string()),
        )
    };
    // Wider than the maker: refused, naming what is wrong.
    let wider = call(
        &app,
        make(json!({"name": "ci", "venues": [ours.to_string(), theirs.to_string()]})),
    )
    .await;
    assert_eq!(wider.status, StatusCode::FORBIDDEN);
    assert!(wider.error().contains("venues"), "{}", wider.error());
    let higher = call(&app, make(json!({"name": "ci", "role": "technician"}))).await;
    assert_eq!(higher.status, StatusCode::FORBIDDEN);
    assert!(higher.error().contains("role"), "{}", higher.error());
    let bad_days = call(&app, make(json!({"name": "ci", "expires_in_days": 9999}))).await;
    assert_eq!(bad_days.status, StatusCode::BAD_REQUEST);
    assert!(bad_days.error().contains("expires_in_days"));

    // Within: shown once, then works as a bearer token with the maker's reach.
    let made = call(
        &app,
        make(json!({"name": "signage script", "role": "viewer"})),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text());
    let api_token = made.json()["token"].as_str().unwrap().to_owned();
    assert!(api_token.starts_with("tlt1-"));
    let id = made.json()["id"].as_str().unwrap().to_owned();
    let venues = call(
        &app,
        request("GET", "/api/v1/venues", Some(&api_token), None),
    )
    .await;
    assert_eq!(venues.status, StatusCode::OK, "{}", venues.text());
    let names: Vec<String> = venues.json()["venues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["Ours"]);
    let me = call(
        &app,
        request("GET", "/api/v1/auth/me", Some(&api_token), None),
    )
    .await;
    assert_eq!(me.json()["kind"], "token");
    assert_eq!(me.json()["role"], "viewer");
    // A viewer token cannot write, even where its maker could.
    let write = call(
        &app,
        request(
            "POST",
            &format!("/api/v1/venues/{ours}/kiosk-codes"),
            Some(&api_token),
            Some(r#"{"name":"x"}"#),
        ),
    )
    .await;
    assert_eq!(write.status, StatusCode::FORBIDDEN);

    // Listed without the token itself, with its last use; revoked, it stops at once.
    let listed = call(
        &app,
        with_session("GET", "/api/v1/tokens", &cookie, None, None),
    )
    .await;
    assert!(!listed.text().contains(&api_token));
    assert!(listed.json()["tokens"][0]["last_used_at"].is_string());
    let other = call(
        &app,
        request(
            "DELETE",
            "/api/v1/tokens/aaaaaaaaaaaaaaaaaaaaaaaaaa",
            Some(&token),
            None,
        ),
    )
    .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    let revoked = call(
        &app,
        with_session(
            "DELETE",
            &format!("/api/v1/tokens/{id}"),
            &cookie,
            Some(&csrf),
            None,
        ),
    )
    .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let after = call(
        &app,
        request("GET", "/api/v1/venues", Some(&api_token), None),
    )
    .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
}
