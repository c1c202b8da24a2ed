//! `GET /`: the fleet overview — every venue in the viewer's reach with its hub's state,
//! last sync, changes still pending each way, kiosks up of all, and the open alerts; filter
//! by tag, state and name; pages of 50. `GET /live/overview?venues=…` keeps an open page
//! current without reloading: a server-sent event stream that re-renders the page's rows,
//! the state counts and the alerts with the same functions as the page, and sends them
//! whenever they changed (checked every [`LIVE_EVERY`]).
//!
//! Pending: "to hub" counts the changes of central's venue document that are not in the
//! heads both sides held when the hub last finished a sync (`VenueSummary::synced_heads`);
//! what the hub has that central lacks is known only when it arrives, so with the hub
//! offline it says so rather than guess. "Up": kiosks whose latest heartbeat is younger
//! than `alert_offline_after`.

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use taplink_sync_proto::ids::VenueId;
use taplink_sync_proto::wire::DocId;

use crate::http::Caller;
use crate::state::AppState;
use crate::store::{Alert, HubState, Reach, RegistryError, Venue, VenueFilter, VenueSummary};

use super::{Section, Viewer, html_response, page, urlencode};

/// Venues on a page.
const PAGE_SIZE: usize = 50;

/// Open alerts listed on the overview (the newest; the count says how many in all).
const ALERTS_SHOWN: usize = 20;

/// How often a live overview checks for changes.
pub(crate) const LIVE_EVERY: Duration = Duration::from_secs(2);

/// How long one live stream lasts; the browser's `EventSource` then reconnects (with the
/// rows it shows), so no stream outlives a session for long.
const LIVE_FOR: Duration = Duration::from_secs(15 * 60);

/// The overview's filters (all optional; empty fields are ignored).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Filters {
    #[serde(default)]
    q: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    cursor: String,
}

pub(super) fn state_label(state: HubState) -> &'static str {
    match state {
        HubState::Online => "Online",
        HubState::Offline => "Offline",
        HubState::NeverConnected => "Never connected",
        HubState::NoHub => "No hub yet",
    }
}

pub(super) fn state_class(state: HubState) -> &'static str {
    match state {
        HubState::Online => "online",
        HubState::Offline => "offline",
        HubState::NeverConnected => "never_connected",
        HubState::NoHub => "no_hub",
    }
}

/// An alert's kind as people say it.
fn alert_label(kind: &str) -> &'static str {
    match kind {
        "hub_offline" => "Hub offline",
        "kiosk_offline" => "Kiosk offline",
        "disk_low" => "Disk low",
        "temperature_high" => "Too hot",
        "content_behind" => "Content behind",
        _ => "Alert",
    }
}

