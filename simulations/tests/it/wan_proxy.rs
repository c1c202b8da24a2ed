//! The WAN proxy over real UDP sockets on 127.0.0.1: forwarding, NAT mappings, cuts, loss,
//! delay, idle expiry, a dead upstream, and a QUIC connection riding out a cut.
//!
//! No test asserts an upper bound on time. Waits for things that must happen are bounded
//! by [`WAIT`]; checks that something does *not* happen wait a short fixed time, which can
//! only make them pass more slowly, never fail spuriously.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use taplink_certs::tls::{ClientAuth, client_config, server_config};
use taplink_certs::{HubIdentity, OrgCa, ServerSan, Validity};
use taplink_simulations::wan_proxy::{LinkFaults, ProxyConfig, ProxyStats, WanProxy};
use taplink_sync_proto::ids::{HubId, VenueId};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

/// Bound on waiting for something that must happen.
const WAIT: Duration = Duration::from_secs(10);
/// How long to watch for something that must not happen.
const QUIET: Duration = Duration::from_millis(300);

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn within<F: Future>(what: &str, future: F) -> Result<F::Output> {
    timeout(WAIT, future)
        .await
        .map_err(|_| anyhow!("timed out after {WAIT:?} waiting for {what}"))
}

/// Aborts a spawned task when dropped, so a failing test leaves nothing running.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A UDP echo server that also reports every datagram it sees, with its source address.
struct Echo {
    addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<(SocketAddr, Vec<u8>)>,
    _task: AbortOnDrop,
}

impl Echo {
    async fn start() -> Result<Echo> {
        Self::start_on(loopback()).await
    }

    async fn start_on(addr: SocketAddr) -> Result<Echo> {
        let socket = UdpSocket::bind(addr).await?;
        let addr = socket.local_addr()?;
        let (tx, seen) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((len, from)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                let _ = tx.send((from, buf[..len].to_vec()));
                let _ = socket.send_to(&buf[..len], from).await;
            }
        });
        Ok(Echo {
            addr,
            seen,
            _task: AbortOnDrop(task),
        })
    }

    async fn next(&mut self) -> Result<(SocketAddr, Vec<u8>)> {
        within("the echo server to see a datagram", self.seen.recv())
            .await?
            .context("echo server stopped")
    }

    fn saw_nothing_more(&mut self) -> bool {
        self.seen.try_recv().is_err()
    }
}

async fn client_of(proxy: &WanProxy) -> Result<UdpSocket> {
    let client = UdpSocket::bind(loopback()).await?;
    client.connect(proxy.local_addr()).await?;
    Ok(client)
}

async fn recv(client: &UdpSocket) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; 65_536];
    let len = within("a reply", client.recv(&mut buf)).await??;
    buf.truncate(len);
    Ok(buf)
}

async fn round_trip(client: &UdpSocket, payload: &[u8]) -> Result<()> {
    client.send(payload).await?;
    let reply = recv(client).await?;
    ensure!(reply == payload, "echo came back different");
    Ok(())
}

async fn stats_until(
    proxy: &WanProxy,
    what: &str,
    done: impl FnMut(&ProxyStats) -> bool,
) -> Result<ProxyStats> {
    within(what, proxy.wait_for_stats(done)).await
}

