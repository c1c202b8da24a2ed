//! The manifest: what one kiosk plays now, what it plays from the next schedule change on,
//! and which media files it must cache — a pure function of a venue document and an instant.
//!
//! # Which playlist
//! The kiosk's own playlist, else its group's entry in `group_playlists`, else the venue's
//! default playlist, else none (an empty manifest: the screen shows its idle page). A
//! reference to a playlist that no longer exists (deleted while the reference was being
//! set, or merged that way) falls through to the next rule rather than blanking the screen.
//!
//! # Time
//! Schedule windows are read in the venue's time zone. A window boundary at local time `L`
//! takes effect at the first instant at which the venue's wall clock reads `L` or later:
//! - `L` occurs once: that instant;
//! - `L` occurs twice (fall back): its first occurrence;
//! - `L` never occurs (spring-forward gap): the instant the clock jumps past it.
//!
//! A window is active at instant `t` when one of its occurrences has started and not yet
//! ended by that rule. So nothing starts or ends twice: in the repeated hour after a fall
//! back, windows behave as if the clock had stayed at the end of that hour. Everywhere else
//! this equals reading the wall clock at `t` ([`ScheduleWindow::contains`]).
//!
//! # Version
//! [`Manifest::version`] is a BLAKE3 hash of everything else in the manifest (kiosk,
//! playlist, `now`, `next`, `media`), so it is the representation's HTTP ETag: identical
//! for identical content, unchanged while time passes within one schedule state (a
//! conditional GET answers 304), and changed as soon as anything the kiosk plays, or will
//! play at the next change, or must cache changes. A kiosk that reaches `next.at` switches
//! to `next.items` by itself and then fetches again to learn the change after that.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::doc::{Kiosk, Playlist, VenueDoc};
use crate::ids::{ItemId, KioskId, MediaHash, PlaylistId};
use crate::schedule::ScheduleWindow;

/// How far ahead [`Manifest::next`] looks: a week, so every weekly window's next occurrence
/// is seen, plus a day of slack for daylight-saving shifts.
pub const LOOKAHEAD: TimeDelta = TimeDelta::days(8);

/// What one kiosk must play and cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The kiosk this manifest is for.
    pub kiosk: KioskId,
    /// The playlist it plays, if any.
    pub playlist: Option<PlaylistId>,
    /// Content hash of all the other fields, lowercase hex; the HTTP ETag.
    pub version: String,
    /// Items to play in a loop now, in playlist order. Empty: show the idle page.
    pub now: Vec<ManifestItem>,
    /// The first schedule change within [`LOOKAHEAD`], if any.
    pub next: Option<NextChange>,
    /// Every media file the playlist references, whether or not it plays now (so a kiosk
    /// caches ahead of schedule changes), sorted and deduplicated.
    pub media: Vec<MediaHash>,
}

/// One item to play.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestItem {
    /// The playlist item (stable across reorders; use it for proof-of-play).
    pub item: ItemId,
    /// The media file to show.
    pub media: MediaHash,
    /// Its MIME type, which tells the player how to render it.
    pub content_type: String,
    /// How long to show it, in milliseconds.
    pub duration_ms: u64,
}

/// A coming change of what plays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextChange {
    /// When the change takes effect (RFC 3339 on the wire).
    #[serde(with = "rfc3339")]
    pub at: DateTime<Utc>,
    /// What plays from then on, in playlist order.
    pub items: Vec<ManifestItem>,
}

/// Why no manifest can be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The kiosk is not in the venue document (never added here, or removed).
    #[error("kiosk {0} is not in the venue document")]
    UnknownKiosk(KioskId),
    /// The venue's time zone setting is not an IANA time zone name (exact spelling, e.g.
    /// `Europe/Berlin`), so no schedule window can be read.
    #[error("venue time zone {0:?} is not a known IANA time zone name")]
    BadTimezone(String),
}

