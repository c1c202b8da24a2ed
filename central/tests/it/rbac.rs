//! The RBAC matrix: every route of central × every kind of caller × a venue in scope by
//! id, one in scope by tag, and one out of scope. Zero unauthorized successes and zero
//! wrongful refusals; the expected matrix is the table below, written for a reviewer.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::TimeDelta;
use serde_json::json;
use taplink_central::http::{app, documented_statuses, routes};
use taplink_sync_io::web::access::Access;
use taplink_sync_proto::clock::ManualClock;
use taplink_sync_proto::ids::{HubId, MediaHash, VenueId};

use crate::support::{Initialised, call, cert_of, now, user_session};

/// Who may use each route in a venue of their scope: `A`dmin, `T`echnician, `S`tore staff,
/// `V`iewer. Out of scope only admins may; anonymous callers never. The media routes name
/// their venue in the query (`?venue=`); without one they change the org library, which
/// only admins may.
const EXPECTED: &[(&str, &str, &str)] = &[
    ("GET", "/", "ATSV"),
    ("GET", "/live/overview", "ATSV"),
    ("GET", "/audit", "ATV"),
    ("GET", "/reports", "ATSV"),
    ("GET", "/media", "ATSV"),
    ("GET", "/venues/{id}/provisioning", "AT"),
    ("POST", "/venues/{id}/enrollment-codes", "AT"),
    ("POST", "/venues/{id}/kiosk-codes", "AT"),
    ("POST", "/venues/{id}/kiosk-codes/{code}/revoke", "AT"),
    ("POST", "/venues/{id}/kiosks/{kiosk}/remove", "AT"),
    ("POST", "/hubs/{id}/revoke", "AT"),
    ("GET", "/tokens", "ATSV"),
    ("POST", "/tokens", "ATSV"),
    ("POST", "/tokens/{id}/revoke", "ATSV"),
    ("GET", "/people", "A"),
    ("POST", "/people", "A"),
    ("POST", "/people/{id}", "A"),
    ("GET", "/venues/{id}", "ATSV"),
    ("POST", "/venues/{id}/playlists", "AS"),
    ("GET", "/venues/{id}/playlists/{playlist}", "ATSV"),
    ("POST", "/venues/{id}/playlists/{playlist}", "AS"),
    ("GET", "/api/v1/venues", "ATSV"),
    ("POST", "/api/v1/venues", "A"),
    ("GET", "/api/v1/venues/{id}", "ATSV"),
    ("PATCH", "/api/v1/venues/{id}", "A"),
    ("GET", "/api/v1/venues/{id}/document", "ATSV"),
    ("POST", "/api/v1/venues/{id}/ops", "AS"),
    ("PATCH", "/api/v1/venues/{id}/kiosks/{kiosk}", "AS"),
    ("DELETE", "/api/v1/venues/{id}/kiosks/{kiosk}", "AT"),
    ("POST", "/api/v1/venues/{id}/playlists", "AS"),
    ("PATCH", "/api/v1/venues/{id}/playlists/{playlist}", "AS"),
    ("DELETE", "/api/v1/venues/{id}/playlists/{playlist}", "AS"),
    (
        "POST",
        "/api/v1/venues/{id}/playlists/{playlist}/items",
        "AS",
    ),
    (
        "PATCH",
        "/api/v1/venues/{id}/playlists/{playlist}/items/{item}",
        "AS",
    ),
    (
        "DELETE",
        "/api/v1/venues/{id}/playlists/{playlist}/items/{item}",
        "AS",
    ),
    ("PUT", "/api/v1/venues/{id}/assignments", "AS"),
    ("POST", "/api/v1/venues/{id}/enrollment-codes", "AT"),
    ("GET", "/api/v1/venues/{id}/kiosk-codes", "AT"),
    ("POST", "/api/v1/venues/{id}/kiosk-codes", "AT"),
    ("DELETE", "/api/v1/venues/{id}/kiosk-codes/{code}", "AT"),
    ("GET", "/api/v1/users", "A"),
    ("POST", "/api/v1/users", "A"),
    ("PATCH", "/api/v1/users/{id}", "A"),
    ("DELETE", "/api/v1/users/{id}", "A"),
    ("GET", "/api/v1/tokens", "ATSV"),
    ("POST", "/api/v1/tokens", "ATSV"),
    ("DELETE", "/api/v1/tokens/{id}", "ATSV"),
    ("GET", "/api/v1/hubs", "ATSV"),
    ("GET", "/api/v1/hubs/{id}", "ATSV"),
    ("POST", "/api/v1/hubs/{id}/revoke", "AT"),
    ("GET", "/api/v1/audit", "ATV"),
    ("GET", "/api/v1/kiosks", "ATSV"),
    ("GET", "/api/v1/media", "ATSV"),
    ("PUT", "/api/v1/media", "AS"),
    ("GET", "/api/v1/media/{hash}", "ATSV"),
    ("DELETE", "/api/v1/media/{hash}", "AS"),
    ("GET", "/api/v1/reports/proof-of-play", "ATSV"),
];

