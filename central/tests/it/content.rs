//! The venue document through central: operations in batches (all or nothing), each
//! authorized for its own action, and the document read back.

use axum::http::StatusCode;
use serde_json::json;
use taplink_central::http::app;
use taplink_sync_proto::ids::{KioskId, PlaylistId};

use crate::support::{Initialised, call, now, request, user_session, with_session};

#[tokio::test]
async fn operations_apply_all_or_nothing_and_each_needs_its_own_permission() {
    let init = Initialised::new();
    let state = init.state();
    let app = app(state.clone());
    let token = init.token();
    // Through the venue module, as the API makes venues (registry entry and document).
    let venue = taplink_central::venue::create_venue(
        &state.registry,
        &state.docs,
        "The Anchor",
        "Europe/London",
        now(),
    )
    .unwrap()
    .id;
    let ops = format!("/api/v1/venues/{venue}/ops");
    let document = format!("/api/v1/venues/{venue}/document");
    let (evening, kiosk) = (PlaylistId::random(), KioskId::random());
    let batch = json!([
        {"op": "create_playlist", "id": evening.to_string(), "name": "Evening"},
        {"op": "add_kiosk", "id": kiosk.to_string(), "name": "Bar"},
        {"op": "assign_playlist", "kiosk": kiosk.to_string(), "playlist": evening.to_string()},
    ]);
    let answer = call(
        &app,
        request("POST", &ops, Some(&token), Some(&batch.to_string())),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.json()["operations"], 3);
    let doc = call(&app, request("GET", &document, Some(&token), None)).await;
    assert_eq!(doc.status, StatusCode::OK, "{}", doc.text());
    let doc = doc.json();
    assert_eq!(doc["playlists"][evening.to_string()]["name"], "Evening");
    assert_eq!(doc["kiosks"][kiosk.to_string()]["name"], "Bar");

    // One refused operation: nothing of the batch is applied, and the answer names it.
    let late = PlaylistId::random();
    let bad = json!([
        {"op": "create_playlist", "id": late.to_string(), "name": "Late"},
        {"op": "rename_playlist", "id": PlaylistId::random().to_string(), "name": "Ghost"},
    ]);
    let refused = call(
        &app,
        request("POST", &ops, Some(&token), Some(&bad.to_string())),
    )
    .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text()
    );
    assert!(
        refused.error().contains("operation 1"),
        "{}",
        refused.error()
    );
    let doc = call(&app, request("GET", &document, Some(&token), None))
        .await
        .json();
    assert!(
        doc["playlists"].get(late.to_string()).is_none(),
        "half-applied"
    );
    // Malformed operations are refused before anything runs, naming the one.
    let malformed = json!([{"op": "create_playlist", "id": late.to_string()}]);
    let answer = call(
        &app,
        request("POST", &ops, Some(&token), Some(&malformed.to_string())),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.error().contains("operation 0"), "{}", answer.error());

    // Store staff of the venue change content and kiosk names, not the venue's settings.
    let body = json!({"username": "sue", "role": "store_staff", "venues": [venue.to_string()], "password": "correct horse battery"});
    let (cookie, csrf) = user_session(&app, &token, body).await;
    let as_sue = |body: serde_json::Value| {
        with_session("POST", &ops, &cookie, Some(&csrf), Some(&body.to_string()))
    };
    let ok = call(
        &app,
        as_sue(json!([
            {"op": "rename_playlist", "id": evening.to_string(), "name": "Evening (new)"},
            {"op": "rename_kiosk", "id": kiosk.to_string(), "name": "Bar left"},
        ])),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    let denied = call(
        &app,
        as_sue(json!([
            {"op": "rename_playlist", "id": evening.to_string(), "name": "x"},
            {"op": "rename_venue", "name": "Mine now"},
        ])),
    )
    .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert!(denied.error().contains("operation 1"), "{}", denied.error());
    let doc = call(&app, request("GET", &document, Some(&token), None))
        .await
        .json();
    assert_eq!(doc["settings"]["name"], "The Anchor");
    assert_eq!(
        doc["playlists"][evening.to_string()]["name"],
        "Evening (new)"
    );
}
