//! What every node (`taplink-central`, `taplink-hub`, `taplink-kiosk`) does the same way:
//! its tasks' [`Lifecycle`] (one cancellation token, one task tracker, the first failure
//! that stopped it), the log format and subscriber, retry delays, and waiting for the
//! signal to stop.

mod lifecycle;

pub use lifecycle::{Lifecycle, SHUTDOWN_GRACE, ShutdownError};

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How log lines are written to standard error: the `--log-format` flag of every node and
/// the `log_format` field of central's and the kiosk's config files.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line, for journald or a log collector.
    Json,
}

impl LogFormat {
    /// The name used in config files and on the command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is neither `text` nor `json`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log format {0:?}: expected \"text\" or \"json\"")]
pub struct ParseLogFormatError(String);

impl FromStr for LogFormat {
    type Err = ParseLogFormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            // Clipped: the message quotes what it refuses, which could be anything.
            other => Err(ParseLogFormatError(other.chars().take(120).collect())),
        }
    }
}

/// Log to standard error in `format`, at the level `RUST_LOG` says (default `info`).
/// Call once, first thing; a second call leaves the first subscriber in place.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init`: tests may run several nodes' command lines in one process.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Retry delays: exponential, capped, with full jitter between `min` and the current
/// ceiling, so that the kiosks of a venue (or the hubs of an organisation) do not all come
/// back at the same instant; [`Backoff::reset`] after a success.
///
/// The delay before retry `n` (0-based) is uniform in `[min, min(max, min·2ⁿ)]`. The floor
/// of `min` keeps a node that fails at once from spinning.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff from `min`, doubling up to `max` (raised to `min` if smaller).
    pub fn new((min, max): (Duration, Duration)) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// The current ceiling: `min·2^attempt`, capped at `max`.
    fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }

    /// The next delay, drawn with `rng` (for reproducible tests).
    pub fn next_delay_with(&mut self, rng: &mut impl rand::Rng) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        rng.random_range(self.min..=ceiling)
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_with(&mut rand::rng())
    }

    /// Start again from `min` (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Sleep for `d` unless `cancel` fires first; whether the sleep completed.
pub async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// Ctrl-C or SIGTERM. If SIGTERM cannot be watched, Ctrl-C still works (and a warning
/// says so); never waits forever for a signal it cannot receive.
pub async fn shutdown_signal() {
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    first_signal(term, tokio::signal::ctrl_c()).await;
}

/// Whichever comes first of SIGTERM (if it could be watched) and `ctrl_c`. If neither can
/// be watched there is nothing to wait for: the node keeps running until killed, and says
/// so.
async fn first_signal(
    term: std::io::Result<tokio::signal::unix::Signal>,
    ctrl_c: impl std::future::Future<Output = std::io::Result<()>>,
) {
    match term {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot watch SIGTERM; stop with Ctrl-C");
            if let Err(error) = ctrl_c.await {
                tracing::error!(%error, "cannot watch Ctrl-C either; stop with SIGKILL");
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// The kiosk's old property: within `[min, ceiling]`, and `min` again after a reset.
    #[test]
    fn delays_grow_stay_within_bounds_and_reset() {
        let (min, max) = (Duration::from_millis(100), Duration::from_millis(1_000));
        let mut b = Backoff::new((min, max));
        for attempt in 0..20u32 {
            let d = b.next_delay();
            let ceiling = (min * 2u32.pow(attempt.min(10))).min(max);
            assert!(d >= min && d <= ceiling, "attempt {attempt}: {d:?}");
        }
        b.reset();
        assert_eq!(b.next_delay(), min, "the first delay after a reset is min");
    }

    /// The hub uplink's old property: under an exponential, capped ceiling for any number
    /// of attempts, and spread out (full jitter) at the cap.
    #[test]
    fn backoff_is_full_jitter_under_an_exponential_capped_ceiling() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (min, max) = (Duration::from_millis(500), Duration::from_secs(60));
        let mut b = Backoff::new((min, max));
        for attempt in 0..40 {
            let ceiling = (min * 2u32.pow(attempt.min(20))).min(max);
            for _ in 0..50 {
                let mut at = b.clone();
                let d = at.next_delay_with(&mut rng);
                assert!(d <= ceiling, "attempt {attempt}: {d:?} > {ceiling:?}");
            }
            b.next_delay_with(&mut rng);
        }
        // Full jitter spreads retries: many distinct delays at the cap.
        let delays: std::collections::BTreeSet<_> =
            (0..100).map(|_| b.next_delay_with(&mut rng)).collect();
        assert!(delays.len() > 90);
    }

    #[test]
    fn log_formats_parse_from_flags_and_config_files() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert!("yaml".parse::<LogFormat>().is_err());
        let f: LogFormat = serde_json::from_str("\"text\"").unwrap();
        assert_eq!(f, LogFormat::Text);
        assert_eq!(serde_json::to_string(&LogFormat::Json).unwrap(), "\"json\"");
    }

    /// A node whose SIGTERM cannot be watched still stops on Ctrl-C (it used to wait on a
    /// future that never completes).
    #[tokio::test]
    async fn without_sigterm_ctrl_c_still_stops_the_node() {
        let no_term = Err(std::io::Error::other("signal registration refused"));
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            super::first_signal(no_term, async { Ok(()) }),
        )
        .await
        .expect("Ctrl-C did not stop the node");
    }
}
