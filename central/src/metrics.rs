//! Central's Prometheus metrics, served as OpenMetrics text on `GET /metrics`.
//!
//! Every metric is a field of [`Metrics`], registered once in [`Metrics::new`] under the
//! `taplink_central_` prefix. Counters and gauges are atomics, so recording never blocks.

use std::fmt;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::store::Counts;

/// Labels of an HTTP request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route template (`/api/v1/venues/{id}`), or `unmatched`: templates keep the
    /// number of series bounded whatever paths clients send.
    pub route: String,
    /// The HTTP method.
    pub method: String,
    /// The response status code.
    pub status: u16,
}

/// Every metric central exports.
pub struct Metrics {
    registry: Registry,
    /// `taplink_central_http_requests_total{route,method,status}`: HTTP requests answered.
    pub http_requests: Family<HttpLabels, Counter>,
    /// `taplink_central_venues`: venues in the registry (refreshed on each scrape).
    pub venues: Gauge,
    /// `taplink_central_hubs{state="active"|"revoked"}`: hubs in the registry (refreshed on
    /// each scrape).
    pub hubs: Family<HubStateLabels, Gauge>,
    /// `taplink_central_telemetry_events_total`: new telemetry events stored since start
    /// (duplicates by event id not counted).
    pub telemetry_events: Counter,
    /// `taplink_central_hub_connections`: hubs with an open sync connection.
    pub hub_connections: Gauge,
    /// `taplink_central_blobs_fetched_total`: media files fetched from hubs.
    pub blobs_fetched: Counter,
    /// `taplink_central_blob_bytes_fetched_total`: media bytes fetched from hubs.
    pub blob_bytes_fetched: Counter,
    /// `taplink_central_quic_retries_total`: retry tokens sent by admission control.
    pub quic_retries: Counter,
    /// `taplink_central_quic_refused_total`: connections refused with a full queue.
    pub quic_refused: Counter,
    /// `taplink_central_telemetry_refused_total`: telemetry events refused (a kiosk not in
    /// the sending hub's venue, a time outside the accepted window, a proof of play longer
    /// than a day).
    pub telemetry_refused: Counter,
    /// `taplink_central_telemetry_expired_total`: raw telemetry rows deleted by retention
    /// (their plays live on in the daily rollups).
    pub telemetry_expired: Counter,
    /// `taplink_central_plays_rolled_up_total`: expired plays added to the daily rollups.
    pub plays_rolled_up: Counter,
    /// `taplink_central_alerts_open{kind}`: open alerts (`crate::alerts`).
    pub alerts_open: Family<AlertLabels, Gauge>,
    /// `taplink_central_alert_webhook_sent_total`: alert events the webhook accepted.
    pub alert_webhook_sent: Counter,
    /// `taplink_central_alert_webhook_failed_total`: alert events dropped after every retry.
    pub alert_webhook_failed: Counter,
    /// `taplink_central_alert_webhook_dropped_total`: alert events dropped with the
    /// webhook's queue full.
    pub alert_webhook_dropped: Counter,
    /// The HTTP listener's connections (`taplink_central_http_connections…`).
    pub listener: taplink_sync_io::web::listener::ListenerMetrics,
    /// The guessing throttle (`taplink_central_auth_failures_total{kind}`,
    /// `taplink_central_auth_throttled_total`).
    pub throttle: std::sync::Arc<taplink_sync_io::web::guard::Throttle>,
    /// The same back-off per account (by lowercased username), so that a guessing run
    /// spread over many addresses still slows down on the account it targets. Its failures
    /// are counted in `throttle`'s metrics.
    pub account_throttle: std::sync::Arc<taplink_sync_io::web::guard::Throttle<String>>,
}

/// Labels of the open alerts gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    /// `hub_offline`, `kiosk_offline`, `disk_low` or `temperature_high`.
    pub kind: String,
}

/// Labels of the hubs gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HubStateLabels {
    /// `active` or `revoked`.
    pub state: &'static str,
}

