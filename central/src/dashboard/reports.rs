//! `GET /reports`: proof of play for people — a venue's plays per media per day as a chart
//! (stacked bars, server-drawn SVG) and a table, over up to 31 local days, with the API's
//! CSV (`/api/v1/reports/proof-of-play`) one click away.

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{Duration, NaiveDate};
use maud::{Markup, html};
use serde::Deserialize;
use taplink_sync_proto::doc::load_venue;
use taplink_sync_proto::ids::{MediaHash, VenueId};
use taplink_sync_proto::wire::DocId;

use crate::http::{ApiError, Caller};
use crate::state::AppState;
use crate::store::{PlayFilter, VenueFilter, local_day, venue_tz};

use super::{Section, Viewer, html_response, page};

/// Most days on one page.
const MAX_DAYS: i64 = 31;
/// Colours of the chart's series (readable on white, told apart without colour by the legend
/// order and the table).
const COLOURS: [&str; 8] = [
    "#0b3d91", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#0a7480", "#bc4c00", "#57606a",
];

/// The page's parameters.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Params {
    #[serde(default)]
    venue: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

/// One venue's plays: days, and per day the plays of each media.
struct Report {
    days: Vec<NaiveDate>,
    plays: BTreeMap<NaiveDate, BTreeMap<MediaHash, u64>>,
    names: BTreeMap<MediaHash, String>,
}

