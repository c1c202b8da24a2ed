//! The hub's Prometheus metrics, served at `/metrics`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The `reason` label of a refusal counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
pub struct Reason {
    /// Why.
    pub reason: &'static str,
}

/// Every metric the hub exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// 1 while a session with central is established.
    pub uplink_connected: Gauge,
    /// QUIC connections to central opened.
    pub uplink_connects: Counter,
    /// Media files fetched from central.
    pub blobs_fetched: Counter,
    /// Media bytes fetched from central.
    pub blob_bytes_fetched: Counter,
    /// Telemetry events acknowledged by central.
    pub telemetry_sent: Counter,
    /// Telemetry events waiting in the outbox (updated when scraped).
    pub outbox_pending: Gauge,
    /// Local edits applied through the API.
    pub local_edits: Counter,
    /// Kiosks holding an active device token (updated when scraped).
    pub kiosks_paired: Gauge,
    /// Kiosk manifest requests answered with a manifest (200).
    pub manifests_sent: Counter,
    /// Kiosk manifest requests answered "unchanged" (304).
    pub manifests_not_modified: Counter,
    /// Manifest long-polls waiting now.
    pub long_polls_open: Gauge,
    /// Media bytes sent to kiosks.
    pub kiosk_media_bytes: Counter,
    /// Kiosk events newly accepted into the outbox.
    pub kiosk_events_accepted: Counter,
    /// Kiosk codes from central redeemed (a kiosk paired without staff).
    pub kiosk_codes_redeemed: Counter,
    /// Pairing requests refused because their kiosk code was unknown, expired or used (a
    /// steady rise means someone is guessing).
    pub kiosk_codes_refused: Counter,
    /// The version of the roster held (0: none yet).
    pub roster_version: Gauge,
    /// Rosters from central refused, by reason (`unsigned`, `bad_signature`,
    /// `not_roster_signer`, `malformed`, `other_venue`, `older`).
    pub rosters_refused: prometheus_client::metrics::family::Family<Reason, Counter>,
    /// The HTTP listener's connections (open, accepted, refused over a cap, timed out).
    pub listener: taplink_sync_io::web::listener::ListenerMetrics,
    /// The guessing throttle, whose failure and refusal counters are exported here.
    pub throttle: std::sync::Arc<taplink_sync_io::web::guard::Throttle>,
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("taplink_hub");
        let m = Self {
            uplink_connected: Gauge::default(),
            uplink_connects: Counter::default(),
            blobs_fetched: Counter::default(),
            blob_bytes_fetched: Counter::default(),
            telemetry_sent: Counter::default(),
            outbox_pending: Gauge::default(),
            local_edits: Counter::default(),
            kiosks_paired: Gauge::default(),
            manifests_sent: Counter::default(),
            manifests_not_modified: Counter::default(),
            long_polls_open: Gauge::default(),
            kiosk_media_bytes: Counter::default(),
            kiosk_events_accepted: Counter::default(),
            kiosk_codes_redeemed: Counter::default(),
            kiosk_codes_refused: Counter::default(),
            roster_version: Gauge::default(),
            rosters_refused: Default::default(),
            listener: Default::default(),
            throttle: Default::default(),
            registry: Registry::default(),
        };
        m.listener.register(&mut registry);
        m.throttle.register(&mut registry);
        registry.register(
            "roster_version",
            "Version of the venue roster held (0: none yet)",
            m.roster_version.clone(),
        );
        registry.register(
            "rosters_refused",
            "Rosters from central refused, by reason",
            m.rosters_refused.clone(),
        );
        registry.register(
            "uplink_connected",
            "1 while a session with central is up",
            m.uplink_connected.clone(),
        );
        registry.register(
            "uplink_connects",
            "QUIC connections to central opened",
            m.uplink_connects.clone(),
        );
        registry.register(
            "blobs_fetched",
            "Media files fetched from central",
            m.blobs_fetched.clone(),
        );
        registry.register(
            "blob_bytes_fetched",
            "Media bytes fetched from central",
            m.blob_bytes_fetched.clone(),
        );
        registry.register(
            "telemetry_sent",
            "Telemetry events acknowledged by central",
            m.telemetry_sent.clone(),
        );
        registry.register(
            "outbox_pending",
            "Telemetry events waiting for central",
            m.outbox_pending.clone(),
        );
        registry.register(
            "local_edits",
            "Edits applied through the local API",
            m.local_edits.clone(),
        );
        registry.register(
            "kiosks_paired",
            "Kiosks holding an active device token",
            m.kiosks_paired.clone(),
        );
        registry.register(
            "kiosk_manifests_sent",
            "Kiosk manifest requests answered with a manifest (200)",
            m.manifests_sent.clone(),
        );
        registry.register(
            "kiosk_manifests_not_modified",
            "Kiosk manifest requests answered unchanged (304)",
            m.manifests_not_modified.clone(),
        );
        registry.register(
            "kiosk_long_polls_open",
            "Manifest long-polls waiting now",
            m.long_polls_open.clone(),
        );
        registry.register(
            "kiosk_media_bytes",
            "Media bytes sent to kiosks",
            m.kiosk_media_bytes.clone(),
        );
        registry.register(
            "kiosk_events_accepted",
            "Kiosk events newly accepted into the outbox",
            m.kiosk_events_accepted.clone(),
        );
        registry.register(
            "kiosk_codes_redeemed",
            "Kiosk codes from central redeemed: kiosks paired without staff",
            m.kiosk_codes_redeemed.clone(),
        );
        registry.register(
            "kiosk_codes_refused",
            "Pairing requests refused for an unknown, expired or used kiosk code",
            m.kiosk_codes_refused.clone(),
        );
        Self { registry, ..m }
    }

    /// The registry `GET /metrics` encodes ([`taplink_sync_io::web::metrics_response`]).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
