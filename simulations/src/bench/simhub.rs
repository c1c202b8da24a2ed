//! Light simulated hubs for the QUIC benchmarks: a registry record and a certificate issued
//! straight by central's CA (no enrollment round trip), the hub's documents over a small
//! SQLite file of its own, and one quinn connection at a time running the real session
//! driver. No HTTP server, no media, no outbox: only what a reconnect exercises.
//!
//! Many simulated hubs share a few client endpoints (one UDP socket each); real hubs have
//! one socket each, on their own machines.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use automerge::AutoCommit;
use taplink_certs::{HubIdentity, Validity};
use taplink_sync_io::docs::Documents;
use taplink_sync_io::docstore::DocDb;
use taplink_sync_io::driver::{AppLink, ConnectionParams, DriverEnd, Inbound, drive};
use taplink_sync_proto::ids::{HubId, VenueId};
use taplink_sync_proto::wire::{DocId, Message};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::mesh::CentralNode;

/// The name on central's certificate that hubs check (what `taplink-hub` uses by default).
pub const CENTRAL_NAME: &str = "localhost";

/// The origin of changes arriving over a hub's uplink (as in the real hub).
const UPLINK_ORIGIN: u64 = 1;

/// A simulated hub: identity, TLS client configuration and documents.
#[derive(Debug)]
pub struct SimHub {
    /// Who it is.
    pub ids: HubIdentity,
    /// Its quinn client configuration (its own certificate).
    pub client: quinn::ClientConfig,
    /// Its documents (the venue and the org document).
    pub docs: Arc<Documents>,
}

impl SimHub {
    /// Register a new hub of `venue` at `central` (registry record and a certificate from
    /// its CA) with empty documents in `dir`, as a freshly enrolled hub has.
    pub fn provision(central: &CentralNode, venue: VenueId, dir: &Path) -> Result<SimHub> {
        let state = central.central.state();
        let now = state.now();
        let ids = HubIdentity {
            hub: HubId::random(),
            venue,
        };
        let issued = state.pki.ca.issue_hub_cert(
            ids,
            Validity::new(
                taplink_certs::offset_date_time(now),
                time::Duration::days(30),
            )?,
        )?;
        state.registry.record_hub(
            ids.hub,
            venue,
            issued.cert.serial(),
            issued.cert.fingerprint(),
            now,
        )?;
        let tls = taplink_certs::tls::client_config(
            vec![issued.cert.der().clone()],
            issued.key.to_der(),
            state.pki.ca.cert_der(),
        )?;
        let client = taplink_sync_io::net::client_config(tls)?;
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let db = Arc::new(DocDb::open(&dir.join("docs.sqlite"))?);
        let docs = Arc::new(Documents::open(db, automerge::ActorId::random())?);
        // A hub never creates content: it starts empty and receives central's documents.
        for doc in [DocId::Venue(venue), DocId::Org] {
            if !docs.contains(doc) {
                docs.create(doc, AutoCommit::new())?;
            }
        }
        Ok(SimHub { ids, client, docs })
    }

    /// Connect through `endpoint` and run the session until the driver reports the
    /// documents in sync; the connection stays up until [`Connected::close`].
    pub async fn connect(
        &self,
        endpoint: &quinn::Endpoint,
        central: SocketAddr,
    ) -> Result<Connected> {
        let started = super::clock::now();
        let conn = endpoint
            .connect_with(self.client.clone(), central, CENTRAL_NAME)?
            .await?;
        let handshake = started.elapsed();
        let handshake_stats = conn.stats();
        let params = ConnectionParams {
            session: super::hub_session(self.ids.hub, self.ids.venue),
            peer_key: "central".into(),
            origin: UPLINK_ORIGIN,
            dialer: true,
        };
        // The owner keeps the sender alive for the connection's life, as the uplink does.
        let (to_peer, app_rx) = mpsc::channel::<Message>(16);
        let (app_tx, mut inbound) = mpsc::channel(64);
        let cancel = CancellationToken::new();
        let mut driver = tokio::spawn(drive(
            conn.clone(),
            params,
            self.docs.clone(),
            AppLink {
                to_peer: app_rx,
                from_peer: app_tx,
            },
            None,
            cancel.clone(),
        ));
        loop {
            tokio::select! {
                end = &mut driver => {
                    let end = end.map_or_else(|e| e.to_string(), |e| e.to_string());
                    bail!("the session ended before it was in sync: {end}");
                }
                msg = inbound.recv() => match msg {
                    Some(Inbound::Sync(s)) if s.synced => break,
                    Some(_) => {}
                    None => bail!("the session driver stopped"),
                },
            }
        }
        let synced = started.elapsed();
        // Keep reading what the driver reports so that it never waits on us.
        let drain = tokio::spawn(async move { while inbound.recv().await.is_some() {} });
        Ok(Connected {
            conn,
            handshake,
            handshake_stats,
            synced,
            cancel,
            driver,
            drain,
            _to_peer: to_peer,
        })
    }
}

/// A hub's live connection, in sync.
#[derive(Debug)]
pub struct Connected {
    /// The QUIC connection.
    pub conn: quinn::Connection,
    /// From `connect` to a finished handshake.
    pub handshake: Duration,
    /// The connection's statistics when the handshake finished.
    pub handshake_stats: quinn::ConnectionStats,
    /// From `connect` to the driver's first `Synced`.
    pub synced: Duration,
    cancel: CancellationToken,
    driver: JoinHandle<DriverEnd>,
    drain: JoinHandle<()>,
    _to_peer: mpsc::Sender<Message>,
}

impl Connected {
    /// UDP bytes both ways so far (QUIC and TLS included).
    pub fn udp_bytes(&self) -> u64 {
        let s = self.conn.stats();
        s.udp_tx.bytes + s.udp_rx.bytes
    }

    /// Close the connection (the driver closes it with "shutting down") and wait for the
    /// driver to stop.
    pub async fn close(self) -> Result<()> {
        self.cancel.cancel();
        let end = tokio::time::timeout(Duration::from_secs(5), self.driver)
            .await
            .map_err(|_| anyhow!("the driver did not stop within 5 s"))??;
        self.drain.abort();
        match end {
            DriverEnd::Cancelled => Ok(()),
            other => bail!("the driver ended otherwise: {other}"),
        }
    }
}

/// Wait until central counts no hub connection, for at most `limit` (after hubs closed
/// theirs, central's sessions notice at once; after a silent outage, at the idle timeout).
pub async fn wait_disconnected(central: &CentralNode, limit: Duration) -> Result<()> {
    crate::mesh::eventually(limit, || {
        (central.central.state().metrics.hub_connections.get() == 0).then_some(())
    })
    .await
    .context("central still counts hub connections")
}
