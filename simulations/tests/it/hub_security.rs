//! The hub's HTTP listener on real sockets and its data directory (docs/security.md): a
//! slow-header client is cut off, idle floods (plain and stuck in TLS handshakes) do not
//! starve `/healthz`, and the data directory is private after enrollment and fixed at every
//! start. Each test enrolls a real hub with a central in this process (`mesh`); the
//! in-process part of the hub's hostile-LAN suite is `edge-hub/tests/it/security.rs`.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use taplink_simulations::mesh::{CentralNode, http, start_hub};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every bounded wait in these tests.
const BOUND: Duration = Duration::from_secs(20);

/// A running hub on loopback with its config edited by `f`; its central keeps running as
/// long as the returned node does.
async fn real_hub(
    dir: &Path,
    f: impl FnOnce(&mut taplink_edge_hub::Config),
) -> (CentralNode, taplink_edge_hub::Hub) {
    let central = CentralNode::start(&dir.join("central")).await.unwrap();
    let venue = central.create_venue("The Anchor", "Europe/London").unwrap();
    let hub_dir = dir.join("hub");
    central.enroll(venue, &hub_dir).await.unwrap();
    let mut config = taplink_edge_hub::Config::load(&hub_dir).unwrap();
    f(&mut config);
    config.save().unwrap();
    let hub = start_hub(&hub_dir, None).await.unwrap();
    (central, hub)
}

/// Read until the server closes the connection (or `BOUND` passes: an error).
async fn until_closed(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    tokio::time::timeout(BOUND, stream.read_to_end(&mut got))
        .await
        .expect("the hub never closed the connection")
        .ok();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_header_client_is_cut_off() {
    let tmp = tempfile::tempdir().unwrap();
    let (_central, hub) = real_hub(tmp.path(), |c| c.http_header_timeout_ms = 300).await;
    let addr = hub.http_addr();
    // Half a request head, then nothing: the hub hangs up (within the bound, which is
    // many times the configured timeout; the figure itself is not what is tested).
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    let answer = until_closed(&mut slow).await;
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // A connection that never sends a byte is closed too.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    until_closed(&mut silent).await;
    let metrics = http(addr, "GET", "/metrics", b"").await.unwrap().1;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        !metrics.contains("taplink_hub_http_connections_timed_out_total 0"),
        "{metrics}"
    );
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_flood_does_not_starve_healthz() {
    idle_flood(false).await;
}

/// Over HTTPS the flood's sockets never send a ClientHello: they wait in the handshake,
/// and must be evicted from there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_flood_stuck_in_tls_handshakes_does_not_starve_healthz() {
    idle_flood(true).await;
}

async fn idle_flood(tls: bool) {
    const CAP: usize = 40;
    let tmp = tempfile::tempdir().unwrap();
    let (_central, hub) = real_hub(tmp.path(), |c| {
        c.http_max_connections = CAP;
        c.http_max_connections_per_client = 10;
        c.http_plain = !tls;
    })
    .await;
    let addr = hub.http_addr();
    let api = taplink_simulations::mesh::Target::of(&hub);
    // 3× the total cap of idle sockets (enough that, without eviction working, every slot
    // would be taken), from many loopback addresses (127.0.0.2…), so the
    // per-address cap alone cannot stop them.
    let mut idle = Vec::new();
    for i in 0..3 * CAP {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        let from: SocketAddr = format!("127.0.{}.{}:0", 1 + i / 200, 2 + i % 200)
            .parse()
            .unwrap();
        socket.bind(from).unwrap();
        idle.push(socket.connect(addr).await.unwrap());
    }
    // One address cannot hold more than its share either.
    let mut greedy = Vec::new();
    for _ in 0..15 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.9.9:0".parse().unwrap()).unwrap();
        greedy.push(socket.connect(addr).await.unwrap());
    }
    for round in 0..5 {
        let (status, body) = http(api, "GET", "/healthz", b"").await.unwrap();
        assert_eq!(
            status,
            200,
            "round {round}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let metrics = http(api, "GET", "/metrics", b"").await.unwrap().1;
    let metrics = String::from_utf8_lossy(&metrics).into_owned();
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
    };
    assert!(value("taplink_hub_http_connections_evicted_total ") >= CAP as u64);
    assert!(value("taplink_hub_http_connections_refused_total ") >= 5);
    assert!(value("taplink_hub_http_connections ") <= CAP as u64 + 1);
    drop(idle);
    drop(greedy);
    hub.shutdown().await.unwrap();
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

/// Every directory under `root` 0700 and every file 0600.
fn assert_private(root: &Path) {
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            } else {
                assert_eq!(mode(&path), 0o600, "{}", path.display());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_is_private_after_enroll_and_fixed_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let (central, hub) = real_hub(tmp.path(), |_| {}).await;
    let dir = tmp.path().join("hub");
    assert_private(&dir);
    for name in ["hub.sqlite", "docs.sqlite", "hub.json", "identity.json"] {
        assert!(dir.join(name).exists(), "{name}");
    }
    hub.shutdown().await.unwrap();
    // Someone loosened it: the next start makes it private again.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        dir.join("hub.sqlite"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let hub = start_hub(&dir, None).await.unwrap();
    assert_private(&dir);
    hub.shutdown().await.unwrap();
    drop(central);
}
