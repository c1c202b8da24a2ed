//! Operations that change the venue and org documents, each validating its input and writing
//! only the fields it changes.
//!
//! **Invariant: a document is created once.** [`new_venue_doc`] and [`new_org_doc`] are
//! called exactly once per venue / org, by central; every other replica (a hub, another
//! central worker) starts from a fork, a load or a sync of that one document. Two documents
//! created independently would each hold their own `kiosks`, `playlists`, … map objects, and
//! merging them would make the top-level keys conflict, so that one side's whole map (with
//! everything in it) loses. Never call the constructors to "initialise" a replica.
//!
//! **Why targeted writes.** Each operation navigates to the object it changes and puts or
//! deletes just the keys it means to change (through autosurgeon's `reconcile_prop` so the
//! encoding matches [`crate::doc`]'s schema types). It never hydrates the whole document and
//! reconciles it back: that would cost O(document) per operation and, run on a stale copy,
//! would rewrite fields that another replica changed meanwhile.
//!
//! **Writing the value a field already has is not a write.** automerge drops a put of the
//! value a key already holds (unless the key holds concurrent values, which the put then
//! resolves). So "rename to the current name" neither makes a change nor overrides a
//! concurrent rename elsewhere. This is also why a new schedule window is written as a fresh
//! object: field by field, the fields it shares with the old window would be dropped and a
//! merge with a concurrent window edit could mix the two.
//!
//! **Validation before writing.** Every operation checks everything it can (inputs, existence
//! of what it refers to, the schema version) before its first write, so a returned
//! [`DocOpError`] other than the wrapped automerge / autosurgeon variants means the document
//! was not touched. Those wrapped variants indicate a corrupt document or a bug; operations
//! do not commit, so the caller may `rollback()` the pending transaction then.
//!
//! **Checks are local.** "The playlist must exist" and "media still in use" are checked
//! against this replica's view. A concurrent removal elsewhere can still leave a dangling
//! reference after a merge (a kiosk assigned to a playlist that another replica removed
//! at the same time, an item whose media was removed concurrently): readers such as the
//! manifest treat a reference to something absent as absent.
//!
//! **Item order.** Items are ordered by (`position`, item id). A new position is computed
//! with `fractional_index` between the neighbours at the requested spot; it is deterministic,
//! so two replicas inserting at the same spot concurrently produce the *same* position and
//! the tie is broken by item id. When a later insert or move targets the gap inside such a
//! tie, the tied items after the anchor are given fresh, distinct positions in their current
//! order, so "immediately after the anchor" always holds locally.
//!
//! **Layout.** One submodule per part of the documents: `create` (constructors, whole-document
//! reads, the schema check), `venue`, `kiosks`, `grants`, `playlists` (and their items),
//! `media`, `org`; and the helpers they share: `validate`, `navigate` (finding the object
//! to change) and `positions` (fractional-index placement). Everything public is re-exported
//! here, so callers name `ops::add_kiosk`, never a submodule.

mod create;
mod grants;
mod kiosks;
mod media;
mod navigate;
mod org;
mod playlists;
mod positions;
#[cfg(test)]
mod test_support;
mod validate;
mod venue;

use autosurgeon::{HydrateError, ReconcileError};

use automerge::AutomergeError;

use crate::ids::{GrantId, ItemId, KioskId, MediaHash, PlaylistId};
use crate::schedule::ScheduleError;

pub use create::{load_org, load_venue, new_org_doc, new_venue_doc, ordered_items, schema_version};
pub use grants::{
    Redemption, add_kiosk_grant, find_kiosk_grant, redeem_kiosk_grant, remove_kiosk_grant,
};
pub use kiosks::{
    add_kiosk, assign_group_playlist, assign_playlist, remove_kiosk, rename_kiosk, set_kiosk_group,
    set_orientation,
};
pub use media::{add_media, check_media_meta, remove_media};
pub use org::{add_library_media, remove_library_media, set_org_defaults};
pub use playlists::{
    create_playlist, insert_item, move_item, remove_item, remove_playlist, rename_playlist,
    set_item_duration, set_item_window,
};
pub use venue::{rename_venue, set_default_playlist, set_timezone};

/// Longest display name (venue, kiosk, playlist, group), in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest media file name, in characters.
pub const MAX_MEDIA_NAME_CHARS: usize = 255;
/// Longest media content type, in bytes (RFC 6838 allows 127 for each half; one is plenty).
pub const MAX_CONTENT_TYPE_LEN: usize = 127;
/// Longest time an item may show: 24 hours, in milliseconds.
pub const MAX_ITEM_DURATION_MS: u64 = 24 * 60 * 60 * 1000;
/// Most kiosk grants that may be open (unused, unexpired) in one venue at once.
pub const MAX_OPEN_KIOSK_GRANTS: usize = 1_000;

