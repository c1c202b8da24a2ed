//! Whole Taplink nodes in one process on loopback: a central and any number of enrolled
//! hubs, each with its own data directory. Tests, benchmarks and the demo build on this.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use automerge::AutoCommit;
use taplink_central::Central;
use taplink_central::init::{InitOptions, init};
use taplink_edge_hub::Hub;
use taplink_sync_io::docs::EditError;
use taplink_sync_proto::clock::{Clock as _, SystemClock};
use taplink_sync_proto::doc::{DocOpError, VenueDoc, load_venue};
use taplink_sync_proto::enroll_token::EnrollmentToken;
use taplink_sync_proto::ids::VenueId;
use taplink_sync_proto::wire::DocId;

const LOOPBACK_ANY: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// A running central with its data directory.
#[derive(Debug)]
pub struct CentralNode {
    /// The data directory.
    pub dir: PathBuf,
    /// The server.
    pub central: Central,
    /// The bootstrap admin token `init` made.
    pub admin_token: String,
}

impl CentralNode {
    /// `init` a fresh data directory at `dir` (which must not exist or be empty) and start
    /// central on loopback with ephemeral HTTP and QUIC ports.
    pub async fn start(dir: &Path) -> Result<CentralNode> {
        Self::start_with(dir, |_| {}).await
    }

    /// [`CentralNode::start`] with the config edited by `edit` first.
    pub async fn start_with(
        dir: &Path,
        edit: impl FnOnce(&mut taplink_central::Config),
    ) -> Result<CentralNode> {
        let opts = InitOptions {
            data_dir: dir.to_owned(),
            org_name: "Taplink Sim".into(),
            public_names: vec!["localhost".into(), "127.0.0.1".into()],
        };
        let report = init(&opts, SystemClock.now()).context("central init")?;
        let mut config = taplink_central::Config::load(&report.config_path)?;
        config.http_listen = LOOPBACK_ANY;
        config.quic_listen = LOOPBACK_ANY;
        edit(&mut config);
        let central = Central::bind(config).await.context("central bind")?;
        Ok(CentralNode {
            dir: dir.to_owned(),
            central,
            admin_token: report.admin_token.as_str().to_owned(),
        })
    }

    /// Central's QUIC address.
    pub fn quic_addr(&self) -> SocketAddr {
        self.central.quic_addr()
    }

    /// A request to central's admin API (`/api/v1…`) with the admin token: the status and
    /// the body as JSON (`null` when empty).
    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, serde_json::Value)> {
        let auth = format!("Bearer {}", self.admin_token);
        let body = body.map(ToString::to_string).unwrap_or_default();
        let (status, answer) = http_with(
            self.central.http_addr(),
            method,
            path,
            &[("Authorization", &auth)],
            body.as_bytes(),
        )
        .await?;
        let json = if answer.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&answer).context("central answered something else than JSON")?
        };
        Ok((status, json))
    }

    /// Create a venue (registry entry and document).
    pub fn create_venue(&self, name: &str, timezone: &str) -> Result<VenueId> {
        let state = self.central.state();
        let venue = taplink_central::venue::create_venue(
            &state.registry,
            &state.docs,
            name,
            timezone,
            state.now(),
        )?;
        Ok(venue.id)
    }

    /// A one-time enrollment token for `venue`, valid for an hour.
    pub fn enrollment_token(&self, venue: VenueId) -> Result<EnrollmentToken> {
        let state = self.central.state();
        let code = state.registry.create_enrollment_code(
            venue,
            chrono::TimeDelta::hours(1),
            state.now(),
        )?;
        Ok(EnrollmentToken {
            secret: code.secret,
            central: state.pki.server_fingerprint,
        })
    }

    /// Enroll a lab hub for `venue` in `dir` with this central ([`enroll_hub`]).
    pub async fn enroll(&self, venue: VenueId, dir: &Path) -> Result<()> {
        enroll_hub(dir, self.quic_addr(), &self.enrollment_token(venue)?).await
    }

    /// Apply an edit to a venue document at central, as an admin would.
    pub fn edit_venue(
        &self,
        venue: VenueId,
        f: impl FnOnce(&mut AutoCommit) -> Result<(), DocOpError>,
    ) -> Result<()> {
        self.central
            .state()
            .docs
            .edit(DocId::Venue(venue), f)
            .map_err(edit_error)
    }

    /// The venue document as central has it.
    pub fn venue_doc(&self, venue: VenueId) -> Result<VenueDoc> {
        Ok(self
            .central
            .state()
            .docs
            .read(DocId::Venue(venue), |am| load_venue(am))??)
    }
}