/// Builds the manifest of `kiosk` at instant `now`.
///
/// An item whose media has no metadata in `venue.media` (e.g. the metadata was removed
/// concurrently with the item being added) is left out of `now` and `next`, because the
/// player cannot know how to render it, but its hash stays in `media` so the file is cached
/// by the time the metadata arrives. An item with an invalid window never plays. Durations
/// are passed through as they are.
///
/// Cost: each windowed item's occurrences on 13 local dates around `now` (two time zone
/// look-ups each), then each start or end within [`LOOKAHEAD`] is checked against every
/// item until the set changes; 200 windowed items take about 2 ms in a debug build.
pub fn manifest(
    venue: &VenueDoc,
    kiosk: KioskId,
    now: DateTime<Utc>,
) -> Result<Manifest, ManifestError> {
    let entry = venue
        .kiosks
        .get(&kiosk)
        .ok_or(ManifestError::UnknownKiosk(kiosk))?;
    let tz: Tz = venue
        .settings
        .timezone
        .parse()
        .map_err(|_| ManifestError::BadTimezone(venue.settings.timezone.clone()))?;
    let Some((playlist_id, playlist)) = select_playlist(venue, entry) else {
        return Ok(Manifest::assemble(
            kiosk,
            None,
            Vec::new(),
            None,
            Vec::new(),
        ));
    };

    let media = playlist
        .items
        .values()
        .map(|i| i.media)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let schedule = Schedule::new(venue, playlist, tz, now);
    let now_active = schedule.active_at(now);
    let next = schedule
        .change_points(now)
        .find(|at| schedule.active_at(*at) != now_active)
        .map(|at| NextChange {
            at,
            items: schedule.items(&schedule.active_at(at)),
        });
    let now_items = schedule.items(&now_active);
    Ok(Manifest::assemble(
        kiosk,
        Some(playlist_id),
        now_items,
        next,
        media,
    ))
}

/// Whether `window` is active at instant `at` in time zone `tz`, by the rules in the
/// module docs (boundaries take effect when the wall clock first reaches them).
pub fn is_active(window: &ScheduleWindow, tz: Tz, at: DateTime<Utc>) -> bool {
    occurrences(window, tz, local_date(tz, at), -2..=1).any(|(start, end)| start <= at && at < end)
}

/// The first instant at which the wall clock in `tz` reads `local` or later: `local` itself
/// when it occurs once, its first occurrence when it occurs twice (fall back), and the end
/// of the jump when `local` falls in a spring-forward gap.
pub fn wall_clock_instant(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    if let Some(t) = tz.from_local_datetime(&local).earliest() {
        return t.with_timezone(&Utc);
    }
    // `local` is in a gap. Find the first whole minute after it that exists; the jump
    // happened at most a minute before that minute's instant (gaps end on a whole minute
    // in practice, but not in old local-mean-time zones), so search the second.
    let after_gap = (1..=MAX_GAP_MINUTES)
        .filter_map(|m| local.checked_add_signed(TimeDelta::minutes(m)))
        .find_map(|probe| tz.from_local_datetime(&probe).earliest());
    let Some(after_gap) = after_gap else {
        // No real time zone skips more than a day; reading `local` as UTC keeps this total.
        return Utc.from_utc_datetime(&local);
    };
    let reached = |secs: i64| {
        DateTime::from_timestamp(secs, 0)
            .is_some_and(|t| tz.from_utc_datetime(&t.naive_utc()).naive_local() >= local)
    };
    // Invariant: the clock reads before `local` at `lo` and at or after it at `hi`.
    let (mut lo, mut hi) = (after_gap.timestamp() - 60, after_gap.timestamp());
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if reached(mid) { hi = mid } else { lo = mid }
    }
    DateTime::from_timestamp(hi, 0).unwrap_or(after_gap.with_timezone(&Utc))
}

/// The longest spring-forward gap searched: Samoa skipped a whole day in 2011.
const MAX_GAP_MINUTES: i64 = 26 * 60;

impl Manifest {
    fn assemble(
        kiosk: KioskId,
        playlist: Option<PlaylistId>,
        now: Vec<ManifestItem>,
        next: Option<NextChange>,
        media: Vec<MediaHash>,
    ) -> Self {
        let mut m = Manifest {
            kiosk,
            playlist,
            version: String::new(),
            now,
            next,
            media,
        };
        m.version = m.content_hash();
        m
    }

