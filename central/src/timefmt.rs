//! Timestamps as the registry stores them (Unix milliseconds) and as people read them (RFC 3339).

use std::fmt;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Milliseconds since the Unix epoch, saturating far outside any real date.
pub(crate) fn to_unix_ms(t: OffsetDateTime) -> i64 {
    let ms = t.unix_timestamp_nanos() / 1_000_000;
    i64::try_from(ms).unwrap_or(if ms < 0 { i64::MIN } else { i64::MAX })
}

/// The instant `ms` milliseconds after the Unix epoch, in UTC.
pub(crate) fn from_unix_ms(ms: i64) -> Result<OffsetDateTime, time::error::ComponentRange> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
}

/// `t` truncated to the millisecond, as it comes back from the registry.
pub fn truncate_to_ms(t: OffsetDateTime) -> OffsetDateTime {
    let ns = t.nanosecond();
    t.replace_nanosecond(ns - ns % 1_000_000).unwrap_or(t)
}

/// `t` in RFC 3339, UTC, e.g. `2026-03-01T12:00:00.25Z`.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let utc = t.to_offset(time::UtcOffset::UTC);
    // Formatting fails only for years outside 0..=9999, which never reach the registry;
    // the Debug form is still a readable fallback.
    utc.format(&Rfc3339).unwrap_or_else(|_| format!("{utc:?}"))
}

/// Displays a timestamp in RFC 3339 (for error messages).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rfc3339Display(pub OffsetDateTime);

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
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_772_000_000_123_456_789).unwrap();
        let ms = to_unix_ms(t);
        assert_eq!(ms, 1_772_000_000_123);
        assert_eq!(from_unix_ms(ms).unwrap(), truncate_to_ms(t));
        assert_eq!(
            rfc3339(from_unix_ms(ms).unwrap()),
            "2026-02-25T06:13:20.123Z"
        );
    }
}
