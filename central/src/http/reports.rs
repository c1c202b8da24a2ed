//! `GET /api/v1/reports/proof-of-play`: what was shown where, per kiosk, media and venue-local
//! day (`granularity=day`, the default) or play by play (`granularity=raw`), as CSV (the
//! default) or a JSON array, in the venue's local time with UTC beside it.
//!
//! Query: `venue` (without it: every venue the caller may read), `kiosk`, `media`, `from`
//! and `to` (a date `2026-03-01`, read as that local day in each venue, or an RFC 3339
//! time; `from` is included, a date `to` includes its whole day, a time `to` is the first
//! instant left out), `format=csv|json`, `granularity=day|raw`. Daily reports count whole
//! local days: a time bound stands for the local day it falls in. Raw plays exist only for
//! the retention period (`telemetry_retention_days`); daily totals also cover the days
//! before it, from the rollups expiry leaves.
//!
//! The body is streamed: a blocking task reads the registry page by page (one venue-day of
//! totals, or [`RAW_PAGE`] raw plays, per short query) and sends chunks of about
//! [`CHUNK_BYTES`] over a channel of [`CHANNEL_CHUNKS`], so a year of a large fleet is
//! never held in memory and a slow client slows the reading down. A registry failure after
//! the first byte cuts the response off (the client sees an incomplete body, never a short
//! one that looks whole).

use std::io;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, SecondsFormat, TimeDelta, Utc};
use chrono_tz::Tz;
use data_encoding::HEXLOWER;
use serde::{Deserialize, Serialize};
use taplink_sync_proto::authz::Action;
use taplink_sync_proto::ids::{KioskId, MediaHash, VenueId};
use tokio::sync::mpsc;

use crate::state::AppState;
use crate::store::{
    PlayFilter, Registry, RegistryError, Venue, day_start_utc, local_day, venue_tz,
};
use crate::timefmt::rfc3339;

use super::auth::Caller;
use super::error::{ApiError, blocking};

/// Raw plays read per query.
pub(super) const RAW_PAGE: usize = 1000;
/// Bytes gathered before a chunk is sent.
pub(super) const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks that may wait in the channel for a slow client: the most a report holds in
/// memory is about `CHANNEL_CHUNKS + 1` times [`CHUNK_BYTES`] and one venue-day of totals.
pub(super) const CHANNEL_CHUNKS: usize = 4;

/// The first and last day a daily report without `from` or `to` may name.
const FIRST_DAY: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date");
const LAST_DAY: NaiveDate = NaiveDate::from_ymd_opt(9999, 12, 30).expect("a valid date");

/// The report's query string.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReportQuery {
    venue: Option<String>,
    kiosk: Option<String>,
    media: Option<String>,
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
    granularity: Option<String>,
}

/// `csv` or `json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Json,
}

/// `day` or `raw`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Granularity {
    Day,
    Raw,
}

/// A `from` or `to`: a local date or an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    Day(NaiveDate),
    Instant(DateTime<Utc>),
}

impl Bound {
    fn parse(param: &'static str, text: &str) -> Result<Bound, ApiError> {
        if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            return Ok(Bound::Day(day));
        }
        DateTime::parse_from_rfc3339(text)
            .map(|t| Bound::Instant(t.with_timezone(&Utc)))
            .map_err(|_| ApiError::InvalidQuery {
                param,
                message: format!(
                    "expected a date such as 2026-03-01 or an RFC 3339 time such as \
                     2026-03-01T12:00:00Z, got {:?}",
                    text.chars().take(60).collect::<String>()
                ),
            })
    }
}

/// Everything the report needs, checked.
#[derive(Debug, Clone)]
struct Report {
    format: Format,
    granularity: Granularity,
    filter: PlayFilter,
    from: Option<Bound>,
    to: Option<Bound>,
}

impl Report {
    /// The instants `[from, to)` of a raw report in `tz`.
    fn raw_range(&self, tz: Tz) -> (i64, i64) {
        let from = match self.from {
            None => i64::MIN,
            Some(Bound::Day(d)) => day_start_utc(d, tz).timestamp_millis(),
            Some(Bound::Instant(t)) => t.timestamp_millis(),
        };
        let to = match self.to {
            None => i64::MAX,
            Some(Bound::Day(d)) => d
                .succ_opt()
                .map_or(i64::MAX, |next| day_start_utc(next, tz).timestamp_millis()),
            Some(Bound::Instant(t)) => t.timestamp_millis(),
        };
        (from, to)
    }

