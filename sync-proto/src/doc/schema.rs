//! The shape of the venue and org documents, as autosurgeon types.
//!
//! Each field's doc comment says how concurrent edits to it merge. "LWW" is last-writer-wins
//! (see the module docs of [`crate::doc`]).

use std::collections::BTreeMap;

use autosurgeon::{Hydrate, Reconcile};
use serde::{Deserialize, Serialize};

use crate::ids::{GrantId, ItemId, KioskId, MediaHash, PlaylistId};
use crate::kiosk_code::KioskCodeHash;
use crate::schedule::ScheduleWindow;

/// The schema version written into every document; a reader refuses a newer major version.
pub const SCHEMA_VERSION: u64 = 1;

/// One venue's shared state, written by central admins and by the venue's hub.
#[derive(Debug, Clone, PartialEq, Eq, Default, Reconcile, Hydrate, Serialize, Deserialize)]
pub struct VenueDoc {
    /// Schema version of the writer that created the document (LWW; only ever raised).
    pub schema: u64,
    /// Venue-wide settings; each field LWW independently.
    pub settings: VenueSettings,
    /// Kiosks by id: adding different kiosks concurrently keeps both; remove beats edit.
    #[autosurgeon(with = "autosurgeon::map_with_parseable_keys")]
    pub kiosks: BTreeMap<KioskId, Kiosk>,
    /// Playlists by id: concurrent creations both survive; remove beats edit.
    #[autosurgeon(with = "autosurgeon::map_with_parseable_keys")]
    pub playlists: BTreeMap<PlaylistId, Playlist>,
    /// Playlist assigned to each kiosk group, by group name. Each group's entry is LWW.
    pub group_playlists: BTreeMap<String, PlaylistId>,
    /// Metadata of the media this venue uses (uploaded here or copied from the org library),
    /// by content hash. Two sides adding the same hash merge field by field (LWW).
    #[autosurgeon(with = "autosurgeon::map_with_parseable_keys")]
    pub media: BTreeMap<MediaHash, MediaMeta>,
    /// Kiosk provisioning grants (pairings pre-approved by central), by grant id. Concurrent
    /// creations both survive; a removal (revocation) beats a concurrent redemption of the
    /// grant, though not the kiosk that redemption added. Documents made before grants
    /// existed lack the map until central adds it with their first grant (only central
    /// creates it, so two replicas never create it concurrently).
    #[autosurgeon(
        with = "autosurgeon::map_with_parseable_keys",
        missing = "BTreeMap::new"
    )]
    #[serde(default)]
    pub kiosk_grants: BTreeMap<GrantId, KioskGrant>,
}

/// A kiosk pairing pre-approved by central: whoever presents the code whose hash this is
/// may pair one kiosk with the venue's hub, which then needs no staff approval.
///
/// Central writes every field but the redemption; the hub that redeems the grant writes
/// `consumed_by` and `consumed_at_ms`, in the same change that adds the kiosk.
#[derive(Debug, Clone, PartialEq, Eq, Reconcile, Hydrate, Serialize, Deserialize)]
pub struct KioskGrant {
    /// The hash of the code ([`crate::kiosk_code::KioskCode::hash`]); the code itself is
    /// stored nowhere. Written once.
    pub code_hash: KioskCodeHash,
    /// The name the kiosk gets (written once).
    pub name: String,
    /// The group the kiosk is put in, if any (written once).
    pub group: Option<String>,
    /// The kiosk's own playlist, if any (written once; ignored at redemption if the
    /// playlist was removed meanwhile).
    pub playlist: Option<PlaylistId>,
    /// When central created it, Unix milliseconds (central's clock).
    pub created_at_ms: i64,
    /// The first instant it is no longer accepted, Unix milliseconds, compared with the
    /// redeeming hub's clock.
    pub expires_at_ms: i64,
    /// The kiosk it was redeemed for (LWW). Replicas that each redeem it while partitioned
    /// (two hubs of one venue) each add their kiosk; the merge keeps both kiosks and one
    /// `consumed_by`.
    pub consumed_by: Option<KioskId>,
    /// When it was redeemed, Unix milliseconds (the hub's clock; LWW).
    pub consumed_at_ms: Option<i64>,
}

