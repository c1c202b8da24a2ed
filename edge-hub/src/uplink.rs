//! The uplink: the hub's one QUIC connection to central, kept up for as long as the hub
//! runs. Reconnects with exponential backoff and full jitter (capped), syncs the venue and
//! org documents through the session driver, fetches every blob the venue document
//! references, serves central's requests for blobs added at the venue, and drains the
//! telemetry outbox in acknowledged batches.
//!
//! Everything here is local-first: the hub serves its own state whether or not the uplink
//! is connected; the uplink only moves changes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use taplink_sync_io::blobs::BlobStore;
use taplink_sync_io::docs::Documents;
use taplink_sync_io::driver::ConnectionParams;
use taplink_sync_io::net::PeerAddr;
use taplink_sync_io::node::Backoff;
use taplink_sync_io::peer::{self, PeerEvent, PeerParams};
use taplink_sync_proto::ids::MediaHash;
use taplink_sync_proto::roster::SignedRoster;
use taplink_sync_proto::session::{Access, SessionConfig};
use taplink_sync_proto::wire::{ChangeHash, DocId, MAX_TELEMETRY_BATCH, Message, PeerIdentity};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::store::Store;

/// The origin of changes that arrive over the uplink (see `taplink_sync_io::docs::Origin`).
const UPLINK_ORIGIN: u64 = 1;

/// What the rest of the hub can see of the uplink.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UplinkStatus {
    /// Whether a session with central is established.
    pub connected: bool,
    /// Whether central acknowledged the hub's heads of every document and the hub central's
    /// (false from the first unacknowledged edit on either side).
    pub synced: bool,
    /// The heads of each document both sides acknowledged at the last quiescent point.
    pub heads: BTreeMap<DocId, Vec<ChangeHash>>,
    /// The last reason the connection ended, if it did.
    pub last_error: Option<String>,
    /// Since when the hub has been connected (or, if not, disconnected): `None` until the
    /// first attempt ends or succeeds.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
}

/// Everything the uplink works with.
#[derive(Debug, Clone)]
pub struct UplinkParts {
    /// Central's QUIC address as configured (a name is resolved at every attempt).
    pub central_addr: PeerAddr,
    /// The name on central's certificate.
    pub central_name: String,
    /// First and largest reconnect delay.
    pub backoff: (Duration, Duration),
    /// The hub's documents.
    pub docs: Arc<Documents>,
    /// The hub's media.
    pub blobs: Arc<BlobStore>,
    /// Telemetry waiting for central (the outbox of the hub's store).
    pub outbox: Arc<Store>,
    /// Woken when events are pushed to the outbox.
    pub outbox_ready: Arc<Notify>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The hub's task tracker: each connection's session driver and media fetcher run on
    /// it, so shutdown waits for a blob write or a document append to finish.
    pub tasks: tokio_util::task::TaskTracker,
    /// The hub's clock (rosters' receipt time and their signer's validity).
    pub clock: Arc<dyn taplink_sync_proto::clock::Clock>,
}

/// Run the uplink until `cancel`.
pub async fn run(
    identity: Arc<Identity>,
    parts: UplinkParts,
    status: watch::Sender<UplinkStatus>,
    cancel: CancellationToken,
) {
    let tls = match taplink_certs::tls::client_config(
        identity.chain.clone(),
        identity.key.clone_key(),
        &identity.ca,
    ) {
        Ok(tls) => tls,
        Err(e) => {
            warn!(error = %e, "uplink disabled: cannot build the TLS configuration");
            return;
        }
    };
    let client = match taplink_sync_io::net::client_config(tls) {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "uplink disabled: cannot build the QUIC configuration");
            return;
        }
    };
    let mut dialer = Dialer {
        client,
        endpoints: BTreeMap::new(),
    };
    let mut backoff = Backoff::new(parts.backoff);
    // Counts attempts, to rotate through the addresses central's name resolves to.
    let mut attempt = 0u32;
    loop {
        let end = match attempt_once(
            &identity,
            &parts,
            &mut dialer,
            &status,
            &cancel,
            attempt,
            &mut backoff,
        )
        .await
        {
            Some(end) => end,
            None => break,
        };
        if cancel.is_cancelled() {
            break;
        }
        let delay = backoff.next_delay();
        attempt = attempt.wrapping_add(1);
        info!(central = %parts.central_addr, reason = %end, retry_in = ?delay, "uplink down");
        let now = parts.clock.now();
        status.send_modify(|s| {
            if s.since.is_none() {
                // Down since the first attempt failed (this hub never reached central since
                // it started).
                s.since = Some(now);
            }
            s.last_error = Some(end);
        });
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    for endpoint in dialer.endpoints.values() {
        endpoint.close(0u32.into(), b"hub shutting down");
    }
}

