//! Alerts: conditions people should hear of — a hub or kiosk silent for longer than
//! `alert_offline_after`, a kiosk's disk below `alert_disk_low_bytes`, its temperature at
//! `alert_temperature_c` or above, or its content behind what central computes for it
//! (`crate::proof`) for longer than `alert_content_behind_after`. "Behind for longer" is
//! measured from the earlier of the proof's own "since" (the first report after its latest
//! matching one) and the first evaluation that saw it behind (`AppState::behind_since`, in
//! memory: after a restart the clock starts again, so the alert comes late, never falsely).
//!
//! [`evaluate`] computes the conditions that hold now from the registry (hub records, the
//! catalog's kiosks, their latest heartbeats) and [`Registry::reconcile_alerts`] opens and
//! clears them in one transaction; [`follow`] does that every [`EVERY`]. Each opening and
//! clearing is counted in `/metrics` and, if `alert_webhook_url` is set, POSTed there as
//! JSON by a task of its own through a bounded queue: retried with back-off, dropped (and
//! counted) when the queue is full, so a failing webhook never slows a page or the
//! evaluation.

use std::time::Duration;

use chrono::{DateTime, Utc};
use taplink_sync_proto::doc::load_venue;
use taplink_sync_proto::ids::KioskId;
use taplink_sync_proto::manifest::manifest;
use taplink_sync_proto::wire::DocId;

use crate::proof::Proof;
use crate::state::AppState;
use crate::store::{Alert, AlertChange, Condition, Reach, RegistryError};

/// How often the conditions are evaluated.
pub const EVERY: Duration = Duration::from_secs(30);
/// Deliveries waiting for the webhook at most; more are dropped and counted.
const QUEUE: usize = 1000;
/// Attempts per delivery.
const ATTEMPTS: u32 = 4;

/// The conditions that hold at `now`.
pub fn evaluate(state: &AppState, now: DateTime<Utc>) -> Result<Vec<Condition>, RegistryError> {
    let registry = &state.registry;
    let config = &state.config;
    let silent_for = config.alert_offline_after.duration();
    let mut holding = Vec::new();
    for venue in registry.list_venues()? {
        for hub in registry.list_hubs(Some(venue.id))? {
            let (None, Some(seen)) = (hub.revoked_at, hub.last_seen) else {
                continue;
            };
            if !state.online.contains(hub.id) && now - seen > silent_for {
                holding.push(Condition {
                    key: format!("hub_offline:{}", hub.id),
                    kind: "hub_offline",
                    venue: venue.id,
                    subject: format!("hub {}", hub.id),
                    detail: format!(
                        "the hub of {} has not been heard from since {}",
                        venue.name,
                        crate::rfc3339(seen)
                    ),
                });
            }
        }
        let kiosks = registry
            .kiosks_page(&Reach::All, Some(venue.id), None, 1000)?
            .items;
        let ids: Vec<KioskId> = kiosks.iter().filter_map(|k| k.id.parse().ok()).collect();
        let beats = registry.latest_heartbeats(venue.id, &ids)?;
        // The document only when some kiosk reports: central's manifests for the proof.
        let doc = if beats.is_empty() {
            None
        } else {
            state
                .docs
                .read(DocId::Venue(venue.id), |am| load_venue(am))
                .ok()
                .and_then(Result::ok)
        };
        for beat in beats {
            let name = kiosks
                .iter()
                .find(|k| k.id == beat.kiosk.to_string())
                .map_or_else(|| beat.kiosk.to_string(), |k| k.name.clone());
            let subject = format!("kiosk {}", beat.kiosk);
            let mut hold = |kind: &'static str, detail: String| {
                holding.push(Condition {
                    key: format!("{kind}:{}", beat.kiosk),
                    kind,
                    venue: venue.id,
                    subject: subject.clone(),
                    detail,
                });
            };
            if now - beat.at > silent_for {
                hold(
                    "kiosk_offline",
                    format!(
                        "{name} at {} has not reported since {}",
                        venue.name,
                        crate::rfc3339(beat.at)
                    ),
                );
                // What it said last may be stale: report only that it is silent (and
                // watch its content afresh once it reports again).
                lock(&state.behind_since).remove(&beat.kiosk);
                continue;
            }
            if beat.heartbeat.disk_free_bytes < config.alert_disk_low_bytes {
                hold(
                    "disk_low",
                    format!(
                        "{name} at {} has {} MiB of disk free",
                        venue.name,
                        beat.heartbeat.disk_free_bytes >> 20
                    ),
                );
            }
            if let Some(doc) = &doc {
                let computed = manifest(doc, beat.kiosk, now);
                let proof =
                    crate::proof::of(registry, venue.id, beat.kiosk, &computed, Some(&beat))?;
                let mut watched = lock(&state.behind_since);
                match proof {
                    Proof::Behind { since, after_match } => {
                        let first_seen = *watched.entry(beat.kiosk).or_insert(now);
                        let since = if after_match {
                            since.min(first_seen)
                        } else {
                            first_seen
                        };
                        if now - since > config.alert_content_behind_after.duration() {
                            hold(
                                "content_behind",
                                format!(
                                    "{name} at {} has not shown the current content since {} (it reports manifest {})",
                                    venue.name,
                                    crate::rfc3339(since),
                                    short(&beat.heartbeat.manifest_version)
                                ),
                            );
                        }
                    }
                    Proof::UpToDate | Proof::Unknown => {
                        watched.remove(&beat.kiosk);
                    }
                }
            }
            if let Some(mc) = beat.heartbeat.temperature_mc
                && i64::from(mc)
                    >= i64::try_from(config.alert_temperature_c).unwrap_or(i64::MAX) * 1000
            {
                hold(
                    "temperature_high",
                    format!("{name} at {} is at {} °C", venue.name, mc / 1000),
                );
            }
        }
    }
    Ok(holding)
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The first 12 characters of a version, as people compare them.
fn short(version: &str) -> &str {
    version.get(..12).unwrap_or(version)
}

