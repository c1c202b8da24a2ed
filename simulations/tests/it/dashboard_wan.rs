//! The dashboard tells the truth through a real WAN cut: the fleet overview's hub states
//! and the venue page's content proof, read from the HTML an admin signed in with a session
//! cookie gets from a real central on loopback.
//!
//! Four venues. The Anchor has a hub that reaches central through a [`WanProxy`], and a
//! real kiosk agent paired to it that plays the venue's playlist; The Crown has a hub
//! through another proxy and a kiosk with nothing to play (its idle page); The Bell's hub
//! enrolled but never started; The Swan never had a hub. A task per kiosk stands in for
//! its player page: it polls the agent's `/player/state` as the page does and says what
//! it shows (the first item of the manifest whose file is cached), which is what the
//! heartbeat's `on_screen` reports.
//!
//! Both proxies are cut: central sees both hubs go (its live-connection set; the link's
//! liveness deadline is a few seconds), The Anchor is offline *but playing* (its kiosk's
//! latest heartbeat said something was on screen) and The Crown plainly offline. An edit
//! of The Anchor's playlist at central, made during the cut, puts its kiosk *behind*. After
//! the heal both are online and the kiosk, having adopted the new manifest, reports it:
//! *up to date* again.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use taplink_kiosk::Kiosk;
use taplink_kiosk::player::PlayerState;
use taplink_kiosk::state::Phase;
use taplink_simulations::bench::{http_client, sign_in};
use taplink_simulations::mesh::{
    CentralNode, approve_pairing, enroll_hub, eventually, http, hub_venue_doc, staff_token,
    start_hub, test_kiosk_config,
};
use taplink_simulations::wan_proxy::WanProxy;
use taplink_sync_proto::doc::{self, MediaMeta, Placement};
use taplink_sync_proto::ids::{ItemId, KioskId, MediaHash, PlaylistId, VenueId};
use taplink_sync_proto::manifest::manifest;

/// Generous on a loaded 2-core machine: a cut is noticed within about 6 s, a resync and a
/// kiosk's next heartbeat take a second or two.
const WAIT: Duration = Duration::from_secs(30);

const PASSWORD: &str = "correct horse battery";

/// A signed-in admin's keep-alive connection to central's dashboard.
struct Dashboard {
    base: String,
    client: reqwest::Client,
    cookie: String,
}

impl Dashboard {
    async fn sign_in(central: &CentralNode) -> Dashboard {
        let (status, body) = central
            .admin(
                "POST",
                "/api/v1/users",
                Some(&json!({ "username": "ada", "display_name": "Ada Admin",
                              "role": "admin", "password": PASSWORD })),
            )
            .await
            .unwrap();
        assert_eq!(status, 201, "{body}");
        let base = format!("http://{}", central.central.http_addr());
        let client = http_client(None).unwrap();
        let (cookie, status) = sign_in(&client, &base, "ada", PASSWORD).await.unwrap();
        let cookie = cookie.unwrap_or_else(|| panic!("signing in: {status}"));
        Dashboard {
            base,
            client,
            cookie,
        }
    }

