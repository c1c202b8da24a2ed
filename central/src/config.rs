//! Central's configuration (`config.json` in the data directory) and the data directory's layout.
//!
//! The file is JSON (no TOML parser is linked). Every field is optional and has a default
//! that works for a first run on one machine; unknown fields are refused so a misspelt
//! setting is reported instead of silently ignored. Errors name the field and the value.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::TimeDelta;
use serde_json::{Map, Value};
use taplink_certs::ServerSan;
pub use taplink_sync_io::node::LogFormat;
use taplink_sync_io::node::ParseLogFormatError;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("could not read the config file {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The operating system's report.
        #[source]
        source: std::io::Error,
    },
    /// The text is not a JSON object.
    #[error("the config is not a JSON object: {reason}")]
    NotJson {
        /// What the JSON parser reported.
        reason: String,
    },
    /// A field name that central does not know (often a typo).
    #[error("unknown config field {field:?}; known fields are: {known}")]
    UnknownField {
        /// The unknown field.
        field: String,
        /// The known field names, comma separated.
        known: &'static str,
    },
    /// A field has a value central cannot use.
    #[error("config field `{field}` has the unusable value {value}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// The rejected value, as JSON (clipped to 120 characters).
        value: String,
        /// What is wrong and what to write instead.
        reason: String,
    },
}

/// A positive duration written as a whole number and a unit: `90s`, `30m`, `24h`, `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl(TimeDelta);

impl Ttl {
    /// The duration.
    pub const fn duration(self) -> TimeDelta {
        self.0
    }

    /// A TTL of exactly `d`, if it is positive.
    pub fn new(d: TimeDelta) -> Option<Ttl> {
        (d > TimeDelta::zero()).then_some(Ttl(d))
    }
}

/// The text is not `<whole number><s|m|h|d>` with a positive value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a duration: write a positive whole number and a unit, e.g. 90s, 30m, 24h or 7d"
)]
pub struct ParseTtlError(String);

impl FromStr for Ttl {
    type Err = ParseTtlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseTtlError(clip(s));
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (digits, unit) = s.split_at(split);
        let n: i64 = digits.parse().map_err(|_| bad())?;
        let unit_secs = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(bad()),
        };
        // Ten years is far beyond any sensible TTL and keeps the arithmetic in range.
        let secs = n
            .checked_mul(unit_secs)
            .filter(|&s| s > 0 && s <= 10 * 366 * 86_400)
            .ok_or_else(bad)?;
        Ok(Ttl(TimeDelta::seconds(secs)))
    }
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.num_seconds();
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
            if secs % size == 0 {
                return write!(f, "{}{unit}", secs / size);
            }
        }
        write!(f, "{secs}s")
    }
}

