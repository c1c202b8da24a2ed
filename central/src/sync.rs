//! The QUIC endpoint hubs connect to: admission control, enrollment, and one sync session
//! per hub connection.
//!
//! One UDP port speaks two ALPNs. `taplink-enroll/1` (no client certificate) redeems a
//! one-time code for a hub certificate. `taplink/1` (mutual TLS, CRL-checked) runs the
//! sync session: the hub's venue document read-write, the org document read-only, blobs
//! both ways (each side fetches what the venue document references and it lacks; a hub
//! may read only its venue's media and the org library), and telemetry batches stored
//! idempotently before they are acknowledged.
//!
//! Admission: thousands of hubs reconnect at once after a regional outage. Handshakes run
//! at most [`MAX_HANDSHAKES`] at a time; while that many are in flight, a new client whose
//! address is not yet validated gets a stateless retry token (cheap for us, one round trip
//! for it); beyond [`MAX_QUEUED`] waiting connections, new ones are refused and the hubs
//! retry with jittered backoff. Initial syncs (from hello to first "in sync") run at most
//! [`MAX_HEAVY_SYNCS`] at a time.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use taplink_certs::{HubIdentity, Validity};
use taplink_sync_io::driver::ConnectionParams;
use taplink_sync_io::enroll::{
    EnrollRequest, EnrollResponse, Enrolled, read_message, write_message,
};
use taplink_sync_io::net::ENROLL_ALPN;
use taplink_sync_io::peer::{self, PeerEvent, PeerParams};
use taplink_sync_proto::doc::{load_org, load_venue};
use taplink_sync_proto::ids::{HubId, MediaHash};
use taplink_sync_proto::session::{Access, SessionConfig};
use taplink_sync_proto::wire::{DocHeads, DocId, ErrorCode, Message, PeerIdentity, TelemetryEvent};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::state::AppState;

/// Handshakes in flight at once. Large on purpose: a connection waiting here gets no answer
/// to its Initial packet until it is accepted, so the hub's first RTT sample includes the
/// wait, and its loss timer (3× that sample) grows with it; a packet lost after a
/// multi-second wait then costs several seconds more, and some hubs miss the session's
/// 10 s hello deadline. Measured with 2,000 hubs reconnecting at once (`taplink-sim bench
/// reconnect`): with 256, 10 to 70 attempts failed and the last hub took 12 to 30 s; with
/// more than the burst, none failed and all were in sync within 4 to 7 s. Handshakes are
/// processed in arrival order either way; the CPU is the real bound.
pub const MAX_HANDSHAKES: usize = 4096;
/// Connections waiting for a handshake slot before new ones are refused.
pub const MAX_QUEUED: usize = 8192;
/// Initial syncs in flight at once.
pub const MAX_HEAVY_SYNCS: usize = 64;
/// Lifetime of a hub certificate issued at enrollment.
pub const HUB_CERT_DAYS: i64 = 365;

/// The live sync connection of each hub, so that a newer one supersedes it.
type LiveHubs = Arc<Mutex<HashMap<HubId, quinn::Connection>>>;

/// What every hub connection's task shares with the endpoint.
#[derive(Clone)]
struct Endpoint {
    /// Bounds the initial syncs running at once.
    heavy: Arc<Semaphore>,
    /// Each hub's live connection.
    live: LiveHubs,
    /// Central's tracker: a connection's session driver and media fetcher run on it, so
    /// shutdown waits for a document append or a blob write in progress.
    tasks: TaskTracker,
}

/// Admission counters, shared with metrics.
#[derive(Debug, Default)]
pub struct Admission {
    /// Connections waiting for or in a handshake.
    pub queued: AtomicUsize,
    /// Retry tokens sent.
    pub retries: AtomicU64,
    /// Connections refused because the queue was full.
    pub refused: AtomicU64,
}

/// The hubs connected right now (a hub may briefly hold two connections while an old one
/// times out, hence a count).
#[derive(Debug, Default)]
pub struct OnlineHubs(std::sync::Mutex<BTreeMap<HubId, usize>>);

impl OnlineHubs {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<HubId, usize>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The hubs connected now.
    pub fn ids(&self) -> Vec<HubId> {
        self.lock().keys().copied().collect()
    }

    /// Whether `hub` has a sync connection.
    pub fn contains(&self, hub: HubId) -> bool {
        self.lock().contains_key(&hub)
    }

    /// How many hubs are connected.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no hub is connected.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn up(&self, hub: HubId) {
        *self.lock().entry(hub).or_default() += 1;
    }

    fn down(&self, hub: HubId) {
        let mut online = self.lock();
        if let Some(n) = online.get_mut(&hub) {
            *n -= 1;
            if *n == 0 {
                online.remove(&hub);
            }
        }
    }
}

