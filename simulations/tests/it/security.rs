//! The mesh against hostile peers (docs/security.md): kiosks that pin their hub's HTTPS
//! certificate and refuse any other, central refusing forged and foreign telemetry, and
//! central's media quota per venue.

use std::time::Duration;

use taplink_kiosk::Kiosk;
use taplink_kiosk::state::Phase;
use taplink_simulations::mesh::{
    CentralNode, Target, approve_pairing, eventually, http, http_with, staff_token, start_hub,
    test_kiosk_config,
};
use taplink_sync_proto::doc;
use taplink_sync_proto::ids::{ItemId, KioskId, MediaHash, PlaylistId};
use taplink_sync_proto::wire::{Heartbeat, ProofOfPlay, TelemetryEvent, TelemetryKind};

const WAIT: Duration = Duration::from_secs(30);

fn code_of(k: &Kiosk) -> Option<String> {
    match k.status().phase {
        Phase::Pairing { code, .. } => Some(code),
        _ => None,
    }
}

/// A counter from a hub's `/metrics` (plain, as the test reads it from its own process).
async fn hub_metric(hub: &taplink_edge_hub::Hub, name: &str) -> u64 {
    let (_, body) = http(Target::of(hub), "GET", "/metrics", b"").await.unwrap();
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} not in the hub's metrics"))
}

/// Enroll a hub for `venue` in `dir` serving HTTPS (not the lab's plain HTTP).
async fn enroll_tls_hub(
    central: &CentralNode,
    venue: taplink_sync_proto::ids::VenueId,
    dir: &std::path::Path,
) {
    central.enroll(venue, dir).await.unwrap();
    let mut config = taplink_edge_hub::Config::load(dir).unwrap();
    config.http_plain = false;
    config.save().unwrap();
}

