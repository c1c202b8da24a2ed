//! QUIC endpoints: Taplink's transport parameters and quinn endpoints built from the rustls
//! configurations of `taplink-certs` (ring provider, TLS 1.3, mutual TLS).

use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

/// ALPN of the enrollment protocol, spoken by a hub that has no certificate yet.
pub const ENROLL_ALPN: &[u8] = b"taplink-enroll/1";

/// Keep-alive interval: below common NAT UDP timeouts, so a venue's router keeps the
/// mapping, and short enough to be the liveness probe of [`crate::driver::DEAD_AFTER`]
/// (a ping of a few dozen bytes each way every 2 s per idle connection).
pub const KEEP_ALIVE: Duration = Duration::from_secs(2);

/// A connection with no traffic (keep-alives included) for this long is dead.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Receive buffer asked for on every Taplink UDP socket. When thousands of hubs reconnect
/// at once their Initial packets (and, once connected, their path-MTU probes of up to
/// [`MAX_UDP_PAYLOAD`] bytes) arrive at central faster than the endpoint drains them; with
/// the default buffer (~200 KiB) the kernel drops the overflow, and every dropped Initial
/// costs its hub a retransmission timeout (1 s, doubling). A hub fetching a large blob needs
/// the same headroom. Without `CAP_NET_ADMIN` the kernel caps the size at
/// `net.core.rmem_max` (raise it on central's host, see docs/operations.md).
pub const RECV_BUFFER: usize = 16 * 1024 * 1024;

/// The largest UDP payload Taplink sends or accepts, the upper bound of quinn's path-MTU
/// discovery (quinn's default is 1,452). Each path settles on what it really carries:
/// ~1,452 bytes across the internet, up to ~9,000 on a LAN with jumbo frames, this bound on
/// loopback, where fewer, larger datagrams are what brings a blob transfer level with a TCP
/// copy (docs/performance.md, `bench blob`: raw QUIC ~1,400 MiB/s at 6,550 bytes, ~2,500 at
/// 16,000; beyond that it gains nothing measurable). A probe bigger than the first link's
/// MTU is refused by the local kernel and costs nothing on the wire, so a hub on Ethernet or
/// Wi-Fi probes as it would with the default. Segmentation-offload batches are capped to
/// fit one UDP send at this size ([`MAX_SEGMENTS`]).
pub const MAX_UDP_PAYLOAD: u16 = 16_000;

/// How long a finished path-MTU search holds before the next one looks for a larger MTU
/// (quinn's default is 10 minutes). Where the first link carries more than the path (a
/// jumbo-frame network behind a 1,500-byte internet link), each search loses a dozen
/// probes of up to [`MAX_UDP_PAYLOAD`] bytes; once an hour keeps that small. A path whose
/// MTU shrinks is caught sooner, by quinn's black-hole detection.
pub const MTU_SEARCH_INTERVAL: Duration = Duration::from_secs(3600);

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
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MAX_UDP_PAYLOAD)
        .interval(MTU_SEARCH_INTERVAL);
    t.mtu_discovery_config(Some(mtu));
    Arc::new(t)
}

/// A quinn server configuration from a rustls one (whose ALPN list decides the protocols).
pub fn server_config(tls: rustls::ServerConfig) -> Result<quinn::ServerConfig, NetError> {
    let crypto = QuicServerConfig::try_from(Arc::new(tls))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport_config());
    Ok(config)
}

/// A server endpoint on `addr` speaking `tls`, its socket's receive buffer sized by
/// [`RECV_BUFFER`].
pub fn server_endpoint(
    addr: SocketAddr,
    tls: rustls::ServerConfig,
) -> Result<quinn::Endpoint, NetError> {
    let config = server_config(tls)?;
    let bind_err = |source| NetError::Bind { addr, source };
    let socket = udp_socket(addr, RECV_BUFFER).map_err(bind_err)?;
    endpoint(socket, Some(config)).map_err(bind_err)
}