    /// The local days (both included) of a daily report in `tz`.
    fn day_range(&self, tz: Tz) -> (NaiveDate, NaiveDate) {
        let day_of = |t: DateTime<Utc>| t.with_timezone(&tz).date_naive();
        let from = match self.from {
            None => FIRST_DAY,
            Some(Bound::Day(d)) => d,
            Some(Bound::Instant(t)) => day_of(t),
        };
        let to = match self.to {
            None => LAST_DAY,
            Some(Bound::Day(d)) => d,
            // The first instant left out: the last day is the one of the instant before it.
            Some(Bound::Instant(t)) => day_of(t - TimeDelta::milliseconds(1)),
        };
        (from.max(FIRST_DAY), to.min(LAST_DAY))
    }
}

fn parse_query(query: ReportQuery) -> Result<(Option<VenueId>, Report), ApiError> {
    fn id<T: std::str::FromStr>(
        param: &'static str,
        text: Option<String>,
    ) -> Result<Option<T>, ApiError>
    where
        T::Err: std::fmt::Display,
    {
        text.map(|t| t.parse::<T>())
            .transpose()
            .map_err(|e| ApiError::InvalidQuery {
                param,
                message: e.to_string(),
            })
    }
    let venue = id::<VenueId>("venue", query.venue)?;
    let kiosk = id::<KioskId>("kiosk", query.kiosk)?;
    let media = id::<MediaHash>("media", query.media)?;
    let from = query.from.map(|t| Bound::parse("from", &t)).transpose()?;
    let to = query.to.map(|t| Bound::parse("to", &t)).transpose()?;
    let backwards = match (from, to) {
        (Some(Bound::Day(a)), Some(Bound::Day(b))) => a > b,
        (Some(Bound::Instant(a)), Some(Bound::Instant(b))) => a > b,
        _ => false,
    };
    if backwards {
        return Err(ApiError::InvalidQuery {
            param: "to",
            message: "it is before `from`".to_owned(),
        });
    }
    let format = match query.format.as_deref() {
        None | Some("csv") => Format::Csv,
        Some("json") => Format::Json,
        Some(other) => {
            return Err(ApiError::InvalidQuery {
                param: "format",
                message: format!(
                    "expected csv or json, got {:?}",
                    other.chars().take(40).collect::<String>()
                ),
            });
        }
    };
    let granularity = match query.granularity.as_deref() {
        None | Some("day") => Granularity::Day,
        Some("raw") => Granularity::Raw,
        Some(other) => {
            return Err(ApiError::InvalidQuery {
                param: "granularity",
                message: format!(
                    "expected day or raw, got {:?}",
                    other.chars().take(40).collect::<String>()
                ),
            });
        }
    };
    Ok((
        venue,
        Report {
            format,
            granularity,
            filter: PlayFilter { kiosk, media },
            from,
            to,
        },
    ))
}

/// `GET /api/v1/reports/proof-of-play`.
pub(super) async fn proof_of_play(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::InvalidQuery {
        param: "query",
        message: e.body_text(),
    })?;
    let (venue, report) = parse_query(query)?;
    let registry = state.registry.clone();
    let principal = caller.principal();
    // The authentication layer checked a named venue against the caller's scope; without
    // one, the report covers the venues the caller may read.
    let venues = blocking(move || match venue {
        Some(id) => registry
            .venue(id)?
            .map(|v| vec![v])
            .ok_or(RegistryError::UnknownVenue { venue: id }),
        None => Ok(registry
            .list_venues()?
            .into_iter()
            .filter(|v| super::venues::in_reach(&principal, Action::VenueRead, v))
            .collect()),
    })
    .await?;
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(CHANNEL_CHUNKS);
    let registry = state.registry.clone();
    let format = report.format;
    tokio::task::spawn_blocking(move || {
        let mut sink = Sink {
            tx,
            buf: Vec::with_capacity(CHUNK_BYTES),
            rows: 0,
        };
        match write_report(&registry, &venues, &report, &mut sink) {
            Ok(()) => {
                tracing::debug!(rows = sink.rows, "proof-of-play report sent");
            }
            Err(WriteError::Gone) => {
                tracing::debug!(rows = sink.rows, "proof-of-play report: the client left");
            }
            Err(WriteError::Registry(error)) => {
                tracing::error!(%error, rows = sink.rows, "proof-of-play report failed; response cut off");
                // Headers are out; an error in the stream aborts the body so the client
                // sees an incomplete response.
                let _ = sink
                    .tx
                    .blocking_send(Err(io::Error::other("the report could not be completed")));
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let (content_type, file) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "proof-of-play.csv"),
        Format::Json => ("application/json", "proof-of-play.json"),
    };
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!("inline; filename=\"{file}\""))
            .map_err(|e| ApiError::internal("report headers", e))?,
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Why writing a report stopped.
#[derive(Debug)]
enum WriteError {
    /// The client went away (the channel closed).
    Gone,
    /// The registry failed.
    Registry(RegistryError),
}

impl From<RegistryError> for WriteError {
    fn from(e: RegistryError) -> Self {
        WriteError::Registry(e)
    }
}

/// Gathers text into chunks and sends them, waiting while the channel is full.
struct Sink {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
    rows: u64,
}

impl Sink {
    fn push(&mut self, text: &[u8]) -> Result<(), WriteError> {
        self.buf.extend_from_slice(text);
        if self.buf.len() >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), WriteError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(CHUNK_BYTES),
        ));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| WriteError::Gone)
    }
}