fn edit_error(e: EditError<DocOpError>) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// Enroll a hub in `dir` with the central at `central` and configure it for tests: plain
/// HTTP (a lab: `http_plain`) on an ephemeral loopback port, short reconnect backoff (50 ms
/// to 1 s).
pub async fn enroll_hub(dir: &Path, central: SocketAddr, token: &EnrollmentToken) -> Result<()> {
    taplink_edge_hub::identity::enroll(dir, &central.into(), token).await?;
    let mut config = taplink_edge_hub::Config::load(dir)?;
    config.http_listen = LOOPBACK_ANY;
    config.backoff_min_ms = 50;
    config.backoff_max_ms = 1000;
    // A lab on one machine: tests speak plain HTTP to the hub unless they set up TLS.
    config.http_plain = true;
    config.save()?;
    Ok(())
}

/// Start an enrolled hub from `dir`, optionally reaching central through another address
/// (a WAN proxy).
pub async fn start_hub(dir: &Path, central_via: Option<SocketAddr>) -> Result<Hub> {
    let mut config = taplink_edge_hub::Config::load(dir)?;
    if let Some(addr) = central_via {
        config.central_addr = addr.into();
    }
    Ok(Hub::bind(config).await?)
}

/// A hub's view of its venue document (`None` until it has synced the first time).
pub fn hub_venue_doc(hub: &Hub) -> Option<VenueDoc> {
    let venue = DocId::Venue(hub.ids().venue);
    hub.docs()
        .read(venue, |am| load_venue(am).ok())
        .ok()
        .flatten()
}

/// Apply an edit at a hub, as store staff would.
pub fn edit_at_hub(
    hub: &Hub,
    f: impl FnOnce(&mut AutoCommit) -> Result<(), DocOpError>,
) -> Result<()> {
    hub.docs()
        .edit(DocId::Venue(hub.ids().venue), f)
        .map_err(edit_error)
}

