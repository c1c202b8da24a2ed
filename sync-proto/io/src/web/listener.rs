//! The one HTTP listener every Taplink node serves through (hub, central, the kiosk's
//! player server): axum on hyper's HTTP/1.1 connections, with the limits a hostile network
//! needs that `axum::serve` does not have.
//!
//! - **Connection caps**: at most [`Limits::max_connections`] open at once (kept below the
//!   process's descriptor budget, see [`descriptor_budget`]) and
//!   [`Limits::max_per_client`] per client address. A connection over its client's cap is
//!   closed at once, before anything is read. When the total is reached, the connection
//!   that has been idle longest (no request in flight) is closed to make room, so a flood
//!   of idle sockets, even from many addresses, never starves `/healthz` or the kiosks'
//!   long-polls; only when every connection is busy is a newcomer refused.
//! - **Timeouts** (one watchdog per connection, no timer per request): a new connection
//!   must deliver a whole request head within [`Limits::header_timeout`], and so must every
//!   head from its first byte; a kept-alive connection with no request may wait
//!   [`Limits::idle_timeout`] after its last response. A request in flight (a long-poll, an
//!   upload) is never cut by either.
//! - **TLS** (optional): a rustls acceptor, its handshake bounded by the header timeout.
//! - Every request carries its client's address as `ConnectInfo<SocketAddr>`.
//!
//! Shutdown is graceful: the listener stops accepting, open connections finish their
//! current request, then close.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::{debug, warn};

/// Descriptors kept back from HTTP connections for everything else a node opens (SQLite
/// files, media files being served, QUIC sockets, mDNS, logs).
pub const DESCRIPTOR_RESERVE: u64 = 256;

/// A listener's limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most connections open at once (clamped to [`descriptor_budget`] at start).
    pub max_connections: usize,
    /// Most connections open at once from one client address.
    pub max_per_client: usize,
    /// Longest wait for a complete request head (and a TLS handshake).
    pub header_timeout: Duration,
    /// A connection with no request in flight that moves no byte this long is closed.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1_500,
            max_per_client: 64,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// How many HTTP connections this process can hold open: its soft `RLIMIT_NOFILE`, raised
/// to the hard limit where allowed, less [`DESCRIPTOR_RESERVE`].
pub fn descriptor_budget() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024 - DESCRIPTOR_RESERVE;
    };
    let soft = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    soft.saturating_sub(DESCRIPTOR_RESERVE).max(16)
}

/// The listener's metrics, registered in the node's registry.
#[derive(Debug, Clone, Default)]
pub struct ListenerMetrics {
    /// Connections open now.
    pub open: Gauge,
    /// Connections accepted since start.
    pub accepted: Counter,
    /// Connections closed at once because a cap was reached.
    pub refused: Counter,
    /// Connections closed by the header or idle timeout.
    pub timed_out: Counter,
    /// Idle connections closed to make room for a new one at the total cap.
    pub evicted: Counter,
    /// TLS handshakes that failed or timed out.
    pub tls_failed: Counter,
}

impl ListenerMetrics {
    /// Register under `prefix` (e.g. `taplink_hub`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "http_connections",
            "HTTP connections open",
            self.open.clone(),
        );
        registry.register(
            "http_connections_accepted",
            "HTTP connections accepted",
            self.accepted.clone(),
        );
        registry.register(
            "http_connections_refused",
            "HTTP connections closed at once because the total or per-client cap was reached",
            self.refused.clone(),
        );
        registry.register(
            "http_connections_timed_out",
            "HTTP connections closed by the header-read or idle timeout",
            self.timed_out.clone(),
        );
        registry.register(
            "http_connections_evicted",
            "Idle HTTP connections closed to make room at the connection cap",
            self.evicted.clone(),
        );
        registry.register(
            "http_tls_handshakes_failed",
            "TLS handshakes on the HTTP listener that failed or timed out",
            self.tls_failed.clone(),
        );
    }
}

/// Open connections, in total and per client address.
#[derive(Default)]
struct Slots {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
    /// Every open connection's activity and the token that closes it.
    open: HashMap<u64, (Arc<Activity>, CancellationToken)>,
    next_id: u64,
}

/// A connection's place under the caps; released on drop.
struct Slot {
    slots: Arc<Mutex<Slots>>,
    id: u64,
    ip: IpAddr,
    metrics: ListenerMetrics,
    activity: Arc<Activity>,
    /// Cancelled when the connection is evicted to make room.
    evict: CancellationToken,
}

