//! `/venues/{id}/provisioning` (technicians and admins): hub enrollment codes and kiosk
//! codes — each shown once, selectable to copy, with a QR code for a phone — the venue's
//! kiosk codes, and its hubs with a revoke button. The forms call the API's own functions
//! (`issue_enrollment_code`, `issue_kiosk_code`, `kiosk_code_list`).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;
use taplink_sync_proto::authz::Action;
use taplink_sync_proto::doc::{Kiosk, VenueCommand, load_venue};
use taplink_sync_proto::ids::{GrantId, HubId, KioskId, VenueId};
use taplink_sync_proto::note::Via;
use taplink_sync_proto::wire::DocId;

use crate::http::{ApiError, Caller, CreateKioskCodeRequest};
use crate::state::AppState;
use crate::store::{HubRecord, Venue};

use super::{Section, Viewer, html_response, page};

/// A code as a QR code (SVG), or nothing if it does not fit one.
fn qr(text: &str) -> Markup {
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => {
            let svg = code
                .render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(180, 180)
                .quiet_zone(true)
                .build();
            // The renderer writes only its own SVG elements and attributes.
            html! { div.qr aria-label="QR code of the code" { (PreEscaped(svg)) } }
        }
        Err(_) => html! {},
    }
}

/// A code shown once, with a field that selects it whole for copying, and its QR code.
fn shown_once(title: &str, code: &str, expires_at: &str, how: &str) -> Markup {
    html! {
        section.card.shown-once role="status" {
            h2 { (title) }
            p { strong { "Shown only now." } " Copy it or scan it; it expires " (expires_at) "." }
            label for="code" { "Code"
                input id="code" readonly value=(code) onfocus="this.select()" style="font-family:monospace;width:100%";
            }
            (qr(code))
            p.muted { (how) }
        }
    }
}

async fn load(state: &AppState, venue: VenueId) -> Result<(Venue, Vec<HubRecord>), ApiError> {
    let registry = state.registry.clone();
    tokio::task::spawn_blocking(move || {
        let record = registry.venue(venue)?.ok_or(ApiError::NotFound {
            what: format!("venue {venue}"),
        })?;
        Ok::<_, ApiError>((record, registry.list_hubs(Some(venue))?))
    })
    .await
    .map_err(|e| ApiError::internal("loading provisioning", e))?
}

