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
use taplink_sync_io::docs::EditError;
use taplink_sync_proto::authz::{Target, authorize};
use taplink_sync_proto::doc::{VenueCommand, load_venue};
use taplink_sync_proto::ids::VenueId;
use taplink_sync_proto::wire::DocId;

use crate::state::AppState;

use super::auth::Caller;
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
    ApiPath(id): ApiPath<VenueId>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let commands = operations(body)?;
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
    let docs = state.docs.clone();
    let count = commands.len();
    let applied = tokio::task::spawn_blocking(move || {
        docs.edit(DocId::Venue(id), |am| {
            for (i, command) in commands.iter().enumerate() {
                command.apply(am).map_err(|e| (i, e))?;
            }
            Ok(())
        })
    })
    .await
    .map_err(|e| ApiError::internal("applying venue operations", e))?;
    match applied {
        Ok(()) => {
            tracing::info!(venue = %id, operations = count, "venue operations applied");
            Ok(Json(json!({ "status": "applied", "operations": count })))
        }
        Err(EditError::Refused((i, e))) => Err(ApiError::Unprocessable {
            message: format!("operation {i}: {e}; nothing was applied"),
        }),
        Err(other) => Err(ApiError::internal(
            "editing a venue document",
            format!("{other:?}"),
        )),
    }
}