/// Run the accept loop on `endpoint` until `cancel`.
pub async fn serve(
    endpoint: quinn::Endpoint,
    state: AppState,
    cancel: CancellationToken,
    tasks: TaskTracker,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let shared = Endpoint {
        heavy: Arc::new(Semaphore::new(MAX_HEAVY_SYNCS)),
        live: Arc::default(),
        tasks: tasks.clone(),
    };
    let admission = state.admission.clone();
    let next_origin = Arc::new(AtomicU64::new(1));
    loop {
        let incoming = tokio::select! {
            _ = cancel.cancelled() => break,
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
        };
        let queued = admission.queued.load(Ordering::Relaxed);
        if queued >= MAX_QUEUED {
            admission.refused.fetch_add(1, Ordering::Relaxed);
            state.metrics.quic_refused.inc();
            incoming.refuse();
            continue;
        }
        if queued >= MAX_HANDSHAKES && !incoming.remote_address_validated() && incoming.may_retry()
        {
            admission.retries.fetch_add(1, Ordering::Relaxed);
            state.metrics.quic_retries.inc();
            // A retry can only fail if the client's token was already validated.
            let _ = incoming.retry();
            continue;
        }
        admission.queued.fetch_add(1, Ordering::Relaxed);
        let state = state.clone();
        let handshakes = handshakes.clone();
        let shared = shared.clone();
        let cancel = cancel.child_token();
        // Origins only need to differ between live connections; 0 and 1 are reserved.
        let origin = next_origin.fetch_add(1, Ordering::Relaxed) + 1;
        tasks.spawn(async move {
            let permit = handshakes.acquire_owned().await;
            let connecting = incoming.accept();
            let conn = match connecting {
                Ok(c) => c.await,
                Err(e) => Err(e),
            };
            drop(permit);
            state.admission.queued.fetch_sub(1, Ordering::Relaxed);
            match conn {
                Ok(conn) => handle(conn, state, shared, origin, cancel).await,
                Err(e) => debug!(error = %e, "handshake failed"),
            }
        });
    }
    endpoint.close(0u32.into(), b"central shutting down");
}

