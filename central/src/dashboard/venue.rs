//! `GET /venues/{id}`: one venue — its hub, each kiosk's health, content proof and "why this
//! is playing", and its playlists with their schedule windows.
//!
//! What a kiosk should play is computed here with the function kiosks themselves get their
//! manifest from (`taplink_sync_proto::manifest::manifest`, at the state's `now`), and its
//! playlist rule with `playlist_source`, which that function uses; nothing of the
//! precedence or the schedule is re-implemented. Content proof is `crate::proof` (shared
//! with the content-behind alert).

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{Markup, html};
use taplink_sync_proto::doc::{Kiosk, Orientation, Playlist, PlaylistItem, VenueDoc, load_venue};
use taplink_sync_proto::ids::{HubId, ItemId, KioskId, MediaHash, PlaylistId, VenueId};
use taplink_sync_proto::manifest::{
    Manifest, ManifestError, ManifestItem, PlaylistSource, manifest, playlist_source,
};
use taplink_sync_proto::schedule::{ScheduleWindow, Weekdays};
use taplink_sync_proto::wire::DocId;

use crate::http::{ApiError, Caller};
use crate::proof::Proof;
use crate::state::AppState;
use crate::store::{HubState, KioskHeartbeat, Venue, venue_tz};

use super::fleet::{ago, state_class, state_label};
use super::{Section, Viewer, html_response, page};

/// One kiosk with everything its rows show.
struct KioskView {
    id: KioskId,
    kiosk: Kiosk,
    manifest: Result<Manifest, ManifestError>,
    source: Option<(PlaylistId, PlaylistSource)>,
    beat: Option<KioskHeartbeat>,
    proof: Proof,
}

/// Everything the page shows, read off the async runtime.
struct Loaded {
    venue: Venue,
    doc: VenueDoc,
    hub: HubState,
    last_sync: Option<DateTime<Utc>>,
    kiosks: Vec<KioskView>,
}

/// `GET /venues/{id}`.
pub(crate) async fn venue_page(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(done): Query<super::playlist::Done>,
) -> Response {
    let viewer = Viewer::of(&caller, &headers);
    let Ok(id) = id.parse::<VenueId>() else {
        return not_found(&viewer);
    };
    venue_page_with(&state, &viewer, id, done.done.as_deref(), None).await
}

/// The venue page, with a notice after a change or an error (its status) after a refusal.
pub(super) async fn venue_page_with(
    state: &AppState,
    viewer: &Viewer,
    id: VenueId,
    notice: Option<&str>,
    error: Option<&ApiError>,
) -> Response {
    let now = state.now();
    let online = state.online.ids();
    let loading = state.clone();
    let loaded = tokio::task::spawn_blocking(move || load(&loading, id, &online, now)).await;
    let loaded = match loaded {
        Ok(Ok(Some(loaded))) => loaded,
        Ok(Ok(None)) => return not_found(viewer),
        Ok(Err(e)) => return e.into_response(),
        Err(e) => return ApiError::internal("loading a venue page", e).into_response(),
    };
    let title = loaded.venue.name.clone();
    let body = html! {
        @if let Some(notice) = notice { p.notice.ok role="status" { (notice) } }
        @if let Some(error) = error { p.notice.error role="alert" { (error) } }
        (render(&loaded, now, viewer))
    };
    html_response(
        error.map_or(StatusCode::OK, ApiError::status),
        page(Some(viewer), Section::Fleet, &title, body),
    )
}

fn not_found(viewer: &Viewer) -> Response {
    html_response(
        StatusCode::NOT_FOUND,
        page(
            Some(viewer),
            Section::Fleet,
            "No such venue",
            html! {
                div.card {
                    h1 { "No such venue" }
                    p { "It may have been removed, or the address is mistyped." }
                    p { a href="/" { "Back to the overview" } }
                }
            },
        ),
    )
}

