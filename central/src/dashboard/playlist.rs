//! The playlist editor: `GET /venues/{id}/playlists/{playlist}` shows a playlist's items in
//! play order with their previews, durations and schedule windows, a week timeline, the
//! venue's media to add, and where the playlist is shown; `POST` to the same address takes
//! one form (`op`), and `POST /venues/{id}/playlists` creates one (`name`).
//!
//! Every form becomes `VenueCommand`s applied through `http::apply_venue_commands`, the
//! one way central changes a venue document: each command is authorized for its own
//! action, the whole form is one change or none, it carries the person as its author and
//! is in the audit log, and it reaches the hub like any other edit. Without JavaScript
//! every control is a plain form (↑/↓ buttons reorder); with it, items can also be dragged
//! (`/assets/playlist.js` posts the same `op=move` form).
//!
//! | Field | Meaning |
//! |-------|---------|
//! | `op` | `add`, `item` (save an item's duration and window), `up`, `down`, `move`, `remove`, `assign`, `rename`, `delete` |
//! | `media` | the hash of the venue's media to add (`add`) |
//! | `duration_s` | seconds it shows, e.g. `10` or `7.5` (`add`, `item`) |
//! | `when` | `always` or `window`; with `window`: `days` (repeated: `mon` … `sun`), `start` and `end` (`HH:MM`; an end at or before the start ends the next day) |
//! | `item` | the item (`item`, `up`, `down`, `move`, `remove`) |
//! | `before` | `move`: the item it goes before (empty: the end) |
//! | `kiosk`, `group`, `default` | `assign`: repeated kiosk ids and group names it is shown on, `default=on` for the venue default |
//! | `name` | `rename`, and creating a playlist |

use std::collections::BTreeSet;

use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use taplink_sync_proto::authz::{Action, Target, authorize};
use taplink_sync_proto::doc::{Placement, VenueCommand, VenueDoc, load_venue};
use taplink_sync_proto::ids::{ItemId, KioskId, MediaHash, PlaylistId, VenueId};
use taplink_sync_proto::note::Via;
use taplink_sync_proto::schedule::{ScheduleWindow, Weekdays};
use taplink_sync_proto::wire::DocId;

use crate::http::{ApiError, Caller, ChangeAudited, apply_venue_commands};
use crate::state::AppState;
use crate::store::{Venue, venue_tz};

use super::venue::{duration, ordered, window_text};
use super::{Section, Viewer, html_response, page, thumb, timeline, urlencode};

/// The day names of the `days` field, Monday first (bit 0 of `Weekdays`).
const DAYS: [(&str, &str); 7] = [
    ("mon", "Mon"),
    ("tue", "Tue"),
    ("wed", "Wed"),
    ("thu", "Thu"),
    ("fri", "Fri"),
    ("sat", "Sat"),
    ("sun", "Sun"),
];

/// Longest item: 24 hours, as the document allows.
const MAX_DURATION_MS: u64 = 24 * 60 * 60 * 1000;

/// A notice after a change (`?done=`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Done {
    #[serde(default)]
    pub(super) done: Option<String>,
}

/// The venue and its document, read off the async runtime; `None`: no such venue.
async fn load(state: &AppState, id: VenueId) -> Result<Option<(Venue, VenueDoc)>, ApiError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        let Some(venue) = state.registry.venue(id)? else {
            return Ok(None);
        };
        match state.docs.read(DocId::Venue(id), |am| load_venue(am)) {
            Ok(Ok(doc)) => Ok(Some((venue, doc))),
            Ok(Err(e)) => Err(ApiError::internal("loading a venue document", e)),
            Err(_) => Ok(None),
        }
    })
    .await
    .map_err(|e| ApiError::internal("loading a playlist", e))?
}

fn not_found(viewer: &Viewer, what: &str) -> Response {
    html_response(
        StatusCode::NOT_FOUND,
        page(
            Some(viewer),
            Section::Fleet,
            "Not found",
            html! {
                div.card {
                    h1 { "No such " (what) }
                    p { "It may have been removed (perhaps at the venue), or the address is mistyped." }
                    p { a href="/" { "Back to the overview" } }
                }
            },
        ),
    )
}