/// Central's settings. Build one with [`Config::new`] (defaults) or [`Config::load`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// `data_dir`: the directory `taplink-central init` created, holding the registry
    /// database, the org CA, central's certificate and key, and the admin token. A relative
    /// path in a config file is taken relative to the file's directory.
    /// Default: `taplink-central-data`.
    pub data_dir: PathBuf,
    /// `http_listen`: address of the admin HTTP API, health and metrics.
    /// Default: `127.0.0.1:8480` (reachable from this machine only).
    pub http_listen: SocketAddr,
    /// `quic_listen`: UDP address of the QUIC sync endpoint hubs connect to.
    /// Default: `127.0.0.1:4433`; use `0.0.0.0:4433` to accept hubs from the network.
    pub quic_listen: SocketAddr,
    /// `public_names`: the DNS names and IP addresses hubs use to reach central. They go
    /// into central's server certificate at `init`; changing them later needs a new
    /// certificate. Default: `["localhost", "127.0.0.1"]`.
    pub public_names: Vec<String>,
    /// `log_format`: `"text"` (default) or `"json"`. `--log-format` overrides it.
    pub log_format: LogFormat,
    /// `enrollment_code_ttl`: how long a hub enrollment code stays redeemable, e.g.
    /// `"24h"` (default), `"30m"`, `"7d"`.
    pub enrollment_code_ttl: Ttl,
    /// `venue_media_quota_bytes`: most bytes of one venue's media central stores; media a
    /// hub uploaded beyond it is not fetched (and logged) until some is deleted or the
    /// quota raised. Default: 32 GiB.
    pub venue_media_quota_bytes: u64,
    /// `max_upload_bytes`: largest media file `PUT /api/v1/media` accepts; a larger one is
    /// refused with `413` as soon as it passes the limit. Default: 512 MiB.
    pub max_upload_bytes: u64,
    /// `telemetry_retention_days`: how many days raw telemetry (heartbeats and each single
    /// play) is kept; older plays survive only as daily totals per venue, kiosk and media,
    /// which are kept for good (see `docs/data-policy.md`). A whole number from 1 to 3650.
    /// Default: 90.
    pub telemetry_retention_days: u32,
    /// `alert_offline_after`: how long a hub or kiosk may be silent before an alert opens
    /// (`30m`, `2h`, …). Default: 10 minutes.
    pub alert_offline_after: Ttl,
    /// `alert_content_behind_after`: how long a reporting kiosk may show other content than
    /// central computes for it (content proof "behind", as central has watched it) before
    /// an alert opens. Default: 10 minutes.
    pub alert_content_behind_after: Ttl,
    /// `alert_disk_low_bytes`: a kiosk reporting less free disk than this opens an alert.
    /// Default: 512 MiB.
    pub alert_disk_low_bytes: u64,
    /// `alert_temperature_c`: a kiosk reporting this temperature or more (°C) opens an
    /// alert. Default: 80.
    pub alert_temperature_c: u64,
    /// `alert_webhook_url`: where alerts opening and clearing are POSTed as JSON (retried;
    /// never slows anything else), or absent for none. Plain `http://` only (this build
    /// carries no public CA roots): reach an HTTPS receiver through a relay on your network.
    pub alert_webhook_url: Option<String>,
}

const KNOWN_FIELDS: &str = "data_dir, http_listen, quic_listen, public_names, log_format, enrollment_code_ttl, venue_media_quota_bytes, max_upload_bytes, telemetry_retention_days, alert_offline_after, alert_content_behind_after, alert_disk_low_bytes, alert_temperature_c, alert_webhook_url";

impl Config {
    /// The default HTTP listen address.
    pub const DEFAULT_HTTP_LISTEN: &'static str = "127.0.0.1:8480";
    /// The default QUIC listen address.
    pub const DEFAULT_QUIC_LISTEN: &'static str = "127.0.0.1:4433";
    /// The default enrollment code lifetime: a day, enough to ship a hub to a venue.
    pub const DEFAULT_ENROLLMENT_CODE_TTL: TimeDelta = TimeDelta::days(1);
    /// The default media quota per venue: 32 GiB.
    pub const DEFAULT_VENUE_MEDIA_QUOTA: u64 = 32 << 30;
    /// The default largest media upload: 512 MiB.
    pub const DEFAULT_MAX_UPLOAD: u64 = 512 << 20;
    /// The default telemetry retention: 90 days.
    pub const DEFAULT_TELEMETRY_RETENTION_DAYS: u32 = 90;
    /// The longest telemetry retention accepted: ten years.
    pub const MAX_TELEMETRY_RETENTION_DAYS: u32 = 3650;