/// "3 min ago", "2 h ago", "5 days ago", or "never".
pub(super) fn ago(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let Some(at) = at else {
        return "never".to_owned();
    };
    let secs = (now - at).num_seconds().max(0);
    match secs {
        0..=59 => "just now".to_owned(),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86_399 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

/// One venue row with everything it shows.
pub(crate) struct RowData {
    venue: Venue,
    hub: HubState,
    summary: Option<VenueSummary>,
    /// Changes of central's document the hub has not acknowledged; `None`: never synced.
    pending_to_hub: Option<usize>,
}

/// The rows of `venues`: summaries from one query, pending changes from the documents.
/// Blocks on SQLite.
fn rows_of(
    state: &AppState,
    venues: Vec<(Venue, HubState)>,
    now: DateTime<Utc>,
) -> Result<Vec<RowData>, RegistryError> {
    let ids: Vec<VenueId> = venues.iter().map(|(v, _)| v.id).collect();
    let up_since = now - state.config.alert_offline_after.duration();
    let mut summaries = state.registry.venue_summaries(&ids, up_since)?;
    Ok(venues
        .into_iter()
        .map(|(venue, hub)| {
            let summary = summaries.remove(&venue.id);
            let pending_to_hub = summary
                .as_ref()
                .and_then(|s| s.synced_heads.as_deref())
                .and_then(|synced| pending(state, venue.id, synced));
            RowData {
                venue,
                hub,
                summary,
                pending_to_hub,
            }
        })
        .collect())
}

/// How many changes of venue `id`'s document at central are not in `synced`.
fn pending(state: &AppState, id: VenueId, synced: &[[u8; 32]]) -> Option<usize> {
    let mut synced: Vec<automerge::ChangeHash> =
        synced.iter().map(|h| automerge::ChangeHash(*h)).collect();
    synced.sort_unstable();
    state
        .docs
        .read(DocId::Venue(id), |am| {
            let mut heads = am.get_heads();
            heads.sort_unstable();
            if heads == synced {
                0
            } else {
                am.get_changes(&synced).len()
            }
        })
        .ok()
}

/// `GET /`.
pub(crate) async fn overview(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(filters): Query<Filters>,
) -> Response {
    let viewer = Viewer::of(&caller, &headers);
    let hub_state = match filters.state.as_str() {
        "" => None,
        text => text.parse::<HubState>().ok(),
    };
    let filter = VenueFilter {
        tag: (!filters.tag.is_empty()).then(|| filters.tag.clone()),
        q: (!filters.q.is_empty()).then(|| filters.q.clone()),
        hub_state,
    };
    let reach = viewer.reach();
    let online = state.online.ids();
    let cursor = (!filters.cursor.is_empty()).then(|| filters.cursor.clone());
    let now = state.now();
    let loading = state.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let registry = &loading.registry;
        let page = registry.venues_page(&reach, &filter, &online, cursor.as_deref(), PAGE_SIZE)?;
        let next = page.next;
        let rows = rows_of(&loading, page.items, now)?;
        let counts = registry.venue_state_counts(&reach, &online)?;
        let alerts = registry.open_alerts_in_reach(&reach, ALERTS_SHOWN)?;
        Ok::<_, RegistryError>((rows, next, counts, alerts))
    })
    .await;
    let (rows, next, counts, alerts) = match loaded {
        Ok(Ok(loaded)) => loaded,
        Ok(Err(RegistryError::Invalid { .. })) => {
            return axum::response::Redirect::to("/").into_response();
        }
        Ok(Err(e)) => return crate::http::ApiError::from(e).into_response(),
        Err(e) => {
            return crate::http::ApiError::internal("loading the overview", e).into_response();
        }
    };
    let next_link = next.as_ref().map(|next| {
        format!(
            "/?q={}&tag={}&state={}&cursor={}",
            urlencode(&filters.q),
            urlencode(&filters.tag),
            urlencode(&filters.state),
            urlencode(next)
        )
    });
    let body = html! {
        h1 { "Venues" }
        (alerts_markup(&alerts, now))
        (counts_markup(&counts))
        form.filters.card method="get" action="/" role="search" {
            label for="q" { "Name" input id="q" name="q" type="search" value=(filters.q) placeholder="Search venues"; }
            label for="tag" { "Tag" input id="tag" name="tag" type="text" value=(filters.tag) placeholder="region:north"; }
            label for="state" { "Hub"
                select id="state" name="state" {
                    option value="" selected[filters.state.is_empty()] { "Any state" }
                    @for s in [HubState::Online, HubState::Offline, HubState::NeverConnected, HubState::NoHub] {
                        option value=(state_class(s)) selected[filters.state == state_class(s)] { (state_label(s)) }
                    }
                }
            }
            button type="submit" { "Filter" }
            @if !filters.q.is_empty() || !filters.tag.is_empty() || !filters.state.is_empty() {
                a href="/" { "Clear" }
            }
        }
        @if rows.is_empty() {
            div.card { p { "No venues match." } }
        } @else {
            p.muted id="live-status" role="status" aria-live="polite" { "Updated " (now.format("%H:%M:%S")) " UTC" }
            table.fleet id="fleet" {
                thead { tr { th { "Venue" } th { "Hub" } th { "Last sync" } th { "Pending changes" } th { "Kiosks" } th { "Tags" } th { "Time zone" } } }
                tbody {
                    @for r in &rows { (row(r, now)) }
                }
            }
        }
        div.pager {
            @if !filters.cursor.is_empty() { a href="/" { "← First page" } } @else { span {} }
            @if let Some(link) = next_link { a href=(link) rel="next" { "Next page →" } }
        }
        script src="/assets/fleet.js" defer {}
    };
    html_response(
        StatusCode::OK,
        page(Some(&viewer), Section::Fleet, "Venues", body),
    )
}

/// The newest open alerts and how many there are (an empty, hidden section when there
/// are none, for live updates).
fn alerts_markup((alerts, total): &(Vec<(String, Alert)>, usize), now: DateTime<Utc>) -> Markup {
    html! {
        section.card.alerts id="open-alerts" aria-label="Open alerts" hidden[*total == 0] {
            h2 {
                "Open alerts (" (total) ")"
                @if *total > alerts.len() { " " span.muted { "— the newest " (alerts.len()) } }
            }
            ul {
                @for (venue, alert) in alerts {
                    li data-alert=(alert.kind) {
                        span.state.offline { (alert_label(&alert.kind)) } " "
                        strong { (venue) } ": " (alert.detail)
                        span.muted { " — opened " (ago(DateTime::from_timestamp_millis(alert.opened_ms), now)) }
                    }
                }
            }
        }
    }
}

/// The venues in reach by hub state, each a link to that filter.
fn counts_markup(counts: &[(HubState, usize)]) -> Markup {
    html! {
        div.summary id="hub-counts" aria-label="Hubs by state" {
            @for (s, n) in counts {
                a.count href={ "/?state=" (state_class(*s)) } {
                    b { (n) }
                    span.state.(state_class(*s)) { (state_label(*s)) }
                }
            }
        }
    }
}

