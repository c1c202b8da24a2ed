//! The venue document through central: operations in batches (all or nothing), each
//! authorized for its own action, and the document read back.

use axum::http::StatusCode;
use serde_json::json;
use taplink_central::http::app;
use taplink_sync_proto::ids::{ItemId, KioskId, PlaylistId};

use crate::support::{Initialised, call, request, user_session, with_session};

#[tokio::test]
async fn operations_apply_all_or_nothing_and_each_needs_its_own_permission() {
    let init = Initialised::new();
    let state = init.state();
    let app = app(state.clone());
    let token = init.token();
    // Through the venue module, as the API makes venues (registry entry and document).
    let venue = crate::support::venue(&state, "The Anchor");
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

/// The REST resources are the operations under another name: each request is one change,
/// authorized by its own action, visible in the document.
#[tokio::test]
async fn rest_resources_edit_kiosks_playlists_items_and_assignments() {
    let init = Initialised::new();
    let state = init.state();
    let app = app(state.clone());
    let token = init.token();
    let venue = crate::support::venue(&state, "The Anchor");
    let base = format!("/api/v1/venues/{venue}");
    let kiosk = KioskId::random();
    let hash = blake3::hash(b"menu").to_hex().to_string();
    let setup = json!([
        {"op": "add_kiosk", "id": kiosk.to_string(), "name": "Bar"},
        {"op": "add_media", "hash": hash, "meta": {"name": "menu.png", "content_type": "image/png", "size": 4}},
    ]);
    let done = call(
        &app,
        request(
            "POST",
            &format!("{base}/ops"),
            Some(&token),
            Some(&setup.to_string()),
        ),
    )
    .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
    let (cookie, csrf) = user_session(
        &app,
        &token,
        json!({"username": "sue", "role": "store_staff", "venues": [venue.to_string()],
               "password": "correct horse battery"}),
    )
    .await;
    let sue = |method: &str, path: String, body: Option<serde_json::Value>| {
        with_session(
            method,
            &path,
            &cookie,
            Some(&csrf),
            body.map(|b| b.to_string()).as_deref(),
        )
    };

    let made = call(
        &app,
        sue(
            "POST",
            format!("{base}/playlists"),
            Some(json!({"name": "Lunch"})),
        ),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text());
    let playlist = made.json()["id"].as_str().unwrap().to_owned();
    let window = json!({"days": 3, "start_min": 660, "end_min": 840});
    let item = call(
        &app,
        sue(
            "POST",
            format!("{base}/playlists/{playlist}/items"),
            Some(json!({"media": hash, "duration_ms": 8000, "window": window})),
        ),
    )
    .await;
    assert_eq!(item.status, StatusCode::CREATED, "{}", item.text());
    let item = item.json()["item"].as_str().unwrap().to_owned();
    let patched = call(
        &app,
        sue(
            "PATCH",
            format!("{base}/playlists/{playlist}/items/{item}"),
            Some(json!({"duration_ms": 5000, "window": null})),
        ),
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text());
    let assigned = call(
        &app,
        sue(
            "PUT",
            format!("{base}/assignments"),
            Some(json!({"kiosks": {kiosk.to_string(): playlist}, "default": playlist})),
        ),
    )
    .await;
    assert_eq!(assigned.status, StatusCode::OK, "{}", assigned.text());
    let renamed = call(
        &app,
        sue(
            "PATCH",
            format!("{base}/kiosks/{kiosk}"),
            Some(json!({"name": "Bar left", "group": "bar"})),
        ),
    )
    .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.text());

    let doc = call(
        &app,
        request("GET", &format!("{base}/document"), Some(&token), None),
    )
    .await
    .json();
    assert_eq!(doc["playlists"][&playlist]["name"], "Lunch");
    assert_eq!(
        doc["playlists"][&playlist]["items"][&item]["duration_ms"],
        5000
    );
    assert!(doc["playlists"][&playlist]["items"][&item]["window"].is_null());
    assert_eq!(doc["kiosks"][kiosk.to_string()]["name"], "Bar left");
    assert_eq!(doc["kiosks"][kiosk.to_string()]["group"], "bar");
    assert_eq!(
        doc["kiosks"][kiosk.to_string()]["playlist"],
        playlist.as_str()
    );
    assert_eq!(doc["settings"]["default_playlist"], playlist.as_str());

    // Store staff may not remove a kiosk (a technician's pairing work); unknown fields,
    // empty patches and bad ids are refused by name; a missing item is a 422.
    let refused = call(&app, sue("DELETE", format!("{base}/kiosks/{kiosk}"), None)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let unknown = call(
        &app,
        sue(
            "PATCH",
            format!("{base}/kiosks/{kiosk}"),
            Some(json!({"colour": "red"})),
        ),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(unknown.error().contains("colour"), "{}", unknown.error());
    let empty = call(
        &app,
        sue("PATCH", format!("{base}/kiosks/{kiosk}"), Some(json!({}))),
    )
    .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    let bad_id = call(
        &app,
        sue(
            "DELETE",
            format!("{base}/playlists/{playlist}/items/nope"),
            None,
        ),
    )
    .await;
    assert_eq!(bad_id.status, StatusCode::BAD_REQUEST);
    assert!(bad_id.error().contains("item"), "{}", bad_id.error());
    let gone = ItemId::random();
    let missing = call(
        &app,
        sue(
            "DELETE",
            format!("{base}/playlists/{playlist}/items/{gone}"),
            None,
        ),
    )
    .await;
    assert_eq!(
        missing.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        missing.text()
    );
    let removed = call(
        &app,
        sue(
            "DELETE",
            format!("{base}/playlists/{playlist}/items/{item}"),
            None,
        ),
    )
    .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text());
    let removed = call(
        &app,
        request(
            "DELETE",
            &format!("{base}/kiosks/{kiosk}"),
            Some(&token),
            None,
        ),
    )
    .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text());
}
