//! Status and proof of play: heartbeats on a timer, plays as the player page reports them,
//! both buffered durably in the store and sent to the hub in batches.
//!
//! Every event gets a random 16-byte id when it is created, and keeps it through every
//! retry: the hub skips ids it already has, so a batch resent after a lost answer creates
//! no duplicates. Events leave the buffer only after the hub's `200`.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use taplink_sync_proto::wire::{Heartbeat, TelemetryKind};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::LinkEnd;
use crate::hub::{HubApi, HubResponse, KioskEvent};
use crate::state::{Phase, Shared};
use taplink_sync_io::node::{Backoff, sleep_or_cancel};

/// Largest batch sent at once (the hub takes up to 1,000 events in at most 1 MiB; an
/// event is a few hundred bytes).
pub const MAX_BATCH: usize = 500;

/// How often the sender looks for events even without being told of new ones.
const SEND_IDLE: Duration = Duration::from_secs(30);

/// The software version reported in heartbeats.
pub const SOFTWARE: &str = concat!("taplink-kiosk ", env!("CARGO_PKG_VERSION"));

/// What an answer to a batch means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// `200`: stored by the hub; drop the batch.
    Acknowledged,
    /// `401`: the token was revoked.
    Revoked,
    /// `400` or `413`: the hub refuses this batch as it is. A smaller batch may pass; a
    /// single refused event can never be delivered.
    Refused(String),
    /// Anything else: keep the batch and retry later.
    Retry(String),
}

/// Decide on the hub's answer to a batch.
pub fn on_events_answer(resp: &HubResponse) -> Sent {
    match resp.status {
        // The count is informational (duplicates are not counted); any well-formed 200
        // means everything in the batch is stored.
        StatusCode::OK => {
            let accepted = serde_json::from_slice::<serde_json::Value>(&resp.body)
                .ok()
                .and_then(|v| v.get("accepted")?.as_u64());
            match accepted {
                Some(_) => Sent::Acknowledged,
                None => Sent::Retry("malformed acknowledgement".into()),
            }
        }
        StatusCode::UNAUTHORIZED => Sent::Revoked,
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => {
            Sent::Refused(format!("{}: {}", resp.status, resp.error_message()))
        }
        status => Sent::Retry(format!("{status}: {}", resp.error_message())),
    }
}

/// Buffer events durably and wake the sender.
pub(crate) fn record(
    shared: &Shared,
    events: &[KioskEvent],
) -> Result<(), crate::store::StoreError> {
    shared.store.push_events(events)?;
    shared.events_added.notify_one();
    Ok(())
}

/// Build a heartbeat from the machine's state now.
pub(crate) fn heartbeat(shared: &Shared) -> KioskEvent {
    let status = shared.status();
    KioskEvent {
        id: KioskEvent::random_id(),
        at_ms: shared.now_ms(),
        kind: TelemetryKind::Heartbeat(Heartbeat {
            on_screen: shared.on_screen(),
            manifest_version: status
                .manifest
                .as_ref()
                .map(|m| m.version.clone())
                .unwrap_or_default(),
            disk_free_bytes: disk_free(&shared.config.data_dir).unwrap_or(0),
            temperature_mc: std::fs::read_to_string("/sys/class/thermal/thermal_zone0/temp")
                .ok()
                .and_then(|t| parse_temperature(&t)),
            uptime_s: std::fs::read_to_string("/proc/uptime")
                .ok()
                .and_then(|u| parse_uptime(&u))
                .unwrap_or_else(|| shared.started.elapsed().as_secs()),
            software: SOFTWARE.into(),
        }),
    }
}

/// Bytes available to this user on the filesystem holding `dir`.
pub fn disk_free(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// `/sys/class/thermal/.../temp`: milli-degrees Celsius as an integer.
pub fn parse_temperature(text: &str) -> Option<i32> {
    text.trim().parse().ok()
}

/// `/proc/uptime`: seconds since boot, as the first of two decimals.
pub fn parse_uptime(text: &str) -> Option<u64> {
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then_some(secs as u64)
}

/// Record a heartbeat every interval while paired (whether or not the hub answers: they
/// are sent when it does).
pub(crate) async fn heartbeats(shared: &Shared, cancel: CancellationToken) {
    let every = Duration::from_secs(shared.config.heartbeat_interval_s);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !matches!(shared.status.borrow().phase, Phase::Paired { .. }) {
            continue;
        }
        if let Err(e) = record(shared, &[heartbeat(shared)]) {
            error!(error = %e, "cannot buffer a heartbeat");
        }
    }
}

