//! Telemetry retention: raw telemetry older than the config's `telemetry_retention_days`
//! is deleted, its plays first added to the daily rollups the proof-of-play report reads
//! (`store/plays.rs`), so the report's daily totals do not change when rows expire.
//!
//! [`expire_periodically`] runs a pass every [`EXPIRY_INTERVAL`] on central's task
//! tracker. A pass works in batches of [`EXPIRY_BATCH`] rows, each one short transaction
//! (roll up and delete together), and gives the registry back between batches, so hubs'
//! telemetry keeps being stored while a large backlog expires. The cutoff comes from the
//! state's clock.

use std::time::Duration;

use chrono::TimeDelta;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;
use crate::store::RegistryError;

/// How often expiry runs. The first pass runs one interval after start, so a restart loop
/// does not turn into an expiry loop.
pub const EXPIRY_INTERVAL: Duration = Duration::from_secs(3600);
/// Rows per transaction: small enough that a telemetry batch waiting for the write lock
/// waits milliseconds.
pub const EXPIRY_BATCH: usize = 500;

/// What one expiry pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpiryReport {
    /// Raw telemetry rows deleted.
    pub deleted: u64,
    /// Of those, plays added to the daily rollups.
    pub plays_rolled_up: u64,
    /// Transactions it took.
    pub batches: u64,
}

/// Why an expiry pass stopped early (what it did before stays done).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExpiryError {
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The blocking task running a batch panicked or was cancelled.
    #[error("the expiry task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Run one expiry pass to its end: every telemetry row older than the retention period
/// (on the state's clock) is rolled up and deleted.
pub async fn expire_once(state: &AppState) -> Result<ExpiryReport, ExpiryError> {
    expire_pass(state, &CancellationToken::new()).await
}

async fn expire_pass(
    state: &AppState,
    cancel: &CancellationToken,
) -> Result<ExpiryReport, ExpiryError> {
    let days = state.config.telemetry_retention_days;
    let cutoff = state.now() - TimeDelta::days(i64::from(days));
    let mut report = ExpiryReport::default();
    while !cancel.is_cancelled() {
        let registry = state.registry.clone();
        let batch =
            tokio::task::spawn_blocking(move || registry.expire_telemetry(cutoff, EXPIRY_BATCH))
                .await??;
        report.deleted += batch.deleted;
        report.plays_rolled_up += batch.plays_rolled_up;
        report.batches += 1;
        state.metrics.telemetry_expired.inc_by(batch.deleted);
        state.metrics.plays_rolled_up.inc_by(batch.plays_rolled_up);
        if batch.deleted > 0 {
            tracing::debug!(
                deleted = batch.deleted,
                plays_rolled_up = batch.plays_rolled_up,
                total = report.deleted,
                "telemetry expiry batch"
            );
        }
        if batch.deleted < EXPIRY_BATCH as u64 {
            break;
        }
        // Let waiting ingestion and requests take the registry between batches.
        tokio::task::yield_now().await;
    }
    if report.deleted > 0 {
        tracing::info!(
            deleted = report.deleted,
            plays_rolled_up = report.plays_rolled_up,
            batches = report.batches,
            retention_days = days,
            cutoff = %crate::rfc3339(cutoff),
            "expired old telemetry"
        );
    }
    Ok(report)
}

/// Run an expiry pass every `every` until `cancel`; a failed pass is logged and retried at
/// the next interval.
pub async fn expire_periodically(state: AppState, every: Duration, cancel: CancellationToken) {
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(error) = expire_pass(&state, &cancel).await {
            tracing::warn!(%error, "telemetry expiry failed; will retry at the next interval");
        }
    }
}