#[tokio::test]
async fn a_clean_link_echoes_100_datagrams_in_order_and_counts_them() -> Result<()> {
    let echo = Echo::start().await?;
    let proxy = WanProxy::start(loopback(), echo.addr, 1).await?;
    let client = client_of(&proxy).await?;
    let messages: Vec<Vec<u8>> = (0u32..100)
        .map(|i| {
            let mut m = i.to_be_bytes().to_vec();
            m.resize(4 + i as usize * 7, i as u8);
            m
        })
        .collect();
    for m in &messages {
        client.send(m).await?;
    }
    for (i, m) in messages.iter().enumerate() {
        ensure!(
            recv(&client).await? == *m,
            "datagram {i} wrong or out of order"
        );
    }
    // The largest IPv4 UDP payload survives whole: buffers are never too small.
    let big: Vec<u8> = (0..65_507u32).map(|i| (i % 251) as u8).collect();
    round_trip(&client, &big).await?;

    let bytes: u64 = messages.iter().map(|m| m.len() as u64).sum::<u64>() + big.len() as u64;
    let stats = stats_until(&proxy, "101 replies counted", |s| {
        s.to_client.forwarded == 101
    })
    .await?;
    for (name, dir) in [("up", stats.to_upstream), ("down", stats.to_client)] {
        assert_eq!(dir.received, 101, "{name}");
        assert_eq!(dir.forwarded, 101, "{name}");
        assert_eq!(dir.received_bytes, bytes, "{name}");
        assert_eq!(dir.forwarded_bytes, bytes, "{name}");
        assert_eq!(dir.dropped(), 0, "{name}");
        assert_eq!(dir.in_flight(), 0, "{name}");
    }
    assert_eq!((stats.nat_mappings, stats.nat_created), (1, 1));
    proxy.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn two_clients_through_one_proxy_get_their_own_replies() -> Result<()> {
    let mut echo = Echo::start().await?;
    let proxy = WanProxy::start(loopback(), echo.addr, 1).await?;
    let a = client_of(&proxy).await?;
    let b = client_of(&proxy).await?;
    for i in 0..10 {
        a.send(format!("a{i}").as_bytes()).await?;
        b.send(format!("b{i}").as_bytes()).await?;
    }
    for i in 0..10 {
        assert_eq!(recv(&a).await?, format!("a{i}").into_bytes());
        assert_eq!(recv(&b).await?, format!("b{i}").into_bytes());
    }
    // Upstream sees each client from its own mapping socket, never the client itself.
    let mut sources = BTreeSet::new();
    for _ in 0..20 {
        sources.insert(echo.next().await?.0);
    }
    assert_eq!(sources.len(), 2);
    assert!(!sources.contains(&a.local_addr()?) && !sources.contains(&b.local_addr()?));
    assert_eq!(proxy.stats().nat_mappings, 2);
    Ok(())
}

#[tokio::test]
async fn a_cut_drops_everything_and_heal_resumes_on_the_same_mapping() -> Result<()> {
    let mut echo = Echo::start().await?;
    let proxy = WanProxy::start(loopback(), echo.addr, 1).await?;
    let client = client_of(&proxy).await?;
    round_trip(&client, b"before").await?;
    let (mapped_before, _) = echo.next().await?;

    proxy.cut();
    assert!(proxy.faults().down);
    for i in 0u8..10 {
        client.send(&[i]).await?;
    }
    let stats = stats_until(&proxy, "10 drops", |s| s.to_upstream.dropped_down == 10).await?;
    let mut buf = [0u8; 16];
    assert!(
        timeout(QUIET, client.recv(&mut buf)).await.is_err(),
        "a reply crossed a cut link"
    );
    assert!(echo.saw_nothing_more(), "a datagram crossed a cut link");
    assert_eq!(stats.to_upstream.forwarded, 1);
    assert_eq!(stats.to_upstream.dropped_bytes, 10);
    assert_eq!(stats.nat_mappings, 1, "a cut keeps the NAT mapping");

    proxy.heal();
    assert_eq!(proxy.faults(), LinkFaults::default());
    round_trip(&client, b"after").await?;
    let (mapped_after, payload) = echo.next().await?;
    assert_eq!(payload, b"after");
    assert_eq!(
        mapped_after, mapped_before,
        "the same NAT mapping carries on"
    );
    Ok(())
}

#[tokio::test]
async fn a_cut_drops_datagrams_already_in_flight_both_ways() -> Result<()> {
    let mut echo = Echo::start().await?;
    let proxy = WanProxy::start(loopback(), echo.addr, 1).await?;
    let client = client_of(&proxy).await?;
    let slow = LinkFaults {
        delay: Duration::from_millis(500),
        ..LinkFaults::default()
    };

    // Towards upstream: queued, then the link goes down before it is due.
    proxy.set_faults(slow);
    client.send(b"up").await?;
    stats_until(&proxy, "a queued datagram", |s| {
        s.to_upstream.in_flight() == 1
    })
    .await?;
    proxy.cut();
    let stats = stats_until(&proxy, "the in-flight drop", |s| {
        s.to_upstream.dropped_down == 1
    })
    .await?;
    assert_eq!(stats.to_upstream.forwarded, 0);
    assert!(echo.saw_nothing_more());

    // Towards the client: the request crosses, the reply is queued, then the cut.
    proxy.set_faults(slow);
    client.send(b"down").await?;
    assert_eq!(echo.next().await?.1, b"down");
    stats_until(&proxy, "a queued reply", |s| s.to_client.in_flight() == 1).await?;
    proxy.cut();
    let stats = stats_until(&proxy, "the in-flight reply drop", |s| {
        s.to_client.dropped_down == 1
    })
    .await?;
    assert_eq!(stats.to_client.forwarded, 0);
    let mut buf = [0u8; 16];
    assert!(
        client.try_recv(&mut buf).is_err(),
        "the reply was delivered"
    );
    Ok(())
}

/// Send 400 numbered datagrams through a proxy with 50% loss and return the numbers that
/// reached upstream. Sent in batches of 20, each waited for by the proxy's own count, so
/// no socket buffer overflows and only the seeded RNG decides.
async fn survivors_of_half_loss(seed: u64) -> Result<BTreeSet<u32>> {
    let mut echo = Echo::start().await?;
    let proxy = WanProxy::start(loopback(), echo.addr, seed).await?;
    proxy.set_faults(LinkFaults {
        loss: 0.5,
        ..LinkFaults::default()
    });
    let client = client_of(&proxy).await?;
    for batch in 0u32..20 {
        for i in batch * 20..(batch + 1) * 20 {
            client.send(&i.to_be_bytes()).await?;
        }
        let sent = u64::from(batch + 1) * 20;
        stats_until(&proxy, "the batch to be received", |s| {
            s.to_upstream.received >= sent
        })
        .await?;
    }
    let stats = stats_until(&proxy, "all 400 decided", |s| {
        s.to_upstream.received == 400 && s.to_upstream.in_flight() == 0
    })
    .await?;
    let up = stats.to_upstream;
    assert_eq!(up.forwarded + up.dropped_loss, 400);
    assert_eq!(up.dropped(), up.dropped_loss, "only random loss drops here");
    let mut arrived = BTreeSet::new();
    for _ in 0..up.forwarded {
        let (_, payload) = echo.next().await?;
        let n = u32::from_be_bytes(payload.as_slice().try_into()?);
        ensure!(arrived.insert(n), "datagram {n} arrived twice");
    }
    Ok(arrived)
}

#[tokio::test]
async fn half_loss_with_a_fixed_seed_passes_30_to_70_percent_deterministically() -> Result<()> {
    let first = survivors_of_half_loss(7).await?;
    assert!(
        (120..=280).contains(&first.len()),
        "{} of 400 arrived",
        first.len()
    );
    assert_eq!(
        survivors_of_half_loss(7).await?,
        first,
        "same seed, same fate"
    );
    assert_ne!(survivors_of_half_loss(8).await?, first, "the seed matters");
    Ok(())
}

#[tokio::test]
async fn a_50ms_delay_makes_a_round_trip_take_at_least_100ms() -> Result<()> {
    let echo = Echo::start().await?;
    let proxy = WanProxy::start(loopback(), echo.addr, 1).await?;
    let client = client_of(&proxy).await?;
    proxy.set_faults(LinkFaults {
        delay: Duration::from_millis(50),
        ..LinkFaults::default()
    });
    let start = Instant::now();
    round_trip(&client, b"ping").await?;
    let rtt = start.elapsed();
    assert!(rtt >= Duration::from_millis(100), "round trip took {rtt:?}");
    Ok(())
}

#[tokio::test]
async fn jitter_delivers_every_datagram_intact() -> Result<()> {
    let mut echo = Echo::start().await?;
    let proxy = WanProxy::start(loopback(), echo.addr, 5).await?;
    let client = client_of(&proxy).await?;
    proxy.set_faults(LinkFaults {
        jitter: Duration::from_millis(20),
        ..LinkFaults::default()
    });
    for i in 0u32..50 {
        client.send(&i.to_be_bytes()).await?;
    }
    let mut arrived = BTreeSet::new();
    for _ in 0..50 {
        let (_, payload) = echo.next().await?;
        arrived.insert(u32::from_be_bytes(payload.as_slice().try_into()?));
    }
    assert_eq!(arrived, (0..50).collect());
    Ok(())
}

#[tokio::test]
async fn idle_nat_mappings_expire_and_traffic_makes_a_new_one() -> Result<()> {
    let echo = Echo::start().await?;
    let config = ProxyConfig {
        nat_idle_timeout: Duration::from_millis(200),
        ..ProxyConfig::default()
    };
    let proxy = WanProxy::start_with(loopback(), echo.addr, config).await?;
    let client = client_of(&proxy).await?;
    round_trip(&client, b"one").await?;
    let stats = stats_until(&proxy, "the mapping to expire", |s| s.nat_expired == 1).await?;
    assert_eq!(stats.nat_mappings, 0);
    round_trip(&client, b"two").await?;
    let stats = proxy.stats();
    assert_eq!((stats.nat_created, stats.nat_mappings), (2, 1));
    Ok(())
}

#[tokio::test]
async fn a_full_nat_table_drops_new_clients_only() -> Result<()> {
    let echo = Echo::start().await?;
    let config = ProxyConfig {
        max_mappings: 1,
        ..ProxyConfig::default()
    };
    let proxy = WanProxy::start_with(loopback(), echo.addr, config).await?;
    let a = client_of(&proxy).await?;
    let b = client_of(&proxy).await?;
    round_trip(&a, b"a").await?;
    b.send(b"b").await?;
    stats_until(&proxy, "the refused client's drop", |s| {
        s.to_upstream.dropped_nat == 1
    })
    .await?;
    round_trip(&a, b"a again").await?;
    assert_eq!(proxy.stats().nat_mappings, 1);
    Ok(())
}

#[tokio::test]
async fn a_dead_upstream_is_survived_and_traffic_flows_once_it_is_back() -> Result<()> {
    // A port nobody listens on: datagrams to it draw ICMP port-unreachable errors.
    let dead = std::net::UdpSocket::bind(loopback())?;
    let upstream = dead.local_addr()?;
    drop(dead);
    let proxy = WanProxy::start(loopback(), upstream, 1).await?;
    let client = client_of(&proxy).await?;
    let errors = |s: &ProxyStats| s.to_upstream.send_errors + s.to_client.recv_errors;
    for sent in 1u64..=50 {
        client.send(b"anyone?").await?;
        let stats = stats_until(&proxy, "the datagram to be handled", |s| {
            s.to_upstream.forwarded + s.to_upstream.dropped() == sent
        })
        .await?;
        if errors(&stats) > 0 {
            break;
        }
    }
    ensure!(errors(&proxy.stats()) > 0, "no socket error was provoked");

    let _echo = Echo::start_on(upstream).await?;
    // One more error may still be pending on the mapping socket and eat a datagram, so
    // retry a few times; each attempt waits a bounded time.
    let mut buf = vec![0u8; 64];
    for _ in 0..5 {
        client.send(b"back?").await?;
        if let Ok(len) = timeout(Duration::from_secs(1), client.recv(&mut buf)).await {
            assert_eq!(&buf[..len?], b"back?");
            return Ok(());
        }
    }
    Err(anyhow!("no reply after the upstream came back"))
}

#[tokio::test]
async fn shutdown_closes_the_listening_socket() -> Result<()> {
    let echo = Echo::start().await?;
    let proxy = WanProxy::start(loopback(), echo.addr, 1).await?;
    let client = client_of(&proxy).await?;
    round_trip(&client, b"hi").await?;
    let addr = proxy.local_addr();
    within("shutdown", proxy.shutdown()).await?;
    // Binding the same port only works once the proxy's socket is really closed.
    UdpSocket::bind(addr).await?;
    Ok(())
}

const CENTRAL_NAME: &str = "central.taplink.test";

/// quinn configurations with mutual TLS from a fresh org CA, built through taplink-certs
/// (ring provider). The idle timeout is far longer than the cut in the test.
fn quic_configs() -> Result<(quinn::ServerConfig, quinn::ClientConfig)> {
    let now = taplink_simulations::mesh::system_now();
    let ca = OrgCa::create(
        "WAN proxy test",
        Validity::new(now, time::Duration::days(2))?,
    )?;
    let leaf = Validity::new(now, time::Duration::days(1))?;
    let central = ca.issue_server_cert(&[ServerSan::Dns(CENTRAL_NAME.into())], leaf)?;
    let hub = ca.issue_hub_cert(
        HubIdentity {
            hub: HubId::random(),
            venue: VenueId::random(),
        },
        leaf,
    )?;
    let server_tls = server_config(
        vec![central.cert.der().clone()],
        central.key.to_der(),
        ca.cert_der(),
        Vec::new(),
        ClientAuth::Required,
    )?;
    let client_tls = client_config(
        vec![hub.cert.der().clone()],
        hub.key.to_der(),
        ca.cert_der(),
    )?;

    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(Duration::from_secs(30).try_into()?));
    let transport = Arc::new(transport);
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(
        Arc::new(server_tls),
    )?));
    server.transport_config(transport.clone());
    let mut client =
        quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(Arc::new(client_tls))?));
    client.transport_config(transport);
    Ok((server, client))
}