/// Whether the viewer may change this venue's content (controls are shown only then).
fn may_edit(viewer: &Viewer, venue: &Venue) -> bool {
    authorize(
        &viewer.principal,
        Action::ContentWrite,
        Target::Venue {
            id: venue.id,
            tags: &venue.tags,
        },
    )
    .is_ok()
}

/// `GET /venues/{id}/playlists/{playlist}`.
pub(crate) async fn editor(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path((id, playlist)): Path<(String, String)>,
    Query(done): Query<Done>,
) -> Response {
    let viewer = Viewer::of(&caller, &headers);
    show(&state, &viewer, &id, &playlist, done.done.as_deref(), None).await
}

/// The editor page, with a notice or an error (`status` of the error).
async fn show(
    state: &AppState,
    viewer: &Viewer,
    id: &str,
    playlist: &str,
    notice: Option<&str>,
    error: Option<&ApiError>,
) -> Response {
    let (Ok(id), Ok(playlist)) = (id.parse::<VenueId>(), playlist.parse::<PlaylistId>()) else {
        return not_found(viewer, "playlist");
    };
    let (venue, doc) = match load(state, id).await {
        Ok(Some(loaded)) => loaded,
        Ok(None) => return not_found(viewer, "venue"),
        Err(e) => return e.into_response(),
    };
    if !doc.playlists.contains_key(&playlist) {
        return not_found(viewer, "playlist");
    }
    let status = error.map_or(StatusCode::OK, ApiError::status);
    let body = render(state, viewer, &venue, &doc, playlist, notice, error);
    let title = doc
        .playlists
        .get(&playlist)
        .map_or_else(String::new, |p| p.name.clone());
    html_response(status, page(Some(viewer), Section::Fleet, &title, body))
}

