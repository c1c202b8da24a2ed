//! Following the manifest: long-poll the hub for it, keep the last good one on disk, and
//! fetch every media file it names into the cache.
//!
//! Two loops run while the kiosk is paired and its hub is known:
//! - [`follow`] holds a conditional long-poll open (`If-None-Match`, `?wait=`); a new
//!   manifest is saved to disk *before* it is published to the player, so a restart
//!   without the hub plays it;
//! - [`fetch_media`] downloads what the published manifest needs and is missing (what
//!   plays now first, then what plays next, then the rest), evicts what no manifest needs
//!   when over budget, and tells the player which files are ready.
//!
//! Decisions on the hub's answers are pure ([`on_manifest`]), tested with recorded answers.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use taplink_sync_proto::ids::{KioskId, MediaHash};
use taplink_sync_proto::manifest::Manifest;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::LinkEnd;
use crate::cache::{self, FetchError, Room};
use crate::hub::{HubApi, HubResponse};
use crate::state::Shared;
use taplink_sync_io::node::{Backoff, sleep_or_cancel};

/// Below this, a clock difference is within the `Date` header's one-second resolution and
/// network delay, and is ignored.
const CLOCK_SLACK_MS: i64 = 2_000;

/// How long to wait before trying missing media again after failures.
const FETCH_RETRY: Duration = Duration::from_secs(30);

/// What an answer to a manifest request means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestStep {
    /// A manifest for this kiosk.
    New(Manifest),
    /// `304`: what we have is current.
    Unchanged,
    /// `401`: the token was revoked.
    Revoked,
    /// Anything else: keep playing what we have, retry later.
    Retry(String),
}

/// Decide on an answer to `GET /api/v1/kiosk/manifest` for kiosk `kiosk`.
pub fn on_manifest(resp: &HubResponse, kiosk: KioskId) -> ManifestStep {
    match resp.status {
        StatusCode::OK => match serde_json::from_slice::<Manifest>(&resp.body) {
            Ok(m) if m.kiosk == kiosk => ManifestStep::New(m),
            Ok(m) => ManifestStep::Retry(format!(
                "the hub sent the manifest of kiosk {}, this is {kiosk}",
                m.kiosk
            )),
            Err(e) => ManifestStep::Retry(format!("malformed manifest: {e}")),
        },
        StatusCode::NOT_MODIFIED => ManifestStep::Unchanged,
        StatusCode::UNAUTHORIZED => ManifestStep::Revoked,
        status => ManifestStep::Retry(format!("{status}: {}", resp.error_message())),
    }
}

/// The hub's clock minus ours, from its `Date` header read at `local`; 0 when within the
/// header's resolution.
pub fn clock_offset_ms(hub_date: DateTime<Utc>, local: DateTime<Utc>) -> i64 {
    // The header truncates to the second: compare against the middle of that second.
    let offset = (hub_date - local).num_milliseconds() + 500;
    if offset.abs() < CLOCK_SLACK_MS {
        0
    } else {
        offset
    }
}

/// Make `manifest` the one in play: on disk first, then published with what of it is
/// already cached.
pub fn adopt(shared: &Shared, manifest: Manifest) {
    if let Err(e) = shared.store.save_manifest(&manifest, shared.now_ms()) {
        // Still play it: failing to persist costs only a restart without the hub.
        error!(error = %e, "cannot save the manifest to disk");
    }
    let ready = ready_of(shared, &manifest);
    info!(
        version = %manifest.version,
        playlist = ?manifest.playlist,
        now = manifest.now.len(),
        media = manifest.media.len(),
        cached = ready.len(),
        "new manifest"
    );
    shared.metrics.manifest_updates.inc();
    shared.metrics.set_manifest(Some(&manifest.version));
    let manifest = Arc::new(manifest);
    shared.status.send_modify(|s| {
        s.manifest = Some(manifest);
        s.ready = Arc::new(ready);
    });
}

