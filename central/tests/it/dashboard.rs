//! The dashboard through its HTTP interface: the sign-in form, the fleet overview showing
//! only the venues in reach, CSRF on forms, and refusals as pages.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::json;
use taplink_central::http::app;

use crate::support::{Initialised, call, request, venue};

fn form(uri: &str, cookie: Option<&str>, body: &str) -> Request<Body> {
    let mut b = Request::builder()
        .method("POST")
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        b = b.header(header::COOKIE, cookie);
    }
    b.body(Body::from(body.to_owned())).unwrap()
}

fn page(uri: &str, cookie: &str) -> Request<Body> {
    Request::builder()
        .uri(uri)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn sign_in_see_only_your_venues_and_sign_out() {
    let init = Initialised::new();
    let state = init.state();
    let app = app(state.clone());
    let token = init.token();
    let ours = venue(&state, "The Anchor");
    let theirs = venue(&state, "The Crown");
    let made = call(
        &app,
        request(
            "POST",
            "/api/v1/users",
            Some(&token),
            Some(
                &json!({"username": "sue", "display_name": "Sue Staff", "role": "store_staff",
                         "venues": [ours.to_string()], "password": "correct horse battery"})
                .to_string(),
            ),
        ),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text());

    // A stranger is sent to sign in, and comes back where they were going.
    let stranger = call(&app, request("GET", "/", None, None)).await;
    assert_eq!(stranger.status, StatusCode::SEE_OTHER);
    assert_eq!(stranger.headers[header::LOCATION], "/login");
    let login = call(&app, request("GET", "/login", None, None)).await;
    assert_eq!(login.status, StatusCode::OK);
    let html = login.text();
    assert!(
        html.contains(r#"name="username""#) && html.contains(r#"name="password""#),
        "{html}"
    );

    // A wrong password: the form again, one sentence, no session.
    let wrong = call(&app, form("/login", None, "username=sue&password=nope")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.text().contains("Wrong username or password."));
    assert!(!wrong.headers.contains_key(header::SET_COOKIE));
    // Never redirected off the site after signing in.
    let signed = call(
        &app,
        form(
            "/login?next=//evil.example/x",
            None,
            "username=SUE&password=correct+horse+battery",
        ),
    )
    .await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.text());
    assert_eq!(signed.headers[header::LOCATION], "/");
    let cookie = signed.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();

    let overview = call(&app, page("/", &cookie)).await;
    assert_eq!(overview.status, StatusCode::OK);
    let html = overview.text();
    assert!(html.contains("The Anchor"), "{html}");
    assert!(!html.contains("The Crown"), "another venue leaked: {html}");
    assert!(html.contains("Sue Staff") && html.contains("Store staff"));
    let filtered = call(&app, page("/?q=crown", &cookie)).await.text();
    assert!(filtered.contains("No venues match."));
    // The live overview sends rows of venues in reach only, whatever the page asks for.
    let live = call(
        &app,
        page(&format!("/live/overview?venues={ours},{theirs}"), &cookie),
    )
    .await
    .text();
    assert!(live.contains(&ours.to_string()), "{live}");
    assert!(
        !live.contains(&theirs.to_string()),
        "another venue leaked: {live}"
    );

    // Signing out needs the session's CSRF token, which the page's form carries.
    let refused = call(&app, form("/logout", Some(&cookie), "")).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.text().contains("csrf"), "{}", refused.text());
    let csrf = html
        .split(r#"name="csrf_token" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the sign-out form carries the CSRF token");
    let out = call(
        &app,
        form("/logout", Some(&cookie), &format!("csrf_token={csrf}")),
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.headers[header::LOCATION], "/login");
    let after = call(&app, page("/", &cookie)).await;
    assert_eq!(after.status, StatusCode::SEE_OTHER, "the session is over");
    let css = call(&app, request("GET", "/assets/style.css", None, None)).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
}

#[tokio::test]
async fn admins_manage_people_and_nobody_else_sees_the_page() {
    let init = Initialised::new();
    let state = init.state();
    let app = app(state.clone());
    let token = init.token();
    let ours = venue(&state, "The Anchor");
    for (name, role) in [("ada", "admin"), ("tom", "technician")] {
        let made = call(
            &app,
            request(
                "POST",
                "/api/v1/users",
                Some(&token),
                Some(
                    &json!({"username": name, "role": role, "venues": [ours.to_string()],
                             "password": "correct horse battery"})
                    .to_string(),
                ),
            ),
        )
        .await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.text());
    }
    let sign_in = |name: &'static str| {
        let app = app.clone();
        async move {
            let signed = call(
                &app,
                form(
                    "/login",
                    None,
                    &format!("username={name}&password=correct+horse+battery"),
                ),
            )
            .await;
            signed.headers[header::SET_COOKIE]
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned()
        }
    };
    let ada = sign_in("ada").await;
    let tom = sign_in("tom").await;

    // A technician has no People link and cannot open the page by URL.
    let overview = call(&app, page("/", &tom)).await.text();
    assert!(!overview.contains(r#"href="/people""#), "{overview}");
    let refused = call(&app, page("/people", &tom)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.text().contains("You cannot open this page"));

    let people = call(&app, page("/people", &ada)).await;
    assert_eq!(people.status, StatusCode::OK);
    let html = people.text();
    assert!(html.contains(r#"data-user="tom""#), "{html}");
    let csrf = html
        .split(r#"name="csrf_token" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    // Add a viewer; a bad one re-renders the page saying why, adding nothing.
    let added = call(
        &app,
        form(
            "/people",
            Some(&ada),
            &format!("csrf_token={csrf}&username=vic&display_name=Vic&role=viewer&venues={ours}&tags=&password=a+long+secret+1"),
        ),
    )
    .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.text());
    let bad = call(
        &app,
        form(
            "/people",
            Some(&ada),
            &format!("csrf_token={csrf}&username=val&role=viewer&tags=&password=a+long+secret+1"),
        ),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text().contains("venue"), "{}", bad.text());
    // Disable tom: his session ends at once.
    let users = call(&app, request("GET", "/api/v1/users", Some(&token), None))
        .await
        .json();
    let tom_id = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "tom")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let disabled = call(
        &app,
        form(
            &format!("/people/{tom_id}"),
            Some(&ada),
            &format!("csrf_token={csrf}&action=disable"),
        ),
    )
    .await;
    assert_eq!(
        disabled.status,
        StatusCode::SEE_OTHER,
        "{}",
        disabled.text()
    );
    assert_eq!(
        call(&app, page("/", &tom)).await.status,
        StatusCode::SEE_OTHER
    );
    // Without the CSRF token nothing happens.
    let forged = call(
        &app,
        form(&format!("/people/{tom_id}"), Some(&ada), "action=enable"),
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    // The changes are in the audit log, without the password.
    let log = call(&app, request("GET", "/api/v1/audit", Some(&token), None))
        .await
        .text();
    assert!(
        log.contains("POST /people/{id}") && log.contains("disable"),
        "{log}"
    );
    assert!(!log.contains("a long secret"), "{log}");
}

#[tokio::test]
async fn the_audit_page_shows_changes_in_reach_in_words() {
    let init = Initialised::new();
    let state = init.state();
    let app = app(state.clone());
    let token = init.token();
    let ours = venue(&state, "The Anchor");
    let theirs = venue(&state, "The Crown");
    for (name, role, venue) in [("tom", "technician", ours), ("sue", "store_staff", ours)] {
        let made = call(
            &app,
            request(
                "POST",
                "/api/v1/users",
                Some(&token),
                Some(
                    &json!({"username": name, "role": role, "venues": [venue.to_string()],
                             "password": "correct horse battery"})
                    .to_string(),
                ),
            ),
        )
        .await;
        assert_eq!(made.status, StatusCode::CREATED);
    }
    for (venue, name) in [(ours, "Evening"), (theirs, "Secret menu")] {
        let op = json!({"op": "create_playlist", "id": taplink_sync_proto::ids::PlaylistId::random().to_string(), "name": name});
        let done = call(
            &app,
            request(
                "POST",
                &format!("/api/v1/venues/{venue}/ops"),
                Some(&token),
                Some(&op.to_string()),
            ),
        )
        .await;
        assert_eq!(done.status, StatusCode::OK);
    }
    let cookie = |name: &str| {
        let app = app.clone();
        let body = format!("username={name}&password=correct+horse+battery");
        async move {
            let signed = call(&app, form("/login", None, &body)).await;
            signed.headers[header::SET_COOKIE]
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned()
        }
    };
    let tom = cookie("tom").await;
    let log = call(&app, page("/audit", &tom)).await;
    assert_eq!(log.status, StatusCode::OK);
    let html = log.text();
    assert!(html.contains("create playlist"), "{html}");
    assert!(html.contains(&ours.to_string()));
    assert!(
        !html.contains(&theirs.to_string()),
        "another venue's change leaked: {html}"
    );
    // Store staff have no audit access: no link, and the page refuses.
    let sue = cookie("sue").await;
    assert!(
        !call(&app, page("/", &sue))
            .await
            .text()
            .contains(r#"href="/audit""#)
    );
    assert_eq!(
        call(&app, page("/audit", &sue)).await.status,
        StatusCode::FORBIDDEN
    );
    // A bad filter says so.
    let bad = call(&app, page("/audit?from=soon", &tom)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text().contains("from"));
}

#[tokio::test]
async fn technicians_make_codes_shown_once_with_a_qr_code() {
    let init = Initialised::new();
    let state = init.state();
    let app = app(state.clone());
    let token = init.token();
    let ours = venue(&state, "The Anchor");
    for (name, role) in [("tom", "technician"), ("sue", "store_staff")] {
        let made = call(
            &app,
            request(
                "POST",
                "/api/v1/users",
                Some(&token),
                Some(
                    &json!({"username": name, "role": role, "venues": [ours.to_string()],
                             "password": "correct horse battery"})
                    .to_string(),
                ),
            ),
        )
        .await;
        assert_eq!(made.status, StatusCode::CREATED);
    }
    let signed = call(
        &app,
        form(
            "/login",
            None,
            "username=tom&password=correct+horse+battery",
        ),
    )
    .await;
    let tom = signed.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let url = format!("/venues/{ours}/provisioning");
    let html = call(&app, page(&url, &tom)).await.text();
    assert!(
        html.contains("Make a kiosk code") && html.contains("Make an enrollment code"),
        "{html}"
    );
    let csrf = html
        .split(r#"name="csrf_token" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let made = call(
        &app,
        form(
            &format!("/venues/{ours}/kiosk-codes"),
            Some(&tom),
            &format!("csrf_token={csrf}&name=Bar+left&group=bar"),
        ),
    )
    .await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.text());
    assert_eq!(made.headers[header::CACHE_CONTROL], "no-store");
    let shown = made.text();
    assert!(
        shown.contains("Shown only now.") && shown.contains("<svg"),
        "{shown}"
    );
    assert!(shown.contains("Bar left"));
    let enrolled = call(
        &app,
        form(
            &format!("/venues/{ours}/enrollment-codes"),
            Some(&tom),
            &format!("csrf_token={csrf}&ttl=2h"),
        ),
    )
    .await;
    assert_eq!(enrolled.status, StatusCode::OK, "{}", enrolled.text());
    assert!(
        enrolled.text().contains("tl1-"),
        "the enrollment code is shown"
    );
    // The code itself is never listed again, and store staff cannot make codes.
    let again = call(&app, page(&url, &tom)).await.text();
    assert!(again.contains("Bar left") && !again.contains("Shown only now."));
    let signed = call(
        &app,
        form(
            "/login",
            None,
            "username=sue&password=correct+horse+battery",
        ),
    )
    .await;
    let sue = signed.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        call(&app, page(&url, &sue)).await.status,
        StatusCode::FORBIDDEN
    );
}

/// A hub that is offline while its kiosks were playing when last heard from is shown so:
/// "offline, but playing", not just "offline".
#[tokio::test]
async fn an_offline_hub_whose_kiosks_were_playing_says_so() {
    let init = Initialised::new();
    let state = init.state();
    let app = app(state.clone());
    let token = init.token();
    let ours = venue(&state, "The Anchor");
    let (serial, fp) = crate::support::cert_of(1);
    let hub = taplink_sync_proto::ids::HubId::random();
    state
        .registry
        .record_hub(hub, ours, &serial, fp, crate::support::now())
        .unwrap();
    state
        .registry
        .touch_hub(hub, crate::support::now(), None, None, None)
        .unwrap();
    let kiosk = taplink_sync_proto::ids::KioskId::random();
    let op = json!({"op": "add_kiosk", "id": kiosk.to_string(), "name": "Bar"});
    let added = call(
        &app,
        request(
            "POST",
            &format!("/api/v1/venues/{ours}/ops"),
            Some(&token),
            Some(&op.to_string()),
        ),
    )
    .await;
    assert_eq!(added.status, StatusCode::OK);
    let overview = call(&app, request("GET", "/", Some(&token), None))
        .await
        .text();
    assert!(
        overview.contains(r#"data-hub-state="offline""#),
        "{overview}"
    );
    assert!(
        !overview.contains("but playing"),
        "no heartbeat yet: {overview}"
    );
    let beat = taplink_sync_proto::wire::TelemetryEvent {
        id: [7; 16],
        kiosk: Some(kiosk),
        at_ms: crate::support::now().timestamp_millis(),
        kind: taplink_sync_proto::wire::TelemetryKind::Heartbeat(
            taplink_sync_proto::wire::Heartbeat {
                on_screen: Some(taplink_sync_proto::ids::MediaHash::of(b"menu")),
                manifest_version: "v1".into(),
                disk_free_bytes: 8 << 30,
                temperature_mc: None,
                uptime_s: 60,
                software: "taplink-kiosk".into(),
            },
        ),
    };
    state.store_telemetry(hub, &[beat]).unwrap();
    let overview = call(&app, request("GET", "/", Some(&token), None))
        .await
        .text();
    assert!(
        overview.contains("Offline but playing")
            && overview.contains("1 of 1 kiosks were playing when last heard")
            && overview.contains(r#"data-offline-playing="true""#),
        "{overview}"
    );
    // The live stream's first event renders the same row.
    let live = call(
        &app,
        request(
            "GET",
            &format!("/live/overview?venues={ours}"),
            Some(&token),
            None,
        ),
    )
    .await;
    assert_eq!(live.status, StatusCode::OK);
    let event = live.text();
    assert!(event.starts_with("event: fleet\n"), "{event}");
    assert!(
        event.contains("Offline but playing") && event.contains(&ours.to_string()),
        "{event}"
    );
}

#[tokio::test]
async fn people_make_and_revoke_their_own_api_tokens_on_a_page() {
    let init = Initialised::new();
    let state = init.state();
    let app = app(state.clone());
    let ours = venue(&state, "The Anchor");
    let (cookie, csrf) = crate::support::user_session(
        &app,
        &init.token(),
        json!({"username": "sue", "role": "store_staff", "venues": [ours.to_string()],
               "password": "correct horse battery"}),
    )
    .await;
    let empty = call(&app, page("/tokens", &cookie)).await;
    assert_eq!(empty.status, StatusCode::OK);
    assert!(empty.text().contains("No tokens yet."));
    // A role above one's own is refused, naming the field.
    let above = call(
        &app,
        form(
            "/tokens",
            Some(&cookie),
            &format!("csrf_token={csrf}&name=x&role=admin&expires_in_days=30"),
        ),
    )
    .await;
    assert_eq!(above.status, StatusCode::FORBIDDEN, "{}", above.text());
    assert!(above.text().contains("role"));
    let made = call(
        &app,
        form(
            "/tokens",
            Some(&cookie),
            &format!("csrf_token={csrf}&name=menu+sync&role=viewer&expires_in_days=30"),
        ),
    )
    .await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.text());
    let html = made.text();
    let secret = html
        .split("data-token=\"\">")
        .nth(1)
        .or_else(|| html.split("data-token>").nth(1))
        .and_then(|rest| rest.split('<').next())
        .expect("the new token is shown once")
        .to_owned();
    // It works, as a viewer of Sue's venue.
    let venues = call(&app, request("GET", "/api/v1/venues", Some(&secret), None)).await;
    assert_eq!(venues.status, StatusCode::OK, "{}", venues.text());
    assert!(venues.text().contains("The Anchor"));
    // Listed without the secret; revoked from its row.
    let listed = call(&app, page("/tokens", &cookie)).await.text();
    assert!(listed.contains("menu sync") && !listed.contains(&secret));
    let id = listed
        .split("data-token-id=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let revoked = call(
        &app,
        form(
            &format!("/tokens/{id}/revoke"),
            Some(&cookie),
            &format!("csrf_token={csrf}"),
        ),
    )
    .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.text());
    let refused = call(&app, request("GET", "/api/v1/venues", Some(&secret), None)).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn technicians_unpair_kiosks_and_revoke_kiosk_codes_from_provisioning() {
    let init = Initialised::new();
    let state = init.state();
    let app = app(state.clone());
    let token = init.token();
    let ours = venue(&state, "The Anchor");
    let kiosk = taplink_sync_proto::ids::KioskId::random();
    let op = json!({"op": "add_kiosk", "id": kiosk.to_string(), "name": "Bar"});
    let added = call(
        &app,
        request(
            "POST",
            &format!("/api/v1/venues/{ours}/ops"),
            Some(&token),
            Some(&op.to_string()),
        ),
    )
    .await;
    assert_eq!(added.status, StatusCode::OK);
    let (tom, csrf) = crate::support::user_session(
        &app,
        &token,
        json!({"username": "tom", "role": "technician", "venues": [ours.to_string()],
               "password": "correct horse battery"}),
    )
    .await;
    let code = call(
        &app,
        form(
            &format!("/venues/{ours}/kiosk-codes"),
            Some(&tom),
            &format!("csrf_token={csrf}&name=Door"),
        ),
    )
    .await;
    assert_eq!(code.status, StatusCode::OK, "{}", code.text());
    let html = call(&app, page(&format!("/venues/{ours}/provisioning"), &tom))
        .await
        .text();
    assert!(html.contains(&format!("data-kiosk=\"{kiosk}\"")), "{html}");
    let grant = html
        .split("data-kiosk-code=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let revoked = call(
        &app,
        form(
            &format!("/venues/{ours}/kiosk-codes/{grant}/revoke"),
            Some(&tom),
            &format!("csrf_token={csrf}"),
        ),
    )
    .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.text());
    let unpaired = call(
        &app,
        form(
            &format!("/venues/{ours}/kiosks/{kiosk}/remove"),
            Some(&tom),
            &format!("csrf_token={csrf}"),
        ),
    )
    .await;
    assert_eq!(
        unpaired.status,
        StatusCode::SEE_OTHER,
        "{}",
        unpaired.text()
    );
    let html = call(&app, page(&format!("/venues/{ours}/provisioning"), &tom))
        .await
        .text();
    assert!(html.contains("No kiosk paired yet."), "{html}");
    assert!(!html.contains("data-kiosk-code="), "{html}");
    // Both are in the audit log, under the technician's name.
    let audit = call(
        &app,
        request(
            "GET",
            &format!("/api/v1/audit?venue={ours}"),
            Some(&token),
            None,
        ),
    )
    .await
    .text();
    assert!(audit.contains("remove_kiosk"), "{audit}");
    assert!(audit.contains("kiosk-codes"), "{audit}");
}
