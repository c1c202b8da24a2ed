//! A paired kiosk restarted while its hub is down plays its last manifest from disk, from
//! its own cache, and keeps its undelivered events.

use std::time::Duration;

use taplink_kiosk::Kiosk;
use taplink_kiosk::hub::KioskEvent;
use taplink_kiosk::player::PlayerState;
use taplink_kiosk::state::{Phase, Shared};
use taplink_sync_proto::ids::MediaHash;
use taplink_sync_proto::wire::{ProofOfPlay, TelemetryKind};

use crate::{KIOSK, PLAYLIST, config, credentials, item, manifest};

#[tokio::test]
async fn a_restart_without_the_hub_plays_the_saved_manifest_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let image = b"a cached poster".to_vec();
    let m = {
        // The previous run: paired, a manifest, its media, one undelivered play.
        let shared = Shared::open(config(dir.path())).unwrap();
        shared.store.save_credentials(&credentials(), 1).unwrap();
        let hash = shared.blobs.put(&image).unwrap();
        let m = manifest(
            "v1",
            vec![item(1, hash, "image/png")],
            vec![item(2, MediaHash::of(b"never fetched"), "image/png")],
        );
        shared.store.save_manifest(&m, 2).unwrap();
        let played = KioskEvent {
            id: [5; 16],
            at_ms: 3,
            kind: TelemetryKind::ProofOfPlay(ProofOfPlay {
                playlist: PLAYLIST,
                item: m.now[0].item,
                media: hash,
                started_ms: 1,
                duration_ms: 2,
            }),
        };
        shared.store.push_events(&[played]).unwrap();
        m
    };
    let hash = m.now[0].media;

    let kiosk = Kiosk::bind(config(dir.path())).await.unwrap();
    let status = kiosk.status();
    assert_eq!(
        status.phase,
        Phase::Paired {
            kiosk: KIOSK,
            venue: None
        }
    );
    assert_eq!(status.manifest.as_deref(), Some(&m));
    assert_eq!(status.ready.keys().collect::<Vec<_>>(), vec![&hash]);

    // Through the real socket, as Chromium sees it.
    let base = format!("http://{}", kiosk.player_addr());
    let http = reqwest::Client::builder()
        .no_proxy()
        .use_preconfigured_tls(taplink_certs::tls::plain_http_client_config())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let state: PlayerState = http
        .get(format!("{base}/player/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((state.status.as_str(), state.manifest), ("paired", Some(m)));
    let bytes = http
        .get(format!("{base}/media/{hash}"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.as_ref(), image.as_slice());
    let first = kiosk.store().next_batch(10).unwrap().unwrap().events;
    assert_eq!(
        first[0].id, [5; 16],
        "the undelivered play is still buffered"
    );
    kiosk.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unpaired_kiosk_starts_with_nothing_to_play() {
    let dir = tempfile::tempdir().unwrap();
    let kiosk = Kiosk::bind(config(dir.path())).await.unwrap();
    assert!(!kiosk.is_paired());
    assert!(kiosk.status().manifest.is_none());
    // The database holding the token-to-be is private from the first start.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("kiosk.sqlite"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    kiosk.shutdown().await.unwrap();
}