    /// The defaults, with the data in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8480)),
            quic_listen: SocketAddr::from(([127, 0, 0, 1], 4433)),
            public_names: vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
            log_format: LogFormat::Text,
            enrollment_code_ttl: Ttl(Self::DEFAULT_ENROLLMENT_CODE_TTL),
            venue_media_quota_bytes: Self::DEFAULT_VENUE_MEDIA_QUOTA,
            max_upload_bytes: Self::DEFAULT_MAX_UPLOAD,
            telemetry_retention_days: Self::DEFAULT_TELEMETRY_RETENTION_DAYS,
            alert_offline_after: Ttl(TimeDelta::minutes(10)),
            alert_content_behind_after: Ttl(TimeDelta::minutes(10)),
            alert_disk_low_bytes: 512 << 20,
            alert_temperature_c: 80,
            alert_webhook_url: None,
        }
    }

    /// Read and check a config file. A relative `data_dir` is resolved against the file's
    /// directory, so a config keeps working wherever central is started from.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::from_json(&text)?;
        if config.data_dir.is_relative() {
            let base = path.parent().unwrap_or(Path::new(""));
            config.data_dir = base.join(&config.data_dir);
        }
        Ok(config)
    }

    /// Parse and check a config from JSON text; missing fields take their defaults.
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        let value: Value = serde_json::from_str(text).map_err(|e| ConfigError::NotJson {
            reason: e.to_string(),
        })?;
        let Value::Object(map) = value else {
            return Err(ConfigError::NotJson {
                reason: format!(
                    "expected an object {{...}}, got {}",
                    clip(&value.to_string())
                ),
            });
        };
        Config::from_map(map)
    }

    fn from_map(map: Map<String, Value>) -> Result<Config, ConfigError> {
        let mut config = Config::new("taplink-central-data");
        for (field, value) in map {
            match field.as_str() {
                "data_dir" => {
                    let s = string(&value, "data_dir")?;
                    if s.is_empty() {
                        return Err(invalid("data_dir", &value, "it is empty; give a directory"));
                    }
                    config.data_dir = PathBuf::from(s);
                }
                "http_listen" => config.http_listen = socket_addr(&value, "http_listen")?,
                "quic_listen" => config.quic_listen = socket_addr(&value, "quic_listen")?,
                "public_names" => config.public_names = public_names(&value)?,
                "log_format" => {
                    config.log_format = string(&value, "log_format")?.parse().map_err(
                        |e: ParseLogFormatError| invalid("log_format", &value, e.to_string()),
                    )?;
                }
                "enrollment_code_ttl" => {
                    config.enrollment_code_ttl = string(&value, "enrollment_code_ttl")?
                        .parse()
                        .map_err(|e: ParseTtlError| {
                            invalid("enrollment_code_ttl", &value, e.to_string())
                        })?;
                }
                "alert_offline_after" => {
                    config.alert_offline_after = string(&value, "alert_offline_after")?
                        .parse()
                        .map_err(|e: ParseTtlError| {
                            invalid("alert_offline_after", &value, e.to_string())
                        })?;
                }
                "alert_content_behind_after" => {
                    config.alert_content_behind_after =
                        string(&value, "alert_content_behind_after")?
                            .parse()
                            .map_err(|e: ParseTtlError| {
                                invalid("alert_content_behind_after", &value, e.to_string())
                            })?;
                }
                "alert_disk_low_bytes" => {
                    config.alert_disk_low_bytes = value.as_u64().ok_or_else(|| {
                        invalid(
                            "alert_disk_low_bytes",
                            &value,
                            "expected a whole number of bytes",
                        )
                    })?;
                }
                "alert_temperature_c" => {
                    config.alert_temperature_c = value
                        .as_u64()
                        .filter(|c| (1..=150).contains(c))
                        .ok_or_else(|| {
                        invalid(
                            "alert_temperature_c",
                            &value,
                            "expected degrees from 1 to 150",
                        )
                    })?;
                }
                "alert_webhook_url" => {
                    let url = string(&value, "alert_webhook_url")?;
                    if !url.starts_with("http://") || url.len() <= "http://".len() {
                        return Err(invalid(
                            "alert_webhook_url",
                            &value,
                            "expected an http:// URL (HTTPS receivers: through a relay on your network)",
                        ));
                    }
                    config.alert_webhook_url = Some(url.to_owned());
                }
                "venue_media_quota_bytes" => {
                    config.venue_media_quota_bytes = value.as_u64().ok_or_else(|| {
                        invalid(
                            "venue_media_quota_bytes",
                            &value,
                            "expected a whole number of bytes",
                        )
                    })?;
                }
                "max_upload_bytes" => {
                    config.max_upload_bytes =
                        value.as_u64().filter(|n| *n > 0).ok_or_else(|| {
                            invalid(
                                "max_upload_bytes",
                                &value,
                                "expected a whole number of bytes above 0",
                            )
                        })?;
                }
                "telemetry_retention_days" => {
                    config.telemetry_retention_days = value
                        .as_u64()
                        .and_then(|d| u32::try_from(d).ok())
                        .filter(|d| (1..=Self::MAX_TELEMETRY_RETENTION_DAYS).contains(d))
                        .ok_or_else(|| {
                            invalid(
                                "telemetry_retention_days",
                                &value,
                                format!(
                                    "expected a whole number of days from 1 to {}",
                                    Self::MAX_TELEMETRY_RETENTION_DAYS
                                ),
                            )
                        })?;
                }
                _ => {
                    return Err(ConfigError::UnknownField {
                        field: clip(&field),
                        known: KNOWN_FIELDS,
                    });
                }
            }
        }
        Ok(config)
    }

    /// The config as pretty-printed JSON, in the form [`Config::from_json`] reads.
    pub fn to_json_pretty(&self) -> String {
        let value = serde_json::json!({
            "data_dir": self.data_dir.to_string_lossy(),
            "http_listen": self.http_listen.to_string(),
            "quic_listen": self.quic_listen.to_string(),
            "public_names": self.public_names,
            "log_format": self.log_format.as_str(),
            "enrollment_code_ttl": self.enrollment_code_ttl.to_string(),
            "venue_media_quota_bytes": self.venue_media_quota_bytes,
            "max_upload_bytes": self.max_upload_bytes,
            "telemetry_retention_days": self.telemetry_retention_days,
            "alert_offline_after": self.alert_offline_after.to_string(),
            "alert_disk_low_bytes": self.alert_disk_low_bytes,
            "alert_temperature_c": self.alert_temperature_c,
        });
        let mut value = value;
        if let (Some(url), Some(map)) = (&self.alert_webhook_url, value.as_object_mut()) {
            map.insert(
                "alert_webhook_url".to_owned(),
                serde_json::Value::from(url.as_str()),
            );
        }
        // A `Value` built from strings and a list of strings always serialises.
        let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
        text.push('\n');
        text
    }

    /// The layout of [`Config::data_dir`].
    pub fn data(&self) -> DataDir {
        DataDir::new(&self.data_dir)
    }

    /// [`Config::public_names`] as certificate names.
    pub fn server_sans(&self) -> Vec<ServerSan> {
        self.public_names
            .iter()
            .map(|n| match n.parse::<ServerSan>() {
                Ok(san) => san,
                Err(never) => match never {},
            })
            .collect()
    }
}

