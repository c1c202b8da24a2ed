//! A userspace UDP "WAN" between hubs and central: delay, jitter, loss and cuts over
//! loopback, because `tc netem` is not available on the machines the simulations run on.
//!
//! The model is a NAT at the venue followed by a faulty link. Every distinct client source
//! address gets its own upstream socket (its NAT mapping), so many hubs can share one proxy
//! and each reply goes back to the client that caused it. The NAT sits *before* the link:
//! a cut drops datagrams but keeps the mappings, as a real WAN outage leaves the venue
//! router's NAT entries alone, and a QUIC connection can resume on the same 4-tuple once
//! the link heals. Mappings idle for longer than [`ProxyConfig::nat_idle_timeout`] expire,
//! so long simulations do not leak sockets.
//!
//! Faults apply to both directions and are read for each datagram: loss and delay when the
//! proxy receives it, `down` both then and when it is due, so a cut also drops what was
//! already in flight. Loss and jitter come from a seeded RNG per direction, so a run with
//! the same seed and the same datagram order makes the same decisions.
//!
//! Memory is bounded: each direction queues at most [`ProxyConfig::max_queued_datagrams`]
//! datagrams and [`ProxyConfig::max_queued_bytes`] bytes, and at most
//! [`ProxyConfig::max_mappings`] clients are mapped; anything beyond is dropped and
//! counted, like a router's full buffer. Socket errors are counted and logged, never fatal:
//! Linux reports an ICMP port-unreachable from a dead upstream as an error on the next
//! receive, and the proxy must keep running while central restarts.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;
use tokio::sync::{Notify, mpsc};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

/// The largest UDP payload the proxy forwards (the IPv4 UDP limit); receive buffers have
/// this size so no datagram is ever truncated.
pub const MAX_DATAGRAM: usize = 65_535;

/// Delay plus jitter is capped here: a simulation asking for more is a mistake, and the
/// cap keeps deadline arithmetic far from overflow.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);

/// Capacity of the channel from the per-mapping reply readers to the task that delays
/// replies. A reader never waits on it (a full channel drops, like a full router queue),
/// so one busy client cannot stall the others.
const TO_CLIENT_CHANNEL: usize = 1024;

/// Sweeping for idle mappings more often than this would only burn CPU in tests that set
/// tiny idle timeouts.
const MIN_SWEEP_PERIOD: Duration = Duration::from_millis(10);

/// The faults of the link, applied to both directions.
///
/// [`Default`] is a clean link. Build others with struct update syntax:
/// `LinkFaults { loss: 0.1, ..LinkFaults::default() }`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LinkFaults {
    /// The link is cut: every datagram is dropped both ways, including those already
    /// queued for delivery. NAT mappings are kept.
    pub down: bool,
    /// One-way delay added to every datagram.
    pub delay: Duration,
    /// Extra one-way delay, uniform in `0..=jitter` and drawn per datagram; it reorders
    /// datagrams, which is intended (real WANs do). `delay + jitter` is capped at
    /// [`MAX_DELAY`].
    pub jitter: Duration,
    /// Probability that a datagram is dropped, in `0.0..=1.0`; values outside are clamped
    /// and NaN counts as no loss.
    pub loss: f64,
}

/// Tuning of a [`WanProxy`]; [`Default`] suits tests and simulations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Seed of the loss and jitter RNGs (one per direction, both derived from it).
    pub seed: u64,
    /// A NAT mapping with no datagram either way for this long is removed and its socket
    /// closed; the client's next datagram creates a new mapping with a new source port,
    /// as a real NAT would. Default 120 s.
    pub nat_idle_timeout: Duration,
    /// At most this many datagrams wait for delivery per direction; more are dropped.
    /// Default 10,000.
    pub max_queued_datagrams: usize,
    /// At most this many payload bytes wait for delivery per direction; more are dropped.
    /// Should be at least [`MAX_DATAGRAM`]. Default 64 MiB.
    pub max_queued_bytes: usize,
    /// At most this many clients are mapped at once (each mapping holds a socket);
    /// datagrams from further clients are dropped. Default 10,000.
    pub max_mappings: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            nat_idle_timeout: Duration::from_secs(120),
            max_queued_datagrams: 10_000,
            max_queued_bytes: 64 << 20,
            max_mappings: 10_000,
        }
    }
}

