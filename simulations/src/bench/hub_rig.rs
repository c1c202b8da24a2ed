//! A venue for the LAN benchmarks: a central in this process, and the real `taplink-hub`
//! binary as a child process, enrolled, synced, its venue furnished with the demo's
//! content, with as many kiosks paired through its HTTP API as a bench needs.
//!
//! The hub runs as its own process so that its memory can be read from `/proc` and so that
//! it gets its own runtime, as in a venue; central is idle while a bench measures.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use taplink_sync_proto::ids::{KioskId, PlaylistId, VenueId};

use crate::bench::procs::{Proc, binary, free_addr, until};
use crate::demo::furnish;
use crate::mesh::{
    CentralNode, Target, approve_pairing, enroll_hub, http, staff_http, staff_token,
};

/// How long setting up may wait for the hub.
const SETUP: Duration = Duration::from_secs(60);

/// A paired kiosk's credentials.
#[derive(Debug, Clone)]
pub struct Paired {
    /// The kiosk.
    pub kiosk: KioskId,
    /// Its device token.
    pub token: String,
}

/// Central, one venue and its hub process.
#[derive(Debug)]
pub struct HubRig {
    /// Where the hub serves its LAN API.
    pub addr: SocketAddr,
    /// The same, with the hub's certificate pin when it serves HTTPS.
    pub target: Target,
    /// The hub's data directory (its certificate and key are `hub.pem` and `hub.key`).
    pub hub_dir: std::path::PathBuf,
    /// A staff token of the hub.
    pub staff: String,
    /// The hub process.
    pub hub: Proc,
    /// The venue.
    pub venue: VenueId,
    /// Central, in this process.
    pub central: CentralNode,
    /// Everything on disk (the hub's log is `hub.log` in it).
    pub dir: tempfile::TempDir,
    /// The WAN between the hub and central, when the rig was started behind one
    /// ([`HubRig::start_behind_wan`]): cut it to take the venue offline.
    pub wan: Option<crate::wan_proxy::WanProxy>,
}

impl HubRig {
    /// Start central, furnish a venue, enroll and start its hub (plain HTTP, a lab), and
    /// wait for its first sync.
    pub async fn start() -> Result<HubRig> {
        Self::start_with(false).await
    }

    /// [`HubRig::start`], the hub serving HTTPS (as in a venue) when `tls`. Every simulated
    /// kiosk connects from 127.0.0.1, where a venue's kiosks each have an address of their
    /// own: the per-address connection cap is lifted to the total so that it does not count
    /// them as one client.
    pub async fn start_with(tls: bool) -> Result<HubRig> {
        Self::start_configured(tls, |config| {
            config.http_max_connections_per_client = config.http_max_connections;
        })
        .await
    }

    /// [`HubRig::start`] with the hub's config edited by `edit` (after the rig's own
    /// settings).
    pub async fn start_configured(
        tls: bool,
        edit: impl FnOnce(&mut taplink_edge_hub::Config),
    ) -> Result<HubRig> {
        Self::start_full(tls, false, edit).await
    }

    /// [`HubRig::start`] with the hub reaching central through a WAN proxy on loopback
    /// (`wan`), which the caller may cut.
    pub async fn start_behind_wan() -> Result<HubRig> {
        Self::start_full(false, true, |config| {
            config.http_max_connections_per_client = config.http_max_connections;
        })
        .await
    }