/// The files inside central's data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The layout rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `central.sqlite`: the registry (venues, hubs, enrollment codes, tokens, telemetry).
    pub fn registry_db(&self) -> PathBuf {
        self.root.join("central.sqlite")
    }

    /// `ca/`: the org CA (`ca.pem`, `ca.key`).
    pub fn ca_dir(&self) -> PathBuf {
        self.root.join("ca")
    }

    /// `server.pem`: central's server certificate (QUIC endpoint; pinned by enrollment codes).
    pub fn server_cert(&self) -> PathBuf {
        self.root.join("server.pem")
    }

    /// `server.key`: central's server private key (0600).
    pub fn server_key(&self) -> PathBuf {
        self.root.join("server.key")
    }

    /// `roster.pem`: the roster signer's certificate (issued by the org CA for signing venue
    /// rosters only).
    pub fn roster_cert(&self) -> PathBuf {
        self.root.join("roster.pem")
    }

    /// `roster.key`: the roster signer's private key (0600).
    pub fn roster_key(&self) -> PathBuf {
        self.root.join("roster.key")
    }

    /// `docs.sqlite`: the CRDT documents (venues, org) and per-hub sync states.
    pub fn docs_db(&self) -> PathBuf {
        self.root.join("docs.sqlite")
    }

    /// `media/`: media blobs by content hash.
    pub fn media_dir(&self) -> PathBuf {
        self.root.join("media")
    }

    /// `uploads/`: media uploads while they arrive (`PUT /api/v1/media`); emptied at start.
    pub fn upload_dir(&self) -> PathBuf {
        self.root.join("uploads")
    }

    /// `admin-token`: the bootstrap admin token (0600).
    pub fn admin_token(&self) -> PathBuf {
        self.root.join("admin-token")
    }

    /// `config.json`: the default config `init` writes.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.json")
    }
}

fn clip(s: &str) -> String {
    s.chars().take(120).collect()
}

fn invalid(field: &'static str, value: &Value, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        value: clip(&value.to_string()),
        reason: reason.into(),
    }
}

fn string<'v>(value: &'v Value, field: &'static str) -> Result<&'v str, ConfigError> {
    value
        .as_str()
        .ok_or_else(|| invalid(field, value, "expected a string"))
}

