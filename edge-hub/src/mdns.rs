//! mDNS (DNS-SD) advertisement of the hub's LAN API, so kiosks find their hub without
//! configuration: service `_taplink._tcp.local.`, instance `taplink-hub-<hub id>`, the HTTP
//! port, and TXT records `venue`, `hub`, `api` and `fp` (docs/kiosk-api.md).
//!
//! mdns-sd runs its own thread. It opens its sockets on every interface when it starts;
//! when an interface is configured, every other one is disabled before anything is
//! registered, so no announcement or answer is ever sent elsewhere.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use mdns_sd::{IfKind, ServiceDaemon, ServiceInfo};
use taplink_certs::Fingerprint;
use taplink_sync_proto::ids::{HubId, VenueId};
use tracing::{debug, info};

/// The DNS-SD service type kiosks browse for.
pub const SERVICE_TYPE: &str = "_taplink._tcp.local.";

/// The `api` TXT value: the version of docs/kiosk-api.md this hub serves.
pub const API_VERSION: &str = "1";

/// How long shutdown waits for the daemon to send its goodbye packets and stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// What the hub advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertisement {
    /// The hub.
    pub hub: HubId,
    /// Its venue.
    pub venue: VenueId,
    /// The HTTP port of the LAN API.
    pub port: u16,
    /// The fingerprint of the hub's certificate (a kiosk may pin it later).
    pub fingerprint: Fingerprint,
    /// Advertise only on this interface (e.g. `eth0`, or `lo` for demos and tests);
    /// `None`: on every interface.
    pub interface: Option<String>,
    /// The address to advertise; `None`: the addresses of the advertised interfaces, kept
    /// current as they change (for a hub listening on every address).
    pub addr: Option<IpAddr>,
}

impl Advertisement {
    /// The DNS-SD instance name, `taplink-hub-<hub id>`.
    pub fn instance_name(&self) -> String {
        format!("taplink-hub-{}", self.hub)
    }

    /// The full service instance name, `taplink-hub-<hub id>._taplink._tcp.local.`.
    pub fn fullname(&self) -> String {
        format!("{}.{SERVICE_TYPE}", self.instance_name())
    }

    fn service_info(&self) -> Result<ServiceInfo, MdnsError> {
        let properties = [
            ("venue", self.venue.to_string()),
            ("hub", self.hub.to_string()),
            ("api", API_VERSION.to_owned()),
            ("fp", self.fingerprint.to_string()),
        ];
        // Ids are DNS-safe base32, so the host name is a valid label.
        let host = format!("{}.local.", self.instance_name());
        let info = match self.addr {
            Some(addr) => ServiceInfo::new(
                SERVICE_TYPE,
                &self.instance_name(),
                &host,
                addr,
                self.port,
                &properties[..],
            )?,
            None => ServiceInfo::new(
                SERVICE_TYPE,
                &self.instance_name(),
                &host,
                (),
                self.port,
                &properties[..],
            )?
            .enable_addr_auto(),
        };
        let mut info = info;
        if let Some(name) = &self.interface {
            info.set_interfaces(vec![IfKind::Name(name.clone())]);
        }
        Ok(info)
    }
}

/// Why the advertisement could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MdnsError {
    /// mdns-sd refused (no thread, bad name, full command queue).
    #[error("mDNS: {0}")]
    Daemon(#[from] mdns_sd::Error),
    /// The configured network namespace could not be used.
    #[error("mDNS namespace: {0}")]
    Netns(String),
}

/// A running advertisement; [`Advertiser::shutdown`] withdraws it (goodbye packets, so
/// browsers forget the hub at once). Dropping it stops the daemon without waiting.
pub struct Advertiser {
    daemon: Option<ServiceDaemon>,
    fullname: String,
}

impl fmt::Debug for Advertiser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Advertiser")
            .field("fullname", &self.fullname)
            .field("running", &self.daemon.is_some())
            .finish()
    }
}

/// Make `daemon` use only the interface `name`.
pub fn restrict_to_interface(daemon: &ServiceDaemon, name: &str) -> Result<(), MdnsError> {
    // The daemon applies commands in order: every interface is dropped, then the one is
    // added back, before any later command (a registration or browse) runs.
    daemon.disable_interface(IfKind::All)?;
    daemon.enable_interface(IfKind::Name(name.to_owned()))?;
    Ok(())
}

impl Advertiser {
    /// Start advertising `ad`.
    pub fn start(ad: &Advertisement) -> Result<Self, MdnsError> {
        Self::start_in(ad, None)
    }

    /// Start advertising `ad` with a daemon started inside network namespace `netns`
    /// (see `taplink_sync_io::netns`), or in the hub's own namespace.
    pub fn start_in(ad: &Advertisement, netns: Option<&str>) -> Result<Self, MdnsError> {
        let info = ad.service_info()?;
        let daemon = match netns {
            None => ServiceDaemon::new()?,
            Some(name) => taplink_sync_io::netns::run_in_netns(name, ServiceDaemon::new)
                .map_err(|e| MdnsError::Netns(e.to_string()))??,
        };
        let mut advertiser = Self {
            daemon: Some(daemon.clone()),
            fullname: info.get_fullname().to_owned(),
        };
        if let Some(name) = &ad.interface {
            if !std::path::Path::new("/sys/class/net").join(name).exists() {
                tracing::warn!(interface = %name, "mDNS interface not found; nothing will be advertised until it appears");
            }
            if let Err(e) = restrict_to_interface(&daemon, name) {
                advertiser.stop_now();
                return Err(e);
            }
        }
        if let Err(e) = daemon.register(info) {
            advertiser.stop_now();
            return Err(e.into());
        }
        info!(
            name = %advertiser.fullname,
            port = ad.port,
            interface = ad.interface.as_deref().unwrap_or("all"),
            addr = ?ad.addr,
            "advertising the hub by mDNS"
        );
        Ok(advertiser)
    }

    /// The advertised instance's full name.
    pub fn fullname(&self) -> &str {
        &self.fullname
    }

    /// Withdraw the advertisement and stop the daemon, waiting (bounded) for both.
    pub async fn shutdown(mut self) {
        let Some(daemon) = self.daemon.take() else {
            return;
        };
        if let Ok(done) = daemon.unregister(&self.fullname) {
            let unregistered = tokio::time::timeout(STOP_TIMEOUT, done.recv_async()).await;
            debug!(?unregistered, "mDNS advertisement withdrawn");
        }
        if let Ok(done) = daemon.shutdown() {
            let _ = tokio::time::timeout(STOP_TIMEOUT, done.recv_async()).await;
        }
    }

    fn stop_now(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            let _ = daemon.unregister(&self.fullname);
            let _ = daemon.shutdown();
        }
    }
}

impl Drop for Advertiser {
    fn drop(&mut self) {
        self.stop_now();
    }
}