/// Reads the venue, its document, hub and heartbeats, and computes each kiosk's manifest;
/// blocks on SQLite. `None`: no such venue.
fn load(
    state: &AppState,
    id: VenueId,
    online: &[HubId],
    now: DateTime<Utc>,
) -> Result<Option<Loaded>, ApiError> {
    let registry = &state.registry;
    let Some(venue) = registry.venue(id)? else {
        return Ok(None);
    };
    let doc = match state.docs.read(DocId::Venue(id), |am| load_venue(am)) {
        Ok(Ok(doc)) => doc,
        Ok(Err(e)) => return Err(ApiError::internal("loading a venue document", e)),
        Err(_) => return Ok(None),
    };
    let hub = registry.hub_state(id, online)?;
    let last_sync = registry
        .venue_summaries(&[id], now - state.config.alert_offline_after.duration())?
        .get(&id)
        .and_then(|s| s.last_sync);
    let ids: Vec<KioskId> = doc.kiosks.keys().copied().collect();
    let mut beats: BTreeMap<KioskId, KioskHeartbeat> = registry
        .latest_heartbeats(id, &ids)?
        .into_iter()
        .map(|b| (b.kiosk, b))
        .collect();
    let mut kiosks = Vec::with_capacity(ids.len());
    for (kid, kiosk) in &doc.kiosks {
        let manifest = manifest(&doc, *kid, now);
        let beat = beats.remove(kid);
        let proof = crate::proof::of(registry, id, *kid, &manifest, beat.as_ref())?;
        kiosks.push(KioskView {
            id: *kid,
            kiosk: kiosk.clone(),
            source: playlist_source(&doc, kiosk),
            manifest,
            beat,
            proof,
        });
    }
    kiosks.sort_by(|a, b| a.kiosk.name.cmp(&b.kiosk.name).then(a.id.cmp(&b.id)));
    Ok(Some(Loaded {
        venue,
        doc,
        hub,
        last_sync,
        kiosks,
    }))
}

fn render(loaded: &Loaded, now: DateTime<Utc>, viewer: &Viewer) -> Markup {
    let venue = &loaded.venue;
    let doc = &loaded.doc;
    // Schedules are read in the document's time zone (what the manifest uses).
    let tz_name = if doc.settings.timezone.is_empty() {
        venue.timezone.as_str()
    } else {
        doc.settings.timezone.as_str()
    };
    let tz = venue_tz(tz_name);
    let may_edit = taplink_sync_proto::authz::authorize(
        &viewer.principal,
        taplink_sync_proto::authz::Action::ContentWrite,
        taplink_sync_proto::authz::Target::Venue {
            id: venue.id,
            tags: &venue.tags,
        },
    )
    .is_ok();
    html! {
        p.crumbs {
            a href="/" { "← Venues" }
            @if viewer.may(taplink_sync_proto::authz::Action::KioskCodeManage) {
                " · " a href={ "/venues/" (venue.id) "/provisioning" } { "Provisioning: hub and kiosk codes" }
            }
        }
        div.card.venue-head data-venue=(venue.id) {
            h1 { (venue.name) }
            dl.facts {
                div { dt { "Hub" } dd { span.state.(state_class(loaded.hub)) data-hub-state=(state_class(loaded.hub)) { (state_label(loaded.hub)) } } }
                div { dt { "Last sync" } dd { (ago(loaded.last_sync, now)) } }
                div { dt { "Time zone" } dd { (tz_name) } }
                div { dt { "Tags" } dd {
                    @if venue.tags.is_empty() { span.muted { "none" } }
                    @for tag in &venue.tags { span.tag { (tag) } }
                } }
            }
        }
        h2 { "Kiosks" }
        @if loaded.kiosks.is_empty() {
            div.card { p { "No kiosks yet." } }
        } @else {
            table.fleet.kiosks {
                thead { tr {
                    th { "Kiosk" } th { "Group" } th { "Orientation" } th { "Last heartbeat" }
                    th { "On screen" } th { "Disk free" } th { "Temperature" } th { "Software" }
                    th { "Content" }
                } }
                tbody {
                    @for k in &loaded.kiosks {
                        (kiosk_row(k, doc, tz, now))
                    }
                }
            }
            h2 { "Why this is playing" }
            @for k in &loaded.kiosks {
                (why_playing(k, doc, tz))
            }
        }
        h2 { "Playlists" }
        @if may_edit {
            form.inline.card method="post" action={ "/venues/" (venue.id) "/playlists" } {
                input type="hidden" name="csrf_token" value=(viewer.csrf);
                label for="new-playlist" { "New playlist" input id="new-playlist" name="name" type="text" required maxlength="200" placeholder="Lunch menu"; }
                button type="submit" { "Create and edit" }
            }
        }
        (playlists(doc, venue.id, tz, now, may_edit))
    }
}