fn render(
    state: &AppState,
    viewer: &Viewer,
    venue: &Venue,
    doc: &VenueDoc,
    id: PlaylistId,
    notice: Option<&str>,
    error: Option<&ApiError>,
) -> Markup {
    let Some(list) = doc.playlists.get(&id) else {
        return html! {};
    };
    let edit = may_edit(viewer, venue);
    let action = format!("/venues/{}/playlists/{id}", venue.id);
    let items = ordered(list);
    let tz = venue_tz(if doc.settings.timezone.is_empty() {
        &venue.timezone
    } else {
        &doc.settings.timezone
    });
    let mut media: Vec<_> = doc.media.iter().collect();
    media.sort_by(|(a_hash, a), (b_hash, b)| a.name.cmp(&b.name).then(a_hash.cmp(b_hash)));
    let mut groups: BTreeSet<&str> = doc
        .kiosks
        .values()
        .filter_map(|k| k.group.as_deref())
        .collect();
    groups.extend(doc.group_playlists.keys().map(String::as_str));
    let mut kiosks: Vec<_> = doc.kiosks.iter().collect();
    kiosks.sort_by(|(a_id, a), (b_id, b)| a.name.cmp(&b.name).then(a_id.cmp(b_id)));
    let form_head = |op: &str| {
        html! {
            input type="hidden" name="csrf_token" value=(viewer.csrf);
            input type="hidden" name="op" value=(op);
        }
    };
    html! {
        p.crumbs { a href={ "/venues/" (venue.id) } { "← " (venue.name) } }
        @if let Some(notice) = notice { p.notice.ok role="status" { (notice) } }
        @if let Some(error) = error { p.notice.error role="alert" { (error) } }
        div.card.editor-head data-playlist=(id) {
            h1 { (list.name) }
            p.muted {
                (items.len()) " items · one loop "
                (duration(items.iter().map(|(_, i)| i.duration_ms).sum()))
                " when every item plays · times in " (tz.name())
            }
            @if edit {
                form.inline method="post" action=(action) {
                    (form_head("rename"))
                    label for="rename" { "Name" input id="rename" name="name" type="text" value=(list.name) required maxlength="200"; }
                    button.secondary type="submit" { "Rename" }
                }
            }
        }
        h2 { "Items, in play order" }
        @if items.is_empty() {
            div.card { p { "No items yet. Add media below; kiosks showing this playlist show its idle page until then." } }
        }
        ol.editor id="items" data-action=(action) data-csrf=(viewer.csrf) {
            @for (n, (item_id, item)) in items.iter().enumerate() {
                @let meta = doc.media.get(&item.media);
                @let name = meta.map_or_else(|| format!("unknown media {}", item.media), |m| m.name.clone());
                li.card.item id={ "item-" (item_id) } data-item=(item_id) draggable=[edit.then_some("true")] {
                    div.preview {
                        (thumb(&item.media.to_string(), meta.map_or("", |m| m.content_type.as_str()), Some(venue.id), &name))
                    }
                    div.body {
                        h3 { span.muted { (n + 1) ". " } (name) }
                        p.muted data-summary {
                            (duration(item.duration_ms)) " · "
                            @match item.window { Some(w) => { (window_text(&w)) } None => { "always" } }
                        }
                        @if edit {
                            details.change {
                                summary { "Change time on screen or schedule" }
                                form.item-form method="post" action=(action) {
                                    (form_head("item"))
                                    input type="hidden" name="item" value=(item_id);
                                    (duration_field(&format!("d-{item_id}"), item.duration_ms))
                                    (window_fields(&format!("w-{item_id}"), item.window))
                                    button type="submit" { "Save" }
                                }
                            }
                        }
                    }
                    @if edit {
                        div.moves {
                            @if n > 0 {
                                form method="post" action=(action) {
                                    (form_head("up"))
                                    input type="hidden" name="item" value=(item_id);
                                    button.secondary type="submit" aria-label={ "Move " (name) " up" } { "↑" }
                                }
                            }
                            @if n + 1 < items.len() {
                                form method="post" action=(action) {
                                    (form_head("down"))
                                    input type="hidden" name="item" value=(item_id);
                                    button.secondary type="submit" aria-label={ "Move " (name) " down" } { "↓" }
                                }
                            }
                            form method="post" action=(action) {
                                (form_head("remove"))
                                input type="hidden" name="item" value=(item_id);
                                button.secondary type="submit" aria-label={ "Remove " (name) } { "Remove" }
                            }
                        }
                    }
                }
            }
        }
        @if edit {
            section.card id="add" {
                h2 { "Add media" }
                @if media.is_empty() {
                    p { "This venue has no media yet. " a href={ "/media?venue=" (venue.id) } { "Upload some in the media library" } "." }
                } @else {
                    form method="post" action=(action) {
                        (form_head("add"))
                        fieldset.picks {
                            legend { "Media" }
                            @for (n, (hash, meta)) in media.iter().enumerate() {
                                label.pick {
                                    input type="radio" name="media" value=(hash) required checked[n == 0];
                                    (thumb(&hash.to_string(), &meta.content_type, Some(venue.id), &meta.name))
                                    span { (meta.name) }
                                }
                            }
                        }
                        (duration_field("d-new", 10_000))
                        (window_fields("w-new", None))
                        button type="submit" { "Add to playlist" }
                    }
                }
            }
        }
        h2 { "This week" }
        (timeline::week(doc, id, tz, state.now()))
        h2 { "Shown on" }
        section.card id="assign" {
            @if edit {
                form method="post" action=(action) {
                    (form_head("assign"))
                    fieldset {
                        legend { "Kiosks (their own playlist: comes first)" }
                        @if kiosks.is_empty() { p.muted { "No kiosks paired yet." } }
                        @for (kid, kiosk) in &kiosks {
                            label.check {
                                input type="checkbox" name="kiosk" value=(kid) checked[kiosk.playlist == Some(id)];
                                span { (kiosk.name) @if let Some(other) = kiosk.playlist.filter(|p| *p != id) { span.muted { " (now: " (playlist_name(doc, other)) ")" } } }
                            }
                        }
                    }
                    fieldset {
                        legend { "Groups (for kiosks without their own)" }
                        @if groups.is_empty() { p.muted { "No groups: give kiosks a group on the venue page's kiosks." } }
                        @for group in &groups {
                            label.check {
                                input type="checkbox" name="group" value=(group) checked[doc.group_playlists.get(*group) == Some(&id)];
                                span { "group " (group) @if let Some(other) = doc.group_playlists.get(*group).filter(|p| **p != id) { span.muted { " (now: " (playlist_name(doc, *other)) ")" } } }
                            }
                        }
                    }
                    fieldset {
                        legend { "Venue default (every other kiosk)" }
                        label.check {
                            input type="checkbox" name="default" value="on" checked[doc.settings.default_playlist == Some(id)];
                            span { "The venue default" @if let Some(other) = doc.settings.default_playlist.filter(|p| *p != id) { span.muted { " (now: " (playlist_name(doc, other)) ")" } } }
                        }
                    }
                    button type="submit" { "Save where it is shown" }
                }
            } @else {
                p { (super::venue::used_by(doc, id)) }
            }
        }
        @if edit {
            details.card.danger {
                summary { "Delete this playlist…" }
                p { "Kiosks showing it fall back to their group's playlist or the venue default. Its media stay in the library." }
                form method="post" action=(action) {
                    (form_head("delete"))
                    button type="submit" { "Delete " (list.name) }
                }
            }
            script src="/assets/playlist.js" defer {}
        }
    }
}

