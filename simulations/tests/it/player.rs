//! The kiosk's player page in headless Chromium (Debian's `chromium`), against a real kiosk
//! agent paired with a real hub: it shows the current item, advances to the next one, and
//! keeps doing so with the hub stopped; and it plays a video (a committed WebM fixture) and
//! moves on after it. Screenshots are kept in `target/test-artefacts/` (`player.png`,
//! `player-video.png`).
//!
//! Chromium runs with virtual time (`--virtual-time-budget`, which also waits for network
//! fetches): each run loads the page afresh and reports what it shows after that much page
//! time, so the checks follow the page's clock rather than the wall clock.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use taplink_edge_hub::Hub;
use taplink_kiosk::Kiosk;
use taplink_kiosk::state::Phase;
use taplink_simulations::demo::{SAMPLE_VIDEO, slide};
use taplink_simulations::mesh::{
    CentralNode, approve_pairing, enroll_hub, eventually, staff_token, start_hub, test_kiosk_config,
};
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
    showing_in(&chromium(url, budget_ms, &["--dump-dom"], profile))
}

/// The media a dumped page says is on screen.
fn showing_in(dom: &str) -> Option<String> {
    let at = dom.find("data-showing=\"")? + "data-showing=\"".len();
    Some(dom[at..at + 64].to_owned())
}

/// A `<video>` element in a dumped page, as the page marks it.
#[derive(Debug)]
struct VideoSeen {
    /// Its media hash (`data-media`).
    media: String,
    /// Whether it is the element on screen (class `on`).
    on: bool,
    /// `HTMLMediaElement.readyState` (`data-ready-state`): 2 or more means it has the
    /// current frame.
    ready_state: u8,
    /// `currentTime` in ms (`data-position-ms`).
    position_ms: u64,
}

