//! Retry delays: exponential with full jitter, so that every kiosk of a venue does not hit
//! a hub that comes back at the same instant; and a cancellable sleep.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Exponential backoff with full jitter between `min` and a cap.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff from `min`, doubling up to `max`.
    pub fn new((min, max): (Duration, Duration)) -> Self {
        Self {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// The next delay: uniformly random in `[min, min·2^attempt]`, capped.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .min
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let span = ceiling.saturating_sub(self.min).as_millis();
        let jitter = u64::try_from(span).unwrap_or(u64::MAX);
        self.min + Duration::from_millis(rand::random_range(0..=jitter))
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
