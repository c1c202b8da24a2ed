//! The demo mesh: a central, two venue hubs and their content, on loopback, in one process.
//!
//! Sample media are generated (SVG slides), so the demo needs nothing but the binary. Data
//! goes to a temporary directory unless one is given; the demo runs until Ctrl-C.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use taplink_edge_hub::Hub;
use taplink_sync_proto::doc::{self, MediaMeta, Placement};
use taplink_sync_proto::ids::{ItemId, MediaHash, PlaylistId, VenueId};
use taplink_sync_proto::schedule::{ScheduleWindow, Weekdays};

use crate::mesh::{CentralNode, enroll_hub, start_hub};

/// One venue of the demo.
#[derive(Debug)]
pub struct DemoVenue {
    /// Its id.
    pub id: VenueId,
    /// Its display name.
    pub name: &'static str,
    /// Its hub.
    pub hub: Hub,
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
    _tmp: Option<tempfile::TempDir>,
}

const VENUES: [(&str, &str, &str); 2] = [
    ("The Anchor", "Europe/London", "#0b3d91"),
    ("Zum Kranich", "Europe/Berlin", "#7a1f3d"),
];

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

impl Demo {
    /// Start the demo under `data` (a fresh temporary directory when `None`).
    pub async fn start(data: Option<&Path>) -> Result<Demo> {
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
        let mut venues = Vec::new();
        for (i, (name, timezone, colour)) in VENUES.into_iter().enumerate() {
            let id = central.create_venue(name, timezone)?;
            furnish(&central, id, name, colour)?;
            let dir = data.join(format!("hub-{}", i + 1));
            enroll_hub(&dir, central.quic_addr(), &central.enrollment_token(id)?).await?;
            let hub = start_hub(&dir, None).await?;
            venues.push(DemoVenue { id, name, hub });
        }
        Ok(Demo {
            data,
            central,
            venues,
            _tmp: tmp,
        })
    }

    /// Stop everything.
    pub async fn shutdown(self) -> Result<()> {
        for venue in self.venues {
            venue.hub.shutdown().await;
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
