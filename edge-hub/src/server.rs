//! The hub's server shell: [`Hub::bind`] opens the data directory (off the async runtime)
//! and starts every task on one [`Lifecycle`]; [`Hub::join`] waits until it stops;
//! [`Hub::shutdown`] withdraws the mDNS advertisement, then stops the rest.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use automerge::AutoCommit;
use taplink_certs::HubIdentity;
use taplink_sync_io::blobs::BlobStore;
use taplink_sync_io::docs::Documents;
use taplink_sync_io::docstore::DocDb;
use taplink_sync_io::node::{Lifecycle, SHUTDOWN_GRACE, ShutdownError};
use taplink_sync_proto::clock::{Clock, SystemClock};
use taplink_sync_proto::wire::DocId;
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::config::Config;
use crate::uplink::{self, UplinkParts, UplinkStatus};
use crate::{http, identity, mdns, metrics, store, view};

/// How often documents are checked for compaction.
const COMPACT_EVERY: Duration = Duration::from_secs(60);

/// Why the hub could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// The identity is missing or unreadable.
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    /// A document database problem.
    #[error(transparent)]
    Docs(#[from] taplink_sync_io::docs::DocumentsError),
    /// A document database problem.
    #[error(transparent)]
    DocDb(#[from] taplink_sync_io::docstore::DocDbError),
    /// The media store could not be opened.
    #[error(transparent)]
    Blobs(#[from] taplink_sync_io::blobs::BlobError),
    /// The hub's database could not be opened.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The HTTP listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The LAN API's TLS configuration could not be built from the hub's certificate.
    #[error("cannot serve HTTPS with the hub's certificate: {0}")]
    Tls(String),
    /// The task opening the stores failed.
    #[error("opening the data directory failed: {0}")]
    Task(String),
    /// A directory could not be created.
    #[error("cannot create {path}: {source}")]
    Dir {
        /// Which.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Everything the hub keeps in its data directory, opened (blocking).
type Stores = (
    identity::Identity,
    Arc<Documents>,
    Arc<BlobStore>,
    Arc<store::Store>,
    std::path::PathBuf,
    Config,
);

fn open_stores(config: Config, clock: Arc<dyn Clock>) -> Result<Stores, BindError> {
    let identity = identity::load(&config.data_dir)?;
    let ids = identity.ids;
    let dir = |name: &str| -> Result<std::path::PathBuf, BindError> {
        let path = config.data_dir.join(name);
        taplink_sync_io::private::create_dir(&path).map_err(|source| BindError::Dir {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    };
    let db = Arc::new(DocDb::open(&config.data_dir.join("docs.sqlite"))?.with_clock(clock.clone()));
    // The hub's own changes carry its id as their automerge actor.
    let docs = Arc::new(Documents::open(
        db,
        taplink_sync_proto::note::node_actor(*ids.hub.as_bytes()),
    )?);
    // The hub never creates document content: it starts from empty documents and
    // receives central's by sync, so both replicas share one origin.
    for doc in [DocId::Venue(ids.venue), DocId::Org] {
        if !docs.contains(doc) {
            docs.create(doc, AutoCommit::new())?;
        }
    }
    let blobs = Arc::new(BlobStore::open_with_clock(&dir("media")?, clock)?);
    let upload_dir = dir("uploads")?;
    // After the media store's lock: no other hub process is using this data directory.
    taplink_sync_io::web::media::clear_stale_uploads(&upload_dir);
    let store = Arc::new(store::Store::open(
        &config.data_dir.join(store::STORE_FILE),
    )?);
    Ok((identity, docs, blobs, store, upload_dir, config))
}

/// A running hub.
#[derive(Debug)]
pub struct Hub {
    ids: HubIdentity,
    http_addr: SocketAddr,
    fingerprint: Option<taplink_certs::Fingerprint>,
    https: bool,
    docs: Arc<Documents>,
    blobs: Arc<BlobStore>,
    store: Arc<store::Store>,
    outbox_ready: Arc<Notify>,
    uplink: watch::Receiver<UplinkStatus>,
    mdns: Option<mdns::Advertiser>,
    node: Lifecycle,
}

impl Hub {
    /// Open the hub's state in `config.data_dir` and start serving and syncing, on the
    /// system clock.
    pub async fn bind(config: Config) -> Result<Hub, BindError> {
        Self::bind_with_clock(config, SystemClock::shared()).await
    }

    /// [`bind`](Self::bind), reading the wall clock from `clock` (manifests, pairing expiry,
    /// timestamps in its stores).
    pub async fn bind_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Hub, BindError> {
        // Keys, token hashes, documents and media are nobody else's business.
        taplink_sync_io::private::secure_and_report(&config.data_dir).map_err(|source| {
            BindError::Dir {
                path: config.data_dir.clone(),
                source,
            }
        })?;
        // The stores open off the async runtime: SQLite and the file system block.
        let (identity, docs, blobs, store, upload_dir, config) = {
            let clock = clock.clone();
            tokio::task::spawn_blocking(move || open_stores(config, clock))
                .await
                .map_err(|e| BindError::Task(e.to_string()))??
        };
        let identity = Arc::new(identity);
        let ids = identity.ids;
        let outbox_ready = Arc::new(Notify::new());
        let metrics = Arc::new(metrics::Metrics::new());
        let (status_tx, status_rx) = watch::channel(UplinkStatus::default());
        let node = Lifecycle::new();
        let cancel = node.token().clone();

        let listener = tokio::net::TcpListener::bind(config.http_listen)
            .await
            .map_err(|source| BindError::Listen {
                addr: config.http_listen,
                source,
            })?;
        let http_addr = listener.local_addr().map_err(|source| BindError::Listen {
            addr: config.http_listen,
            source,
        })?;
        let uplink_clock = clock.clone();
        let state = Arc::new(http::HubState {
            venue: DocId::Venue(ids.venue),
            docs: docs.clone(),
            blobs: blobs.clone(),
            store: store.clone(),
            outbox_ready: outbox_ready.clone(),
            metrics: metrics.clone(),
            uplink: status_rx.clone(),
            max_upload: config.max_upload_bytes,
            media_quota: config.media_quota_bytes,
            upload_dir,
            clock,
            shutdown: cancel.clone(),
            view: view::VenueView::new(DocId::Venue(ids.venue)),
            long_polls: Default::default(),
            venue_id: ids.venue,
            plain_http: config.http_plain,
            roster_valid_offline: config
                .roster_valid_offline_s
                .map(|s| chrono::TimeDelta::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000))),
            hosts: Arc::new(taplink_sync_io::web::guard::HostPolicy::new(
                config.http_hosts.clone(),
            )),
        });
        let (limits, listener_metrics) = (config.listener_limits(), metrics.listener.clone());
        let tls = if config.http_plain {
            warn!(http = %http_addr, "serving the LAN API as plain HTTP (http_plain): device and staff tokens cross the LAN in clear");
            None
        } else {
            let tls = taplink_certs::tls::lan_server_config(
                identity.chain.clone(),
                identity.key.clone_key(),
            )
            .map_err(|e| BindError::Tls(e.to_string()))?;
            Some(Arc::new(tls))
        };
        // A hub whose API died must not look healthy: the node stops, and its supervisor
        // (systemd) starts it again.
        node.spawn_essential(
            "the HTTP API",
            taplink_sync_io::web::listener::serve(
                listener,
                http::app(state),
                limits,
                tls,
                listener_metrics,
                cancel.clone(),
                node.tasks().clone(),
            ),
        );
        let mdns = advertise(&config, &identity, http_addr);
        let parts = UplinkParts {
            central_addr: config.central_addr.clone(),
            central_name: config.central_name(),
            backoff: config.backoff(),
            docs: docs.clone(),
            blobs: blobs.clone(),
            outbox: store.clone(),
            outbox_ready: outbox_ready.clone(),
            metrics,
            tasks: node.tasks().clone(),
            clock: uplink_clock,
        };
        let fingerprint = identity.fingerprint();
        let uplink_cancel = cancel.clone();
        node.spawn_essential("the uplink", async move {
            uplink::run(identity, parts, status_tx, uplink_cancel).await;
            Ok::<(), std::convert::Infallible>(())
        });
        node.spawn(
            docs.clone()
                .compact_periodically(COMPACT_EVERY, cancel.clone()),
        );
        node.started();
        info!(hub = %ids.hub, venue = %ids.venue, http = %http_addr, central = %config.central_addr, "hub running");
        Ok(Hub {
            ids,
            http_addr,
            fingerprint,
            https: !config.http_plain,
            docs,
            blobs,
            store,
            outbox_ready,
            uplink: status_rx,
            mdns,
            node,
        })
    }

    /// The hub's and its venue's ids.
    pub fn ids(&self) -> HubIdentity {
        self.ids
    }

    /// Where the local HTTP API listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The fingerprint of the certificate the LAN API presents (kiosks pin it).
    pub fn fingerprint(&self) -> Option<taplink_certs::Fingerprint> {
        self.fingerprint
    }

    /// The LAN API's base URL: `https://ADDR`, or `http://ADDR` with `http_plain`.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.http_addr)
    }

    /// The hub's documents.
    pub fn docs(&self) -> &Arc<Documents> {
        &self.docs
    }

    /// The hub's media.
    pub fn blobs(&self) -> &Arc<BlobStore> {
        &self.blobs
    }

    /// The hub's database: telemetry outbox, kiosk pairings and device tokens.
    pub fn store(&self) -> &Arc<store::Store> {
        &self.store
    }

    /// The telemetry outbox: the same [`store::Store`], named for its outbox API
    /// (`push`, `next_batch`, `acknowledge`, `pending`).
    pub fn outbox(&self) -> &Arc<store::Store> {
        &self.store
    }

    /// Queue telemetry for central as the kiosk API does (durably, then the uplink is
    /// woken); returns how many events were new.
    pub fn push_telemetry(
        &self,
        events: &[taplink_sync_proto::wire::TelemetryEvent],
    ) -> Result<usize, store::StoreError> {
        let added = self.store.push(events)?;
        self.outbox_ready.notify_one();
        Ok(added)
    }

    /// The mDNS advertisement's full instance name, while the hub is advertised.
    pub fn mdns_name(&self) -> Option<&str> {
        self.mdns.as_ref().map(mdns::Advertiser::fullname)
    }

    /// The uplink's state, updated as it changes.
    pub fn uplink(&self) -> watch::Receiver<UplinkStatus> {
        self.uplink.clone()
    }

    /// Wait until the hub stops: after [`shutdown`](Self::shutdown) began, or after a part
    /// it cannot run without (the HTTP API, the uplink) stopped it.
    pub async fn join(&self) {
        self.node.join().await;
    }

    /// Stop everything, waiting up to [`SHUTDOWN_GRACE`] for tasks to finish their current
    /// step. The mDNS advertisement is withdrawn first, so kiosks stop finding a hub that
    /// is going away. An error if a task did not finish in time or the hub had failed.
    pub async fn shutdown(mut self) -> Result<(), ShutdownError> {
        if let Some(mdns) = self.mdns.take() {
            mdns.shutdown().await;
        }
        self.node.shutdown(SHUTDOWN_GRACE).await
    }
}

/// Whether and with which address the hub is advertised by mDNS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MdnsPlan {
    /// Not advertised, for this reason.
    Off(&'static str),
    /// Advertised with this address, or (`None`) the advertised interfaces' addresses.
    Advertise(Option<IpAddr>),
}

fn mdns_plan(config: &Config, http: SocketAddr) -> MdnsPlan {
    let ip = http.ip();
    if !config.mdns {
        MdnsPlan::Off("mdns = false in the config")
    } else if ip.is_loopback() && config.mdns_interface.is_none() {
        // The default config: nothing on the LAN could reach this address, and announcing
        // it on every interface would only confuse kiosks.
        MdnsPlan::Off(
            "the HTTP API listens on loopback only; set http_listen to a LAN address (or mdns_interface to \"lo\" for a demo)",
        )
    } else if ip.is_unspecified() {
        MdnsPlan::Advertise(None)
    } else {
        MdnsPlan::Advertise(Some(ip))
    }
}

/// Start the mDNS advertisement the config asks for; the hub runs without it if it fails
/// (kiosks can be given `--hub HOST:PORT`).
fn advertise(
    config: &Config,
    identity: &identity::Identity,
    http_addr: SocketAddr,
) -> Option<mdns::Advertiser> {
    let addr = match mdns_plan(config, http_addr) {
        MdnsPlan::Off(why) => {
            info!(http = %http_addr, "not advertising by mDNS: {why}");
            return None;
        }
        MdnsPlan::Advertise(addr) => addr,
    };
    let Some(cert) = identity.chain.first() else {
        warn!("not advertising by mDNS: the hub has no certificate");
        return None;
    };
    let ad = mdns::Advertisement {
        hub: identity.ids.hub,
        venue: identity.ids.venue,
        port: http_addr.port(),
        fingerprint: taplink_certs::Fingerprint::of(cert),
        interface: config.mdns_interface.clone(),
        addr,
    };
    match mdns::Advertiser::start_in(&ad, config.mdns_netns.as_deref()) {
        Ok(advertiser) => Some(advertiser),
        Err(e) => {
            warn!(error = %e, "not advertising by mDNS; kiosks need --hub HOST:PORT");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_advertises_nothing_and_a_lan_hub_its_address() {
        let mut config = Config::new("/data".into(), "127.0.0.1:4433".parse().unwrap());
        let loopback: SocketAddr = "127.0.0.1:8580".parse().unwrap();
        assert!(matches!(mdns_plan(&config, loopback), MdnsPlan::Off(_)));
        let lan: SocketAddr = "192.168.1.5:8580".parse().unwrap();
        assert_eq!(mdns_plan(&config, lan), MdnsPlan::Advertise(Some(lan.ip())));
        let any: SocketAddr = "0.0.0.0:8580".parse().unwrap();
        assert_eq!(mdns_plan(&config, any), MdnsPlan::Advertise(None));
        config.mdns_interface = Some("lo".into());
        assert_eq!(
            mdns_plan(&config, loopback),
            MdnsPlan::Advertise(Some(loopback.ip()))
        );
        config.mdns = false;
        assert!(matches!(mdns_plan(&config, lan), MdnsPlan::Off(_)));
    }
}
