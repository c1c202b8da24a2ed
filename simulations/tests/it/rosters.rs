//! Venue rosters from a real central to a real hub over QUIC: the hub holds its venue's
//! signed roster (the users whose scope covers the venue, admins included, nobody else's),
//! and a user disabled at central reaches the hub as a newer roster at once.

use std::time::Duration;

use serde_json::json;
use taplink_simulations::mesh::{CentralNode, enroll_hub, eventually, start_hub};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_holds_its_venues_signed_roster_and_follows_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let central = CentralNode::start(&tmp.path().join("central"))
        .await
        .unwrap();
    let anchor = central.create_venue("The Anchor", "Europe/London").unwrap();
    let crown = central.create_venue("The Crown", "Europe/London").unwrap();
    let mut sue_id = String::new();
    for (name, role, venue) in [
        ("ada", "admin", None),
        ("sue", "store_staff", Some(anchor)),
        ("tom", "technician", Some(crown)),
    ] {
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
        if name == "sue" {
            sue_id = body["id"].as_str().unwrap().to_owned();
        }
    }
    let dir = tmp.path().join("hub");
    enroll_hub(
        &dir,
        central.quic_addr(),
        &central.enrollment_token(anchor).unwrap(),
    )
    .await
    .unwrap();
    let hub = start_hub(&dir, None).await.unwrap();
    let held = eventually(WAIT, || hub.store().held_roster().ok().flatten())
        .await
        .unwrap();
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
