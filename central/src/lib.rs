//! taplink-central: the central server: registry, org CA, admin HTTP API and (to come) the
//! QUIC sync endpoint hubs connect to.
//!
//! [`Central::bind`] opens everything a data directory holds (see [`config::DataDir`]) and
//! starts serving; [`Central::shutdown`] stops it. `main.rs` is a thin CLI over this, and
//! simulations run centrals in-process the same way.
//!
//! Modules: [`config`] (settings, data directory layout), [`store`] (the SQLite registry,
//! the only module that touches rusqlite), [`init`] (creating a data directory),
//! [`http`] (health, metrics, admin API), [`metrics`], [`state`] (what handlers share),
//! [`enroll_token`] (the enrollment code format), [`venue`] (creating a venue),
//! [`kiosk_codes`] (kiosk provisioning codes: pairings pre-approved in the venue document),
//! [`admin_client`] (the CLI's client of the running server's admin API).

pub mod admin_client;
pub mod config;
pub mod http;
pub mod init;
pub mod kiosk_codes;
pub mod metrics;
pub mod state;
pub mod store;
pub mod sync;
mod timefmt;
pub mod venue;

/// The enrollment token format, shared with hubs (it lives in `taplink-sync-proto`).
pub use taplink_sync_proto::enroll_token;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;
pub use state::AppState;
pub use timefmt::{rfc3339, truncate_to_ms};

/// How long [`Central::shutdown`] waits for in-flight work before giving up.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why central could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// The data directory's contents could not be loaded.
    #[error(transparent)]
    Load(#[from] state::LoadError),
    /// The HTTP listener could not be bound.
    #[error("could not listen for HTTP on {addr}: {source}")]
    Http {
        /// The configured address.
        addr: SocketAddr,
        /// The operating system's report.
        #[source]
        source: std::io::Error,
    },
    /// The QUIC sync endpoint could not be set up.
    #[error("could not start the QUIC sync endpoint on {addr}: {reason}")]
    Quic {
        /// The configured address.
        addr: SocketAddr,
        /// What failed.
        reason: String,
    },
    /// The task loading the data directory panicked or was cancelled.
    #[error("loading the data directory failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Why central did not stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShutdownError {
    /// Some task was still running when the timeout passed (a long request).
    #[error("central's tasks did not finish within {timeout:?} of the shutdown request")]
    TimedOut {
        /// The timeout that passed.
        timeout: Duration,
    },
}

/// A running central server.
#[derive(Debug)]
pub struct Central {
    state: AppState,
    http_addr: SocketAddr,
    quic_addr: SocketAddr,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

/// The sync endpoint's TLS: central's certificate, hub certificates required for
/// `taplink/1` (checked against the org CA and a fresh CRL of revoked hubs), optional for
/// `taplink-enroll/1`.
fn sync_tls(state: &AppState) -> Result<rustls::ServerConfig, String> {
    let revoked = state
        .registry
        .revoked_serials()
        .map_err(|e| e.to_string())?;
    let now = state.now();
    // CRL numbers must grow; seconds since the epoch do across restarts.
    let number = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    let crl = state
        .pki
        .ca
        .crl(&revoked, number, now, now + time::Duration::days(30))
        .map_err(|e| e.to_string())?;
    let mut tls = taplink_certs::tls::server_config(
        vec![state.pki.server_cert.clone()],
        state.pki.server_key.to_der(),
        state.pki.ca.cert_der(),
        vec![crl.into_der()],
        taplink_certs::tls::ClientAuth::Optional,
    )
    .map_err(|e| e.to_string())?;
    tls.alpn_protocols = vec![
        taplink_sync_proto::wire::ALPN.to_vec(),
        taplink_sync_io::net::ENROLL_ALPN.to_vec(),
    ];
    Ok(tls)
}

impl Central {
    /// Load the data directory named by `config` and start serving HTTP on
    /// `config.http_listen` (port 0 picks a free port; see [`Central::http_addr`]).
    pub async fn bind(config: Config) -> Result<Central, BindError> {
        // Opening SQLite and reading key files block; keep them off the runtime's workers.
        let state = tokio::task::spawn_blocking(move || AppState::load(config)).await??;
        Central::start(state).await
    }

