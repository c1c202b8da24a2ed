//! Operations on playlists and their items.

use std::collections::BTreeMap;

use automerge::transaction::Transactable as _;
use automerge::{AutoCommit, ObjType, ReadDoc as _};

use crate::doc::schema::{Playlist, PlaylistItem};
use crate::ids::{ItemId, MediaHash, PlaylistId};
use crate::schedule::ScheduleWindow;

use super::navigate::{get_str, item_obj, items_obj, map_at, playlist_obj, top};
use super::positions::{place, read_slots, write_respaced};
use super::validate::{validate_duration, validate_name};
use super::{DocOpError, Placement};

/// Creates an empty playlist. Ids must be fresh (see [`add_kiosk`](super::add_kiosk)).
pub fn create_playlist(doc: &mut AutoCommit, id: PlaylistId, name: &str) -> Result<(), DocOpError> {
    validate_name("playlist", name)?;
    let playlists = top(doc, "playlists")?;
    let key = id.to_string();
    if map_at(doc, &playlists, &key)?.is_some() {
        return Err(DocOpError::PlaylistExists(id));
    }
    let playlist = Playlist {
        name: name.to_owned(),
        items: BTreeMap::new(),
    };
    autosurgeon::reconcile_prop(doc, &playlists, key.as_str(), &playlist)?;
    Ok(())
}

/// Renames a playlist (LWW).
pub fn rename_playlist(doc: &mut AutoCommit, id: PlaylistId, name: &str) -> Result<(), DocOpError> {
    validate_name("playlist", name)?;
    let playlist = playlist_obj(doc, id)?;
    autosurgeon::reconcile_prop(doc, &playlist, "name", name)?;
    Ok(())
}

/// Removes a playlist with its items, and clears every assignment to it this replica can
/// see: kiosks' own playlists, group entries and the venue default. Assignments made
/// concurrently elsewhere survive the merge as dangling references (see module docs).
pub fn remove_playlist(doc: &mut AutoCommit, id: PlaylistId) -> Result<(), DocOpError> {
    let playlists = top(doc, "playlists")?;
    let kiosks = top(doc, "kiosks")?;
    let groups = top(doc, "group_playlists")?;
    let settings = top(doc, "settings")?;
    let key = id.to_string();
    if map_at(doc, &playlists, &key)?.is_none() {
        return Err(DocOpError::PlaylistNotFound(id));
    }
    let mut kiosks_using = Vec::new();
    for kiosk_key in doc.keys(&kiosks).collect::<Vec<_>>() {
        if let Some(kiosk) = map_at(doc, &kiosks, &kiosk_key)?
            && get_str(doc, &kiosk, "playlist")?.as_deref() == Some(key.as_str())
        {
            kiosks_using.push(kiosk);
        }
    }
    let mut groups_using = Vec::new();
    for group in doc.keys(&groups).collect::<Vec<_>>() {
        if get_str(doc, &groups, &group)?.as_deref() == Some(key.as_str()) {
            groups_using.push(group);
        }
    }
    let default_is_it =
        get_str(doc, &settings, "default_playlist")?.as_deref() == Some(key.as_str());

    for kiosk in kiosks_using {
        autosurgeon::reconcile_prop(doc, &kiosk, "playlist", None::<PlaylistId>)?;
    }
    for group in groups_using {
        doc.delete(&groups, group.as_str())?;
    }
    if default_is_it {
        autosurgeon::reconcile_prop(doc, &settings, "default_playlist", None::<PlaylistId>)?;
    }
    doc.delete(&playlists, key.as_str())?;
    Ok(())
}

/// Inserts a new item into a playlist at `at`.
///
/// The media must be in the venue's media map, the duration within 1 ms ..= 24 h and the
/// window valid. Item ids must be fresh within the playlist.
pub fn insert_item(
    doc: &mut AutoCommit,
    playlist: PlaylistId,
    item: ItemId,
    at: Placement,
    media: MediaHash,
    duration_ms: u64,
    window: Option<ScheduleWindow>,
) -> Result<(), DocOpError> {
    validate_duration(duration_ms)?;
    if let Some(w) = &window {
        w.validate()?;
    }
    let items = items_obj(doc, playlist)?;
    let key = item.to_string();
    if map_at(doc, &items, &key)?.is_some() {
        return Err(DocOpError::ItemExists { playlist, item });
    }
    let media_map = top(doc, "media")?;
    if map_at(doc, &media_map, &media.to_string())?.is_none() {
        return Err(DocOpError::MediaNotFound(media));
    }
    let slots = read_slots(doc, &items, playlist)?;
    let placed = place(playlist, &slots, at)?;
    let new_item = PlaylistItem {
        media,
        duration_ms,
        window,
        position: placed.position,
    };
    autosurgeon::reconcile_prop(doc, &items, key.as_str(), &new_item)?;
    write_respaced(doc, &items, &placed.respaced)?;
    Ok(())
}

