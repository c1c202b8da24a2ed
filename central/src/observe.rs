//! What follows every document change at central: the audit log ([`crate::audit`]) and the
//! catalog (`store/catalog.rs`), both brought up to date from the document itself, after
//! an edit through the API (synchronously, before the request is answered) and whenever a
//! hub's session persists changes ([`follow`]).

use taplink_sync_proto::doc::{load_org, load_venue};
use taplink_sync_proto::wire::DocId;

use crate::audit::AuditError;
use crate::state::AppState;

/// Record `doc`'s new changes in the audit log and refresh its catalog rows.
pub async fn after_change(state: AppState, doc: DocId) -> Result<(), AuditError> {
    crate::audit::catch_up(state.clone(), doc).await?;
    tokio::task::spawn_blocking(move || refresh_blocking(&state, doc))
        .await
        .map_err(|e| AuditError::Task(e.to_string()))?
}

/// Refresh the catalog rows of `doc` from the document.
fn refresh_blocking(state: &AppState, doc: DocId) -> Result<(), AuditError> {
    match doc {
        DocId::Venue(venue) => {
            let loaded = state.docs.read(doc, |am| load_venue(am).ok())?;
            // An empty document (before its first change) has nothing to list.
            if let Some(loaded) = loaded {
                state.registry.refresh_venue(venue, &loaded)?;
            }
        }
        DocId::Org => {
            if let Some(loaded) = state.docs.read(doc, |am| load_org(am).ok())? {
                state.registry.refresh_org(&loaded)?;
            }
        }
    }
    Ok(())
}

/// Until `cancel`: follow every document change (first catching up on all documents, for
/// changes made while central was down or before this build).
pub async fn follow(state: AppState, cancel: tokio_util::sync::CancellationToken) {
    let mut changes = state.docs.subscribe();
    for doc in state.docs.list() {
        if let Err(e) = after_change(state.clone(), doc).await {
            tracing::error!(error = %e, %doc, "recording earlier changes failed; will retry on the next change");
        }
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
            if let Err(e) = after_change(state.clone(), doc).await {
                tracing::error!(error = %e, %doc, "recording a change failed; will retry on the next change");
            }
        }
    }
}
