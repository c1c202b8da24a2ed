//! Timestamps as the registry stores them (Unix milliseconds) and as people read them (RFC 3339).

use std::fmt;

use chrono::{DateTime, Datelike as _, Timelike as _, Utc};

/// Milliseconds since the Unix epoch.
pub(crate) fn to_unix_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The instant `ms` milliseconds after the Unix epoch, if it is a date (years 0 to 9999)
/// that RFC 3339 can write.
pub(crate) fn from_unix_ms(ms: i64) -> Result<DateTime<Utc>, OutOfRange> {
    DateTime::from_timestamp_millis(ms)
        .filter(|t| (0..=9999).contains(&t.year()))
        .ok_or(OutOfRange(ms))
}

/// A stored time that is no date RFC 3339 can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} ms from the Unix epoch is outside the years 0 to 9999")]
pub(crate) struct OutOfRange(i64);

/// `t` truncated to the millisecond, as it comes back from the registry.
pub fn truncate_to_ms(t: DateTime<Utc>) -> DateTime<Utc> {
    let ns = t.nanosecond();
    t.with_nanosecond(ns - ns % 1_000_000).unwrap_or(t)
}

/// `t` in RFC 3339, UTC, with as many fractional digits as it needs and none for whole
/// seconds, e.g. `2026-03-01T12:00:00.25Z` and `2026-03-01T12:00:00Z` (the API's form
/// since it was first written, with the `time` crate).
pub fn rfc3339(t: DateTime<Utc>) -> String {
    if !(0..=9999).contains(&t.year()) {
        // Never in the registry; the Debug form is still a readable fallback.
        return format!("{t:?}");
    }
    let mut text = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.nanosecond() % 1_000_000_000;
    if nanos != 0 {
        let digits = format!("{nanos:09}");
        text.push('.');
        text.push_str(digits.trim_end_matches('0'));
    }
    text.push('Z');
    text
}

/// Displays a timestamp in RFC 3339 (for error messages).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rfc3339Display(pub DateTime<Utc>);

impl fmt::Display for Rfc3339Display {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&rfc3339(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_ms_round_trips_at_millisecond_precision() {
        let t = DateTime::from_timestamp_nanos(1_772_000_000_123_456_789);
        let ms = to_unix_ms(t);
        assert_eq!(ms, 1_772_000_000_123);
        assert_eq!(from_unix_ms(ms).unwrap(), truncate_to_ms(t));
        assert_eq!(
            rfc3339(from_unix_ms(ms).unwrap()),
            "2026-02-25T06:13:20.123Z"
        );
    }

    #[test]
    fn rfc3339_writes_only_the_fractional_digits_it_needs() {
        let at = |ns: i64| rfc3339(DateTime::from_timestamp_nanos(ns));
        assert_eq!(at(1_772_366_400_000_000_000), "2026-03-01T12:00:00Z");
        assert_eq!(at(1_772_366_400_250_000_000), "2026-03-01T12:00:00.25Z");
        assert_eq!(
            at(1_772_366_400_000_000_001),
            "2026-03-01T12:00:00.000000001Z"
        );
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
    }

    /// The API's timestamps were written by the `time` crate before: the text is unchanged.
    #[test]
    fn rfc3339_is_written_as_the_time_crate_wrote_it() {
        use time::format_description::well_known::Rfc3339;
        let base: i64 = 1_772_366_400_000_000_000;
        let mut fractions = vec![
            0,
            1,
            10,
            999,
            1_000,
            120_000,
            1_000_000,
            250_000_000,
            999_999_999,
        ];
        fractions.extend((0..200).map(|i| i * 7_919_999 % 1_000_000_000));
        for secs in [-86_400 * 365 * 50, -1, 0, 1, 59, 86_399, 1_000_000_007] {
            for &frac in &fractions {
                let ns = base + secs * 1_000_000_000 + frac;
                let ours = rfc3339(DateTime::from_timestamp_nanos(ns));
                let theirs = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
                    .unwrap()
                    .format(&Rfc3339)
                    .unwrap();
                assert_eq!(ours, theirs, "{ns} ns");
            }
        }
    }
}
