//! A change made through central's API (`POST /api/v1/venues/{id}/ops`) reaches a real
//! hub's document and a real kiosk's manifest, like any other edit; so does media uploaded
//! to central (`PUT /api/v1/media`), whose bytes the hub fetches.

use std::time::Duration;

use serde_json::json;
use taplink_kiosk::Kiosk;
use taplink_kiosk::state::Phase;
use taplink_simulations::demo::furnish;
use taplink_simulations::mesh::{
    CentralNode, approve_pairing, enroll_hub, eventually, http_with, hub_venue_doc, staff_token,
    start_hub, test_kiosk_config,
};
use taplink_sync_proto::ids::{ItemId, MediaHash};

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
