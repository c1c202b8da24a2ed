//! Request guards every node's HTTP API shares: the guessing throttle for secrets, the
//! `Host` check against DNS rebinding, and the rule that writes are JSON.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::time::Instant;

/// `{"error": sentence}` with `status`: the error shape of every Taplink API.
pub fn json_error(status: StatusCode, sentence: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": sentence.into() })),
    )
        .into_response()
}

/// The client address of a request served by [`super::listener::serve`] (or
/// `into_make_service_with_connect_info`); unspecified when there is none (a router driven
/// in-process by a test), so such requests share one throttle entry.
pub fn client_ip(req: &Request) -> IpAddr {
    ip_of(req.extensions())
}

fn ip_of(extensions: &axum::http::Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip())
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive), if the
/// header is there and well formed.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// [`client_ip`] as an extractor, for handlers that count failed secrets themselves.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(ip_of(&parts.extensions)))
    }
}

// ---------------------------------------------------------------------------------------
// Guessing throttle
// ---------------------------------------------------------------------------------------

/// The kind of secret a failed attempt guessed at (a metric label).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SecretKind {
    /// `pairing_code`, `pairing_id`, `device_token`, `kiosk_code`, `staff_token`,
    /// `admin_token`.
    pub kind: &'static str,
}

/// Failed attempts allowed per client before it has to wait.
pub const FREE_FAILURES: u32 = 10;
/// The wait after the first failure beyond the free ones; it doubles with each further one.
pub const FIRST_DELAY: Duration = Duration::from_secs(1);
/// The longest wait.
pub const MAX_DELAY: Duration = Duration::from_secs(300);
/// A client's record is forgotten this long after its last failure.
const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// Most clients remembered; beyond it the one that failed longest ago is forgotten.
const MAX_CLIENTS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last: Instant,
}

impl Record {
    fn wait(&self) -> Duration {
        let over = self.failures.saturating_sub(FREE_FAILURES);
        if over == 0 {
            return Duration::ZERO;
        }
        let delay = FIRST_DELAY
            .checked_mul(1u32 << (over - 1).min(16))
            .unwrap_or(MAX_DELAY)
            .min(MAX_DELAY);
        delay.saturating_sub(self.last.elapsed())
    }
}

/// Per-client back-off for failed secrets (device tokens, pairing codes, kiosk codes,
/// staff and admin tokens): [`FREE_FAILURES`] free, then a wait that doubles from
/// [`FIRST_DELAY`] up to [`MAX_DELAY`] after each further failure; a success clears the
/// client's record. Attempts made while a client must wait are refused without being
/// checked, so a guessing run gets a handful of tries per five minutes instead of
/// thousands per second.
///
/// Keyed by client address by default; central also keys one by account, so that a
/// guessing run spread over many addresses still slows down on the account it targets.
#[derive(Debug)]
pub struct Throttle<K = IpAddr> {
    clients: Mutex<HashMap<K, Record>>,
    /// `…_auth_failures_total{kind}`.
    pub failures: Family<SecretKind, Counter>,
    /// `…_auth_throttled_total`: attempts refused because the client had to wait.
    pub throttled: Counter,
}

