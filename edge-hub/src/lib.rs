//! taplink-hub: the venue edge hub. It owns its venue's state locally (documents, media,
//! telemetry outbox), serves it on the LAN, and keeps it in sync with central over QUIC
//! whenever the WAN allows.
//!
//! [`Hub::bind`] starts everything; [`Hub::shutdown`] stops it (a SQLite transaction or a
//! blob write in progress is never cut half-way: tasks finish their step first).

pub mod config;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod outbox;
pub mod uplink;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use automerge::AutoCommit;
use taplink_certs::HubIdentity;
use taplink_sync_io::blobs::BlobStore;
use taplink_sync_io::docs::Documents;
use taplink_sync_io::docstore::DocDb;
use taplink_sync_proto::wire::DocId;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use config::Config;
use uplink::{UplinkParts, UplinkStatus};

/// How often documents are checked for compaction.
const COMPACT_EVERY: Duration = Duration::from_secs(60);

/// How long shutdown waits for tasks to finish their current step.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the hub could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
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
    /// The outbox could not be opened.
    #[error(transparent)]
    Outbox(#[from] outbox::OutboxError),
    /// The HTTP listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A directory could not be created.
    #[error("cannot create {path}: {source}")]
    Dir {
        /// Which.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Delete what earlier runs left in the upload staging directory. An upload is staged there
/// only while its request is arriving; a file still there at start-up belongs to a request
/// that died with the process (a crash or `kill -9` mid-upload), was never acknowledged, and
/// nothing else would ever delete it. Failures only cost disk space, so they are logged.
fn clear_stale_uploads(dir: &std::path::Path) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            warn!(dir = %dir.display(), error = %e, "cannot list the upload staging directory");
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                info!(path = %path.display(), "deleted an upload cut short by a previous run")
            }
            Err(e) => warn!(path = %path.display(), error = %e, "cannot delete a stale upload"),
        }
    }
}

/// A running hub.
#[derive(Debug)]
pub struct Hub {
    ids: HubIdentity,
    http_addr: SocketAddr,
    docs: Arc<Documents>,
    blobs: Arc<BlobStore>,
    outbox: Arc<outbox::Outbox>,
    uplink: watch::Receiver<UplinkStatus>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Hub {
    /// Open the hub's state in `config.data_dir` and start serving and syncing.
    pub async fn bind(config: Config) -> Result<Hub, StartError> {
        let identity = Arc::new(identity::load(&config.data_dir)?);
        let ids = identity.ids;
        let dir = |name: &str| -> Result<std::path::PathBuf, StartError> {
            let path = config.data_dir.join(name);
            std::fs::create_dir_all(&path).map_err(|source| StartError::Dir {
                path: path.clone(),
                source,
            })?;
            Ok(path)
        };
        let db = Arc::new(DocDb::open(&config.data_dir.join("docs.sqlite"))?);
        let docs = Arc::new(Documents::open(db)?);
        // The hub never creates document content: it starts from empty documents and
        // receives central's by sync, so both replicas share one origin.
        for doc in [DocId::Venue(ids.venue), DocId::Org] {
            if !docs.contains(doc) {
                docs.create(doc, AutoCommit::new())?;
            }
        }
        let blobs = Arc::new(BlobStore::open(&dir("media")?)?);
        let upload_dir = dir("uploads")?;
        // After the media store's lock: no other hub process is using this data directory.
        clear_stale_uploads(&upload_dir);
        let outbox = Arc::new(outbox::Outbox::open(
            &config.data_dir.join("outbox.sqlite"),
        )?);
        let outbox_ready = Arc::new(Notify::new());
        let metrics = Arc::new(metrics::Metrics::new());
        let (status_tx, status_rx) = watch::channel(UplinkStatus::default());
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();

        let listener = tokio::net::TcpListener::bind(config.http_listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: config.http_listen,
                source,
            })?;
        let http_addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: config.http_listen,
            source,
        })?;
        let state = Arc::new(http::HubState {
            venue: DocId::Venue(ids.venue),
            docs: docs.clone(),
            blobs: blobs.clone(),
            outbox: outbox.clone(),
            outbox_ready: outbox_ready.clone(),
            metrics: metrics.clone(),
            uplink: status_rx.clone(),
            max_upload: config.max_upload_bytes,
            upload_dir,
        });
        let http_cancel = cancel.clone();
        tasks.spawn(async move {
            let app = http::app(state);
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(http_cancel.cancelled_owned())
                .await;
        });
        let parts = UplinkParts {
            central_addr: config.central_addr,
            central_name: config.central_name.clone(),
            backoff: config.backoff(),
            docs: docs.clone(),
            blobs: blobs.clone(),
            outbox: outbox.clone(),
            outbox_ready,
            metrics,
        };
        tasks.spawn(uplink::run(identity, parts, status_tx, cancel.clone()));
        tasks.spawn(
            docs.clone()
                .compact_periodically(COMPACT_EVERY, cancel.clone()),
        );
        tasks.close();
        info!(hub = %ids.hub, venue = %ids.venue, http = %http_addr, central = %config.central_addr, "hub running");
        Ok(Hub {
            ids,
            http_addr,
            docs,
            blobs,
            outbox,
            uplink: status_rx,
            cancel,
            tasks,
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

    /// The hub's documents.
    pub fn docs(&self) -> &Arc<Documents> {
        &self.docs
    }

    /// The hub's media.
    pub fn blobs(&self) -> &Arc<BlobStore> {
        &self.blobs
    }

    /// The telemetry outbox.
    pub fn outbox(&self) -> &Arc<outbox::Outbox> {
        &self.outbox
    }

    /// The uplink's state, updated as it changes.
    pub fn uplink(&self) -> watch::Receiver<UplinkStatus> {
        self.uplink.clone()
    }

    /// Wait until the hub stops.
    pub async fn join(&self) {
        self.tasks.wait().await;
    }

    /// Stop everything, waiting up to 10 s for tasks to finish their current step.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.tasks.wait()).await;
    }
}