fn load(
    state: &AppState,
    venue: VenueId,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Report, ApiError> {
    let record = state.registry.venue(venue)?.ok_or(ApiError::NotFound {
        what: format!("venue {venue}"),
    })?;
    let tz = venue_tz(&record.timezone);
    let mut plays: BTreeMap<NaiveDate, BTreeMap<MediaHash, u64>> = BTreeMap::new();
    let filter = PlayFilter::default();
    let mut day = from;
    while day <= to {
        for row in state.registry.plays_on_day(venue, tz, day, &filter)? {
            *plays.entry(day).or_default().entry(row.media).or_default() += row.plays;
        }
        day = day.succ_opt().unwrap_or(to + Duration::days(1));
    }
    let names = state
        .docs
        .read(DocId::Venue(venue), |am| load_venue(am).ok())
        .ok()
        .flatten()
        .map(|doc| doc.media.into_iter().map(|(h, m)| (h, m.name)).collect())
        .unwrap_or_default();
    let days = from.iter_days().take_while(|d| *d <= to).collect();
    Ok(Report { days, plays, names })
}

fn chart(report: &Report, order: &[MediaHash]) -> Markup {
    let (width, height, left, bottom) = (760.0_f64, 260.0_f64, 40.0_f64, 30.0_f64);
    let most = report
        .plays
        .values()
        .map(|m| m.values().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let slot = (width - left) / report.days.len().max(1) as f64;
    let bar = (slot * 0.7).max(2.0);
    let scale = (height - bottom - 10.0) / most as f64;
    html! {
        svg viewBox={ "0 0 " (width) " " (height) } role="img" aria-labelledby="chart-title" style="width:100%;height:auto;background:#fff" {
            title id="chart-title" { "Plays per media per day" }
            line x1=(left) y1=(height - bottom) x2=(width) y2=(height - bottom) stroke="#57606a";
            text x="4" y="14" font-size="12" fill="#59636e" { (most) }
            text x="4" y=(height - bottom) font-size="12" fill="#59636e" { "0" }
            @for (i, day) in report.days.iter().enumerate() {
                @let x = left + slot * i as f64 + (slot - bar) / 2.0;
                @let mut y = height - bottom;
                @if let Some(media) = report.plays.get(day) {
                    @for (j, hash) in order.iter().enumerate() {
                        @if let Some(n) = media.get(hash) {
                            @let h = *n as f64 * scale;
                            @let top = { y -= h; y };
                            rect x=(format!("{x:.1}")) y=(format!("{top:.1}")) width=(format!("{bar:.1}")) height=(format!("{h:.1}")) fill=(COLOURS[j % COLOURS.len()]) {
                                title { (day) ": " (report.names.get(hash).map_or("?", String::as_str)) " — " (n) " plays" }
                            }
                        }
                    }
                }
                @if report.days.len() <= 14 || i % 7 == 0 {
                    text x=(format!("{:.1}", x + bar / 2.0)) y=(height - 10.0) font-size="11" text-anchor="middle" fill="#59636e" { (day.format("%d %b")) }
                }
            }
        }
    }
}

/// Each media's plays over the report, and the media from most to least played.
fn ranked(report: &Report) -> (BTreeMap<MediaHash, u64>, Vec<MediaHash>) {
    let mut totals: BTreeMap<MediaHash, u64> = BTreeMap::new();
    for media in report.plays.values() {
        for (h, n) in media {
            *totals.entry(*h).or_default() += n;
        }
    }
    let mut order: Vec<MediaHash> = totals.keys().copied().collect();
    order.sort_by_key(|h| std::cmp::Reverse(totals[h]));
    (totals, order)
}

/// `GET /reports`.
pub(crate) async fn reports(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    let viewer = Viewer::of(&caller, &headers);
    let reach = viewer.reach();
    let loaded = {
        let state = state.clone();
        let params_venue = params.venue.clone();
        let (from_text, to_text) = (params.from.clone(), params.to.clone());
        tokio::task::spawn_blocking(move || {
            let venues = state
                .registry
                .venues_page(&reach, &VenueFilter::default(), &[], None, 1000)?
                .items;
            let chosen =
                if params_venue.is_empty() {
                    venues.first().map(|(v, _)| v.id)
                } else {
                    let id: VenueId = params_venue.parse().map_err(
                        |e: taplink_sync_proto::ids::ParseIdError| ApiError::InvalidQuery {
                            param: "venue",
                            message: e.to_string(),
                        },
                    )?;
                    if !venues.iter().any(|(v, _)| v.id == id) {
                        return Err(ApiError::Forbidden {
                            reason: "that venue is outside your venues".to_owned(),
                        });
                    }
                    Some(id)
                };
            let Some(venue) = chosen else {
                return Ok((venues, None));
            };
            let tz = venues
                .iter()
                .find(|(v, _)| v.id == venue)
                .map_or(chrono_tz::UTC, |(v, _)| venue_tz(&v.timezone));
            let today = local_day(state.now().timestamp_millis(), tz).unwrap_or_default();
            let date = |text: &str, param: &'static str, default: NaiveDate| {
                if text.is_empty() {
                    Ok(default)
                } else {
                    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
                        ApiError::InvalidQuery {
                            param,
                            message: format!("{text:?} is not a date (YYYY-MM-DD)"),
                        }
                    })
                }
            };
            let to = date(&to_text, "to", today)?;
            let from = date(&from_text, "from", to - Duration::days(6))?;
            if from > to || (to - from).num_days() >= MAX_DAYS {
                return Err(ApiError::InvalidQuery {
                    param: "from",
                    message: format!("choose 1 to {MAX_DAYS} days, from before to"),
                });
            }
            let report = load(&state, venue, from, to)?;
            Ok((venues, Some((venue, from, to, report))))
        })
        .await
        .map_err(|e| ApiError::internal("loading a report", e))
        .and_then(|r| r)
    };
    let (venues, report, error) = match loaded {
        Ok((venues, report)) => (venues, report, None),
        Err(e) => (Vec::new(), None, Some(e)),
    };
    let body = html! {
        h1 { "Proof of play" }
        @if let Some(e) = &error { p.notice.error role="alert" { (e.to_string()) } }
        @if let Some((venue, from, to, report)) = &report {
            form.filters.card method="get" action="/reports" {
                label for="venue" { "Venue"
                    select id="venue" name="venue" {
                        @for (v, _) in &venues { option value=(v.id) selected[v.id == *venue] { (v.name) } }
                    }
                }
                label for="from" { "From" input id="from" name="from" type="date" value=(from.to_string()); }
                label for="to" { "To" input id="to" name="to" type="date" value=(to.to_string()); }
                button type="submit" { "Show" }
                a href={ "/api/v1/reports/proof-of-play?format=csv&venue=" (venue) "&from=" (from) "&to=" (to) } download { "Download CSV (per kiosk)" }
            }
            @let (totals, order) = ranked(report);
            @if totals.is_empty() {
                div.card { p { "No plays recorded in these days." } }
            } @else {
                div.card { (chart(report, &order)) }
                table.fleet {
                    thead { tr { th { "Media" } th { "Plays" } } }
                    tbody {
                        @for (j, h) in order.iter().enumerate() {
                            tr data-media=(h) {
                                td data-label="Media" { span style={ "display:inline-block;width:.8rem;height:.8rem;margin-right:.4rem;background:" (COLOURS[j % COLOURS.len()]) } {} (report.names.get(h).map_or_else(|| h.to_string(), Clone::clone)) }
                                td data-label="Plays" { (totals[h]) }
                            }
                        }
                    }
                }
            }
        } @else if error.is_none() {
            div.card { p { "No venues to report on." } }
        }
    };
    let status = error.as_ref().map_or(StatusCode::OK, ApiError::status);
    html_response(
        status,
        page(Some(&viewer), Section::Reports, "Proof of play", body),
    )
}