/// The manifest's media that is in the cache, with sizes.
pub fn ready_of(shared: &Shared, manifest: &Manifest) -> BTreeMap<MediaHash, u64> {
    manifest
        .media
        .iter()
        .filter_map(|h| match shared.blobs.size(h) {
            Ok(size) => size.map(|s| (*h, s)),
            Err(e) => {
                warn!(hash = %h, error = %e, "cannot read the media cache");
                None
            }
        })
        .collect()
}

/// Long-poll the manifest until the token is revoked, the hub is lost or shutdown.
pub(crate) async fn follow(
    shared: &Shared,
    api: &HubApi,
    kiosk: KioskId,
    cancel: &CancellationToken,
) -> LinkEnd {
    let wait = Duration::from_secs(shared.config.manifest_wait_s);
    let mut backoff = Backoff::new(shared.config.retry());
    let mut unanswered = 0u32;
    loop {
        let version = shared
            .status
            .borrow()
            .manifest
            .as_ref()
            .map(|m| m.version.clone());
        let answer = tokio::select! {
            biased;
            _ = cancel.cancelled() => return LinkEnd::Cancelled,
            answer = api.manifest(version.as_deref(), wait) => answer,
        };
        let resp = match answer {
            Ok(resp) => resp,
            Err(e) => {
                unanswered += 1;
                shared.set_reachable(false);
                warn!(error = %e, unanswered, "manifest request unanswered");
                if unanswered >= shared.config.hub_lost_after {
                    return LinkEnd::HubLost;
                }
                if !sleep_or_cancel(backoff.next_delay(), cancel).await {
                    return LinkEnd::Cancelled;
                }
                continue;
            }
        };
        unanswered = 0;
        shared.set_reachable(true);
        if let Some(date) = resp.date {
            let offset = clock_offset_ms(date, shared.clock.now());
            shared.status.send_if_modified(|s| {
                let changed = s.clock_offset_ms != offset;
                if changed {
                    info!(offset_ms = offset, "hub clock differs from ours");
                }
                s.clock_offset_ms = offset;
                changed
            });
        }
        match on_manifest(&resp, kiosk) {
            ManifestStep::New(m) => {
                backoff.reset();
                if version.as_deref() != Some(&m.version) {
                    adopt(shared, m);
                }
            }
            ManifestStep::Unchanged => backoff.reset(),
            ManifestStep::Revoked => return LinkEnd::Revoked,
            ManifestStep::Retry(reason) => {
                warn!(%reason, "no usable manifest from the hub; playing the last good one");
                if !sleep_or_cancel(backoff.next_delay(), cancel).await {
                    return LinkEnd::Cancelled;
                }
            }
        }
    }
}

/// The order to fetch a manifest's media in: what plays now, then next, then the rest.
pub fn fetch_order(manifest: &Manifest) -> Vec<MediaHash> {
    let mut seen = HashSet::new();
    let next = manifest.next.iter().flat_map(|n| n.items.iter());
    manifest
        .now
        .iter()
        .chain(next)
        .map(|i| i.media)
        .chain(manifest.media.iter().copied())
        .filter(|h| seen.insert(*h))
        .collect()
}

/// How one pass over the missing media ended.
enum Pass {
    /// Everything is cached.
    Complete,
    /// Some downloads failed; try again later.
    Incomplete,
    /// 401.
    Revoked,
}

