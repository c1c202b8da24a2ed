//! Real kiosk agents against a real hub (and central), in one process on loopback: pairing,
//! content, change propagation, telemetry, playing on with the hub gone, and revocation.

use std::net::SocketAddr;
use std::time::Duration;

use taplink_kiosk::Kiosk;
use taplink_kiosk::state::Phase;
use taplink_simulations::demo::furnish;
use taplink_simulations::mesh::{
    CentralNode, approve_pairing, enroll_hub, eventually, http, staff_http, staff_token, start_hub,
    test_kiosk_config,
};
use taplink_sync_proto::doc;
use taplink_sync_proto::ids::{ItemId, KioskId};

const WAIT: Duration = Duration::from_secs(30);

async fn kiosk(dir: &std::path::Path, hub: SocketAddr) -> Kiosk {
    let mut config = test_kiosk_config(dir, hub);
    config.heartbeat_interval_s = 1;
    Kiosk::bind(config).await.unwrap()
}

fn code_of(k: &Kiosk) -> Option<String> {
    match k.status().phase {
        Phase::Pairing { code, .. } => Some(code),
        _ => None,
    }
}

fn paired(k: &Kiosk) -> Option<KioskId> {
    match k.status().phase {
        Phase::Paired { kiosk, .. } => Some(kiosk),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kiosks_pair_play_follow_changes_report_and_survive_the_hub_going_away() {
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
    let api = hub.http_addr();
    // The hub has the venue's media before kiosks ask for it.
    eventually(WAIT, || {
        media
            .iter()
            .all(|h| hub.blobs().has(h).unwrap_or(false))
            .then_some(())
    })
    .await
    .unwrap();

    // Two kiosks show pairing codes; staff approve them on the hub.
    let k1 = kiosk(&tmp.path().join("k1"), api).await;
    let k2 = kiosk(&tmp.path().join("k2"), api).await;
    for (k, name) in [(&k1, "Bar screen"), (&k2, "Door screen")] {
        let code = eventually(WAIT, || code_of(k)).await.unwrap();
        approve_pairing(api, &staff, &code, name).await.unwrap();
    }
    let id1 = eventually(WAIT, || paired(&k1)).await.unwrap();
    eventually(WAIT, || paired(&k2)).await.unwrap();
    // The hub put them in the venue document, and central learned of them.
    eventually(WAIT, || {
        central
            .venue_doc(venue)
            .ok()
            .filter(|d| d.kiosks.len() == 2)
    })
    .await
    .unwrap();
    assert_eq!(
        central.venue_doc(venue).unwrap().kiosks[&id1].name,
        "Bar screen"
    );

    // Each kiosk gets its manifest and caches every file it needs.
    for k in [&k1, &k2] {
        eventually(WAIT, || {
            let s = k.status();
            let manifest = s.manifest?;
            (manifest.media.len() == media.len()
                && manifest.media.iter().all(|h| s.ready.contains_key(h)))
            .then_some(())
        })
        .await
        .unwrap();
    }
    // The player page's state has what to play, from the kiosk's own server.
    let (status, state) = http(k1.player_addr(), "GET", "/player/state", b"")
        .await
        .unwrap();
    assert_eq!(status, 200);
    let state: serde_json::Value = serde_json::from_slice(&state).unwrap();
    assert!(
        !state["manifest"]["now"].as_array().unwrap().is_empty(),
        "{state}"
    );

    // An edit at central reaches the screens: a new item appears in their manifests.
    let before = k1.status().manifest.unwrap().version.clone();
    let playlist = central
        .venue_doc(venue)
        .unwrap()
        .settings
        .default_playlist
        .unwrap();
    central
        .edit_venue(venue, |am| {
            doc::insert_item(
                am,
                playlist,
                ItemId::random(),
                doc::Placement::Front,
                media[1],
                5_000,
                None,
            )
        })
        .unwrap();
    eventually(WAIT, || {
        k1.status().manifest.filter(|m| m.version != before)
    })
    .await
    .unwrap();

    // Heartbeats travel kiosk → hub → central.
    let state = central.central.state();
    eventually(WAIT, || {
        (state.registry.telemetry_count().unwrap() >= 2).then_some(())
    })
    .await
    .unwrap();

    // The hub goes away: the kiosk keeps serving its page, state and media from its cache.
    hub.shutdown().await.unwrap();
    for h in &media {
        let (status, body) = http(k2.player_addr(), "GET", &format!("/media/{h}"), b"")
            .await
            .unwrap();
        assert_eq!(status, 200);
        assert_eq!(taplink_sync_proto::ids::MediaHash::of(&body), *h);
    }
    let (status, page) = http(k2.player_addr(), "GET", "/", b"").await.unwrap();
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&page).contains("<html"));
    assert!(k2.status().manifest.is_some());

    // Back again on the same data directory: revoking a kiosk sends it back to pairing.
    let hub = start_hub(&hub_dir, None).await.unwrap();
    let api = hub.http_addr();
    let revoke = format!("/api/v1/kiosks/{id1}/token");
    let (status, _) = http(api, "DELETE", &revoke, b"").await.unwrap();
    assert_eq!(status, 401, "staff only");
    let (status, _) = staff_http(api, &staff, "DELETE", &revoke, b"")
        .await
        .unwrap();
    assert_eq!(status, 204);
    // k1 still talks to the old port; a restart on the new address shows the effect.
    k1.shutdown().await.unwrap();
    let k1 = kiosk(&tmp.path().join("k1"), api).await;
    eventually(WAIT, || code_of(&k1)).await.unwrap();
    k1.shutdown().await.unwrap();
    k2.shutdown().await.unwrap();
    hub.shutdown().await.unwrap();
    central.central.shutdown().await.unwrap();
}
