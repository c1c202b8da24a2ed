//! Manifest tests: playlist choice, order, dayparting across midnight, time zones and
//! daylight saving, the next change, the media list, the version, and properties of `next`.

use chrono::{DateTime, Offset, TimeDelta, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use proptest::prelude::*;
use taplink_sync_proto::doc::{
    Kiosk, MediaMeta, Orientation, Playlist, PlaylistItem, VenueDoc, VenueSettings,
};
use taplink_sync_proto::ids::{ItemId, KioskId, MediaHash, PlaylistId};
use taplink_sync_proto::manifest::{LOOKAHEAD, ManifestError, ManifestItem, is_active, manifest};
use taplink_sync_proto::schedule::{ScheduleWindow, Weekdays};

const KIOSK: KioskId = KioskId::from_bytes([1; 16]);
const PLAYLIST: PlaylistId = PlaylistId::from_bytes([2; 16]);

fn item_id(n: u8) -> ItemId {
    ItemId::from_bytes([n; 16])
}

fn playlist_id(n: u8) -> PlaylistId {
    PlaylistId::from_bytes([n; 16])
}

fn media(n: u8) -> MediaHash {
    MediaHash::of(&[n])
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn window(days: Weekdays, start: (u16, u16), end: (u16, u16)) -> ScheduleWindow {
    ScheduleWindow::new(days, start.0 * 60 + start.1, end.0 * 60 + end.1).unwrap()
}

fn day(d: Weekday) -> Weekdays {
    Weekdays::default().with(d)
}

fn kiosk(group: Option<&str>, playlist: Option<PlaylistId>) -> Kiosk {
    Kiosk {
        name: "screen".into(),
        group: group.map(Into::into),
        orientation: Orientation::Landscape,
        playlist,
    }
}

fn playlist(items: &[(u8, &str, Option<ScheduleWindow>)]) -> Playlist {
    let items = items
        .iter()
        .map(|&(n, position, window)| {
            let item = PlaylistItem {
                media: media(n),
                duration_ms: 5_000,
                window,
                position: position.into(),
            };
            (item_id(n), item)
        })
        .collect();
    Playlist {
        name: "list".into(),
        items,
    }
}

/// A venue in `tz` with one kiosk playing `PLAYLIST`, whose items are numbered 1, 2, … and
/// each show the media numbered like the item.
fn venue(tz: &str, items: &[(u8, &str, Option<ScheduleWindow>)]) -> VenueDoc {
    let mut doc = VenueDoc {
        schema: 1,
        settings: VenueSettings {
            name: "bar".into(),
            timezone: tz.into(),
            default_playlist: None,
        },
        ..VenueDoc::default()
    };
    for &(n, _, _) in items {
        let meta = MediaMeta {
            name: format!("{n}.png"),
            content_type: "image/png".into(),
            size: 100,
        };
        doc.media.insert(media(n), meta);
    }
    doc.playlists.insert(PLAYLIST, playlist(items));
    doc.kiosks.insert(KIOSK, kiosk(None, Some(PLAYLIST)));
    doc
}

/// A venue whose only item (1) plays in `w`.
fn windowed(tz: &str, w: ScheduleWindow) -> VenueDoc {
    venue(tz, &[(1, "80", Some(w))])
}

fn ids(items: &[ManifestItem]) -> Vec<ItemId> {
    items.iter().map(|i| i.item).collect()
}

fn plays(doc: &VenueDoc, at: &str) -> Vec<ItemId> {
    ids(&manifest(doc, KIOSK, utc(at)).unwrap().now)
}

fn active(doc: &VenueDoc, at: &str) -> bool {
    !plays(doc, at).is_empty()
}

fn next_at(doc: &VenueDoc, at: &str) -> Option<DateTime<Utc>> {
    manifest(doc, KIOSK, utc(at)).unwrap().next.map(|n| n.at)
}

#[test]
fn playlist_precedence_is_own_then_group_then_default_then_none() {
    let mut doc = venue("UTC", &[]);
    for n in 10..13 {
        doc.playlists.insert(playlist_id(n), playlist(&[]));
    }
    doc.group_playlists.insert("bar".into(), playlist_id(11));
    doc.settings.default_playlist = Some(playlist_id(12));
    let at = utc("2026-06-01T12:00:00Z");
    let chosen = |doc: &VenueDoc, k: Kiosk| {
        let mut doc = doc.clone();
        doc.kiosks.insert(KIOSK, k);
        manifest(&doc, KIOSK, at).unwrap().playlist
    };

    assert_eq!(
        chosen(&doc, kiosk(Some("bar"), Some(playlist_id(10)))),
        Some(playlist_id(10))
    );
    assert_eq!(
        chosen(&doc, kiosk(Some("bar"), None)),
        Some(playlist_id(11))
    );
    assert_eq!(
        chosen(&doc, kiosk(Some("terrace"), None)),
        Some(playlist_id(12)),
        "group without entry"
    );
    assert_eq!(chosen(&doc, kiosk(None, None)), Some(playlist_id(12)));
    doc.settings.default_playlist = None;
    let empty = {
        let mut d = doc.clone();
        d.kiosks.insert(KIOSK, kiosk(None, None));
        manifest(&d, KIOSK, at).unwrap()
    };
    assert_eq!(
        (
            empty.playlist,
            empty.now.len(),
            empty.next,
            empty.media.len()
        ),
        (None, 0, None, 0)
    );
}

#[test]
fn dangling_playlist_references_fall_through() {
    let mut doc = venue("UTC", &[]);
    doc.playlists.insert(playlist_id(12), playlist(&[]));
    doc.group_playlists.insert("bar".into(), playlist_id(98)); // deleted playlist
    doc.settings.default_playlist = Some(playlist_id(12));
    doc.kiosks
        .insert(KIOSK, kiosk(Some("bar"), Some(playlist_id(99)))); // deleted playlist
    let at = utc("2026-06-01T12:00:00Z");
    assert_eq!(
        manifest(&doc, KIOSK, at).unwrap().playlist,
        Some(playlist_id(12))
    );

    doc.settings.default_playlist = Some(playlist_id(97));
    assert_eq!(manifest(&doc, KIOSK, at).unwrap().playlist, None);
}

#[test]
fn unknown_kiosk_and_bad_time_zone_are_errors() {
    let mut doc = venue("UTC", &[(1, "80", None)]);
    let at = utc("2026-06-01T12:00:00Z");
    let stranger = KioskId::from_bytes([7; 16]);
    assert_eq!(
        manifest(&doc, stranger, at),
        Err(ManifestError::UnknownKiosk(stranger))
    );

    doc.settings.timezone = "Europe/Atlantis".into();
    let err = manifest(&doc, KIOSK, at).unwrap_err();
    assert_eq!(err, ManifestError::BadTimezone("Europe/Atlantis".into()));
    assert!(err.to_string().contains("Europe/Atlantis"));
}

#[test]
fn items_play_in_position_order_then_by_id() {
    let doc = venue(
        "UTC",
        &[
            (4, "80", None),
            (3, "7f", None),
            (2, "80", None),
            (1, "81", None),
        ],
    );
    assert_eq!(
        plays(&doc, "2026-06-01T12:00:00Z"),
        [3, 2, 4, 1].map(item_id)
    );
    let m = manifest(&doc, KIOSK, utc("2026-06-01T12:00:00Z")).unwrap();
    assert_eq!(
        m.now[0],
        ManifestItem {
            item: item_id(3),
            media: media(3),
            content_type: "image/png".into(),
            duration_ms: 5_000
        }
    );
}

#[test]
fn same_day_window_starts_inclusive_and_ends_exclusive() {
    // 2026-06-01 is a Monday.
    let doc = windowed("UTC", window(day(Weekday::Mon), (9, 0), (17, 0)));
    assert!(!active(&doc, "2026-06-01T08:59:59Z"));
    assert!(active(&doc, "2026-06-01T09:00:00Z"));
    assert!(active(&doc, "2026-06-01T16:59:59Z"));
    assert!(!active(&doc, "2026-06-01T17:00:00Z"));
    assert!(
        !active(&doc, "2026-06-02T10:00:00Z"),
        "Tuesday is not in its days"
    );
    assert_eq!(
        next_at(&doc, "2026-06-01T08:00:00Z"),
        Some(utc("2026-06-01T09:00:00Z"))
    );
    assert_eq!(
        next_at(&doc, "2026-06-01T09:00:00Z"),
        Some(utc("2026-06-01T17:00:00Z"))
    );
    assert_eq!(
        next_at(&doc, "2026-06-01T17:00:00Z"),
        Some(utc("2026-06-08T09:00:00Z"))
    );
}

#[test]
fn window_crossing_midnight_belongs_to_the_day_it_starts() {
    // Fri 22:00–02:00; 2026-06-05 is a Friday.
    let doc = windowed("UTC", window(day(Weekday::Fri), (22, 0), (2, 0)));
    assert!(!active(&doc, "2026-06-05T21:59:59Z"));
    assert!(active(&doc, "2026-06-05T23:00:00Z"));
    assert!(
        active(&doc, "2026-06-06T01:59:00Z"),
        "Saturday early hours belong to Friday"
    );
    assert!(!active(&doc, "2026-06-06T02:00:00Z"));
    assert!(!active(&doc, "2026-06-04T23:00:00Z"), "Thursday");
    assert!(!active(&doc, "2026-06-06T23:00:00Z"), "Saturday evening");
    assert!(
        !active(&doc, "2026-06-05T01:00:00Z"),
        "Thursday did not start it"
    );
    assert_eq!(
        next_at(&doc, "2026-06-05T23:00:00Z"),
        Some(utc("2026-06-06T02:00:00Z"))
    );
}

#[test]
fn window_with_start_equal_to_end_lasts_a_full_day() {
    let doc = windowed("UTC", window(day(Weekday::Mon), (6, 0), (6, 0)));
    assert!(!active(&doc, "2026-06-01T05:59:59Z"));
    assert!(active(&doc, "2026-06-01T06:00:00Z"));
    assert!(active(&doc, "2026-06-02T05:59:59Z"));
    assert!(!active(&doc, "2026-06-02T06:00:00Z"));

    // A whole calendar day is 00:00–24:00 (an end of 0 is invalid).
    let midnight = windowed("UTC", window(day(Weekday::Wed), (0, 0), (24, 0)));
    assert!(!active(&midnight, "2026-06-02T23:59:59Z"));
    assert!(active(&midnight, "2026-06-03T00:00:00Z"));
    assert!(active(&midnight, "2026-06-03T23:59:59Z"));
    assert!(!active(&midnight, "2026-06-04T00:00:00Z"));
}

#[test]
fn window_ending_at_1440_runs_to_midnight() {
    let doc = windowed("UTC", window(day(Weekday::Mon), (20, 0), (24, 0)));
    assert!(active(&doc, "2026-06-01T23:59:59Z"));
    assert!(!active(&doc, "2026-06-02T00:00:00Z"));
    assert_eq!(
        next_at(&doc, "2026-06-01T21:00:00Z"),
        Some(utc("2026-06-02T00:00:00Z"))
    );
}

#[test]
fn the_same_instant_plays_differently_in_berlin_and_new_york() {
    // 2026-06-01 14:00 UTC is 16:00 in Berlin and 10:00 in New York.
    let morning = window(Weekdays::WEEKDAYS, (9, 0), (12, 0));
    let at = "2026-06-01T14:00:00Z";
    assert!(!active(&windowed("Europe/Berlin", morning), at));
    assert!(active(&windowed("America/New_York", morning), at));
    assert_eq!(
        next_at(&windowed("America/New_York", morning), at),
        Some(utc("2026-06-01T16:00:00Z"))
    );
    assert_eq!(
        next_at(&windowed("Europe/Berlin", morning), at),
        Some(utc("2026-06-02T07:00:00Z"))
    );
}

#[test]
fn auckland_plays_tuesday_items_while_utc_still_says_monday() {
    // NZDT is UTC+13 in January: Monday 2026-01-05 11:00 UTC is Tuesday 00:00 in Auckland.
    let doc = venue(
        "Pacific/Auckland",
        &[
            (1, "80", Some(window(day(Weekday::Mon), (0, 0), (24, 0)))),
            (2, "81", Some(window(day(Weekday::Tue), (0, 0), (24, 0)))),
        ],
    );
    assert_eq!(plays(&doc, "2026-01-05T10:59:59Z"), [item_id(1)]);
    assert_eq!(plays(&doc, "2026-01-05T11:00:00Z"), [item_id(2)]);
    assert_eq!(plays(&doc, "2026-01-05T12:00:00Z"), [item_id(2)]);
    let m = manifest(&doc, KIOSK, utc("2026-01-05T00:00:00Z")).unwrap();
    let next = m.next.unwrap();
    assert_eq!(
        (next.at, ids(&next.items)),
        (utc("2026-01-05T11:00:00Z"), vec![item_id(2)])
    );
}

#[test]
fn berlin_spring_forward_starts_a_window_in_the_gap_when_the_clock_jumps() {
    // 2026-03-29 (Sunday) 02:00 CET jumps to 03:00 CEST at 01:00 UTC.
    let doc = windowed("Europe/Berlin", window(day(Weekday::Sun), (2, 30), (4, 0)));
    assert!(!active(&doc, "2026-03-29T00:30:00Z"), "01:30 local");
    assert_eq!(
        next_at(&doc, "2026-03-29T00:30:00Z"),
        Some(utc("2026-03-29T01:00:00Z"))
    );
    assert!(!active(&doc, "2026-03-29T00:59:59Z"));
    assert!(active(&doc, "2026-03-29T01:00:00Z"), "03:00 local");
    assert!(active(&doc, "2026-03-29T01:59:59Z"));
    assert!(!active(&doc, "2026-03-29T02:00:00Z"), "04:00 CEST");

    // A window wholly inside the gap does not play that day; next week it does.
    let lost = windowed("Europe/Berlin", window(day(Weekday::Sun), (2, 10), (2, 50)));
    assert!(!active(&lost, "2026-03-29T01:00:00Z"));
    assert_eq!(
        next_at(&lost, "2026-03-29T00:30:00Z"),
        Some(utc("2026-04-05T00:10:00Z"))
    );
}

#[test]
fn berlin_fall_back_takes_boundaries_at_their_first_occurrence() {
    // 2026-10-25 (Sunday) 03:00 CEST falls back to 02:00 CET at 01:00 UTC, so 02:00–03:00
    // local happens twice: 00:00–01:00 UTC and 01:00–02:00 UTC.
    let ending = windowed("Europe/Berlin", window(day(Weekday::Sat), (22, 0), (2, 30)));
    assert!(active(&ending, "2026-10-25T00:00:00Z"), "first 02:00");
    assert_eq!(
        next_at(&ending, "2026-10-25T00:00:00Z"),
        Some(utc("2026-10-25T00:30:00Z"))
    );
    assert!(active(&ending, "2026-10-25T00:29:59Z"));
    assert!(!active(&ending, "2026-10-25T00:30:00Z"), "first 02:30");
    assert!(
        !active(&ending, "2026-10-25T01:15:00Z"),
        "second 02:15: nothing ends twice"
    );
    assert!(!active(&ending, "2026-10-25T01:45:00Z"));

    let starting = windowed("Europe/Berlin", window(day(Weekday::Sun), (2, 30), (5, 0)));
    assert_eq!(
        next_at(&starting, "2026-10-25T00:15:00Z"),
        Some(utc("2026-10-25T00:30:00Z"))
    );
    assert!(!active(&starting, "2026-10-25T00:29:59Z"));
    assert!(active(&starting, "2026-10-25T00:30:00Z"));
    assert!(
        active(&starting, "2026-10-25T01:15:00Z"),
        "second 02:15: nothing starts twice"
    );
    assert!(active(&starting, "2026-10-25T03:59:59Z"));
    assert!(!active(&starting, "2026-10-25T04:00:00Z"), "05:00 CET");
    assert_eq!(
        next_at(&starting, "2026-10-25T00:30:00Z"),
        Some(utc("2026-10-25T04:00:00Z"))
    );
}

#[test]
fn new_york_daylight_saving_both_ways() {
    // 2026-03-08 02:00 EST jumps to 03:00 EDT at 07:00 UTC.
    let spring = windowed(
        "America/New_York",
        window(day(Weekday::Sun), (2, 15), (6, 0)),
    );
    assert!(!active(&spring, "2026-03-08T06:59:59Z"));
    assert_eq!(
        next_at(&spring, "2026-03-08T06:30:00Z"),
        Some(utc("2026-03-08T07:00:00Z"))
    );
    assert!(active(&spring, "2026-03-08T07:00:00Z"));
    // 2026-11-01 02:00 EDT falls back to 01:00 EST at 06:00 UTC; 01:30 EDT is 05:30 UTC.
    let fall = windowed(
        "America/New_York",
        window(day(Weekday::Sat), (23, 0), (1, 30)),
    );
    assert_eq!(
        next_at(&fall, "2026-11-01T05:00:00Z"),
        Some(utc("2026-11-01T05:30:00Z"))
    );
    assert!(active(&fall, "2026-11-01T05:29:59Z"));
    assert!(!active(&fall, "2026-11-01T05:30:00Z"));
    assert!(!active(&fall, "2026-11-01T06:15:00Z"), "second 01:15");
}

#[test]
fn next_change_days_away_and_none_when_nothing_changes() {
    let weekend = window(Weekdays::WEEKEND, (0, 0), (24, 0));
    let doc = venue("UTC", &[(1, "80", None), (2, "81", Some(weekend))]);
    let monday = manifest(&doc, KIOSK, utc("2026-06-01T10:00:00Z")).unwrap();
    assert_eq!(ids(&monday.now), [item_id(1)]);
    let next = monday.next.unwrap();
    assert_eq!(next.at, utc("2026-06-06T00:00:00Z"));
    assert_eq!(ids(&next.items), [item_id(1), item_id(2)]);
    // Saturday's window ending where Sunday's begins is no change.
    assert_eq!(
        next_at(&doc, "2026-06-06T12:00:00Z"),
        Some(utc("2026-06-08T00:00:00Z"))
    );

    let every_day = window(Weekdays::ALL, (5, 0), (5, 0));
    let constant = venue(
        "Europe/Berlin",
        &[(1, "80", None), (2, "81", Some(every_day))],
    );
    let m = manifest(&constant, KIOSK, utc("2026-03-27T10:00:00Z")).unwrap();
    assert_eq!((ids(&m.now), m.next), (vec![item_id(1), item_id(2)], None));
}

#[test]
fn media_lists_every_referenced_file_and_skips_unplayable_items() {
    let night = window(Weekdays::ALL, (1, 0), (2, 0));
    let mut doc = venue(
        "UTC",
        &[(1, "80", None), (2, "81", Some(night)), (3, "82", None)],
    );
    // Item 4 shows the same file as item 1; item 3's metadata is gone.
    let dup = PlaylistItem {
        media: media(1),
        duration_ms: 1,
        window: None,
        position: "83".into(),
    };
    doc.playlists
        .get_mut(&PLAYLIST)
        .unwrap()
        .items
        .insert(item_id(4), dup);
    doc.media.remove(&media(3));

    let m = manifest(&doc, KIOSK, utc("2026-06-01T12:00:00Z")).unwrap();
    let mut expected = vec![media(1), media(2), media(3)];
    expected.sort();
    assert_eq!(m.media, expected);
    assert_eq!(ids(&m.now), [item_id(1), item_id(4)]);
}

#[test]
fn version_is_stable_and_follows_what_the_kiosk_plays() {
    let lunch = window(Weekdays::ALL, (12, 0), (14, 0));
    let doc = venue("Europe/Berlin", &[(1, "80", None), (2, "81", Some(lunch))]);
    let at = |t: &str| manifest(&doc, KIOSK, utc(t)).unwrap();

    let a = at("2026-06-01T06:00:00Z");
    assert_eq!(
        a,
        manifest(&doc.clone(), KIOSK, utc("2026-06-01T06:00:00Z")).unwrap()
    );
    assert_eq!(a.version.len(), 64);
    assert_eq!(
        a.version,
        at("2026-06-01T09:59:59Z").version,
        "same schedule state"
    );
    let lunchtime = at("2026-06-01T10:00:00Z");
    assert_ne!(a.version, lunchtime.version, "schedule changed");
    assert_eq!(lunchtime.version, at("2026-06-01T11:30:00Z").version);

    let mut longer = doc.clone();
    longer
        .playlists
        .get_mut(&PLAYLIST)
        .unwrap()
        .items
        .get_mut(&item_id(1))
        .unwrap()
        .duration_ms = 9_000;
    assert_ne!(
        manifest(&longer, KIOSK, utc("2026-06-01T06:00:00Z"))
            .unwrap()
            .version,
        a.version
    );
}

#[test]
fn manifest_round_trips_through_json() {
    let doc = windowed("Europe/Berlin", window(day(Weekday::Sun), (2, 30), (4, 0)));
    let m = manifest(&doc, KIOSK, utc("2026-03-29T00:30:00Z")).unwrap();
    let json = serde_json::to_string(&m).unwrap();
    assert!(json.contains("\"at\":\"2026-03-29T01:00:00Z\""), "{json}");
    assert_eq!(
        serde_json::from_str::<taplink_sync_proto::manifest::Manifest>(&json).unwrap(),
        m
    );
}

/// Zones with odd offsets, daylight saving at 02:00, at midnight, by 30 minutes, and
/// Samoa's skipped day, each with instants at which its offset changes.
const ZONES: &[(&str, &[&str])] = &[
    ("UTC", &["2026-06-01T00:00:00Z"]),
    ("Asia/Kathmandu", &["2026-06-01T00:00:00Z"]),
    (
        "Europe/Berlin",
        &["2026-03-29T01:00:00Z", "2026-10-25T01:00:00Z"],
    ),
    (
        "America/New_York",
        &["2026-03-08T07:00:00Z", "2026-11-01T06:00:00Z"],
    ),
    (
        "America/St_Johns",
        &["2026-03-08T05:30:00Z", "2026-11-01T04:30:00Z"],
    ),
    (
        "America/Santiago",
        &["2026-04-05T03:00:00Z", "2026-09-06T04:00:00Z"],
    ),
    (
        "Pacific/Auckland",
        &["2026-04-04T14:00:00Z", "2026-09-26T14:00:00Z"],
    ),
    (
        "Australia/Lord_Howe",
        &["2026-04-04T15:00:00Z", "2026-10-03T15:30:00Z"],
    ),
    ("Pacific/Apia", &["2011-12-30T10:00:00Z"]),
];

#[test]
fn property_test_anchors_are_offset_changes() {
    for (name, anchors) in &ZONES[2..] {
        let tz: Tz = name.parse().unwrap();
        for a in anchors.iter().map(|a| utc(a)) {
            let offset = |t: DateTime<Utc>| tz.offset_from_utc_datetime(&t.naive_utc()).fix();
            assert_ne!(
                offset(a - TimeDelta::seconds(1)),
                offset(a),
                "{name} at {a}"
            );
        }
    }
}

fn local_minute(tz: Tz, t: DateTime<Utc>) -> i32 {
    let l = tz.from_utc_datetime(&t.naive_utc()).naive_local();
    (l.hour() * 60 + l.minute()) as i32
}

/// A window boundary: `kind` 0 on a half-hour grid, 1 anywhere, otherwise within half an
/// hour of the local times around the anchor's offset change, where the clock jumps.
fn boundary(kind: u8, raw: u16, hot: (i32, i32), end: bool) -> u16 {
    let minute = match kind {
        0 => i32::from(raw / 30 * 30 + if end { 30 } else { 0 }),
        1 => i32::from(raw + u16::from(end)),
        _ => {
            (hot.0.min(hot.1) - 30 + i32::from(raw) % ((hot.0 - hot.1).abs() + 61)).rem_euclid(1440)
        }
    };
    if end && minute == 0 {
        1440
    } else {
        minute as u16
    }
}

type Case = (Tz, Vec<Option<ScheduleWindow>>, DateTime<Utc>);

fn arb_case() -> impl Strategy<Value = Case> {
    let raw_window = (1u8..128, 0u8..4, 0u16..1440, 0u8..4, 0u16..1440);
    let offset = prop_oneof![1 => -3 * 86_400i64..3 * 86_400, 1 => -3 * 3_600i64..3 * 3_600, 2 => -3_600i64..3_600];
    let windows = proptest::collection::vec(proptest::option::weighted(0.85, raw_window), 1..4);
    (
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        offset,
        windows,
    )
        .prop_map(|(z, a, offset, raw)| {
            let (name, anchors) = ZONES[z.index(ZONES.len())];
            let tz: Tz = name.parse().unwrap();
            let anchor = utc(anchors[a.index(anchors.len())]);
            let hot = (
                local_minute(tz, anchor - TimeDelta::seconds(1)),
                local_minute(tz, anchor),
            );
            let windows = raw
                .into_iter()
                .map(|w| {
                    w.map(|(days, sk, s, ek, e)| {
                        let (start, end) =
                            (boundary(sk, s, hot, false), boundary(ek, e, hot, true));
                        ScheduleWindow::new(Weekdays(days), start, end).unwrap()
                    })
                })
                .collect();
            (tz, windows, anchor + TimeDelta::seconds(offset))
        })
}

fn case_venue(tz: Tz, windows: &[Option<ScheduleWindow>]) -> VenueDoc {
    let items: Vec<_> = windows
        .iter()
        .enumerate()
        .map(|(i, w)| (i as u8 + 1, "80", *w))
        .collect();
    venue(tz.name(), &items)
}

/// What plays at `t`, straight from [`is_active`] rather than from a manifest.
fn expected(doc: &VenueDoc, t: DateTime<Utc>) -> Vec<ItemId> {
    let tz: Tz = doc.settings.timezone.parse().unwrap();
    let mut items: Vec<_> = doc.playlists[&PLAYLIST].items.iter().collect();
    items.sort_by(|a, b| a.1.position.cmp(&b.1.position).then(a.0.cmp(b.0)));
    items
        .into_iter()
        .filter(|(_, i)| i.window.is_none_or(|w| is_active(&w, tz, t)))
        .map(|(id, _)| *id)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// `next` is the first change: nothing changes before it (checked minute by minute for
    /// the first day and a half, then at spread-out samples), and it is a change.
    #[test]
    fn next_is_the_first_change((tz, windows, now) in arb_case()) {
        let doc = case_venue(tz, &windows);
        let m = manifest(&doc, KIOSK, now).unwrap();
        prop_assert_eq!(ids(&m.now), expected(&doc, now));
        let until = m.next.as_ref().map_or(now + LOOKAHEAD + TimeDelta::seconds(1), |n| n.at);
        if let Some(next) = &m.next {
            prop_assert!(now < next.at && next.at <= now + LOOKAHEAD);
            prop_assert_eq!(ids(&next.items), expected(&doc, next.at));
            prop_assert_eq!(&manifest(&doc, KIOSK, next.at).unwrap().now, &next.items);
            prop_assert_ne!(&next.items, &m.now);
            prop_assert_eq!(&manifest(&doc, KIOSK, next.at - TimeDelta::seconds(1)).unwrap().now, &m.now);
        }
        let minute_scan = (1..=36 * 60).map(|k| now + TimeDelta::minutes(k));
        let spread = (1..16).map(|k| now + (until - now) * k / 16);
        for t in minute_scan.chain(spread).filter(|t| *t < until) {
            prop_assert_eq!(expected(&doc, t), ids(&m.now), "changed at {} before next", t);
        }
    }

    /// Outside the repeated hour after a fall back, a window is active exactly when the
    /// wall clock reads a time inside it.
    #[test]
    fn activity_is_the_wall_clock_reading((tz, windows, t) in arb_case()) {
        let local = tz.from_utc_datetime(&t.naive_utc()).naive_local();
        let first_reading = tz.from_local_datetime(&local).earliest().map(|d| d.with_timezone(&Utc)) == Some(t);
        for w in windows.iter().flatten().filter(|_| first_reading) {
            prop_assert_eq!(is_active(w, tz, t), w.contains(local), "{} local {}", t, local);
        }
    }
}