/// Keep the cache filled with what the published manifest needs.
pub(crate) async fn fetch_media(
    shared: &Shared,
    api: &HubApi,
    cancel: &CancellationToken,
) -> LinkEnd {
    let mut changes = shared.status.subscribe();
    let mut done_version: Option<String> = None;
    loop {
        let manifest = changes.borrow_and_update().manifest.clone();
        let version = manifest.as_ref().map(|m| m.version.clone());
        let mut retry_at = None;
        if let Some(manifest) = manifest
            && done_version != version
        {
            match fetch_pass(shared, api, &manifest, cancel).await {
                Pass::Complete => done_version = version.clone(),
                Pass::Revoked => return LinkEnd::Revoked,
                Pass::Incomplete => retry_at = Some(tokio::time::Instant::now() + FETCH_RETRY),
            }
        }
        // Sleep until the manifest's version changes (other status changes do not count)
        // or, after failures, until the retry time.
        loop {
            let retry = async {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return LinkEnd::Cancelled,
                changed = changes.changed() => {
                    if changed.is_err() {
                        return LinkEnd::Cancelled;
                    }
                    let now = changes.borrow().manifest.as_ref().map(|m| m.version.clone());
                    if now != version {
                        break;
                    }
                }
                _ = retry => break,
            }
        }
    }
}

/// Everything that must stay cached right now: `manifest`'s media and the published
/// manifest's (which may be newer than the one this pass works on).
fn needed_now(shared: &Shared, manifest: &Manifest) -> HashSet<MediaHash> {
    let published = shared.status.borrow().manifest.clone();
    manifest
        .media
        .iter()
        .chain(published.iter().flat_map(|m| m.media.iter()))
        .copied()
        .collect()
}

async fn fetch_pass(
    shared: &Shared,
    api: &HubApi,
    manifest: &Manifest,
    cancel: &CancellationToken,
) -> Pass {
    let mut complete = true;
    for hash in fetch_order(manifest) {
        let superseded =
            shared.status.borrow().manifest.as_ref().map(|m| &m.version) != Some(&manifest.version);
        if cancel.is_cancelled() || superseded {
            return Pass::Incomplete;
        }
        match shared.blobs.has(&hash) {
            Ok(true) => {
                if let Err(e) = shared.blobs.touch(&hash) {
                    warn!(%hash, error = %e, "cannot mark media as used");
                }
                continue;
            }
            Ok(false) => {}
            Err(e) => {
                error!(%hash, error = %e, "cannot read the media cache");
                complete = false;
                continue;
            }
        }
        let needed = needed_now(shared, manifest);
        let room = Room {
            needed: &needed,
            budget: shared.config.cache_budget_bytes,
        };
        match cache::fetch(api, &shared.blobs, hash, room).await {
            Ok((size, received)) => {
                shared.metrics.media_fetched.inc();
                shared.metrics.media_bytes_fetched.inc_by(received);
                info!(%hash, size, "media cached");
                publish_ready(shared);
            }
            Err(FetchError::Revoked) => return Pass::Revoked,
            Err(FetchError::Unreachable(e)) => {
                shared.metrics.media_fetch_failures.inc();
                warn!(%hash, error = %e, "media download broke off; retrying later");
                return Pass::Incomplete;
            }
            Err(e) => {
                shared.metrics.media_fetch_failures.inc();
                warn!(%hash, error = %e, "media download failed; retrying later");
                complete = false;
            }
        }
    }
    // Bring the cache back within budget now that nothing more is coming.
    let blobs = shared.blobs.clone();
    let needed = needed_now(shared, manifest);
    let budget = shared.config.cache_budget_bytes;
    match tokio::task::spawn_blocking(move || cache::evict(&blobs, &needed, budget, 0)).await {
        Ok(Ok(evicted)) => {
            if evicted.blobs > 0 {
                shared.metrics.media_evicted.inc_by(evicted.blobs as u64);
                info!(
                    blobs = evicted.blobs,
                    bytes = evicted.bytes,
                    "evicted media no manifest needs"
                );
            }
            shared
                .metrics
                .cache_bytes
                .set(i64::try_from(evicted.total).unwrap_or(i64::MAX));
        }
        Ok(Err(e)) => warn!(error = %e, "cannot evict media"),
        Err(e) => warn!(error = %e, "eviction task failed"),
    }
    if complete {
        Pass::Complete
    } else {
        Pass::Incomplete
    }
}

