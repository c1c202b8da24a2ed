//! The audit log: every change through the API, the CLI or (in simulations) a hub is
//! recorded with who, where, when and what; the chain shows an edited row.

use std::process::Command;

use axum::http::StatusCode;
use serde_json::json;
use taplink_central::http::app;
use taplink_sync_proto::ids::PlaylistId;

use crate::support::{Initialised, call, request, user_session, with_session};

fn verify(data: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_taplink-central"))
        .args(["audit", "verify", "--data", data.to_str().unwrap()])
        .output()
        .unwrap()
}

#[tokio::test]
async fn api_changes_are_recorded_with_author_operation_and_heads_and_the_chain_holds() {
    let init = Initialised::new();
    let state = init.state();
    let app = app(state.clone());
    let token = init.token();
    let venue = crate::support::venue(&state, "The Anchor");
    let (cookie, csrf) = user_session(
        &app,
        &token,
        json!({"username": "Sam.Staff", "display_name": "Sam Staff", "role": "store_staff",
               "venues": [venue.to_string()], "password": "correct horse battery"}),
    )
    .await;
    let playlist = PlaylistId::random();
    let op = json!({"op": "create_playlist", "id": playlist.to_string(), "name": "Evening"});
    let done = call(
        &app,
        with_session(
            "POST",
            &format!("/api/v1/venues/{venue}/ops"),
            &cookie,
            Some(&csrf),
            Some(&op.to_string()),
        ),
    )
    .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());

    let log = call(&app, request("GET", "/api/v1/audit", Some(&token), None)).await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.text());
    let log = log.json();
    let entries = log["entries"].as_array().unwrap();
    // Newest first: the document change, then the user's creation.
    let change = &entries[0];
    assert_eq!(change["action"], "document.change", "{change}");
    assert!(
        change["actor"].as_str().unwrap().starts_with("user:"),
        "{change}"
    );
    assert_eq!(change["actor_name"], "Sam.Staff");
    assert_eq!(change["via"], "web");
    assert_eq!(change["origin"], "central");
    assert_eq!(change["venue"], venue.to_string());
    assert_eq!(change["detail"]["ops"][0]["name"], "Evening", "{change}");
    assert_eq!(change["heads"].as_array().unwrap().len(), 1);
    assert!(change["flag"].is_null());
    let created = entries
        .iter()
        .find(|e| e["action"] == "POST /api/v1/users")
        .expect("the user's creation is recorded");
    assert_eq!(created["actor"], "admin_token");
    // Secrets and personal data never enter the append-only log.
    assert_eq!(created["detail"]["body"]["password"], "(redacted)");
    assert_eq!(created["detail"]["body"]["username"], "(redacted)");
    assert_eq!(created["detail"]["body"]["role"], "store_staff");
    assert!(!log.to_string().contains("correct horse"));

    // Filters: by actor and by venue; a scoped reader sees only its venues.
    let actor = change["actor"].as_str().unwrap();
    let mine = call(
        &app,
        request(
            "GET",
            &format!("/api/v1/audit?actor={actor}"),
            Some(&token),
            None,
        ),
    )
    .await
    .json();
    assert_eq!(mine["entries"].as_array().unwrap().len(), 1);
    let page = call(
        &app,
        request("GET", "/api/v1/audit?limit=1", Some(&token), None),
    )
    .await
    .json();
    let cursor = page["next_cursor"].as_str().expect("a next page");
    let next = call(
        &app,
        request(
            "GET",
            &format!("/api/v1/audit?limit=1&cursor={cursor}"),
            Some(&token),
            None,
        ),
    )
    .await
    .json();
    assert!(next["entries"][0]["seq"].as_i64() < page["entries"][0]["seq"].as_i64());
    let bad = call(
        &app,
        request("GET", "/api/v1/audit?from=yesterday", Some(&token), None),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.error().contains("from"), "{}", bad.error());

    let csv = call(
        &app,
        request("GET", "/api/v1/audit?format=csv", Some(&token), None),
    )
    .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(
        csv.headers[axum::http::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = csv.text();
    assert!(text.starts_with("seq,at,recorded_at,actor"), "{text}");
    assert_eq!(text.lines().count(), 1 + entries.len(), "{text}");

    // The chain holds, and an edited row is found by `audit verify`.
    drop(app);
    let intact = verify(&init.data_dir);
    assert!(
        intact.status.success(),
        "{}",
        String::from_utf8_lossy(&intact.stderr)
    );
    assert!(String::from_utf8_lossy(&intact.stdout).contains("intact"));
    let db = rusqlite::Connection::open(init.data_dir.join("central.sqlite")).unwrap();
    db.execute(
        "UPDATE audit SET actor = 'admin_token' WHERE action = 'document.change'",
        [],
    )
    .unwrap();
    let broken = verify(&init.data_dir);
    assert!(!broken.status.success());
    let said = String::from_utf8_lossy(&broken.stderr);
    assert!(
        said.contains("NOT intact") && said.contains("edited"),
        "{said}"
    );
    // Rows cannot be deleted through SQL either.
    assert!(db.execute("DELETE FROM audit", []).is_err());
}