/// Moves an item to `at` in its playlist: an LWW write of its `position` (plus fresh
/// positions for items tied with the anchor, see the module docs). Concurrent moves of the
/// same item keep one of them; the item is never duplicated or lost.
pub fn move_item(
    doc: &mut AutoCommit,
    playlist: PlaylistId,
    item: ItemId,
    at: Placement,
) -> Result<(), DocOpError> {
    if at == Placement::After(item) {
        return Err(DocOpError::PlaceAfterItself(item));
    }
    let items = items_obj(doc, playlist)?;
    let item_obj = map_at(doc, &items, &item.to_string())?
        .ok_or(DocOpError::ItemNotFound { playlist, item })?;
    let mut slots = read_slots(doc, &items, playlist)?;
    slots.retain(|s| s.id != item);
    let placed = place(playlist, &slots, at)?;
    autosurgeon::reconcile_prop(doc, &item_obj, "position", placed.position.as_str())?;
    write_respaced(doc, &items, &placed.respaced)?;
    Ok(())
}

/// Sets how long an item shows, 1 ms ..= 24 h (LWW).
pub fn set_item_duration(
    doc: &mut AutoCommit,
    playlist: PlaylistId,
    item: ItemId,
    duration_ms: u64,
) -> Result<(), DocOpError> {
    validate_duration(duration_ms)?;
    let item_obj = item_obj(doc, playlist, item)?;
    autosurgeon::reconcile_prop(doc, &item_obj, "duration_ms", duration_ms)?;
    Ok(())
}

/// Sets when an item may play (`None`: always).
///
/// The window is LWW *as a whole*: a new window is written as a fresh map object, so two
/// concurrent edits keep one window or the other, never a mix of their fields.
pub fn set_item_window(
    doc: &mut AutoCommit,
    playlist: PlaylistId,
    item: ItemId,
    window: Option<ScheduleWindow>,
) -> Result<(), DocOpError> {
    if let Some(w) = &window {
        w.validate()?;
    }
    let item_obj = item_obj(doc, playlist, item)?;
    match window {
        Some(w) => {
            // The fresh object makes this a conflict on the `window` key, not per field.
            doc.put_object(&item_obj, "window", ObjType::Map)?;
            autosurgeon::reconcile_prop(doc, &item_obj, "window", w)?;
        }
        None => autosurgeon::reconcile_prop(doc, &item_obj, "window", None::<ScheduleWindow>)?,
    }
    Ok(())
}