/// Send buffered events to the hub until the token is revoked or shutdown.
pub(crate) async fn send_events(
    shared: &Shared,
    api: &HubApi,
    cancel: &CancellationToken,
) -> LinkEnd {
    let mut backoff = Backoff::new(shared.config.retry());
    let mut max = MAX_BATCH;
    loop {
        if let Ok(pending) = shared.store.pending() {
            shared
                .metrics
                .events_pending
                .set(i64::try_from(pending).unwrap_or(i64::MAX));
        }
        let batch = match shared.store.next_batch(max) {
            Ok(batch) => batch,
            Err(e) => {
                error!(error = %e, "cannot read the event buffer");
                if !sleep_or_cancel(backoff.next_delay(), cancel).await {
                    return LinkEnd::Cancelled;
                }
                continue;
            }
        };
        let Some(batch) = batch else {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return LinkEnd::Cancelled,
                _ = shared.events_added.notified() => {}
                _ = tokio::time::sleep(SEND_IDLE) => {}
            }
            continue;
        };
        let answer = tokio::select! {
            biased;
            _ = cancel.cancelled() => return LinkEnd::Cancelled,
            answer = api.post_events(&batch.events) => answer,
        };
        let decision = match answer {
            Ok(resp) => on_events_answer(&resp),
            Err(e) => Sent::Retry(e.to_string()),
        };
        let delay = match decision {
            Sent::Acknowledged => {
                if let Err(e) = shared.store.acknowledge(batch.upto) {
                    // The hub has them; resending after this error is harmless.
                    error!(error = %e, "cannot drop acknowledged events");
                }
                shared.metrics.events_sent.inc_by(batch.events.len() as u64);
                max = MAX_BATCH;
                backoff.reset();
                continue;
            }
            Sent::Revoked => return LinkEnd::Revoked,
            Sent::Refused(reason) if batch.events.len() > 1 => {
                // Find the event the hub objects to by halving the batch.
                max = (batch.events.len() / 2).max(1);
                warn!(%reason, next_batch = max, "hub refused a batch; sending smaller ones");
                continue;
            }
            Sent::Refused(reason) => {
                let event = &batch.events[0];
                error!(%reason, event = ?event, "hub refuses this event for good; dropping it");
                if let Err(e) = shared.store.drop_event(&event.id) {
                    error!(error = %e, "cannot drop a refused event");
                }
                max = MAX_BATCH;
                continue;
            }
            Sent::Retry(reason) => {
                info!(%reason, pending = batch.events.len(), "events not delivered; retrying later");
                backoff.next_delay()
            }
        };
        if !sleep_or_cancel(delay, cancel).await {
            return LinkEnd::Cancelled;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_answers_map_to_decisions() {
        assert_eq!(
            on_events_answer(&HubResponse::new(200, r#"{"accepted": 3}"#)),
            Sent::Acknowledged
        );
        assert_eq!(
            on_events_answer(&HubResponse::new(200, r#"{"accepted": 0}"#)),
            Sent::Acknowledged,
            "all duplicates is still stored"
        );
        assert_eq!(
            on_events_answer(&HubResponse::new(401, r#"{"error": "revoked"}"#)),
            Sent::Revoked
        );
        assert!(matches!(
            on_events_answer(&HubResponse::new(400, r#"{"error": "kind: unknown variant"}"#)),
            Sent::Refused(r) if r.contains("kind")
        ));
        assert!(matches!(
            on_events_answer(&HubResponse::new(413, r#"{"error": "too many"}"#)),
            Sent::Refused(_)
        ));
        for resp in [
            HubResponse::new(200, "ok"),
            HubResponse::new(500, "disk full"),
            HubResponse::new(503, ""),
        ] {
            assert!(
                matches!(on_events_answer(&resp), Sent::Retry(_)),
                "{resp:?}"
            );
        }
    }

    #[test]
    fn a_heartbeat_reports_the_screen_the_manifest_and_the_machine() {
        use taplink_sync_proto::ids::{KioskId, MediaHash};
        use taplink_sync_proto::manifest::Manifest;

        let dir = tempfile::tempdir().unwrap();
        let shared = Shared::open(crate::Config::new(dir.path().to_path_buf())).unwrap();
        let shown = MediaHash::of(b"poster");
        crate::follower::adopt(
            &shared,
            Manifest {
                kiosk: KioskId::from_bytes([9; 16]),
                playlist: None,
                version: "v42".into(),
                now: vec![],
                next: None,
                media: vec![],
            },
        );
        shared.saw_screen(Some(shown));
        let (a, b) = (heartbeat(&shared), heartbeat(&shared));
        assert_ne!(a.id, b.id, "every event has its own id");
        match a.kind {
            TelemetryKind::Heartbeat(h) => {
                assert_eq!(h.on_screen, Some(shown));
                assert_eq!(h.manifest_version, "v42");
                assert_eq!(h.software, SOFTWARE);
                assert!(h.disk_free_bytes > 0);
            }
            other => panic!("expected a heartbeat, got {other:?}"),
        }
    }

    #[test]
    fn machine_readings_parse() {
        assert_eq!(parse_temperature("48312\n"), Some(48_312));
        assert_eq!(parse_temperature("-5000"), Some(-5_000));
        assert_eq!(parse_temperature("hot"), None);
        assert_eq!(parse_uptime("3600.52 7000.10\n"), Some(3_600));
        assert_eq!(parse_uptime(""), None);
        assert_eq!(parse_uptime("-1 2"), None);
        let free = disk_free(Path::new("/")).unwrap();
        assert!(free > 0);
    }
}
