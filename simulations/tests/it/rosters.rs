//! Venue rosters from a real central to a real hub over QUIC: the hub holds its venue's
//! signed roster (the users whose scope covers the venue, admins included, nobody else's),
//! and a user disabled at central reaches the hub as a newer roster at once.

use std::time::Duration;

use serde_json::json;
use taplink_simulations::mesh::{CentralNode, enroll_hub, eventually, start_hub};
use taplink_sync_proto::ids::KioskId;

const WAIT: Duration = Duration::from_secs(20);

/// Make these people at central (the one password of this file): their ids by username.
/// A person without a venue is an admin's kind: every venue.
async fn people(
    central: &CentralNode,
    people: &[(&str, &str, Option<taplink_sync_proto::ids::VenueId>)],
) -> std::collections::BTreeMap<String, String> {
    let mut ids = std::collections::BTreeMap::new();
    for (name, role, venue) in people {
        let mut user =
            json!({ "username": name, "role": role, "password": "correct horse battery" });
        if let Some(venue) = venue {
            user["venues"] = json!([venue.to_string()]);
        }
        let (status, body) = central
            .admin("POST", "/api/v1/users", Some(&user))
            .await
            .unwrap();
        assert_eq!(status, 201, "{body}");
        ids.insert((*name).to_owned(), body["id"].as_str().unwrap().to_owned());
    }
    ids
}