/// A row of the daily report.
#[derive(Debug, Serialize)]
struct DayRow<'a> {
    venue_id: String,
    venue_timezone: &'a str,
    day_local: String,
    day_start_utc: String,
    kiosk_id: Option<String>,
    media: String,
    plays: u64,
    played_ms: u64,
}

const DAY_COLUMNS: &str =
    "venue_id,venue_timezone,day_local,day_start_utc,kiosk_id,media,plays,played_ms\n";

/// A row of the raw report.
#[derive(Debug, Serialize)]
struct RawRow<'a> {
    venue_id: String,
    venue_timezone: &'a str,
    day_local: String,
    started_local: String,
    started_utc: String,
    duration_ms: u64,
    kiosk_id: Option<String>,
    media: String,
    playlist_id: Option<String>,
    item_id: Option<String>,
    hub_id: String,
    event_id: String,
}

const RAW_COLUMNS: &str = "venue_id,venue_timezone,day_local,started_local,started_utc,\
                           duration_ms,kiosk_id,media,playlist_id,item_id,hub_id,event_id\n";

/// Writes rows as CSV lines or as the elements of one JSON array.
struct Rows<'s> {
    sink: &'s mut Sink,
    format: Format,
    first: bool,
}

impl Rows<'_> {
    fn row(&mut self, row: &impl Serialize, csv: &[&str]) -> Result<(), WriteError> {
        match self.format {
            Format::Csv => {
                let mut line = String::new();
                for (i, field) in csv.iter().enumerate() {
                    if i > 0 {
                        line.push(',');
                    }
                    line.push_str(&super::csv::field(field));
                }
                line.push('\n');
                self.sink.push(line.as_bytes())?;
            }
            Format::Json => {
                let json = serde_json::to_vec(row).map_err(|source| {
                    WriteError::Registry(RegistryError::Encode {
                        what: "a report row",
                        source,
                    })
                })?;
                self.sink.push(if self.first { b"\n" } else { b",\n" })?;
                self.sink.push(&json)?;
            }
        }
        self.first = false;
        self.sink.rows += 1;
        Ok(())
    }
}

fn write_report(
    registry: &Registry,
    venues: &[Venue],
    report: &Report,
    sink: &mut Sink,
) -> Result<(), WriteError> {
    match report.format {
        Format::Csv => sink.push(match report.granularity {
            Granularity::Day => DAY_COLUMNS.as_bytes(),
            Granularity::Raw => RAW_COLUMNS.as_bytes(),
        })?,
        Format::Json => sink.push(b"[")?,
    }
    let mut rows = Rows {
        sink,
        format: report.format,
        first: true,
    };
    for venue in venues {
        let tz = venue_tz(&venue.timezone);
        match report.granularity {
            Granularity::Day => write_days(registry, venue, tz, report, &mut rows)?,
            Granularity::Raw => write_raw(registry, venue, tz, report, &mut rows)?,
        }
    }
    let sink = rows.sink;
    if report.format == Format::Json {
        sink.push(if rows.first { b"]\n" } else { b"\n]\n" })?;
    }
    sink.flush()
}