/// One venue's row: the page and the live stream render it alike.
fn row(r: &RowData, now: DateTime<Utc>) -> Markup {
    let summary = r.summary.as_ref();
    let kiosks = summary.map_or(0, |s| s.kiosks);
    let playing = summary.map_or(0, |s| s.kiosks_last_playing);
    // Offline, but its kiosks were playing when last heard from: they most likely still
    // are (they play from their cache).
    let offline_playing = r.hub == HubState::Offline && playing > 0;
    html! {
        tr data-venue=(r.venue.id) data-hub-state=(state_class(r.hub)) data-offline-playing=[offline_playing.then_some("true")] {
            td data-label="Venue" { strong { a href={ "/venues/" (r.venue.id) } { (r.venue.name) } } }
            td data-label="Hub" {
                @if offline_playing {
                    span.state.offline_but_playing { "Offline but playing" }
                    br;
                    span.muted { (playing) " of " (kiosks) " kiosks were playing when last heard" }
                } @else {
                    span.state.(state_class(r.hub)) { (state_label(r.hub)) }
                }
            }
            td data-label="Last sync" { (ago(summary.and_then(|s| s.last_sync), now)) }
            td data-label="Pending changes" data-pending-to-hub=[r.pending_to_hub] {
                @match (r.pending_to_hub, r.hub) {
                    (None, HubState::NoHub) => { span.muted { "—" } }
                    (None, _) => { span.muted { "never synced" } }
                    (Some(0), HubState::Online) => { "in sync" }
                    (Some(n), HubState::Online) => { (n) " to send to the hub" }
                    (Some(n), _) => {
                        @if n == 0 { "none to the hub" } @else { (n) " waiting for the hub" }
                        br;
                        span.muted { "the hub's own: unknown until it reconnects" }
                    }
                }
            }
            td data-label="Kiosks" data-kiosks-up=(summary.map_or(0, |s| s.kiosks_up)) {
                @if kiosks == 0 { span.muted { "none" } } @else {
                    (summary.map_or(0, |s| s.kiosks_up)) " of " (kiosks) " up"
                }
            }
            td data-label="Tags" { @for tag in &r.venue.tags { span.tag { (tag) } } }
            td data-label="Time zone" { (r.venue.timezone) }
        }
    }
}

/// `GET /live/overview` query: the venues the page shows, comma-separated (at most a page).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct LiveQuery {
    #[serde(default)]
    venues: String,
}

/// What a live overview shows; sent again only when it changes.
#[derive(Debug, PartialEq, serde::Serialize)]
struct Live {
    counts: String,
    alerts: String,
    rows: std::collections::BTreeMap<String, String>,
    at: String,
}

/// `GET /live/overview?venues=…`: server-sent `fleet` events with the rows of those venues
/// (the ones in the viewer's reach), the counts and the alerts, rendered as the page
/// renders them, whenever they change.
pub(crate) async fn live(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(query): Query<LiveQuery>,
) -> Response {
    let viewer = Viewer::of(&caller, &headers);
    let ids: Vec<VenueId> = query
        .venues
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .take(PAGE_SIZE)
        .collect();
    let reach = viewer.reach();
    let until = tokio::time::Instant::now() + LIVE_FOR;
    let stream = futures_util::stream::unfold(
        (state, reach, ids, None::<Live>, true),
        move |(state, reach, ids, last, first)| async move {
            let mut last = last;
            loop {
                if !first || last.is_some() {
                    tokio::time::sleep(LIVE_EVERY).await;
                }
                if tokio::time::Instant::now() >= until {
                    return None;
                }
                let (s, r, i) = (state.clone(), reach.clone(), ids.clone());
                let now = state.now();
                let live = tokio::task::spawn_blocking(move || render_live(&s, &r, &i, now)).await;
                let live = match live {
                    Ok(Ok(live)) => live,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cannot update a live overview");
                        continue;
                    }
                    Err(_) => return None,
                };
                // The time alone changing is not news.
                let same = last.as_ref().is_some_and(|l| {
                    l.rows == live.rows && l.counts == live.counts && l.alerts == live.alerts
                });
                if same {
                    continue;
                }
                let event = Event::default()
                    .event("fleet")
                    .json_data(&live)
                    .unwrap_or_else(|_| Event::default().comment("unencodable"));
                last = Some(live);
                return Some((Ok::<_, Infallible>(event), (state, reach, ids, last, false)));
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// The live overview's content now. Blocks on SQLite.
fn render_live(
    state: &AppState,
    reach: &Reach,
    ids: &[VenueId],
    now: DateTime<Utc>,
) -> Result<Live, RegistryError> {
    let registry = &state.registry;
    let online = state.online.ids();
    let mut venues = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(venue) = registry.venue(*id)? else {
            continue;
        };
        let in_reach = match reach {
            Reach::All => true,
            Reach::Scope(scope) => scope.covers(venue.id, &venue.tags),
        };
        if in_reach {
            let hub = registry.hub_state(venue.id, &online)?;
            venues.push((venue, hub));
        }
    }
    let rows = rows_of(state, venues, now)?
        .iter()
        .map(|r| (r.venue.id.to_string(), row(r, now).into_string()))
        .collect();
    Ok(Live {
        counts: counts_markup(&registry.venue_state_counts(reach, &online)?).into_string(),
        alerts: alerts_markup(&registry.open_alerts_in_reach(reach, ALERTS_SHOWN)?, now)
            .into_string(),
        rows,
        at: format!("{} UTC", now.format("%H:%M:%S")),
    })
}