/// What dials central: the QUIC client configuration and one client endpoint per address
/// family, bound when first needed (central's name may resolve to either).
struct Dialer {
    client: quinn::ClientConfig,
    endpoints: BTreeMap<bool, quinn::Endpoint>,
}

impl Dialer {
    /// Start connecting to `addr`, checking that central's certificate names `name`.
    fn connect(&mut self, addr: SocketAddr, name: &str) -> Result<quinn::Connecting, String> {
        let endpoint = match self.endpoints.entry(addr.is_ipv4()) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(slot) => {
                let bind = taplink_sync_io::net::unspecified_like(addr);
                let endpoint = taplink_sync_io::net::client_endpoint(bind)
                    .map_err(|e| format!("cannot bind a UDP socket: {e}"))?;
                slot.insert(endpoint)
            }
        };
        endpoint
            .connect_with(self.client.clone(), addr, name)
            .map_err(|e| e.to_string())
    }
}

/// A roster from central: kept if `taplink_sync_io::roster::admit` accepts it (signed by
/// the org CA's roster signer, for this venue, newer than the held one), else refused,
/// logged and counted.
fn roster(identity: &Identity, parts: &UplinkParts, signed: &SignedRoster) {
    let held = match parts.outbox.roster_version() {
        Ok(held) => held,
        Err(e) => {
            warn!(error = %e, "cannot read the held roster; the new one waits for the next");
            return;
        }
    };
    let now = parts.clock.now();
    let at = rustls::pki_types::UnixTime::since_unix_epoch(Duration::from_secs(
        u64::try_from(now.timestamp()).unwrap_or(0),
    ));
    match taplink_sync_io::roster::admit(&identity.ca, signed, identity.ids.venue, held, at) {
        Ok(roster) => match parts.outbox.keep_roster(signed, &roster, now) {
            Ok(()) => {
                parts
                    .metrics
                    .roster_version
                    .set(i64::try_from(roster.version).unwrap_or(i64::MAX));
                info!(
                    version = roster.version,
                    users = roster.users.len(),
                    "roster from central kept"
                );
            }
            Err(e) => warn!(error = %e, "cannot keep the roster from central"),
        },
        // The same roster again (a reconnect) is not news.
        Err(taplink_sync_io::roster::RosterError::Older { got, held }) if got == held => {}
        Err(e) => {
            parts
                .metrics
                .rosters_refused
                .get_or_create(&crate::metrics::Reason { reason: e.reason() })
                .inc();
            warn!(reason = e.reason(), error = %e, "refused a roster from central");
        }
    }
}

/// One connection attempt (resolve central's address again, connect, run the connection);
/// why it ended, or `None` when cancelled.
async fn attempt_once(
    identity: &Identity,
    parts: &UplinkParts,
    dialer: &mut Dialer,
    status: &watch::Sender<UplinkStatus>,
    cancel: &CancellationToken,
    attempt: u32,
    backoff: &mut Backoff,
) -> Option<String> {
    let resolved = tokio::select! {
        _ = cancel.cancelled() => return None,
        r = parts.central_addr.resolve() => r,
    };
    let addrs = match resolved {
        Ok(addrs) => addrs,
        Err(e) => return Some(format!("cannot resolve {}: {e}", parts.central_addr)),
    };
    // Several addresses (several central nodes behind one name): rotate through them.
    let addr = addrs[attempt as usize % addrs.len()];
    let connecting = match dialer.connect(addr, &parts.central_name) {
        Ok(connecting) => connecting,
        Err(e) => return Some(e),
    };
    let conn = tokio::select! {
        _ = cancel.cancelled() => return None,
        c = connecting => c,
    };
    let conn = match conn {
        Ok(conn) => conn,
        Err(e) => return Some(format!("{addr}: {e}")),
    };
    parts.metrics.uplink_connects.inc();
    let end = connected(identity, parts, conn, status, cancel, backoff).await;
    let now = parts.clock.now();
    if status.borrow().connected
        && let Err(e) = parts.outbox.roster_contact(now)
    {
        warn!(error = %e, "cannot note contact with central");
    }
    status.send_modify(|s| {
        if s.connected || s.since.is_none() {
            s.since = Some(now);
        }
        s.connected = false;
        s.synced = false;
        s.last_error = Some(end.clone());
    });
    parts.metrics.uplink_connected.set(0);
    Some(end)
}