    async fn start_full(
        tls: bool,
        behind_wan: bool,
        edit: impl FnOnce(&mut taplink_edge_hub::Config),
    ) -> Result<HubRig> {
        let dir = tempfile::Builder::new()
            .prefix("taplink-bench-")
            .tempdir()?;
        let central = CentralNode::start(&dir.path().join("central")).await?;
        let venue = central.create_venue("Bench venue", "Europe/London")?;
        furnish(&central, venue, "Bench venue", "#0b3d91")?;
        let hub_dir = dir.path().join("hub");
        enroll_hub(
            &hub_dir,
            central.quic_addr(),
            &central.enrollment_token(venue)?,
        )
        .await?;
        let addr = free_addr()?;
        let mut config = taplink_edge_hub::Config::load(&hub_dir)?;
        config.http_listen = addr;
        config.mdns = false;
        config.http_plain = !tls;
        let wan = if behind_wan {
            let proxy =
                crate::wan_proxy::WanProxy::start("127.0.0.1:0".parse()?, central.quic_addr(), 1)
                    .await?;
            config.central_addr = proxy.local_addr().to_string().parse()?;
            Some(proxy)
        } else {
            None
        };
        edit(&mut config);
        config.save()?;
        let target = if tls {
            Target::https(addr, &hub_dir)?
        } else {
            Target::from(addr)
        };
        let staff = staff_token(&hub_dir)?;
        let data = hub_dir.display().to_string();
        let hub = Proc::spawn(
            &binary("taplink-hub")?,
            &["run", "--data", &data],
            &dir.path().join("hub.log"),
        )?;
        let mut rig = HubRig {
            addr,
            target,
            hub_dir,
            staff,
            hub,
            venue,
            central,
            dir,
            wan,
        };
        until(SETUP, "the hub's first sync with central", async || {
            let (status, body) = http(rig.target, "GET", "/healthz", b"").await.ok()?;
            let health: Value = serde_json::from_slice(&body).ok()?;
            (status == 200 && health["synced"] == true).then_some(())
        })
        .await?;
        rig.hub.check_running()?;
        Ok(rig)
    }

    /// Pair `n` kiosks through the hub's API, as kiosks and staff would: ask for a code,
    /// approve it, collect the token.
    pub async fn pair(&self, n: usize) -> Result<Vec<Paired>> {
        let mut paired = Vec::with_capacity(n);
        for i in 0..n {
            let (status, body) = http(
                self.target,
                "POST",
                "/api/v1/pairings",
                br#"{"device":"bench"}"#,
            )
            .await?;
            ensure!(status == 201, "pairing: {}", String::from_utf8_lossy(&body));
            let pairing: Value = serde_json::from_slice(&body)?;
            let code = pairing["code"].as_str().context("pairing code")?;
            self.approve(code, &format!("Bench {}", i + 1)).await?;
            let id = pairing["pairing"].as_str().context("pairing id")?;
            let (status, body) =
                http(self.target, "GET", &format!("/api/v1/pairings/{id}"), b"").await?;
            ensure!(status == 200, "collect: {}", String::from_utf8_lossy(&body));
            let answer: Value = serde_json::from_slice(&body)?;
            ensure!(answer["status"] == "approved", "collect: {answer}");
            paired.push(Paired {
                kiosk: answer["kiosk"].as_str().context("kiosk id")?.parse()?,
                token: answer["token"].as_str().context("token")?.to_owned(),
            });
        }
        Ok(paired)
    }

    /// Approve pairing `code` as staff would, naming the kiosk `name`.
    pub async fn approve(&self, code: &str, name: &str) -> Result<()> {
        approve_pairing(self.target, &self.staff, code, name).await
    }

    /// The venue's default playlist and its first item, from the hub's document.
    pub async fn first_item(&self) -> Result<(PlaylistId, String)> {
        let (status, body) =
            staff_http(self.target, &self.staff, "GET", "/api/v1/venue", b"").await?;
        ensure!(status == 200, "venue: {}", String::from_utf8_lossy(&body));
        let doc: Value = serde_json::from_slice(&body)?;
        let playlist = doc["settings"]["default_playlist"]
            .as_str()
            .context("no default playlist")?;
        let item = doc["playlists"][playlist]["items"]
            .as_object()
            .and_then(|items| items.keys().next().cloned())
            .context("no item in the default playlist")?;
        Ok((playlist.parse()?, item))
    }

    /// Apply an operation on the hub, as staff would (`POST /api/v1/venue/ops`).
    pub async fn op(&self, op: &Value) -> Result<()> {
        let (status, body) = staff_http(
            self.target,
            &self.staff,
            "POST",
            "/api/v1/venue/ops",
            op.to_string().as_bytes(),
        )
        .await?;
        ensure!(status == 200, "op: {}", String::from_utf8_lossy(&body));
        Ok(())
    }
}