impl<K> Default for Throttle<K> {
    fn default() -> Self {
        Throttle {
            clients: Mutex::new(HashMap::new()),
            failures: Family::default(),
            throttled: Counter::default(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone> Throttle<K> {
    /// A throttle with no records.
    pub fn new() -> Self {
        Self::default()
    }

    /// Register the counters in a node's registry.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "auth_failures",
            "Failed secrets (tokens, codes) by kind",
            self.failures.clone(),
        );
        registry.register(
            "auth_throttled",
            "Attempts refused because the client failed too often and must wait",
            self.throttled.clone(),
        );
    }

    /// `Err(wait)` when `ip` (the key) must wait before its next attempt.
    pub fn check(&self, ip: K) -> Result<(), Duration> {
        let clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        match clients.get(&ip).map(Record::wait) {
            Some(wait) if !wait.is_zero() => {
                self.throttled.inc();
                Err(wait)
            }
            _ => Ok(()),
        }
    }

    /// Record a failed secret of `kind` from `ip`.
    pub fn fail(&self, ip: K, kind: &'static str) {
        self.failures.get_or_create(&SecretKind { kind }).inc();
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&ip) {
            clients.retain(|_, r| r.last.elapsed() < FORGET_AFTER);
            if clients.len() >= MAX_CLIENTS
                && let Some(oldest) = clients
                    .iter()
                    .min_by_key(|(_, r)| r.last)
                    .map(|(k, _)| k.clone())
            {
                clients.remove(&oldest);
            }
        }
        let now = Instant::now();
        let record = clients.entry(ip).or_insert(Record {
            failures: 0,
            last: now,
        });
        if record.last.elapsed() >= FORGET_AFTER {
            record.failures = 0;
        }
        record.failures = record.failures.saturating_add(1);
        record.last = now;
    }

    /// A secret from `ip` was right: its record is cleared.
    pub fn succeed(&self, ip: K) {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        clients.remove(&ip);
    }
}

/// The `429` for a client that must wait, with `Retry-After`.
pub fn throttled_response(wait: Duration) -> Response {
    let secs = wait.as_secs().max(1);
    let mut response = json_error(
        StatusCode::TOO_MANY_REQUESTS,
        format!("too many failed attempts from this address; try again in {secs} s"),
    );
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// Middleware: only a client on this machine (a loopback address) gets past. A request
/// that did not come over a socket at all (a router driven in-process) is local too.
pub async fn loopback_only(req: Request, next: Next) -> Response {
    let remote = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|c| !c.0.ip().is_loopback() && !is_mapped_loopback(c.0.ip()));
    if remote {
        return json_error(
            StatusCode::FORBIDDEN,
            "this page is served only to programs on this machine",
        );
    }
    next.run(req).await
}

fn is_mapped_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        IpAddr::V4(_) => false,
    }
}

// ---------------------------------------------------------------------------------------
// Host check
// ---------------------------------------------------------------------------------------

/// The names a node answers to besides IP literals and `localhost`: a page on another
/// site whose name was rebound to the node's address sends its own name in `Host` and is
/// refused.
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    names: Vec<String>,
}

impl HostPolicy {
    /// IP literals, `localhost` and these names (any case, any port).
    pub fn new(names: impl IntoIterator<Item = String>) -> Self {
        Self {
            names: names
                .into_iter()
                .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether a `Host` header value is one of ours.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim();
        // `[v6]:port`, `[v6]`, `name:port`, `v4:port`, `name`.
        let name = if let Some(rest) = host.strip_prefix('[') {
            match rest.split_once(']') {
                Some((v6, _)) => return v6.parse::<std::net::Ipv6Addr>().is_ok(),
                None => return false,
            }
        } else {
            match host.rsplit_once(':') {
                Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
                Some(_) => return false,
                None => host,
            }
        };
        if name.parse::<std::net::Ipv4Addr>().is_ok() {
            return true;
        }
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        name == "localhost" || self.names.contains(&name)
    }
}

/// The rules every request to a node meets before its route: `Host` is one of the node's
/// names, and a write's body is JSON (except on the routes listed, which check their own
/// media type: uploads).
#[derive(Debug, Clone, Default)]
pub struct RequestRules {
    /// The names the node answers to.
    pub hosts: HostPolicy,
    /// `(method, path template)` of routes whose bodies are not JSON (a `{name}` segment
    /// matches any one segment).
    pub not_json: &'static [(&'static str, &'static str)],
}

/// Middleware (one layer for both rules, since it runs on every request): refuse a
/// request whose `Host` is not one of ours (`421`, naming it; a request without `Host`,
/// from an HTTP/1.0 tool, passes: a browser always sends one), and a request that may
/// change something (any method but `GET`, `HEAD`, `OPTIONS`) and carries a body without
/// `Content-Type: application/json` (`415`): a form or `text/plain` post from another
/// site's page never reaches a handler.
pub async fn request_rules(
    State(rules): State<Arc<RequestRules>>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(host) = req.headers().get(header::HOST)
        && !host.to_str().is_ok_and(|h| rules.hosts.allows(h))
    {
        let shown: String = String::from_utf8_lossy(host.as_bytes())
            .chars()
            .take(100)
            .collect();
        return json_error(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "Host {shown:?} is not a name of this server; use its IP address or a name set in its config"
            ),
        );
    }
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe
        && has_body(&req)
        && !is_json(req.headers().get(header::CONTENT_TYPE))
        && !rules
            .not_json
            .iter()
            .any(|(m, p)| req.method().as_str() == *m && path_matches(p, req.uri().path()))
    {
        return json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type: the request body must be sent as application/json",
        );
    }
    next.run(req).await
}

