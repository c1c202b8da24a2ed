//! The wall clock of every node (central, hubs, kiosks, simulations), behind a trait so
//! tests and simulations can set the time that manifests, expiries and timestamps are
//! computed at.
//!
//! This is the one module of the workspace that reads the wall clock: `clippy.toml`
//! disallows `SystemTime::now`, `Utc::now`, `Local::now`, `OffsetDateTime::now_utc` and
//! `std::time::Instant::now` everywhere else. A node is given an `Arc<dyn Clock>` when it
//! is bound (`SystemClock` in production, a [`ManualClock`] in tests) and keeps it in its
//! state; nothing below a node reads the time by itself.
//!
//! **Monotonic time** (timeouts, rates, durations) is not read here. Code reads it with
//! `tokio::time::Instant::now()` (`.into_std()` where an API takes std's `Instant`, as the
//! sync `Session` does): outside a paused runtime that is the system's monotonic clock, and
//! under `tokio::time::pause()` (`#[tokio::test(start_paused = true)]`) it is virtual, so
//! tests stay fast and deterministic. Benchmarks, which measure real elapsed time, read it
//! through `taplink_simulations::bench::clock` and nowhere else.
//!
//! The rest of this crate still never reads a clock: the session and the manifest take the
//! time as an argument.

use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, TimeDelta, Utc};

/// Where a node reads the current (wall-clock, UTC) time.
pub trait Clock: Send + Sync + Debug {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    /// The system clock as a node's shared clock.
    pub fn shared() -> Arc<dyn Clock> {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    #[allow(
        clippy::disallowed_methods,
        reason = "the system clock: the one place the wall clock is read"
    )]
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that reads what it was last set to (tests and simulations).
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    /// A clock reading `at`.
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Mutex::new(at))
    }

    /// Move the clock by `by`.
    pub fn advance(&self, by: TimeDelta) {
        let mut now = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
    }

    /// Set the clock.
    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_reads_what_it_was_set_to() {
        let t0 = DateTime::from_timestamp(1_772_366_400, 0).unwrap();
        let clock = ManualClock::new(t0);
        assert_eq!(clock.now(), t0);
        clock.advance(TimeDelta::seconds(90));
        assert_eq!(clock.now(), t0 + TimeDelta::seconds(90));
        clock.set(t0);
        assert_eq!(clock.now(), t0);
    }
}