impl Metrics {
    /// Every metric, registered and at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("taplink_central");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            http_requests.clone(),
        );
        let venues = Gauge::default();
        registry.register("venues", "Venues in the registry", venues.clone());
        let hubs = Family::<HubStateLabels, Gauge>::default();
        registry.register(
            "hubs",
            "Hubs in the registry, by state (active or revoked)",
            hubs.clone(),
        );
        let telemetry_events = Counter::default();
        registry.register(
            "telemetry_events",
            "New telemetry events stored since start (duplicates not counted)",
            telemetry_events.clone(),
        );
        let hub_connections = Gauge::default();
        registry.register(
            "hub_connections",
            "Hubs with an open sync connection",
            hub_connections.clone(),
        );
        let blobs_fetched = Counter::default();
        registry.register(
            "blobs_fetched",
            "Media files fetched from hubs",
            blobs_fetched.clone(),
        );
        let blob_bytes_fetched = Counter::default();
        registry.register(
            "blob_bytes_fetched",
            "Media bytes fetched from hubs",
            blob_bytes_fetched.clone(),
        );
        let quic_retries = Counter::default();
        registry.register(
            "quic_retries",
            "Retry tokens sent by admission control",
            quic_retries.clone(),
        );
        let quic_refused = Counter::default();
        registry.register(
            "quic_refused",
            "Connections refused because the queue was full",
            quic_refused.clone(),
        );
        let telemetry_refused = Counter::default();
        registry.register(
            "telemetry_refused",
            "Telemetry events refused: kiosk not in the hub's venue, time out of range, or an implausible proof of play",
            telemetry_refused.clone(),
        );
        let telemetry_expired = Counter::default();
        registry.register(
            "telemetry_expired",
            "Raw telemetry rows deleted by retention (older than telemetry_retention_days)",
            telemetry_expired.clone(),
        );
        let plays_rolled_up = Counter::default();
        registry.register(
            "plays_rolled_up",
            "Expired proof-of-play rows added to the daily rollups",
            plays_rolled_up.clone(),
        );
        let alerts_open = Family::<AlertLabels, Gauge>::default();
        registry.register("alerts_open", "Open alerts by kind", alerts_open.clone());
        let alert_webhook_sent = Counter::default();
        registry.register(
            "alert_webhook_sent",
            "Alert events the webhook accepted",
            alert_webhook_sent.clone(),
        );
        let alert_webhook_failed = Counter::default();
        registry.register(
            "alert_webhook_failed",
            "Alert events dropped after every retry of the webhook",
            alert_webhook_failed.clone(),
        );
        let alert_webhook_dropped = Counter::default();
        registry.register(
            "alert_webhook_dropped",
            "Alert events dropped because the webhook's queue was full",
            alert_webhook_dropped.clone(),
        );
        let listener = taplink_sync_io::web::listener::ListenerMetrics::default();
        listener.register(&mut registry);
        let throttle = std::sync::Arc::new(taplink_sync_io::web::guard::Throttle::new());
        throttle.register(&mut registry);
        Metrics {
            registry,
            telemetry_refused,
            telemetry_expired,
            plays_rolled_up,
            alerts_open,
            alert_webhook_sent,
            alert_webhook_failed,
            alert_webhook_dropped,
            listener,
            throttle,
            account_throttle: std::sync::Arc::default(),
            http_requests,
            venues,
            hubs,
            telemetry_events,
            hub_connections,
            blobs_fetched,
            blob_bytes_fetched,
            quic_retries,
            quic_refused,
        }
    }

    /// Count one answered HTTP request.
    pub fn http_request(&self, route: &str, method: &str, status: u16) {
        self.http_requests
            .get_or_create(&HttpLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .inc();
    }

    /// A hub connected (`1`) or disconnected (`-1`).
    pub fn hub_connected(&self, delta: i64) {
        self.hub_connections.inc_by(delta);
    }

    /// A media file of `bytes` was fetched from a hub.
    pub fn record_blob_fetched(&self, bytes: u64) {
        self.blobs_fetched.inc();
        self.blob_bytes_fetched.inc_by(bytes);
    }

    /// Set the open alerts gauge from the open alerts (every kind, zero included).
    pub fn set_open_alerts(&self, open: &[crate::store::Alert]) {
        for kind in [
            "hub_offline",
            "kiosk_offline",
            "disk_low",
            "temperature_high",
        ] {
            let n = open.iter().filter(|a| a.kind == kind).count();
            self.alerts_open
                .get_or_create(&AlertLabels {
                    kind: kind.to_owned(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Set the registry gauges from fresh counts.
    pub fn set_counts(&self, counts: Counts) {
        self.venues.set(saturating_i64(counts.venues));
        self.hubs
            .get_or_create(&HubStateLabels { state: "active" })
            .set(saturating_i64(counts.active_hubs));
        self.hubs
            .get_or_create(&HubStateLabels { state: "revoked" })
            .set(saturating_i64(counts.revoked_hubs));
    }

    /// The registry `GET /metrics` encodes ([`taplink_sync_io::web::metrics_response`]).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_every_metric_with_its_labels() {
        let m = Metrics::new();
        m.http_request("/healthz", "GET", 200);
        m.set_counts(Counts {
            venues: 3,
            active_hubs: 2,
            revoked_hubs: 1,
        });
        m.telemetry_events.inc_by(5);
        m.telemetry_expired.inc_by(7);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, m.registry()).unwrap();
        for line in [
            "taplink_central_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"} 1",
            "taplink_central_venues 3",
            "taplink_central_hubs{state=\"active\"} 2",
            "taplink_central_hubs{state=\"revoked\"} 1",
            "taplink_central_telemetry_events_total 5",
            "taplink_central_telemetry_expired_total 7",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
