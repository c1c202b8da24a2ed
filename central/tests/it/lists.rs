//! Lists served from the catalog: they follow the documents, page with a cursor, filter,
//! and show only what is in the caller's reach.

use axum::http::StatusCode;
use serde_json::json;
use taplink_central::http::app;
use taplink_sync_proto::ids::{ItemId, KioskId, PlaylistId};

use crate::support::{Initialised, call, now, request, user_session, with_session};

#[tokio::test]
async fn lists_follow_the_documents_page_filter_and_keep_to_reach() {
    let init = Initialised::new();
    let state = init.state();
    let app = app(state.clone());
    let token = init.token();
    let mut venues = Vec::new();
    for (i, name) in ["Anchor", "Crown", "Bell", "Swan", "Lamb"]
        .iter()
        .enumerate()
    {
        let v = taplink_central::venue::create_venue(
            &state.registry,
            &state.docs,
            name,
            "Europe/London",
            now() + chrono::TimeDelta::milliseconds(i as i64),
        )
        .unwrap()
        .id;
        venues.push(v);
    }
    let north = venues[1];
    let tagged = call(
        &app,
        request(
            "PATCH",
            &format!("/api/v1/venues/{north}"),
            Some(&token),
            Some(&json!({"tags": ["region:north"], "name": "The Crown", "timezone": "Europe/Dublin"}).to_string()),
        ),
    )
    .await;
    assert_eq!(tagged.status, StatusCode::OK, "{}", tagged.text());
    assert_eq!(tagged.json()["name"], "The Crown");
    assert_eq!(tagged.json()["timezone"], "Europe/Dublin");
    assert_eq!(tagged.json()["hub_state"], "no_hub");
    // The rename went through the venue document, which the hub will see.
    let doc = call(
        &app,
        request(
            "GET",
            &format!("/api/v1/venues/{north}/document"),
            Some(&token),
            None,
        ),
    )
    .await
    .json();
    assert_eq!(doc["settings"]["name"], "The Crown");

    // Pages of 2 walk every venue once, in order.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let uri = match &cursor {
            None => "/api/v1/venues?limit=2".to_owned(),
            Some(c) => format!("/api/v1/venues?limit=2&cursor={c}"),
        };
        let page = call(&app, request("GET", &uri, Some(&token), None))
            .await
            .json();
        for v in page["venues"].as_array().unwrap() {
            seen.push(v["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let expected: Vec<String> = venues.iter().map(ToString::to_string).collect();
    assert_eq!(seen, expected);
    let by_tag = call(
        &app,
        request("GET", "/api/v1/venues?tag=region:north", Some(&token), None),
    )
    .await
    .json();
    assert_eq!(by_tag["venues"].as_array().unwrap().len(), 1);
    let by_name = call(
        &app,
        request("GET", "/api/v1/venues?q=crown", Some(&token), None),
    )
    .await
    .json();
    assert_eq!(by_name["venues"][0]["id"], north.to_string());
    let no_hub = call(
        &app,
        request("GET", "/api/v1/venues?hub_state=no_hub", Some(&token), None),
    )
    .await
    .json();
    assert_eq!(no_hub["venues"].as_array().unwrap().len(), 5);
    let online = call(
        &app,
        request("GET", "/api/v1/venues?hub_state=online", Some(&token), None),
    )
    .await
    .json();
    assert!(online["venues"].as_array().unwrap().is_empty());
    for bad in [
        "/api/v1/venues?hub_state=asleep",
        "/api/v1/venues?limit=0",
        "/api/v1/venues?cursor=zzz",
        "/api/v1/venues?colour=red",
    ] {
        let answer = call(&app, request("GET", bad, Some(&token), None)).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            answer.text()
        );
    }

    // Kiosks and media follow operations made through the API.
    let anchor = venues[0];
    let (playlist, item) = (PlaylistId::random(), ItemId::random());
    let kiosks: Vec<KioskId> = (0..3).map(|_| KioskId::random()).collect();
    let hash = blake3::hash(b"poster").to_hex().to_string();
    let mut ops = vec![
        json!({"op": "add_media", "hash": hash, "meta": {"name": "poster.png", "content_type": "image/png", "size": 6}}),
        json!({"op": "create_playlist", "id": playlist.to_string(), "name": "Evening"}),
        json!({"op": "insert_item", "playlist": playlist.to_string(), "item": item.to_string(), "at": "front", "media": hash, "duration_ms": 5000}),
    ];
    for (i, k) in kiosks.iter().enumerate() {
        ops.push(json!({"op": "add_kiosk", "id": k.to_string(), "name": format!("Screen {i}")}));
    }
    let applied = call(
        &app,
        request(
            "POST",
            &format!("/api/v1/venues/{anchor}/ops"),
            Some(&token),
            Some(&json!(ops).to_string()),
        ),
    )
    .await;
    assert_eq!(applied.status, StatusCode::OK, "{}", applied.text());
    let listed = call(
        &app,
        request(
            "GET",
            &format!("/api/v1/kiosks?venue={anchor}&limit=2"),
            Some(&token),
            None,
        ),
    )
    .await
    .json();
    assert_eq!(listed["kiosks"].as_array().unwrap().len(), 2);
    let rest = call(
        &app,
        request(
            "GET",
            &format!(
                "/api/v1/kiosks?venue={anchor}&cursor={}",
                listed["next_cursor"].as_str().unwrap()
            ),
            Some(&token),
            None,
        ),
    )
    .await
    .json();
    assert_eq!(rest["kiosks"].as_array().unwrap().len(), 1);
    let media = call(
        &app,
        request(
            "GET",
            &format!("/api/v1/media?venue={anchor}"),
            Some(&token),
            None,
        ),
    )
    .await
    .json();
    let poster = &media["media"][0];
    assert_eq!(poster["name"], "poster.png");
    assert_eq!(poster["used_by"][0]["playlist_name"], "Evening");
    assert_eq!(poster["used_by"][0]["item"], item.to_string());

    // A technician of the north sees the north's venue only.
    let (cookie, _csrf) = user_session(
        &app,
        &token,
        json!({"username": "tom", "role": "technician", "tags": ["region:north"], "password": "correct horse battery"}),
    )
    .await;
    let theirs = call(
        &app,
        with_session("GET", "/api/v1/venues", &cookie, None, None),
    )
    .await
    .json();
    let ids: Vec<&str> = theirs["venues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [north.to_string().as_str()]);
    let their_kiosks = call(
        &app,
        with_session("GET", "/api/v1/kiosks", &cookie, None, None),
    )
    .await
    .json();
    assert!(their_kiosks["kiosks"].as_array().unwrap().is_empty());
}
