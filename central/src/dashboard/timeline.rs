//! A playlist's week at a glance: one row per weekday of the venue's wall clock, one lane
//! per item (in play order), a bar wherever the item may play. A window that crosses
//! midnight is drawn as two bars — from its start to midnight on its day, and from
//! midnight to its end on the next day (Sunday's runs into Monday's row, the week being a
//! loop) — exactly as [`ScheduleWindow::contains`] reads it. A red line marks now.
//!
//! Server-rendered SVG (no script); the legend under it says the same in words.

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;
use maud::{Markup, PreEscaped, html};
use taplink_sync_proto::doc::VenueDoc;
use taplink_sync_proto::ids::PlaylistId;
use taplink_sync_proto::schedule::{MINUTES_PER_DAY, ScheduleWindow};

use super::venue::{duration, ordered, window_text};

/// Items drawn; a longer playlist lists the rest in the legend only.
const MAX_LANES: usize = 8;
/// Drawing units: the label column, one hour, a lane.
const LABEL: u32 = 44;
const HOUR: u32 = 30;
const LANE: u32 = 7;
/// Colours of the lanes: distinct, and dark enough against white.
const COLOURS: [&str; MAX_LANES] = [
    "#0b3d91", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a7b83", "#953800", "#57606a",
];
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// The minutes `[from, to)` of each weekday (0 = Monday) on which `window` (or, `None`,
/// always) lets an item play.
pub(crate) fn segments(window: Option<&ScheduleWindow>) -> Vec<(usize, u16, u16)> {
    let Some(w) = window else {
        return (0..7).map(|d| (d, 0, MINUTES_PER_DAY)).collect();
    };
    if w.validate().is_err() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for day in 0..7 {
        if w.days.0 & (1 << day) == 0 {
            continue;
        }
        if w.crosses_midnight() {
            out.push((day, w.start_min, MINUTES_PER_DAY));
            out.push(((day + 1) % 7, 0, w.end_min));
        } else {
            out.push((day, w.start_min, w.end_min));
        }
    }
    out
}