async fn handle(
    conn: quinn::Connection,
    state: AppState,
    shared: Endpoint,
    origin: u64,
    cancel: CancellationToken,
) {
    let alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol);
    if alpn.as_deref() == Some(ENROLL_ALPN) {
        return enroll(conn, state).await;
    }
    let identity = conn
        .peer_identity()
        .and_then(|id| {
            id.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .ok_or_else(|| "no client certificate".to_owned())
        .and_then(|chain| {
            HubIdentity::from_peer_certificates(Some(&chain)).map_err(|e| e.to_string())
        });
    let ids = match identity {
        Ok(ids) => ids,
        Err(reason) => {
            warn!(remote = %conn.remote_address(), %reason, "refused a sync connection");
            conn.close(3u32.into(), reason.as_bytes());
            return;
        }
    };
    match state.registry.hub(ids.hub) {
        Ok(Some(hub)) if hub.revoked_at.is_none() && hub.venue == ids.venue => {}
        Ok(Some(hub)) if hub.revoked_at.is_some() => {
            warn!(hub = %ids.hub, "refused a revoked hub");
            conn.close(3u32.into(), b"this hub's certificate is revoked");
            return;
        }
        Ok(_) => {
            warn!(hub = %ids.hub, venue = %ids.venue, "refused a hub central does not know");
            conn.close(3u32.into(), b"unknown hub");
            return;
        }
        Err(e) => {
            warn!(hub = %ids.hub, error = %e, "cannot check hub; refusing for now");
            conn.close(4u32.into(), b"central cannot check this hub right now");
            return;
        }
    }
    run_hub(conn, ids, state, shared, origin, cancel).await;
}

/// Whether a hub of `venue` may read `hash`: its venue's media or the org library.
fn blob_policy(state: &AppState, venue: DocId) -> taplink_sync_io::transfer::BlobPolicy {
    let docs = state.docs.clone();
    Arc::new(move |hash: &MediaHash| {
        let in_venue = docs
            .read(venue, |am| {
                load_venue(am).map(|v| v.media.contains_key(hash))
            })
            .is_ok_and(|r| r.unwrap_or(false));
        in_venue
            || docs
                .read(DocId::Org, |am| {
                    load_org(am).map(|o| o.library.contains_key(hash))
                })
                .is_ok_and(|r| r.unwrap_or(false))
    })
}

async fn run_hub(
    conn: quinn::Connection,
    ids: HubIdentity,
    state: AppState,
    shared: Endpoint,
    origin: u64,
    cancel: CancellationToken,
) {
    let venue = DocId::Venue(ids.venue);
    if !state.docs.contains(venue) {
        warn!(hub = %ids.hub, venue = %ids.venue, "the hub's venue has no document here");
        conn.close(4u32.into(), b"venue document missing at central");
        return;
    }
    // The bound on heavy syncs: the session (and so its initial sync) starts only once a
    // permit is free, and the permit is held until the first "in sync". Permits turn over in
    // milliseconds per hub, far inside the hub's 10 s wait for our hello.
    let mut heavy_permit = tokio::select! {
        _ = cancel.cancelled() => return,
        permit = shared.heavy.clone().acquire_owned() => permit.ok(),
    };
    // A hub keeps one uplink, so a new connection means its previous one is dead (the hub
    // crashed or changed network), which QUIC would only notice at the idle timeout. Close
    // it now: until then its blob fetches would hold their partial downloads (the new
    // connection's fetches of the same blobs would fail as busy) and two sessions would
    // write this hub's sync states.
    let previous = shared
        .live
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(ids.hub, conn.clone());
    if let Some(previous) = previous {
        info!(hub = %ids.hub, "a newer connection from this hub supersedes its previous one");
        previous.close(
            5u32.into(),
            b"superseded by a newer connection from this hub",
        );
    }
    let session = SessionConfig::new(
        PeerIdentity::Central,
        PeerIdentity::Hub {
            hub: ids.hub,
            venue: ids.venue,
        },
        format!("taplink-central {}", env!("CARGO_PKG_VERSION")),
        BTreeMap::from([(venue, Access::Write), (DocId::Org, Access::Read)]),
    );
    let metrics = state.metrics.clone();
    let params = PeerParams {
        connection: ConnectionParams {
            session,
            peer_key: ids.hub.to_string(),
            origin,
            dialer: false,
        },
        docs: state.docs.clone(),
        blobs: state.blobs.clone(),
        serve: blob_policy(&state, venue),
        fetch_for: venue,
        quota: Some(state.config.venue_media_quota_bytes),
        on_fetched: Arc::new(move |bytes| metrics.record_blob_fetched(bytes)),
    };
    let mut peer = peer::run(conn.clone(), params, &shared.tasks, &cancel);
    let mut revocations = state.hub_revocations.subscribe();
    let mut roster_news = state.rosters_changed.subscribe();
    let mut roster_check = tokio::time::interval(crate::roster::RECHECK);
    roster_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The version last sent on this session (rosters go only to an established session).
    let mut roster_sent: Option<Vec<u8>> = None;
    let mut established = false;
    state.metrics.hub_connected(1);
    loop {
        tokio::select! {
            news = roster_news.recv(), if established => {
                if matches!(news, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                    continue;
                }
                if !send_roster(&state, ids, &peer, &mut roster_sent).await {
                    break;
                }
            }
            _ = roster_check.tick(), if established => {
                if !send_roster(&state, ids, &peer, &mut roster_sent).await {
                    break;
                }
            }
            revoked = revocations.recv() => {
                if matches!(revoked, Ok(h) if h == ids.hub) {
                    warn!(hub = %ids.hub, "closing the connection of a revoked hub");
                    conn.close(3u32.into(), b"this hub's certificate was revoked");
                }
            }
            event = peer.next() => match event {
                PeerEvent::Ended(end) => {
                    info!(hub = %ids.hub, reason = %end, "hub disconnected");
                    break;
                }
                PeerEvent::Established(hello) => {
                    if !established {
                        established = true;
                        state.online.up(ids.hub);
                    }
                    // The hello's heads are only the hub's: the record's heads change at
                    // quiescent points, together with `last_sync`.
                    let now = state.now();
                    if let Err(e) = state.registry.touch_hub(ids.hub, now, Some(&hello.software), None, None) {
                        warn!(hub = %ids.hub, error = %e, "cannot record hub status");
                    }
                    info!(hub = %ids.hub, venue = %ids.venue, software = %hello.software, "hub connected");
                    if !send_roster(&state, ids, &peer, &mut roster_sent).await {
                        break;
                    }
                }
                PeerEvent::Sync(sync) => {
                    if sync.synced {
                        heavy_permit = None;
                        let now = state.now();
                        let heads: Vec<DocHeads> = sync
                            .heads
                            .into_iter()
                            .map(|(doc, heads)| DocHeads { doc, heads })
                            .collect();
                        if let Err(e) = state.registry.touch_hub(ids.hub, now, None, Some(&heads), Some(now)) {
                            warn!(hub = %ids.hub, error = %e, "cannot record hub sync");
                        }
                    }
                }
                PeerEvent::Message(Message::TelemetryBatch { batch, events }) => {
                    let events = admissible_telemetry(&state, ids, events);
                    let store = state.clone();
                    let hub = ids.hub;
                    let stored = tokio::task::spawn_blocking(move || store.store_telemetry(hub, &events)).await;
                    let reply = match stored {
                        Ok(Ok(stored)) => Message::TelemetryAck { batch, stored },
                        Ok(Err(e)) => {
                            warn!(hub = %ids.hub, error = %e, "cannot store telemetry");
                            Message::error(ErrorCode::Internal, "central could not store this batch; it will be retried")
                        }
                        Err(e) => {
                            warn!(hub = %ids.hub, error = %e, "telemetry store task failed");
                            Message::error(ErrorCode::Internal, "central could not store this batch; it will be retried")
                        }
                    };
                    if !peer.send(reply).await {
                        break;
                    }
                }
                PeerEvent::Message(other) => debug!(hub = %ids.hub, kind = other.kind(), "ignored message"),
            },
        }
    }
    drop(heavy_permit);
    if established {
        state.online.down(ids.hub);
    }
    {
        let mut live = shared.live.lock().unwrap_or_else(PoisonError::into_inner);
        if live
            .get(&ids.hub)
            .is_some_and(|c| c.stable_id() == conn.stable_id())
        {
            live.remove(&ids.hub);
        }
    }
    state.metrics.hub_connected(-1);
    let _ = state
        .registry
        .touch_hub(ids.hub, state.now(), None, None, None);
}

/// Send the venue's current roster on this session unless it is the one last sent:
/// `false` if the session is gone.
async fn send_roster(
    state: &AppState,
    ids: HubIdentity,
    peer: &peer::Peer,
    sent: &mut Option<Vec<u8>>,
) -> bool {
    let issuing = state.clone();
    let current =
        tokio::task::spawn_blocking(move || crate::roster::current(&issuing, ids.venue)).await;
    let signed = match current {
        Ok(Ok(signed)) => signed,
        Ok(Err(e)) => {
            warn!(hub = %ids.hub, venue = %ids.venue, error = %e, "cannot make the venue's roster");
            return true;
        }
        Err(e) => {
            warn!(hub = %ids.hub, error = %e, "the roster task failed");
            return true;
        }
    };
    if sent.as_deref() == Some(signed.body.as_slice()) {
        return true;
    }
    *sent = Some(signed.body.clone());
    debug!(hub = %ids.hub, venue = %ids.venue, "sending the venue's roster");
    peer.send(Message::Roster(signed)).await
}

async fn enroll(conn: quinn::Connection, state: AppState) {
    let remote = conn.remote_address();
    let Ok((mut send, mut recv)) = conn.accept_bi().await else {
        return;
    };
    let response = match read_message::<EnrollRequest>(&mut recv).await {
        Ok(request) => match redeem(&state, &request) {
            Ok(enrolled) => {
                info!(%remote, hub = %enrolled.hub, venue = %enrolled.venue, "hub enrolled");
                EnrollResponse::Enrolled(enrolled)
            }
            Err(refusal) => {
                warn!(%remote, reason = %refusal.detail(), "enrollment refused");
                EnrollResponse::Refused {
                    reason: refusal.to_string(),
                }
            }
        },
        Err(e) => {
            debug!(%remote, error = %e, "unreadable enrollment request");
            EnrollResponse::Refused {
                reason: Refusal::Malformed.to_string(),
            }
        }
    };
    let _ = write_message(&mut send, &response).await;
    let _ = send.finish();
    // Let the hub read the answer and close; its close or the idle timeout ends this.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), conn.closed()).await;
}

/// Why an enrollment was refused. Anyone who speaks `taplink-enroll/1` reads the refusal,
/// so it is a fixed sentence the person enrolling can act on; what went wrong inside
/// central goes to central's log ([`Refusal::detail`]), never to the peer.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    /// The request or its code could not be read.
    #[error("the enrollment request is malformed; check the code was copied whole")]
    Malformed,
    /// The code is unknown, used or expired (its own sentence says which).
    #[error(transparent)]
    Code(crate::store::EnrollError),
    /// The hub's certificate request was not acceptable.
    #[error("the hub's certificate request was refused; update taplink-hub and try again")]
    Csr(String),
    /// Central failed; the detail is logged.
    #[error(
        "central could not complete the enrollment; try again in a minute, and tell your Taplink administrator if it persists"
    )]
    Internal(String),
}

