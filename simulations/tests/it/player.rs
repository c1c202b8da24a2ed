//! The kiosk's player page in headless Chromium (Debian's `chromium`), against a real kiosk
//! agent paired with a real hub: it shows the current item, advances to the next one, and
//! keeps doing so with the hub stopped. A screenshot is kept in
//! `target/test-artefacts/player.png`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use taplink_kiosk::state::Phase;
use taplink_kiosk::{Config as KioskConfig, Kiosk};
use taplink_simulations::demo::slide;
use taplink_simulations::mesh::{CentralNode, enroll_hub, eventually, http, start_hub};
use taplink_sync_proto::doc::{self, MediaMeta, Placement};
use taplink_sync_proto::ids::{ItemId, MediaHash, PlaylistId};

const WAIT: Duration = Duration::from_secs(30);
const CHROMIUM: &str = "/usr/bin/chromium";

/// Run headless Chromium on `url` for `budget_ms` of virtual time, with `extra` arguments
/// (`--dump-dom` or `--screenshot=…`); returns stdout.
fn chromium(url: &str, budget_ms: u64, extra: &[&str], profile: &Path) -> String {
    let out = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--force-prefers-reduced-motion",
            "--window-size=1280,720",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .args(extra)
        .arg(url)
        .output()
        .expect("chromium runs (scripts/test.sh installs Debian's chromium)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The media the page says is on screen after `budget_ms`.
fn showing(url: &str, budget_ms: u64, profile: &Path) -> Option<String> {
    let dom = chromium(url, budget_ms, &["--dump-dom"], profile);
    let at = dom.find("data-showing=\"")? + "data-showing=\"".len();
    Some(dom[at..at + 64].to_owned())
}

fn artefact_dir() -> PathBuf {
    // CARGO_TARGET_DIR or the workspace's target/.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("test-artefacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_player_page_renders_advances_and_keeps_playing_without_the_hub() {
    let tmp = tempfile::tempdir().unwrap();
    let central = CentralNode::start(&tmp.path().join("central"))
        .await
        .unwrap();
    let venue = central.create_venue("The Anchor", "Europe/London").unwrap();
    // Two slides of 1.5 s each, always on.
    let playlist = PlaylistId::random();
    central
        .edit_venue(venue, |am| doc::create_playlist(am, playlist, "Test loop"))
        .unwrap();
    let mut hashes: Vec<MediaHash> = Vec::new();
    for (title, colour) in [("First slide", "#0b3d91"), ("Second slide", "#7a1f3d")] {
        let bytes = slide(title, "player test", colour);
        let hash = central.central.state().blobs.put(&bytes).unwrap();
        let meta = MediaMeta {
            name: format!("{title}.svg"),
            content_type: "image/svg+xml".into(),
            size: bytes.len() as u64,
        };
        central
            .edit_venue(venue, |am| doc::add_media(am, hash, &meta))
            .unwrap();
        central
            .edit_venue(venue, |am| {
                doc::insert_item(
                    am,
                    playlist,
                    ItemId::random(),
                    Placement::End,
                    hash,
                    1_500,
                    None,
                )
            })
            .unwrap();
        hashes.push(hash);
    }
    central
        .edit_venue(venue, |am| doc::set_default_playlist(am, Some(playlist)))
        .unwrap();
    let hub_dir = tmp.path().join("hub");
    enroll_hub(
        &hub_dir,
        central.quic_addr(),
        &central.enrollment_token(venue).unwrap(),
    )
    .await
    .unwrap();
    let hub = start_hub(&hub_dir, None).await.unwrap();

    let mut config = KioskConfig::new(tmp.path().join("kiosk"));
    config.hub = Some(hub.http_addr());
    config.player_listen = "127.0.0.1:0".parse().unwrap();
    config.pairing_poll_ms = 100;
    config.manifest_wait_s = 5;
    let kiosk = Kiosk::bind(config).await.unwrap();
    let code = eventually(WAIT, || match kiosk.status().phase {
        Phase::Pairing { code, .. } => Some(code),
        _ => None,
    })
    .await
    .unwrap();
    let body = serde_json::json!({ "code": code, "name": "Bar screen" }).to_string();
    let (status, _) = http(
        hub.http_addr(),
        "POST",
        "/api/v1/pairings/approve",
        body.as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    eventually(WAIT, || {
        let s = kiosk.status();
        hashes.iter().all(|h| s.ready.contains_key(h)).then_some(())
    })
    .await
    .unwrap();

    let url = format!("http://{}/", kiosk.player_addr());
    let profile = tmp.path().join("chromium");
    let (first, second) = (hashes[0].to_string(), hashes[1].to_string());
    let page = url.clone();
    let prof = profile.clone();
    let (early, later) = tokio::task::spawn_blocking(move || {
        (showing(&page, 1_000, &prof), showing(&page, 2_200, &prof))
    })
    .await
    .unwrap();
    assert_eq!(
        early.as_deref(),
        Some(first.as_str()),
        "the first item is on screen"
    );
    assert_eq!(
        later.as_deref(),
        Some(second.as_str()),
        "it advanced to the second item"
    );

    // The hub goes away: the page still renders and advances, from the agent's cache.
    hub.shutdown().await;
    let page = url.clone();
    let prof = profile.clone();
    let shot = artefact_dir().join("player.png");
    let shot_arg = format!("--screenshot={}", shot.display());
    let (early, later) = tokio::task::spawn_blocking(move || {
        let early = showing(&page, 1_000, &prof);
        let later = showing(&page, 2_200, &prof);
        chromium(&page, 1_000, &[&shot_arg], &prof);
        (early, later)
    })
    .await
    .unwrap();
    assert_eq!(
        early.as_deref(),
        Some(first.as_str()),
        "renders with the hub stopped"
    );
    assert_eq!(
        later.as_deref(),
        Some(second.as_str()),
        "advances with the hub stopped"
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot"
    );
    let _: SocketAddr = kiosk.player_addr();
    kiosk.shutdown().await;
    central.central.shutdown().await.unwrap();
}
