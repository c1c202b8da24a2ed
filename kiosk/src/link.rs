//! The link actor: the kiosk's whole relationship with its hub, as one loop.
//!
//! 1. Find the hub: the configured address, or mDNS (only hubs of the kiosk's venue once
//!    it is paired).
//! 2. Without a device token, pair with it.
//! 3. With one, run the manifest follower, the media fetcher and the event sender against
//!    it until one of them reports that the token was revoked (forget it, pair again) or
//!    that the hub stopped answering (find it again).
//!
//! Playback never waits for any of this: the player serves the last good manifest and the
//! cache throughout.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::LinkEnd;
use crate::discovery::{self, Browse, FoundHub};
use crate::hub::{HubApi, Transport};
use crate::pairing::{self, PairingEnd, PairingParams};
use crate::state::{Phase, Shared};
use crate::store::Credentials;
use crate::{follower, reporter};
use taplink_certs::tls::HubPin;
use taplink_sync_io::node::{Backoff, sleep_or_cancel};

/// Run the link until `cancel` fires.
pub(crate) async fn run(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut backoff = Backoff::new(shared.config.retry());
    let mut hub: Option<FoundHub> = None;
    loop {
        let creds = match shared.store.credentials() {
            Ok(creds) => creds,
            Err(e) => {
                error!(error = %e, "cannot read the kiosk's credentials");
                if !sleep_or_cancel(backoff.next_delay(), &cancel).await {
                    return;
                }
                continue;
            }
        };
        let found = match hub.take() {
            Some(found) => found,
            None => match find_hub(&shared, creds.as_ref(), &cancel).await {
                Some(found) => found,
                None => return,
            },
        };
        shared.status.send_modify(|s| s.hub = Some(found.addr));
        let pinned = match shared.store.hub_pin() {
            Ok(pinned) => pinned,
            Err(e) => {
                error!(error = %e, "cannot read the pinned hub certificate");
                if !sleep_or_cancel(backoff.next_delay(), &cancel).await {
                    return;
                }
                continue;
            }
        };
        let transport = transport(&shared, &found, pinned);
        let api = match HubApi::new(found.addr, &transport) {
            Ok(api) => api,
            Err(e) => {
                error!(error = %e, "cannot make an HTTP client");
                if !sleep_or_cancel(backoff.next_delay(), &cancel).await {
                    return;
                }
                continue;
            }
        };

        let creds = match creds {
            Some(creds) => creds,
            None => match pair(&shared, &api, &found, &cancel).await {
                Some(PairingEnd::Paired(creds)) => creds,
                Some(PairingEnd::HubLost) => {
                    shared.set_reachable(false);
                    continue;
                }
                Some(PairingEnd::Cancelled) => return,
                None => {
                    // A store error, logged; keep the hub and try again.
                    hub = Some(found);
                    if !sleep_or_cancel(backoff.next_delay(), &cancel).await {
                        return;
                    }
                    continue;
                }
            },
        };
        set_paired(&shared, &creds);
        shared.set_reachable(true);
        backoff.reset();
        // Pinned from now on: this hub's certificate and no other (known by now if it was
        // first seen during pairing).
        pin_hub(&shared, pinned, &transport);

        let api = api.with_token(&creds.token);
        let end = tokio::select! {
            end = follower::follow(&shared, &api, creds.kiosk, &cancel) => end,
            end = follower::fetch_media(&shared, &api, &cancel) => end,
            end = reporter::send_events(&shared, &api, &cancel) => end,
        };
        pin_hub(&shared, pinned, &transport);
        match end {
            LinkEnd::Cancelled => return,
            LinkEnd::HubLost => {
                warn!(hub = %found.addr, "hub stopped answering; searching again");
                shared.set_reachable(false);
            }
            LinkEnd::Revoked => {
                // Same hub: pair with it again.
                hub = Some(found);
                if !forget(&shared, &creds) && !sleep_or_cancel(backoff.next_delay(), &cancel).await
                {
                    return;
                }
            }
        }
    }
}

/// How to reach `found`: plain HTTP for a lab; otherwise HTTPS pinned to the hub this
/// kiosk paired with, or else to the fingerprint mDNS advertised (or the config gave), or
/// else — a bare `--hub` before pairing — to the first certificate seen, which pairing then
/// pins.
fn transport(
    shared: &Shared,
    found: &FoundHub,
    pinned: Option<taplink_certs::Fingerprint>,
) -> Transport {
    if shared.config.hub_plain_http {
        return Transport::Plain;
    }
    let known = pinned.or_else(|| found.fingerprint.as_deref().and_then(|f| f.parse().ok()));
    match known {
        Some(fp) => Transport::Tls(HubPin::Exact(fp)),
        None => {
            warn!(hub = %found.addr, "no fingerprint is known for this hub's certificate: trusting the first one seen and pinning it at pairing (set hub_fingerprint to avoid this)");
            Transport::Tls(HubPin::FirstUse(Arc::new(std::sync::OnceLock::new())))
        }
    }
}

