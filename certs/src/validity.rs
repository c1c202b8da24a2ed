//! Explicit validity periods for every certificate this crate issues.
//!
//! rcgen's default validity (1975 to 4096) must never reach a certificate, so every issuing
//! function takes a [`Validity`], and the only ways to build one take the caller's `now`.

use chrono::{DateTime, Utc};
use time::{Duration, OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// Why a validity period was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidityError {
    /// The requested lifetime is zero or negative.
    #[error("certificate lifetime must be positive, got {lifetime}")]
    NonPositiveLifetime {
        /// The rejected lifetime.
        lifetime: Duration,
    },
    /// The clock-skew slack is negative.
    #[error("clock-skew slack must not be negative, got {skew}")]
    NegativeClockSkew {
        /// The rejected slack.
        skew: Duration,
    },
    /// `not_after` is not later than `not_before`.
    #[error("not_after ({not_after}) must be later than not_before ({not_before})")]
    Empty {
        /// The requested start.
        not_before: OffsetDateTime,
        /// The requested end.
        not_after: OffsetDateTime,
    },
    /// A date falls outside the years an X.509 certificate can encode here (1950 to 9999).
    #[error("certificate dates must fall in the years 1950 to 9999, got {date}")]
    OutOfRange {
        /// The offending date (or the start date when the arithmetic itself overflowed).
        date: OffsetDateTime,
    },
}

/// The period during which a certificate is valid, in whole seconds, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

impl Validity {
    /// How far `not_before` is moved back by [`Validity::new`]: a Raspberry Pi has no
    /// real-time clock and may run a little behind until NTP catches up, and a certificate
    /// that is "not yet valid" on it would keep it offline.
    pub const DEFAULT_CLOCK_SKEW: Duration = Duration::DAY;

    /// Valid from `now - DEFAULT_CLOCK_SKEW` until `now + lifetime`.
    pub fn new(now: OffsetDateTime, lifetime: Duration) -> Result<Self, ValidityError> {
        Self::with_clock_skew(now, lifetime, Self::DEFAULT_CLOCK_SKEW)
    }

    /// Valid from `now - skew` until `now + lifetime`.
    pub fn with_clock_skew(
        now: OffsetDateTime,
        lifetime: Duration,
        skew: Duration,
    ) -> Result<Self, ValidityError> {
        if !lifetime.is_positive() {
            return Err(ValidityError::NonPositiveLifetime { lifetime });
        }
        if skew.is_negative() {
            return Err(ValidityError::NegativeClockSkew { skew });
        }
        let overflow = || ValidityError::OutOfRange { date: now };
        let not_before = now.checked_sub(skew).ok_or_else(overflow)?;
        let not_after = now.checked_add(lifetime).ok_or_else(overflow)?;
        Self::between(not_before, not_after)
    }

    /// Valid from exactly `not_before` until exactly `not_after` (no slack added), both
    /// truncated to whole seconds as X.509 stores them.
    pub fn between(
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Self, ValidityError> {
        let not_before = whole_seconds_utc(not_before)?;
        let not_after = whole_seconds_utc(not_after)?;
        if not_after <= not_before {
            return Err(ValidityError::Empty {
                not_before,
                not_after,
            });
        }
        Ok(Self {
            not_before,
            not_after,
        })
    }

    /// The first instant of validity.
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// The last instant of validity.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Whether `t` falls within the period (both ends included, as X.509 defines it).
    pub fn contains(&self, t: OffsetDateTime) -> bool {
        self.not_before <= t && t <= self.not_after
    }
}

/// `t` as the `time` crate's `OffsetDateTime` that rcgen takes: the one conversion between
/// the workspace's time crate (chrono, what every `Clock` reads) and `time`. Dates beyond
/// what `time` represents (years outside ±9999) become its earliest or latest date, which
/// [`Validity`] then refuses as out of range.
pub fn offset_date_time(t: DateTime<Utc>) -> OffsetDateTime {
    let nanos = i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos());
    OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or_else(|_| {
        if nanos < 0 {
            PrimitiveDateTime::MIN.assume_utc()
        } else {
            PrimitiveDateTime::MAX.assume_utc()
        }
    })
}

/// The system clock's now, for tests of certificates that must be valid at present (the
/// TLS stack checks validity against the real time).
#[cfg(test)]
pub(crate) fn test_now() -> OffsetDateTime {
    use taplink_sync_proto::clock::{Clock as _, SystemClock};
    offset_date_time(SystemClock.now())
}

fn whole_seconds_utc(t: OffsetDateTime) -> Result<OffsetDateTime, ValidityError> {
    let utc = t
        .checked_to_offset(UtcOffset::UTC)
        .ok_or(ValidityError::OutOfRange { date: t })?;
    if !(1950..=9999).contains(&utc.year()) {
        return Err(ValidityError::OutOfRange { date: t });
    }
    // Dropping the sub-second part keeps `Validity` equal to what the certificate says.
    Ok(utc.replace_nanosecond(0).unwrap_or(utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::{Date, Month, Time};

    #[test]
    fn chrono_times_convert_to_the_same_instant() {
        let t = DateTime::from_timestamp(1_772_366_400, 123_456_789).unwrap();
        let converted = offset_date_time(t);
        assert_eq!(converted.unix_timestamp(), 1_772_366_400);
        assert_eq!(converted.nanosecond(), 123_456_789);
        assert_eq!(converted.offset(), UtcOffset::UTC);
        let far = DateTime::from_timestamp(400_000_000_000, 0).unwrap();
        assert!(matches!(
            Validity::new(offset_date_time(far), Duration::days(1)),
            Err(ValidityError::OutOfRange { .. })
        ));
    }

    fn at(day: u8, hms: (u8, u8, u8), offset_hours: i8) -> OffsetDateTime {
        let date = Date::from_calendar_date(2026, Month::March, day).unwrap();
        let time = Time::from_hms(hms.0, hms.1, hms.2).unwrap();
        date.with_time(time)
            .assume_offset(UtcOffset::from_hms(offset_hours, 0, 0).unwrap())
    }

    #[test]
    fn new_moves_not_before_back_by_the_default_skew() {
        let now = at(2, (12, 0, 0), 0) + Duration::milliseconds(750);
        let v = Validity::new(now, Duration::days(29)).unwrap();
        assert_eq!(v.not_before(), at(1, (12, 0, 0), 0));
        assert_eq!(v.not_after(), at(31, (12, 0, 0), 0));
        assert!(v.contains(now));
    }

    #[test]
    fn custom_skew_and_offsets_are_normalised_to_utc() {
        let now = at(1, (12, 0, 0), 2);
        let v = Validity::with_clock_skew(now, Duration::hours(1), Duration::ZERO).unwrap();
        assert_eq!(v.not_before(), at(1, (10, 0, 0), 0));
        assert_eq!(v.not_before().offset(), UtcOffset::UTC);
    }

    #[test]
    fn bad_periods_are_refused() {
        let now = at(1, (12, 0, 0), 0);
        assert!(matches!(
            Validity::new(now, Duration::ZERO),
            Err(ValidityError::NonPositiveLifetime { .. })
        ));
        assert!(matches!(
            Validity::with_clock_skew(now, Duration::DAY, Duration::seconds(-1)),
            Err(ValidityError::NegativeClockSkew { .. })
        ));
        assert!(matches!(
            Validity::between(now, now),
            Err(ValidityError::Empty { .. })
        ));
        assert!(matches!(
            Validity::new(now, Duration::days(365 * 8000)),
            Err(ValidityError::OutOfRange { .. })
        ));
    }
}