impl Refusal {
    /// The whole story, for central's log.
    fn detail(&self) -> String {
        match self {
            Refusal::Csr(detail) | Refusal::Internal(detail) => format!("{self} ({detail})"),
            other => other.to_string(),
        }
    }
}

impl From<crate::store::EnrollError> for Refusal {
    fn from(e: crate::store::EnrollError) -> Self {
        match e {
            crate::store::EnrollError::Registry(e) => Refusal::Internal(e.to_string()),
            other => Refusal::Code(other),
        }
    }
}

fn redeem(state: &AppState, request: &EnrollRequest) -> Result<Enrolled, Refusal> {
    let secret = taplink_sync_proto::enroll_token::EnrollmentSecret::from_base32(&request.secret)
        .map_err(|_| Refusal::Malformed)?;
    let now = state.now();
    let hub = HubId::random();
    let venue = state.registry.redeem_enrollment_code(&secret, hub, now)?;
    let ids = HubIdentity { hub, venue };
    let validity = Validity::new(
        taplink_certs::offset_date_time(now),
        time::Duration::days(HUB_CERT_DAYS),
    )
    .map_err(|e| Refusal::Internal(e.to_string()))?;
    let issued = state
        .pki
        .ca
        .sign_hub_csr(&request.csr_pem, ids, validity)
        .map_err(|e| Refusal::Csr(e.to_string()))?;
    state
        .registry
        .record_hub(hub, venue, issued.serial(), issued.fingerprint(), now)
        .map_err(|e| Refusal::Internal(e.to_string()))?;
    Ok(Enrolled {
        hub,
        venue,
        cert_pem: issued.pem(),
        ca_pem: state.pki.ca.cert_pem(),
    })
}

