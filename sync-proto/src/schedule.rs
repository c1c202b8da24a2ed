//! Schedule windows: the weekly local-time windows in which a playlist item plays.
//!
//! A window is a start and an end time of day (minutes since local midnight) on a set of
//! weekdays, in the venue's time zone. A window whose end is not after its start crosses
//! midnight: it starts on one of its weekdays and ends the next day. `start == end` is a
//! full 24 hours from `start`. Weekdays always name the day a window *starts*.

use serde::{Deserialize, Serialize};

/// Minutes in a day; `end_min` may equal it ("until midnight").
pub const MINUTES_PER_DAY: u16 = 24 * 60;

/// A set of weekdays, Monday = bit 0 … Sunday = bit 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Weekdays(pub u8);

impl Weekdays {
    /// Every day of the week.
    pub const ALL: Weekdays = Weekdays(0b111_1111);
    /// Monday to Friday.
    pub const WEEKDAYS: Weekdays = Weekdays(0b001_1111);
    /// Saturday and Sunday.
    pub const WEEKEND: Weekdays = Weekdays(0b110_0000);

    /// The set holding this weekday.
    pub fn contains(self, day: chrono::Weekday) -> bool {
        self.0 & (1 << day.num_days_from_monday()) != 0
    }

    /// This set plus one weekday.
    pub fn with(self, day: chrono::Weekday) -> Self {
        Weekdays(self.0 | (1 << day.num_days_from_monday()))
    }

    /// No day at all.
    pub fn is_empty(self) -> bool {
        self.0 & 0b111_1111 == 0
    }
}

impl autosurgeon::Reconcile for Weekdays {
    type Key<'a> = autosurgeon::reconcile::NoKey;
    fn reconcile<R: autosurgeon::Reconciler>(&self, reconciler: R) -> Result<(), R::Error> {
        u64::from(self.0).reconcile(reconciler)
    }
}

impl autosurgeon::Hydrate for Weekdays {
    fn hydrate_uint(u: u64) -> Result<Self, autosurgeon::HydrateError> {
        u8::try_from(u)
            .ok()
            .filter(|b| *b <= 0b111_1111)
            .map(Weekdays)
            .ok_or_else(|| {
                autosurgeon::HydrateError::unexpected("weekday bits 0..=127", u.to_string())
            })
    }
}

/// A weekly window of local time. Construct with [`ScheduleWindow::new`], which validates.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    autosurgeon::Reconcile,
    autosurgeon::Hydrate,
)]
pub struct ScheduleWindow {
    /// The days on which the window starts.
    pub days: Weekdays,
    /// Start, minutes after local midnight, `0..1440`.
    pub start_min: u16,
    /// End, minutes after local midnight, `1..=1440`; at or before `start_min` means the
    /// window ends the next day.
    pub end_min: u16,
}

/// Why a schedule window is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The window names no weekday, so it would never play.
    #[error("schedule window has no weekday")]
    NoDays,
    /// The start is not a time of day.
    #[error("schedule start {0} is not a minute of the day (0..1440)")]
    BadStart(u16),
    /// The end is not a time of day.
    #[error("schedule end {0} is not a minute of the day (1..=1440)")]
    BadEnd(u16),
}

impl ScheduleWindow {
    /// A validated window.
    pub fn new(days: Weekdays, start_min: u16, end_min: u16) -> Result<Self, ScheduleError> {
        let w = Self {
            days,
            start_min,
            end_min,
        };
        w.validate()?;
        Ok(w)
    }

    /// Checks a window that arrived from a document or the network.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        if self.days.is_empty() {
            return Err(ScheduleError::NoDays);
        }
        if self.start_min >= MINUTES_PER_DAY {
            return Err(ScheduleError::BadStart(self.start_min));
        }
        if self.end_min == 0 || self.end_min > MINUTES_PER_DAY {
            return Err(ScheduleError::BadEnd(self.end_min));
        }
        Ok(())
    }

    /// Whether the window runs past midnight into the next day.
    pub fn crosses_midnight(&self) -> bool {
        self.end_min <= self.start_min
    }

    /// Whether the window covers this wall-clock time: start inclusive, end exclusive, and
    /// a window that crosses midnight also covers the early hours of the day after each of
    /// its weekdays. An invalid window covers nothing.
    ///
    /// This is the plain wall-clock reading. Which *instant* a boundary takes effect at when
    /// the clock jumps (daylight saving) is decided by [`crate::manifest::is_active`], which
    /// agrees with this everywhere except in the repeated hour after a fall-back.
    pub fn contains(&self, local: chrono::NaiveDateTime) -> bool {
        use chrono::{Datelike, Timelike};

        if self.validate().is_err() {
            return false;
        }
        let minute = local.hour() * 60 + local.minute();
        let (start, end) = (u32::from(self.start_min), u32::from(self.end_min));
        let today = local.weekday();
        if self.crosses_midnight() {
            (self.days.contains(today) && minute >= start)
                || (self.days.contains(today.pred()) && minute < end)
        } else {
            self.days.contains(today) && start <= minute && minute < end
        }
    }
}