/// Routes without a venue in the path that take one as `?venue=`: checked with each venue
/// (in scope, by tag, out of scope) and without one.
const VENUE_QUERY: &[&str] = &[
    "/api/v1/hubs",
    "/api/v1/audit",
    "/api/v1/kiosks",
    "/api/v1/media",
    "/api/v1/media/{hash}",
    "/api/v1/reports/proof-of-play",
];

/// Who may use a `VENUE_QUERY` route without a venue, where that differs from its row
/// above: writing the org library is for admins.
const WITHOUT_VENUE: &[(&str, &str, &str)] = &[
    ("PUT", "/api/v1/media", "A"),
    ("DELETE", "/api/v1/media/{hash}", "A"),
];

const PASSWORD: &str = "correct horse battery";

/// A caller: how its requests are authenticated.
#[derive(Clone)]
struct Caller {
    letter: char,
    cookie: Option<String>,
    csrf: Option<String>,
    token: Option<String>,
}

impl Caller {
    fn request(&self, method: &str, uri: &str) -> Request<Body> {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(token) = &self.token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(cookie) = &self.cookie {
            b = b.header(header::COOKIE, cookie);
        }
        if let Some(csrf) = &self.csrf {
            b = b.header("X-CSRF-Token", csrf);
        }
        if method == "GET" {
            b.body(Body::empty()).unwrap()
        } else {
            b.header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .unwrap()
        }
    }
}

