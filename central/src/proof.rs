//! Content proof: how a kiosk's content compares with what central computes for it now.
//! The version in the kiosk's latest heartbeat against the manifest central computes with
//! the function kiosks use: "up to date" only on a matching report; "behind" since the
//! first report after its latest matching one (or, if it never reported the current
//! version, since its latest report); "unknown" without a heartbeat or a manifest. The
//! venue page shows it and the content-behind alert (`alerts`) watches it.

use chrono::{DateTime, Utc};
use taplink_sync_proto::ids::{KioskId, VenueId};
use taplink_sync_proto::manifest::{Manifest, ManifestError};

use crate::store::{KioskHeartbeat, Registry, RegistryError};

/// How a kiosk's content compares with what central computes for it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// Its latest heartbeat reports the version central computes now.
    UpToDate,
    /// Its latest heartbeat reports another version.
    Behind {
        /// Since when: the first report after its latest matching one, or its latest report.
        since: DateTime<Utc>,
        /// Whether `since` follows a matching report (`false`: it never reported the
        /// current version, so `since` is only its latest report).
        after_match: bool,
    },
    /// No heartbeat, or central cannot compute its manifest.
    Unknown,
}

/// The proof of `kiosk` of `venue`, whose manifest central computes as `manifest`, from
/// its latest heartbeat `beat`.
pub fn of(
    registry: &Registry,
    venue: VenueId,
    kiosk: KioskId,
    manifest: &Result<Manifest, ManifestError>,
    beat: Option<&KioskHeartbeat>,
) -> Result<Proof, RegistryError> {
    let (Ok(manifest), Some(beat)) = (manifest, beat) else {
        return Ok(Proof::Unknown);
    };
    if beat.heartbeat.manifest_version == manifest.version {
        return Ok(Proof::UpToDate);
    }
    Ok(
        match registry.reported_other_since(venue, kiosk, &manifest.version)? {
            Some(since) => Proof::Behind {
                since,
                after_match: true,
            },
            None => Proof::Behind {
                since: beat.at,
                after_match: false,
            },
        },
    )
}