/// The first `<video>` element of a dumped page.
fn video_in(dom: &str) -> Option<VideoSeen> {
    let start = dom.find("<video")?;
    let tag = &dom[start..start + dom[start..].find('>')?];
    let attr = |name: &str| -> Option<&str> {
        let key = format!(" {name}=\"");
        let at = tag.find(&key)? + key.len();
        Some(&tag[at..at + tag[at..].find('"')?])
    };
    Some(VideoSeen {
        media: attr("data-media")?.to_owned(),
        on: attr("class").is_some_and(|c| c.split_whitespace().any(|c| c == "on")),
        ready_state: attr("data-ready-state").and_then(|v| v.parse().ok())?,
        position_ms: attr("data-position-ms").and_then(|v| v.parse().ok())?,
    })
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

/// One playlist item of a test.
struct Item {
    name: &'static str,
    content_type: &'static str,
    bytes: Vec<u8>,
    duration_ms: u64,
}

/// A slide made for a test.
fn slide_item(title: &'static str, colour: &str) -> Item {
    Item {
        name: title,
        content_type: "image/svg+xml",
        bytes: slide(title, "player test", colour),
        duration_ms: 1_500,
    }
}

/// A central with one venue whose default playlist is `items`, the venue's hub, and a kiosk
/// agent paired with it that has cached every item's media.
struct Rig {
    central: CentralNode,
    /// `None` once stopped.
    hub: Option<Hub>,
    kiosk: Kiosk,
    /// The items' media, in playlist order.
    hashes: Vec<MediaHash>,
    /// The player page.
    url: String,
    /// Chromium's profile directory.
    profile: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Rig {
    async fn start(items: &[Item]) -> Rig {
        let tmp = tempfile::tempdir().unwrap();
        let central = CentralNode::start(&tmp.path().join("central"))
            .await
            .unwrap();
        let venue = central.create_venue("The Anchor", "Europe/London").unwrap();
        let playlist = PlaylistId::random();
        central
            .edit_venue(venue, |am| doc::create_playlist(am, playlist, "Test loop"))
            .unwrap();
        let mut hashes: Vec<MediaHash> = Vec::new();
        for item in items {
            let hash = central.central.state().blobs.put(&item.bytes).unwrap();
            let meta = MediaMeta {
                name: item.name.to_owned(),
                content_type: item.content_type.into(),
                size: item.bytes.len() as u64,
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
                        item.duration_ms,
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
        let staff = staff_token(&hub_dir).unwrap();
        let hub = start_hub(&hub_dir, None).await.unwrap();
        // Staff approve pairings against the venue document: wait until the hub has it.
        eventually(WAIT, || taplink_simulations::mesh::hub_venue_doc(&hub))
            .await
            .unwrap();

        let kiosk = Kiosk::bind(test_kiosk_config(
            &tmp.path().join("kiosk"),
            hub.http_addr(),
        ))
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
        eventually(WAIT, || {
            let s = kiosk.status();
            hashes.iter().all(|h| s.ready.contains_key(h)).then_some(())
        })
        .await
        .unwrap();
        let url = format!("http://{}/", kiosk.player_addr());
        let profile = tmp.path().join("chromium");
        Rig {
            central,
            hub: Some(hub),
            kiosk,
            hashes,
            url,
            profile,
            _tmp: tmp,
        }
    }

    /// Run `f` with the page's URL and the profile on a blocking thread (Chromium takes a
    /// while).
    async fn browse<T: Send + 'static>(
        &self,
        f: impl FnOnce(&str, &Path) -> T + Send + 'static,
    ) -> T {
        let (url, profile) = (self.url.clone(), self.profile.clone());
        tokio::task::spawn_blocking(move || f(&url, &profile))
            .await
            .unwrap()
    }

    async fn stop_hub(&mut self) {
        if let Some(hub) = self.hub.take() {
            hub.shutdown().await.unwrap();
        }
    }

    async fn shutdown(mut self) {
        self.stop_hub().await;
        self.kiosk.shutdown().await.unwrap();
        self.central.central.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_player_page_renders_advances_and_keeps_playing_without_the_hub() {
    // Two slides of 1.5 s each, always on.
    let mut rig = Rig::start(&[
        slide_item("First slide", "#0b3d91"),
        slide_item("Second slide", "#7a1f3d"),
    ])
    .await;
    let (first, second) = (rig.hashes[0].to_string(), rig.hashes[1].to_string());
    let (early, later) = rig
        .browse(|page, prof| (showing(page, 1_000, prof), showing(page, 2_200, prof)))
        .await;
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
    rig.stop_hub().await;
    let shot = artefact_dir().join("player.png");
    let shot_arg = format!("--screenshot={}", shot.display());
    let (early, later) = rig
        .browse(move |page, prof| {
            let early = showing(page, 1_000, prof);
            let later = showing(page, 2_200, prof);
            chromium(page, 1_000, &[&shot_arg], prof);
            (early, later)
        })
        .await;
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
    rig.shutdown().await;
}

/// A video between two slides: it becomes the item on screen, really plays (the element has
/// its current frame and its position moves on), and the page moves on to the next slide
/// after the item's duration (2 s, shorter than the 3 s clip). Chromium runs without any
/// autoplay flag: headless Chromium keeps the same autoplay policy as `chromium --kiosk`
/// (it refuses to start an unmuted video without a user gesture), so this also shows that
/// the page's muted videos start by themselves on a kiosk.
///
/// The screenshot (`player-video.png`) shows the video on screen, but headless Chromium does
/// not repaint a video's frames for it under virtual time: it shows the clip's first frame
/// whatever the position. Playing is therefore checked through the element's own state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_player_page_plays_a_video_and_moves_on() {
    let rig = Rig::start(&[
        slide_item("Before the video", "#0b3d91"),
        Item {
            name: "sample.webm",
            content_type: "video/webm",
            bytes: SAMPLE_VIDEO.to_vec(),
            duration_ms: 2_000,
        },
        slide_item("After the video", "#7a1f3d"),
    ])
    .await;
    let [before, video, after] = [0, 1, 2].map(|i| rig.hashes[i].to_string());
    let shot = artefact_dir().join("player-video.png");
    let shot_arg = format!("--screenshot={}", shot.display());
    // Page time: the first slide until 1.5 s, the video until 3.5 s, then the last slide.
    let (first, playing, later, next) = rig
        .browse(move |page, prof| {
            let dump = |budget_ms| chromium(page, budget_ms, &["--dump-dom"], prof);
            let first = showing(page, 1_000, prof);
            let playing = dump(2_300);
            let later = dump(3_000);
            let next = dump(4_300);
            chromium(page, 2_600, &[&shot_arg], prof);
            (first, playing, later, next)
        })
        .await;
    assert_eq!(
        first.as_deref(),
        Some(before.as_str()),
        "the first slide is on screen"
    );

    assert_eq!(
        showing_in(&playing).as_deref(),
        Some(video.as_str()),
        "the video is the item on screen"
    );
    let early = video_in(&playing).expect("a video element, marked with its playback state");
    assert_eq!(early.media, video);
    assert!(early.on, "the video element is the one shown: {early:?}");
    assert!(
        early.ready_state >= 2,
        "the video has its current frame: {early:?}"
    );
    assert!(
        early.position_ms > 0,
        "the video plays (it starts from 0): {early:?}"
    );
    let late = video_in(&later).expect("a video element");
    assert_eq!(showing_in(&later).as_deref(), Some(video.as_str()));
    assert!(late.on && late.ready_state >= 2, "still showing: {late:?}");
    assert!(
        late.position_ms > early.position_ms,
        "the video's position moves on: {early:?} then {late:?}"
    );

    assert_eq!(
        showing_in(&next).as_deref(),
        Some(after.as_str()),
        "after the video, the page moves on to the next item"
    );
    let done = video_in(&next).expect("the video element is kept for its next turn");
    assert!(!done.on, "the video is no longer shown: {done:?}");

    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot"
    );
    rig.shutdown().await;
}