/// A UDP socket bound to `addr` that asks the kernel for a `recv_buffer`-byte receive
/// buffer, for a quinn endpoint that must absorb bursts of many connections. A process
/// allowed to (`CAP_NET_ADMIN`, e.g. root) gets it whatever `net.core.rmem_max` says
/// (`SO_RCVBUFFORCE`); any other gets at most `rmem_max`, which the operator raises
/// (docs/operations.md). A smaller buffer is not an error.
fn udp_socket(addr: SocketAddr, recv_buffer: usize) -> std::io::Result<std::net::UdpSocket> {
    use nix::sys::socket::{setsockopt, sockopt};
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if setsockopt(&socket, sockopt::RcvBufForce, &recv_buffer).is_err()
        && let Err(error) = socket.set_recv_buffer_size(recv_buffer)
    {
        // The default buffer still works; bursts may then lose packets to retransmission.
        tracing::warn!(%error, recv_buffer, "cannot enlarge the UDP receive buffer");
    }
    // The kernel reports twice what it grants for data (the rest is its bookkeeping).
    let granted = socket.recv_buffer_size()? / 2;
    if granted < recv_buffer {
        tracing::debug!(
            recv_buffer,
            granted,
            "UDP receive buffer capped by net.core.rmem_max"
        );
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// A client endpoint bound to `bind` (use port 0), its socket's receive buffer sized by
/// [`RECV_BUFFER`].
pub fn client_endpoint(bind: SocketAddr) -> Result<quinn::Endpoint, NetError> {
    let bind_err = |source| NetError::Bind { addr: bind, source };
    let socket = udp_socket(bind, RECV_BUFFER).map_err(bind_err)?;
    endpoint(socket, None).map_err(bind_err)
}

/// Endpoint settings shared by every Taplink endpoint: peers may send datagrams of up to
/// [`MAX_UDP_PAYLOAD`] bytes (quinn's default, 1,472, would cap their path-MTU discovery).
fn endpoint_config() -> quinn::EndpointConfig {
    let mut config = quinn::EndpointConfig::default();
    config
        .max_udp_payload_size(MAX_UDP_PAYLOAD)
        .expect("16,000 is within quinn's 1,200..=65,527");
    config
}

/// A quinn client configuration from a rustls one.
pub fn client_config(tls: rustls::ClientConfig) -> Result<quinn::ClientConfig, NetError> {
    let crypto = QuicClientConfig::try_from(Arc::new(tls))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport_config());
    Ok(config)
}

/// A quinn endpoint on `socket` with Taplink's endpoint settings, its datagram batches
/// bounded by [`BoundedGso`].
fn endpoint(
    socket: std::net::UdpSocket,
    server: Option<quinn::ServerConfig>,
) -> std::io::Result<quinn::Endpoint> {
    use quinn::Runtime;
    let runtime = Arc::new(quinn::TokioRuntime);
    let socket = Arc::new(BoundedGso(runtime.wrap_udp_socket(socket)?));
    quinn::Endpoint::new_with_abstract_socket(endpoint_config(), server, socket, runtime)
}

/// Most datagrams quinn may hand the kernel in one segmentation-offload send: as many
/// [`MAX_UDP_PAYLOAD`]-byte datagrams as fit the 65,507 bytes of one UDP/IPv4 send (4).
/// quinn batches up to 10 whatever their size; with datagrams over 6,550 bytes the kernel
/// refuses such a batch whole (`EMSGSIZE`), quinn counts it as lost and path-MTU discovery
/// collapses to 1,200 bytes. On a 1,452-byte internet path this means one `sendmsg` per 4
/// datagrams instead of 10, a few microseconds per 6 KB sent.
pub const MAX_SEGMENTS: usize = 65_507 / MAX_UDP_PAYLOAD as usize;

/// quinn's tokio UDP socket, reporting at most [`MAX_SEGMENTS`] datagrams per send.
#[derive(Debug)]
struct BoundedGso(Arc<dyn quinn::AsyncUdpSocket>);

impl quinn::AsyncUdpSocket for BoundedGso {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn quinn::UdpPoller>> {
        self.0.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &quinn::udp::Transmit<'_>) -> std::io::Result<()> {
        self.0.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [quinn::udp::RecvMeta],
    ) -> Poll<std::io::Result<usize>> {
        self.0.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.0.max_transmit_segments().clamp(1, MAX_SEGMENTS)
    }

    fn max_receive_segments(&self) -> usize {
        self.0.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.0.may_fragment()
    }
}

/// The wildcard address of `peer`'s family, port 0: where a client endpoint that dials
/// `peer` binds.
pub fn unspecified_like(peer: SocketAddr) -> SocketAddr {
    if peer.is_ipv4() {
        SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    }
}

/// A peer's address as an operator wrote it: `HOST:PORT`, where HOST is a DNS name, an IPv4
/// address or a bracketed IPv6 address (`[::1]:4433`). It is kept as given (in config files
/// and logs) and resolved again at every connection attempt, so a peer whose address
/// changes, or several peers behind one name, are found without a restart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerAddr {
    host: String,
    port: u16,
}

