//! taplink-kiosk: the kiosk agent. It finds its venue's hub by mDNS, pairs once, follows
//! its manifest, keeps every media file it needs in a verified cache, reports status and
//! proof of play, and serves the local player page that Chromium shows in kiosk mode.
//!
//! [`Kiosk::bind`] opens the state in the data directory, starts the player server and the
//! tasks; [`Kiosk::shutdown`] stops them (a SQLite transaction or a blob write in progress
//! is never cut half-way: blocking work runs to its end on its own thread).
//!
//! Tasks: the player server (`player`), the link to the hub (`link`: discovery, pairing,
//! then `follower` and `reporter` against the hub), and the heartbeat timer (`reporter`).
//! They share [`state::Shared`]; one `CancellationToken` stops them all.

pub mod cache;
pub mod cli;
pub mod config;
pub mod discovery;
pub mod follower;
pub mod hub;
mod link;
pub mod metrics;
pub mod pairing;
pub mod player;
pub mod reporter;
pub mod state;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use taplink_sync_io::blobs::BlobStore;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

pub use config::Config;
use state::{Phase, Shared, Status};

/// How long shutdown waits for tasks to finish their current step.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why one of the loops against the hub ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkEnd {
    /// The hub answered 401: the token was revoked.
    Revoked,
    /// The hub stopped answering.
    HubLost,
    /// Shutdown.
    Cancelled,
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The kiosk database could not be opened.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The media cache could not be opened.
    #[error(transparent)]
    Blobs(#[from] taplink_sync_io::blobs::BlobError),
    /// The player server could not listen.
    #[error("cannot listen on {addr} for the player: {source}")]
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
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A running kiosk agent.
#[derive(Debug)]
pub struct Kiosk {
    shared: Arc<Shared>,
    player_addr: SocketAddr,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Kiosk {
    /// Open the kiosk's state in `config.data_dir` and start the player server and the
    /// link to the hub. A kiosk that was paired plays its last manifest from disk at once,
    /// whether or not the hub answers.
    pub async fn bind(config: Config) -> Result<Kiosk, StartError> {
        let shared = Arc::new(Shared::open(config)?);
        let paired = shared.store.credentials()?;
        if let Some(creds) = &paired {
            link::set_paired(&shared, creds);
            if let Some(manifest) = shared.store.manifest()? {
                let ready = follower::ready_of(&shared, &manifest);
                info!(version = %manifest.version, cached = ready.len(), of = manifest.media.len(), "playing the saved manifest");
                shared.metrics.set_manifest(Some(&manifest.version));
                shared.status.send_modify(|s| {
                    s.manifest = Some(Arc::new(manifest));
                    s.ready = Arc::new(ready);
                });
            }
        }

        let listen = shared.config.player_listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: listen,
                source,
            })?;
        let player_addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: listen,
            source,
        })?;

        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let app = player::app(shared.clone());
        let http_cancel = cancel.clone();
        let (listener_metrics, conn_tasks) = (shared.metrics.listener.clone(), tasks.clone());
        tasks.spawn(async move {
            // Chromium on this machine is its only client: a few connections suffice.
            let limits = taplink_sync_io::web::listener::Limits {
                max_connections: 128,
                max_per_client: 64,
                ..Default::default()
            };
            let served = taplink_sync_io::web::listener::serve(
                listener,
                app,
                limits,
                None,
                listener_metrics,
                http_cancel.clone(),
                conn_tasks,
            )
            .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "player server failed");
            }
        });
        tasks.spawn(link::run(shared.clone(), cancel.clone()));
        let beat = shared.clone();
        let beat_cancel = cancel.clone();
        tasks.spawn(async move { reporter::heartbeats(&beat, beat_cancel).await });
        tasks.close();
        info!(
            player = %player_addr,
            paired = paired.is_some(),
            hub = ?shared.config.hub,
            mdns_interface = ?shared.config.mdns_interface,
            "kiosk agent running"
        );
        Ok(Kiosk {
            shared,
            player_addr,
            cancel,
            tasks,
        })
    }

    /// Where the player page is served.
    pub fn player_addr(&self) -> SocketAddr {
        self.player_addr
    }

    /// The agent's state now.
    pub fn status(&self) -> Status {
        self.shared.status()
    }

    /// The agent's state, updated as it changes.
    pub fn watch(&self) -> watch::Receiver<Status> {
        self.shared.status.subscribe()
    }

    /// Whether the kiosk holds a device token.
    pub fn is_paired(&self) -> bool {
        matches!(self.shared.status.borrow().phase, Phase::Paired { .. })
    }

    /// The kiosk's database.
    pub fn store(&self) -> &store::Store {
        &self.shared.store
    }

    /// The media cache.
    pub fn blobs(&self) -> &BlobStore {
        &self.shared.blobs
    }

    /// Wait until the agent stops.
    pub async fn join(&self) {
        self.tasks.wait().await;
    }

    /// Stop everything, waiting up to 10 s for tasks to finish their current step.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.tasks.wait()).await;
    }
}