/// Why a document operation was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DocOpError {
    /// The time zone is not an IANA name known to chrono-tz; use one such as `Europe/Berlin`.
    #[error("unknown time zone {0:?}: use an IANA name such as \"Europe/Berlin\"")]
    UnknownTimezone(String),
    /// A name is blank, too long or contains control characters; choose another name.
    #[error(
        "{what} name {name:?} is invalid: it must be 1 to {max} characters, not blank, without control characters"
    )]
    InvalidName {
        /// What was being named ("kiosk", "playlist", "group", …).
        what: &'static str,
        /// The rejected name (clipped to 120 characters).
        name: String,
        /// The longest allowed name, in characters.
        max: usize,
    },
    /// The media content type is not of the form `type/subtype`; send e.g. `image/png`.
    #[error("media content type {0:?} is invalid: expected type/subtype such as \"image/png\"")]
    InvalidContentType(String),
    /// An item duration outside 1 ms ..= 24 h; pick a duration in that range.
    #[error(
        "item duration {ms} ms is out of range: it must be 1 to {MAX_ITEM_DURATION_MS} ms (24 h)"
    )]
    InvalidDuration {
        /// The rejected duration in milliseconds.
        ms: u64,
    },
    /// The schedule window is invalid; fix the window as the inner error says.
    #[error("invalid schedule window: {0}")]
    InvalidWindow(#[from] ScheduleError),
    /// A kiosk with this id is already in the document; use a fresh id.
    #[error("kiosk {0} already exists")]
    KioskExists(KioskId),
    /// No kiosk with this id in this replica's view of the document.
    #[error("kiosk {0} does not exist")]
    KioskNotFound(KioskId),
    /// A playlist with this id is already in the document; use a fresh id.
    #[error("playlist {0} already exists")]
    PlaylistExists(PlaylistId),
    /// No playlist with this id in this replica's view of the document.
    #[error("playlist {0} does not exist")]
    PlaylistNotFound(PlaylistId),
    /// An item with this id is already in the playlist; use a fresh id.
    #[error("item {item} already exists in playlist {playlist}")]
    ItemExists {
        /// The playlist.
        playlist: PlaylistId,
        /// The duplicate item id.
        item: ItemId,
    },
    /// The item (to change, or to place after) is not in the playlist.
    #[error("item {item} is not in playlist {playlist}")]
    ItemNotFound {
        /// The playlist.
        playlist: PlaylistId,
        /// The missing item id.
        item: ItemId,
    },
    /// An item cannot be moved to right after itself; name a different anchor item.
    #[error("item {0} cannot be placed after itself")]
    PlaceAfterItself(ItemId),
    /// The media is not in the document's media map (or the org library); add it first.
    #[error("media {0} is not in the document: add its metadata first")]
    MediaNotFound(MediaHash),
    /// The media is still used by items of these playlists; remove those items first.
    #[error("media {hash} is still used by playlist(s) {}: remove those items first", join_ids(.playlists))]
    MediaInUse {
        /// The media that was to be removed.
        hash: MediaHash,
        /// Every playlist holding an item that shows it.
        playlists: Vec<PlaylistId>,
    },
    /// An item's stored position is not a valid fractional index (a corrupt document);
    /// moving that item to the front or end rewrites it.
    #[error("item {item} of playlist {playlist} has a corrupt position {position:?}")]
    CorruptPosition {
        /// The playlist.
        playlist: PlaylistId,
        /// The item whose position is corrupt.
        item: ItemId,
        /// The stored text (clipped to 120 characters).
        position: String,
    },
    /// A kiosk grant with this id is already in the document; use a fresh id.
    #[error("kiosk grant {0} already exists")]
    GrantExists(GrantId),
    /// No kiosk grant with this id in this replica's view (never made, revoked, or not
    /// synced here yet).
    #[error("kiosk grant {0} does not exist (unknown, revoked, or not synced here yet)")]
    GrantNotFound(GrantId),
    /// The grant was already redeemed, for another kiosk; a grant pairs one kiosk only.
    #[error("kiosk grant {grant} was already used to pair kiosk {kiosk}")]
    GrantUsed {
        /// The grant.
        grant: GrantId,
        /// The kiosk it paired.
        kiosk: KioskId,
    },
    /// The grant expired before it was redeemed; central makes a new one.
    #[error("kiosk grant {grant} expired (at {expires_at_ms} ms since the Unix epoch)")]
    GrantExpired {
        /// The grant.
        grant: GrantId,
        /// When it expired.
        expires_at_ms: i64,
    },
    /// A new grant is inconsistent (expiry not after creation, or already marked used).
    #[error("invalid kiosk grant: {0}")]
    InvalidGrant(String),
    /// Too many grants are open in this venue; revoke unused ones or let them expire.
    #[error(
        "{max} kiosk codes are already open for this venue: revoke unused ones or let them expire"
    )]
    TooManyGrants {
        /// The most open grants allowed.
        max: usize,
    },
    /// The document has no schema version: it is not a Taplink document (or is empty).
    #[error("the document has no schema version: it is not a Taplink document")]
    MissingSchema,
    /// The document was written by a newer Taplink; upgrade this component to read it.
    #[error(
        "the document has schema version {found}, newer than {supported} which this build understands: upgrade"
    )]
    NewerSchema {
        /// The version in the document.
        found: u64,
        /// The newest version this build reads.
        supported: u64,
    },
    /// The document does not have the shape of the schema (a missing map, a key that is not
    /// an id); it was not written by these operations and should be restored from a backup.
    #[error("the document is malformed: {0}")]
    Malformed(String),
    /// automerge refused an operation (a corrupt document or a bug).
    #[error("automerge: {0}")]
    Automerge(#[source] Box<AutomergeError>),
    /// Writing a value with autosurgeon failed (a corrupt document or a bug).
    #[error("writing the document: {0}")]
    Reconcile(#[source] Box<ReconcileError>),
    /// Reading the document into the schema types failed: it does not match the schema.
    #[error("reading the document: {0}")]
    Hydrate(#[source] Box<HydrateError>),
}

// The wrapped errors are boxed: unboxed they are 120 bytes each and would make every
// `Result` of these operations that large, for errors that should never happen.
impl From<AutomergeError> for DocOpError {
    fn from(e: AutomergeError) -> Self {
        DocOpError::Automerge(Box::new(e))
    }
}

impl From<ReconcileError> for DocOpError {
    fn from(e: ReconcileError) -> Self {
        DocOpError::Reconcile(Box::new(e))
    }
}

impl From<HydrateError> for DocOpError {
    fn from(e: HydrateError) -> Self {
        DocOpError::Hydrate(Box::new(e))
    }
}

fn join_ids(ids: &[PlaylistId]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn clip(s: &str) -> String {
    s.chars().take(120).collect()
}

/// Where an item goes in a playlist's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// Before every other item.
    Front,
    /// Immediately after this item of the same playlist.
    After(ItemId),
    /// After every other item.
    End,
}

impl From<Option<ItemId>> for Placement {
    /// `None` is the front, `Some(id)` right after `id`.
    fn from(after: Option<ItemId>) -> Self {
        after.map_or(Placement::Front, Placement::After)
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn ops_write_only_their_fields_whatever_the_document_size() {
        let mut doc = venue_with_playlist();
        for i in 0..40 {
            add_kiosk(&mut doc, kid(100 + i), "K").unwrap();
            insert(&mut doc, 100 + i, Placement::End);
        }
        doc.commit();
        let mut count = |f: &mut dyn FnMut(&mut AutoCommit)| {
            f(&mut doc);
            let n = pending(&doc);
            doc.commit();
            n
        };
        assert_eq!(count(&mut |d| rename_kiosk(d, kid(100), "New").unwrap()), 1);
        assert_eq!(
            count(&mut |d| set_orientation(d, kid(101), Orientation::Portrait).unwrap()),
            1
        );
        assert_eq!(
            count(&mut |d| set_item_duration(d, pid(1), iid(120), 9).unwrap()),
            1
        );
        assert_eq!(
            count(&mut |d| move_item(d, pid(1), iid(139), Placement::Front).unwrap()),
            1
        );
        assert_eq!(count(&mut |d| remove_kiosk(d, kid(102)).unwrap()), 1);
        // A window is one fresh map plus its three fields.
        let w = ScheduleWindow::new(Weekdays::ALL, 0, 60).unwrap();
        assert_eq!(
            count(&mut |d| set_item_window(d, pid(1), iid(121), Some(w)).unwrap()),
            4
        );
        // An item is one map, four fields (window null).
        assert_eq!(count(&mut |d| insert(d, 7, Placement::After(iid(110)))), 5);
    }

    #[test]
    fn edits_of_different_fields_on_stale_replicas_both_survive() {
        let mut origin = venue();
        add_kiosk(&mut origin, kid(1), "Door").unwrap();
        origin.commit();
        let mut a = fork(&mut origin, 1);
        let mut b = fork(&mut origin, 2);
        rename_kiosk(&mut a, kid(1), "Front door").unwrap();
        set_orientation(&mut b, kid(1), Orientation::Portrait).unwrap();
        set_kiosk_group(&mut b, kid(1), Some("lobby")).unwrap();
        a.merge(&mut b).unwrap();
        let k = &load_venue(&a).unwrap().kiosks[&kid(1)];
        assert_eq!(k.name, "Front door");
        assert_eq!(k.orientation, Orientation::Portrait);
        assert_eq!(k.group.as_deref(), Some("lobby"));
    }

    #[test]
    fn remove_beats_a_concurrent_edit() {
        let mut origin = venue_with_playlist();
        add_kiosk(&mut origin, kid(1), "Door").unwrap();
        insert(&mut origin, 1, Placement::End);
        origin.commit();
        let mut a = fork(&mut origin, 1);
        let mut b = fork(&mut origin, 2);
        remove_kiosk(&mut a, kid(1)).unwrap();
        remove_item(&mut a, pid(1), iid(1)).unwrap();
        rename_kiosk(&mut b, kid(1), "Still here?").unwrap();
        move_item(&mut b, pid(1), iid(1), Placement::Front).unwrap();
        set_item_duration(&mut b, pid(1), iid(1), 7).unwrap();
        a.merge(&mut b).unwrap();
        let v = load_venue(&a).unwrap();
        assert!(v.kiosks.is_empty());
        assert!(v.playlists[&pid(1)].items.is_empty());
    }
}
