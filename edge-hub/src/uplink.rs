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
use taplink_sync_io::driver::{AppLink, ConnectionParams, DriverEnd, Inbound, drive};
use taplink_sync_io::node::Backoff;
use taplink_sync_io::transfer::{BlobServer, fetch_missing};
use taplink_sync_proto::ids::MediaHash;
use taplink_sync_proto::session::{Access, SessionConfig};
use taplink_sync_proto::wire::{DocId, MAX_TELEMETRY_BATCH, Message, PeerIdentity};
use tokio::sync::{Notify, mpsc, watch};
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
    /// Whether the documents were in sync with central at the last check.
    pub synced: bool,
    /// The last reason the connection ended, if it did.
    pub last_error: Option<String>,
}

/// Everything the uplink works with.
#[derive(Debug, Clone)]
pub struct UplinkParts {
    /// Central's QUIC address.
    pub central_addr: SocketAddr,
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
    let bind = if parts.central_addr.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    };
    let endpoint = match taplink_sync_io::net::client_endpoint(bind) {
        Ok(e) => e,
        Err(e) => {
            warn!(error = %e, "uplink disabled: cannot bind a UDP socket");
            return;
        }
    };
    let mut backoff = Backoff::new(parts.backoff);
    loop {
        let connecting =
            endpoint.connect_with(client.clone(), parts.central_addr, &parts.central_name);
        let end = match connecting {
            Ok(connecting) => {
                let conn = tokio::select! {
                    _ = cancel.cancelled() => break,
                    c = connecting => c,
                };
                match conn {
                    Ok(conn) => {
                        parts.metrics.uplink_connects.inc();
                        let end =
                            connected(&identity, &parts, conn, &status, &cancel, &mut backoff)
                                .await;
                        status.send_modify(|s| {
                            s.connected = false;
                            s.synced = false;
                            s.last_error = Some(end.clone());
                        });
                        parts.metrics.uplink_connected.set(0);
                        end
                    }
                    Err(e) => e.to_string(),
                }
            }
            Err(e) => e.to_string(),
        };
        if cancel.is_cancelled() {
            break;
        }
        let delay = backoff.next_delay();
        info!(central = %parts.central_addr, reason = %end, retry_in = ?delay, "uplink down");
        status.send_modify(|s| s.last_error = Some(end));
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    endpoint.close(0u32.into(), b"hub shutting down");
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
    let params = ConnectionParams {
        session,
        peer_key: "central".into(),
        origin: UPLINK_ORIGIN,
        dialer: true,
    };
    let (to_peer_tx, to_peer) = mpsc::channel(16);
    let (from_peer, mut inbound) = mpsc::channel(64);
    // Central may read any blob this hub holds: it is the org's authority.
    let server = BlobServer::new(parts.blobs.clone(), Arc::new(|_: &MediaHash| true));
    let conn_cancel = cancel.child_token();
    let mut driver = parts.tasks.spawn(drive(
        conn.clone(),
        params,
        parts.docs.clone(),
        AppLink { to_peer, from_peer },
        Some(server),
        conn_cancel.clone(),
    ));
    let _stop = conn_cancel.clone().drop_guard();
    let blob_wake = Arc::new(Notify::new());
    let metrics = parts.metrics.clone();
    parts.tasks.spawn(fetch_missing(
        conn.clone(),
        parts.docs.clone(),
        venue,
        parts.blobs.clone(),
        blob_wake.clone(),
        conn_cancel.clone(),
        // The hub's quota applies where media enters the venue: uploads.
        None,
        move |transferred| {
            metrics.blobs_fetched.inc();
            metrics.blob_bytes_fetched.inc_by(transferred);
        },
    ));
    let mut batch_in_flight: Option<u64> = None;
    let mut changes = parts.docs.subscribe();
    loop {
        tokio::select! {
            end = &mut driver => {
                return match end {
                    Ok(DriverEnd::Cancelled) => "hub shutting down".into(),
                    Ok(end) => end.to_string(),
                    Err(e) => format!("sync driver failed: {e}"),
                };
            }
            msg = inbound.recv() => match msg {
                Some(Inbound::Established(hello)) => {
                    info!(central = %parts.central_addr, software = %hello.software, "connected to central");
                    backoff.reset();
                    parts.metrics.uplink_connected.set(1);
                    status.send_modify(|s| { s.connected = true; s.last_error = None; });
                    blob_wake.notify_one();
                    parts.outbox_ready.notify_one();
                }
                Some(Inbound::DocChanged(_)) => blob_wake.notify_one(),
                Some(Inbound::Synced) => {
                    status.send_modify(|s| s.synced = true);
                    blob_wake.notify_one();
                }
                Some(Inbound::Message(Message::TelemetryAck { batch, stored })) => {
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
                Some(Inbound::Message(other)) => debug!(kind = other.kind(), "ignored message from central"),
                None => return "sync driver stopped".into(),
            },
            _ = parts.outbox_ready.notified(), if batch_in_flight.is_none() => {
                match parts.outbox.next_batch(MAX_TELEMETRY_BATCH) {
                    Ok(Some(batch)) => {
                        batch_in_flight = Some(batch.upto);
                        let msg = Message::TelemetryBatch { batch: batch.upto, events: batch.events };
                        if to_peer_tx.send(msg).await.is_err() {
                            return "sync driver stopped".into();
                        }
                    }
                    Ok(None) => {}
                    Err(e) => warn!(error = %e, "cannot read the telemetry outbox"),
                }
            }
            change = changes.recv() => {
                // A local edit may have added media; a lagged receiver may have missed one.
                if matches!(change, Ok(c) if c.doc == venue) || change.is_err() {
                    blob_wake.notify_one();
                }
            }
        }
    }
}
