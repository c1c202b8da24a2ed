//! The audit log's writer for document changes.
//!
//! Every change to a document central holds is recorded once, whether it was made here
//! (an API or CLI request, committed with a [`ChangeNote`]) or arrived from a hub. The
//! recorder reads the changes made since the heads it last recorded for that document
//! ([`Registry::audit_cursor`]) and appends one entry per change, with the cursor moved in
//! the same transaction, so a crash neither loses nor doubles an entry.
//!
//! Attribution: the *device* is the change's automerge actor (central's own, or a hub's
//! id — [`taplink_sync_proto::note::node_actor`]); the *person* is the note's author. A
//! hub's change is attributed to a person only if that hub's venue roster allows it
//! (a central user whose role and scope reach the venue, or the hub's own staff token);
//! anything else is recorded and flagged.

use automerge::{Change, ChangeHash};
use taplink_sync_proto::authz::{Target, authorize};
use taplink_sync_proto::ids::{HubId, UserId, VenueId};
use taplink_sync_proto::note::{Author, ChangeNote, Via};
use taplink_sync_proto::wire::DocId;

use crate::state::AppState;
use crate::store::{AuditRecord, Registry, RegistryError};

/// Why recording failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The document is not held here.
    #[error(transparent)]
    Documents(#[from] taplink_sync_io::docs::DocumentsError),
    /// The blocking task failed.
    #[error("audit task failed: {0}")]
    Task(String),
}

/// Record every change of `doc` not recorded yet (off the async workers).
pub async fn catch_up(state: AppState, doc: DocId) -> Result<usize, AuditError> {
    tokio::task::spawn_blocking(move || catch_up_blocking(&state, doc))
        .await
        .map_err(|e| AuditError::Task(e.to_string()))?
}

/// [`catch_up`] for every document.
pub async fn catch_up_all(state: AppState) -> Result<usize, AuditError> {
    let mut total = 0;
    for doc in state.docs.list() {
        total += catch_up(state.clone(), doc).await?;
    }
    Ok(total)
}

