//! Proof of play in the registry: the daily totals and raw plays reports read, and the
//! expiry that rolls old plays up into daily totals and deletes old telemetry.
//!
//! A play is counted exactly once: either as a raw `telemetry` row or inside a
//! `play_rollups` total, never both, because one transaction moves a batch of rows from the
//! first to the second. So a day's total (rollups plus raw rows) is the same before, during
//! and after expiry, whatever a crash interrupts. Days are the venue's local days, taken
//! from the play's start; a rollup keeps the day it was given when it was made (changing a
//! venue's time zone later does not move rolled-up plays).

use std::collections::BTreeMap;

use chrono::{DateTime, LocalResult, NaiveDate, NaiveTime, TimeDelta, TimeZone as _, Utc};
use chrono_tz::Tz;
use rusqlite::{OptionalExtension as _, TransactionBehavior, params};
use taplink_sync_proto::ids::{HubId, ItemId, KioskId, MediaHash, PlaylistId, VenueId};
use taplink_sync_proto::wire::ProofOfPlay;

use super::{Registry, RegistryError, count_col, parse_col, sql};
use crate::timefmt::to_unix_ms;

/// The time zone named `name`; UTC when the time zone database does not know it. Venue
/// creation checks the name, so only a database edited by hand holds an unknown one, and
/// reports and rollups then agree on UTC.
pub fn venue_tz(name: &str) -> Tz {
    name.parse().unwrap_or(Tz::UTC)
}

/// The local day in `tz` that the instant `ms` (Unix milliseconds) falls on, if it is a
/// representable date.
pub fn local_day(ms: i64, tz: Tz) -> Option<NaiveDate> {
    DateTime::from_timestamp_millis(ms).map(|t| t.with_timezone(&tz).date_naive())
}

/// The first instant of the local day `day` in `tz`: its midnight, the earlier one when a
/// clock change repeats it, or the end of the gap when a clock change skips it (a few zones
/// move their clocks at midnight).
pub fn day_start_utc(day: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let midnight = day.and_time(NaiveTime::MIN);
    match tz.from_local_datetime(&midnight) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
        LocalResult::None => (1..=96)
            .find_map(|quarter| {
                tz.from_local_datetime(&(midnight + TimeDelta::minutes(15 * quarter)))
                    .earliest()
            })
            .map_or_else(|| midnight.and_utc(), |t| t.with_timezone(&Utc)),
    }
}

/// `day` as stored in `play_rollups` and shown in reports: `YYYY-MM-DD`.
fn day_text(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

/// Which plays a report asks for, besides the venue and the time range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlayFilter {
    /// Only this kiosk's plays.
    pub kiosk: Option<KioskId>,
    /// Only plays of this media.
    pub media: Option<MediaHash>,
}

impl PlayFilter {
    fn kiosk_text(&self) -> Option<String> {
        self.kiosk.map(|k| k.to_string())
    }

    fn media_text(&self) -> Option<String> {
        self.media.map(|m| m.to_string())
    }
}

/// One kiosk's plays of one media on one local day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyPlays {
    /// The kiosk (`None` for plays a hub reported for itself).
    pub kiosk: Option<KioskId>,
    /// The media shown.
    pub media: MediaHash,
    /// How many times.
    pub plays: u64,
    /// For how long in total, in milliseconds.
    pub played_ms: u64,
}

/// Where a page of raw plays ended; the next page starts after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawPlayCursor {
    started_ms: i64,
    rowid: i64,
}

/// One showing of one item, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPlay {
    /// The page position of this play (pass the last one to get the next page).
    pub cursor: RawPlayCursor,
    /// The event's id, chosen by the kiosk.
    pub event_id: [u8; 16],
    /// The hub that delivered it.
    pub hub: HubId,
    /// The kiosk that showed it.
    pub kiosk: Option<KioskId>,
    /// The media shown.
    pub media: MediaHash,
    /// The playlist it came from (`None` if the stored event does not parse).
    pub playlist: Option<PlaylistId>,
    /// The playlist item (`None` if the stored event does not parse).
    pub item: Option<ItemId>,
    /// When it started, Unix milliseconds.
    pub started_ms: i64,
    /// How long it was on screen.
    pub duration_ms: u64,
}

