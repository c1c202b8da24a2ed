//! The kiosk agent's configuration: `DATA/kiosk.json` when present (every field optional),
//! otherwise defaults that work for a first run; `taplink-kiosk run` flags override it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
pub use taplink_sync_io::node::LogFormat;
use taplink_sync_proto::kiosk_code::{KioskCode, ParseKioskCodeError};

/// Name of the optional config file inside the data directory.
pub const CONFIG_FILE: &str = "kiosk.json";

/// Longest device name the hub accepts in a pairing request.
pub const MAX_DEVICE_NAME: usize = 100;

/// Longest long-poll the hub grants (`?wait=`), in seconds.
pub const MAX_MANIFEST_WAIT_S: u64 = 60;

/// Everything `taplink-kiosk run` needs. Every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The data directory (`kiosk.sqlite`, `media/`); not stored in the file.
    #[serde(skip)]
    pub data_dir: PathBuf,
    /// The hub's HTTP address. When set, mDNS discovery is skipped (and the kiosk cannot
    /// learn its venue from the hub's TXT record).
    pub hub: Option<SocketAddr>,
    /// The fingerprint (`sha256:<hex>`, as `taplink-hub` prints it and advertises it by
    /// mDNS) of the hub certificate to accept for `hub`. Without it, a kiosk given `hub`
    /// trusts the certificate it sees first and pins it when it pairs (the log says so).
    /// Found by mDNS, the hub's advertised fingerprint is used. Once paired, the kiosk
    /// accepts only the hub certificate it paired with.
    pub hub_fingerprint: Option<String>,
    /// Talk plain HTTP to the hub (a hub with `http_plain`): only for a lab, since a
    /// device token sent in clear on a venue's network can be sniffed and replayed.
    pub hub_plain_http: bool,
    /// Browse for the hub only on this network interface (e.g. `lo` for a demo on one
    /// machine). `None`: every interface the system has.
    pub mdns_interface: Option<String>,
    /// Start the mDNS browser inside this network namespace (`/run/netns/<name>`). For
    /// several nodes on one machine (the demo, tests): mDNS then never touches the
    /// machine's real interfaces. Leave unset on a real kiosk.
    pub mdns_netns: Option<String>,
    /// Where the player page, its media, `/healthz` and `/metrics` are served. Keep it on
    /// loopback: the page and its state are for the local browser only.
    pub player_listen: SocketAddr,
    /// Disk space the media cache may use, in bytes. Media that the current manifest needs
    /// is never evicted, even when it alone exceeds this.
    pub cache_budget_bytes: u64,
    /// The name this kiosk gives the hub when pairing (at most 100 characters), shown to
    /// staff next to the code. Default: the host name.
    pub device_name: String,
    /// A kiosk code from central (`taplink-central kiosk-code create`, 16 characters such
    /// as `7KQ4-MP2X-9RTA-B3HZ`): the hub approves the pairing at once, without staff. If
    /// the hub refuses it (wrong, revoked, expired, already used), the kiosk says why on
    /// its screen and shows a code for staff to approve instead. Used only while the kiosk
    /// has no device token. Default: none.
    pub pair_code: Option<String>,
    /// How long each manifest long-poll asks the hub to wait, in seconds (1–60).
    pub manifest_wait_s: u64,
    /// Interval between heartbeats, in seconds.
    pub heartbeat_interval_s: u64,
    /// Interval between pairing status polls, in milliseconds.
    pub pairing_poll_ms: u64,
    /// How long one mDNS browse waits for a hub before starting over, in milliseconds.
    pub discovery_timeout_ms: u64,
    /// First retry delay after the hub failed to answer, in milliseconds.
    pub retry_min_ms: u64,
    /// Cap of the exponential retry delay, in milliseconds.
    pub retry_max_ms: u64,
    /// Consecutive failed requests after which the hub counts as gone and is searched for
    /// again (when it was found by mDNS).
    pub hub_lost_after: u32,
    /// Log format.
    pub log_format: LogFormat,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::new(),
            hub: None,
            hub_fingerprint: None,
            hub_plain_http: false,
            mdns_interface: None,
            mdns_netns: None,
            player_listen: SocketAddr::from(([127, 0, 0, 1], 8680)),
            cache_budget_bytes: 8 * 1024 * 1024 * 1024,
            device_name: default_device_name(),
            pair_code: None,
            manifest_wait_s: 30,
            heartbeat_interval_s: 60,
            pairing_poll_ms: 2_000,
            discovery_timeout_ms: 10_000,
            retry_min_ms: 500,
            retry_max_ms: 30_000,
            hub_lost_after: 3,
            log_format: LogFormat::Text,
        }
    }
}

