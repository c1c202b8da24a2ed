//! The venue document through central: read it whole, and change it with the same
//! operations the hub takes (`VenueCommand`), so the change syncs to the venue's hub like
//! any other.
//!
//! - `GET /api/v1/venues/{id}/document`: the venue document as JSON (the shape of the hub's
//!   `GET /api/v1/venue`).
//! - `POST /api/v1/venues/{id}/ops`: one `VenueCommand` or an array of at most
//!   [`MAX_OPS`], applied atomically as one change (all or nothing). The route needs
//!   `content_write`; each operation is also authorized for its own action
//!   (`VenueCommand::action`: renaming the venue needs `venue_edit`, a kiosk's name
//!   `kiosk_edit`, …).

use axum::extract::State;
use axum::{Extension, Json};
use serde_json::json;
use taplink_sync_io::docs::{DocumentsError, EditError};
use taplink_sync_proto::authz::{Target, authorize};
use taplink_sync_proto::doc::{VenueCommand, load_venue};
use taplink_sync_proto::ids::VenueId;
use taplink_sync_proto::note::{ChangeNote, Via};
use taplink_sync_proto::wire::DocId;

use crate::state::AppState;

use super::auth::{Caller, ChangeAudited};
use super::error::{ApiError, ApiJson, ApiPath, blocking};

/// Most operations in one request.
pub(super) const MAX_OPS: usize = 1000;

/// `GET /api/v1/venues/{id}/document`.
pub(super) async fn get_document(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<VenueId>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let docs = state.docs.clone();
    let doc = tokio::task::spawn_blocking(move || docs.read(DocId::Venue(id), |am| load_venue(am)))
        .await
        .map_err(|e| ApiError::internal("reading a venue document", e))?;
    match doc {
        Ok(Ok(venue)) => {
            Ok(Json(serde_json::to_value(&venue).map_err(|e| {
                ApiError::internal("encoding a venue document", e)
            })?))
        }
        Ok(Err(e)) => Err(ApiError::internal("loading a venue document", e)),
        Err(_) => Err(ApiError::NotFound {
            what: format!("venue {id}"),
        }),
    }
}

/// The operations of a request body: one, or an array (errors name the operation).
fn operations(body: serde_json::Value) -> Result<Vec<VenueCommand>, ApiError> {
    let items = match body {
        serde_json::Value::Array(items) => items,
        one => vec![one],
    };
    if items.is_empty() || items.len() > MAX_OPS {
        return Err(ApiError::InvalidBody {
            message: format!("send 1 to {MAX_OPS} operations"),
        });
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            serde_json::from_value(item).map_err(|e| ApiError::InvalidBody {
                message: format!("operation {i}: {e}"),
            })
        })
        .collect()
}

/// `POST /api/v1/venues/{id}/ops`.
pub(super) async fn post_ops(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(via): Extension<Via>,
    ApiPath(id): ApiPath<VenueId>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<(Extension<ChangeAudited>, Json<serde_json::Value>), ApiError> {
    let commands = operations(body)?;
    let count = apply_venue_commands(&state, &caller, via, id, commands).await?;
    Ok((
        Extension(ChangeAudited),
        Json(json!({ "status": "applied", "operations": count })),
    ))
}

/// Apply `commands` to venue `id` on `caller`'s behalf: each authorized for its own action
/// on the venue, all applied as one noted change or none (422 names the refused one), then
/// recorded in the audit log. The one way central changes a venue document.
pub(crate) async fn apply_venue_commands(
    state: &AppState,
    caller: &Caller,
    via: Via,
    id: VenueId,
    commands: Vec<VenueCommand>,
) -> Result<usize, ApiError> {
    let registry = state.registry.clone();
    let venue = blocking(move || registry.venue(id))
        .await?
        .ok_or(ApiError::NotFound {
            what: format!("venue {id}"),
        })?;
    let principal = caller.principal();
    for (i, command) in commands.iter().enumerate() {
        let target = Target::Venue {
            id,
            tags: &venue.tags,
        };
        authorize(&principal, command.action(), target).map_err(|denied| ApiError::Forbidden {
            reason: format!("operation {i}: {denied}"),
        })?;
    }
    let ops = serde_json::to_value(&commands)
        .map_err(|e| ApiError::internal("encoding venue operations", e))?;
    let count = commands.len();
    edit_noted(state, caller, via, DocId::Venue(id), ops, move |am| {
        for (i, command) in commands.iter().enumerate() {
            command.apply(am).map_err(|e| (i, e))?;
        }
        Ok(())
    })
    .await
    .map_err(|refused| match refused {
        Refused::Op((i, e)) => ApiError::Unprocessable {
            message: format!("operation {i}: {e}; nothing was applied"),
        },
        Refused::Api(e) => e,
    })?;
    tracing::info!(venue = %id, operations = count, "venue operations applied");
    Ok(count)
}

/// Why [`edit_noted`] changed nothing.
pub(super) enum Refused<E> {
    /// The edit itself refused.
    Op(E),
    /// The document is unknown, or storage failed.
    Api(ApiError),
}

/// Edit `doc` on `caller`'s behalf (already authorized): the change carries a
/// [`ChangeNote`] with `ops` (what was asked, as JSON), is durable before this returns,
/// and is in the audit log.
pub(super) async fn edit_noted<E: Send + 'static>(
    state: &AppState,
    caller: &Caller,
    via: Via,
    doc: DocId,
    ops: serde_json::Value,
    f: impl FnOnce(&mut automerge::AutoCommit) -> Result<(), E> + Send + 'static,
) -> Result<(), Refused<E>> {
    let note = ChangeNote::new(caller.author(), via, state.now().timestamp_millis(), ops);
    let docs = state.docs.clone();
    let edited = tokio::task::spawn_blocking(move || docs.edit_noted(doc, &note, f))
        .await
        .map_err(|e| Refused::Api(ApiError::internal("editing a document", e)))?;
    match edited {
        Ok(()) => {}
        Err(EditError::Refused(e)) => return Err(Refused::Op(e)),
        Err(EditError::Documents(DocumentsError::Unknown(_))) => {
            return Err(Refused::Api(ApiError::NotFound {
                what: format!("document {doc}"),
            }));
        }
        Err(EditError::Documents(e)) => {
            return Err(Refused::Api(ApiError::internal("editing a document", e)));
        }
        Err(_) => {
            return Err(Refused::Api(ApiError::internal(
                "editing a document",
                "an edit error of an unknown kind",
            )));
        }
    }
    crate::observe::after_change(state.clone(), doc)
        .await
        .map_err(|e| {
            Refused::Api(ApiError::internal(
                "recording the change in the audit log",
                e,
            ))
        })
}