    /// BLAKE3 over an unambiguous encoding of every field but `version`: fixed-size fields
    /// as bytes, variable-size ones length-prefixed, options tagged.
    fn content_hash(&self) -> String {
        fn items(h: &mut blake3::Hasher, items: &[ManifestItem]) {
            h.update(&(items.len() as u64).to_le_bytes());
            for i in items {
                h.update(i.item.as_bytes());
                h.update(i.media.as_bytes());
                h.update(&i.duration_ms.to_le_bytes());
                h.update(&(i.content_type.len() as u64).to_le_bytes());
                h.update(i.content_type.as_bytes());
            }
        }
        let mut h = blake3::Hasher::new_derive_key("taplink 2026 manifest version 1");
        h.update(self.kiosk.as_bytes());
        match &self.playlist {
            Some(p) => h.update(&[1]).update(p.as_bytes()),
            None => h.update(&[0]),
        };
        items(&mut h, &self.now);
        match &self.next {
            Some(n) => {
                h.update(&[1]);
                h.update(&n.at.timestamp().to_le_bytes());
                h.update(&n.at.timestamp_subsec_nanos().to_le_bytes());
                items(&mut h, &n.items);
            }
            None => {
                h.update(&[0]);
            }
        }
        h.update(&(self.media.len() as u64).to_le_bytes());
        for m in &self.media {
            h.update(m.as_bytes());
        }
        h.finalize().to_hex().to_string()
    }
}

/// Which rule of the precedence in the module docs chose a kiosk's playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlaylistSource {
    /// The kiosk's own playlist.
    Own,
    /// The playlist of the kiosk's group, named here.
    Group(String),
    /// The venue's default playlist.
    VenueDefault,
}

/// The playlist `kiosk` plays and the rule that chose it, by the precedence in the module
/// docs (the one [`manifest`] uses); `None` when no rule names an existing playlist.
pub fn playlist_source(venue: &VenueDoc, kiosk: &Kiosk) -> Option<(PlaylistId, PlaylistSource)> {
    let group = kiosk.group.as_ref().and_then(|g| {
        venue
            .group_playlists
            .get(g)
            .map(|id| (*id, PlaylistSource::Group(g.clone())))
    });
    [
        kiosk.playlist.map(|id| (id, PlaylistSource::Own)),
        group,
        venue
            .settings
            .default_playlist
            .map(|id| (id, PlaylistSource::VenueDefault)),
    ]
    .into_iter()
    .flatten()
    .find(|(id, _)| venue.playlists.contains_key(id))
}

/// The kiosk's playlist by the precedence in the module docs.
fn select_playlist<'a>(venue: &'a VenueDoc, kiosk: &Kiosk) -> Option<(PlaylistId, &'a Playlist)> {
    let (id, _) = playlist_source(venue, kiosk)?;
    venue.playlists.get(&id).map(|p| (id, p))
}

/// The playable items of one playlist in order, with the instants at which each plays.
struct Schedule {
    entries: Vec<Entry>,
}

struct Entry {
    item: ManifestItem,
    /// `None`: always; otherwise the half-open intervals in which it plays, around `now`.
    intervals: Option<Vec<(DateTime<Utc>, DateTime<Utc>)>>,
}

impl Schedule {
    fn new(venue: &VenueDoc, playlist: &Playlist, tz: Tz, now: DateTime<Utc>) -> Self {
        let mut ordered: Vec<_> = playlist.items.iter().collect();
        ordered.sort_by(|(a_id, a), (b_id, b)| a.position.cmp(&b.position).then(a_id.cmp(b_id)));
        let today = local_date(tz, now);
        let entries = ordered
            .into_iter()
            .filter_map(|(id, item)| {
                let meta = venue.media.get(&item.media)?;
                // Occurrences that start two local days before `now` may still be running;
                // ten days after covers LOOKAHEAD even across a whole-day time zone jump.
                let intervals = item
                    .window
                    .map(|w| occurrences(&w, tz, today, -2..=10).collect());
                let item = ManifestItem {
                    item: *id,
                    media: item.media,
                    content_type: meta.content_type.clone(),
                    duration_ms: item.duration_ms,
                };
                Some(Entry { item, intervals })
            })
            .collect();
        Schedule { entries }
    }