fn playlist_name(doc: &VenueDoc, id: PlaylistId) -> String {
    doc.playlists
        .get(&id)
        .map_or_else(|| "a removed playlist".to_owned(), |p| p.name.clone())
}

/// The duration input, in seconds.
fn duration_field(id: &str, ms: u64) -> Markup {
    let secs = if ms.is_multiple_of(1000) {
        (ms / 1000).to_string()
    } else {
        format!("{}.{:03}", ms / 1000, ms % 1000)
            .trim_end_matches('0')
            .to_owned()
    };
    html! {
        label for=(id) { "Seconds on screen"
            input id=(id) name="duration_s" type="number" min="0.1" max="86400" step="0.1" value=(secs) required;
        }
    }
}

/// The schedule inputs: always, or days with a start and an end.
fn window_fields(id: &str, window: Option<ScheduleWindow>) -> Markup {
    let (days, start, end) =
        window.map_or((Weekdays::ALL, 0, 0), |w| (w.days, w.start_min, w.end_min));
    let hhmm = |m: u16| format!("{:02}:{:02}", (m / 60) % 24, m % 60);
    html! {
        fieldset.window {
            legend { "When" }
            label.check { input type="radio" name="when" value="always" checked[window.is_none()]; span { "Always" } }
            label.check { input type="radio" name="when" value="window" checked[window.is_some()]; span { "Only on" } }
            span.when-times {
            span.days {
                @for (bit, (value, label)) in DAYS.iter().enumerate() {
                    label.check.day {
                        input type="checkbox" name="days" value=(value) checked[days.0 & (1 << bit) != 0];
                        span { (label) }
                    }
                }
            }
            label for={ (id) "-start" } { "from" input id={ (id) "-start" } name="start" type="time" value=(hhmm(start)); }
            label for={ (id) "-end" } { "until" input id={ (id) "-end" } name="end" type="time" value=(hhmm(end)); }
            small.muted { "An end at or before the start runs past midnight into the next day." }
            }
        }
    }
}

/// A posted form's fields.
struct Fields(Vec<(String, String)>);

impl Fields {
    fn one(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
    }

    fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.trim())
    }

    fn required(&self, name: &'static str) -> Result<&str, ApiError> {
        self.one(name)
            .filter(|v| !v.is_empty())
            .ok_or(ApiError::InvalidField {
                field: name,
                message: "is missing".to_owned(),
            })
    }

    fn id<T: std::str::FromStr>(&self, name: &'static str) -> Result<T, ApiError>
    where
        T::Err: std::fmt::Display,
    {
        self.required(name)?
            .parse()
            .map_err(|e: T::Err| ApiError::InvalidField {
                field: name,
                message: e.to_string(),
            })
    }

    /// `duration_s` in milliseconds: 0.001 s to 24 h.
    fn duration_ms(&self) -> Result<u64, ApiError> {
        let text = self.required("duration_s")?;
        let bad = || ApiError::InvalidField {
            field: "duration_s",
            message: format!("{text:?} is not a number of seconds between 0.1 and 86400"),
        };
        let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
        if whole.is_empty() && frac.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || frac.len() > 3
        {
            return Err(bad());
        }
        let secs: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        let millis: u64 = format!("{frac:0<3}").parse().map_err(|_| bad())?;
        let ms = secs
            .checked_mul(1000)
            .and_then(|s| s.checked_add(millis))
            .ok_or_else(bad)?;
        if ms == 0 || ms > MAX_DURATION_MS {
            return Err(bad());
        }
        Ok(ms)
    }

    /// `when`, `days`, `start`, `end` as a window (`None`: always).
    fn window(&self) -> Result<Option<ScheduleWindow>, ApiError> {
        match self.one("when").unwrap_or("always") {
            "always" => return Ok(None),
            "window" => {}
            other => {
                return Err(ApiError::InvalidField {
                    field: "when",
                    message: format!("{other:?}: use always or window"),
                });
            }
        }
        let mut days = Weekdays::default();
        for day in self.all("days") {
            let Some(bit) = DAYS.iter().position(|(v, _)| v.eq_ignore_ascii_case(day)) else {
                return Err(ApiError::InvalidField {
                    field: "days",
                    message: format!("{day:?} is not a day (mon … sun)"),
                });
            };
            days.0 |= 1 << bit;
        }
        if days.is_empty() {
            return Err(ApiError::InvalidField {
                field: "days",
                message: "choose at least one day, or Always".to_owned(),
            });
        }
        let start = minute(self.required("start")?, "start")?;
        let mut end = minute(self.required("end")?, "end")?;
        if end == 0 {
            // "until 00:00" is midnight at the end of the day.
            end = 1440;
        }
        ScheduleWindow::new(days, start, end)
            .map(Some)
            .map_err(|e| ApiError::InvalidField {
                field: "start",
                message: e.to_string(),
            })
    }
}

