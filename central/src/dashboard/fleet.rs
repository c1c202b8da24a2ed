//! `GET /`: the fleet overview — every venue in the viewer's reach with its hub's state,
//! last sync and kiosks; filter by tag, state and name; pages of 50.

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use crate::http::Caller;
use crate::state::AppState;
use crate::store::{HubState, Reach, VenueFilter};

use super::{Section, Viewer, html_response, page, urlencode};

/// Venues on a page.
const PAGE_SIZE: usize = 50;

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
    let registry = state.registry.clone();
    let cursor = (!filters.cursor.is_empty()).then(|| filters.cursor.clone());
    let loaded = tokio::task::spawn_blocking(move || {
        let page = registry.venues_page(&reach, &filter, &online, cursor.as_deref(), PAGE_SIZE)?;
        let ids: Vec<_> = page.items.iter().map(|(v, _)| v.id).collect();
        let summaries = registry.venue_summaries(&ids)?;
        let counts = registry.venue_state_counts(&reach, &online)?;
        // Open alerts of the venues in reach, newest last.
        let mut alerts = Vec::new();
        for alert in registry.open_alerts(None)? {
            let Ok(id) = alert.venue.parse() else {
                continue;
            };
            let Some(venue) = registry.venue(id)? else {
                continue;
            };
            let in_reach = match &reach {
                Reach::All => true,
                Reach::Scope(scope) => scope.covers(venue.id, &venue.tags),
            };
            if in_reach {
                alerts.push((venue.name, alert));
            }
        }
        Ok::<_, crate::store::RegistryError>((page, summaries, counts, alerts))
    })
    .await;
    let (venues, summaries, counts, alerts) = match loaded {
        Ok(Ok(loaded)) => loaded,
        Ok(Err(crate::store::RegistryError::Invalid { .. })) => {
            return axum::response::Redirect::to("/").into_response();
        }
        Ok(Err(e)) => return crate::http::ApiError::from(e).into_response(),
        Err(e) => {
            return crate::http::ApiError::internal("loading the overview", e).into_response();
        }
    };
    let now = state.now();
    let next_link = venues.next.as_ref().map(|next| {
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
        @if !alerts.is_empty() {
            section.card.alerts aria-label="Open alerts" {
                h2 { "Open alerts (" (alerts.len()) ")" }
                ul {
                    @for (venue, alert) in alerts.iter().rev().take(20) {
                        li data-alert=(alert.kind) {
                            span.state.offline { (alert_label(&alert.kind)) } " "
                            strong { (venue) } ": " (alert.detail)
                            span.muted { " — opened " (ago(DateTime::from_timestamp_millis(alert.opened_ms), now)) }
                        }
                    }
                }
            }
        }
        div.summary aria-label="Hubs by state" {
            @for (s, n) in &counts {
                a.count href={ "/?state=" (state_class(*s)) } {
                    b { (n) }
                    span.state.(state_class(*s)) { (state_label(*s)) }
                }
            }
        }
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
        @if venues.items.is_empty() {
            div.card { p { "No venues match." } }
        } @else {
            (table(&venues.items, &summaries, now))
        }
        div.pager {
            @if !filters.cursor.is_empty() { a href="/" { "← First page" } } @else { span {} }
            @if let Some(link) = next_link { a href=(link) rel="next" { "Next page →" } }
        }
    };
    html_response(
        StatusCode::OK,
        page(Some(&viewer), Section::Fleet, "Venues", body),
    )
}

fn table(
    venues: &[(crate::store::Venue, HubState)],
    summaries: &std::collections::HashMap<
        taplink_sync_proto::ids::VenueId,
        crate::store::VenueSummary,
    >,
    now: DateTime<Utc>,
) -> Markup {
    html! {
        table.fleet {
            thead { tr { th { "Venue" } th { "Hub" } th { "Last sync" } th { "Kiosks" } th { "Tags" } th { "Time zone" } } }
            tbody {
                @for (venue, hub) in venues {
                    @let summary = summaries.get(&venue.id);
                    tr data-venue=(venue.id) data-hub-state=(state_class(*hub)) {
                        td data-label="Venue" { strong { a href={ "/venues/" (venue.id) } { (venue.name) } } }
                        td data-label="Hub" {
                            span.state.(state_class(*hub)) { (state_label(*hub)) }
                            // Offline, but its kiosks were playing when last heard from: they
                            // most likely still are (they play from their cache).
                            @if *hub == HubState::Offline && summary.is_some_and(|s| s.kiosks_last_playing > 0) {
                                br;
                                span.muted data-offline-playing="true" {
                                    "but playing: " (summary.map_or(0, |s| s.kiosks_last_playing)) " of " (summary.map_or(0, |s| s.kiosks)) " kiosks were when last heard"
                                }
                            }
                        }
                        td data-label="Last sync" { (ago(summary.and_then(|s| s.last_sync), now)) }
                        td data-label="Kiosks" { (summary.map_or(0, |s| s.kiosks)) }
                        td data-label="Tags" { @for tag in &venue.tags { span.tag { (tag) } } }
                        td data-label="Time zone" { (venue.timezone) }
                    }
                }
            }
        }
    }
}
