//! `GET /api/v1/audit`: the audit log, newest first, as JSON pages or a CSV export.
//!
//! Filters: `venue`, `actor` (`user:<id>`, `token:<id>`, `hub_staff:<name>`, …), `from`
//! and `to` (RFC 3339 or a date; when the change was made), `cursor` (the previous page's
//! `next_cursor`), `limit` (1–1000, default 100) and `format=json|csv`. A CSV export
//! without `limit` holds every matching entry, streamed page by page. Callers below admin
//! see only entries of venues in their reach.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use taplink_sync_proto::authz::{Action, Role};
use taplink_sync_proto::ids::VenueId;

use crate::state::AppState;
use crate::store::{AuditEntry, AuditQuery};

use super::auth::Caller;
use super::error::{ApiError, ApiQuery, blocking, instant_param, param};
use super::venues::in_reach;

/// Entries in a page unless `limit` says otherwise.
const DEFAULT_LIMIT: usize = 100;
/// Most entries in a page.
const MAX_LIMIT: usize = 1000;

/// `GET /api/v1/audit` query.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditParams {
    pub(crate) venue: Option<String>,
    pub(crate) actor: Option<String>,
    pub(crate) from: Option<String>,
    pub(crate) to: Option<String>,
    pub(crate) cursor: Option<String>,
    pub(crate) limit: Option<String>,
    pub(crate) format: Option<String>,
}

/// `GET /api/v1/audit` answer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// The entries, newest first.
    pub entries: Vec<AuditEntryJson>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// One audit entry as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntryJson {
    /// Its place in the log.
    pub seq: i64,
    /// When the change was made (where it was made), RFC 3339.
    pub at: String,
    /// When central recorded it, RFC 3339.
    pub recorded_at: String,
    /// Who: `user:<id>`, `token:<id>`, `admin_token`, `hub_staff:<name>`, `kiosk:<id>`, ….
    pub actor: String,
    /// The user's current username, for `user:` actors that still exist.
    pub actor_name: Option<String>,
    /// `api`, `cli`, `web` or `system`.
    pub via: String,
    /// `central`, or `hub:<id>` for changes made at a hub.
    pub origin: String,
    /// The venue, if the change concerns one.
    pub venue: Option<String>,
    /// `document.change`, or the request (`PATCH /api/v1/users/{id}`).
    pub action: String,
    /// What exactly: the operations, or the request's query and body (secrets and names
    /// redacted).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    /// The document heads after it.
    pub heads: Vec<String>,
    /// Why the entry is flagged (an author the venue's roster does not allow), if it is.
    pub flag: Option<String>,
    /// The entry's chain hash.
    pub hash: String,
}

fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(String::new, crate::rfc3339)
}

fn entry_json(e: AuditEntry, names: &std::collections::HashMap<String, String>) -> AuditEntryJson {
    AuditEntryJson {
        seq: e.seq,
        at: rfc3339_ms(e.at_ms),
        recorded_at: rfc3339_ms(e.recorded_ms),
        actor_name: names.get(&e.actor).cloned(),
        actor: e.actor,
        via: e.via,
        origin: e.origin,
        venue: e.venue,
        action: e.action,
        detail: e.detail,
        heads: e.heads,
        flag: e.flag,
        hash: e.hash,
    }
}

/// The query the parameters ask for, limited to what `caller` may read.
pub(crate) async fn audit_query(
    state: &AppState,
    caller: &Caller,
    p: &AuditParams,
) -> Result<(AuditQuery, bool), ApiError> {
    let limit: Option<usize> = param("limit", p.limit.as_deref())?;
    if limit.is_some_and(|l| l == 0 || l > MAX_LIMIT) {
        return Err(ApiError::InvalidQuery {
            param: "limit",
            message: format!("give 1 to {MAX_LIMIT}"),
        });
    }
    let csv = match p.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::InvalidQuery {
                param: "format",
                message: format!("{other:?}: use json or csv"),
            });
        }
    };
    let principal = caller.principal();
    let venues = if principal.role == Role::Admin {
        None
    } else {
        let registry = state.registry.clone();
        let all = blocking(move || registry.list_venues()).await?;
        Some(
            all.iter()
                .filter(|v| in_reach(&principal, Action::AuditRead, v))
                .map(|v| v.id)
                .collect(),
        )
    };
    let query = AuditQuery {
        venue: param::<VenueId>("venue", p.venue.as_deref())?,
        venues,
        actor: p.actor.clone(),
        from_ms: instant_param("from", p.from.as_deref())?.map(|t| t.timestamp_millis()),
        to_ms: instant_param("to", p.to.as_deref())?.map(|t| t.timestamp_millis()),
        before_seq: param("cursor", p.cursor.as_deref())?,
        limit: limit.unwrap_or(if csv { usize::MAX } else { DEFAULT_LIMIT }),
    };
    Ok((query, csv))
}