/// The events of a hub's batch that central stores: those about the hub itself or a kiosk
/// of *its* venue, at a plausible time ([`TelemetryEvent::implausible`]). The rest are
/// counted, logged and dropped; the batch is still acknowledged, since sending them again
/// would not make them true.
fn admissible_telemetry(
    state: &AppState,
    ids: HubIdentity,
    events: Vec<TelemetryEvent>,
) -> Vec<TelemetryEvent> {
    let now_ms = state.now().timestamp_millis();
    let kiosks = state
        .docs
        .read(DocId::Venue(ids.venue), |am| {
            taplink_sync_proto::doc::load_venue(am).map(|v| {
                v.kiosks
                    .keys()
                    .copied()
                    .collect::<std::collections::HashSet<_>>()
            })
        })
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let total = events.len();
    let kept: Vec<TelemetryEvent> = events
        .into_iter()
        .filter(|e| {
            let problem = match e.kiosk {
                Some(k) if !kiosks.contains(&k) => {
                    Some(format!("kiosk {k} is not in this hub's venue"))
                }
                _ => e.implausible(now_ms),
            };
            if let Some(problem) = &problem {
                debug!(hub = %ids.hub, %problem, "telemetry event refused");
            }
            problem.is_none()
        })
        .collect();
    let refused = total - kept.len();
    if refused > 0 {
        state.metrics.telemetry_refused.inc_by(refused as u64);
        warn!(hub = %ids.hub, venue = %ids.venue, refused, of = total, "telemetry events refused (foreign kiosk, implausible time or duration)");
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::Refusal;
    use crate::store::{EnrollError, RegistryError};

    #[test]
    fn enrollment_refusals_never_carry_central_internals() {
        let internal = RegistryError::Sqlite {
            op: "redeem enrollment code",
            source: rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
                Some("disk I/O error at /srv/taplink/registry.sqlite".into()),
            ),
        };
        let refusal = Refusal::from(EnrollError::Registry(internal));
        let told = refusal.to_string();
        assert!(told.contains("could not complete the enrollment"), "{told}");
        for secret in ["sqlite", "/srv/taplink", "I/O", "registry"] {
            assert!(!told.contains(secret), "{told:?} leaks {secret:?}");
        }
        // The log keeps the detail.
        assert!(refusal.detail().contains("/srv/taplink/registry.sqlite"));
        let csr = Refusal::Csr("x509 parse error at byte 17".into()).to_string();
        assert!(!csr.contains("byte 17"), "{csr}");
        // A problem with the code itself is told as it is: the holder can act on it.
        assert!(
            Refusal::from(EnrollError::Unknown)
                .to_string()
                .contains("unknown enrollment code")
        );
    }
}