impl Slot {
    fn take(
        slots: &Arc<Mutex<Slots>>,
        ip: IpAddr,
        limits: &Limits,
        metrics: &ListenerMetrics,
    ) -> Option<Slot> {
        let mut s = slots.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = s.per_client.get(&ip).copied().unwrap_or(0);
        if mine >= limits.max_per_client {
            return None;
        }
        if s.total >= limits.max_connections {
            // Make room by closing the connection idle longest; its slot is released
            // when its task ends, a moment later.
            // Connections that never completed a request (a flood's) go before those that
            // did (a kiosk's kept-alive connection between polls).
            let victim = s
                .open
                .values()
                .filter(|(a, t)| a.in_flight.load(Ordering::Relaxed) == 0 && !t.is_cancelled())
                .max_by_key(|(a, _)| (!a.served.load(Ordering::Relaxed), a.silent_for()))
                .map(|(_, t)| t.clone());
            match victim {
                Some(token) => token.cancel(),
                None => return None,
            }
        }
        s.total += 1;
        s.per_client.insert(ip, mine + 1);
        let id = s.next_id;
        s.next_id += 1;
        let activity = Arc::new(Activity::new());
        let evict = CancellationToken::new();
        s.open.insert(id, (activity.clone(), evict.clone()));
        metrics.open.inc();
        Some(Slot {
            slots: slots.clone(),
            id,
            ip,
            metrics: metrics.clone(),
            activity,
            evict,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        s.total -= 1;
        s.open.remove(&self.id);
        if let Some(n) = s.per_client.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                s.per_client.remove(&self.ip);
            }
        }
        self.metrics.open.dec();
    }
}

/// Serve `app` on `listener` until `cancel`, each connection a task on `tasks`. Returns
/// only on cancellation, or with the error that stopped `accept` for good.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
    metrics: ListenerMetrics,
    cancel: CancellationToken,
    tasks: TaskTracker,
) -> std::io::Result<()> {
    let mut limits = limits;
    let budget = usize::try_from(descriptor_budget()).unwrap_or(usize::MAX);
    if limits.max_connections > budget {
        warn!(
            configured = limits.max_connections,
            budget, "fewer file descriptors than connections allowed; capping connections"
        );
        limits.max_connections = budget;
    }
    let limits = Arc::new(limits);
    let slots = Arc::new(Mutex::new(Slots::default()));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut failures = 0u32;
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(pair) => { failures = 0; pair }
                Err(e) => {
                    // EMFILE and friends: the caps should prevent them, but if another
                    // part of the process ran out, back off instead of spinning.
                    failures += 1;
                    warn!(error = %e, "cannot accept an HTTP connection");
                    if failures > 1000 {
                        return Err(e);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let ip = canonical(peer.ip());
        let Some(slot) = Slot::take(&slots, ip, &limits, &metrics) else {
            metrics.refused.inc();
            debug!(%peer, "connection over the cap closed");
            drop(stream);
            continue;
        };
        metrics.accepted.inc();
        // No TCP_NODELAY: hyper writes each response in one go, and with it set the
        // manifest bench measured fewer 304s per second (docs/performance.md).
        let conn = Connection {
            app: app.clone(),
            limits: limits.clone(),
            metrics: metrics.clone(),
            cancel: cancel.clone(),
            peer,
        };
        let acceptor = acceptor.clone();
        tasks.spawn(async move {
            let (activity, evict) = (slot.activity.clone(), slot.evict.clone());
            let _slot = slot;
            match acceptor {
                None => conn.run(stream, activity, evict).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(conn.limits.header_timeout, acceptor.accept(stream));
                    // A connection stuck in its handshake (a ClientHello that never comes)
                    // is the first to be evicted: it must give its slot back at once.
                    let handshake = tokio::select! {
                        result = handshake => result,
                        _ = evict.cancelled() => {
                            conn.metrics.evicted.inc();
                            return;
                        }
                    };
                    match handshake {
                        Ok(Ok(tls)) => conn.run(tls, activity, evict).await,
                        Ok(Err(e)) => {
                            conn.metrics.tls_failed.inc();
                            debug!(peer = %conn.peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            conn.metrics.tls_failed.inc();
                            conn.metrics.timed_out.inc();
                        }
                    }
                }
            }
        });
    }
}

/// An IPv4 client seen through a dual-stack socket counts as itself.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

struct Connection {
    app: Router,
    limits: Arc<Limits>,
    metrics: ListenerMetrics,
    cancel: CancellationToken,
    peer: SocketAddr,
}

impl Connection {
    async fn run<S>(self, stream: S, activity: Arc<Activity>, evict: CancellationToken)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(Watched {
            inner: stream,
            activity: activity.clone(),
        });
        let peer = self.peer;
        let in_flight = activity.clone();
        let service =
            self.app
                .map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    req
                });
        let service = InFlight {
            inner: service,
            activity: in_flight,
        };
        // The header and idle timeouts are this task's own watchdog below, not hyper's
        // header-read timer: that one arms a timer on every request, which the manifest
        // bench measured as a tenth of a 304's cost.
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.keep_alive(true);
        let conn = builder.serve_connection(io, TowerToHyperService::new(service));
        let mut conn = std::pin::pin!(conn);
        let (header, idle) = (self.limits.header_timeout, self.limits.idle_timeout);
        let mut shutting_down = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        if e.is_timeout() {
                            self.metrics.timed_out.inc();
                        }
                        debug!(%peer, error = %e, "HTTP connection ended");
                    }
                    return;
                }
                _ = self.cancel.cancelled(), if !shutting_down => {
                    shutting_down = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = evict.cancelled(), if !shutting_down => {
                    // Chosen to make room because it was idle (or trickling a request
                    // head): closed at once. A request dispatched since finishes first.
                    self.metrics.evicted.inc();
                    if activity.in_flight.load(Ordering::Relaxed) == 0 {
                        debug!(%peer, "idle HTTP connection evicted to make room");
                        return;
                    }
                    shutting_down = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = tokio::time::sleep(activity.until_deadline(header, idle)) => {
                    if activity.past_deadline(header, idle) {
                        self.metrics.timed_out.inc();
                        debug!(%peer, "HTTP connection closed: no request head in time, or idle");
                        return;
                    }
                }
            }
        }
    }
}