/// Store the fingerprint `transport` accepted as the pinned hub certificate, unless it is
/// pinned already.
fn pin_hub(shared: &Shared, pinned: Option<taplink_certs::Fingerprint>, transport: &Transport) {
    if pinned.is_some() {
        return;
    }
    if let Some(fp) = transport.fingerprint() {
        match shared.store.set_hub_pin(&fp) {
            Ok(()) => info!(fingerprint = %fp, "pinned the hub's certificate"),
            Err(e) => error!(error = %e, "cannot pin the hub's certificate"),
        }
    }
}

/// The configured hub, or the first suitable one mDNS finds; `None` only on shutdown.
async fn find_hub(
    shared: &Shared,
    creds: Option<&Credentials>,
    cancel: &CancellationToken,
) -> Option<FoundHub> {
    if let Some(addr) = shared.config.hub {
        return Some(FoundHub {
            addr,
            instance: String::new(),
            venue: None,
            hub: None,
            fingerprint: shared.config.hub_fingerprint.clone(),
            elapsed: std::time::Duration::ZERO,
        });
    }
    let browse = Browse {
        interface: shared.config.mdns_interface.clone(),
        netns: shared.config.mdns_netns.clone(),
        venue: creds.and_then(|c| c.venue),
        pinned: shared.store.hub_pin().ok().flatten(),
    };
    let timeout = std::time::Duration::from_millis(shared.config.discovery_timeout_ms);
    let mut backoff = Backoff::new(shared.config.retry());
    info!(interface = ?browse.interface, venue = ?browse.venue, "searching for the hub by mDNS");
    loop {
        match discovery::discover(&browse, timeout, cancel).await {
            Ok(Some(found)) => {
                shared.metrics.discoveries.inc();
                shared
                    .metrics
                    .discovery_ms
                    .set(i64::try_from(found.elapsed.as_millis()).unwrap_or(i64::MAX));
                return Some(found);
            }
            Ok(None) if cancel.is_cancelled() => return None,
            Ok(None) => info!(
                waited_ms = timeout.as_millis() as u64,
                "no hub found yet; still searching"
            ),
            Err(e) => {
                error!(error = %e, "cannot browse for the hub");
                if !sleep_or_cancel(backoff.next_delay(), cancel).await {
                    return None;
                }
            }
        }
    }
}

/// Pair with `found`; `None` after a store error (logged).
async fn pair(
    shared: &Shared,
    api: &HubApi,
    found: &FoundHub,
    cancel: &CancellationToken,
) -> Option<PairingEnd> {
    shared.status.send_modify(|s| s.phase = Phase::Unpaired);
    let params = PairingParams {
        store: &shared.store,
        device: &shared.config.device_name,
        pair_code: shared.config.pair_code.as_deref(),
        hub_venue: found.venue,
        poll_every: std::time::Duration::from_millis(shared.config.pairing_poll_ms),
        retry: shared.config.retry(),
        lost_after: shared.config.hub_lost_after,
        cancel,
        clock: &*shared.clock,
    };
    // `pair` shows the kept ticket (if any) before it has asked the hub anything, and
    // again after each answer: only the later calls prove the hub reachable.
    let before_contact = std::sync::atomic::AtomicBool::new(true);
    let show = |ticket: Option<&crate::store::Ticket>| {
        let phase = match ticket {
            // Approved already: there is no code for staff to see.
            Some(t) if !t.preapproved => Phase::Pairing {
                code: t.code.clone(),
                expires_at: t.expires_at,
            },
            _ => Phase::Unpaired,
        };
        if !before_contact.swap(false, std::sync::atomic::Ordering::Relaxed) {
            shared.set_reachable(true);
        }
        shared.status.send_modify(|s| s.phase = phase);
    };
    let code_refused = |reason: &str| {
        let reason = reason.to_owned();
        shared
            .status
            .send_modify(|s| s.pair_code_refused = Some(reason));
    };
    match pairing::pair(api, params, show, code_refused).await {
        Ok(end) => Some(end),
        Err(e) => {
            error!(error = %e, "pairing state could not be stored");
            None
        }
    }
}

pub(crate) fn set_paired(shared: &Shared, creds: &Credentials) {
    shared.metrics.paired.set(1);
    shared.status.send_modify(|s| {
        s.phase = Phase::Paired {
            kiosk: creds.kiosk,
            venue: creds.venue,
        };
        s.pair_code_refused = None;
    });
}

/// The hub revoked the token: forget it and what belonged to it, and show the pairing
/// screen again. Whether the store forgot it.
fn forget(shared: &Shared, creds: &Credentials) -> bool {
    match shared.store.forget_credentials() {
        Ok(dropped) => warn!(
            kiosk = %creds.kiosk,
            undeliverable_events = dropped,
            "the hub revoked this kiosk's token; pairing again"
        ),
        Err(e) => {
            error!(error = %e, "cannot forget the revoked token");
            return false;
        }
    }
    shared.metrics.paired.set(0);
    shared.metrics.set_manifest(None);
    shared.status.send_modify(|s| {
        s.phase = Phase::Unpaired;
        s.manifest = None;
        s.ready = Arc::default();
    });
    true
}
