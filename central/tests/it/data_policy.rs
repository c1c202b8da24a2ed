//! docs/data-policy.md in code: deleting a user removes their credentials and every trace of
//! their name from the registry, while the audit log keeps their pseudonymous id and still
//! verifies.

use axum::http::StatusCode;
use serde_json::json;
use taplink_central::http::app;
use taplink_central::store::AuditVerdict;
use taplink_sync_proto::ids::PlaylistId;

use crate::support::{Initialised, call, now, request, user_session, with_session};

const USERNAME: &str = "erin.forgetme";
const DISPLAY_NAME: &str = "Erin Quillfeather";

/// Every text cell of every table of the registry that contains `needle` (case-insensitive),
/// as `table.column`.
fn cells_holding(path: &std::path::Path, needle: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(tables.len() >= 8, "{tables:?}");
    let mut found = Vec::new();
    for table in tables {
        let columns: Vec<String> = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for column in columns {
            // Every column, whatever its type: BLOBs and numbers are cast to text too.
            let hits: i64 = conn
                .query_row(
                    &format!(
                        "SELECT count(*) FROM \"{table}\" WHERE instr(lower(CAST(\"{column}\" AS TEXT)), lower(?1)) > 0"
                    ),
                    [needle],
                    |row| row.get(0),
                )
                .unwrap();
            if hits > 0 {
                found.push(format!("{table}.{column}"));
            }
        }
    }
    found
}

#[tokio::test]
async fn deleting_a_user_leaves_their_id_in_the_audit_log_and_their_name_nowhere() {
    let init = Initialised::new();
    let state = init.state();
    let app = app(state.clone());
    let token = init.token();
    let venue = taplink_central::venue::create_venue(
        &state.registry,
        &state.docs,
        "The Anchor",
        "Europe/London",
        now(),
    )
    .unwrap()
    .id;
    let body = json!({
        "username": USERNAME,
        "display_name": DISPLAY_NAME,
        "role": "store_staff",
        "venues": [venue.to_string()],
        "password": "correct horse battery",
    });
    let (cookie, csrf) = user_session(&app, &token, body).await;
    let me = call(
        &app,
        with_session("GET", "/api/v1/auth/me", &cookie, None, None),
    )
    .await;
    let id = me.json()["user"]["id"].as_str().unwrap().to_owned();

    // Erin leaves traces: an API token named after her, a change in the audit log.
    let made = call(
        &app,
        with_session(
            "POST",
            "/api/v1/tokens",
            &cookie,
            Some(&csrf),
            Some(&json!({"name": format!("{USERNAME}'s laptop")}).to_string()),
        ),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text());
    let api_token = made.json()["token"].as_str().unwrap().to_owned();
    let changed = call(
        &app,
        with_session(
            "POST",
            &format!("/api/v1/venues/{venue}/ops"),
            &cookie,
            Some(&csrf),
            Some(
                &json!({"op": "create_playlist", "id": PlaylistId::random().to_string(), "name": "Evening"})
                    .to_string(),
            ),
        ),
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text());
    let path = state.registry.path().to_owned();
    assert!(!cells_holding(&path, USERNAME).is_empty());
    let actor = format!("user:{id}");
    assert!(cells_holding(&path, &actor).contains(&"audit.actor".to_owned()));

    let deleted = call(
        &app,
        request("DELETE", &format!("/api/v1/users/{id}"), Some(&token), None),
    )
    .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text());

    // Credentials: the session and the API token are gone and refused.
    let session = call(
        &app,
        with_session("GET", "/api/v1/auth/me", &cookie, None, None),
    )
    .await;
    assert_eq!(session.status, StatusCode::UNAUTHORIZED);
    let by_token = call(
        &app,
        request("GET", "/api/v1/auth/me", Some(&api_token), None),
    )
    .await;
    assert_eq!(by_token.status, StatusCode::UNAUTHORIZED);
    // Personal data: no cell of any table holds the username or the display name …
    assert_eq!(cells_holding(&path, USERNAME), Vec::<String>::new());
    assert_eq!(cells_holding(&path, DISPLAY_NAME), Vec::<String>::new());
    assert_eq!(cells_holding(&path, "Quillfeather"), Vec::<String>::new());
    // … nor their id, except in the audit log, whose chain still verifies.
    let holding_id: Vec<String> = cells_holding(&path, &id)
        .into_iter()
        .filter(|cell| !cell.starts_with("audit."))
        .collect();
    assert_eq!(holding_id, Vec::<String>::new());
    assert!(cells_holding(&path, &actor).contains(&"audit.actor".to_owned()));
    assert!(
        matches!(
            state.registry.verify_audit().unwrap(),
            AuditVerdict::Intact { .. }
        ),
        "{:?}",
        state.registry.verify_audit()
    );
}