/// The host name, or `kiosk` where none can be read.
fn default_device_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().chars().take(MAX_DEVICE_NAME).collect::<String>())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "kiosk".into())
}

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file exists but could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid JSON of the expected shape.
    #[error("{path} is not a valid kiosk config: {source}")]
    Parse {
        /// Which file.
        path: PathBuf,
        /// What serde said (it names the field).
        source: serde_json::Error,
    },
    /// `pair_code` is not a kiosk code (its value is not repeated: it is a secret).
    #[error("config field pair_code: {reason}")]
    InvalidPairCode {
        /// Why.
        reason: ParseKioskCodeError,
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
    /// The defaults, with `data_dir` set.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            ..Self::default()
        }
    }

    /// Read `DATA/kiosk.json` if it exists, else the defaults; validated either way.
    pub fn load(data_dir: &Path) -> Result<Self, ConfigError> {
        let path = data_dir.join(CONFIG_FILE);
        let mut config = match std::fs::read(&path) {
            Ok(text) => serde_json::from_slice::<Config>(&text)
                .map_err(|source| ConfigError::Parse { path, source })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::default(),
            Err(source) => return Err(ConfigError::Io { path, source }),
        };
        config.data_dir = data_dir.to_owned();
        config.validate()?;
        Ok(config)
    }

    /// Check value ranges; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, value: String, reason| {
            Err(ConfigError::Invalid {
                field,
                value,
                reason,
            })
        };
        let name_len = self.device_name.chars().count();
        if name_len == 0 || name_len > MAX_DEVICE_NAME {
            return invalid(
                "device_name",
                format!("{:?}", self.device_name),
                "must be 1 to 100 characters",
            );
        }
        if let Some(code) = &self.pair_code
            && let Err(e) = code.parse::<KioskCode>()
        {
            // The code is a secret; a near-miss of it is nearly one too.
            return Err(ConfigError::InvalidPairCode { reason: e });
        }
        if let Some(fp) = &self.hub_fingerprint
            && fp.parse::<taplink_certs::Fingerprint>().is_err()
        {
            return invalid(
                "hub_fingerprint",
                format!("{fp:?}"),
                "must be sha256: followed by 64 hex digits, as the hub prints it",
            );
        }
        if !(1..=MAX_MANIFEST_WAIT_S).contains(&self.manifest_wait_s) {
            return invalid(
                "manifest_wait_s",
                self.manifest_wait_s.to_string(),
                "must be 1 to 60 (the hub's longest wait)",
            );
        }
        for (field, value) in [
            ("heartbeat_interval_s", self.heartbeat_interval_s),
            ("pairing_poll_ms", self.pairing_poll_ms),
            ("discovery_timeout_ms", self.discovery_timeout_ms),
            ("retry_min_ms", self.retry_min_ms),
            ("cache_budget_bytes", self.cache_budget_bytes),
        ] {
            if value == 0 {
                return invalid(field, "0".into(), "must be at least 1");
            }
        }
        if self.retry_max_ms < self.retry_min_ms {
            return invalid(
                "retry_max_ms",
                self.retry_max_ms.to_string(),
                "must be at least retry_min_ms",
            );
        }
        if self.hub_lost_after == 0 {
            return invalid("hub_lost_after", "0".into(), "must be at least 1");
        }
        if self.mdns_interface.as_deref() == Some("") {
            return invalid(
                "mdns_interface",
                "\"\"".into(),
                "must name an interface, or be left out",
            );
        }
        Ok(())
    }

    /// The retry delay bounds.
    pub fn retry(&self) -> (Duration, Duration) {
        (
            Duration::from_millis(self.retry_min_ms),
            Duration::from_millis(self.retry_max_ms),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_gives_valid_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::load(dir.path()).unwrap();
        assert_eq!(config.data_dir, dir.path());
        assert_eq!(config.player_listen.to_string(), "127.0.0.1:8680");
        assert_eq!(config.cache_budget_bytes, 8 << 30);
        assert_eq!(config.hub, None);
        assert!(!config.device_name.is_empty());
    }

    #[test]
    fn a_partial_file_overrides_only_its_fields() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            r#"{"hub": "10.0.0.2:8580", "mdns_interface": "lo", "log_format": "json"}"#,
        )
        .unwrap();
        let config = Config::load(dir.path()).unwrap();
        assert_eq!(config.hub, Some("10.0.0.2:8580".parse().unwrap()));
        assert_eq!(config.mdns_interface.as_deref(), Some("lo"));
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.manifest_wait_s, 30);
    }

    #[test]
    fn unknown_fields_and_bad_values_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONFIG_FILE);
        std::fs::write(&path, r#"{"cache_budget": 5}"#).unwrap();
        let err = Config::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("cache_budget"), "{err}");

        std::fs::write(&path, r#"{"pair_code": "ABCD-EFGH-JKMN-PQR"}"#).unwrap();
        let err = Config::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("pair_code") && !err.contains("ABCD"), "{err}");
        std::fs::write(&path, r#"{"pair_code": "7kq4 mp2x 9rta b3hz"}"#).unwrap();
        assert!(Config::load(dir.path()).unwrap().pair_code.is_some());

        for (json, field) in [
            (r#"{"manifest_wait_s": 61}"#, "manifest_wait_s"),
            (r#"{"device_name": ""}"#, "device_name"),
            (r#"{"retry_min_ms": 10, "retry_max_ms": 5}"#, "retry_max_ms"),
            (r#"{"cache_budget_bytes": 0}"#, "cache_budget_bytes"),
            (r#"{"mdns_interface": ""}"#, "mdns_interface"),
        ] {
            std::fs::write(&path, json).unwrap();
            match Config::load(dir.path()) {
                Err(ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field, "{json}"),
                other => panic!("{json}: expected Invalid({field}), got {other:?}"),
            }
        }
    }
}
