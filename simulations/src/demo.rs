//! The demo mesh: a central, two venue hubs with their content, and kiosk agents, on
//! loopback, in one process.
//!
//! Sample media are generated SVG slides and a short WebM video embedded in the binary
//! ([`SAMPLE_VIDEO`]), so the demo needs nothing but the binary. Data goes to a temporary
//! directory unless one is given. Kiosks find a hub by mDNS and the demo approves their
//! pairing codes as store staff would. mDNS never touches the machine's real interfaces:
//! run as root, every mDNS daemon starts inside a private network namespace whose only
//! interface is its own loopback (names are just data, so the advertised `127.0.0.1` is
//! reached on the host's loopback); without root, kiosks are given their hub's address
//! instead.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use taplink_edge_hub::Hub;
use taplink_sync_proto::doc::{self, MediaMeta, Placement};
use taplink_sync_proto::ids::{ItemId, MediaHash, PlaylistId, VenueId};
use taplink_sync_proto::schedule::{ScheduleWindow, Weekdays};

use crate::mesh::{CentralNode, Target, approve_pairing, enroll_hub, staff_token};
use crate::netns::Netns;

/// One venue of the demo.
#[derive(Debug)]
pub struct DemoVenue {
    /// Its id.
    pub id: VenueId,
    /// Its display name.
    pub name: &'static str,
    /// Its hub.
    pub hub: Hub,
    /// A staff token of its hub (`taplink-hub token create` on a real one).
    pub staff: String,
}

/// One kiosk agent of the demo.
#[derive(Debug)]
pub struct DemoKiosk {
    /// The agent.
    pub agent: taplink_kiosk::Kiosk,
    /// Its name.
    pub name: String,
}

/// The running demo.
#[derive(Debug)]
pub struct Demo {
    /// Where its data lives.
    pub data: PathBuf,
    /// Central.
    pub central: CentralNode,
    /// The venues and their hubs.
    pub venues: Vec<DemoVenue>,
    /// The kiosk agents.
    pub kiosks: Vec<DemoKiosk>,
    /// The private namespace mDNS runs in, when the demo could make one.
    pub mdns_netns: Option<Netns>,
    /// One person of each role for the dashboard: username, role, password.
    pub logins: Vec<DemoLogin>,
    _tmp: Option<tempfile::TempDir>,
}

/// A seeded dashboard account.
#[derive(Debug, Clone)]
pub struct DemoLogin {
    /// The username.
    pub username: &'static str,
    /// Its role, as the API writes it.
    pub role: &'static str,
    /// What it reaches, for people.
    pub reach: &'static str,
    /// Its password (fresh for each demo).
    pub password: String,
}

const VENUES: [(&str, &str, &str); 2] = [
    ("The Anchor", "Europe/London", "#0b3d91"),
    ("Zum Kranich", "Europe/Berlin", "#7a1f3d"),
];

/// A 3-second VP8 WebM video (320×180, 10 frames per second, no audio) of a moving test
/// pattern; `assets/README.md` says how it was made.
pub const SAMPLE_VIDEO: &[u8] = include_bytes!("../assets/sample.webm");

/// A full-screen 16:9 slide as SVG.
pub fn slide(title: &str, subtitle: &str, background: &str) -> Vec<u8> {
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="1920" height="1080" viewBox="0 0 1920 1080">
<rect width="1920" height="1080" fill="{background}"/>
<circle cx="1600" cy="260" r="180" fill="#ffffff" fill-opacity="0.12"/>
<text x="120" y="560" font-family="sans-serif" font-size="150" font-weight="bold" fill="#ffffff">{title}</text>
<text x="124" y="690" font-family="sans-serif" font-size="64" fill="#ffffff" fill-opacity="0.85">{subtitle}</text>
<text x="124" y="980" font-family="sans-serif" font-size="36" fill="#ffffff" fill-opacity="0.6">Taplink demo</text>
</svg>"##
    )
    .into_bytes()
}

