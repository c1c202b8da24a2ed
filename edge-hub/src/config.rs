//! The hub's configuration: `DATA/hub.json`, written by `taplink-hub enroll` and editable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use taplink_sync_io::net::PeerAddr;

/// Name of the config file inside the data directory.
pub const CONFIG_FILE: &str = "hub.json";

/// Everything `taplink-hub run` needs besides the files enrollment wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The data directory (keys, certificates, databases, media); not stored in the file.
    #[serde(skip)]
    pub data_dir: PathBuf,
    /// Central's QUIC address as given at enrollment, `HOST:PORT` (a DNS name is resolved
    /// again at every reconnect).
    pub central_addr: PeerAddr,
    /// The name central's certificate carries for that address (checked by TLS). Default:
    /// the host of `central_addr` when it is a DNS name, else `localhost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub central_name: Option<String>,
    /// Where the hub's local HTTP API listens (staff UI and kiosks; LAN address in a venue).
    #[serde(default = "default_http_listen")]
    pub http_listen: SocketAddr,
    /// First reconnect delay after the WAN link fails, in milliseconds.
    #[serde(default = "default_backoff_min_ms")]
    pub backoff_min_ms: u64,
    /// Cap of the exponential reconnect delay, in milliseconds.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// Start the mDNS daemon inside this network namespace (`/run/netns/<name>`) instead of
    /// the hub's own. For several nodes on one machine (the demo, tests): mDNS then never
    /// touches the machine's real interfaces. Leave unset in a venue.
    #[serde(default)]
    pub mdns_netns: Option<String>,
    /// Largest media upload the local API accepts, in bytes.
    #[serde(default = "default_max_upload")]
    pub max_upload_bytes: u64,
    /// Advertise the LAN API by mDNS (`_taplink._tcp`) so kiosks find the hub by
    /// themselves. Nothing is advertised while `http_listen` is a loopback address and
    /// `mdns_interface` is unset (the default config), since no kiosk could reach it.
    #[serde(default = "default_mdns")]
    pub mdns: bool,
    /// The network interface to advertise on (e.g. `eth0`; `lo` for a demo on one
    /// machine); every other interface is left alone. `None`: every interface.
    #[serde(default)]
    pub mdns_interface: Option<String>,
    /// Most bytes of media (the venue's and the org library's) the hub stores; an upload
    /// that would pass it is refused with `507`. Size it below the disk's free space.
    #[serde(default = "default_media_quota")]
    pub media_quota_bytes: u64,
    /// Names the LAN API answers to besides IP addresses and `localhost` (e.g.
    /// `hub.bar.example`); a request naming any other `Host` is refused (DNS rebinding).
    #[serde(default)]
    pub http_hosts: Vec<String>,
    /// Most HTTP connections open at once (kept below the process's file-descriptor
    /// limit, less 256 for files and sockets).
    #[serde(default = "default_max_connections")]
    pub http_max_connections: usize,
    /// Most HTTP connections open at once from one address.
    #[serde(default = "default_max_per_client")]
    pub http_max_connections_per_client: usize,
    /// Serve the LAN API as plain HTTP instead of HTTPS. Only for a lab or a test rig on
    /// one machine: on a venue's network a device token sent in clear can be sniffed and
    /// replayed. Kiosks must then be configured for it too (`hub_plain_http`).
    #[serde(default)]
    pub http_plain: bool,
    /// Longest wait for a request's head (and a TLS handshake), in milliseconds; a client
    /// that trickles its head slower is cut off.
    #[serde(default = "default_header_timeout_ms")]
    pub http_header_timeout_ms: u64,
    /// A connection with no request in flight that moves no byte this long is closed, in
    /// milliseconds.
    #[serde(default = "default_idle_timeout_ms")]
    pub http_idle_timeout_ms: u64,
    /// How long after its last contact with central the venue's roster may still be used
    /// to sign people in, in seconds; absent (the default): for as long as the hub is
    /// offline — the venue keeps working, at the cost that a person disabled at central
    /// can still sign in at a hub that has not heard from central since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roster_valid_offline_s: Option<u64>,
}

fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8580))
}
fn default_backoff_min_ms() -> u64 {
    500
}
fn default_backoff_max_ms() -> u64 {
    60_000
}
fn default_max_upload() -> u64 {
    512 * 1024 * 1024
}
fn default_mdns() -> bool {
    true
}
fn default_media_quota() -> u64 {
    16 * 1024 * 1024 * 1024
}
fn default_max_connections() -> usize {
    taplink_sync_io::web::listener::Limits::default().max_connections
}
fn default_max_per_client() -> usize {
    taplink_sync_io::web::listener::Limits::default().max_per_client
}
fn default_header_timeout_ms() -> u64 {
    10_000
}
fn default_idle_timeout_ms() -> u64 {
    30_000
}

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What we tried.
        action: &'static str,
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid JSON of the expected shape.
    #[error("{path} is not a valid hub config: {source}")]
    Parse {
        /// Which file.
        path: PathBuf,
        /// What serde said (names the field).
        source: serde_json::Error,
    },
    /// A value is out of range.
    #[error("config field {field} = {value}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        reason: &'static str,
    },
}