/// Enroll and start `venue`'s hub in `dir`, and wait until it holds the venue's roster.
async fn hub_with_roster(
    central: &CentralNode,
    venue: taplink_sync_proto::ids::VenueId,
    dir: &std::path::Path,
) -> taplink_edge_hub::Hub {
    enroll_hub(
        dir,
        central.quic_addr(),
        &central.enrollment_token(venue).unwrap(),
    )
    .await
    .unwrap();
    let hub = start_hub(dir, None).await.unwrap();
    eventually(WAIT, || hub.store().held_roster().ok().flatten())
        .await
        .unwrap();
    hub
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_holds_its_venues_signed_roster_and_follows_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let central = CentralNode::start(&tmp.path().join("central"))
        .await
        .unwrap();
    let anchor = central.create_venue("The Anchor", "Europe/London").unwrap();
    let crown = central.create_venue("The Crown", "Europe/London").unwrap();
    let ids = people(
        &central,
        &[
            ("ada", "admin", None),
            ("sue", "store_staff", Some(anchor)),
            ("tom", "technician", Some(crown)),
        ],
    )
    .await;
    let sue_id = ids["sue"].clone();
    let dir = tmp.path().join("hub");
    let hub = hub_with_roster(&central, anchor, &dir).await;
    let held = hub.store().held_roster().unwrap().unwrap();
    assert_eq!(held.roster.venue, anchor);
    let mut names: Vec<&str> = held
        .roster
        .users
        .iter()
        .map(|u| u.username.as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["ada", "sue"],
        "the Crown's technician is not on The Anchor's roster"
    );
    assert!(
        held.roster
            .users
            .iter()
            .all(|u| u.password_hash.starts_with("$argon2"))
    );
    let first = held.roster.version;

    // Disabled at central: the hub holds a newer roster that says so.
    let (status, body) = central
        .admin(
            "PATCH",
            &format!("/api/v1/users/{sue_id}"),
            Some(&json!({ "disabled": true })),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let newer = eventually(WAIT, || {
        hub.store()
            .held_roster()
            .ok()
            .flatten()
            .filter(|h| h.roster.version > first)
    })
    .await
    .unwrap();
    assert!(newer.roster.user("SUE").is_some_and(|u| u.disabled));
    assert_eq!(
        newer.roster.previous.as_deref(),
        Some(taplink_sync_proto::roster::body_hash(&held.signed.body).as_str()),
        "each roster names the one it replaces"
    );
    hub.shutdown().await.unwrap();
}

/// Sign in at the hub's LAN API: the session cookie and CSRF token, or the status.
async fn hub_sign_in(
    client: &reqwest::Client,
    hub: &str,
    username: &str,
) -> Result<(String, String), u16> {
    let answer = client
        .post(format!("{hub}/api/v1/auth/login"))
        .json(&json!({ "username": username, "password": "correct horse battery" }))
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let cookie = answer
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    let body: serde_json::Value = answer.json().await.unwrap_or_default();
    match (status, cookie) {
        (200, Some(cookie)) => Ok((cookie, body["csrf_token"].as_str().unwrap().to_owned())),
        _ => Err(status),
    }
}

/// An operation at the hub as a signed-in person.
async fn hub_op(
    client: &reqwest::Client,
    hub: &str,
    (cookie, csrf): &(String, String),
    op: &serde_json::Value,
) -> u16 {
    client
        .post(format!("{hub}/api/v1/venue/ops"))
        .header(reqwest::header::COOKIE, cookie)
        .header("X-CSRF-Token", csrf)
        .json(op)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_sign_in_at_the_hub_with_their_central_password_even_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let central = CentralNode::start(&tmp.path().join("central"))
        .await
        .unwrap();
    let anchor = central.create_venue("The Anchor", "Europe/London").unwrap();
    let crown = central.create_venue("The Crown", "Europe/London").unwrap();
    let ids = people(
        &central,
        &[
            ("sue", "store_staff", Some(anchor)),
            ("vic", "viewer", Some(anchor)),
            ("tom", "technician", Some(crown)),
        ],
    )
    .await;
    let dir = tmp.path().join("hub");
    let hub = hub_with_roster(&central, anchor, &dir).await;
    let base = format!("http://{}", hub.http_addr());
    let client = taplink_simulations::bench::http_client(None).unwrap();

    // Sue signs in with her central password and edits; the change carries her id.
    let sue = hub_sign_in(&client, &base, "Sue")
        .await
        .expect("sue signs in");
    let venue = client
        .get(format!("{base}/api/v1/venue"))
        .header(reqwest::header::COOKIE, &sue.0)
        .send()
        .await
        .unwrap();
    assert_eq!(venue.status().as_u16(), 200);
    let playlist = taplink_sync_proto::ids::PlaylistId::random();
    let create =
        json!({ "op": "create_playlist", "id": playlist.to_string(), "name": "Sue's list" });
    assert_eq!(hub_op(&client, &base, &sue, &create).await, 200);
    // A write without the CSRF token is refused.
    let no_csrf = client
        .post(format!("{base}/api/v1/venue/ops"))
        .header(reqwest::header::COOKIE, &sue.0)
        .json(&create)
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status().as_u16(), 403);
    // A viewer reads but does not write; the Crown's technician cannot sign in here.
    let vic = hub_sign_in(&client, &base, "vic")
        .await
        .expect("vic signs in");
    let rename = json!({ "op": "rename_playlist", "id": playlist.to_string(), "name": "Vic's" });
    assert_eq!(hub_op(&client, &base, &vic, &rename).await, 403);
    assert_eq!(hub_sign_in(&client, &base, "tom").await.unwrap_err(), 401);
    // Central's audit log names Sue for her change, unflagged.
    let sue_id = ids["sue"].clone();
    let audit = eventually(WAIT, || {
        let state = central.central.state();
        let entries = state
            .registry
            .list_audit(&taplink_central::store::AuditQuery {
                venue: Some(anchor),
                venues: None,
                actor: Some(format!("user:{sue_id}")),
                from_ms: None,
                to_ms: None,
                before_seq: None,
                limit: 100,
            })
            .ok()?;
        entries.into_iter().find(|e| e.origin.starts_with("hub:"))
    })
    .await
    .unwrap();
    assert!(audit.flag.is_none(), "{audit:?}");

    // Vic is disabled at central: the next roster ends the session Vic has open.
    let vic_id = ids["vic"].clone();
    let (status, body) = central
        .admin(
            "PATCH",
            &format!("/api/v1/users/{vic_id}"),
            Some(&json!({ "disabled": true })),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let (client2, base2, cookie) = (client.clone(), base.clone(), vic.0.clone());
    let mut refused = false;
    for _ in 0..200 {
        let status = client2
            .get(format!("{base2}/api/v1/venue"))
            .header(reqwest::header::COOKIE, &cookie)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        refused,
        "a disabled person's open session ended within 20 s"
    );
    assert_eq!(hub_sign_in(&client, &base, "vic").await.unwrap_err(), 401);

    // Central goes away; the hub restarts offline; Sue still signs in.
    hub.shutdown().await.unwrap();
    central.central.shutdown().await.unwrap();
    let hub = start_hub(&dir, None).await.unwrap();
    let base = format!("http://{}", hub.http_addr());
    let again = hub_sign_in(&client, &base, "sue").await;
    assert!(again.is_ok(), "{again:?}");
    // Her offline edit is on the sync panel's list until central acknowledges it.
    let sue = again.unwrap();
    let rename = json!({ "op": "rename_playlist", "id": playlist.to_string(), "name": "Offline" });
    assert_eq!(hub_op(&client, &base, &sue, &rename).await, 200);
    let status: serde_json::Value = client
        .get(format!("{base}/api/v1/status"))
        .header(reqwest::header::COOKIE, &sue.0)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["central"], "disconnected", "{status}");
    assert!(status["since"].is_string(), "{status}");
    assert_eq!(status["unacknowledged"]["count"], 1, "{status}");
    assert_eq!(
        status["unacknowledged"]["changes"][0]["by"]["id"],
        json!(sue_id),
        "{status}"
    );
    assert!(
        status["roster"]["version"].as_u64().is_some_and(|v| v >= 2),
        "{status}"
    );
    hub.shutdown().await.unwrap();

    // With a policy of one second of trust after the last contact, the roster stops signing
    // people in once that has passed (the hub is still offline).
    let mut config = taplink_edge_hub::Config::load(&dir).unwrap();
    config.roster_valid_offline_s = Some(1);
    config.save().unwrap();
    let hub = start_hub(&dir, None).await.unwrap();
    let base = format!("http://{}", hub.http_addr());
    let mut refused = false;
    for _ in 0..100 {
        if hub_sign_in(&client, &base, "sue").await == Err(401) {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        refused,
        "a roster past roster_valid_offline_s still signed people in"
    );
    hub.shutdown().await.unwrap();
}

/// A caller of the matrix: its letter, its session (if signed in), whether it may.
type Caller<'a> = (char, Option<&'a (String, String)>, bool);