#[tokio::test]
async fn every_route_every_role_every_scope_as_the_matrix_says() {
    let init = Initialised::new();
    let clock = Arc::new(ManualClock::new(now()));
    let state = init.state().with_clock(clock.clone());
    let app = app(state.clone());
    let token = init.token();
    let registry = &state.registry;
    let ours = registry.create_venue("Ours", "UTC", now()).unwrap().id;
    let tagged = registry.create_venue("North", "UTC", now()).unwrap().id;
    registry
        .set_venue_tags(tagged, &["region:north".parse().unwrap()].into())
        .unwrap();
    let other = registry.create_venue("Other", "UTC", now()).unwrap().id;
    let hub_of = |venue: VenueId, n: u8| {
        let (serial, fp) = cert_of(n);
        let hub = HubId::random();
        registry.record_hub(hub, venue, &serial, fp, now()).unwrap();
        hub
    };
    let hubs = [
        (ours, hub_of(ours, 1)),
        (tagged, hub_of(tagged, 2)),
        (other, hub_of(other, 3)),
    ];

    let scope = json!({"venues": [ours.to_string()], "tags": ["region:north"]});
    let mut callers = vec![
        Caller {
            letter: '-',
            cookie: None,
            csrf: None,
            token: None,
        },
        Caller {
            letter: 'A',
            cookie: None,
            csrf: None,
            token: Some(token.clone()),
        },
    ];
    for (letter, name, role) in [
        ('A', "ada", "admin"),
        ('T', "tom", "technician"),
        ('S', "sue", "store_staff"),
        ('V', "vic", "viewer"),
    ] {
        let mut body = json!({"username": name, "role": role, "password": PASSWORD});
        body.as_object_mut()
            .unwrap()
            .extend(scope.as_object().unwrap().clone());
        let (cookie, csrf) = user_session(&app, &token, body).await;
        callers.push(Caller {
            letter,
            cookie: Some(cookie),
            csrf: Some(csrf),
            token: None,
        });
    }

    let declared = routes(&state);
    let declared_routes = declared.declared().to_vec();
    let mut checked = 0;
    for route in declared.declared() {
        let Access::Act(action) = route.access else {
            continue;
        };
        for method in route.methods {
            let allowed = EXPECTED
                .iter()
                .find(|(m, p, _)| m == method && *p == route.path)
                .unwrap_or_else(|| {
                    panic!("{method} {} ({action}) has no row in EXPECTED", route.path)
                })
                .2;
            let venue_route = route.path.starts_with("/api/v1/venues/{id}")
                || route.path.starts_with("/api/v1/hubs/{id}")
                || route.path.starts_with("/venues/{id}")
                || route.path.starts_with("/hubs/{id}");
            // The venue in the query, and the org library without one.
            let query_route = VENUE_QUERY.contains(&route.path);
            let mut targets: Vec<Option<(VenueId, HubId)>> =
                hubs.iter().copied().map(Some).collect();
            if query_route {
                targets.push(None);
            }
            for target in targets {
                let in_scope = target.is_some_and(|(venue, _)| venue != other);
                let (venue, hub) = target.unwrap_or(hubs[0]);
                let id = if route.path.starts_with("/api/v1/hubs/")
                    || route.path.starts_with("/hubs/")
                {
                    hub.to_string()
                } else {
                    venue.to_string()
                };
                let mut path = route
                    .path
                    .replace("{id}", &id)
                    .replace("{code}", "aaaaaaaaaaaaaaaaaaaaaaaaaa")
                    .replace("{kiosk}", "aaaaaaaaaaaaaaaaaaaaaaaaaa")
                    .replace("{playlist}", "aaaaaaaaaaaaaaaaaaaaaaaaaa")
                    .replace("{item}", "aaaaaaaaaaaaaaaaaaaaaaaaaa")
                    .replace("{hash}", &MediaHash::of(b"none").to_string());
                if query_route && target.is_some() {
                    path = format!("{path}?venue={venue}");
                }
                let scoped = venue_route || query_route;
                for caller in &callers {
                    let answer = call(&app, caller.request(method, &path)).await;
                    let expected_ok = match caller.letter {
                        '-' => false,
                        'A' => true,
                        l if target.is_none() => WITHOUT_VENUE
                            .iter()
                            .find(|(m, p, _)| m == method && *p == route.path)
                            .map_or(allowed, |row| row.2)
                            .contains(l),
                        l => allowed.contains(l) && (in_scope || !scoped),
                    };
                    let page = taplink_central::http::is_page(route.path);
                    assert!(
                        page || documented_statuses(&declared_routes, method, route.path)
                            .contains(&answer.status.as_u16()),
                        "{method} {path} answered {}, which its OpenAPI entry does not document: {}",
                        answer.status,
                        answer.text()
                    );
                    // A page refuses a stranger by sending them to sign in.
                    let refused = matches!(
                        answer.status,
                        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                    ) || (page
                        && answer.status == StatusCode::SEE_OTHER
                        && answer.headers[header::LOCATION]
                            .to_str()
                            .is_ok_and(|to| to.starts_with("/login")));
                    let place = match target {
                        None => "no venue",
                        Some(_) if in_scope => "in scope",
                        Some(_) => "out of scope",
                    };
                    assert_eq!(
                        !refused,
                        expected_ok,
                        "{} {method} {path} ({action}, {place}): {} {}",
                        caller.letter,
                        answer.status,
                        answer.text()
                    );
                    if caller.letter == '-' {
                        let stranger = if page {
                            StatusCode::SEE_OTHER
                        } else {
                            StatusCode::UNAUTHORIZED
                        };
                        assert_eq!(answer.status, stranger);
                    }
                    checked += 1;
                }
                if !scoped {
                    break;
                }
            }
        }
    }
    assert!(checked > 100, "only {checked} requests checked");

    // Lists show only what is in reach.
    let tom = &callers[3];
    let listed = call(&app, tom.request("GET", "/api/v1/venues"))
        .await
        .json();
    let mut names: Vec<&str> = listed["venues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["North", "Ours"]);
    let hubs_listed = call(&app, tom.request("GET", "/api/v1/hubs")).await.json();
    assert_eq!(hubs_listed["hubs"].as_array().unwrap().len(), 2);
    // A report without a venue covers only the venues in reach.
    let plays = taplink_sync_proto::wire::TelemetryEvent {
        id: [9; 16],
        kiosk: None,
        at_ms: now().timestamp_millis(),
        kind: taplink_sync_proto::wire::TelemetryKind::ProofOfPlay(
            taplink_sync_proto::wire::ProofOfPlay {
                playlist: taplink_sync_proto::ids::PlaylistId::random(),
                item: taplink_sync_proto::ids::ItemId::random(),
                media: taplink_sync_proto::ids::MediaHash::of(b"ad"),
                started_ms: now().timestamp_millis(),
                duration_ms: 1_000,
            },
        ),
    };
    for (n, (_, hub)) in hubs.into_iter().enumerate() {
        let mut play = plays.clone();
        play.id = [n as u8 + 9; 16];
        assert_eq!(state.store_telemetry(hub, &[play]).unwrap(), 1);
    }
    let report = call(&app, tom.request("GET", "/api/v1/reports/proof-of-play")).await;
    assert_eq!(report.status, StatusCode::OK);
    let mut reported: Vec<String> = report
        .text()
        .lines()
        .skip(1)
        .map(|line| line.split(',').next().unwrap().to_owned())
        .collect();
    reported.sort_unstable();
    let mut reach = vec![ours.to_string(), tagged.to_string()];
    reach.sort_unstable();
    assert_eq!(reported, reach);

    // A session idle for longer than its limit is over.
    clock.advance(TimeDelta::hours(2));
    let expired = call(&app, tom.request("GET", "/api/v1/venues")).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
}
