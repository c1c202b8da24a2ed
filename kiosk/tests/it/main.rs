//! Integration tests of the kiosk agent: the player server through its router, an agent
//! restarted without its hub, and mDNS discovery on loopback.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot go on fails by panicking; unwrap says where"
)]

mod discovery;
mod player;
mod restart;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use taplink_kiosk::Config;
use taplink_kiosk::state::{Phase, Shared};
use taplink_kiosk::store::Credentials;
use taplink_sync_proto::ids::{ItemId, KioskId, MediaHash, PlaylistId};
use taplink_sync_proto::manifest::{Manifest, ManifestItem, NextChange};

/// The kiosk every test plays.
pub const KIOSK: KioskId = KioskId::from_bytes([9; 16]);
/// The playlist of the test manifests.
pub const PLAYLIST: PlaylistId = PlaylistId::from_bytes([1; 16]);

/// A config for a kiosk in `dir` whose hub, if it ever tries, is a closed loopback port.
pub fn config(dir: &std::path::Path) -> Config {
    let mut config = Config::new(dir.to_path_buf());
    config.hub = Some(closed_port());
    config.player_listen = "127.0.0.1:0".parse().unwrap();
    config.device_name = "test screen".into();
    config
}

/// A loopback address nothing listens on.
pub fn closed_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The kiosk's shared state over a data directory `dir`.
pub fn shared(dir: &std::path::Path) -> Arc<Shared> {
    Arc::new(Shared::open(config(dir)).unwrap())
}

/// The credentials of a paired [`KIOSK`].
pub fn credentials() -> Credentials {
    Credentials {
        kiosk: KIOSK,
        token: "tlk1-test".into(),
        venue: None,
    }
}

/// Mark the shared state paired (as the link does).
pub fn set_paired(shared: &Shared) {
    shared.status.send_modify(|s| {
        s.phase = Phase::Paired {
            kiosk: KIOSK,
            venue: None,
        }
    });
}

/// Manifest item `n`, playing `media` for 5 s.
pub fn item(n: u8, media: MediaHash, content_type: &str) -> ManifestItem {
    ManifestItem {
        item: ItemId::from_bytes([n; 16]),
        media,
        content_type: content_type.into(),
        duration_ms: 5_000,
    }
}

/// A manifest playing `now` and switching to `next` at a fixed time.
pub fn manifest(version: &str, now: Vec<ManifestItem>, next: Vec<ManifestItem>) -> Manifest {
    let mut media: Vec<MediaHash> = now.iter().chain(&next).map(|i| i.media).collect();
    media.sort();
    media.dedup();
    Manifest {
        kiosk: KIOSK,
        playlist: Some(PLAYLIST),
        version: version.into(),
        now,
        next: Some(NextChange {
            at: DateTime::parse_from_rfc3339("2026-11-20T18:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            items: next,
        }),
        media,
    }
}