/// What happened to the datagrams of one direction since the proxy started.
///
/// Every received datagram ends up forwarded, in one of the dropped counters, or still
/// queued ([`DirectionStats::in_flight`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DirectionStats {
    /// Datagrams the proxy read from its sockets.
    pub received: u64,
    /// Their payload bytes.
    pub received_bytes: u64,
    /// Datagrams handed to the operating system for delivery.
    pub forwarded: u64,
    /// Their payload bytes.
    pub forwarded_bytes: u64,
    /// Dropped because the link was down, on arrival or when due.
    pub dropped_down: u64,
    /// Dropped by random loss.
    pub dropped_loss: u64,
    /// Dropped because the delivery queue was full.
    pub dropped_overflow: u64,
    /// Dropped because no NAT mapping could be made (limit reached, or no socket could be
    /// bound); only the client-to-upstream direction counts these.
    pub dropped_nat: u64,
    /// Dropped because the operating system refused to send them.
    pub send_errors: u64,
    /// Payload bytes of every dropped datagram.
    pub dropped_bytes: u64,
    /// Errors reading from a socket (for example an ICMP port-unreachable reported on a
    /// mapping socket while the upstream is down); no datagram is lost by these.
    pub recv_errors: u64,
}

impl DirectionStats {
    /// All dropped datagrams, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_down
            + self.dropped_loss
            + self.dropped_overflow
            + self.dropped_nat
            + self.send_errors
    }

    /// Datagrams received but neither forwarded nor dropped yet: queued for delivery.
    pub fn in_flight(&self) -> u64 {
        self.received
            .saturating_sub(self.forwarded.saturating_add(self.dropped()))
    }
}

/// A snapshot of a proxy's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyStats {
    /// Client to upstream (hub to central).
    pub to_upstream: DirectionStats,
    /// Upstream to client (central to hub).
    pub to_client: DirectionStats,
    /// NAT mappings currently open.
    pub nat_mappings: u64,
    /// NAT mappings created since the proxy started.
    pub nat_created: u64,
    /// NAT mappings removed because they were idle.
    pub nat_expired: u64,
}

/// A running proxy. Dropping it or calling [`WanProxy::shutdown`] stops its tasks and
/// closes its sockets.
pub struct WanProxy {
    local_addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl fmt::Debug for WanProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WanProxy")
            .field("local_addr", &self.local_addr)
            .field("upstream", &self.upstream)
            .field("faults", &self.shared.faults())
            .finish_non_exhaustive()
    }
}