impl Config {
    /// A configuration for a hub enrolled with central at `central_addr`.
    pub fn new(data_dir: PathBuf, central_addr: PeerAddr) -> Self {
        Self {
            data_dir,
            central_addr,
            central_name: None,
            http_listen: default_http_listen(),
            backoff_min_ms: default_backoff_min_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            mdns_netns: None,
            max_upload_bytes: default_max_upload(),
            mdns: default_mdns(),
            mdns_interface: None,
            media_quota_bytes: default_media_quota(),
            http_hosts: Vec::new(),
            http_max_connections: default_max_connections(),
            http_max_connections_per_client: default_max_per_client(),
            http_plain: false,
            http_header_timeout_ms: default_header_timeout_ms(),
            http_idle_timeout_ms: default_idle_timeout_ms(),
            roster_valid_offline_s: None,
        }
    }

    /// Read `DATA/hub.json`.
    pub fn load(data_dir: &Path) -> Result<Self, ConfigError> {
        let path = data_dir.join(CONFIG_FILE);
        let text = std::fs::read(&path).map_err(|source| ConfigError::Io {
            action: "cannot read",
            path: path.clone(),
            source,
        })?;
        let mut config: Config =
            serde_json::from_slice(&text).map_err(|source| ConfigError::Parse { path, source })?;
        config.data_dir = data_dir.to_owned();
        config.validate()?;
        Ok(config)
    }

    /// Write `DATA/hub.json`.
    pub fn save(&self) -> Result<(), ConfigError> {
        let path = self.data_dir.join(CONFIG_FILE);
        let text = serde_json::to_vec_pretty(self).map_err(|source| ConfigError::Parse {
            path: path.clone(),
            source,
        })?;
        taplink_sync_io::private::write_file(&path, &text).map_err(|source| ConfigError::Io {
            action: "cannot write",
            path,
            source,
        })
    }

    /// Check value ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.backoff_min_ms == 0 {
            return Err(ConfigError::Invalid {
                field: "backoff_min_ms",
                value: "0".into(),
                reason: "must be at least 1",
            });
        }
        if self.backoff_max_ms < self.backoff_min_ms {
            return Err(ConfigError::Invalid {
                field: "backoff_max_ms",
                value: self.backoff_max_ms.to_string(),
                reason: "must be at least backoff_min_ms",
            });
        }
        if self
            .mdns_interface
            .as_deref()
            .is_some_and(|i| i.trim().is_empty())
        {
            return Err(ConfigError::Invalid {
                field: "mdns_interface",
                value: String::new(),
                reason: "must name a network interface (e.g. \"eth0\") or be null for all",
            });
        }
        if self.http_header_timeout_ms < 100 || self.http_idle_timeout_ms < 100 {
            return Err(ConfigError::Invalid {
                field: "http_header_timeout_ms",
                value: format!(
                    "{}/{}",
                    self.http_header_timeout_ms, self.http_idle_timeout_ms
                ),
                reason: "http_header_timeout_ms and http_idle_timeout_ms must be at least 100",
            });
        }
        if self.http_max_connections == 0 || self.http_max_connections_per_client == 0 {
            return Err(ConfigError::Invalid {
                field: "http_max_connections",
                value: "0".into(),
                reason: "http_max_connections and http_max_connections_per_client must be at least 1",
            });
        }
        if self.central_name.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::Invalid {
                field: "central_name",
                value: String::new(),
                reason: "must name central's certificate",
            });
        }
        Ok(())
    }

    /// The name TLS checks on central's certificate: `central_name`, else the DNS name in
    /// `central_addr`, else `localhost` (central's default certificate names it).
    pub fn central_name(&self) -> String {
        match (&self.central_name, self.central_addr.ip()) {
            (Some(name), _) => name.clone(),
            (None, None) => self.central_addr.host().to_owned(),
            (None, Some(_)) => "localhost".to_owned(),
        }
    }

    /// The HTTP listener's limits.
    pub fn listener_limits(&self) -> taplink_sync_io::web::listener::Limits {
        taplink_sync_io::web::listener::Limits {
            max_connections: self.http_max_connections,
            max_per_client: self.http_max_connections_per_client,
            header_timeout: Duration::from_millis(self.http_header_timeout_ms),
            idle_timeout: Duration::from_millis(self.http_idle_timeout_ms),
        }
    }

    /// The reconnect backoff bounds.
    pub fn backoff(&self) -> (Duration, Duration) {
        (
            Duration::from_millis(self.backoff_min_ms),
            Duration::from_millis(self.backoff_max_ms),
        )
    }
}