async fn render(
    state: &AppState,
    viewer: &Viewer,
    venue: VenueId,
    shown: Option<Markup>,
) -> Result<Markup, ApiError> {
    let (record, hubs) = load(state, venue).await?;
    let codes = crate::http::kiosk_code_list(state, venue).await?;
    let docs = state.docs.clone();
    let mut kiosks: Vec<(KioskId, Kiosk)> = tokio::task::spawn_blocking(move || {
        docs.read(DocId::Venue(venue), |am| load_venue(am))
            .ok()
            .and_then(Result::ok)
            .map(|doc| doc.kiosks.into_iter().collect())
            .unwrap_or_default()
    })
    .await
    .map_err(|e| ApiError::internal("loading kiosks", e))?;
    kiosks.sort_by(|(a_id, a), (b_id, b)| a.name.cmp(&b.name).then(a_id.cmp(b_id)));
    let body = html! {
        p { a href="/" { "← Venues" } }
        h1 { "Provisioning · " (record.name) }
        @if let Some(shown) = shown { (shown) }
        div.summary {
            @if viewer.may(Action::HubEnroll) {
                form.card method="post" action={ "/venues/" (venue) "/enrollment-codes" } {
                    h2 { "Enroll a hub" }
                    p.muted { "Run " code { "taplink-hub enroll --central HOST:PORT --code CODE" } " on the venue's hub." }
                    input type="hidden" name="csrf_token" value=(viewer.csrf);
                    label for="ttl" { "Valid for"
                        select id="ttl" name="ttl" {
                            option value="2h" { "2 hours" }
                            option value="24h" selected { "1 day" }
                            option value="7d" { "7 days" }
                        }
                    }
                    button type="submit" { "Make an enrollment code" }
                }
            }
            form.card method="post" action={ "/venues/" (venue) "/kiosk-codes" } {
                h2 { "Pair a kiosk without staff" }
                p.muted { "Type the code on the kiosk's pairing screen: it pairs at once, even with the internet down." }
                input type="hidden" name="csrf_token" value=(viewer.csrf);
                label for="kiosk-name" { "Kiosk name" input id="kiosk-name" name="name" required placeholder="Bar left"; }
                label for="kiosk-group" { "Group (optional)" input id="kiosk-group" name="group" placeholder="bar"; }
                button type="submit" { "Make a kiosk code" }
            }
        }
        section.card {
            h2 { "Kiosk codes" }
            @if codes.kiosk_codes.is_empty() { p.muted { "None yet." } } @else {
                table {
                    thead { tr { th { "Name" } th { "Group" } th { "State" } th { "Expires" } th {} } }
                    tbody {
                        @for c in &codes.kiosk_codes {
                            tr data-kiosk-code=(c.id) {
                                td { (c.name) } td { (c.group.clone().unwrap_or_default()) } td { (c.state) } td { (c.expires_at) }
                                td {
                                    form method="post" action={ "/venues/" (venue) "/kiosk-codes/" (c.id) "/revoke" } {
                                        input type="hidden" name="csrf_token" value=(viewer.csrf);
                                        button.secondary type="submit" {
                                            @if c.kiosk.is_some() { "Forget" } @else { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                p.muted { "Revoking an unused code stops it working once the change reaches the hub; forgetting a used one keeps its kiosk." }
            }
        }
        section.card {
            h2 { "Paired kiosks" }
            @if kiosks.is_empty() { p.muted { "No kiosk paired yet." } } @else {
                table {
                    thead { tr { th { "Kiosk" } th { "Group" } th {} } }
                    tbody {
                        @for (id, k) in &kiosks {
                            tr data-kiosk=(id) {
                                td { (k.name) } td { (k.group.clone().unwrap_or_default()) }
                                td {
                                    @if viewer.may(Action::PairingManage) {
                                        form method="post" action={ "/venues/" (venue) "/kiosks/" (id) "/remove" } {
                                            input type="hidden" name="csrf_token" value=(viewer.csrf);
                                            button.secondary type="submit" aria-label={ "Unpair " (k.name) } { "Unpair" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                p.muted { "An unpaired kiosk stops getting content once the change reaches the hub; pair it again to bring it back. Kiosks waiting to pair are approved at the hub, or pair themselves with a kiosk code." }
            }
        }
        section.card {
            h2 { "Hubs" }
            @if hubs.is_empty() { p.muted { "No hub enrolled yet." } } @else {
                table {
                    thead { tr { th { "Hub" } th { "Enrolled" } th { "Last seen" } th {} } }
                    tbody {
                        @for h in &hubs {
                            tr data-hub=(h.id) {
                                td { code { (h.id) } }
                                td { (crate::rfc3339(h.enrolled_at)) }
                                td { (h.last_seen.map_or_else(|| "never".to_owned(), crate::rfc3339)) }
                                td {
                                    @if let Some(at) = h.revoked_at {
                                        span.state.offline { "Revoked " (crate::rfc3339(at)) }
                                    } @else if viewer.may(Action::HubRevoke) {
                                        form method="post" action={ "/hubs/" (h.id) "/revoke" } {
                                            input type="hidden" name="csrf_token" value=(viewer.csrf);
                                            button.secondary type="submit" { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page(Some(viewer), Section::Fleet, "Provisioning", body))
}

/// The page, or the refusal. `html_response` marks every page `no-store`, so a page
/// showing a code once is never kept by a cache.
fn answer(result: Result<Markup, ApiError>) -> Response {
    match result {
        Ok(markup) => html_response(StatusCode::OK, markup),
        Err(e) => e.into_response(),
    }
}

fn venue_of(id: &str) -> Result<VenueId, ApiError> {
    id.parse().map_err(
        |e: taplink_sync_proto::ids::ParseIdError| ApiError::InvalidPath {
            message: e.to_string(),
        },
    )
}

/// `GET /venues/{id}/provisioning`.
pub(crate) async fn provisioning(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let viewer = Viewer::of(&caller, &headers);
    answer(match venue_of(&id) {
        Ok(venue) => render(&state, &viewer, venue, None).await,
        Err(e) => Err(e),
    })
}

/// The enrollment form.
#[derive(Debug, Deserialize)]
pub(crate) struct EnrollForm {
    ttl: Option<String>,
}

/// `POST /venues/{id}/enrollment-codes`: the page again, with the new code shown once.
pub(crate) async fn new_enrollment_code(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<EnrollForm>,
) -> Response {
    let viewer = Viewer::of(&caller, &headers);
    let result = async {
        let venue = venue_of(&id)?;
        let code = crate::http::issue_enrollment_code(&state, venue, form.ttl).await?;
        let shown = shown_once(
            "Hub enrollment code",
            &code.code,
            &code.expires_at,
            "It enrolls one hub in this venue, once.",
        );
        render(&state, &viewer, venue, Some(shown)).await
    }
    .await;
    answer(result)
}

/// The kiosk code form.
#[derive(Debug, Deserialize)]
pub(crate) struct KioskForm {
    name: String,
    #[serde(default)]
    group: String,
}

/// `POST /venues/{id}/kiosk-codes`: the page again, with the new code shown once.
pub(crate) async fn new_kiosk_code(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<KioskForm>,
) -> Response {
    let viewer = Viewer::of(&caller, &headers);
    let result = async {
        let venue = venue_of(&id)?;
        let request = CreateKioskCodeRequest {
            name: form.name,
            expires_in_hours: None,
            group: (!form.group.trim().is_empty()).then(|| form.group.trim().to_owned()),
            playlist: None,
        };
        let code = crate::http::issue_kiosk_code(&state, venue, request).await?;
        let shown = shown_once(
            &format!("Kiosk code for {}", code.name),
            &code.code,
            &code.expires_at,
            "It pairs one kiosk with this venue's hub.",
        );
        render(&state, &viewer, venue, Some(shown)).await
    }
    .await;
    answer(result)
}

/// `POST /venues/{id}/kiosks/{kiosk}/remove`: unpair a kiosk (`VenueCommand::RemoveKiosk`
/// through the API's one way to change a venue), back to the provisioning page.
pub(crate) async fn remove_kiosk(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(via): Extension<Via>,
    Path((id, kiosk)): Path<(String, String)>,
) -> Response {
    let result = async {
        let venue = venue_of(&id)?;
        let kiosk: KioskId =
            kiosk
                .parse()
                .map_err(
                    |e: taplink_sync_proto::ids::ParseIdError| ApiError::InvalidPath {
                        message: format!("kiosk: {e}"),
                    },
                )?;
        let command = VenueCommand::RemoveKiosk { id: kiosk };
        crate::http::apply_venue_commands(&state, &caller, via, venue, vec![command]).await?;
        tracing::info!(%venue, %kiosk, "kiosk unpaired from the dashboard");
        Ok::<_, ApiError>(venue)
    }
    .await;
    match result {
        Ok(venue) => (
            Extension(crate::http::ChangeAudited),
            Redirect::to(&format!("/venues/{venue}/provisioning")),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /venues/{id}/kiosk-codes/{code}/revoke`: revoke an unused kiosk code (or forget
/// a used one), back to the provisioning page.
pub(crate) async fn revoke_kiosk_code(
    State(state): State<AppState>,
    Path((id, code)): Path<(String, String)>,
) -> Response {
    let result = async {
        let venue = venue_of(&id)?;
        let grant: GrantId = code.parse().map_err(|e| ApiError::InvalidPath {
            message: format!("kiosk code id: {e}"),
        })?;
        crate::http::revoke_kiosk_code(&state, venue, grant).await?;
        Ok::<_, ApiError>(venue)
    }
    .await;
    match result {
        Ok(venue) => Redirect::to(&format!("/venues/{venue}/provisioning")).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /hubs/{id}/revoke`: revoke the hub, back to its venue's provisioning page.
pub(crate) async fn revoke_hub(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(hub) = id.parse::<HubId>() else {
        return ApiError::InvalidPath {
            message: "not a hub id".to_owned(),
        }
        .into_response();
    };
    let registry = state.registry.clone();
    let now = state.now();
    match tokio::task::spawn_blocking(move || registry.revoke_hub(hub, now)).await {
        Ok(Ok(record)) => {
            state.notify_hub_revoked(hub);
            tracing::info!(%hub, venue = %record.venue, "hub revoked from the dashboard");
            Redirect::to(&format!("/venues/{}/provisioning", record.venue)).into_response()
        }
        Ok(Err(e)) => ApiError::from(e).into_response(),
        Err(e) => ApiError::internal("revoking a hub", e).into_response(),
    }
}