/// What a connection is doing, for its watchdog and for eviction. Times are milliseconds
/// since the connection opened; a head time of 0 means no request head has begun.
struct Activity {
    start: Instant,
    /// When it last moved a byte either way.
    last_ms: AtomicU64,
    /// When the last response was handed over (0: none yet).
    done_ms: AtomicU64,
    /// When the first byte of the request head now arriving came (+1; 0: none).
    head_ms: AtomicU64,
    in_flight: AtomicUsize,
    /// Whether a request was answered on this connection.
    served: std::sync::atomic::AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            done_ms: AtomicU64::new(0),
            head_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            served: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) -> u64 {
        let ms = self.now_ms();
        self.last_ms.store(ms, Ordering::Relaxed);
        ms
    }

    /// Bytes arrived: a request head begins if none is in flight or arriving.
    fn read(&self) {
        let ms = self.touch();
        if self.in_flight.load(Ordering::Relaxed) == 0 && self.head_ms.load(Ordering::Relaxed) == 0
        {
            self.head_ms.store(ms + 1, Ordering::Relaxed);
        }
    }

    fn silent_for(&self) -> Duration {
        Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.last_ms.load(Ordering::Relaxed)),
        )
    }

    /// When the connection must have done something by, in ms since it opened: with a
    /// request in flight, never (`None`); with a head arriving, `header` after its first
    /// byte; kept alive after a response, `idle` after it (or after its last byte); new,
    /// `header` after opening.
    fn deadline_ms(&self, header: Duration, idle: Duration) -> Option<u64> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let head = self.head_ms.load(Ordering::Relaxed);
        Some(if head > 0 {
            (head - 1).saturating_add(ms(header))
        } else if self.served.load(Ordering::Relaxed) {
            // From the later of the last response and the last byte (a response body may
            // still be streaming after its handler returned).
            self.done_ms
                .load(Ordering::Relaxed)
                .max(self.last_ms.load(Ordering::Relaxed))
                .saturating_add(ms(idle))
        } else {
            ms(header)
        })
    }

    fn past_deadline(&self, header: Duration, idle: Duration) -> bool {
        self.deadline_ms(header, idle)
            .is_some_and(|deadline| self.now_ms() >= deadline)
    }

    /// How long the watchdog sleeps before looking again.
    fn until_deadline(&self, header: Duration, idle: Duration) -> Duration {
        match self.deadline_ms(header, idle) {
            Some(deadline) => Duration::from_millis(deadline.saturating_sub(self.now_ms())),
            // A request in flight (a long-poll): look again later.
            None => idle,
        }
        .max(Duration::from_millis(50))
    }
}

/// A stream that records when it last moved a byte.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A service wrapper that counts requests in flight, so a long-poll is never idle.
#[derive(Clone)]
struct InFlight<S> {
    inner: S,
    activity: Arc<Activity>,
}

/// Decrements the in-flight count when a request's response is ready (or dropped).
struct InFlightGuard(Arc<Activity>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let ms = self.0.touch();
        self.0.done_ms.store(ms, Ordering::Relaxed);
        self.0.served.store(true, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<S, B> tower::Service<axum::extract::Request<B>> for InFlight<S>
where
    S: tower::Service<axum::extract::Request<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: axum::extract::Request<B>) -> Self::Future {
        self.activity.in_flight.fetch_add(1, Ordering::Relaxed);
        // The head is complete: the header timeout is over for this request.
        self.activity.head_ms.store(0, Ordering::Relaxed);
        let guard = InFlightGuard(self.activity.clone());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = fut.await;
            drop(guard);
            result
        })
    }
}