impl WanProxy {
    /// Listen on `listen` (e.g. `127.0.0.1:0`) and forward to `upstream` over a clean
    /// link, with the default [`ProxyConfig`] and the given RNG seed.
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        seed: u64,
    ) -> io::Result<WanProxy> {
        Self::start_with(
            listen,
            upstream,
            ProxyConfig {
                seed,
                ..ProxyConfig::default()
            },
        )
        .await
    }

    /// Like [`WanProxy::start`], with every tuning knob given.
    pub async fn start_with(
        listen: SocketAddr,
        upstream: SocketAddr,
        config: ProxyConfig,
    ) -> io::Result<WanProxy> {
        let listen = Arc::new(UdpSocket::bind(listen).await?);
        let local_addr = listen.local_addr()?;
        let shared = Arc::new(Shared {
            faults: Mutex::new(LinkFaults::default()),
            to_upstream: Counters::default(),
            to_client: Counters::default(),
            nat_mappings: AtomicU64::new(0),
            nat_created: AtomicU64::new(0),
            nat_expired: AtomicU64::new(0),
            changed: Notify::new(),
            epoch: Instant::now(),
        });
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        // Two independent streams, so the decisions in one direction do not depend on how
        // the other direction's traffic interleaves with it.
        let mut root = StdRng::seed_from_u64(config.seed);
        let upstream_rng = StdRng::from_rng(&mut root);
        let client_rng = StdRng::from_rng(&mut root);
        let (to_client_tx, to_client_rx) = mpsc::channel(TO_CLIENT_CHANNEL);

        let outbound = ToUpstream {
            listen: listen.clone(),
            upstream,
            line: DelayLine::new(upstream_rng, &config),
            nat: HashMap::new(),
            to_client: to_client_tx,
            shared: shared.clone(),
            config,
            cancel: cancel.clone(),
            tracker: tracker.clone(),
        };
        let inbound = ToClient {
            line: DelayLine::new(client_rng, &outbound.config),
            listen,
            inbox: to_client_rx,
            shared: shared.clone(),
            cancel: cancel.clone(),
        };
        tracker.spawn(outbound.run());
        tracker.spawn(inbound.run());
        debug!(%local_addr, %upstream, "WAN proxy started");
        Ok(WanProxy {
            local_addr,
            upstream,
            shared,
            cancel,
            tracker,
        })
    }

    /// The address clients send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address datagrams are forwarded to.
    pub fn upstream_addr(&self) -> SocketAddr {
        self.upstream
    }

    /// The faults currently applied.
    pub fn faults(&self) -> LinkFaults {
        self.shared.faults()
    }

    /// Apply `faults` to both directions, from the next datagram on (and, for `down`, to
    /// the datagrams already queued as they fall due).
    pub fn set_faults(&self, faults: LinkFaults) {
        *self.shared.lock_faults() = faults;
    }

    /// Cut the link: drop everything both ways until [`WanProxy::heal`] (or
    /// [`WanProxy::set_faults`]). Other faults are kept; NAT mappings are kept.
    pub fn cut(&self) {
        self.shared.lock_faults().down = true;
    }

    /// Back to a clean link: no cut, delay, jitter or loss.
    pub fn heal(&self) {
        self.set_faults(LinkFaults::default());
    }

    /// The counters so far.
    pub fn stats(&self) -> ProxyStats {
        self.shared.stats()
    }

    /// Wait until `done` holds for the counters and return them. Checked now and after
    /// every change; it never returns if the condition never holds (or the proxy has shut
    /// down), so wrap it in [`tokio::time::timeout`].
    pub async fn wait_for_stats(&self, mut done: impl FnMut(&ProxyStats) -> bool) -> ProxyStats {
        loop {
            // Registered before reading, so a change between the read and the await is
            // not missed.
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let stats = self.stats();
            if done(&stats) {
                return stats;
            }
            changed.await;
        }
    }

    /// Stop every task and wait for them to finish; the sockets are closed when this
    /// returns. Datagrams still queued are discarded.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        debug!(local_addr = %self.local_addr, "WAN proxy stopped");
    }
}

impl Drop for WanProxy {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// State shared by the handle and the tasks.
#[derive(Debug)]
struct Shared {
    faults: Mutex<LinkFaults>,
    to_upstream: Counters,
    to_client: Counters,
    nat_mappings: AtomicU64,
    nat_created: AtomicU64,
    nat_expired: AtomicU64,
    /// Notified after counters change, for [`WanProxy::wait_for_stats`].
    changed: Notify,
    /// Origin of the millisecond timestamps in [`Mapping::last_active`].
    epoch: Instant,
}

impl Shared {
    fn lock_faults(&self) -> std::sync::MutexGuard<'_, LinkFaults> {
        // The guarded value is plain data written in one assignment, so a panic while it
        // was held cannot have left it half-updated: poisoning is safe to ignore.
        self.faults
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn faults(&self) -> LinkFaults {
        *self.lock_faults()
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn stats(&self) -> ProxyStats {
        ProxyStats {
            to_upstream: self.to_upstream.snapshot(),
            to_client: self.to_client.snapshot(),
            nat_mappings: self.nat_mappings.load(AtomicOrdering::Relaxed),
            nat_created: self.nat_created.load(AtomicOrdering::Relaxed),
            nat_expired: self.nat_expired.load(AtomicOrdering::Relaxed),
        }
    }
}

/// Counters of one direction. Relaxed atomics suffice: each counter is independent, and
/// [`Notify`] orders them before a waiter's next read.
#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    received_bytes: AtomicU64,
    forwarded: AtomicU64,
    forwarded_bytes: AtomicU64,
    dropped_down: AtomicU64,
    dropped_loss: AtomicU64,
    dropped_overflow: AtomicU64,
    dropped_nat: AtomicU64,
    send_errors: AtomicU64,
    dropped_bytes: AtomicU64,
    recv_errors: AtomicU64,
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DropReason {
    Down,
    Loss,
    Overflow,
    Nat,
    SendError,
}

impl Counters {
    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, AtomicOrdering::Relaxed);
    }