/// Until `cancel`: record the changes that hubs bring, as their sessions persist them.
pub async fn follow(state: AppState, cancel: tokio_util::sync::CancellationToken) {
    let mut changes = state.docs.subscribe();
    if let Err(e) = catch_up_all(state.clone()).await {
        tracing::error!(error = %e, "audit: recording earlier changes failed; will retry on the next change");
    }
    loop {
        let docs = tokio::select! {
            _ = cancel.cancelled() => return,
            change = changes.recv() => match change {
                Ok(change) => vec![change.doc],
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => state.docs.list(),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        };
        for doc in docs {
            if let Err(e) = catch_up(state.clone(), doc).await {
                tracing::error!(error = %e, %doc, "audit: recording changes failed; will retry on the next change");
            }
        }
    }
}

fn catch_up_blocking(state: &AppState, doc: DocId) -> Result<usize, AuditError> {
    let registry = &state.registry;
    // One recorder at a time per registry: two would read the same cursor.
    let _guard = state
        .audit_lock
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let since = registry.audit_cursor(doc)?;
    let central_actor = state.docs.actor().clone();
    let (changes, heads) = state.docs.read(doc, |am| {
        let changes: Vec<Change> = am.get_changes(&since);
        (changes, am.get_heads())
    })?;
    if changes.is_empty() {
        return Ok(0);
    }
    let venue = match doc {
        DocId::Venue(v) => Some(v),
        DocId::Org => None,
    };
    let records: Vec<AuditRecord> = changes
        .iter()
        .map(|change| attribute(registry, &central_actor, venue, change))
        .collect::<Result<_, _>>()?;
    let count = records.len();
    registry.append_audit(doc, &records, &heads, state.now())?;
    Ok(count)
}

/// One change as an audit record: who, where, when, what.
fn attribute(
    registry: &Registry,
    central_actor: &automerge::ActorId,
    venue: Option<VenueId>,
    change: &Change,
) -> Result<AuditRecord, RegistryError> {
    let note = change.message().and_then(ChangeNote::from_message);
    let at_ms = note
        .as_ref()
        .map_or(change.timestamp().saturating_mul(1000), |n| n.at_ms);
    let mut flag: Option<String> = None;
    let actor_bytes: Option<[u8; 16]> = change.actor_id().to_bytes().try_into().ok();
    let origin = if change.actor_id() == central_actor {
        "central".to_owned()
    } else if let Some(hub) = actor_bytes.map(HubId::from_bytes)
        && let Some(record) = registry.hub(hub)?
    {
        if Some(record.venue) != venue {
            flag = Some(format!("hub {hub} wrote to a document of another venue"));
        }
        format!("hub:{hub}")
    } else {
        flag = Some("written by a device this registry does not know".to_owned());
        format!("device:{}", change.actor_id())
    };
    let from_hub = origin.starts_with("hub:");
    let actor = match note.as_ref().map(|n| &n.by) {
        None => {
            if from_hub && flag.is_none() {
                flag = Some("the change names no author".to_owned());
            }
            if origin == "central" {
                "central".to_owned()
            } else {
                format!("device:{}", origin.trim_start_matches("hub:"))
            }
        }
        Some(Author::User { id }) => {
            if from_hub && flag.is_none() {
                flag = roster_refusal(registry, id, venue, note.as_ref())?;
            }
            format!("user:{id}")
        }
        Some(Author::Token { id }) => {
            if from_hub && flag.is_none() {
                flag = Some("an API token cannot act at a hub".to_owned());
            }
            format!("token:{id}")
        }
        Some(Author::AdminToken) => {
            if from_hub && flag.is_none() {
                flag = Some("central's admin token cannot act at a hub".to_owned());
            }
            "admin_token".to_owned()
        }
        Some(Author::HubStaff { name }) => {
            if !from_hub && flag.is_none() {
                flag = Some("hub staff named by a change that no hub wrote".to_owned());
            }
            format!("hub_staff:{name}")
        }
        Some(Author::Device { device, id }) => format!("{device}:{id}"),
    };
    let via = note.as_ref().map_or(Via::System, |n| n.via);
    Ok(AuditRecord {
        at_ms,
        actor,
        via,
        origin,
        venue,
        action: "document.change".to_owned(),
        detail: serde_json::json!({
            "change": change.hash().to_string(),
            "ops": note.as_ref().map_or(serde_json::Value::Null, |n| n.ops.clone()),
            "operations": change.len(),
        }),
        heads: vec![change.hash()],
        flag,
    })
}

/// Why the venue's roster does not allow user `id` to have made this change at its hub,
/// if it does not.
fn roster_refusal(
    registry: &Registry,
    id: &str,
    venue: Option<VenueId>,
    note: Option<&ChangeNote>,
) -> Result<Option<String>, RegistryError> {
    let Ok(user_id) = id.parse::<UserId>() else {
        return Ok(Some(format!("user {id:?} is not a user id")));
    };
    let Some(user) = registry.user(user_id)? else {
        return Ok(Some(format!("user {id} does not exist")));
    };
    if user.disabled {
        return Ok(Some(format!("user {id} is disabled")));
    }
    let Some(venue) = venue else {
        return Ok(Some("a hub changed the organisation document".to_owned()));
    };
    let Some(record) = registry.venue(venue)? else {
        return Ok(Some(format!("venue {venue} does not exist")));
    };
    let target = Target::Venue {
        id: venue,
        tags: &record.tags,
    };
    let actions = note
        .map(|n| crate::audit::actions_of(&n.ops))
        .unwrap_or_default();
    let principal = user.principal();
    for action in actions {
        if let Err(denied) = authorize(&principal, action, target) {
            return Ok(Some(format!(
                "the venue's roster does not allow it: {denied}"
            )));
        }
    }
    Ok(None)
}

/// The actions a note's operations needed (venue commands it can parse).
fn actions_of(ops: &serde_json::Value) -> Vec<taplink_sync_proto::authz::Action> {
    let items = match ops {
        serde_json::Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    };
    let mut actions: Vec<_> = items
        .into_iter()
        .filter_map(|v| serde_json::from_value::<taplink_sync_proto::doc::VenueCommand>(v).ok())
        .map(|c| c.action())
        .collect();
    if actions.is_empty() {
        actions.push(taplink_sync_proto::authz::Action::ContentWrite);
    }
    actions
}

/// The heads as text, for the audit log.
pub fn heads_text(heads: &[ChangeHash]) -> Vec<String> {
    heads.iter().map(ToString::to_string).collect()
}