fn kiosk_row(k: &KioskView, doc: &VenueDoc, tz: Tz, now: DateTime<Utc>) -> Markup {
    let beat = k.beat.as_ref().map(|b| &b.heartbeat);
    html! {
        tr data-kiosk=(k.id) {
            td data-label="Kiosk" { strong { (k.kiosk.name) } }
            td data-label="Group" { (k.kiosk.group.as_deref().unwrap_or("—")) }
            td data-label="Orientation" { (orientation_name(k.kiosk.orientation)) }
            td data-label="Last heartbeat" {
                @match &k.beat {
                    Some(b) => { time datetime=(b.at.to_rfc3339()) title=(local_time(b.at, tz)) { (ago(Some(b.at), now)) } }
                    None => { span.muted { "never" } }
                }
            }
            td data-label="On screen" {
                @match beat {
                    Some(h) => @match h.on_screen {
                        Some(hash) => { (media_name(doc, &hash)) }
                        None => { span.muted { "idle page" } }
                    },
                    None => { span.muted { "—" } }
                }
            }
            td data-label="Disk free" { @match beat { Some(h) => { (bytes(h.disk_free_bytes)) } None => { "—" } } }
            td data-label="Temperature" {
                @match beat.and_then(|h| h.temperature_mc) {
                    Some(mc) => { (celsius(mc)) }
                    None => { span.muted { "—" } }
                }
            }
            td data-label="Software" { @match beat { Some(h) => { (h.software) } None => { "—" } } }
            td data-label="Content" data-proof=(proof_class(&k.proof)) {
                (proof_text(k, tz))
            }
        }
    }
}

fn proof_class(proof: &Proof) -> &'static str {
    match proof {
        Proof::UpToDate => "up_to_date",
        Proof::Behind { .. } => "behind",
        Proof::Unknown => "unknown",
    }
}

fn proof_text(k: &KioskView, tz: Tz) -> Markup {
    match (&k.proof, &k.manifest) {
        (Proof::UpToDate, _) => html! {
            span.proof.up_to_date { "Up to date" }
            br; small.muted { "its latest report matches central's manifest" }
        },
        (Proof::Behind { since, after_match }, _) => html! {
            span.proof.behind { "Behind since " (local_time(*since, tz)) }
            br;
            small.muted {
                @if *after_match {
                    "first report after its last up-to-date one"
                } @else {
                    "its latest report; it has not reported the current manifest"
                }
            }
        },
        (Proof::Unknown, Err(e)) => html! {
            span.proof.unknown { "Unknown" }
            br; small.muted { "central cannot compute its manifest: " (e) }
        },
        (Proof::Unknown, Ok(_)) => html! {
            span.proof.unknown { "Unknown" }
            br; small.muted { "no heartbeat yet" }
        },
    }
}