    fn received(&self, len: usize) {
        Self::add(&self.received, 1);
        Self::add(&self.received_bytes, len);
    }

    fn forwarded(&self, len: usize) {
        Self::add(&self.forwarded, 1);
        Self::add(&self.forwarded_bytes, len);
    }

    fn dropped(&self, why: DropReason, len: usize) {
        let counter = match why {
            DropReason::Down => &self.dropped_down,
            DropReason::Loss => &self.dropped_loss,
            DropReason::Overflow => &self.dropped_overflow,
            DropReason::Nat => &self.dropped_nat,
            DropReason::SendError => &self.send_errors,
        };
        Self::add(counter, 1);
        Self::add(&self.dropped_bytes, len);
    }

    fn snapshot(&self) -> DirectionStats {
        let get = |c: &AtomicU64| c.load(AtomicOrdering::Relaxed);
        DirectionStats {
            received: get(&self.received),
            received_bytes: get(&self.received_bytes),
            forwarded: get(&self.forwarded),
            forwarded_bytes: get(&self.forwarded_bytes),
            dropped_down: get(&self.dropped_down),
            dropped_loss: get(&self.dropped_loss),
            dropped_overflow: get(&self.dropped_overflow),
            dropped_nat: get(&self.dropped_nat),
            send_errors: get(&self.send_errors),
            dropped_bytes: get(&self.dropped_bytes),
            recv_errors: get(&self.recv_errors),
        }
    }
}

/// The outcome of offering a datagram to a [`DelayLine`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Queued for delivery.
    Queued,
    /// Dropped.
    Dropped(DropReason),
}

/// One direction's queue of datagrams waiting for their delivery time: the pure part of
/// the proxy (time comes in as an argument), so its decisions are unit-tested without
/// sockets.
struct DelayLine<D> {
    queue: BinaryHeap<Pending<D>>,
    queued_bytes: usize,
    next_seq: u64,
    rng: StdRng,
    max_datagrams: usize,
    max_bytes: usize,
}

/// A queued datagram. Ordered so the heap's top is the earliest due; the sequence number
/// keeps datagrams with equal due times in arrival order.
struct Pending<D> {
    due: Instant,
    seq: u64,
    data: Vec<u8>,
    dest: D,
}

impl<D> PartialEq for Pending<D> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<D> Eq for Pending<D> {}

impl<D> PartialOrd for Pending<D> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<D> Ord for Pending<D> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and the earliest (due, seq) must come first.
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

impl<D> DelayLine<D> {
    fn new(rng: StdRng, config: &ProxyConfig) -> Self {
        Self {
            queue: BinaryHeap::new(),
            queued_bytes: 0,
            next_seq: 0,
            rng,
            max_datagrams: config.max_queued_datagrams,
            max_bytes: config.max_queued_bytes,
        }
    }

    /// Decide the fate of a datagram that arrived at `now` under `faults`. The payload is
    /// only copied when it is queued.
    fn offer<P>(&mut self, faults: &LinkFaults, now: Instant, data: P, dest: D) -> Verdict
    where
        P: AsRef<[u8]> + Into<Vec<u8>>,
    {
        let len = data.as_ref().len();
        if faults.down {
            return Verdict::Dropped(DropReason::Down);
        }
        if lose(&mut self.rng, faults.loss) {
            return Verdict::Dropped(DropReason::Loss);
        }
        if self.queue.len() >= self.max_datagrams
            || self.queued_bytes.saturating_add(len) > self.max_bytes
        {
            return Verdict::Dropped(DropReason::Overflow);
        }
        let jitter = if faults.jitter.is_zero() {
            Duration::ZERO
        } else {
            let max = u64::try_from(faults.jitter.min(MAX_DELAY).as_nanos()).unwrap_or(u64::MAX);
            Duration::from_nanos(self.rng.random_range(0..=max))
        };
        let wait = faults.delay.saturating_add(jitter).min(MAX_DELAY);
        self.queue.push(Pending {
            due: now + wait,
            seq: self.next_seq,
            data: data.into(),
            dest,
        });
        self.next_seq += 1;
        self.queued_bytes += len;
        Verdict::Queued
    }

