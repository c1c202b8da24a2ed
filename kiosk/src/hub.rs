//! The kiosk's side of the hub's LAN API (`docs/kiosk-api.md`): the HTTP exchanges and the
//! JSON shapes on the wire.
//!
//! Every API call returns the hub's answer as a plain [`HubResponse`] (status, body, date)
//! and leaves the decision about it to the module that asked (`pairing`, `follower`,
//! `reporter`), whose decision functions are pure and tested with recorded answers. Only
//! failures to get any answer at all (connection refused, timeout) are errors here.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use taplink_sync_proto::ids::MediaHash;
use taplink_sync_proto::wire::TelemetryKind;

/// Longest time to open a TCP connection to the hub: it is on the LAN, so anything slower
/// means it is not there.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Longest time for a short API call (pairing, events).
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Slack on top of a manifest long-poll's wait before the call counts as failed.
const LONG_POLL_SLACK: Duration = Duration::from_secs(10);

/// The hub did not answer at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// No connection, a timeout, or the connection broke before a whole answer arrived.
    #[error("hub at {addr} did not answer: {source}")]
    Unreachable {
        /// The hub's address.
        addr: SocketAddr,
        /// What reqwest saw.
        source: reqwest::Error,
    },
    /// The HTTP client could not be built (never expected: no system config is read).
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
    /// The TLS configuration could not be built (never expected).
    #[error("cannot build the TLS configuration: {0}")]
    Tls(String),
}

/// How the kiosk reaches its hub's API.
#[derive(Debug, Clone)]
pub enum Transport {
    /// HTTPS, accepting only the hub certificate the pin names (the default).
    Tls(taplink_certs::tls::HubPin),
    /// Plain HTTP: a lab hub with `http_plain` (the kiosk's `hub_plain_http`).
    Plain,
}

impl Transport {
    /// The fingerprint of the hub certificate this transport accepts, once known.
    pub fn fingerprint(&self) -> Option<taplink_certs::Fingerprint> {
        match self {
            Transport::Tls(pin) => pin.fingerprint(),
            Transport::Plain => None,
        }
    }
}

/// One answer from the hub, as recorded: what the decision functions take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubResponse {
    /// The HTTP status.
    pub status: StatusCode,
    /// The whole body.
    pub body: Bytes,
    /// The `ETag` header, if any.
    pub etag: Option<String>,
    /// The hub's clock when it answered (`Date` header), if sent and well-formed.
    pub date: Option<DateTime<Utc>>,
}

impl HubResponse {
    /// A response with this status and body (tests, recorded exchanges).
    pub fn new(status: u16, body: &str) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: Bytes::copy_from_slice(body.as_bytes()),
            etag: None,
            date: None,
        }
    }

    /// The `error` sentence of an error body, or the start of the body as text.
    pub fn error_message(&self) -> String {
        serde_json::from_slice::<ErrorBody>(&self.body)
            .map(|e| e.error)
            .unwrap_or_else(|_| {
                String::from_utf8_lossy(&self.body)
                    .chars()
                    .take(200)
                    .collect()
            })
    }
}

/// An error answer's body.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: String,
}

/// One status or proof-of-play event, as `POST /api/v1/kiosk/events` takes it: the hub
/// fills in the kiosk from the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KioskEvent {
    /// Random, chosen here; the hub stores each id once, so resending is safe.
    #[serde(with = "hex16")]
    pub id: [u8; 16],
    /// When it happened, milliseconds since the Unix epoch (this kiosk's clock).
    pub at_ms: i64,
    /// What happened.
    pub kind: TelemetryKind,
}

impl KioskEvent {
    /// A fresh random event id.
    pub fn random_id() -> [u8; 16] {
        rand::random()
    }
}

/// 16 bytes as 32 lowercase hex characters.
pub mod hex16 {
    use data_encoding::HEXLOWER_PERMISSIVE;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialize as hex.
    pub fn serialize<S: Serializer>(id: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&data_encoding::HEXLOWER.encode(id))
    }

    /// Parse 32 hex characters.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse(&text).ok_or_else(|| D::Error::custom("an event id is 32 hex characters"))
    }

    /// Parse 32 hex characters.
    pub fn parse(text: &str) -> Option<[u8; 16]> {
        if text.len() != 32 {
            return None;
        }
        HEXLOWER_PERMISSIVE
            .decode(text.as_bytes())
            .ok()?
            .try_into()
            .ok()
    }
}

/// The HTTP client for one hub, optionally holding the kiosk's device token.
#[derive(Clone)]
pub struct HubApi {
    http: reqwest::Client,
    addr: SocketAddr,
    base: String,
    token: Option<String>,
}