/// What one expiry batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpiryBatch {
    /// Telemetry rows deleted (plays and heartbeats).
    pub deleted: u64,
    /// Of those, plays added to the daily rollups.
    pub plays_rolled_up: u64,
}

/// The conditions on kiosk (`:k`) and media (`:m`) of raw play queries.
const RAW_FILTER: &str = "(:k IS NULL OR kiosk_id = :k) AND (:m IS NULL OR play_media = :m)";
/// The same for rollups.
const ROLLUP_FILTER: &str = "(:k IS NULL OR kiosk_id = :k) AND (:m IS NULL OR media = :m)";

impl Registry {
    /// The first local day from `from` to `to` (both included) on which `venue` has plays
    /// that match `filter`, raw or rolled up. Reports walk a venue's days with it, so days
    /// without plays cost nothing.
    pub fn next_play_day(
        &self,
        venue: VenueId,
        tz: Tz,
        filter: &PlayFilter,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Option<NaiveDate>, RegistryError> {
        let op = "find the next day with plays";
        let end = to.succ_opt().unwrap_or(to);
        let conn = self.lock();
        // ORDER BY … LIMIT 1 stops at the first matching row of the index; min() would
        // read every row of the range when a filter is given.
        let raw: Option<i64> = conn
            .prepare_cached(&format!(
                "SELECT play_started_ms FROM telemetry
                 WHERE venue_id = :v AND play_started_ms >= :a AND play_started_ms < :b
                   AND {RAW_FILTER}
                 ORDER BY play_started_ms LIMIT 1"
            ))
            .and_then(|mut stmt| {
                stmt.query_row(
                    rusqlite::named_params! {
                        ":v": venue.to_string(),
                        ":a": to_unix_ms(day_start_utc(from, tz)),
                        ":b": to_unix_ms(day_start_utc(end, tz)),
                        ":k": filter.kiosk_text(),
                        ":m": filter.media_text(),
                    },
                    |row| row.get(0),
                )
                .optional()
            })
            .map_err(sql(op))?;
        let rolled: Option<String> = conn
            .prepare_cached(&format!(
                "SELECT day FROM play_rollups
                 WHERE venue_id = :v AND day >= :a AND day <= :b AND {ROLLUP_FILTER}
                 ORDER BY day LIMIT 1"
            ))
            .and_then(|mut stmt| {
                stmt.query_row(
                    rusqlite::named_params! {
                        ":v": venue.to_string(),
                        ":a": day_text(from),
                        ":b": day_text(to),
                        ":k": filter.kiosk_text(),
                        ":m": filter.media_text(),
                    },
                    |row| row.get(0),
                )
                .optional()
            })
            .map_err(sql(op))?;
        let rolled = rolled
            .map(|day| {
                NaiveDate::parse_from_str(&day, "%Y-%m-%d").map_err(|e| RegistryError::Corrupt {
                    what: "play rollup day",
                    reason: format!("{day:?}: {e}"),
                })
            })
            .transpose()?;
        let raw = raw.and_then(|ms| local_day(ms, tz));
        Ok(match (raw, rolled) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// `venue`'s plays on the local day `day` that match `filter`, rolled up and raw
    /// together, per kiosk and media (ordered by kiosk, then media).
    pub fn plays_on_day(
        &self,
        venue: VenueId,
        tz: Tz,
        day: NaiveDate,
        filter: &PlayFilter,
    ) -> Result<Vec<DailyPlays>, RegistryError> {
        let op = "total a day's plays";
        let end = day.succ_opt().unwrap_or(day);
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT kiosk, media, sum(plays), sum(played_ms) FROM (
                     SELECT kiosk_id AS kiosk, media, plays, played_ms FROM play_rollups
                     WHERE venue_id = :v AND day = :d AND {ROLLUP_FILTER}
                     UNION ALL
                     SELECT coalesce(kiosk_id, ''), play_media, count(*), sum(play_duration_ms)
                     FROM telemetry
                     WHERE venue_id = :v AND play_started_ms >= :a AND play_started_ms < :b
                       AND {RAW_FILTER}
                     GROUP BY 1, 2
                 )
                 GROUP BY kiosk, media ORDER BY kiosk, media"
            ))
            .map_err(sql(op))?;
        stmt.query_map(
            rusqlite::named_params! {
                ":v": venue.to_string(),
                ":d": day_text(day),
                ":a": to_unix_ms(day_start_utc(day, tz)),
                ":b": to_unix_ms(day_start_utc(end, tz)),
                ":k": filter.kiosk_text(),
                ":m": filter.media_text(),
            },
            |row| {
                let kiosk: String = row.get(0)?;
                Ok(DailyPlays {
                    kiosk: if kiosk.is_empty() {
                        None
                    } else {
                        Some(parse_col(row, 0)?)
                    },
                    media: parse_col(row, 1)?,
                    plays: count_col(row, 2)?,
                    played_ms: count_col(row, 3)?,
                })
            },
        )
        .and_then(Iterator::collect)
        .map_err(sql(op))
    }

    /// Up to `limit` of `venue`'s raw plays that match `filter` and started in
    /// `[from_ms, to_ms)`, after `after`, in order of their start. Keyset pagination: each
    /// page is one short query, whatever the number of plays.
    pub fn raw_plays(
        &self,
        venue: VenueId,
        filter: &PlayFilter,
        from_ms: i64,
        to_ms: i64,
        after: Option<RawPlayCursor>,
        limit: usize,
    ) -> Result<Vec<RawPlay>, RegistryError> {
        let op = "read raw plays";
        let after = after.unwrap_or(RawPlayCursor {
            started_ms: from_ms,
            rowid: i64::MIN,
        });
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT rowid, event_id, hub_id, kiosk_id, play_media, play_started_ms,
                        play_duration_ms, body_json
                 FROM telemetry
                 WHERE venue_id = :v AND play_started_ms >= :a AND play_started_ms < :b
                   AND (play_started_ms, rowid) > (:s, :r) AND {RAW_FILTER}
                 ORDER BY play_started_ms, rowid LIMIT :n"
            ))
            .map_err(sql(op))?;
        stmt.query_map(
            rusqlite::named_params! {
                ":v": venue.to_string(),
                ":a": from_ms,
                ":b": to_ms,
                ":s": after.started_ms,
                ":r": after.rowid,
                ":k": filter.kiosk_text(),
                ":m": filter.media_text(),
                ":n": i64::try_from(limit).unwrap_or(i64::MAX),
            },
            |row| {
                let started_ms: i64 = row.get(5)?;
                let kiosk: Option<String> = row.get(3)?;
                let body: String = row.get(7)?;
                // Playlist and item are only in the stored event; the counted columns do not
                // depend on them, so an unreadable body still lists the play.
                let event = serde_json::from_str::<ProofOfPlay>(&body).ok();
                Ok(RawPlay {
                    cursor: RawPlayCursor {
                        started_ms,
                        rowid: row.get(0)?,
                    },
                    event_id: row.get(1)?,
                    hub: parse_col(row, 2)?,
                    kiosk: match kiosk {
                        Some(_) => Some(parse_col(row, 3)?),
                        None => None,
                    },
                    media: parse_col(row, 4)?,
                    playlist: event.as_ref().map(|e| e.playlist),
                    item: event.as_ref().map(|e| e.item),
                    started_ms,
                    duration_ms: count_col(row, 6)?,
                })
            },
        )
        .and_then(Iterator::collect)
        .map_err(sql(op))
    }

    /// Expire up to `limit` telemetry rows whose time is before `cutoff`, oldest first, in
    /// one short transaction: the plays among them are added to the daily rollups of their
    /// venue's local day, then the rows are deleted. Running it again after a crash, or
    /// twice, counts nothing twice. Call it until it deletes fewer than `limit` rows.
    pub fn expire_telemetry(
        &self,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<ExpiryBatch, RegistryError> {
        let op = "expire telemetry";
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql(op))?;
        type Row = (
            i64,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<i64>,
            Option<String>,
        );
        let rows: Vec<Row> = tx
            .prepare_cached(
                "SELECT t.rowid, t.venue_id, t.kiosk_id, t.play_media, t.play_started_ms,
                        t.play_duration_ms, v.timezone
                 FROM telemetry t LEFT JOIN venues v ON v.id = t.venue_id
                 WHERE t.at_ms < ?1 ORDER BY t.at_ms LIMIT ?2",
            )
            .and_then(|mut stmt| {
                stmt.query_map(
                    params![to_unix_ms(cutoff), i64::try_from(limit).unwrap_or(i64::MAX)],
                    |row| {
                        Ok((
                            row.get(0)?,
                            row.get(1)?,
                            row.get(2)?,
                            row.get(3)?,
                            row.get(4)?,
                            row.get(5)?,
                            row.get(6)?,
                        ))
                    },
                )?
                .collect()
            })
            .map_err(sql(op))?;
        // (venue, day, kiosk, media) → (plays, ms): one upsert per group, not per play.
        let mut totals: BTreeMap<(String, String, String, String), (i64, i64)> = BTreeMap::new();
        let mut batch = ExpiryBatch::default();
        for (_, venue, kiosk, media, started, duration, tz) in &rows {
            let (Some(venue), Some(media), Some(started)) = (venue, media, started) else {
                continue;
            };
            let tz = venue_tz(tz.as_deref().unwrap_or("UTC"));
            // Arrival checks keep starts within a year of the present, so every start has
            // a local day; a row without one could not be reported either.
            let Some(day) = local_day(*started, tz) else {
                continue;
            };
            let key = (
                venue.clone(),
                day_text(day),
                kiosk.clone().unwrap_or_default(),
                media.clone(),
            );
            let total = totals.entry(key).or_default();
            total.0 += 1;
            total.1 = total.1.saturating_add(duration.unwrap_or(0));
            batch.plays_rolled_up += 1;
        }
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO play_rollups (venue_id, day, kiosk_id, media, plays, played_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (venue_id, day, kiosk_id, media) DO UPDATE SET
                         plays = plays + excluded.plays,
                         played_ms = played_ms + excluded.played_ms",
                )
                .map_err(sql(op))?;
            for ((venue, day, kiosk, media), (plays, ms)) in &totals {
                upsert
                    .execute(params![venue, day, kiosk, media, plays, ms])
                    .map_err(sql(op))?;
            }
            let mut delete = tx
                .prepare_cached("DELETE FROM telemetry WHERE rowid = ?1")
                .map_err(sql(op))?;
            for (rowid, ..) in &rows {
                batch.deleted += delete.execute([rowid]).map_err(sql(op))? as u64;
            }
        }
        tx.commit().map_err(sql(op))?;
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_days_follow_the_zone() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // 2026-03-01T23:30:00Z is half past midnight on 2 March in Berlin (UTC+1).
        let ms = 1_772_407_800_000;
        assert_eq!(local_day(ms, berlin), NaiveDate::from_ymd_opt(2026, 3, 2));
        assert_eq!(local_day(ms, Tz::UTC), NaiveDate::from_ymd_opt(2026, 3, 1));
        let day = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
        assert_eq!(
            day_start_utc(day, berlin).to_rfc3339(),
            "2026-03-01T23:00:00+00:00"
        );
    }

    #[test]
    fn a_day_whose_midnight_is_skipped_starts_after_the_gap() {
        // Santiago moved its clocks from 00:00 to 01:00 on 2023-09-03.
        let santiago: Tz = "America/Santiago".parse().unwrap();
        let day = NaiveDate::from_ymd_opt(2023, 9, 3).unwrap();
        let start = day_start_utc(day, santiago);
        assert_eq!(start.to_rfc3339(), "2023-09-03T04:00:00+00:00");
        assert_eq!(local_day(start.timestamp_millis(), santiago), Some(day));
        assert_ne!(local_day(start.timestamp_millis() - 1, santiago), Some(day));
    }

    #[test]
    fn unknown_zones_read_as_utc() {
        assert_eq!(venue_tz("Nowhere/Special"), Tz::UTC);
        assert_eq!(venue_tz("Asia/Tokyo"), Tz::Asia__Tokyo);
    }
}
