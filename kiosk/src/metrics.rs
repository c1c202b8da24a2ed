//! The agent's Prometheus metrics, served at `/metrics` on the player server.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The label of [`Metrics::manifest`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct VersionLabel {
    /// The manifest version (its ETag).
    pub version: String,
}

/// Every metric the agent exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// 1 while the kiosk holds a device token.
    pub paired: Gauge,
    /// 1 while the hub answers.
    pub hub_reachable: Gauge,
    /// Milliseconds the last successful mDNS discovery took.
    pub discovery_ms: Gauge,
    /// Hubs found by mDNS.
    pub discoveries: Counter,
    /// 1 for the manifest version being played (one series).
    pub manifest: Family<VersionLabel, Gauge>,
    /// New manifests received.
    pub manifest_updates: Counter,
    /// Bytes in the media cache (updated after every change and when scraped).
    pub cache_bytes: Gauge,
    /// Media files downloaded and verified.
    pub media_fetched: Counter,
    /// Media bytes downloaded.
    pub media_bytes_fetched: Counter,
    /// Media downloads that failed (refused, broken off, or wrong hash).
    pub media_fetch_failures: Counter,
    /// Media files evicted from the cache.
    pub media_evicted: Counter,
    /// Events buffered for the hub (updated when scraped).
    pub events_pending: Gauge,
    /// Events the hub acknowledged.
    pub events_sent: Counter,
    /// Proof-of-play reports received from the player page.
    pub plays_reported: Counter,
    /// The player server's connections.
    pub listener: taplink_sync_io::web::listener::ListenerMetrics,
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("taplink_kiosk");
        let m = Self {
            registry: Registry::default(),
            paired: Gauge::default(),
            hub_reachable: Gauge::default(),
            discovery_ms: Gauge::default(),
            discoveries: Counter::default(),
            manifest: Family::default(),
            manifest_updates: Counter::default(),
            cache_bytes: Gauge::default(),
            media_fetched: Counter::default(),
            media_bytes_fetched: Counter::default(),
            media_fetch_failures: Counter::default(),
            media_evicted: Counter::default(),
            events_pending: Gauge::default(),
            events_sent: Counter::default(),
            plays_reported: Counter::default(),
            listener: Default::default(),
        };
        m.listener.register(&mut registry);
        registry.register(
            "paired",
            "1 while the kiosk holds a device token",
            m.paired.clone(),
        );
        registry.register(
            "hub_reachable",
            "1 while the hub answers",
            m.hub_reachable.clone(),
        );
        registry.register(
            "discovery_ms",
            "Milliseconds the last successful mDNS discovery took",
            m.discovery_ms.clone(),
        );
        registry.register("discoveries", "Hubs found by mDNS", m.discoveries.clone());
        registry.register(
            "manifest",
            "1 for the manifest version being played",
            m.manifest.clone(),
        );
        registry.register(
            "manifest_updates",
            "New manifests received from the hub",
            m.manifest_updates.clone(),
        );
        registry.register(
            "cache_bytes",
            "Bytes in the media cache",
            m.cache_bytes.clone(),
        );
        registry.register(
            "media_fetched",
            "Media files downloaded and verified",
            m.media_fetched.clone(),
        );
        registry.register(
            "media_bytes_fetched",
            "Media bytes downloaded",
            m.media_bytes_fetched.clone(),
        );
        registry.register(
            "media_fetch_failures",
            "Media downloads that failed",
            m.media_fetch_failures.clone(),
        );
        registry.register(
            "media_evicted",
            "Media files evicted from the cache",
            m.media_evicted.clone(),
        );
        registry.register(
            "events_pending",
            "Events buffered for the hub",
            m.events_pending.clone(),
        );
        registry.register(
            "events_sent",
            "Events the hub acknowledged",
            m.events_sent.clone(),
        );
        registry.register(
            "plays_reported",
            "Proof-of-play reports from the player page",
            m.plays_reported.clone(),
        );
        Self { registry, ..m }
    }

    /// Make `version` the one manifest series.
    pub fn set_manifest(&self, version: Option<&str>) {
        self.manifest.clear();
        if let Some(version) = version {
            self.manifest
                .get_or_create(&VersionLabel {
                    version: version.to_owned(),
                })
                .set(1);
        }
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