/// Usernames of `user:<id>` actors that still exist.
fn user_names(state: &AppState) -> Result<std::collections::HashMap<String, String>, ApiError> {
    Ok(state
        .registry
        .list_users()?
        .into_iter()
        .map(|u| (format!("user:{}", u.id), u.username))
        .collect())
}

/// `GET /api/v1/audit`.
pub(super) async fn get_audit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<Response, ApiError> {
    let (query, csv) = audit_query(&state, &caller, &params).await?;
    if csv {
        return Ok(csv_export(state, query));
    }
    Ok(Json(audit_page(&state, query).await?).into_response())
}

/// One page of the audit log as `query` asks (already limited to the caller's reach): the
/// API's JSON and the dashboard's page.
pub(crate) async fn audit_page(state: &AppState, query: AuditQuery) -> Result<AuditPage, ApiError> {
    let limit = query.limit;
    let page_state = state.clone();
    let (entries, names) = blocking(move || {
        let entries = page_state.registry.list_audit(&query)?;
        Ok::<_, ApiError>((entries, user_names(&page_state)?))
    })
    .await?;
    let next_cursor = (entries.len() == limit)
        .then(|| entries.last().map(|e| e.seq.to_string()))
        .flatten();
    Ok(AuditPage {
        entries: entries.into_iter().map(|e| entry_json(e, &names)).collect(),
        next_cursor,
    })
}

/// Entries read per step of a CSV export.
const EXPORT_PAGE: usize = 1000;

/// The CSV export, streamed: a blocking task reads pages of [`EXPORT_PAGE`] entries and
/// sends them through a bounded channel, so memory stays flat however long the log is.
fn csv_export(state: AppState, mut query: AuditQuery) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(4);
    let total = query.limit;
    tokio::task::spawn_blocking(move || {
        let mut sent = 0usize;
        let names = match user_names(&state) {
            Ok(names) => names,
            Err(e) => {
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                return;
            }
        };
        let mut chunk = String::from(
            "seq,at,recorded_at,actor,actor_name,via,origin,venue,action,flag,detail,heads,hash\n",
        );
        loop {
            query.limit = EXPORT_PAGE.min(total - sent);
            let page = match state.registry.list_audit(&query) {
                Ok(page) => page,
                Err(e) => {
                    tracing::error!(error = %e, "audit export failed");
                    let _ = tx.blocking_send(Err(std::io::Error::other("the audit export failed")));
                    return;
                }
            };
            let last = page.len() < query.limit;
            for e in page {
                query.before_seq = Some(e.seq);
                sent += 1;
                let e = entry_json(e, &names);
                let fields = [
                    e.seq.to_string(),
                    e.at,
                    e.recorded_at,
                    e.actor,
                    e.actor_name.unwrap_or_default(),
                    e.via,
                    e.origin,
                    e.venue.unwrap_or_default(),
                    e.action,
                    e.flag.unwrap_or_default(),
                    e.detail.to_string(),
                    e.heads.join(" "),
                    e.hash,
                ];
                let row: Vec<String> = fields.iter().map(|f| super::csv::field(f)).collect();
                chunk.push_str(&row.join(","));
                chunk.push('\n');
            }
            if tx.blocking_send(Ok(std::mem::take(&mut chunk))).is_err() {
                return; // The client went away.
            }
            if last || sent >= total {
                return;
            }
        }
    });
    let stream = tokio_stream_from(rx);
    let mut response = Body::from_stream(stream).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    response.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"taplink-audit.csv\""),
    );
    response
}

/// A receiver as a stream of body chunks.
fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<String, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<String, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