/// Poll `check` every 20 ms until it returns `Some`, for at most `limit`.
pub async fn eventually<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("condition not met within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Now on the system clock, as the PKI (rcgen's `time`) takes it. The mesh runs real TLS,
/// which checks certificates against the real time, so its nodes run on the system clock.
pub fn system_now() -> time::OffsetDateTime {
    taplink_certs::offset_date_time(SystemClock.now())
}

/// A new staff token for the hub whose data directory is `hub_dir`, made as
/// `taplink-hub token create` makes one (the hub may be running).
pub fn staff_token(hub_dir: &Path) -> Result<String> {
    let store =
        taplink_edge_hub::store::Store::open(&hub_dir.join(taplink_edge_hub::store::STORE_FILE))?;
    let name = format!("sim-{}", taplink_sync_proto::ids::KioskId::random());
    Ok(store.create_staff_token(&name, SystemClock.now())?)
}

/// A request to a hub's staff API with staff token `staff`: the status and the body.
pub async fn staff_http(
    hub_api: impl Into<Target>,
    staff: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>)> {
    let auth = format!("Bearer {staff}");
    http_with(hub_api, method, path, &[("Authorization", &auth)], body).await
}

/// Approve a kiosk's pairing `code` at a hub's staff API (`hub_api`) under `name`, as a
/// member of staff with token `staff` would; any answer but 200 is an error carrying the
/// hub's reason.
pub async fn approve_pairing(
    hub_api: impl Into<Target>,
    staff: &str,
    code: &str,
    name: &str,
) -> Result<()> {
    let body = serde_json::json!({ "code": code, "name": name }).to_string();
    let (status, answer) = staff_http(
        hub_api,
        staff,
        "POST",
        "/api/v1/pairings/approve",
        body.as_bytes(),
    )
    .await?;
    anyhow::ensure!(
        status == 200,
        "approving {name}: {status} {}",
        String::from_utf8_lossy(&answer)
    );
    Ok(())
}

/// A kiosk agent's configuration for tests on loopback: its data in `dir`, the hub's API
/// at `hub` (no mDNS), the player on a free port, and short pairing, retry and long-poll
/// timers so that tests wait milliseconds rather than seconds.
pub fn test_kiosk_config(dir: &Path, hub: SocketAddr) -> taplink_kiosk::Config {
    let mut config = taplink_kiosk::Config::new(dir.to_owned());
    config.hub = Some(hub);
    // The lab hubs `enroll_hub` makes speak plain HTTP.
    config.hub_plain_http = true;
    config.player_listen = LOOPBACK_ANY;
    config.pairing_poll_ms = 100;
    config.retry_min_ms = 50;
    config.retry_max_ms = 500;
    config.manifest_wait_s = 5;
    config
}

/// Where a request goes: an address, over plain HTTP, or over HTTPS to the hub whose
/// certificate has the fingerprint `tls` (as a kiosk pins it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The address.
    pub addr: SocketAddr,
    /// HTTPS with this pinned certificate, or plain HTTP.
    pub tls: Option<taplink_certs::Fingerprint>,
}

impl Target {
    /// A hub's LAN API, as it serves it (HTTPS unless it is a lab hub).
    pub fn of(hub: &Hub) -> Target {
        Target {
            addr: hub.http_addr(),
            tls: hub
                .url()
                .starts_with("https")
                .then(|| hub.fingerprint())
                .flatten(),
        }
    }

    /// The hub whose data directory is `dir`, serving HTTPS at `addr`.
    pub fn https(addr: SocketAddr, hub_dir: &Path) -> Result<Target> {
        let identity = taplink_edge_hub::identity::load(hub_dir)?;
        Ok(Target {
            addr,
            tls: Some(
                identity
                    .fingerprint()
                    .context("the hub has no certificate")?,
            ),
        })
    }
}

impl From<SocketAddr> for Target {
    fn from(addr: SocketAddr) -> Self {
        Target { addr, tls: None }
    }
}

/// A byte stream a request can be made on: TCP, or TLS over TCP.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// A minimal HTTP/1.1 client for talking to nodes on loopback: one request per connection
/// (`Connection: close`), the whole response read (at most 256 MiB). Returns the status
/// and the body.
pub async fn http(
    addr: impl Into<Target>,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>)> {
    http_with(addr, method, path, &[], body).await
}

/// [`http`] with extra request headers (name, value).
pub async fn http_with(
    target: impl Into<Target>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let target = target.into();
    let addr = target.addr;
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut stream: Box<dyn Stream> = match target.tls {
        None => Box::new(tcp),
        Some(fp) => {
            let tls = taplink_certs::tls::lan_client_config(taplink_certs::tls::HubPin::Exact(fp))?;
            let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls));
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            Box::new(connector.connect(name, tcp).await?)
        }
    };
    let mut extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    {
        extra.push_str("Content-Type: application/json\r\n");
    }
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut response = Vec::new();
    stream
        .take(256 * 1024 * 1024)
        .read_to_end(&mut response)
        .await?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("response without a header end")?;
    let head = std::str::from_utf8(&response[..split]).context("response head is not UTF-8")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("response without a status")?;
    let mut body = response[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body)?;
    }
    Ok((status, body))
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("bad chunk header")?;
        let size = usize::from_str_radix(std::str::from_utf8(&data[..line_end])?.trim(), 16)?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        anyhow::ensure!(data.len() >= size + 2, "truncated chunk");
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}