    /// The HTML of `path`, which must answer 200.
    async fn page(&self, path: &str) -> String {
        let answer = self
            .client
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::COOKIE, &self.cookie)
            .send()
            .await
            .unwrap();
        let status = answer.status();
        let text = answer.text().await.unwrap();
        assert_eq!(status, 200, "GET {path}: {text}");
        text
    }

    /// Each venue's row on the overview: its hub state and whether it is marked as
    /// playing while offline.
    async fn row(&self, venue: VenueId) -> Row {
        let html = self.page("/").await;
        let row = element(&html, &format!(r#"<tr data-venue="{venue}""#), "</tr>");
        Row {
            hub_state: attribute(row, "data-hub-state"),
            playing: row.contains(r#"data-offline-playing="true""#),
        }
    }

    /// The content proof of `kiosk` on its venue's page.
    async fn proof(&self, venue: VenueId, kiosk: KioskId) -> String {
        let html = self.page(&format!("/venues/{venue}")).await;
        let row = element(&html, &format!(r#"<tr data-kiosk="{kiosk}""#), "</tr>");
        attribute(row, "data-proof")
    }

    /// The hub state the venue page shows.
    async fn venue_hub_state(&self, venue: VenueId) -> String {
        let html = self.page(&format!("/venues/{venue}")).await;
        let head = element(&html, r#"<div class="card venue-head""#, "</dl>");
        attribute(head, "data-hub-state")
    }
}

/// A venue's row on the overview, as the test reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    hub_state: String,
    /// The row says its kiosks were playing when last heard from.
    playing: bool,
}

fn row(hub_state: &str, playing: bool) -> Row {
    Row {
        hub_state: hub_state.to_owned(),
        playing,
    }
}

/// The slice of `html` from `start` to the next `end`.
fn element<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let at = html
        .find(start)
        .unwrap_or_else(|| panic!("{start} not in the page: {html}"));
    let rest = &html[at..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

/// The value of the first `name="…"` in `html`.
fn attribute(html: &str, name: &str) -> String {
    let marker = format!(r#"{name}=""#);
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    html[at..][..html[at..].find('"').unwrap()].to_owned()
}

/// Poll `check` until it returns `Ok`, for at most [`WAIT`]; the last `Err` (what was
/// seen) is in the panic message.
async fn until<T>(what: &str, mut check: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) => assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not within {WAIT:?}; last seen: {seen}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Stands in for a kiosk's player page: polls `/player/state` every 300 ms, as the page
/// does, saying what it shows — the first item playing now whose file is cached, or
/// nothing (the idle page).
fn player_page(player: SocketAddr) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut shown: Option<MediaHash> = None;
        loop {
            let path = match shown {
                Some(hash) => format!("/player/state?on_screen={hash}"),
                None => "/player/state".to_owned(),
            };
            if let Ok((200, body)) = http(player, "GET", &path, b"").await
                && let Ok(state) = serde_json::from_slice::<PlayerState>(&body)
            {
                shown = state.manifest.and_then(|m| {
                    m.now
                        .iter()
                        .map(|item| item.media)
                        .find(|media| state.ready.contains_key(media))
                });
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}

async fn kiosk(dir: &std::path::Path, hub: SocketAddr) -> Kiosk {
    let mut config = test_kiosk_config(dir, hub);
    config.heartbeat_interval_s = 1;
    Kiosk::bind(config).await.unwrap()
}

/// Pair a new kiosk agent in `dir` with the hub at `api` (staff token `staff`) as `name`.
async fn paired_kiosk(
    dir: &std::path::Path,
    api: SocketAddr,
    staff: &str,
    name: &str,
) -> (Kiosk, KioskId) {
    let k = kiosk(dir, api).await;
    let code = eventually(WAIT, || match k.status().phase {
        Phase::Pairing { code, .. } => Some(code),
        _ => None,
    })
    .await
    .unwrap();
    approve_pairing(api, staff, &code, name).await.unwrap();
    let id = eventually(WAIT, || match k.status().phase {
        Phase::Paired { kiosk, .. } => Some(kiosk),
        _ => None,
    })
    .await
    .unwrap();
    (k, id)
}

/// Enroll a hub of `venue` in `root` and start it behind a new WAN proxy (seed `seed`):
/// the hub, its proxy and a staff token.
async fn wan_hub(
    central: &CentralNode,
    root: &std::path::Path,
    venue: VenueId,
    seed: u64,
) -> (taplink_edge_hub::Hub, WanProxy, String) {
    let dir = root.join(format!("hub-{venue}"));
    enroll_hub(
        &dir,
        central.quic_addr(),
        &central.enrollment_token(venue).unwrap(),
    )
    .await
    .unwrap();
    let proxy = WanProxy::start("127.0.0.1:0".parse().unwrap(), central.quic_addr(), seed)
        .await
        .unwrap();
    let staff = staff_token(&dir).unwrap();
    let hub = start_hub(&dir, Some(proxy.local_addr())).await.unwrap();
    (hub, proxy, staff)
}

/// A small SVG slide stored at central and added to `venue`'s media.
fn slide(central: &CentralNode, venue: VenueId, text: &str) -> MediaHash {
    let bytes = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="160" height="90"><text x="8" y="48">{text}</text></svg>"#
    );
    let hash = central.central.state().blobs.put(bytes.as_bytes()).unwrap();
    let meta = MediaMeta {
        name: format!("{text}.svg"),
        content_type: "image/svg+xml".into(),
        size: bytes.len() as u64,
    };
    central
        .edit_venue(venue, |am| doc::add_media(am, hash, &meta))
        .unwrap();
    hash
}

/// The manifest version central computes now for `kiosk`.
fn central_version(central: &CentralNode, venue: VenueId, kiosk: KioskId) -> String {
    let doc = central.venue_doc(venue).unwrap();
    let now = central.central.state().now();
    manifest(&doc, kiosk, now).unwrap().version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_states_and_content_proof_are_right_through_a_wan_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let central = CentralNode::start(&tmp.path().join("central"))
        .await
        .unwrap();
    let anchor = central.create_venue("The Anchor", "Europe/London").unwrap();
    let crown = central.create_venue("The Crown", "Europe/London").unwrap();
    let bell = central.create_venue("The Bell", "Europe/London").unwrap();
    let swan = central.create_venue("The Swan", "Europe/London").unwrap();

    // The Anchor plays one slide, always (no schedule window, so the manifest does not
    // change with the time of day while the test runs).
    let welcome = slide(&central, anchor, "welcome");
    let house = PlaylistId::random();
    central
        .edit_venue(anchor, |am| {
            doc::create_playlist(am, house, "House loop")?;
            doc::insert_item(
                am,
                house,
                ItemId::random(),
                Placement::End,
                welcome,
                8_000,
                None,
            )?;
            doc::set_default_playlist(am, Some(house))
        })
        .unwrap();

    // Hubs: The Anchor's and The Crown's through a proxy each; The Bell's enrolled only.
    let (anchor_hub, anchor_proxy, anchor_staff) = wan_hub(&central, tmp.path(), anchor, 1).await;
    let (crown_hub, crown_proxy, crown_staff) = wan_hub(&central, tmp.path(), crown, 2).await;
    central
        .enroll(bell, &tmp.path().join("hub-bell"))
        .await
        .unwrap();
    eventually(WAIT, || {
        anchor_hub
            .blobs()
            .has(&welcome)
            .unwrap_or(false)
            .then_some(())
    })
    .await
    .unwrap();
    eventually(WAIT, || hub_venue_doc(&crown_hub))
        .await
        .unwrap();

    // A kiosk at each hub, each with its stand-in player page.
    let (bar, bar_id) = paired_kiosk(
        &tmp.path().join("bar"),
        anchor_hub.http_addr(),
        &anchor_staff,
        "Bar screen",
    )
    .await;
    let (door, door_id) = paired_kiosk(
        &tmp.path().join("door"),
        crown_hub.http_addr(),
        &crown_staff,
        "Door screen",
    )
    .await;
    let pages = [
        player_page(bar.player_addr()),
        player_page(door.player_addr()),
    ];
    // The bar screen shows the slide; the door screen has nothing to play.
    eventually(WAIT, || {
        let s = bar.status();
        let m = s.manifest?;
        (m.now.first()?.media == welcome && s.ready.contains_key(&welcome)).then_some(())
    })
    .await
    .unwrap();
    eventually(WAIT, || door.status().manifest.filter(|m| m.now.is_empty()))
        .await
        .unwrap();

    let dash = Dashboard::sign_in(&central).await;

    // Online: both hubs connected, both kiosks reporting what central computes for them.
    until("both hubs online", async || {
        let seen = (dash.row(anchor).await, dash.row(crown).await);
        (seen == (row("online", false), row("online", false)))
            .then_some(())
            .ok_or(format!("{seen:?}"))
    })
    .await;
    assert_eq!(dash.row(bell).await, row("never_connected", false));
    assert_eq!(dash.row(swan).await, row("no_hub", false));
    until("both kiosks up to date", async || {
        let seen = (
            dash.proof(anchor, bar_id).await,
            dash.proof(crown, door_id).await,
        );
        (seen.0 == "up_to_date" && seen.1 == "up_to_date")
            .then_some(())
            .ok_or(format!("{seen:?}"))
    })
    .await;
    // Up to date means the bar screen reported something on screen to central: the
    // condition for "offline but playing" below.
    until(
        "the bar screen's heartbeat says what it shows",
        async || {
            let html = dash.page(&format!("/venues/{anchor}")).await;
            let row = element(&html, &format!(r#"<tr data-kiosk="{bar_id}""#), "</tr>");
            row.contains("welcome.svg")
                .then_some(())
                .ok_or(row.to_owned())
        },
    )
    .await;

    // The WAN goes down for both hubs.
    anchor_proxy.cut();
    crown_proxy.cut();
    until("both hubs offline", async || {
        let seen = (dash.row(anchor).await, dash.row(crown).await);
        (seen.0.hub_state == "offline" && seen.1.hub_state == "offline")
            .then_some(())
            .ok_or(format!("{seen:?}"))
    })
    .await;
    // The Anchor's kiosk was playing when last heard from; The Crown's showed its idle page.
    assert_eq!(dash.row(anchor).await, row("offline", true), "The Anchor");
    assert_eq!(dash.row(crown).await, row("offline", false), "The Crown");
    assert_eq!(dash.row(bell).await, row("never_connected", false));
    assert_eq!(dash.row(swan).await, row("no_hub", false));
    assert_eq!(dash.venue_hub_state(anchor).await, "offline");

    // While cut, the playlist changes at central: the bar screen cannot know yet.
    let before = bar.status().manifest.unwrap().version.clone();
    let special = slide(&central, anchor, "special");
    central
        .edit_venue(anchor, |am| {
            doc::insert_item(
                am,
                house,
                ItemId::random(),
                Placement::Front,
                special,
                5_000,
                None,
            )
        })
        .unwrap();
    let wanted = central_version(&central, anchor, bar_id);
    assert_ne!(wanted, before, "the edit changes the bar screen's manifest");
    assert_eq!(dash.proof(anchor, bar_id).await, "behind");
    // Still cut: the kiosk has the old manifest, the hub has not heard of the edit.
    assert_eq!(bar.status().manifest.unwrap().version, before);
    assert!(
        !hub_venue_doc(&anchor_hub)
            .unwrap()
            .media
            .contains_key(&special)
    );
    assert_eq!(dash.row(anchor).await, row("offline", true));

    // The link returns: both online; the bar screen adopts the new manifest and reports it.
    anchor_proxy.heal();
    crown_proxy.heal();
    until("both hubs online again", async || {
        let seen = (dash.row(anchor).await, dash.row(crown).await);
        (seen == (row("online", false), row("online", false)))
            .then_some(())
            .ok_or(format!("{seen:?}"))
    })
    .await;
    eventually(WAIT, || {
        bar.status().manifest.filter(|m| m.version == wanted)
    })
    .await
    .unwrap();
    until("the bar screen up to date again", async || {
        let seen = dash.proof(anchor, bar_id).await;
        (seen == "up_to_date").then_some(()).ok_or(seen)
    })
    .await;
    assert_eq!(dash.proof(crown, door_id).await, "up_to_date");
    assert_eq!(dash.venue_hub_state(anchor).await, "online");
    // The cut was real: each proxy dropped traffic.
    for proxy in [&anchor_proxy, &crown_proxy] {
        let stats = proxy.stats();
        assert!(stats.to_upstream.dropped() + stats.to_client.dropped() > 0);
    }

    for page in pages {
        page.abort();
    }
    bar.shutdown().await.unwrap();
    door.shutdown().await.unwrap();
    anchor_hub.shutdown().await.unwrap();
    crown_hub.shutdown().await.unwrap();
    anchor_proxy.shutdown().await;
    crown_proxy.shutdown().await;
    central.central.shutdown().await.unwrap();
}
