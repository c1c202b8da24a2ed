//! QUIC endpoints: Taplink's transport parameters and quinn endpoints built from the rustls
//! configurations of `taplink-certs` (ring provider, TLS 1.3, mutual TLS).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

/// ALPN of the enrollment protocol, spoken by a hub that has no certificate yet.
pub const ENROLL_ALPN: &[u8] = b"taplink-enroll/1";

/// Keep-alive interval: below common NAT UDP timeouts, so a venue's router keeps the mapping.
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// A connection with no traffic (keep-alives included) for this long is dead.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an endpoint could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The TLS configuration is not usable for QUIC (it needs TLS 1.3 with AES-128-GCM).
    #[error("TLS configuration unusable for QUIC: {0}")]
    Crypto(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    /// The UDP socket could not be bound.
    #[error("cannot bind UDP {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Transport parameters shared by every Taplink endpoint.
pub fn transport_config() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(KEEP_ALIVE));
    // 30 s always fits in a VarInt of milliseconds.
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(IDLE_TIMEOUT).expect("30 s is a valid idle timeout"),
    ));
    // One control stream, one per document each way, and a handful of blob transfers.
    t.max_concurrent_bidi_streams(32u32.into());
    t.max_concurrent_uni_streams(16u32.into());
    Arc::new(t)
}

/// A quinn server configuration from a rustls one (whose ALPN list decides the protocols).
pub fn server_config(tls: rustls::ServerConfig) -> Result<quinn::ServerConfig, NetError> {
    let crypto = QuicServerConfig::try_from(Arc::new(tls))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport_config());
    Ok(config)
}

/// A server endpoint on `addr` speaking `tls`.
pub fn server_endpoint(
    addr: SocketAddr,
    tls: rustls::ServerConfig,
) -> Result<quinn::Endpoint, NetError> {
    quinn::Endpoint::server(server_config(tls)?, addr)
        .map_err(|source| NetError::Bind { addr, source })
}

/// A client endpoint bound to `bind` (use port 0).
pub fn client_endpoint(bind: SocketAddr) -> Result<quinn::Endpoint, NetError> {
    quinn::Endpoint::client(bind).map_err(|source| NetError::Bind { addr: bind, source })
}

/// A quinn client configuration from a rustls one.
pub fn client_config(tls: rustls::ClientConfig) -> Result<quinn::ClientConfig, NetError> {
    let crypto = QuicClientConfig::try_from(Arc::new(tls))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport_config());
    Ok(config)
}