/// Who may use each staff route of the hub, signed in with a central account: `S`tore
/// staff, `T`echnician, `V`iewer of the venue (a staff token made on the device may use
/// them all; anonymous callers, disabled people and other venues' people none).
const HUB_EXPECTED: &[(&str, &str, &str)] = &[
    ("GET", "/api/v1/status", "STV"),
    ("GET", "/api/v1/auth/me", "STV"),
    ("GET", "/api/v1/venue", "STV"),
    ("GET", "/api/v1/media/{hash}", "STV"),
    ("POST", "/api/v1/venue/ops", "S"),
    ("PUT", "/api/v1/media", "S"),
    ("POST", "/api/v1/pairings/approve", "T"),
    ("DELETE", "/api/v1/kiosks/{kiosk}/token", "T"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hub_staff_route_every_kind_of_person_as_the_matrix_says() {
    let tmp = tempfile::tempdir().unwrap();
    let central = CentralNode::start(&tmp.path().join("central"))
        .await
        .unwrap();
    let anchor = central.create_venue("The Anchor", "Europe/London").unwrap();
    let crown = central.create_venue("The Crown", "Europe/London").unwrap();
    let ids = people(
        &central,
        &[
            ("sue", "store_staff", Some(anchor)),
            ("tess", "technician", Some(anchor)),
            ("vic", "viewer", Some(anchor)),
            ("dan", "store_staff", Some(anchor)),
            ("tom", "store_staff", Some(crown)),
        ],
    )
    .await;
    let disabled_id = ids["dan"].clone();
    let dir = tmp.path().join("hub");
    let hub = hub_with_roster(&central, anchor, &dir).await;
    let staff_token = taplink_simulations::mesh::staff_token(&dir).unwrap();
    let base = format!("http://{}", hub.http_addr());
    let client = taplink_simulations::bench::http_client(None).unwrap();
    let mut sessions = std::collections::BTreeMap::new();
    for (letter, name) in [('S', "sue"), ('T', "tess"), ('V', "vic"), ('D', "dan")] {
        sessions.insert(letter, hub_sign_in(&client, &base, name).await.unwrap());
    }
    assert_eq!(hub_sign_in(&client, &base, "tom").await.unwrap_err(), 401);
    // Dan is disabled at central after signing in: his session must stop working.
    let (status, _) = central
        .admin(
            "PATCH",
            &format!("/api/v1/users/{disabled_id}"),
            Some(&json!({ "disabled": true })),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    eventually(WAIT, || {
        hub.store()
            .held_roster()
            .ok()
            .flatten()
            .filter(|h| h.roster.user("dan").is_some_and(|u| u.disabled))
    })
    .await
    .unwrap();

    let media = taplink_sync_proto::ids::MediaHash::of(b"nothing here");
    let kiosk = KioskId::random();
    let mut failures = Vec::new();
    for (method, template, who) in HUB_EXPECTED {
        let path = template
            .replace("{hash}", &media.to_string())
            .replace("{kiosk}", &kiosk.to_string());
        let callers: Vec<Caller<'_>> = vec![
            ('S', sessions.get(&'S'), who.contains('S')),
            ('T', sessions.get(&'T'), who.contains('T')),
            ('V', sessions.get(&'V'), who.contains('V')),
            ('D', sessions.get(&'D'), false),
            ('A', None, false),
            ('K', None, true),
        ];
        for (letter, session, allowed) in callers {
            let mut req = client.request(method.parse().unwrap(), format!("{base}{path}"));
            if letter == 'K' {
                req = req.header("Authorization", format!("Bearer {staff_token}"));
            }
            if let Some((cookie, csrf)) = session {
                req = req
                    .header(reqwest::header::COOKIE, cookie)
                    .header("X-CSRF-Token", csrf);
            }
            req = match *template {
                "/api/v1/venue/ops" => {
                    req.json(&json!({ "op": "create_playlist",
                    "id": taplink_sync_proto::ids::PlaylistId::random().to_string(), "name": "x" }))
                }
                "/api/v1/pairings/approve" => req.json(&json!({ "code": "ABC-DEF", "name": "x" })),
                "/api/v1/media" => req
                    .query(&[("name", "x.png")])
                    .header("Content-Type", "image/png")
                    .body(b"\x89PNG\r\n\x1a\n not really".to_vec()),
                _ => req,
            };
            let status = req.send().await.unwrap().status().as_u16();
            let refused = status == 401 || status == 403;
            if refused == allowed {
                failures.push(format!("{letter} {method} {template}: {status}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "wrong answers:\n{}",
        failures.join("\n")
    );
    hub.shutdown().await.unwrap();
}
