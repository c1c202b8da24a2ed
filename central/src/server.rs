//! Central's server shell: [`Central::bind`] loads the data directory (off the async
//! runtime) and starts every task on one [`Lifecycle`]; [`Central::join`] waits until it
//! stops; [`Central::shutdown`] stops it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use taplink_sync_io::node::{Lifecycle, ShutdownError};

use crate::config::Config;
use crate::state::{self, AppState};
use crate::{http, sync};

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

/// A running central server.
#[derive(Debug)]
pub struct Central {
    state: AppState,
    http_addr: SocketAddr,
    quic_addr: SocketAddr,
    node: Lifecycle,
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
    let number = u64::try_from(now.timestamp()).unwrap_or(0);
    let now = taplink_certs::offset_date_time(now);
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
        let node = Lifecycle::new();
        let cancel = node.token().clone();
        let tasks = node.tasks().clone();

        let quic_listen = state.config.quic_listen;
        let quic_err = |reason: String| BindError::Quic {
            addr: quic_listen,
            reason,
        };
        let tls = sync_tls(&state).map_err(quic_err)?;
        let endpoint = taplink_sync_io::net::server_endpoint(quic_listen, tls)
            .map_err(|e| quic_err(e.to_string()))?;
        let quic_addr = endpoint.local_addr().map_err(|e| quic_err(e.to_string()))?;
        let sync_endpoint = sync::serve(
            endpoint.clone(),
            state.clone(),
            cancel.child_token(),
            tasks.clone(),
        );
        node.spawn_essential("the sync endpoint", async move {
            sync_endpoint.await;
            Ok::<(), std::convert::Infallible>(())
        });
        // Every document change, made here or brought by a hub, goes into the audit log and
        // the catalog.
        tasks.spawn(crate::observe::follow(state.clone(), cancel.child_token()));
        tasks.spawn(
            state
                .docs
                .clone()
                .compact_periodically(Duration::from_secs(60), cancel.child_token()),
        );
        // Hubs and kiosks silent too long, disks low, kiosks hot: alerts, and the webhook.
        let webhook = state.config.alert_webhook_url.clone().map(|url| {
            crate::alerts::Webhook::start(url, state.clone(), &tasks, cancel.child_token())
        });
        tasks.spawn(crate::alerts::follow(
            state.clone(),
            webhook,
            cancel.child_token(),
        ));
        // Raw telemetry older than the retention period goes, its plays kept as daily totals.
        tasks.spawn(crate::retention::expire_periodically(
            state.clone(),
            crate::retention::EXPIRY_INTERVAL,
            cancel.child_token(),
        ));
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

        // Half a server is worse than none: if the HTTP API dies central stops, and its
        // supervisor restarts it.
        node.spawn_essential(
            "the HTTP API",
            taplink_sync_io::web::listener::serve(
                listener,
                http::app(state.clone()),
                taplink_sync_io::web::listener::Limits::default(),
                None,
                state.metrics.listener.clone(),
                cancel.clone(),
                tasks.clone(),
            ),
        );
        node.started();
        tracing::info!(%http_addr, %quic_addr, data_dir = %state.config.data_dir.display(), "central serving");
        Ok(Central {
            state,
            http_addr,
            quic_addr,
            node,
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
        self.node.token().child_token()
    }

    /// Wait until every task has stopped: after [`Central::shutdown`] began, or after a
    /// fatal error stopped the server by itself.
    pub async fn join(&self) {
        self.node.join().await;
    }

    /// Stop accepting work, let in-flight requests finish (each registry transaction runs to
    /// its end), and wait up to [`SHUTDOWN_TIMEOUT`].
    pub async fn shutdown(self) -> Result<(), ShutdownError> {
        self.shutdown_within(SHUTDOWN_TIMEOUT).await
    }

    /// [`Central::shutdown`] with a chosen timeout.
    pub async fn shutdown_within(self, timeout: Duration) -> Result<(), ShutdownError> {
        tracing::info!("central shutting down");
        self.node.shutdown(timeout).await
    }
}