/// `HH:MM` as minutes after midnight.
fn minute(text: &str, field: &'static str) -> Result<u16, ApiError> {
    let bad = || ApiError::InvalidField {
        field,
        message: format!("{text:?} is not a time of day (HH:MM)"),
    };
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    let h: u16 = h.parse().map_err(|_| bad())?;
    // `<input type="time">` may send seconds: `HH:MM:SS`.
    let m: u16 = m.get(..2).unwrap_or(m).parse().map_err(|_| bad())?;
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// The commands of one editor form, and what to say when they are applied.
fn commands(
    doc: &VenueDoc,
    id: PlaylistId,
    f: &Fields,
) -> Result<(Vec<VenueCommand>, String, Option<ItemId>), ApiError> {
    let list = doc.playlists.get(&id).ok_or(ApiError::NotFound {
        what: format!("playlist {id}"),
    })?;
    let order: Vec<ItemId> = ordered(list).into_iter().map(|(i, _)| *i).collect();
    let item = || -> Result<ItemId, ApiError> {
        let item: ItemId = f.id("item")?;
        if order.contains(&item) {
            Ok(item)
        } else {
            Err(ApiError::NotFound {
                what: "this item (it may have been removed meanwhile)".to_owned(),
            })
        }
    };
    let media_name = |hash: &MediaHash| {
        doc.media
            .get(hash)
            .map_or_else(|| "the item".to_owned(), |m| m.name.clone())
    };
    let item_name = |item: &ItemId| {
        list.items
            .get(item)
            .map_or_else(|| "the item".to_owned(), |i| media_name(&i.media))
    };
    let op = f.required("op")?;
    Ok(match op {
        "add" => {
            let media: MediaHash = f.id("media")?;
            if !doc.media.contains_key(&media) {
                return Err(ApiError::InvalidField {
                    field: "media",
                    message: "is not one of this venue's media".to_owned(),
                });
            }
            let new = ItemId::random();
            (
                vec![VenueCommand::InsertItem {
                    playlist: id,
                    item: new,
                    at: Placement::End,
                    media,
                    duration_ms: f.duration_ms()?,
                    window: f.window()?,
                }],
                format!("Added {}.", media_name(&media)),
                Some(new),
            )
        }
        "item" => {
            let item = item()?;
            (
                vec![
                    VenueCommand::SetItemDuration {
                        playlist: id,
                        item,
                        duration_ms: f.duration_ms()?,
                    },
                    VenueCommand::SetItemWindow {
                        playlist: id,
                        item,
                        window: f.window()?,
                    },
                ],
                format!("Saved {}.", item_name(&item)),
                Some(item),
            )
        }
        "up" | "down" | "move" => {
            let item = item()?;
            let rest: Vec<ItemId> = order.iter().copied().filter(|i| *i != item).collect();
            let at_index = order.iter().position(|i| *i == item).unwrap_or(0);
            // Where it goes among the others: its new index in `rest`.
            let index = match op {
                "up" => at_index.saturating_sub(1),
                "down" => (at_index + 1).min(rest.len()),
                _ => match f.one("before").filter(|b| !b.is_empty()) {
                    None => rest.len(),
                    Some(before) => {
                        let before: ItemId = before.parse().map_err(
                            |e: taplink_sync_proto::ids::ParseIdError| ApiError::InvalidField {
                                field: "before",
                                message: e.to_string(),
                            },
                        )?;
                        rest.iter()
                            .position(|i| *i == before)
                            .ok_or(ApiError::InvalidField {
                                field: "before",
                                message: "is not an item of this playlist".to_owned(),
                            })?
                    }
                },
            };
            let at = match index.checked_sub(1).and_then(|i| rest.get(i)) {
                Some(after) => Placement::After(*after),
                None => Placement::Front,
            };
            (
                vec![VenueCommand::MoveItem {
                    playlist: id,
                    item,
                    at,
                }],
                format!("Moved {}.", item_name(&item)),
                Some(item),
            )
        }
        "remove" => {
            let item = item()?;
            (
                vec![VenueCommand::RemoveItem { playlist: id, item }],
                format!("Removed {}.", item_name(&item)),
                None,
            )
        }
        "rename" => {
            let name = f.required("name")?.to_owned();
            (
                vec![VenueCommand::RenamePlaylist { id, name }],
                "Renamed.".to_owned(),
                None,
            )
        }
        "assign" => {
            let kiosks: BTreeSet<KioskId> = f
                .all("kiosk")
                .map(|k| {
                    k.parse()
                        .map_err(|e: taplink_sync_proto::ids::ParseIdError| {
                            ApiError::InvalidField {
                                field: "kiosk",
                                message: e.to_string(),
                            }
                        })
                })
                .collect::<Result<_, _>>()?;
            let groups: BTreeSet<&str> = f.all("group").filter(|g| !g.is_empty()).collect();
            let mut out = Vec::new();
            for (kid, kiosk) in &doc.kiosks {
                let want = kiosks.contains(kid);
                let has = kiosk.playlist == Some(id);
                if want != has {
                    out.push(VenueCommand::AssignPlaylist {
                        kiosk: *kid,
                        playlist: want.then_some(id),
                    });
                }
            }
            if let Some(unknown) = kiosks.iter().find(|k| !doc.kiosks.contains_key(k)) {
                return Err(ApiError::InvalidField {
                    field: "kiosk",
                    message: format!("{unknown} is not a kiosk of this venue"),
                });
            }
            let mut known: BTreeSet<&str> = doc
                .kiosks
                .values()
                .filter_map(|k| k.group.as_deref())
                .collect();
            known.extend(doc.group_playlists.keys().map(String::as_str));
            for group in known.union(&groups) {
                let want = groups.contains(group);
                let has = doc.group_playlists.get(*group) == Some(&id);
                if want != has {
                    out.push(VenueCommand::AssignGroupPlaylist {
                        group: (*group).to_owned(),
                        playlist: want.then_some(id),
                    });
                }
            }
            let want_default = f.one("default") == Some("on");
            let has_default = doc.settings.default_playlist == Some(id);
            if want_default != has_default {
                out.push(VenueCommand::SetDefaultPlaylist {
                    playlist: want_default.then_some(id),
                });
            }
            (out, "Saved where it is shown.".to_owned(), None)
        }
        "delete" => (
            vec![VenueCommand::RemovePlaylist { id }],
            format!("Deleted the playlist {}.", list.name),
            None,
        ),
        other => {
            return Err(ApiError::InvalidField {
                field: "op",
                message: format!(
                    "{other:?}: use add, item, up, down, move, remove, assign, rename or delete"
                ),
            });
        }
    })
}

/// `POST /venues/{id}/playlists/{playlist}`: one editor form.
pub(crate) async fn change(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(via): Extension<Via>,
    headers: HeaderMap,
    Path((id, playlist)): Path<(String, String)>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let viewer = Viewer::of(&caller, &headers);
    let (Ok(venue), Ok(list)) = (id.parse::<VenueId>(), playlist.parse::<PlaylistId>()) else {
        return not_found(&viewer, "playlist");
    };
    let doc = match load(&state, venue).await {
        Ok(Some((_, doc))) => doc,
        Ok(None) => return not_found(&viewer, "venue"),
        Err(e) => return e.into_response(),
    };
    let fields = Fields(fields);
    let (commands, said, anchor) = match commands(&doc, list, &fields) {
        Ok(planned) => planned,
        Err(e) => return show(&state, &viewer, &id, &playlist, None, Some(&e)).await,
    };
    let deleted = matches!(commands.first(), Some(VenueCommand::RemovePlaylist { .. }));
    if !commands.is_empty()
        && let Err(e) = apply_venue_commands(&state, &caller, via, venue, commands).await
    {
        return show(&state, &viewer, &id, &playlist, None, Some(&e)).await;
    }
    let to = if deleted {
        format!("/venues/{venue}?done={}", urlencode(&said))
    } else {
        let anchor = anchor.map_or_else(String::new, |i| format!("#item-{i}"));
        format!(
            "/venues/{venue}/playlists/{list}?done={}{anchor}",
            urlencode(&said)
        )
    };
    (Extension(ChangeAudited), Redirect::to(&to)).into_response()
}

/// `POST /venues/{id}/playlists`: create a playlist (`name`) and open it.
pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(via): Extension<Via>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let viewer = Viewer::of(&caller, &headers);
    let Ok(venue) = id.parse::<VenueId>() else {
        return not_found(&viewer, "venue");
    };
    let fields = Fields(fields);
    let name = match fields.required("name") {
        Ok(name) => name.to_owned(),
        Err(e) => {
            return super::venue::venue_page_with(&state, &viewer, venue, None, Some(&e)).await;
        }
    };
    let playlist = PlaylistId::random();
    let command = VenueCommand::CreatePlaylist { id: playlist, name };
    if let Err(e) = apply_venue_commands(&state, &caller, via, venue, vec![command]).await {
        return super::venue::venue_page_with(&state, &viewer, venue, None, Some(&e)).await;
    }
    (
        Extension(ChangeAudited),
        Redirect::to(&format!(
            "/venues/{venue}/playlists/{playlist}?done={}",
            urlencode("Created. Add media below, then choose where it is shown.")
        )),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        Fields(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn durations_are_seconds_with_up_to_three_decimals() {
        let ms = |t: &str| fields(&[("duration_s", t)]).duration_ms();
        assert_eq!(ms("10").unwrap(), 10_000);
        assert_eq!(ms("7.5").unwrap(), 7_500);
        assert_eq!(ms(".25").unwrap(), 250);
        assert_eq!(ms("86400").unwrap(), 86_400_000);
        for bad in [
            "0",
            "",
            "-1",
            "1e3",
            "86400.001",
            "1.2345",
            "ten",
            "99999999999999999999",
        ] {
            let e = ms(bad).unwrap_err();
            assert!(
                matches!(e, ApiError::InvalidField { field, .. } if field == "duration_s"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn windows_read_days_and_times_and_cross_midnight() {
        let w = fields(&[
            ("when", "window"),
            ("days", "fri"),
            ("days", "SAT"),
            ("start", "22:00"),
            ("end", "02:00"),
        ])
        .window()
        .unwrap()
        .unwrap();
        assert_eq!((w.days.0, w.start_min, w.end_min), (0b011_0000, 1320, 120));
        assert!(w.crosses_midnight());
        let evening = fields(&[
            ("when", "window"),
            ("days", "mon"),
            ("start", "18:00"),
            ("end", "00:00"),
        ])
        .window()
        .unwrap()
        .unwrap();
        assert_eq!(evening.end_min, 1440);
        assert_eq!(fields(&[("when", "always")]).window().unwrap(), None);
        let no_days = fields(&[("when", "window"), ("start", "10:00"), ("end", "11:00")]).window();
        assert!(matches!(
            no_days,
            Err(ApiError::InvalidField { field: "days", .. })
        ));
        let bad_time = fields(&[
            ("when", "window"),
            ("days", "mon"),
            ("start", "25:00"),
            ("end", "11:00"),
        ])
        .window();
        assert!(matches!(
            bad_time,
            Err(ApiError::InvalidField { field: "start", .. })
        ));
    }
}