/// Recompute what of the published manifest is cached, and publish it.
fn publish_ready(shared: &Shared) {
    let published = shared.status.borrow().manifest.clone();
    let Some(manifest) = published else {
        return;
    };
    let ready = Arc::new(ready_of(shared, &manifest));
    shared.status.send_modify(|s| {
        // Only if the manifest did not change meanwhile (its adopter computed its own).
        if s.manifest.as_ref().map(|m| &m.version) == Some(&manifest.version) {
            s.ready = ready;
        }
    });
    if let Ok(total) = shared.blobs.total_size() {
        shared
            .metrics
            .cache_bytes
            .set(i64::try_from(total).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use taplink_sync_proto::ids::{ItemId, PlaylistId};
    use taplink_sync_proto::manifest::{ManifestItem, NextChange};

    use super::*;

    fn item(n: u8) -> ManifestItem {
        ManifestItem {
            item: ItemId::from_bytes([n; 16]),
            media: MediaHash::of(&[n]),
            content_type: "image/png".into(),
            duration_ms: 5_000,
        }
    }

    fn manifest(kiosk: KioskId) -> Manifest {
        Manifest {
            kiosk,
            playlist: Some(PlaylistId::from_bytes([1; 16])),
            version: "v1".into(),
            now: vec![item(3), item(1)],
            next: Some(NextChange {
                at: DateTime::parse_from_rfc3339("2026-11-20T18:00:00Z")
                    .unwrap()
                    .with_timezone(&Utc),
                items: vec![item(2), item(3)],
            }),
            media: vec![
                MediaHash::of(&[1]),
                MediaHash::of(&[2]),
                MediaHash::of(&[3]),
                MediaHash::of(&[4]),
            ],
        }
    }

    #[test]
    fn manifest_answers_map_to_decisions() {
        let kiosk = KioskId::from_bytes([9; 16]);
        let m = manifest(kiosk);
        let ok = HubResponse::new(200, &serde_json::to_string(&m).unwrap());
        assert_eq!(on_manifest(&ok, kiosk), ManifestStep::New(m.clone()));
        assert_eq!(
            on_manifest(&HubResponse::new(304, ""), kiosk),
            ManifestStep::Unchanged
        );
        assert_eq!(
            on_manifest(&HubResponse::new(401, r#"{"error": "revoked"}"#), kiosk),
            ManifestStep::Revoked
        );
        let other = KioskId::from_bytes([8; 16]);
        assert!(
            matches!(on_manifest(&ok, other), ManifestStep::Retry(r) if r.contains("another") || r.contains("kiosk"))
        );
        for resp in [
            HubResponse::new(200, "{"),
            HubResponse::new(500, "boom"),
            HubResponse::new(404, r#"{"error": "kiosk not in the venue"}"#),
        ] {
            assert!(
                matches!(on_manifest(&resp, kiosk), ManifestStep::Retry(_)),
                "{resp:?}"
            );
        }
    }

    #[test]
    fn media_is_fetched_now_first_then_next_then_the_rest() {
        let m = manifest(KioskId::from_bytes([9; 16]));
        let order: Vec<MediaHash> = [3, 1, 2, 4].iter().map(|n| MediaHash::of(&[*n])).collect();
        assert_eq!(fetch_order(&m), order);
    }

    #[test]
    fn clock_offsets_below_the_date_headers_resolution_are_ignored() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let local = at("2026-11-20T18:00:00.300Z");
        assert_eq!(clock_offset_ms(at("2026-11-20T18:00:00Z"), local), 0);
        assert_eq!(clock_offset_ms(at("2026-11-20T18:00:01Z"), local), 0);
        assert_eq!(
            clock_offset_ms(at("2026-11-20T19:00:00Z"), local),
            3_600_000 + 200
        );
        assert_eq!(
            clock_offset_ms(at("2026-11-20T17:00:00Z"), local),
            -3_600_000 + 200
        );
    }
}