/// Whether a request carries a body: `Transfer-Encoding` or a non-zero `Content-Length`
/// on the wire (RFC 9112 §6.3), which hyper reflects in the body's size hint.
fn has_body(req: &Request) -> bool {
    use axum::body::HttpBody;
    req.headers().contains_key(header::TRANSFER_ENCODING)
        || req.body().size_hint().exact() != Some(0)
}

fn is_json(value: Option<&HeaderValue>) -> bool {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// Whether `path` is an instance of the route `template` (`/people/{id}` matches
/// `/people/abc`, not `/people` or `/people/abc/x`).
fn path_matches(template: &str, path: &str) -> bool {
    let (mut t, mut p) = (template.split('/'), path.split('/'));
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(ts), Some(ps)) if ts == ps || (ts.starts_with('{') && !ps.is_empty()) => {}
            _ => return false,
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers (central's and the hub's
/// session cookies).
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_matches_its_paths_only() {
        assert!(path_matches("/people/{id}", "/people/abc"));
        assert!(path_matches("/login", "/login"));
        assert!(!path_matches("/people/{id}", "/people"));
        assert!(!path_matches("/people/{id}", "/people/"));
        assert!(!path_matches("/people/{id}", "/people/abc/x"));
        assert!(!path_matches("/login", "/login/x"));
    }

    #[test]
    fn hosts_that_are_ours() {
        let p = HostPolicy::new(["hub.example.com".to_owned()]);
        for ok in [
            "127.0.0.1:8580",
            "192.168.1.5",
            "[::1]:8580",
            "[fe80::1]",
            "localhost:8580",
            "LOCALHOST",
            "hub.example.com",
            "Hub.Example.Com.:443",
        ] {
            assert!(p.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8580",
            "127.0.0.1.evil.example",
            "[::1",
            "hub.example.com:80x",
            "",
        ] {
            assert!(!p.allows(bad), "{bad}");
        }
    }

    #[test]
    fn the_throttle_lets_the_first_failures_through_then_doubles_the_wait() {
        let t = Throttle::new();
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let other: IpAddr = "10.0.0.10".parse().unwrap();
        for _ in 0..FREE_FAILURES {
            assert!(t.check(ip).is_ok());
            t.fail(ip, "device_token");
        }
        assert!(t.check(ip).is_ok(), "the free failures cost no wait");
        t.fail(ip, "device_token");
        let first = t.check(ip).unwrap_err();
        assert!(first <= FIRST_DELAY && first > Duration::ZERO);
        t.fail(ip, "device_token");
        let second = t.check(ip).unwrap_err();
        assert!(second > first, "{second:?} > {first:?}");
        assert!(t.check(other).is_ok(), "another client is not slowed");
        t.succeed(ip);
        assert!(t.check(ip).is_ok());
        assert_eq!(t.throttled.get(), 2);
        assert_eq!(
            t.failures
                .get_or_create(&SecretKind {
                    kind: "device_token"
                })
                .get(),
            u64::from(FREE_FAILURES) + 2
        );
    }

    #[test]
    fn the_wait_is_capped() {
        let r = Record {
            failures: FREE_FAILURES + 40,
            last: Instant::now(),
        };
        assert!(r.wait() <= MAX_DELAY);
        assert!(r.wait() > MAX_DELAY - Duration::from_secs(1));
    }
}