fn socket_addr(value: &Value, field: &'static str) -> Result<SocketAddr, ConfigError> {
    string(value, field)?.parse().map_err(|_| {
        invalid(
            field,
            value,
            "expected an IP address and port such as \"127.0.0.1:8480\" or \"[::]:4433\"",
        )
    })
}

fn public_names(value: &Value) -> Result<Vec<String>, ConfigError> {
    let field = "public_names";
    let items = value
        .as_array()
        .ok_or_else(|| invalid(field, value, "expected a list of DNS names or IP addresses"))?;
    if items.is_empty() {
        return Err(invalid(
            field,
            value,
            "central's certificate needs at least one name, e.g. [\"localhost\"]",
        ));
    }
    items
        .iter()
        .map(|item| {
            let name = item
                .as_str()
                .ok_or_else(|| invalid(field, item, "each name must be a string"))?;
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(invalid(
                    field,
                    item,
                    "a name must be a DNS name or IP address without spaces",
                ));
            }
            Ok(name.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_object_gives_the_documented_defaults() {
        let c = Config::from_json("{}").unwrap();
        assert_eq!(c.http_listen.to_string(), Config::DEFAULT_HTTP_LISTEN);
        assert_eq!(c.quic_listen.to_string(), Config::DEFAULT_QUIC_LISTEN);
        assert_eq!(c.public_names, ["localhost", "127.0.0.1"]);
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.enrollment_code_ttl.duration(), TimeDelta::hours(24));
        assert_eq!(c.data_dir, PathBuf::from("taplink-central-data"));
        assert_eq!(c.max_upload_bytes, 512 << 20);
        assert_eq!(c.telemetry_retention_days, 90);
    }

    #[test]
    fn json_round_trips() {
        let mut c = Config::new("/var/lib/taplink");
        c.log_format = LogFormat::Json;
        c.enrollment_code_ttl = "90m".parse().unwrap();
        c.public_names = vec!["central.example.com".into()];
        c.max_upload_bytes = 1 << 20;
        c.telemetry_retention_days = 400;
        assert_eq!(Config::from_json(&c.to_json_pretty()).unwrap(), c);
    }

    #[test]
    fn errors_name_the_field_and_value() {
        let cases = [
            (
                r#"{"http_listen": "localhost"}"#,
                "http_listen",
                "\"localhost\"",
            ),
            (r#"{"quic_listen": 4433}"#, "quic_listen", "4433"),
            (r#"{"log_format": "yaml"}"#, "log_format", "\"yaml\""),
            (
                r#"{"enrollment_code_ttl": "1y"}"#,
                "enrollment_code_ttl",
                "\"1y\"",
            ),
            (r#"{"public_names": []}"#, "public_names", "[]"),
            (r#"{"public_names": ["a b"]}"#, "public_names", "\"a b\""),
            (r#"{"max_upload_bytes": 0}"#, "max_upload_bytes", "0"),
            (
                r#"{"telemetry_retention_days": 0}"#,
                "telemetry_retention_days",
                "0",
            ),
            (
                r#"{"telemetry_retention_days": "90"}"#,
                "telemetry_retention_days",
                "\"90\"",
            ),
            (
                r#"{"telemetry_retention_days": 3651}"#,
                "telemetry_retention_days",
                "3651",
            ),
        ];
        for (json, field, value) in cases {
            let msg = Config::from_json(json).unwrap_err().to_string();
            assert!(msg.contains(field) && msg.contains(value), "{json}: {msg}");
        }
        let msg = Config::from_json(r#"{"http_listn": "x"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("http_listn") && msg.contains("http_listen"),
            "{msg}"
        );
    }

    #[test]
    fn ttl_parses_units_and_refuses_nonsense() {
        assert_eq!("90s".parse::<Ttl>().unwrap().duration().num_seconds(), 90);
        assert_eq!("2d".parse::<Ttl>().unwrap().to_string(), "2d");
        assert_eq!("120m".parse::<Ttl>().unwrap().to_string(), "2h");
        for bad in ["", "0h", "h", "-1h", "1.5h", "1w", "99999999999999999d"] {
            assert!(bad.parse::<Ttl>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn relative_data_dir_is_taken_from_the_config_file_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"data_dir": "data"}"#).unwrap();
        assert_eq!(
            Config::load(&path).unwrap().data_dir,
            dir.path().join("data")
        );
    }
}