    /// When the earliest queued datagram is due.
    fn next_due(&self) -> Option<Instant> {
        self.queue.peek().map(|p| p.due)
    }

    /// The earliest queued datagram if it is due at `now`.
    fn pop_due(&mut self, now: Instant) -> Option<(Vec<u8>, D)> {
        if self.queue.peek()?.due > now {
            return None;
        }
        let pending = self.queue.pop()?;
        self.queued_bytes -= pending.data.len();
        Some((pending.data, pending.dest))
    }
}

/// Whether random loss with probability `p` drops this datagram. No RNG draw happens for
/// a lossless link, so changing only the delay does not shift the loss decisions.
fn lose(rng: &mut StdRng, p: f64) -> bool {
    if p.is_nan() || p <= 0.0 {
        false
    } else if p >= 1.0 {
        true
    } else {
        rng.random_bool(p)
    }
}

/// Sleep until `due`, or forever when nothing is queued.
async fn sleep_until_due(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// A client's NAT mapping: its own socket, connected to the upstream.
struct Mapping {
    socket: Arc<UdpSocket>,
    /// Milliseconds since [`Shared::epoch`] of the last datagram either way.
    last_active: Arc<AtomicU64>,
    /// Stops the task reading replies on `socket`.
    cancel: CancellationToken,
}

/// A reply read from a mapping socket, on its way to the client.
struct Reply {
    data: Vec<u8>,
    client: SocketAddr,
    at: Instant,
}

/// The client-to-upstream task: reads the listening socket, keeps the NAT table and
/// delivers delayed datagrams through each client's mapping socket.
struct ToUpstream {
    listen: Arc<UdpSocket>,
    upstream: SocketAddr,
    line: DelayLine<Arc<UdpSocket>>,
    nat: HashMap<SocketAddr, Mapping>,
    to_client: mpsc::Sender<Reply>,
    shared: Arc<Shared>,
    config: ProxyConfig,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl ToUpstream {
    async fn run(mut self) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let period = (self.config.nat_idle_timeout / 4).max(MIN_SWEEP_PERIOD);
        let mut sweep = tokio::time::interval_at(Instant::now() + period, period);
        sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let due = self.line.next_due();
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => break,
                () = sleep_until_due(due) => self.deliver_due().await,
                _ = sweep.tick() => self.expire_idle(),
                received = self.listen.recv_from(&mut buf) => match received {
                    Ok((len, client)) => {
                        self.on_datagram(&buf[..len], client);
                        self.deliver_due().await;
                    }
                    Err(error) => {
                        Counters::add(&self.shared.to_upstream.recv_errors, 1);
                        debug!(%error, "WAN proxy: receive on the listening socket failed");
                        tokio::task::yield_now().await;
                    }
                },
            }
        }
        // Ending the mapping tasks explicitly is redundant with the parent token, but
        // keeps them from outliving the table if this task ever ends on its own.
        for mapping in self.nat.values() {
            mapping.cancel.cancel();
        }
    }

    fn on_datagram(&mut self, data: &[u8], client: SocketAddr) {
        let now = Instant::now();
        self.shared.to_upstream.received(data.len());
        let verdict = match self.mapping(client, now) {
            Some(socket) => self.line.offer(&self.shared.faults(), now, data, socket),
            None => Verdict::Dropped(DropReason::Nat),
        };
        if let Verdict::Dropped(why) = verdict {
            self.shared.to_upstream.dropped(why, data.len());
        }
        self.shared.changed.notify_waiters();
    }

    /// The mapping socket for `client`, made on its first datagram; `None` if the table
    /// is full or no socket could be bound.
    fn mapping(&mut self, client: SocketAddr, now: Instant) -> Option<Arc<UdpSocket>> {
        let now_ms = self.shared.millis(now);
        if let Some(mapping) = self.nat.get(&client) {
            mapping.last_active.store(now_ms, AtomicOrdering::Relaxed);
            return Some(mapping.socket.clone());
        }
        if self.nat.len() >= self.config.max_mappings {
            debug!(%client, limit = self.config.max_mappings, "WAN proxy: NAT table full");
            return None;
        }
        let socket = match bind_connected(self.upstream) {
            Ok(socket) => Arc::new(socket),
            Err(error) => {
                warn!(%client, %error, "WAN proxy: could not open a NAT mapping socket");
                return None;
            }
        };
        let mapping = Mapping {
            socket: socket.clone(),
            last_active: Arc::new(AtomicU64::new(now_ms)),
            cancel: self.cancel.child_token(),
        };
        self.tracker.spawn(read_replies(
            socket.clone(),
            client,
            self.shared.clone(),
            self.to_client.clone(),
            mapping.last_active.clone(),
            mapping.cancel.clone(),
        ));
        debug!(%client, mapped = ?socket.local_addr().ok(), "WAN proxy: NAT mapping created");
        self.nat.insert(client, mapping);
        self.shared
            .nat_created
            .fetch_add(1, AtomicOrdering::Relaxed);
        self.shared
            .nat_mappings
            .store(self.nat.len() as u64, AtomicOrdering::Relaxed);
        Some(socket)
    }

    async fn deliver_due(&mut self) {
        let now = Instant::now();
        let counters = &self.shared.to_upstream;
        while let Some((data, socket)) = self.line.pop_due(now) {
            if self.shared.faults().down {
                counters.dropped(DropReason::Down, data.len());
                continue;
            }
            match socket.send(&data).await {
                Ok(_) => counters.forwarded(data.len()),
                Err(error) => {
                    counters.dropped(DropReason::SendError, data.len());
                    debug!(%error, upstream = %self.upstream, "WAN proxy: send to upstream failed");
                }
            }
        }
        self.shared.changed.notify_waiters();
    }

    fn expire_idle(&mut self) {
        let now_ms = self.shared.millis(Instant::now());
        let idle_ms = u64::try_from(self.config.nat_idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let before = self.nat.len();
        self.nat.retain(|client, mapping| {
            let idle = now_ms.saturating_sub(mapping.last_active.load(AtomicOrdering::Relaxed));
            if idle < idle_ms {
                return true;
            }
            debug!(%client, idle_ms = idle, "WAN proxy: NAT mapping expired");
            mapping.cancel.cancel();
            false
        });
        let expired = before - self.nat.len();
        if expired > 0 {
            self.shared
                .nat_expired
                .fetch_add(expired as u64, AtomicOrdering::Relaxed);
            self.shared
                .nat_mappings
                .store(self.nat.len() as u64, AtomicOrdering::Relaxed);
            self.shared.changed.notify_waiters();
        }
    }
}