/// One person of each role, through central's users API: an admin, a technician of the
/// `region:uk` venues (by tag), store staff of the first venue and a viewer of the second.
async fn seed_people(central: &CentralNode, venues: &[DemoVenue]) -> Result<Vec<DemoLogin>> {
    let (first, second) = (venues[0].id, venues[1].id);
    let (status, answer) = central
        .admin(
            "PATCH",
            &format!("/api/v1/venues/{first}"),
            Some(&serde_json::json!({"tags": ["region:uk"]})),
        )
        .await?;
    anyhow::ensure!(status == 200, "tagging the first venue: {status} {answer}");
    let people: [(&str, &str, &str, serde_json::Value); 4] = [
        ("ada", "admin", "every venue", serde_json::json!({})),
        (
            "tom",
            "technician",
            "venues tagged region:uk",
            serde_json::json!({"tags": ["region:uk"]}),
        ),
        (
            "sue",
            "store_staff",
            "The Anchor",
            serde_json::json!({"venues": [first.to_string()]}),
        ),
        (
            "vic",
            "viewer",
            "Zum Kranich",
            serde_json::json!({"venues": [second.to_string()]}),
        ),
    ];
    let mut logins = Vec::new();
    for (username, role, reach, scope) in people {
        let password = format!("demo-{}", taplink_sync_proto::ids::KioskId::random())
            .chars()
            .take(17)
            .collect::<String>();
        let mut body =
            serde_json::json!({"username": username, "role": role, "password": password});
        if let (Some(body), Some(scope)) = (body.as_object_mut(), scope.as_object()) {
            body.extend(scope.clone());
        }
        let (status, answer) = central.admin("POST", "/api/v1/users", Some(&body)).await?;
        anyhow::ensure!(status == 201, "creating {username}: {status} {answer}");
        logins.push(DemoLogin {
            username,
            role,
            reach,
            password,
        });
    }
    Ok(logins)
}

impl Demo {
    /// Start the demo under `data` (a fresh temporary directory when `None`) with `kiosks`
    /// kiosk agents.
    pub async fn start(data: Option<&Path>, kiosks: usize) -> Result<Demo> {
        let (tmp, data) = match data {
            Some(dir) => (None, dir.to_owned()),
            None => {
                let tmp = tempfile::Builder::new().prefix("taplink-demo-").tempdir()?;
                let path = tmp.path().to_owned();
                (Some(tmp), path)
            }
        };
        let central = CentralNode::start(&data.join("central"))
            .await
            .context("starting central (is --data an empty or new directory?)")?;
        // mDNS confined to a private namespace, if we may make one.
        let mdns_netns = Netns::create("demo").ok();
        let mut venues = Vec::new();
        for (i, (name, timezone, colour)) in VENUES.into_iter().enumerate() {
            let id = central.create_venue(name, timezone)?;
            furnish(&central, id, name, colour)?;
            add_sample_video(&central, id)?;
            let dir = data.join(format!("hub-{}", i + 1));
            enroll_hub(&dir, central.quic_addr(), &central.enrollment_token(id)?).await?;
            let mut config = taplink_edge_hub::Config::load(&dir)?;
            // The demo is the real thing: kiosks reach their hub over HTTPS, pinned to its
            // certificate.
            config.http_plain = false;
            if let Some(ns) = &mdns_netns {
                config.mdns_interface = Some("lo".into());
                config.mdns_netns = Some(ns.name().to_owned());
            }
            let staff = staff_token(&dir)?;
            let hub = Hub::bind(config).await?;
            venues.push(DemoVenue {
                id,
                name,
                hub,
                staff,
            });
        }
        let mut agents = Vec::new();
        for n in 0..kiosks {
            let mut config = taplink_kiosk::Config::new(data.join(format!("kiosk-{}", n + 1)));
            config.player_listen = "127.0.0.1:0".parse()?;
            config.device_name = format!("demo-kiosk-{}", n + 1);
            config.pairing_poll_ms = 200;
            match &mdns_netns {
                Some(ns) => {
                    config.mdns_interface = Some("lo".into());
                    config.mdns_netns = Some(ns.name().to_owned());
                }
                // Without mDNS, spread the kiosks over the venues.
                None => {
                    let hub = &venues[n % venues.len()].hub;
                    config.hub = Some(hub.http_addr());
                    config.hub_fingerprint = hub.fingerprint().map(|f| f.to_string());
                }
            }
            let agent = taplink_kiosk::Kiosk::bind(config).await?;
            agents.push(DemoKiosk {
                agent,
                name: format!("Screen {}", n + 1),
            });
        }
        let logins = seed_people(&central, &venues).await?;
        let demo = Demo {
            data,
            central,
            venues,
            kiosks: agents,
            mdns_netns,
            logins,
            _tmp: tmp,
        };
        demo.approve_pairings().await?;
        Ok(demo)
    }

