//! A change made through central's API (`POST /api/v1/venues/{id}/ops`) reaches a real
//! hub's document and a real kiosk's manifest, like any other edit; so does media uploaded
//! to central (`PUT /api/v1/media`), whose bytes the hub fetches.

use std::time::Duration;

use serde_json::json;
use taplink_kiosk::Kiosk;
use taplink_kiosk::state::Phase;
use taplink_simulations::demo::furnish;
use taplink_simulations::mesh::{
    CentralNode, approve_pairing, enroll_hub, eventually, http_with, hub_venue_doc, staff_http,
    staff_token, start_hub, test_kiosk_config,
};
use taplink_simulations::wan_proxy::WanProxy;
use taplink_sync_proto::clock::{Clock, SystemClock};
use taplink_sync_proto::ids::{ItemId, MediaHash, PlaylistId};
use taplink_sync_proto::note::{Author, ChangeNote, Via};
use taplink_sync_proto::wire::DocId;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_made_at_central_reaches_the_hub_and_the_kiosks_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let central = CentralNode::start(&tmp.path().join("central"))
        .await
        .unwrap();
    let venue = central.create_venue("The Anchor", "Europe/London").unwrap();
    let media = furnish(&central, venue, "The Anchor", "#0b3d91").unwrap();
    let hub_dir = tmp.path().join("hub");
    enroll_hub(
        &hub_dir,
        central.quic_addr(),
        &central.enrollment_token(venue).unwrap(),
    )
    .await
    .unwrap();
    let staff = staff_token(&hub_dir).unwrap();
    let hub = start_hub(&hub_dir, None).await.unwrap();
    eventually(WAIT, || hub_venue_doc(&hub)).await.unwrap();
    let kiosk = Kiosk::bind(test_kiosk_config(&tmp.path().join("k"), hub.http_addr()))
        .await
        .unwrap();
    let code = eventually(WAIT, || match kiosk.status().phase {
        Phase::Pairing { code, .. } => Some(code),
        _ => None,
    })
    .await
    .unwrap();
    approve_pairing(hub.http_addr(), &staff, &code, "Bar screen")
        .await
        .unwrap();
    let before = eventually(WAIT, || kiosk.status().manifest)
        .await
        .unwrap()
        .version
        .clone();

    // Through central's API, as an admin would: one new item at the front of the default
    // playlist.
    let playlist = central
        .venue_doc(venue)
        .unwrap()
        .settings
        .default_playlist
        .unwrap();
    let item = ItemId::random();
    let op = json!({
        "op": "insert_item",
        "playlist": playlist.to_string(),
        "item": item.to_string(),
        "at": "front",
        "media": media[0].to_string(),
        "duration_ms": 4000,
    });
    let (status, answer) = central
        .admin("POST", &format!("/api/v1/venues/{venue}/ops"), Some(&op))
        .await
        .unwrap();
    assert_eq!(status, 200, "{answer}");

    // The hub's document has it, and the kiosk's next manifest plays it.
    eventually(WAIT, || {
        hub_venue_doc(&hub).filter(|d| d.playlists[&playlist].items.contains_key(&item))
    })
    .await
    .unwrap();
    let manifest = eventually(WAIT, || {
        kiosk.status().manifest.filter(|m| m.version != before)
    })
    .await
    .unwrap();
    assert!(
        manifest.now.iter().any(|i| i.item == item),
        "the new item is not in the manifest: {manifest:?}"
    );

    // Media uploaded to central, over a real socket as a browser or curl would send it,
    // then shown by a new item: the hub fetches the bytes and the kiosk plays it.
    let mut png: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
    png[..8].copy_from_slice(b"\x89PNG\r\n\x1a\n");
    let hash = MediaHash::of(&png);
    let auth = format!("Bearer {}", central.admin_token);
    let (status, answer) = http_with(
        central.central.http_addr(),
        "PUT",
        &format!("/api/v1/media?name=special.png&venue={venue}"),
        &[("Authorization", &auth), ("Content-Type", "image/png")],
        &png,
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&answer));
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["hash"], hash.to_string());
    let special = ItemId::random();
    let op = json!({
        "op": "insert_item",
        "playlist": playlist.to_string(),
        "item": special.to_string(),
        "at": "front",
        "media": hash.to_string(),
        "duration_ms": 4000,
    });
    let (status, answer) = central
        .admin("POST", &format!("/api/v1/venues/{venue}/ops"), Some(&op))
        .await
        .unwrap();
    assert_eq!(status, 200, "{answer}");
    eventually(WAIT, || {
        hub.blobs().has(&hash).unwrap_or(false).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(
        hub_venue_doc(&hub).unwrap().media[&hash].name,
        "special.png"
    );
    eventually(WAIT, || {
        kiosk
            .status()
            .manifest
            .filter(|m| m.now.iter().any(|i| i.item == special))
    })
    .await
    .unwrap();
    kiosk.shutdown().await.unwrap();
    hub.shutdown().await.unwrap();
    central.central.shutdown().await.unwrap();
}

/// Changes made at a hub while its WAN is down reach central's audit log when the link
/// returns, attributed to the hub and to who made them, with the time they were made; a
/// change claiming a person the venue's roster does not allow is recorded and flagged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hubs_offline_changes_are_audited_with_their_author_and_time() {
    let tmp = tempfile::tempdir().unwrap();
    let central = CentralNode::start(&tmp.path().join("central"))
        .await
        .unwrap();
    let venue = central.create_venue("The Anchor", "Europe/London").unwrap();
    let elsewhere = central.create_venue("The Crown", "Europe/London").unwrap();
    let hub_dir = tmp.path().join("hub");
    let proxy = WanProxy::start("127.0.0.1:0".parse().unwrap(), central.quic_addr(), 7)
        .await
        .unwrap();
    enroll_hub(
        &hub_dir,
        central.quic_addr(),
        &central.enrollment_token(venue).unwrap(),
    )
    .await
    .unwrap();
    let staff = staff_token(&hub_dir).unwrap();
    let hub = start_hub(&hub_dir, Some(proxy.local_addr())).await.unwrap();
    eventually(WAIT, || hub_venue_doc(&hub)).await.unwrap();
    // A store_staff user of another venue: not on this venue's roster.
    let (status, outsider) = central
        .admin(
            "POST",
            "/api/v1/users",
            Some(&json!({"username": "outsider", "role": "store_staff",
                         "venues": [elsewhere.to_string()], "password": "a long enough secret"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{outsider}");
    let outsider = outsider["id"].as_str().unwrap().to_owned();

    proxy.cut();
    let playlist = PlaylistId::random();
    let op = json!({"op": "create_playlist", "id": playlist.to_string(), "name": "Offline"});
    let before_edit = SystemClock.now().timestamp_millis();
    let (status, answer) = staff_http(
        hub.http_addr(),
        &staff,
        "POST",
        "/api/v1/venue/ops",
        op.to_string().as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    // A change whose note claims the outsider, written by the hub itself.
    let note = ChangeNote::new(
        Author::User {
            id: outsider.clone(),
        },
        Via::Api,
        SystemClock.now().timestamp_millis(),
        json!({"op": "rename_playlist", "id": playlist.to_string(), "name": "Sneaky"}),
    );
    hub.docs()
        .edit_noted(DocId::Venue(venue), &note, |am| {
            taplink_sync_proto::doc::rename_playlist(am, playlist, "Sneaky")
        })
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.heal();

    let audit = || async {
        let (status, log) = central
            .admin("GET", &format!("/api/v1/audit?venue={venue}"), None)
            .await
            .unwrap();
        assert_eq!(status, 200, "{log}");
        log["entries"].as_array().unwrap().clone()
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    let entries = loop {
        let entries = audit().await;
        if entries
            .iter()
            .filter(|e| e["origin"].as_str().unwrap_or("").starts_with("hub:"))
            .count()
            >= 2
        {
            break entries;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "hub changes never audited: {entries:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let hub_origin = format!("hub:{}", hub.ids().hub);
    let made = entries
        .iter()
        .find(|e| e["detail"]["ops"]["name"] == "Offline")
        .expect("the staff edit is audited");
    assert_eq!(made["origin"], hub_origin.as_str(), "{made}");
    assert!(
        made["actor"].as_str().unwrap().starts_with("hub_staff:"),
        "{made}"
    );
    assert!(made["flag"].is_null(), "{made}");
    // The time it was made at the hub, not when central heard of it (1.5 s later).
    let at = chrono::DateTime::parse_from_rfc3339(made["at"].as_str().unwrap()).unwrap();
    let recorded =
        chrono::DateTime::parse_from_rfc3339(made["recorded_at"].as_str().unwrap()).unwrap();
    assert!(at.timestamp_millis() >= before_edit - 1, "{made}");
    assert!((recorded - at).num_milliseconds() >= 1000, "{made}");
    let sneaky = entries
        .iter()
        .find(|e| e["detail"]["ops"]["name"] == "Sneaky")
        .expect("the claimed change is audited");
    assert_eq!(sneaky["actor"], format!("user:{outsider}"));
    assert!(
        sneaky["flag"].as_str().unwrap().contains("roster"),
        "{sneaky}"
    );
    hub.shutdown().await.unwrap();
    proxy.shutdown().await;
    central.central.shutdown().await.unwrap();
}