/// Why a `HOST:PORT` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{given:?} is not HOST:PORT ({why}); write e.g. central.example.com:4433, 192.0.2.10:4433 or [2001:db8::1]:4433"
)]
pub struct PeerAddrError {
    given: String,
    why: &'static str,
}

impl PeerAddr {
    /// The host part, as given (an IPv6 address without its brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host as an IP address, if it is one.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        self.host.parse().ok()
    }

    /// The socket addresses the host stands for now (DNS is asked every time).
    pub async fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        if let Some(ip) = self.ip() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        let found: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await?
            .collect();
        if found.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} has no address", self.host),
            ));
        }
        Ok(found)
    }
}

impl From<SocketAddr> for PeerAddr {
    fn from(addr: SocketAddr) -> Self {
        PeerAddr {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }
}

impl std::str::FromStr for PeerAddr {
    type Err = PeerAddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let refuse = |why| PeerAddrError {
            given: s.to_owned(),
            why,
        };
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(addr.into());
        }
        let (host, port) = s.rsplit_once(':').ok_or_else(|| refuse("no port"))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| refuse("the port must be a number from 1 to 65535"))?;
        let host = host.trim_end_matches('.');
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
            return Err(refuse("the host must be a DNS name or an IP address"));
        }
        Ok(PeerAddr {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.ip() {
            Some(std::net::IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            _ => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

impl serde::Serialize for PeerAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PeerAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::PeerAddr;

    #[test]
    fn peer_addresses_parse_as_written_and_print_back() {
        for (given, host, port, shown) in [
            (
                "central.example.com:4433",
                "central.example.com",
                4433,
                "central.example.com:4433",
            ),
            (
                "Central.Example.COM.:4433",
                "central.example.com",
                4433,
                "central.example.com:4433",
            ),
            ("192.0.2.10:4433", "192.0.2.10", 4433, "192.0.2.10:4433"),
            (
                "[2001:db8::1]:4433",
                "2001:db8::1",
                4433,
                "[2001:db8::1]:4433",
            ),
            ("localhost:1", "localhost", 1, "localhost:1"),
        ] {
            let addr: PeerAddr = given.parse().unwrap();
            assert_eq!((addr.host(), addr.port()), (host, port), "{given}");
            assert_eq!(addr.to_string(), shown);
            assert_eq!(shown.parse::<PeerAddr>().unwrap(), addr);
        }
        for bad in [
            "central.example.com",
            "central:0",
            "central:99999",
            ":4433",
            "a b:1",
            "-x.com:1",
            "2001:db8::1:4433x",
        ] {
            let e = bad.parse::<PeerAddr>().unwrap_err().to_string();
            assert!(e.contains("HOST:PORT"), "{bad}: {e}");
        }
    }

    #[tokio::test]
    async fn a_name_is_resolved_when_asked() {
        let addr: PeerAddr = "localhost:4433".parse().unwrap();
        let found = addr.resolve().await.unwrap();
        assert!(
            found
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 4433)
        );
        let ip: PeerAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(
            ip.resolve().await.unwrap(),
            vec!["127.0.0.1:9".parse().unwrap()]
        );
    }
}