    /// Which entries play at `t` (only meaningful for `t` within LOOKAHEAD of `now`).
    fn active_at(&self, t: DateTime<Utc>) -> Vec<bool> {
        self.entries
            .iter()
            .map(|e| {
                e.intervals
                    .as_ref()
                    .is_none_or(|iv| iv.iter().any(|(s, end)| *s <= t && t < *end))
            })
            .collect()
    }

    fn items(&self, active: &[bool]) -> Vec<ManifestItem> {
        self.entries
            .iter()
            .zip(active)
            .filter(|(_, on)| **on)
            .map(|(e, _)| e.item.clone())
            .collect()
    }

    /// Every instant in `(now, now + LOOKAHEAD]` at which some item starts or stops, in
    /// order: the active set is constant between consecutive ones.
    fn change_points(&self, now: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> {
        let horizon = now
            .checked_add_signed(LOOKAHEAD)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let points: BTreeSet<_> = self
            .entries
            .iter()
            .filter_map(|e| e.intervals.as_ref())
            .flatten()
            .flat_map(|(s, e)| [*s, *e])
            .filter(|t| now < *t && *t <= horizon)
            .collect();
        points.into_iter()
    }
}

/// The wall-clock date in `tz` at instant `t`.
fn local_date(tz: Tz, t: DateTime<Utc>) -> NaiveDate {
    tz.from_utc_datetime(&t.naive_utc()).date_naive()
}

/// The `[start, end)` instants of the occurrences of `window` that start on the local dates
/// `day + offset` for each offset. An invalid window has none.
fn occurrences(
    window: &ScheduleWindow,
    tz: Tz,
    day: NaiveDate,
    offsets: std::ops::RangeInclusive<i64>,
) -> impl Iterator<Item = (DateTime<Utc>, DateTime<Utc>)> {
    let valid = window.validate().is_ok();
    let window = *window;
    offsets
        .filter(move |_| valid)
        .filter_map(move |o| day.checked_add_signed(TimeDelta::days(o)))
        .filter(move |d| window.days.contains(d.weekday()))
        .filter_map(move |d| {
            let midnight = d.and_time(NaiveTime::MIN);
            let start = midnight.checked_add_signed(TimeDelta::minutes(window.start_min.into()))?;
            let end_day = if window.crosses_midnight() {
                TimeDelta::days(1)
            } else {
                TimeDelta::zero()
            };
            let end =
                midnight.checked_add_signed(end_day + TimeDelta::minutes(window.end_min.into()))?;
            Some((wall_clock_instant(tz, start), wall_clock_instant(tz, end)))
        })
}

/// `DateTime<Utc>` as an RFC 3339 string (chrono's own serde support is not enabled here).
mod rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| D::Error::custom(format!("bad RFC 3339 time {text:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, Weekday};

    use super::*;
    use crate::schedule::Weekdays;

    fn local(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_opt(h, mi, 0)
            .unwrap()
    }

    fn wall_clock(tz: Tz, t: DateTime<Utc>) -> NaiveDateTime {
        tz.from_utc_datetime(&t.naive_utc()).naive_local()
    }

    #[test]
    fn wall_clock_instant_is_the_first_instant_the_clock_reaches_the_time() {
        let cases = [
            (chrono_tz::Europe::Berlin, local(2026, 6, 1, 12, 0)), // ordinary
            (chrono_tz::Europe::Berlin, local(2026, 3, 29, 2, 30)), // spring-forward gap
            (chrono_tz::Europe::Berlin, local(2026, 10, 25, 2, 30)), // repeated hour
            (chrono_tz::America::Santiago, local(2026, 9, 6, 0, 0)), // gap at midnight
            (chrono_tz::Pacific::Apia, local(2011, 12, 30, 12, 0)), // the skipped day
            (chrono_tz::Africa::Abidjan, local(1912, 1, 1, 0, 0)), // a gap of 16 min 8 s
        ];
        for (tz, l) in cases {
            let t = wall_clock_instant(tz, l);
            assert!(
                wall_clock(tz, t) >= l,
                "{tz} {l}: clock at {t} is {}",
                wall_clock(tz, t)
            );
            let before = wall_clock(tz, t - TimeDelta::seconds(1));
            assert!(
                before < l,
                "{tz} {l}: clock already read {before} before {t}"
            );
        }
        let berlin = chrono_tz::Europe::Berlin;
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(
            wall_clock_instant(berlin, local(2026, 3, 29, 2, 30)),
            at("2026-03-29T01:00:00Z")
        );
        assert_eq!(
            wall_clock_instant(berlin, local(2026, 10, 25, 2, 30)),
            at("2026-10-25T00:30:00Z")
        );
        // Local mean time -0:16:08 became GMT: the jump is not on a whole minute.
        let abidjan = wall_clock_instant(chrono_tz::Africa::Abidjan, local(1912, 1, 1, 0, 0));
        assert_eq!(abidjan, at("1912-01-01T00:16:08Z"));
    }

    #[test]
    fn contains_reads_the_wall_clock() {
        let fri_night =
            ScheduleWindow::new(Weekdays::default().with(Weekday::Fri), 22 * 60, 2 * 60).unwrap();
        // 2026-06-05 is a Friday.
        assert!(fri_night.contains(local(2026, 6, 5, 22, 0)));
        assert!(fri_night.contains(local(2026, 6, 6, 1, 59)));
        assert!(!fri_night.contains(local(2026, 6, 6, 2, 0)));
        assert!(!fri_night.contains(local(2026, 6, 6, 22, 0)));
        assert!(!fri_night.contains(local(2026, 6, 5, 1, 0)));

        let to_midnight = ScheduleWindow::new(Weekdays::ALL, 20 * 60, 1440).unwrap();
        assert!(to_midnight.contains(local(2026, 6, 5, 23, 59)));
        assert!(!to_midnight.contains(local(2026, 6, 6, 0, 0)));

        let invalid = ScheduleWindow {
            days: Weekdays::ALL,
            start_min: 10,
            end_min: 0,
        };
        assert!(!invalid.contains(local(2026, 6, 5, 12, 0)));
        let tz = chrono_tz::UTC;
        assert!(!is_active(
            &invalid,
            tz,
            Utc.from_utc_datetime(&local(2026, 6, 5, 12, 0))
        ));
    }

    #[test]
    fn items_with_invalid_windows_never_play_but_are_cached() {
        let hash = MediaHash::of(b"x");
        let kiosk = KioskId::from_bytes([1; 16]);
        let list = PlaylistId::from_bytes([2; 16]);
        let mut venue = VenueDoc::default();
        venue.settings.timezone = "UTC".into();
        venue.settings.default_playlist = Some(list);
        let meta = crate::doc::MediaMeta {
            name: "x".into(),
            content_type: "image/png".into(),
            size: 1,
        };
        venue.media.insert(hash, meta);
        let window = Some(ScheduleWindow {
            days: Weekdays::ALL,
            start_min: 2000,
            end_min: 60,
        });
        let item = crate::doc::PlaylistItem {
            media: hash,
            duration_ms: 1,
            window,
            position: "80".into(),
        };
        let items = [(ItemId::from_bytes([3; 16]), item)].into();
        venue.playlists.insert(
            list,
            Playlist {
                name: "p".into(),
                items,
            },
        );
        venue.kiosks.insert(
            kiosk,
            Kiosk {
                name: "k".into(),
                group: None,
                orientation: Default::default(),
                playlist: None,
            },
        );

        let m = manifest(
            &venue,
            kiosk,
            DateTime::from_timestamp(1_780_000_000, 0).unwrap(),
        )
        .unwrap();
        assert_eq!((m.now.len(), m.next, m.media), (0, None, vec![hash]));
    }

    #[test]
    fn playlist_source_names_the_rule_and_skips_removed_playlists() {
        let (own, group, default) = (
            PlaylistId::from_bytes([1; 16]),
            PlaylistId::from_bytes([2; 16]),
            PlaylistId::from_bytes([3; 16]),
        );
        let mut venue = VenueDoc::default();
        for id in [group, default] {
            let list = Playlist {
                name: "p".into(),
                items: Default::default(),
            };
            venue.playlists.insert(id, list);
        }
        venue.group_playlists.insert("bar".into(), group);
        venue.settings.default_playlist = Some(default);
        let mut kiosk = Kiosk {
            name: "k".into(),
            group: Some("bar".into()),
            orientation: Default::default(),
            // Removed: falls through to the group's.
            playlist: Some(own),
        };
        assert_eq!(
            playlist_source(&venue, &kiosk),
            Some((group, PlaylistSource::Group("bar".into())))
        );
        kiosk.group = None;
        assert_eq!(
            playlist_source(&venue, &kiosk),
            Some((default, PlaylistSource::VenueDefault))
        );
        venue.playlists.insert(
            own,
            Playlist {
                name: "own".into(),
                items: Default::default(),
            },
        );
        assert_eq!(
            playlist_source(&venue, &kiosk),
            Some((own, PlaylistSource::Own))
        );
        venue.playlists.clear();
        assert_eq!(playlist_source(&venue, &kiosk), None);
    }

    #[test]
    fn version_covers_every_field() {
        let item = ManifestItem {
            item: ItemId::from_bytes([3; 16]),
            media: MediaHash::of(b"x"),
            content_type: "image/png".into(),
            duration_ms: 1,
        };
        let at = DateTime::from_timestamp(1_780_000_000, 0).unwrap();
        let next = NextChange {
            at,
            items: vec![item.clone()],
        };
        let base = Manifest::assemble(
            KioskId::from_bytes([1; 16]),
            Some(PlaylistId::from_bytes([2; 16])),
            vec![item.clone()],
            Some(next.clone()),
            vec![item.media],
        );
        let same = Manifest::assemble(
            base.kiosk,
            base.playlist,
            base.now.clone(),
            base.next.clone(),
            base.media.clone(),
        );
        assert_eq!(base.version, same.version);

        let png_as_jpeg = ManifestItem {
            content_type: "image/jpeg".into(),
            ..item.clone()
        };
        let later = NextChange {
            at: at + TimeDelta::nanoseconds(1),
            ..next.clone()
        };
        let variants = [
            Manifest::assemble(
                KioskId::from_bytes([9; 16]),
                base.playlist,
                base.now.clone(),
                base.next.clone(),
                base.media.clone(),
            ),
            Manifest::assemble(
                base.kiosk,
                None,
                base.now.clone(),
                base.next.clone(),
                base.media.clone(),
            ),
            Manifest::assemble(
                base.kiosk,
                base.playlist,
                vec![png_as_jpeg],
                base.next.clone(),
                base.media.clone(),
            ),
            Manifest::assemble(
                base.kiosk,
                base.playlist,
                vec![],
                base.next.clone(),
                base.media.clone(),
            ),
            Manifest::assemble(
                base.kiosk,
                base.playlist,
                base.now.clone(),
                None,
                base.media.clone(),
            ),
            Manifest::assemble(
                base.kiosk,
                base.playlist,
                base.now.clone(),
                Some(later),
                base.media.clone(),
            ),
            Manifest::assemble(
                base.kiosk,
                base.playlist,
                base.now.clone(),
                base.next.clone(),
                vec![],
            ),
        ];
        let mut versions: Vec<_> = variants.iter().map(|m| m.version.clone()).collect();
        versions.push(base.version.clone());
        let count = versions.len();
        versions.sort();
        versions.dedup();
        assert_eq!(
            versions.len(),
            count,
            "every change of content changes the version"
        );
    }
}