/// The week of playlist `id` in time zone `tz`, with now marked.
pub(crate) fn week(doc: &VenueDoc, id: PlaylistId, tz: Tz, now: DateTime<Utc>) -> Markup {
    let Some(list) = doc.playlists.get(&id) else {
        return html! {};
    };
    let items = ordered(list);
    let lanes = items.len().clamp(1, MAX_LANES);
    let lane_count = u32::try_from(lanes).unwrap_or(1);
    let row = lane_count * LANE + 8;
    let width = LABEL + 24 * HOUR + 4;
    let height = 7 * row + 18;
    let x_of = |minute: u16| LABEL + u32::from(minute) * HOUR / 60;
    let local = now.with_timezone(&tz);
    let today = local.weekday().num_days_from_monday();
    let now_min = u16::try_from(local.hour() * 60 + local.minute()).unwrap_or(0);
    let mut svg = String::new();
    for hour in (0..=24u16).step_by(3) {
        let x = x_of(hour * 60);
        svg.push_str(&format!(
            r##"<line x1="{x}" y1="14" x2="{x}" y2="{height}" stroke="#d0d7de" stroke-width="1"/><text x="{x}" y="10" font-size="10" text-anchor="middle" fill="#59636e">{hour:02}</text>"##
        ));
    }
    for (day, name) in DAYS.iter().enumerate() {
        let y = 16 + u32::try_from(day).unwrap_or(0) * row;
        let shade = if day % 2 == 0 { "#f6f8fa" } else { "#ffffff" };
        svg.push_str(&format!(
            r##"<rect x="{LABEL}" y="{y}" width="{}" height="{row}" fill="{shade}"/><text x="4" y="{}" font-size="12" fill="#1b1f24">{name}</text>"##,
            24 * HOUR,
            y + row / 2 + 4
        ));
    }
    for (lane, (_, item)) in items.iter().take(MAX_LANES).enumerate() {
        let colour = COLOURS[lane % COLOURS.len()];
        for (day, from, to) in segments(item.window.as_ref()) {
            let y = 16
                + u32::try_from(day).unwrap_or(0) * row
                + 4
                + u32::try_from(lane).unwrap_or(0) * LANE;
            let (x1, x2) = (x_of(from), x_of(to));
            svg.push_str(&format!(
                r##"<rect x="{x1}" y="{y}" width="{}" height="{}" rx="2" fill="{colour}"/>"##,
                x2.saturating_sub(x1).max(1),
                LANE - 2
            ));
        }
    }
    let x = x_of(now_min);
    let y = 16 + today * row;
    svg.push_str(&format!(
        r##"<line x1="{x}" y1="{y}" x2="{x}" y2="{}" stroke="#cf222e" stroke-width="2"><title>now</title></line>"##,
        y + row
    ));
    let label = format!("Week timeline of {} in {}", list.name, tz.name());
    html! {
        figure.timeline data-timeline=(id) {
            svg viewBox={ "0 0 " (width) " " (height) } role="img" aria-label=(label) preserveAspectRatio="xMinYMin meet" {
                (PreEscaped(svg))
            }
            figcaption {
                ul.legend {
                    @for (lane, (item_id, item)) in items.iter().enumerate() {
                        @let name = doc.media.get(&item.media).map_or("unknown media", |m| m.name.as_str());
                        li data-item=(item_id) {
                            @if lane < MAX_LANES { span.swatch style={ "background:" (COLOURS[lane % COLOURS.len()]) } {} }
                            (name) " · " (duration(item.duration_ms)) " · "
                            @match &item.window { Some(w) => { (window_text(w)) } None => { "always" } }
                        }
                    }
                }
                small.muted { "Times are the venue's wall clock (" (tz.name()) "). The red line is now." }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Weekday;
    use taplink_sync_proto::schedule::Weekdays;

    use super::*;

    #[test]
    fn a_window_across_midnight_is_two_bars_and_sunday_wraps_to_monday() {
        let late = ScheduleWindow::new(
            Weekdays::default().with(Weekday::Fri).with(Weekday::Sun),
            22 * 60,
            2 * 60,
        )
        .unwrap();
        assert_eq!(
            segments(Some(&late)),
            vec![(4, 1320, 1440), (5, 0, 120), (6, 1320, 1440), (0, 0, 120)]
        );
        let lunch = ScheduleWindow::new(Weekdays::WEEKDAYS, 11 * 60, 14 * 60).unwrap();
        assert_eq!(segments(Some(&lunch)).len(), 5);
        assert_eq!(segments(None).len(), 7);
        let to_midnight = ScheduleWindow::new(Weekdays::WEEKEND, 20 * 60, 1440).unwrap();
        assert_eq!(
            segments(Some(&to_midnight)),
            vec![(5, 1200, 1440), (6, 1200, 1440)]
        );
    }

    #[test]
    fn segments_agree_with_the_schedule_at_every_quarter_hour() {
        use chrono::NaiveDate;
        let windows = [
            ScheduleWindow::new(Weekdays::default().with(Weekday::Sun), 23 * 60, 60).unwrap(),
            ScheduleWindow::new(Weekdays::WEEKDAYS, 9 * 60, 9 * 60).unwrap(),
            ScheduleWindow::new(Weekdays::ALL, 0, 30).unwrap(),
        ];
        // 2026-11-30 is a Monday.
        for w in &windows {
            let segs = segments(Some(w));
            for day in 0..7u32 {
                for quarter in 0..96u16 {
                    let minute = quarter * 15;
                    let at = (NaiveDate::from_ymd_opt(2026, 11, 30).unwrap()
                        + chrono::Days::new(u64::from(day)))
                    .and_hms_opt(u32::from(minute / 60), u32::from(minute % 60), 0)
                    .unwrap();
                    let drawn = segs
                        .iter()
                        .any(|(d, from, to)| *d == day as usize && *from <= minute && minute < *to);
                    assert_eq!(drawn, w.contains(at), "{w:?} day {day} minute {minute}");
                }
            }
        }
    }
}