impl KioskGrant {
    /// Whether it can still be redeemed at `now_ms`.
    pub fn is_open(&self, now_ms: i64) -> bool {
        self.consumed_by.is_none() && now_ms < self.expires_at_ms
    }
}

/// Venue-wide settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Reconcile, Hydrate, Serialize, Deserialize)]
pub struct VenueSettings {
    /// Display name (LWW).
    pub name: String,
    /// IANA time zone, e.g. `Europe/Berlin`, in which schedule windows are read (LWW).
    pub timezone: String,
    /// Playlist for kiosks with neither their own nor a group playlist (LWW).
    pub default_playlist: Option<PlaylistId>,
}

/// How a kiosk's screen is mounted.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Reconcile, Hydrate, Serialize, Deserialize,
)]
pub enum Orientation {
    /// Wide, the default.
    #[default]
    Landscape,
    /// Tall, rotated 90° clockwise.
    Portrait,
    /// Wide, upside down.
    LandscapeFlipped,
    /// Tall, rotated 90° counter-clockwise.
    PortraitFlipped,
}

/// One screen in the venue.
#[derive(Debug, Clone, PartialEq, Eq, Reconcile, Hydrate, Serialize, Deserialize)]
pub struct Kiosk {
    /// Display name (LWW).
    pub name: String,
    /// Group name, if any, whose playlist it plays when it has none of its own (LWW).
    pub group: Option<String>,
    /// Screen orientation (LWW).
    pub orientation: Orientation,
    /// The kiosk's own playlist, which beats the group's and the venue default (LWW).
    pub playlist: Option<PlaylistId>,
}

/// An ordered set of items.
#[derive(Debug, Clone, PartialEq, Eq, Reconcile, Hydrate, Serialize, Deserialize)]
pub struct Playlist {
    /// Display name (LWW).
    pub name: String,
    /// Items by id; order is by (`position`, id). Concurrent inserts both survive, a move is
    /// an LWW write of `position`, remove beats a concurrent edit.
    #[autosurgeon(with = "autosurgeon::map_with_parseable_keys")]
    pub items: BTreeMap<ItemId, PlaylistItem>,
}

/// One entry of a playlist.
#[derive(Debug, Clone, PartialEq, Eq, Reconcile, Hydrate, Serialize, Deserialize)]
pub struct PlaylistItem {
    /// What to show (LWW).
    pub media: MediaHash,
    /// How long to show it, in milliseconds (LWW).
    pub duration_ms: u64,
    /// When it may play; `None` is always (LWW, the window as a whole).
    pub window: Option<ScheduleWindow>,
    /// Fractional-index sort key (hex string of `fractional_index::FractionalIndex`), LWW.
    /// Ties (from concurrent inserts at the same spot) are broken by item id.
    pub position: String,
}

/// Metadata about a media file; the bytes live in blob storage under the hash.
#[derive(Debug, Clone, PartialEq, Eq, Reconcile, Hydrate, Serialize, Deserialize)]
pub struct MediaMeta {
    /// File name as uploaded (LWW).
    pub name: String,
    /// MIME type, e.g. `image/png` or `video/mp4` (LWW).
    pub content_type: String,
    /// Size in bytes (LWW; fixed by the hash in practice).
    pub size: u64,
}

/// The organisation-wide document. Central writes it; hubs only read it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Reconcile, Hydrate, Serialize, Deserialize)]
pub struct OrgDoc {
    /// Schema version (LWW).
    pub schema: u64,
    /// The shared media library by hash (merge as [`VenueDoc::media`]).
    #[autosurgeon(with = "autosurgeon::map_with_parseable_keys")]
    pub library: BTreeMap<MediaHash, MediaMeta>,
    /// Org-wide defaults (each field LWW).
    pub defaults: OrgDefaults,
}

/// Defaults for new venues and items.
#[derive(Debug, Clone, PartialEq, Eq, Default, Reconcile, Hydrate, Serialize, Deserialize)]
pub struct OrgDefaults {
    /// Time zone for new venues.
    pub timezone: String,
    /// Duration for new image items, in milliseconds.
    pub item_duration_ms: u64,
}