/// Removes an item from a playlist; a concurrent edit or move of it is lost with it.
pub fn remove_item(
    doc: &mut AutoCommit,
    playlist: PlaylistId,
    item: ItemId,
) -> Result<(), DocOpError> {
    let items = items_obj(doc, playlist)?;
    let key = item.to_string();
    if map_at(doc, &items, &key)?.is_none() {
        return Err(DocOpError::ItemNotFound { playlist, item });
    }
    doc.delete(&items, key.as_str())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::ops::positions::parse_position;
    use crate::doc::ops::test_support::*;
    use crate::doc::ops::*;
    use crate::schedule::Weekdays;

    #[test]
    fn playlists_are_created_once_renamed_and_validated() {
        let mut doc = venue();
        create_playlist(&mut doc, pid(1), "Main").unwrap();
        assert!(matches!(
            create_playlist(&mut doc, pid(1), "Dup"),
            Err(DocOpError::PlaylistExists(_))
        ));
        assert!(matches!(
            create_playlist(&mut doc, pid(2), ""),
            Err(DocOpError::InvalidName {
                what: "playlist",
                ..
            })
        ));
        rename_playlist(&mut doc, pid(1), "Evening").unwrap();
        assert!(matches!(
            rename_playlist(&mut doc, pid(2), "X"),
            Err(DocOpError::PlaylistNotFound(_))
        ));
        let v = load_venue(&doc).unwrap();
        assert_eq!(
            v.playlists[&pid(1)],
            Playlist {
                name: "Evening".into(),
                items: BTreeMap::new()
            }
        );
        assert_eq!(v.playlists.len(), 1);
    }

    #[test]
    fn remove_playlist_clears_every_assignment_to_it_and_only_those() {
        let mut doc = venue();
        create_playlist(&mut doc, pid(1), "Gone").unwrap();
        create_playlist(&mut doc, pid(2), "Kept").unwrap();
        add_kiosk(&mut doc, kid(1), "A").unwrap();
        add_kiosk(&mut doc, kid(2), "B").unwrap();
        assign_playlist(&mut doc, kid(1), Some(pid(1))).unwrap();
        assign_playlist(&mut doc, kid(2), Some(pid(2))).unwrap();
        assign_group_playlist(&mut doc, "g1", Some(pid(1))).unwrap();
        assign_group_playlist(&mut doc, "g2", Some(pid(2))).unwrap();
        set_default_playlist(&mut doc, Some(pid(1))).unwrap();
        remove_playlist(&mut doc, pid(1)).unwrap();
        let v = load_venue(&doc).unwrap();
        assert_eq!(
            v.playlists.keys().copied().collect::<Vec<_>>(),
            vec![pid(2)]
        );
        assert_eq!(v.kiosks[&kid(1)].playlist, None);
        assert_eq!(v.kiosks[&kid(2)].playlist, Some(pid(2)));
        assert_eq!(
            v.group_playlists,
            BTreeMap::from([("g2".to_string(), pid(2))])
        );
        assert_eq!(v.settings.default_playlist, None);
        assert!(matches!(
            remove_playlist(&mut doc, pid(1)),
            Err(DocOpError::PlaylistNotFound(_))
        ));
    }

    #[test]
    fn insert_item_validates_media_duration_window_and_ids() {
        let mut doc = venue_with_playlist();
        let ok_window = ScheduleWindow::new(Weekdays::WEEKEND, 600, 1320).unwrap();
        let bad_window = ScheduleWindow {
            days: Weekdays(0),
            start_min: 0,
            end_min: 60,
        };
        let ins = |doc: &mut AutoCommit, item, media, ms, window| {
            insert_item(doc, pid(1), iid(item), Placement::End, media, ms, window)
        };
        assert!(
            matches!(ins(&mut doc, 1, hash(2), 5000, None), Err(DocOpError::MediaNotFound(h)) if h == hash(2))
        );
        assert!(matches!(
            ins(&mut doc, 1, hash(1), 0, None),
            Err(DocOpError::InvalidDuration { ms: 0 })
        ));
        let over = MAX_ITEM_DURATION_MS + 1;
        assert!(
            matches!(ins(&mut doc, 1, hash(1), over, None), Err(DocOpError::InvalidDuration { ms }) if ms == over)
        );
        assert!(matches!(
            ins(&mut doc, 1, hash(1), 5, Some(bad_window)),
            Err(DocOpError::InvalidWindow(ScheduleError::NoDays))
        ));
        assert!(matches!(
            insert_item(&mut doc, pid(2), iid(1), Placement::End, hash(1), 5, None),
            Err(DocOpError::PlaylistNotFound(_))
        ));
        assert!(matches!(
            insert_item(&mut doc, pid(1), iid(1), Placement::After(iid(9)), hash(1), 5, None),
            Err(DocOpError::ItemNotFound { item, .. }) if item == iid(9)
        ));
        assert_eq!(pending(&doc), 0, "refused inserts write nothing");
        ins(&mut doc, 1, hash(1), 1, Some(ok_window)).unwrap();
        ins(&mut doc, 2, hash(1), MAX_ITEM_DURATION_MS, None).unwrap();
        assert!(
            matches!(ins(&mut doc, 1, hash(1), 5, None), Err(DocOpError::ItemExists { item, .. }) if item == iid(1))
        );
        let v = load_venue(&doc).unwrap();
        let item = &v.playlists[&pid(1)].items[&iid(1)];
        assert_eq!(
            (item.media, item.duration_ms, item.window),
            (hash(1), 1, Some(ok_window))
        );
        assert!(parse_position(&item.position).is_some());
    }

    #[test]
    fn placements_put_items_where_asked() {
        let mut doc = venue_with_playlist();
        insert(&mut doc, 1, Placement::End); // [1]
        insert(&mut doc, 2, Placement::End); // [1 2]
        insert(&mut doc, 3, Placement::Front); // [3 1 2]
        insert(&mut doc, 4, Placement::After(iid(1))); // [3 1 4 2]
        insert(&mut doc, 5, Placement::After(iid(2))); // [3 1 4 2 5]
        insert(&mut doc, 6, None.into()); // [6 3 1 4 2 5]
        insert(&mut doc, 7, Some(iid(3)).into()); // [6 3 7 1 4 2 5]
        assert_eq!(order(&doc, pid(1)), [6, 3, 7, 1, 4, 2, 5].map(iid));
    }

    #[test]
    fn move_item_reorders_and_refuses_bad_anchors() {
        let mut doc = venue_with_playlist();
        for i in 1..=4 {
            insert(&mut doc, i, Placement::End);
        }
        move_item(&mut doc, pid(1), iid(4), Placement::Front).unwrap(); // [4 1 2 3]
        move_item(&mut doc, pid(1), iid(1), Placement::End).unwrap(); // [4 2 3 1]
        move_item(&mut doc, pid(1), iid(2), Placement::After(iid(3))).unwrap(); // [4 3 2 1]
        move_item(&mut doc, pid(1), iid(4), Placement::After(iid(1))).unwrap(); // [3 2 1 4]
        assert_eq!(order(&doc, pid(1)), [3, 2, 1, 4].map(iid));
        doc.commit();
        assert!(matches!(
            move_item(&mut doc, pid(1), iid(2), Placement::After(iid(2))),
            Err(DocOpError::PlaceAfterItself(_))
        ));
        assert!(matches!(
            move_item(&mut doc, pid(1), iid(9), Placement::Front),
            Err(DocOpError::ItemNotFound { .. })
        ));
        assert!(matches!(
            move_item(&mut doc, pid(1), iid(2), Placement::After(iid(9))),
            Err(DocOpError::ItemNotFound { .. })
        ));
        assert_eq!(pending(&doc), 0);
        // A single item moved within a playlist of one stays the only item.
        remove_item(&mut doc, pid(1), iid(1)).unwrap();
        remove_item(&mut doc, pid(1), iid(2)).unwrap();
        remove_item(&mut doc, pid(1), iid(3)).unwrap();
        move_item(&mut doc, pid(1), iid(4), Placement::End).unwrap();
        assert_eq!(order(&doc, pid(1)), vec![iid(4)]);
    }

    #[test]
    fn item_edits_write_in_place_and_window_is_replaced_as_a_whole() {
        let mut doc = venue_with_playlist();
        insert(&mut doc, 1, Placement::End);
        set_item_duration(&mut doc, pid(1), iid(1), 12_000).unwrap();
        assert!(matches!(
            set_item_duration(&mut doc, pid(1), iid(1), 0),
            Err(DocOpError::InvalidDuration { .. })
        ));
        assert!(matches!(
            set_item_duration(&mut doc, pid(1), iid(2), 5),
            Err(DocOpError::ItemNotFound { .. })
        ));
        let bad = ScheduleWindow {
            days: Weekdays::ALL,
            start_min: 1440,
            end_min: 60,
        };
        assert!(matches!(
            set_item_window(&mut doc, pid(1), iid(1), Some(bad)),
            Err(DocOpError::InvalidWindow(ScheduleError::BadStart(1440)))
        ));
        // Each new window shares one field with the old one. Written field by field, the
        // shared fields would be elided by automerge (same value), and a merge would mix
        // days from one edit with times from the other.
        let w0 = ScheduleWindow::new(Weekdays::WEEKDAYS, 480, 600).unwrap();
        set_item_window(&mut doc, pid(1), iid(1), Some(w0)).unwrap();
        doc.commit();
        let w1 = ScheduleWindow::new(Weekdays::WEEKEND, 480, 700).unwrap();
        let w2 = ScheduleWindow::new(Weekdays::WEEKDAYS, 900, 1000).unwrap();
        let mut a = fork(&mut doc, 1);
        let mut b = fork(&mut doc, 2);
        set_item_window(&mut a, pid(1), iid(1), Some(w1)).unwrap();
        set_item_window(&mut b, pid(1), iid(1), Some(w2)).unwrap();
        a.merge(&mut b).unwrap();
        b.merge(&mut a).unwrap();
        let merged = load_venue(&a).unwrap().playlists[&pid(1)].items[&iid(1)].clone();
        assert!(
            merged.window == Some(w1) || merged.window == Some(w2),
            "{:?}",
            merged.window
        );
        assert_eq!(merged.duration_ms, 12_000);
        assert_eq!(load_venue(&b).unwrap(), load_venue(&a).unwrap());

        set_item_window(&mut a, pid(1), iid(1), None).unwrap();
        assert_eq!(
            load_venue(&a).unwrap().playlists[&pid(1)].items[&iid(1)].window,
            None
        );
        remove_item(&mut a, pid(1), iid(1)).unwrap();
        assert!(matches!(
            remove_item(&mut a, pid(1), iid(1)),
            Err(DocOpError::ItemNotFound { .. })
        ));
        assert!(load_venue(&a).unwrap().playlists[&pid(1)].items.is_empty());
    }
}
