//! `GET /audit`: the audit log for people — who changed what, where and when, with the
//! API's filters, pages and CSV export (the same query as `GET /api/v1/audit`, limited to
//! the viewer's venues).

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use crate::http::{AuditParams, Caller};
use crate::state::AppState;

use super::{Section, Viewer, html_response, page, urlencode};

/// The page's filters (empty fields ignored).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Filters {
    #[serde(default)]
    venue: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    cursor: String,
}

fn some(text: &str) -> Option<String> {
    (!text.trim().is_empty()).then(|| text.trim().to_owned())
}

/// What an entry did, in a few words.
fn what(action: &str, detail: &serde_json::Value) -> String {
    if action == "document.change" {
        let ops = &detail["ops"];
        let list: Vec<&serde_json::Value> = match ops {
            serde_json::Value::Array(items) => items.iter().collect(),
            serde_json::Value::Null => Vec::new(),
            one => vec![one],
        };
        let names: Vec<String> = list
            .iter()
            .filter_map(|op| op["op"].as_str())
            .map(|op| op.replace('_', " "))
            .collect();
        if names.is_empty() {
            "changed the venue's content".to_owned()
        } else {
            names.join(", ")
        }
    } else {
        let said = match action {
            "POST /api/v1/users" | "POST /people" => "added a person",
            "PATCH /api/v1/users/{id}" | "POST /people/{id}" => "changed a person",
            "DELETE /api/v1/users/{id}" => "removed a person",
            "POST /api/v1/tokens" => "made an API token",
            "DELETE /api/v1/tokens/{id}" => "revoked an API token",
            "POST /api/v1/venues" => "created a venue",
            "PATCH /api/v1/venues/{id}" => "changed a venue",
            "POST /api/v1/venues/{id}/enrollment-codes" => "made a hub enrollment code",
            "POST /api/v1/venues/{id}/kiosk-codes" => "made a kiosk code",
            "DELETE /api/v1/venues/{id}/kiosk-codes/{code}" => "revoked a kiosk code",
            "POST /api/v1/hubs/{id}/revoke" => "revoked a hub",
            "POST /logout" => "signed out",
            other => other,
        };
        said.to_owned()
    }
}

/// `GET /audit`.
pub(crate) async fn audit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(filters): Query<Filters>,
) -> Response {
    let viewer = Viewer::of(&caller, &headers);
    let params = AuditParams {
        venue: some(&filters.venue),
        actor: some(&filters.actor),
        from: some(&filters.from),
        to: some(&filters.to),
        cursor: some(&filters.cursor),
        limit: Some("50".to_owned()),
        format: None,
    };
    let loaded = match crate::http::audit_query(&state, &caller, &params).await {
        Ok((query, _)) => crate::http::audit_page(&state, query).await,
        Err(e) => Err(e),
    };
    let (entries, next, error) = match loaded {
        Ok(page) => (page.entries, page.next_cursor, None),
        Err(e) => (Vec::new(), None, Some(e.to_string())),
    };
    let query = format!(
        "venue={}&actor={}&from={}&to={}",
        urlencode(&filters.venue),
        urlencode(&filters.actor),
        urlencode(&filters.from),
        urlencode(&filters.to)
    );
    let body = html! {
        h1 { "Audit log" }
        form.filters.card method="get" action="/audit" role="search" {
            label for="venue" { "Venue id" input id="venue" name="venue" value=(filters.venue); }
            label for="actor" { "Who" input id="actor" name="actor" value=(filters.actor) placeholder="user:…, hub_staff:…"; }
            label for="from" { "From" input id="from" name="from" type="date" value=(filters.from); }
            label for="to" { "Before" input id="to" name="to" type="date" value=(filters.to); }
            button type="submit" { "Filter" }
            a href={ "/api/v1/audit?format=csv&" (query) } download { "Download CSV" }
        }
        @if let Some(error) = &error { p.notice.error role="alert" { (error) } }
        @if entries.is_empty() && error.is_none() {
            div.card { p { "Nothing recorded matches." } }
        } @else {
            table.fleet {
                thead { tr { th { "When" } th { "Who" } th { "Where" } th { "What" } th { "Venue" } } }
                tbody {
                    @for e in &entries {
                        tr data-seq=(e.seq) {
                            td data-label="When" { (e.at) @if e.via == "cli" { " " span.tag { "CLI" } } }
                            td data-label="Who" {
                                (e.actor_name.clone().unwrap_or_else(|| e.actor.clone()))
                                @if let Some(flag) = &e.flag { br; span.state.offline title=(flag) { "Flagged: " (flag) } }
                            }
                            td data-label="Where" { (e.origin) }
                            td data-label="What" { (what(&e.action, &e.detail)) }
                            td data-label="Venue" { (e.venue.clone().unwrap_or_default()) }
                        }
                    }
                }
            }
        }
        div.pager {
            @if !filters.cursor.is_empty() { a href={ "/audit?" (query) } { "← Newest" } } @else { span {} }
            @if let Some(next) = &next { a href={ "/audit?" (query) "&cursor=" (next) } rel="next" { "Older →" } }
        }
    };
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    html_response(
        status,
        page(Some(&viewer), Section::Audit, "Audit log", body),
    )
    .into_response()
}
