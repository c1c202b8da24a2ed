//! The kiosk agent's server shell: [`Kiosk::bind`] opens the data directory (off the async
//! runtime) and starts every task on one [`Lifecycle`]; [`Kiosk::join`] waits until it
//! stops; [`Kiosk::shutdown`] stops it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use taplink_sync_io::blobs::BlobStore;
use taplink_sync_io::node::{Lifecycle, SHUTDOWN_GRACE, ShutdownError};
use tokio::sync::watch;
use tracing::info;

use crate::config::{self, Config};
use crate::state::{Phase, Shared, Status};
use crate::{follower, link, player, reporter, store};

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
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
    /// The task opening the stores failed.
    #[error("opening the data directory failed: {0}")]
    Task(String),
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
    node: Lifecycle,
}

impl Kiosk {
    /// Open the kiosk's state in `config.data_dir` and start the player server and the
    /// link to the hub. A kiosk that was paired plays its last manifest from disk at once,
    /// whether or not the hub answers.
    pub async fn bind(config: Config) -> Result<Kiosk, BindError> {
        Self::bind_with_clock(config, taplink_sync_proto::clock::SystemClock::shared()).await
    }

    /// [`bind`](Self::bind), reading the wall clock from `clock`.
    pub async fn bind_with_clock(
        config: Config,
        clock: std::sync::Arc<dyn taplink_sync_proto::clock::Clock>,
    ) -> Result<Kiosk, BindError> {
        // The stores open off the async runtime: SQLite and the file system block.
        let shared = tokio::task::spawn_blocking(move || Shared::open_with_clock(config, clock))
            .await
            .map_err(|e| BindError::Task(e.to_string()))??;
        let shared = Arc::new(shared);
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
            .map_err(|source| BindError::Listen {
                addr: listen,
                source,
            })?;
        let player_addr = listener.local_addr().map_err(|source| BindError::Listen {
            addr: listen,
            source,
        })?;

        let node = Lifecycle::new();
        let cancel = node.token().clone();
        let app = player::app(shared.clone());
        // Chromium on this machine is its only client: a few connections suffice.
        let limits = taplink_sync_io::web::listener::Limits {
            max_connections: 128,
            max_per_client: 64,
            ..Default::default()
        };
        // Without its player server the kiosk shows nothing: it stops, to be restarted.
        node.spawn_essential(
            "the player server",
            taplink_sync_io::web::listener::serve(
                listener,
                app,
                limits,
                None,
                shared.metrics.listener.clone(),
                cancel.clone(),
                node.tasks().clone(),
            ),
        );
        node.spawn(link::run(shared.clone(), cancel.clone()));
        let beat = shared.clone();
        let beat_cancel = cancel.clone();
        node.spawn(async move { reporter::heartbeats(&beat, beat_cancel).await });
        node.started();
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
            node,
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

    /// Wait until the agent stops: after [`shutdown`](Self::shutdown) began, or after its
    /// player server failed.
    pub async fn join(&self) {
        self.node.join().await;
    }

    /// Stop everything, waiting up to [`SHUTDOWN_GRACE`] for tasks to finish their current
    /// step. An error if a task did not finish in time or the agent had failed.
    pub async fn shutdown(self) -> Result<(), ShutdownError> {
        self.node.shutdown(SHUTDOWN_GRACE).await
    }
}