    /// Start serving with an already loaded state (tests and simulations that share or
    /// inspect it).
    pub async fn start(state: AppState) -> Result<Central, BindError> {
        let addr = state.config.http_listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| BindError::Http { addr, source })?;
        let http_addr = listener
            .local_addr()
            .map_err(|source| BindError::Http { addr, source })?;
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();

        let quic_listen = state.config.quic_listen;
        let quic_err = |reason: String| BindError::Quic {
            addr: quic_listen,
            reason,
        };
        let tls = sync_tls(&state).map_err(quic_err)?;
        let endpoint = taplink_sync_io::net::server_endpoint(quic_listen, tls)
            .map_err(|e| quic_err(e.to_string()))?;
        let quic_addr = endpoint.local_addr().map_err(|e| quic_err(e.to_string()))?;
        tasks.spawn(sync::serve(
            endpoint.clone(),
            state.clone(),
            cancel.child_token(),
            tasks.clone(),
        ));
        tasks.spawn(
            state
                .docs
                .clone()
                .compact_periodically(Duration::from_secs(60), cancel.child_token()),
        );
        // A revoked hub's certificate is refused from the next handshake on (its open
        // connections are closed by their sessions).
        let mut revocations = state.subscribe_hub_revocations();
        let crl_state = state.clone();
        let crl_cancel = cancel.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = crl_cancel.cancelled() => return,
                    r = revocations.recv() => {
                        if matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                            return;
                        }
                    }
                }
                let config = sync_tls(&crl_state)
                    .and_then(|tls| taplink_sync_io::net::server_config(tls).map_err(|e| e.to_string()));
                match config {
                    Ok(config) => endpoint.set_server_config(Some(config)),
                    Err(error) => tracing::error!(
                        %error,
                        "cannot reissue the CRL; revoked hubs are still refused by the registry check"
                    ),
                }
            }
        });

        let app = http::app(state.clone());
        let stop = cancel.clone();
        let listener_metrics = state.metrics.listener.clone();
        let conn_tasks = tasks.clone();
        tasks.spawn(async move {
            let result = taplink_sync_io::web::listener::serve(
                listener,
                app,
                taplink_sync_io::web::listener::Limits::default(),
                None,
                listener_metrics,
                stop.clone(),
                conn_tasks,
            )
            .await;
            if let Err(error) = result {
                tracing::error!(%error, "the HTTP server stopped; shutting central down");
                // Half a server is worse than none: a supervisor restarts a stopped one.
                stop.cancel();
            }
        });
        // `close` only means "wait() may return once the tasks are done"; tasks can still
        // be spawned on it afterwards.
        tasks.close();
        tracing::info!(%http_addr, %quic_addr, data_dir = %state.config.data_dir.display(), "central serving");
        Ok(Central {
            state,
            http_addr,
            quic_addr,
            cancel,
            tasks,
        })
    }

    /// The address the HTTP API listens on.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The address the QUIC sync endpoint listens on.
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    /// The shared state (registry, metrics, PKI, config, clock).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// A token cancelled when central shuts down, for tasks that should stop with it.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.cancel.child_token()
    }

    /// Wait until every task has stopped: after [`Central::shutdown`] began, or after a
    /// fatal error stopped the server by itself.
    pub async fn join(&self) {
        self.tasks.wait().await;
    }

    /// Stop accepting work, let in-flight requests finish (each registry transaction runs to
    /// its end), and wait up to [`SHUTDOWN_TIMEOUT`].
    pub async fn shutdown(self) -> Result<(), ShutdownError> {
        self.shutdown_within(SHUTDOWN_TIMEOUT).await
    }

    /// [`Central::shutdown`] with a chosen timeout.
    pub async fn shutdown_within(self, timeout: Duration) -> Result<(), ShutdownError> {
        tracing::info!("central shutting down");
        self.cancel.cancel();
        tokio::time::timeout(timeout, self.tasks.wait())
            .await
            .map_err(|_| ShutdownError::TimedOut { timeout })
    }
}