/// One venue's daily totals, day by day (days without plays are skipped by the registry).
fn write_days(
    registry: &Registry,
    venue: &Venue,
    tz: Tz,
    report: &Report,
    rows: &mut Rows<'_>,
) -> Result<(), WriteError> {
    let (mut day, last) = report.day_range(tz);
    while day <= last {
        let Some(found) = registry.next_play_day(venue.id, tz, &report.filter, day, last)? else {
            break;
        };
        let totals = registry.plays_on_day(venue.id, tz, found, &report.filter)?;
        let day_local = found.format("%Y-%m-%d").to_string();
        let day_start = rfc3339(day_start_utc(found, tz));
        for total in totals {
            let row = DayRow {
                venue_id: venue.id.to_string(),
                venue_timezone: &venue.timezone,
                day_local: day_local.clone(),
                day_start_utc: day_start.clone(),
                kiosk_id: total.kiosk.map(|k| k.to_string()),
                media: total.media.to_string(),
                plays: total.plays,
                played_ms: total.played_ms,
            };
            let (plays, ms) = (row.plays.to_string(), row.played_ms.to_string());
            rows.row(
                &row,
                &[
                    &row.venue_id,
                    row.venue_timezone,
                    &row.day_local,
                    &row.day_start_utc,
                    row.kiosk_id.as_deref().unwrap_or(""),
                    &row.media,
                    &plays,
                    &ms,
                ],
            )?;
        }
        let Some(next) = found.succ_opt() else {
            break;
        };
        day = next;
    }
    Ok(())
}

/// One venue's raw plays, page by page.
fn write_raw(
    registry: &Registry,
    venue: &Venue,
    tz: Tz,
    report: &Report,
    rows: &mut Rows<'_>,
) -> Result<(), WriteError> {
    let (from, to) = report.raw_range(tz);
    let mut after = None;
    loop {
        let page = registry.raw_plays(venue.id, &report.filter, from, to, after, RAW_PAGE)?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.cursor);
        let full = page.len() == RAW_PAGE;
        for play in page {
            let Some(started) = DateTime::from_timestamp_millis(play.started_ms) else {
                continue;
            };
            let row = RawRow {
                venue_id: venue.id.to_string(),
                venue_timezone: &venue.timezone,
                day_local: local_day(play.started_ms, tz)
                    .map(|d| d.format("%Y-%m-%d").to_string())
                    .unwrap_or_default(),
                started_local: started
                    .with_timezone(&tz)
                    .to_rfc3339_opts(SecondsFormat::AutoSi, true),
                started_utc: rfc3339(started),
                duration_ms: play.duration_ms,
                kiosk_id: play.kiosk.map(|k| k.to_string()),
                media: play.media.to_string(),
                playlist_id: play.playlist.map(|p| p.to_string()),
                item_id: play.item.map(|i| i.to_string()),
                hub_id: play.hub.to_string(),
                event_id: HEXLOWER.encode(&play.event_id),
            };
            let duration = row.duration_ms.to_string();
            rows.row(
                &row,
                &[
                    &row.venue_id,
                    row.venue_timezone,
                    &row.day_local,
                    &row.started_local,
                    &row.started_utc,
                    &duration,
                    row.kiosk_id.as_deref().unwrap_or(""),
                    &row.media,
                    row.playlist_id.as_deref().unwrap_or(""),
                    row.item_id.as_deref().unwrap_or(""),
                    &row.hub_id,
                    &row.event_id,
                ],
            )?;
        }
        if !full {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_read_dates_and_times_and_name_the_parameter() {
        assert_eq!(
            Bound::parse("from", "2026-03-01").unwrap(),
            Bound::Day(NaiveDate::from_ymd_opt(2026, 3, 1).unwrap())
        );
        assert!(matches!(
            Bound::parse("from", "2026-03-01T12:00:00+01:00").unwrap(),
            Bound::Instant(t) if rfc3339(t) == "2026-03-01T11:00:00Z"
        ));
        let err = Bound::parse("to", "yesterday").unwrap_err();
        assert!(err.to_string().contains("`to`"), "{err}");
    }

    #[test]
    fn daily_ranges_are_whole_local_days() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let report = Report {
            format: Format::Csv,
            granularity: Granularity::Day,
            filter: PlayFilter::default(),
            from: Some(Bound::Instant(
                "2026-03-01T23:30:00Z".parse::<DateTime<Utc>>().unwrap(),
            )),
            to: Some(Bound::Instant(
                "2026-03-03T23:00:00Z".parse::<DateTime<Utc>>().unwrap(),
            )),
        };
        let day = |d| NaiveDate::from_ymd_opt(2026, 3, d).unwrap();
        // 00:30 on 2 March in Berlin to the first instant of 4 March (left out).
        assert_eq!(report.day_range(tz), (day(2), day(3)));
    }
}