/// A QUIC server answering each bidirectional stream with its own contents.
fn quic_echo_server(endpoint: quinn::Endpoint) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Some(incoming) = endpoint.accept().await {
            let Ok(connection) = incoming.await else {
                continue;
            };
            connections.push(AbortOnDrop(tokio::spawn(async move {
                while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                    tokio::spawn(async move {
                        if let Ok(data) = recv.read_to_end(1 << 16).await {
                            let _ = send.write_all(&data).await;
                            let _ = send.finish();
                        }
                    });
                }
            })));
        }
    }))
}

async fn quic_echo(connection: &quinn::Connection, message: &[u8]) -> Result<Vec<u8>> {
    let (mut send, mut recv) = connection.open_bi().await?;
    send.write_all(message).await?;
    send.finish()?;
    Ok(recv.read_to_end(1 << 16).await?)
}

#[tokio::test]
async fn a_quic_connection_through_the_proxy_rides_out_a_cut() -> Result<()> {
    let (server_config, client_config) = quic_configs()?;
    let server = quinn::Endpoint::server(server_config, loopback())?;
    let server_addr = server.local_addr()?;
    let _server_task = quic_echo_server(server);
    let proxy = WanProxy::start(loopback(), server_addr, 1).await?;
    let client = quinn::Endpoint::client(loopback())?;
    let connection = within(
        "the QUIC handshake",
        client.connect_with(client_config, proxy.local_addr(), CENTRAL_NAME)?,
    )
    .await??;
    assert_eq!(
        within("an echo", quic_echo(&connection, b"hello")).await??,
        b"hello"
    );

    proxy.cut();
    let mut during = Box::pin(quic_echo(&connection, b"during the cut"));
    assert!(
        timeout(Duration::from_millis(1500), &mut during)
            .await
            .is_err(),
        "an exchange completed over a cut link"
    );
    let cut = proxy.stats();
    assert!(
        cut.to_upstream.dropped_down > 0,
        "QUIC sent nothing while cut"
    );
    assert_eq!(cut.nat_mappings, 1);

    proxy.heal();
    assert_eq!(
        within("the echo sent during the cut", during).await??,
        b"during the cut"
    );
    assert_eq!(
        within("an echo after healing", quic_echo(&connection, b"after")).await??,
        b"after"
    );
    assert!(
        connection.close_reason().is_none(),
        "the connection survived"
    );
    let healed = proxy.stats();
    assert_eq!((healed.nat_created, healed.nat_mappings), (1, 1));
    connection.close(0u32.into(), b"done");
    Ok(())
}
