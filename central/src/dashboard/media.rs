//! `GET /media[?venue=]`: the media library — a venue's media (or, for admins, the org
//! library) with type, size and where each is used; upload several files at once (a file
//! picker or drag and drop, each with a progress bar) and delete (refused while a playlist
//! shows it, then offered with the items removed too). Uploads and deletions go to the API
//! (`PUT /api/v1/media`, `DELETE /api/v1/media/{hash}`) from `media.js` with the session's
//! CSRF token, so the API's checks (type by content, size, quota, reach) are the page's.

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;
use serde::Deserialize;
use taplink_sync_proto::authz::{Action, Role, Target, authorize};
use taplink_sync_proto::ids::VenueId;

use crate::http::{ApiError, Caller};
use crate::state::AppState;
use crate::store::VenueFilter;

use super::{Section, Viewer, html_response, page};

/// The page's script.
const SCRIPT: &str = include_str!("media.js");

/// `GET /assets/media.js`.
pub(crate) async fn script() -> Response {
    super::asset(super::JAVASCRIPT, SCRIPT)
}

/// Which library.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Which {
    #[serde(default)]
    venue: String,
}

fn size_text(bytes: u64) -> String {
    match bytes {
        0..1_024 => format!("{bytes} B"),
        1_024..1_048_576 => format!("{:.0} KB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MB", bytes as f64 / 1_048_576.0),
    }
}

/// `GET /media`.
pub(crate) async fn media(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(which): Query<Which>,
) -> Response {
    let viewer = Viewer::of(&caller, &headers);
    let admin = viewer.principal.role == Role::Admin;
    let reach = viewer.reach();
    let registry = state.registry.clone();
    let chosen = which.venue.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let venues = registry
            .venues_page(&reach, &VenueFilter::default(), &[], None, 1000)?
            .items;
        let venue: Option<VenueId> = if chosen.is_empty() {
            // The library for admins; the first venue for everyone else.
            if admin {
                None
            } else {
                venues.first().map(|(v, _)| v.id)
            }
        } else {
            let id: VenueId =
                chosen
                    .parse()
                    .map_err(
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
        let listed = match (venue, admin) {
            (None, false) => Vec::new(),
            _ => registry.media_page(&reach, venue, None, 1000)?.items,
        };
        Ok::<_, ApiError>((venues, venue, listed))
    })
    .await
    .map_err(|e| ApiError::internal("loading media", e))
    .and_then(|r| r);
    let (venues, venue, listed) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return super::refusal(&state, e, "/media", None).await,
    };
    let may_write = match venue {
        None => admin,
        Some(id) => venues.iter().any(|(v, _)| {
            v.id == id
                && authorize(
                    &viewer.principal,
                    Action::MediaWrite,
                    Target::Venue { id, tags: &v.tags },
                )
                .is_ok()
        }),
    };
    let venue_text = venue.map(|v| v.to_string()).unwrap_or_default();
    let title = venue
        .and_then(|id| venues.iter().find(|(v, _)| v.id == id))
        .map_or_else(
            || "The org library".to_owned(),
            |(v, _)| format!("Media · {}", v.name),
        );
    let body = html! {
        h1 { (title) }
        form.filters.card method="get" action="/media" {
            label for="venue" { "Library"
                select id="venue" name="venue" {
                    @if admin { option value="" selected[venue.is_none()] { "The org library (every venue)" } }
                    @for (v, _) in &venues { option value=(v.id) selected[venue == Some(v.id)] { (v.name) } }
                }
            }
            button type="submit" { "Show" }
        }
        div id="media-library" data-csrf=(viewer.csrf) data-venue=(venue_text) {
            p id="media-status" role="status" aria-live="polite" {}
            @if may_write {
                section.card id="media-drop" {
                    h2 { "Add media" }
                    p.muted { "Images (PNG, JPEG, GIF, WebP, SVG) and videos (WebM, MP4). Drop files here or choose them; each shows its progress." }
                    label for="media-files" { "Files"
                        input id="media-files" type="file" multiple accept="image/png,image/jpeg,image/gif,image/webp,image/svg+xml,video/webm,video/mp4";
                    }
                    ul id="upload-list" {}
                    noscript { p.notice.error { "Uploading needs JavaScript; or use PUT /api/v1/media." } }
                }
            }
            @if listed.is_empty() {
                div.card { p { "No media here yet." } }
            } @else {
                table.fleet {
                    thead { tr { th { "Preview" } th { "Name" } th { "Type" } th { "Size" } th { "Used by" } @if may_write { th { "" } } } }
                    tbody {
                        @for m in &listed {
                            tr data-media=(m.hash) {
                                td data-label="Preview" { (super::thumb(&m.hash, &m.content_type, venue, &m.name)) }
                                td data-label="Name" { strong { (m.name) } }
                                td data-label="Type" { (if m.content_type.starts_with("video/") { "Video" } else { "Image" }) " · " span.muted { (m.content_type) } }
                                td data-label="Size" { (size_text(m.size)) }
                                td data-label="Used by" {
                                    @if m.used_by.is_empty() { span.muted { "not in any playlist" } }
                                    @for u in &m.used_by { span.tag { (u.playlist_name) } }
                                }
                                @if may_write {
                                    td { button.secondary type="button" data-delete=(m.hash) data-name=(m.name) { "Delete" } }
                                }
                            }
                        }
                    }
                }
            }
        }
        script src="/assets/media.js" defer {}
    };
    html_response(
        StatusCode::OK,
        page(Some(&viewer), Section::Media, "Media", body),
    )
}