impl std::fmt::Debug for HubApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubApi")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl HubApi {
    /// A client for the hub at `addr` over `transport`, without a token (for pairing).
    pub fn new(addr: SocketAddr, transport: &Transport) -> Result<Self, HubError> {
        let builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            // The hub is on the LAN: a proxy from the environment would be wrong.
            .no_proxy()
            .user_agent(concat!("taplink-kiosk/", env!("CARGO_PKG_VERSION")));
        let (builder, scheme) = match transport {
            Transport::Tls(pin) => {
                let tls = taplink_certs::tls::lan_client_config(pin.clone())
                    .map_err(|e| HubError::Tls(e.to_string()))?;
                (builder.use_preconfigured_tls(tls), "https")
            }
            Transport::Plain => (
                builder.use_preconfigured_tls(taplink_certs::tls::plain_http_client_config()),
                "http",
            ),
        };
        let http = builder.build().map_err(HubError::Client)?;
        Ok(Self {
            http,
            addr,
            base: format!("{scheme}://{addr}/api/v1"),
            token: None,
        })
    }

    /// The same hub, authenticated with a device token.
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    /// The hub's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, format!("{}{}", self.base, path));
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    async fn send(&self, builder: reqwest::RequestBuilder) -> Result<HubResponse, HubError> {
        let unreachable = |source| HubError::Unreachable {
            addr: self.addr,
            source,
        };
        let response = builder.send().await.map_err(unreachable)?;
        let status = response.status();
        let etag = header_str(response.headers(), header::ETAG).map(str::to_owned);
        let date = parse_http_date(response.headers());
        let body = response.bytes().await.map_err(unreachable)?;
        Ok(HubResponse {
            status,
            body,
            etag,
            date,
        })
    }

    /// `POST /pairings`: ask for a pairing code, or with a kiosk code from central
    /// (`provisioning_code`) for a pairing approved at once.
    pub async fn create_pairing(
        &self,
        device: &str,
        provisioning_code: Option<&str>,
    ) -> Result<HubResponse, HubError> {
        let body = match provisioning_code {
            Some(code) => serde_json::json!({ "device": device, "provisioning_code": code }),
            None => serde_json::json!({ "device": device }),
        };
        self.send(
            self.request(reqwest::Method::POST, "/pairings")
                .json(&body)
                .timeout(CALL_TIMEOUT),
        )
        .await
    }

    /// `GET /pairings/<id>`: has staff approved it yet? `pairing` must be URL-safe (the
    /// pairing module checks that before it keeps a ticket).
    pub async fn pairing_status(&self, pairing: &str) -> Result<HubResponse, HubError> {
        self.send(
            self.request(reqwest::Method::GET, &format!("/pairings/{pairing}"))
                .timeout(CALL_TIMEOUT),
        )
        .await
    }

    /// `GET /kiosk/manifest`, conditional on `version` and held up to `wait` by the hub.
    pub async fn manifest(
        &self,
        version: Option<&str>,
        wait: Duration,
    ) -> Result<HubResponse, HubError> {
        let mut builder = self.request(reqwest::Method::GET, "/kiosk/manifest");
        if let Some(version) = version {
            builder = builder
                .header(header::IF_NONE_MATCH, format!("\"{version}\""))
                .query(&[("wait", wait.as_secs())]);
        }
        self.send(builder.timeout(wait + LONG_POLL_SLACK)).await
    }

    /// `POST /kiosk/events` with a batch (at most 1,000).
    pub async fn post_events(&self, events: &[KioskEvent]) -> Result<HubResponse, HubError> {
        self.send(
            self.request(reqwest::Method::POST, "/kiosk/events")
                .json(events)
                .timeout(CALL_TIMEOUT),
        )
        .await
    }

    /// `GET /kiosk/media/<hash>` from byte `from` on; the caller streams the body.
    pub async fn media(&self, hash: &MediaHash, from: u64) -> Result<reqwest::Response, HubError> {
        let mut builder = self.request(reqwest::Method::GET, &format!("/kiosk/media/{hash}"));
        if from > 0 {
            builder = builder.header(header::RANGE, format!("bytes={from}-"));
        }
        builder
            .send()
            .await
            .map_err(|source| HubError::Unreachable {
                addr: self.addr,
                source,
            })
    }
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers
        .get(name)
        .and_then(|v: &HeaderValue| v.to_str().ok())
}

/// The `Date` header (IMF-fixdate, which RFC 2822 parsing accepts).
fn parse_http_date(headers: &HeaderMap) -> Option<DateTime<Utc>> {
    header_str(headers, header::DATE)
        .and_then(|d| DateTime::parse_from_rfc2822(d).ok())
        .map(|d| d.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use taplink_sync_proto::ids::{ItemId, PlaylistId};
    use taplink_sync_proto::wire::ProofOfPlay;

    #[test]
    fn events_have_the_documented_wire_shape() {
        let event = KioskEvent {
            id: [0xab; 16],
            at_ms: 1_700_000_000_000,
            kind: TelemetryKind::ProofOfPlay(ProofOfPlay {
                playlist: PlaylistId::from_bytes([1; 16]),
                item: ItemId::from_bytes([2; 16]),
                media: MediaHash::of(b"m"),
                started_ms: 1_699_999_990_000,
                duration_ms: 10_000,
            }),
        };
        let json: serde_json::Value = serde_json::to_value(&event).unwrap();
        assert_eq!(json["id"], "ab".repeat(16));
        assert_eq!(json["at_ms"], 1_700_000_000_000i64);
        assert_eq!(
            json["kind"]["ProofOfPlay"]["media"],
            MediaHash::of(b"m").to_string()
        );
        assert!(json.get("kiosk").is_none(), "the hub sets the kiosk");
        let back: KioskEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn event_ids_must_be_32_hex_characters() {
        assert_eq!(hex16::parse(&"0f".repeat(16)), Some([0x0f; 16]));
        assert_eq!(hex16::parse(&"0f".repeat(15)), None);
        assert_eq!(hex16::parse(&"zz".repeat(16)), None);
    }

    #[test]
    fn the_http_date_header_is_read_as_utc() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::DATE,
            HeaderValue::from_static("Fri, 20 Nov 2026 17:59:58 GMT"),
        );
        assert_eq!(
            parse_http_date(&headers).map(|d| d.to_rfc3339()),
            Some("2026-11-20T17:59:58+00:00".into())
        );
        headers.insert(header::DATE, HeaderValue::from_static("yesterday"));
        assert_eq!(parse_http_date(&headers), None);
    }

    #[test]
    fn error_messages_come_from_the_json_body_or_the_text() {
        assert_eq!(
            HubResponse::new(404, r#"{"error": "no such pairing"}"#).error_message(),
            "no such pairing"
        );
        assert_eq!(
            HubResponse::new(502, "bad gateway").error_message(),
            "bad gateway"
        );
    }
}