fn tls_kiosk_config(dir: &std::path::Path, hub: std::net::SocketAddr) -> taplink_kiosk::Config {
    let mut config = test_kiosk_config(dir, hub);
    config.hub_plain_http = false;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kiosks_pin_the_hubs_certificate_and_refuse_any_other() {
    let tmp = tempfile::tempdir().unwrap();
    let central = CentralNode::start(&tmp.path().join("central"))
        .await
        .unwrap();
    let venue = central.create_venue("The Anchor", "Europe/London").unwrap();
    let hub_dir = tmp.path().join("hub");
    enroll_tls_hub(&central, venue, &hub_dir).await;
    let staff = staff_token(&hub_dir).unwrap();
    let hub = start_hub(&hub_dir, None).await.unwrap();
    let addr = hub.http_addr();
    let fp = hub.fingerprint().unwrap();
    assert!(hub.url().starts_with("https://"));
    eventually(WAIT, || taplink_simulations::mesh::hub_venue_doc(&hub))
        .await
        .unwrap();

    let (status, body) = http(Target::of(&hub), "GET", "/healthz", b"")
        .await
        .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    // Plain HTTP gets no answer from an HTTPS hub.
    assert!(http(addr, "GET", "/healthz", b"").await.is_err());

    // A kiosk told another fingerprint never talks to this hub: no pairing code.
    let mut wrong = tls_kiosk_config(&tmp.path().join("wrong"), addr);
    wrong.hub_fingerprint = Some(central.central.state().pki.server_fingerprint.to_string());
    let wrong = Kiosk::bind(wrong).await.unwrap();
    // A kiosk given the right one pairs, and one given no fingerprint trusts the first
    // certificate it sees and pins it when it pairs.
    let mut right = tls_kiosk_config(&tmp.path().join("right"), addr);
    right.hub_fingerprint = Some(fp.to_string());
    let right = Kiosk::bind(right).await.unwrap();
    let first_use = Kiosk::bind(tls_kiosk_config(&tmp.path().join("tofu"), addr))
        .await
        .unwrap();
    for (k, name) in [(&right, "Bar screen"), (&first_use, "Door screen")] {
        let code = eventually(WAIT, || code_of(k))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}: {:?}", k.status()));
        approve_pairing(Target::of(&hub), &staff, &code, name)
            .await
            .unwrap();
        eventually(WAIT, || k.is_paired().then_some(()))
            .await
            .unwrap();
        eventually(WAIT, || k.status().manifest.map(drop))
            .await
            .unwrap();
    }
    eventually(WAIT, || (!wrong.status().hub_reachable).then_some(()))
        .await
        .unwrap_or_else(|e| panic!("{e}: {:?}", wrong.status()));
    assert!(
        hub_metric(&hub, "taplink_hub_http_tls_handshakes_failed_total ").await >= 1,
        "the kiosk with the wrong pin hung up in the handshake"
    );
    assert_eq!(code_of(&wrong), None, "it never got a pairing code");

    // The hub is replaced by an impostor on the same address: another hub, with a
    // certificate from the same CA, even of the same venue. The paired kiosks refuse it in
    // the handshake, so their device tokens never reach it, and they stay paired.
    hub.shutdown().await.unwrap();
    let impostor_dir = tmp.path().join("impostor");
    enroll_tls_hub(&central, venue, &impostor_dir).await;
    let mut config = taplink_edge_hub::Config::load(&impostor_dir).unwrap();
    config.http_listen = addr;
    config.save().unwrap();
    let impostor = start_hub(&impostor_dir, None).await.unwrap();
    // Both keep trying, and hang up in every handshake.
    tokio::time::timeout(WAIT, async {
        while hub_metric(&impostor, "taplink_hub_http_tls_handshakes_failed_total ").await < 4 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the pinned kiosks never tried the impostor");
    // (Four failed handshakes may all be one kiosk's; wait for both to report it.)
    eventually(WAIT, || {
        (!right.status().hub_reachable && !first_use.status().hub_reachable).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?} {:?}", right.status(), first_use.status()));
    let (_, metrics) = http(Target::of(&impostor), "GET", "/metrics", b"")
        .await
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&metrics).contains("kind=\"device_token\""),
        "no device token reached the impostor"
    );
    assert!(right.is_paired() && first_use.is_paired());
    impostor.shutdown().await.unwrap();
    for k in [wrong, right, first_use] {
        k.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn central_refuses_telemetry_for_foreign_kiosks_and_impossible_times() {
    let tmp = tempfile::tempdir().unwrap();
    let central = CentralNode::start(&tmp.path().join("central"))
        .await
        .unwrap();
    let venue = central.create_venue("The Anchor", "Europe/London").unwrap();
    let other = central.create_venue("The Crown", "Europe/Berlin").unwrap();
    let ours = KioskId::random();
    let theirs = KioskId::random();
    central
        .edit_venue(venue, |am| doc::add_kiosk(am, ours, "Bar"))
        .unwrap();
    central
        .edit_venue(other, |am| doc::add_kiosk(am, theirs, "Crown bar"))
        .unwrap();
    let dir = tmp.path().join("hub");
    central.enroll(venue, &dir).await.unwrap();
    let hub = start_hub(&dir, None).await.unwrap();
    eventually(WAIT, || {
        taplink_simulations::mesh::hub_venue_doc(&hub).filter(|d| d.kiosks.contains_key(&ours))
    })
    .await
    .unwrap();

    // A compromised hub puts whatever it likes in its outbox.
    let now_ms = taplink_sync_proto::clock::Clock::now(&taplink_sync_proto::clock::SystemClock)
        .timestamp_millis();
    let heartbeat = || {
        TelemetryKind::Heartbeat(Heartbeat {
            on_screen: None,
            manifest_version: "v".into(),
            disk_free_bytes: 1,
            temperature_mc: None,
            uptime_s: 1,
            software: "forged".into(),
        })
    };
    let play = |duration_ms| {
        TelemetryKind::ProofOfPlay(ProofOfPlay {
            playlist: PlaylistId::random(),
            item: ItemId::random(),
            media: MediaHash::of(b"x"),
            started_ms: now_ms - 1000,
            duration_ms,
        })
    };
    let event = |n: u8, kiosk, at_ms, kind| TelemetryEvent {
        id: [n; 16],
        kiosk,
        at_ms,
        kind,
    };
    let events = [
        event(1, Some(ours), now_ms, heartbeat()),
        event(2, Some(ours), now_ms, play(5_000)),
        event(3, None, now_ms, heartbeat()),
        // Refused: a kiosk of another venue, one of no venue, a time before the epoch, a
        // year in the future, and a showing of eleven days.
        event(4, Some(theirs), now_ms, heartbeat()),
        event(5, Some(KioskId::random()), now_ms, heartbeat()),
        event(6, Some(ours), -5, heartbeat()),
        event(7, Some(ours), now_ms + 365 * 86_400_000, heartbeat()),
        event(8, Some(ours), now_ms, play(999_999_999)),
    ];
    hub.push_telemetry(&events).unwrap();
    eventually(WAIT, || {
        (hub.outbox().pending().unwrap() == 0).then_some(())
    })
    .await
    .unwrap();
    let state = central.central.state();
    assert_eq!(state.registry.telemetry_count().unwrap(), 3);
    assert_eq!(state.metrics.telemetry_refused.get(), 5);
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn central_keeps_a_venues_media_within_its_quota() {
    let tmp = tempfile::tempdir().unwrap();
    let central = CentralNode::start_with(&tmp.path().join("central"), |c| {
        c.venue_media_quota_bytes = 1_000_000;
    })
    .await
    .unwrap();
    let venue = central.create_venue("The Anchor", "Europe/London").unwrap();
    let dir = tmp.path().join("hub");
    central.enroll(venue, &dir).await.unwrap();
    let staff = staff_token(&dir).unwrap();
    let hub = start_hub(&dir, None).await.unwrap();
    eventually(WAIT, || taplink_simulations::mesh::hub_venue_doc(&hub))
        .await
        .unwrap();
    let auth = format!("Bearer {staff}");
    let mut hashes = Vec::new();
    for seed in [3u8, 5] {
        let mut png: Vec<u8> = (0..700_000u32)
            .map(|i| (i as u8).wrapping_mul(seed))
            .collect();
        png[..8].copy_from_slice(b"\x89PNG\r\n\x1a\n");
        let (status, body) = http_with(
            hub.http_addr(),
            "PUT",
            &format!("/api/v1/media?name=p{seed}.png"),
            &[("Authorization", &auth), ("Content-Type", "image/png")],
            &png,
        )
        .await
        .unwrap();
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
        hashes.push(MediaHash::of(&png));
    }
    let state = central.central.state();
    // Central learns of both, fetches the first, and not the second, which would pass the
    // quota (checked again after a few fetch passes: absence cannot be waited for).
    eventually(WAIT, || {
        let doc = central.venue_doc(venue).ok()?;
        (doc.media.len() == 2 && state.blobs.has(&hashes[0]).unwrap_or(false)).then_some(())
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!state.blobs.has(&hashes[1]).unwrap());
    assert_eq!(state.blobs.list().unwrap().len(), 1);
    hub.shutdown().await.unwrap();
}