/// One connection's life; returns why it ended.
async fn connected(
    identity: &Identity,
    parts: &UplinkParts,
    conn: quinn::Connection,
    status: &watch::Sender<UplinkStatus>,
    cancel: &CancellationToken,
    backoff: &mut Backoff,
) -> String {
    let venue = DocId::Venue(identity.ids.venue);
    let session = SessionConfig::new(
        PeerIdentity::Hub {
            hub: identity.ids.hub,
            venue: identity.ids.venue,
        },
        PeerIdentity::Central,
        format!("taplink-hub {}", env!("CARGO_PKG_VERSION")),
        BTreeMap::from([(venue, Access::Write), (DocId::Org, Access::Write)]),
    );
    let metrics = parts.metrics.clone();
    let params = PeerParams {
        connection: ConnectionParams {
            session,
            peer_key: "central".into(),
            origin: UPLINK_ORIGIN,
            dialer: true,
        },
        docs: parts.docs.clone(),
        blobs: parts.blobs.clone(),
        // Central may read any blob this hub holds: it is the org's authority.
        serve: Arc::new(|_: &MediaHash| true),
        fetch_for: venue,
        // The hub's quota applies where media enters the venue: uploads.
        quota: None,
        on_fetched: Arc::new(move |transferred| {
            metrics.blobs_fetched.inc();
            metrics.blob_bytes_fetched.inc_by(transferred);
        }),
    };
    let mut peer = peer::run(conn, params, &parts.tasks, cancel);
    let mut batch_in_flight: Option<u64> = None;
    loop {
        tokio::select! {
            event = peer.next() => match event {
                PeerEvent::Ended(end) => return end,
                PeerEvent::Established(hello) => {
                    info!(central = %parts.central_addr, software = %hello.software, "connected to central");
                    backoff.reset();
                    parts.metrics.uplink_connected.set(1);
                    let now = parts.clock.now();
                    status.send_modify(|s| { s.connected = true; s.last_error = None; s.since = Some(now); });
                    if let Err(e) = parts.outbox.roster_contact(now) {
                        warn!(error = %e, "cannot note contact with central");
                    }
                    parts.outbox_ready.notify_one();
                }
                PeerEvent::Sync(state) => status.send_modify(|s| {
                    s.synced = state.synced;
                    s.heads = state.heads;
                }),
                PeerEvent::Message(Message::TelemetryAck { batch, stored }) => {
                    if batch_in_flight == Some(batch) {
                        match parts.outbox.acknowledge(batch) {
                            Ok(n) => {
                                parts.metrics.telemetry_sent.inc_by(n as u64);
                                debug!(batch, stored, acknowledged = n, "telemetry batch acknowledged");
                            }
                            Err(e) => warn!(error = %e, "cannot drop acknowledged telemetry"),
                        }
                        batch_in_flight = None;
                        parts.outbox_ready.notify_one();
                    }
                }
                PeerEvent::Message(Message::Roster(signed)) => roster(identity, parts, &signed),
                PeerEvent::Message(other) => debug!(kind = other.kind(), "ignored message from central"),
            },
            _ = parts.outbox_ready.notified(), if batch_in_flight.is_none() => {
                match parts.outbox.next_batch(MAX_TELEMETRY_BATCH) {
                    Ok(Some(batch)) => {
                        batch_in_flight = Some(batch.upto);
                        let msg = Message::TelemetryBatch { batch: batch.upto, events: batch.events };
                        if !peer.send(msg).await {
                            return "sync driver stopped".into();
                        }
                    }
                    Ok(None) => {}
                    Err(e) => warn!(error = %e, "cannot read the telemetry outbox"),
                }
            }
        }
    }
}