/// A fresh socket connected to `upstream`, bound to the loopback address of the same
/// family when the upstream is on loopback (so tests never touch other interfaces).
/// Connecting makes the kernel filter out datagrams from anyone but the upstream.
fn bind_connected(upstream: SocketAddr) -> io::Result<UdpSocket> {
    let ip = match upstream.ip() {
        ip if ip.is_loopback() => ip,
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    // std sockets bind and connect synchronously, so the NAT table is updated without an
    // await in the middle of handling a datagram.
    let socket = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))?;
    socket.connect(upstream)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

/// Read replies from the upstream on one mapping socket and pass them to [`ToClient`].
async fn read_replies(
    socket: Arc<UdpSocket>,
    client: SocketAddr,
    shared: Arc<Shared>,
    to_client: mpsc::Sender<Reply>,
    last_active: Arc<AtomicU64>,
    cancel: CancellationToken,
) {
    let counters = &shared.to_client;
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            ready = socket.readable() => if let Err(error) = ready {
                Counters::add(&counters.recv_errors, 1);
                warn!(%client, %error, "WAN proxy: waiting on a mapping socket failed");
                tokio::task::yield_now().await;
                continue;
            },
        }
        // The buffer is allocated only once a datagram is ready, so thousands of idle
        // mappings do not each hold 64 KiB; with_capacity leaves it uninitialised.
        let mut data = Vec::with_capacity(MAX_DATAGRAM);
        match socket.try_recv_buf(&mut data) {
            Ok(len) => {
                data.truncate(len);
                data.shrink_to_fit();
                let now = Instant::now();
                counters.received(len);
                last_active.store(shared.millis(now), AtomicOrdering::Relaxed);
                let reply = Reply {
                    data,
                    client,
                    at: now,
                };
                match to_client.try_send(reply) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(reply)) => {
                        counters.dropped(DropReason::Overflow, reply.data.len());
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => break,
                }
                shared.changed.notify_waiters();
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => {
                // Typically ECONNREFUSED: an ICMP port-unreachable from an upstream that
                // is not listening (yet). The next read gets the next datagram.
                Counters::add(&counters.recv_errors, 1);
                debug!(%client, %error, "WAN proxy: receive on a mapping socket failed");
                shared.changed.notify_waiters();
                tokio::task::yield_now().await;
            }
        }
    }
}