    /// Approve each kiosk's pairing code on the hub it found, as store staff would.
    async fn approve_pairings(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        for kiosk in &self.kiosks {
            loop {
                let status = kiosk.agent.status();
                match (&status.phase, status.hub) {
                    (taplink_kiosk::state::Phase::Paired { .. }, _) => break,
                    (taplink_kiosk::state::Phase::Pairing { code, .. }, Some(hub)) => {
                        let venue = self
                            .venues
                            .iter()
                            .find(|v| v.hub.http_addr() == hub)
                            .context("a kiosk found a hub that is not the demo's")?;
                        approve_pairing(Target::of(&venue.hub), &venue.staff, code, &kiosk.name)
                            .await?;
                        // Wait for the kiosk to collect its token.
                        while !kiosk.agent.is_paired() {
                            anyhow::ensure!(
                                tokio::time::Instant::now() < deadline,
                                "{} did not finish pairing",
                                kiosk.name
                            );
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                        break;
                    }
                    _ => {
                        anyhow::ensure!(
                            tokio::time::Instant::now() < deadline,
                            "{} found no hub within 60 s",
                            kiosk.name
                        );
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
        }
        Ok(())
    }

    /// The venue a kiosk joined, by its hub's address.
    pub fn venue_of(&self, kiosk: &DemoKiosk) -> Option<&DemoVenue> {
        let hub = kiosk.agent.status().hub?;
        self.venues.iter().find(|v| v.hub.http_addr() == hub)
    }

    /// Stop everything.
    pub async fn shutdown(self) -> Result<()> {
        for kiosk in self.kiosks {
            kiosk.agent.shutdown().await?;
        }
        for venue in self.venues {
            venue.hub.shutdown().await?;
        }
        self.central.central.shutdown().await?;
        Ok(())
    }
}

/// Give a venue generated media and a default playlist whose last item only plays late at
/// night; returns the media hashes.
pub fn furnish(
    central: &CentralNode,
    venue: VenueId,
    name: &str,
    colour: &str,
) -> Result<Vec<MediaHash>> {
    let state = central.central.state();
    let slides = [
        (
            format!("Welcome to {name}"),
            "Happy hour 17:00 – 19:00".to_owned(),
        ),
        (
            "Tonight: quiz night".to_owned(),
            "Teams of up to six · starts 20:00".to_owned(),
        ),
        (
            "Fresh on tap".to_owned(),
            "Ask about this week's guest ale".to_owned(),
        ),
        (
            "Last orders".to_owned(),
            "Thank you for visiting".to_owned(),
        ),
    ];
    let mut media: Vec<(MediaHash, MediaMeta)> = Vec::new();
    for (i, (title, subtitle)) in slides.iter().enumerate() {
        let bytes = slide(title, subtitle, colour);
        let hash = state.blobs.put(&bytes)?;
        let meta = MediaMeta {
            name: format!("slide-{}.svg", i + 1),
            content_type: "image/svg+xml".into(),
            size: bytes.len() as u64,
        };
        central.edit_venue(venue, |am| doc::add_media(am, hash, &meta))?;
        media.push((hash, meta));
    }
    let playlist = PlaylistId::random();
    central.edit_venue(venue, |am| doc::create_playlist(am, playlist, "House loop"))?;
    for (i, (hash, _)) in media.iter().enumerate() {
        // The last slide only plays late at night (a window crossing midnight).
        let window = (i == media.len() - 1)
            .then(|| ScheduleWindow::new(Weekdays::ALL, 22 * 60, 2 * 60))
            .transpose()?;
        central.edit_venue(venue, |am| {
            doc::insert_item(
                am,
                playlist,
                ItemId::random(),
                Placement::End,
                *hash,
                8_000,
                window,
            )
        })?;
    }
    central.edit_venue(venue, |am| doc::set_default_playlist(am, Some(playlist)))?;
    Ok(media.into_iter().map(|(hash, _)| hash).collect())
}

/// Add [`SAMPLE_VIDEO`] to a venue's media and to its default playlist, right after the
/// playlist's first item, for its length (3 s); returns its hash.
pub fn add_sample_video(central: &CentralNode, venue: VenueId) -> Result<MediaHash> {
    let hash = central.central.state().blobs.put(SAMPLE_VIDEO)?;
    let meta = MediaMeta {
        name: "sample.webm".into(),
        content_type: "video/webm".into(),
        size: SAMPLE_VIDEO.len() as u64,
    };
    central.edit_venue(venue, |am| doc::add_media(am, hash, &meta))?;
    let doc = central.venue_doc(venue)?;
    let playlist = doc
        .settings
        .default_playlist
        .context("the venue has no default playlist")?;
    let first = doc
        .playlists
        .get(&playlist)
        .and_then(|p| doc::ordered_items(p).first().map(|(id, _)| *id));
    let at = first.map_or(Placement::End, Placement::After);
    central.edit_venue(venue, |am| {
        doc::insert_item(am, playlist, ItemId::random(), at, hash, 3_000, None)
    })?;
    Ok(hash)
}

/// Give a venue content through its hub's HTTP API, as store staff with token `staff`
/// would (also offline): two uploaded slides in a new default playlist. Requests are made
/// from inside `ns`. Returns the playlist.
pub fn furnish_via_api(ns: &Netns, hub: impl Into<Target>, staff: &str) -> Result<PlaylistId> {
    let hub = hub.into();
    let playlist = PlaylistId::random();
    let auth = format!("Bearer {staff}");
    let op = |body: serde_json::Value| -> Result<()> {
        let (status, answer) = ns.http_with(
            hub,
            "POST",
            "/api/v1/venue/ops",
            &[("Authorization", &auth)],
            body.to_string().as_bytes(),
        )?;
        anyhow::ensure!(status == 200, "{}", String::from_utf8_lossy(&answer));
        Ok(())
    };
    op(serde_json::json!({ "op": "create_playlist", "id": playlist, "name": "Staff picks" }))?;
    for (i, colour) in ["#0b5d3b", "#5d3b0b"].iter().enumerate() {
        let bytes = slide(&format!("Staff pick {}", i + 1), "made on the hub", colour);
        let path = format!("/api/v1/media?name=pick-{}.svg", i + 1);
        let (status, answer) = ns.http_with(
            hub,
            "PUT",
            &path,
            &[("Authorization", &auth), ("Content-Type", "image/svg+xml")],
            &bytes,
        )?;
        anyhow::ensure!(
            status == 201,
            "upload: {}",
            String::from_utf8_lossy(&answer)
        );
        let hash = MediaHash::of(&bytes);
        op(serde_json::json!({
            "op": "insert_item", "playlist": playlist, "item": ItemId::random(), "at": "end",
            "media": hash, "duration_ms": 3000
        }))?;
    }
    op(serde_json::json!({ "op": "set_default_playlist", "playlist": playlist }))?;
    Ok(playlist)
}
