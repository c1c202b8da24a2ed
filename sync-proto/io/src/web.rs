//! What every Taplink node's HTTP API is served through: the hardened listener
//! ([`listener`]), routes that each declare who may use them ([`access`]), and the guards
//! they share ([`guard`]: guessing throttle, `Host` check, JSON writes), plus the headers
//! media is served with ([`media`]) and how stored bytes are served ([`serve`]).

pub mod access;
pub mod guard;
pub mod listener;
pub mod media;
pub mod serve;

/// A node's `GET /metrics` answer: its registry in the OpenMetrics text format.
pub fn metrics_response(
    registry: &prometheus_client::registry::Registry,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, registry) {
        Ok(()) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        // Writing into a String fails only if a metric's own encoding does.
        Err(error) => {
            tracing::error!(%error, "cannot encode the metrics");
            guard::json_error(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "the metrics could not be encoded; the failure has been logged",
            )
        }
    }
}