/// The upstream-to-client task: delays replies and sends them from the listening socket,
/// so each client sees them come from the address it sent to.
struct ToClient {
    listen: Arc<UdpSocket>,
    line: DelayLine<SocketAddr>,
    inbox: mpsc::Receiver<Reply>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
}

impl ToClient {
    async fn run(mut self) {
        loop {
            let due = self.line.next_due();
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => break,
                () = sleep_until_due(due) => self.deliver_due().await,
                reply = self.inbox.recv() => match reply {
                    Some(reply) => {
                        let len = reply.data.len();
                        let faults = self.shared.faults();
                        let verdict = self.line.offer(&faults, reply.at, reply.data, reply.client);
                        if let Verdict::Dropped(why) = verdict {
                            self.shared.to_client.dropped(why, len);
                        }
                        self.deliver_due().await;
                    }
                    // Every sender is gone: the client-to-upstream task has ended.
                    None => break,
                },
            }
        }
    }

    async fn deliver_due(&mut self) {
        let now = Instant::now();
        let counters = &self.shared.to_client;
        while let Some((data, client)) = self.line.pop_due(now) {
            if self.shared.faults().down {
                counters.dropped(DropReason::Down, data.len());
                continue;
            }
            match self.listen.send_to(&data, client).await {
                Ok(_) => counters.forwarded(data.len()),
                Err(error) => {
                    counters.dropped(DropReason::SendError, data.len());
                    debug!(%client, %error, "WAN proxy: send to client failed");
                }
            }
        }
        self.shared.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seed: u64) -> DelayLine<u32> {
        DelayLine::new(StdRng::seed_from_u64(seed), &ProxyConfig::default())
    }

    fn drain(line: &mut DelayLine<u32>, now: Instant) -> Vec<u32> {
        std::iter::from_fn(|| line.pop_due(now).map(|(_, d)| d)).collect()
    }

    #[test]
    fn a_clean_link_delivers_at_once_in_order() {
        let mut line = line(1);
        let now = Instant::now();
        for i in 0..100 {
            assert_eq!(
                line.offer(&LinkFaults::default(), now, vec![i as u8], i),
                Verdict::Queued
            );
        }
        assert_eq!(line.next_due(), Some(now));
        assert_eq!(drain(&mut line, now), (0..100).collect::<Vec<_>>());
        assert_eq!(line.queue.len(), 0);
        assert_eq!(line.queued_bytes, 0);
    }

    #[test]
    fn delay_holds_datagrams_until_due() {
        let mut line = line(1);
        let now = Instant::now();
        let faults = LinkFaults {
            delay: Duration::from_millis(50),
            ..LinkFaults::default()
        };
        line.offer(&faults, now, b"x".as_slice(), 7);
        assert_eq!(line.next_due(), Some(now + Duration::from_millis(50)));
        assert!(line.pop_due(now + Duration::from_millis(49)).is_none());
        assert_eq!(
            line.pop_due(now + Duration::from_millis(50)),
            Some((b"x".to_vec(), 7))
        );
    }

    #[test]
    fn jitter_stays_in_bounds_and_reorders() {
        let mut line = line(3);
        let now = Instant::now();
        let faults = LinkFaults {
            delay: Duration::from_millis(10),
            jitter: Duration::from_millis(20),
            ..LinkFaults::default()
        };
        for i in 0..200 {
            line.offer(&faults, now, vec![0u8; 10], i);
        }
        let mut dues = Vec::new();
        let mut order = Vec::new();
        while let Some(due) = line.next_due() {
            dues.push(due);
            order.extend(drain(&mut line, due));
        }
        assert!(dues.iter().all(|d| *d >= now + Duration::from_millis(10)));
        assert!(dues.iter().all(|d| *d <= now + Duration::from_millis(30)));
        assert_eq!(order.len(), 200);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            (0..200).collect::<Vec<_>>(),
            "nothing lost or duplicated"
        );
        assert_ne!(order, sorted, "jitter reorders");
    }

    #[test]
    fn loss_is_deterministic_per_seed_and_respects_the_extremes() {
        let now = Instant::now();
        let verdicts = |seed: u64, loss: f64| -> Vec<Verdict> {
            let mut line = line(seed);
            let faults = LinkFaults {
                loss,
                ..LinkFaults::default()
            };
            (0..1000)
                .map(|i| line.offer(&faults, now, b"d".as_slice(), i))
                .collect()
        };
        let a = verdicts(42, 0.3);
        assert_eq!(a, verdicts(42, 0.3));
        assert_ne!(a, verdicts(43, 0.3));
        let lost = a
            .iter()
            .filter(|v| **v == Verdict::Dropped(DropReason::Loss))
            .count();
        assert!((200..=400).contains(&lost), "lost {lost} of 1000 at p=0.3");
        for p in [0.0, -1.0, f64::NAN] {
            assert!(
                verdicts(1, p).iter().all(|v| *v == Verdict::Queued),
                "p={p}"
            );
        }
        for p in [1.0, 2.0] {
            assert!(
                verdicts(1, p)
                    .iter()
                    .all(|v| *v == Verdict::Dropped(DropReason::Loss)),
                "p={p}"
            );
        }
    }

    #[test]
    fn a_cut_link_drops_everything() {
        let mut line = line(1);
        let faults = LinkFaults {
            down: true,
            ..LinkFaults::default()
        };
        assert_eq!(
            line.offer(&faults, Instant::now(), b"x".as_slice(), 0),
            Verdict::Dropped(DropReason::Down)
        );
        assert_eq!(line.queue.len(), 0);
    }

    #[test]
    fn the_queue_is_bounded_by_count_and_bytes() {
        let now = Instant::now();
        let config = ProxyConfig {
            max_queued_datagrams: 3,
            max_queued_bytes: 100,
            ..ProxyConfig::default()
        };
        let mut line = DelayLine::new(StdRng::seed_from_u64(1), &config);
        let clean = LinkFaults::default();
        for i in 0..3 {
            assert_eq!(line.offer(&clean, now, vec![0u8; 10], i), Verdict::Queued);
        }
        assert_eq!(
            line.offer(&clean, now, vec![0u8; 10], 3),
            Verdict::Dropped(DropReason::Overflow)
        );
        assert!(line.pop_due(now).is_some());
        assert_eq!(
            line.offer(&clean, now, vec![0u8; 81], 4),
            Verdict::Dropped(DropReason::Overflow),
            "20 + 81 bytes exceed 100"
        );
        assert_eq!(line.offer(&clean, now, vec![0u8; 80], 5), Verdict::Queued);
        assert_eq!(line.queued_bytes, 100);
    }

    #[test]
    fn huge_delays_are_capped_instead_of_overflowing() {
        let mut line = line(1);
        let now = Instant::now();
        let faults = LinkFaults {
            delay: Duration::MAX,
            jitter: Duration::MAX,
            ..LinkFaults::default()
        };
        assert_eq!(
            line.offer(&faults, now, b"x".as_slice(), 0),
            Verdict::Queued
        );
        assert!(line.next_due().is_some_and(|d| d <= now + MAX_DELAY));
    }

    #[test]
    fn direction_stats_account_for_every_datagram() {
        let stats = DirectionStats {
            received: 10,
            forwarded: 4,
            dropped_down: 1,
            dropped_loss: 2,
            dropped_overflow: 1,
            ..DirectionStats::default()
        };
        assert_eq!(stats.dropped(), 4);
        assert_eq!(stats.in_flight(), 2);
    }
}
