//! Helpers shared by the operations' unit tests.

use automerge::ActorId;
use automerge::transaction::Transactable;

// Types the tests use beyond what their own module imports; a test module takes these, its
// parent's items and the operations' re-exports by glob.
pub(super) use automerge::transaction::Transactable as _;
pub(super) use automerge::{AutoCommit, ObjType, ReadDoc as _};

pub(super) use crate::doc::schema::{MediaMeta, Orientation};
pub(super) use crate::ids::{ItemId, KioskId, MediaHash, PlaylistId};
pub(super) use crate::schedule::{ScheduleWindow, Weekdays};

use super::{
    Placement, add_media, create_playlist, insert_item, load_venue, new_venue_doc, ordered_items,
};

pub(super) fn kid(n: u8) -> KioskId {
    KioskId::from_bytes([n; 16])
}
pub(super) fn pid(n: u8) -> PlaylistId {
    PlaylistId::from_bytes([n; 16])
}
pub(super) fn iid(n: u8) -> ItemId {
    ItemId::from_bytes([n; 16])
}
pub(super) fn hash(n: u8) -> MediaHash {
    MediaHash::from_bytes([n; 32])
}
pub(super) fn meta(name: &str) -> MediaMeta {
    MediaMeta {
        name: name.into(),
        content_type: "image/png".into(),
        size: 10,
    }
}
pub(super) fn venue() -> AutoCommit {
    new_venue_doc("Bar Nord", "Europe/Berlin").unwrap()
}
/// A venue with playlist 1 and media 1, ready for items.
pub(super) fn venue_with_playlist() -> AutoCommit {
    let mut doc = venue();
    create_playlist(&mut doc, pid(1), "Main").unwrap();
    add_media(&mut doc, hash(1), &meta("a.png")).unwrap();
    doc.commit();
    doc
}
pub(super) fn order(doc: &AutoCommit, p: PlaylistId) -> Vec<ItemId> {
    let v = load_venue(doc).unwrap();
    ordered_items(&v.playlists[&p])
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}
pub(super) fn insert(doc: &mut AutoCommit, item: u8, at: Placement) {
    insert_item(doc, pid(1), iid(item), at, hash(1), 5000, None).unwrap();
}
pub(super) fn pending(doc: &AutoCommit) -> usize {
    Transactable::pending_ops(doc)
}
pub(super) fn fork(doc: &mut AutoCommit, actor: u8) -> AutoCommit {
    doc.fork().with_actor(ActorId::from([actor; 16]))
}