fn why_playing(k: &KioskView, doc: &VenueDoc, tz: Tz) -> Markup {
    let on_screen = k.beat.as_ref().and_then(|b| b.heartbeat.on_screen);
    html! {
        section.card.why data-kiosk=(k.id) {
            h3 { (k.kiosk.name) }
            p data-why="rule" {
                @match &k.source {
                    Some((id, source)) => {
                        "Plays " strong { (playlist_name(doc, id)) } " — "
                        @match source {
                            PlaylistSource::Own => { "own playlist" }
                            PlaylistSource::Group(group) => { "group " (group) }
                            PlaylistSource::VenueDefault => { "venue default" }
                            _ => { "assigned" }
                        }
                        "."
                    }
                    None => { "Nothing assigned: no own, group or venue default playlist; the screen shows its idle page." }
                }
            }
            @match &k.manifest {
                Err(e) => { p.muted { "Central cannot compute its manifest: " (e) } }
                Ok(m) => {
                    @if k.source.is_some() {
                        @if m.now.is_empty() {
                            p data-why="now" { "Now: no item is in its schedule window, so the screen shows its idle page." }
                        } @else {
                            p data-why="now" { "Now, in a loop:" }
                            ol.items {
                                @for item in &m.now {
                                    li data-media=(item.media) {
                                        (media_name(doc, &item.media)) " · " (duration(item.duration_ms)) " · "
                                        (eligibility(doc, m.playlist, item))
                                        @if on_screen == Some(item.media) { " " span.tag { "on screen" } }
                                    }
                                }
                            }
                        }
                        @if let Some(hash) = on_screen {
                            @if !m.now.iter().any(|i| i.media == hash) {
                                p.notice.error { "On screen per its latest report: " (media_name(doc, &hash)) ", which is not in what it should play now." }
                            }
                        }
                        p data-why="next" {
                            @match &m.next {
                                Some(next) => {
                                    "Next: from " strong { (local_time(next.at, tz)) } ", "
                                    @if next.items.is_empty() {
                                        "nothing (the idle page)"
                                    } @else {
                                        @for (i, item) in next.items.iter().enumerate() {
                                            @if i > 0 { ", " }
                                            (media_name(doc, &item.media))
                                        }
                                    }
                                    "."
                                }
                                None => { "Next: no change in the coming week." }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Why `item` is eligible now: always, or the schedule window it is in.
fn eligibility(doc: &VenueDoc, playlist: Option<PlaylistId>, item: &ManifestItem) -> String {
    let window = playlist
        .and_then(|p| doc.playlists.get(&p))
        .and_then(|p| p.items.get(&item.item))
        .and_then(|i| i.window);
    match window {
        Some(w) => format!("in its window {}", window_text(&w)),
        None => "always".to_owned(),
    }
}

/// Where a playlist is shown: "kiosk Bar, group menu, venue default" or "nothing".
pub(super) fn used_by(doc: &VenueDoc, id: PlaylistId) -> Markup {
    let kiosks: Vec<&str> = doc
        .kiosks
        .values()
        .filter(|k| k.playlist == Some(id))
        .map(|k| k.name.as_str())
        .collect();
    let groups: Vec<&str> = doc
        .group_playlists
        .iter()
        .filter(|(_, p)| **p == id)
        .map(|(g, _)| g.as_str())
        .collect();
    let default = doc.settings.default_playlist == Some(id);
    let mut parts: Vec<String> = kiosks.iter().map(|k| format!("kiosk {k}")).collect();
    parts.extend(groups.iter().map(|g| format!("group {g}")));
    if default {
        parts.push("venue default".to_owned());
    }
    html! {
        span data-used-by {
            "Shown on: "
            @if parts.is_empty() { "nothing yet" } @else { (parts.join(", ")) }
        }
    }
}

fn playlists(doc: &VenueDoc, venue: VenueId, tz: Tz, now: DateTime<Utc>, may_edit: bool) -> Markup {
    let mut lists: Vec<_> = doc.playlists.iter().collect();
    lists.sort_by(|(a_id, a), (b_id, b)| a.name.cmp(&b.name).then(a_id.cmp(b_id)));
    html! {
        @if lists.is_empty() {
            div.card { p { "No playlists yet." } }
        }
        @for (id, list) in lists {
            section.card.playlist data-playlist=(id) {
                h3 {
                    a href={ "/venues/" (venue) "/playlists/" (id) } { (list.name) }
                    " " a.button.secondary href={ "/venues/" (venue) "/playlists/" (id) } { @if may_edit { "Edit" } @else { "Open" } }
                }
                p.muted { (used_by(doc, *id)) }
                @let items = ordered(list);
                @if items.is_empty() {
                    p { "No items." }
                } @else {
                    ol.items {
                        @for (item_id, item) in items {
                            li data-item=(item_id) {
                                (media_name(doc, &item.media)) " · " (duration(item.duration_ms)) " · "
                                @match item.window { Some(w) => { (window_text(&w)) } None => { "always" } }
                            }
                        }
                    }
                    (super::timeline::week(doc, *id, tz, now))
                }
            }
        }
    }
}

/// A playlist's items in play order: by position, ties by id (as the manifest orders them).
pub(super) fn ordered(list: &Playlist) -> Vec<(&ItemId, &PlaylistItem)> {
    let mut items: Vec<_> = list.items.iter().collect();
    items.sort_by(|(a_id, a), (b_id, b)| a.position.cmp(&b.position).then(a_id.cmp(b_id)));
    items
}

fn playlist_name(doc: &VenueDoc, id: &PlaylistId) -> String {
    doc.playlists
        .get(id)
        .map_or_else(|| format!("playlist {id}"), |p| p.name.clone())
}

fn media_name(doc: &VenueDoc, hash: &MediaHash) -> String {
    doc.media.get(hash).map_or_else(
        || {
            let text = hash.to_string();
            format!("unknown media {}…", text.get(..12).unwrap_or(&text))
        },
        |m| m.name.clone(),
    )
}

fn orientation_name(o: Orientation) -> &'static str {
    match o {
        Orientation::Landscape => "Landscape",
        Orientation::Portrait => "Portrait",
        Orientation::LandscapeFlipped => "Landscape, flipped",
        Orientation::PortraitFlipped => "Portrait, flipped",
    }
}

/// An instant as the venue's wall clock reads it: "Mon 2 Mar 11:00".
fn local_time(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz).format("%a %-d %b %H:%M").to_string()
}

/// `hh:mm` of a minute of the day (1440 is "24:00").
fn hhmm(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// "Mon–Fri", "Sat, Sun", "Mon, Wed, Fri", "Every day".
fn days_text(days: Weekdays) -> String {
    const NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    if days == Weekdays::ALL {
        return "Every day".to_owned();
    }
    let on: Vec<bool> = (0..7).map(|d| days.0 & (1 << d) != 0).collect();
    let mut parts = Vec::new();
    let mut d = 0;
    while d < 7 {
        if !on[d] {
            d += 1;
            continue;
        }
        let start = d;
        while d + 1 < 7 && on[d + 1] {
            d += 1;
        }
        match d - start {
            0 => parts.push(NAMES[start].to_owned()),
            1 => parts.push(format!("{}, {}", NAMES[start], NAMES[d])),
            _ => parts.push(format!("{}–{}", NAMES[start], NAMES[d])),
        }
        d += 1;
    }
    parts.join(", ")
}

/// A schedule window as people read it: "Mon–Fri 11:00–14:00", and for one that crosses
/// midnight "Fri 22:00–02:00 next day" (weekdays name the day it starts).
pub(super) fn window_text(w: &ScheduleWindow) -> String {
    if w.validate().is_err() {
        return "never (invalid window)".to_owned();
    }
    let end = if w.crosses_midnight() {
        format!("{} next day", hhmm(w.end_min))
    } else {
        hhmm(w.end_min)
    };
    format!("{} {}–{}", days_text(w.days), hhmm(w.start_min), end)
}

/// "10 s", "1.5 s", "2 min 30 s".
pub(super) fn duration(ms: u64) -> String {
    if !ms.is_multiple_of(1000) {
        return format!("{}.{} s", ms / 1000, (ms % 1000) / 100);
    }
    let secs = ms / 1000;
    match (secs / 60, secs % 60) {
        (0, s) => format!("{s} s"),
        (m, 0) => format!("{m} min"),
        (m, s) => format!("{m} min {s} s"),
    }
}

/// Bytes in decimal units with one decimal: "12.3 GB".
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let (mut unit, mut divisor) = (0, 1u64);
    while n / divisor >= 1000 && unit + 1 < UNITS.len() {
        divisor *= 1000;
        unit += 1;
    }
    if unit == 0 {
        return format!("{n} B");
    }
    // Integer tenths: exact, and no float casts.
    format!(
        "{}.{} {}",
        n / divisor,
        n % divisor * 10 / divisor,
        UNITS[unit]
    )
}

/// Milli-degrees Celsius as "48.5 °C".
fn celsius(mc: i32) -> String {
    let sign = if mc < 0 { "-" } else { "" };
    let abs = mc.unsigned_abs();
    format!("{sign}{}.{} °C", abs / 1000, abs % 1000 / 100)
}

#[cfg(test)]
mod tests {
    use chrono::Weekday;

    use super::*;

    #[test]
    fn windows_read_as_people_say_them() {
        let lunch = ScheduleWindow::new(Weekdays::WEEKDAYS, 11 * 60, 14 * 60).unwrap();
        assert_eq!(window_text(&lunch), "Mon–Fri 11:00–14:00");
        let late =
            ScheduleWindow::new(Weekdays::default().with(Weekday::Fri), 22 * 60, 2 * 60).unwrap();
        assert_eq!(window_text(&late), "Fri 22:00–02:00 next day");
        let evening = ScheduleWindow::new(Weekdays::ALL, 20 * 60, 1440).unwrap();
        assert_eq!(window_text(&evening), "Every day 20:00–24:00");
        let weekend = ScheduleWindow::new(Weekdays::WEEKEND, 9 * 60, 9 * 60).unwrap();
        assert_eq!(window_text(&weekend), "Sat, Sun 09:00–09:00 next day");
        let odd = Weekdays::default()
            .with(Weekday::Mon)
            .with(Weekday::Wed)
            .with(Weekday::Thu)
            .with(Weekday::Fri)
            .with(Weekday::Sun);
        assert_eq!(days_text(odd), "Mon, Wed–Fri, Sun");
    }

    #[test]
    fn quantities_read_as_people_say_them() {
        assert_eq!(duration(10_000), "10 s");
        assert_eq!(duration(1_500), "1.5 s");
        assert_eq!(duration(150_000), "2 min 30 s");
        assert_eq!(duration(120_000), "2 min");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(12_345_678_901), "12.3 GB");
        assert_eq!(bytes(1_000), "1.0 kB");
        assert_eq!(celsius(48_567), "48.5 °C");
        assert_eq!(celsius(-1_500), "-1.5 °C");
    }
}