/// One evaluation: conditions reconciled with the open alerts, the metric updated, the
/// changes queued for the webhook. Returns what changed.
pub fn evaluate_once(
    state: &AppState,
    webhook: Option<&Webhook>,
) -> Result<AlertChange, RegistryError> {
    let now = state.now();
    let holding = evaluate(state, now)?;
    let change = state.registry.reconcile_alerts(&holding, now)?;
    state
        .metrics
        .set_open_alerts(&state.registry.open_alerts(None)?);
    for alert in &change.opened {
        tracing::warn!(kind = %alert.kind, venue = %alert.venue, subject = %alert.subject, detail = %alert.detail, "alert opened");
    }
    for alert in &change.cleared {
        tracing::info!(kind = %alert.kind, venue = %alert.venue, subject = %alert.subject, "alert cleared");
    }
    if let Some(webhook) = webhook {
        for (event, alert) in change
            .opened
            .iter()
            .map(|a| ("opened", a))
            .chain(change.cleared.iter().map(|a| ("cleared", a)))
        {
            webhook.queue(state, event, alert);
        }
    }
    Ok(change)
}

/// The webhook's queue.
#[derive(Debug, Clone)]
pub struct Webhook {
    sender: tokio::sync::mpsc::Sender<serde_json::Value>,
}

impl Webhook {
    /// Start delivering to `url` until `cancel`.
    pub fn start(
        url: String,
        state: AppState,
        tasks: &tokio_util::task::TaskTracker,
        cancel: tokio_util::sync::CancellationToken,
    ) -> Webhook {
        let (sender, receiver) = tokio::sync::mpsc::channel(QUEUE);
        tasks.spawn(deliver(url, receiver, state, cancel));
        Webhook { sender }
    }

    fn queue(&self, state: &AppState, event: &str, alert: &Alert) {
        let body = serde_json::json!({ "event": event, "alert": alert });
        if self.sender.try_send(body).is_err() {
            state.metrics.alert_webhook_dropped.inc();
            tracing::warn!("the alert webhook's queue is full; an alert event was dropped");
        }
    }
}

async fn deliver(
    url: String,
    mut receiver: tokio::sync::mpsc::Receiver<serde_json::Value>,
    state: AppState,
    cancel: tokio_util::sync::CancellationToken,
) {
    // reqwest looks for the process's default TLS provider even for plain HTTP; make it
    // the one every TLS of ours uses (a no-op if one is installed).
    let _ = rustls::crypto::CryptoProvider::install_default(
        taplink_certs::tls::crypto_provider().as_ref().clone(),
    );
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "cannot make the alert webhook's client; alerts are not sent");
            return;
        }
    };
    loop {
        let body = tokio::select! {
            _ = cancel.cancelled() => return,
            body = receiver.recv() => match body { Some(body) => body, None => return },
        };
        let mut wait = Duration::from_millis(500);
        for attempt in 1..=ATTEMPTS {
            let sent = client.post(&url).json(&body).send().await;
            match sent {
                Ok(r) if r.status().is_success() => {
                    state.metrics.alert_webhook_sent.inc();
                    break;
                }
                other => {
                    let why = match other {
                        Ok(r) => format!("answered {}", r.status()),
                        Err(e) => e.to_string(),
                    };
                    if attempt == ATTEMPTS {
                        state.metrics.alert_webhook_failed.inc();
                        tracing::warn!(%why, attempts = ATTEMPTS, "the alert webhook failed; this event is dropped");
                        break;
                    }
                    tracing::info!(%why, attempt, "the alert webhook failed; retrying");
                    if !taplink_sync_io::node::sleep_or_cancel(wait, &cancel).await {
                        return;
                    }
                    wait *= 2;
                }
            }
        }
    }
}

/// Until `cancel`: evaluate every [`EVERY`].
pub async fn follow(
    state: AppState,
    webhook: Option<Webhook>,
    cancel: tokio_util::sync::CancellationToken,
) {
    loop {
        let (s, w) = (state.clone(), webhook.clone());
        match tokio::task::spawn_blocking(move || evaluate_once(&s, w.as_ref())).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "evaluating alerts failed; will retry"),
            Err(e) => tracing::warn!(error = %e, "the alert task failed; will retry"),
        }
        if !taplink_sync_io::node::sleep_or_cancel(EVERY, &cancel).await {
            return;
        }
    }
}
