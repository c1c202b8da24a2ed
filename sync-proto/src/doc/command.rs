//! Operations as data: one serde-tagged enum per document kind, so an HTTP API (central's
//! or a hub's) and the CLI apply the same validated operations from JSON.
//!
//! ```json
//! {"op": "add_kiosk", "id": "…", "name": "Bar screen"}
//! ```

use serde::{Deserialize, Serialize};

use super::ops::{self, DocOpError, Placement};
use super::schema::{MediaMeta, Orientation};
use crate::ids::{ItemId, KioskId, MediaHash, PlaylistId};
use crate::schedule::ScheduleWindow;
use automerge::AutoCommit;

/// One operation on a venue document. See [`super::ops`] for each one's rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum VenueCommand {
    /// [`ops::rename_venue`].
    RenameVenue {
        /// The venue's new name.
        name: String,
    },
    /// [`ops::set_timezone`].
    SetTimezone {
        /// The venue's IANA time zone, such as `Europe/Berlin`.
        timezone: String,
    },
    /// [`ops::set_default_playlist`].
    SetDefaultPlaylist {
        /// The playlist of kiosks with no other, or `None` for no default.
        playlist: Option<PlaylistId>,
    },
    /// [`ops::add_kiosk`].
    AddKiosk {
        /// A fresh kiosk id.
        id: KioskId,
        /// The kiosk's name.
        name: String,
    },
    /// [`ops::rename_kiosk`].
    RenameKiosk {
        /// The kiosk.
        id: KioskId,
        /// Its new name.
        name: String,
    },
    /// [`ops::set_kiosk_group`].
    SetKioskGroup {
        /// The kiosk.
        id: KioskId,
        /// The group's name, or `None` for no group.
        group: Option<String>,
    },
    /// [`ops::set_orientation`].
    SetOrientation {
        /// The kiosk.
        id: KioskId,
        /// How its screen is mounted.
        orientation: Orientation,
    },
    /// [`ops::remove_kiosk`].
    RemoveKiosk {
        /// The kiosk.
        id: KioskId,
    },
    /// [`ops::assign_playlist`].
    AssignPlaylist {
        /// The kiosk.
        kiosk: KioskId,
        /// Its own playlist, or `None` to fall back to its group's or the venue default.
        playlist: Option<PlaylistId>,
    },
    /// [`ops::assign_group_playlist`].
    AssignGroupPlaylist {
        /// The group's name.
        group: String,
        /// The group's playlist, or `None` to remove the group's entry.
        playlist: Option<PlaylistId>,
    },
    /// [`ops::create_playlist`].
    CreatePlaylist {
        /// A fresh playlist id.
        id: PlaylistId,
        /// The playlist's name.
        name: String,
    },
    /// [`ops::rename_playlist`].
    RenamePlaylist {
        /// The playlist.
        id: PlaylistId,
        /// Its new name.
        name: String,
    },
    /// [`ops::remove_playlist`].
    RemovePlaylist {
        /// The playlist.
        id: PlaylistId,
    },
    /// [`ops::insert_item`].
    InsertItem {
        /// The playlist.
        playlist: PlaylistId,
        /// A fresh item id, unique within the playlist.
        item: ItemId,
        /// Where the item goes in the playlist's order.
        at: Placement,
        /// The media it shows, already in the venue's media map.
        media: MediaHash,
        /// How long it shows, 1 ms ..= 24 h.
        duration_ms: u64,
        /// When it may play; absent or `None` for always.
        #[serde(default)]
        window: Option<ScheduleWindow>,
    },
    /// [`ops::move_item`].
    MoveItem {
        /// The playlist.
        playlist: PlaylistId,
        /// The item to move.
        item: ItemId,
        /// Where it goes.
        at: Placement,
    },
    /// [`ops::set_item_duration`].
    SetItemDuration {
        /// The playlist.
        playlist: PlaylistId,
        /// The item.
        item: ItemId,
        /// How long it shows, 1 ms ..= 24 h.
        duration_ms: u64,
    },
    /// [`ops::set_item_window`].
    SetItemWindow {
        /// The playlist.
        playlist: PlaylistId,
        /// The item.
        item: ItemId,
        /// When it may play, or `None` for always.
        window: Option<ScheduleWindow>,
    },
    /// [`ops::remove_item`].
    RemoveItem {
        /// The playlist.
        playlist: PlaylistId,
        /// The item.
        item: ItemId,
    },
    /// [`ops::add_media`].
    AddMedia {
        /// The BLAKE3 hash of the media's bytes.
        hash: MediaHash,
        /// Its file name, content type and size.
        meta: MediaMeta,
    },
    /// [`ops::remove_media`].
    RemoveMedia {
        /// The media's hash.
        hash: MediaHash,
    },
}

impl VenueCommand {
    /// What a person needs their role to allow to take this operation
    /// ([`crate::authz::authorize`]).
    pub fn action(&self) -> crate::authz::Action {
        use crate::authz::Action;
        use VenueCommand as C;
        match self {
            C::RenameVenue { .. } | C::SetTimezone { .. } => Action::VenueEdit,
            C::AddKiosk { .. } | C::RemoveKiosk { .. } => Action::PairingManage,
            C::RenameKiosk { .. } | C::SetKioskGroup { .. } | C::SetOrientation { .. } => {
                Action::KioskEdit
            }
            C::AddMedia { .. } | C::RemoveMedia { .. } => Action::MediaWrite,
            C::SetDefaultPlaylist { .. }
            | C::AssignPlaylist { .. }
            | C::AssignGroupPlaylist { .. }
            | C::CreatePlaylist { .. }
            | C::RenamePlaylist { .. }
            | C::RemovePlaylist { .. }
            | C::InsertItem { .. }
            | C::MoveItem { .. }
            | C::SetItemDuration { .. }
            | C::SetItemWindow { .. }
            | C::RemoveItem { .. } => Action::ContentWrite,
        }
    }

    /// Apply the operation (uncommitted; the caller commits and persists).
    pub fn apply(&self, doc: &mut AutoCommit) -> Result<(), DocOpError> {
        use VenueCommand as C;
        match self {
            C::RenameVenue { name } => ops::rename_venue(doc, name),
            C::SetTimezone { timezone } => ops::set_timezone(doc, timezone),
            C::SetDefaultPlaylist { playlist } => ops::set_default_playlist(doc, *playlist),
            C::AddKiosk { id, name } => ops::add_kiosk(doc, *id, name),
            C::RenameKiosk { id, name } => ops::rename_kiosk(doc, *id, name),
            C::SetKioskGroup { id, group } => ops::set_kiosk_group(doc, *id, group.as_deref()),
            C::SetOrientation { id, orientation } => ops::set_orientation(doc, *id, *orientation),
            C::RemoveKiosk { id } => ops::remove_kiosk(doc, *id),
            C::AssignPlaylist { kiosk, playlist } => ops::assign_playlist(doc, *kiosk, *playlist),
            C::AssignGroupPlaylist { group, playlist } => {
                ops::assign_group_playlist(doc, group, *playlist)
            }
            C::CreatePlaylist { id, name } => ops::create_playlist(doc, *id, name),
            C::RenamePlaylist { id, name } => ops::rename_playlist(doc, *id, name),
            C::RemovePlaylist { id } => ops::remove_playlist(doc, *id),
            C::InsertItem {
                playlist,
                item,
                at,
                media,
                duration_ms,
                window,
            } => ops::insert_item(doc, *playlist, *item, *at, *media, *duration_ms, *window),
            C::MoveItem { playlist, item, at } => ops::move_item(doc, *playlist, *item, *at),
            C::SetItemDuration {
                playlist,
                item,
                duration_ms,
            } => ops::set_item_duration(doc, *playlist, *item, *duration_ms),
            C::SetItemWindow {
                playlist,
                item,
                window,
            } => ops::set_item_window(doc, *playlist, *item, *window),
            C::RemoveItem { playlist, item } => ops::remove_item(doc, *playlist, *item),
            C::AddMedia { hash, meta } => ops::add_media(doc, *hash, meta),
            C::RemoveMedia { hash } => ops::remove_media(doc, *hash),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_apply_from_json() {
        let mut doc = ops::new_venue_doc("The Anchor", "Europe/London").unwrap();
        let kiosk = KioskId::random();
        let json = format!(r#"{{"op": "add_kiosk", "id": "{kiosk}", "name": "Bar screen"}}"#);
        let cmd: VenueCommand = serde_json::from_str(&json).unwrap();
        cmd.apply(&mut doc).unwrap();
        let venue = ops::load_venue(&doc).unwrap();
        assert_eq!(venue.kiosks[&kiosk].name, "Bar screen");
        let err =
            serde_json::from_str::<VenueCommand>(r#"{"op": "add_kiosk", "id": "x", "name": "y"}"#)
                .unwrap_err();
        assert!(err.to_string().contains("kiosk id"), "{err}");
        assert!(serde_json::from_str::<VenueCommand>(r#"{"op": "launch_rockets"}"#).is_err());
    }

    #[test]
    fn placements_read_naturally_in_json() {
        let item = ItemId::random();
        assert_eq!(serde_json::to_string(&Placement::End).unwrap(), r#""end""#);
        let after: Placement = serde_json::from_str(&format!(r#"{{"after": "{item}"}}"#)).unwrap();
        assert_eq!(after, Placement::After(item));
    }
}
