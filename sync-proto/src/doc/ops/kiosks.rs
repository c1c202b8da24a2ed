//! Operations on kiosks: adding, renaming, grouping, orienting, removing, assigning playlists.

use automerge::transaction::Transactable as _;
use automerge::{AutoCommit, ReadDoc as _};

use crate::doc::schema::{Kiosk, Orientation};
use crate::ids::{KioskId, PlaylistId};

use super::DocOpError;
use super::navigate::{kiosk_obj, map_at, playlist_obj, top};
use super::validate::validate_name;

/// Adds a kiosk: landscape, no group, no playlist of its own.
///
/// Ids must be fresh (random): two replicas adding the *same* id concurrently would create
/// two objects under one key, and one of them (with any edits made to it) would lose.
pub fn add_kiosk(doc: &mut AutoCommit, id: KioskId, name: &str) -> Result<(), DocOpError> {
    let kiosk = Kiosk {
        name: name.to_owned(),
        group: None,
        orientation: Orientation::default(),
        playlist: None,
    };
    insert_kiosk(doc, id, &kiosk)
}

/// A kiosk's name and, if it has one, its group name.
pub(super) fn validate_kiosk_names(name: &str, group: Option<&str>) -> Result<(), DocOpError> {
    validate_name("kiosk", name)?;
    group.map_or(Ok(()), |g| validate_name("group", g))
}

/// Adds kiosk `id` as `kiosk` describes it, its name and group validated; refused if the
/// id is taken.
pub(super) fn insert_kiosk(
    doc: &mut AutoCommit,
    id: KioskId,
    kiosk: &Kiosk,
) -> Result<(), DocOpError> {
    validate_kiosk_names(&kiosk.name, kiosk.group.as_deref())?;
    let kiosks = top(doc, "kiosks")?;
    let key = id.to_string();
    if map_at(doc, &kiosks, &key)?.is_some() {
        return Err(DocOpError::KioskExists(id));
    }
    autosurgeon::reconcile_prop(doc, &kiosks, key.as_str(), kiosk)?;
    Ok(())
}

/// Renames a kiosk (LWW).
pub fn rename_kiosk(doc: &mut AutoCommit, id: KioskId, name: &str) -> Result<(), DocOpError> {
    validate_name("kiosk", name)?;
    let kiosk = kiosk_obj(doc, id)?;
    autosurgeon::reconcile_prop(doc, &kiosk, "name", name)?;
    Ok(())
}

/// Puts a kiosk in a group, or in none (LWW).
pub fn set_kiosk_group(
    doc: &mut AutoCommit,
    id: KioskId,
    group: Option<&str>,
) -> Result<(), DocOpError> {
    if let Some(g) = group {
        validate_name("group", g)?;
    }
    let kiosk = kiosk_obj(doc, id)?;
    autosurgeon::reconcile_prop(doc, &kiosk, "group", group)?;
    Ok(())
}

/// Sets how a kiosk's screen is mounted (LWW).
pub fn set_orientation(
    doc: &mut AutoCommit,
    id: KioskId,
    orientation: Orientation,
) -> Result<(), DocOpError> {
    let kiosk = kiosk_obj(doc, id)?;
    autosurgeon::reconcile_prop(doc, &kiosk, "orientation", orientation)?;
    Ok(())
}

/// Removes a kiosk; a concurrent edit of it elsewhere is lost with it (remove beats edit).
pub fn remove_kiosk(doc: &mut AutoCommit, id: KioskId) -> Result<(), DocOpError> {
    let kiosks = top(doc, "kiosks")?;
    let key = id.to_string();
    if map_at(doc, &kiosks, &key)?.is_none() {
        return Err(DocOpError::KioskNotFound(id));
    }
    doc.delete(&kiosks, key.as_str())?;
    Ok(())
}

/// Gives a kiosk its own playlist (which must exist), or removes it (LWW).
pub fn assign_playlist(
    doc: &mut AutoCommit,
    kiosk: KioskId,
    playlist: Option<PlaylistId>,
) -> Result<(), DocOpError> {
    let kiosk = kiosk_obj(doc, kiosk)?;
    if let Some(p) = playlist {
        playlist_obj(doc, p)?;
    }
    autosurgeon::reconcile_prop(doc, &kiosk, "playlist", playlist)?;
    Ok(())
}

/// Sets the playlist (which must exist) of a kiosk group, or removes the group's entry.
/// Each group's entry is LWW; a group need not have any kiosk yet.
pub fn assign_group_playlist(
    doc: &mut AutoCommit,
    group: &str,
    playlist: Option<PlaylistId>,
) -> Result<(), DocOpError> {
    validate_name("group", group)?;
    let groups = top(doc, "group_playlists")?;
    match playlist {
        Some(p) => {
            playlist_obj(doc, p)?;
            autosurgeon::reconcile_prop(doc, &groups, group, p)?;
        }
        None => {
            // Deleting an absent key is a no-op in automerge; skip it to say so explicitly.
            if doc.get(&groups, group)?.is_some() {
                doc.delete(&groups, group)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::ops::test_support::*;
    use crate::doc::ops::*;

    #[test]
    fn add_kiosk_sets_defaults_and_refuses_duplicates_and_bad_names() {
        let mut doc = venue();
        add_kiosk(&mut doc, kid(1), "Door").unwrap();
        let k = &load_venue(&doc).unwrap().kiosks[&kid(1)];
        assert_eq!(
            *k,
            Kiosk {
                name: "Door".into(),
                group: None,
                orientation: Orientation::Landscape,
                playlist: None
            }
        );
        assert!(
            matches!(add_kiosk(&mut doc, kid(1), "Again"), Err(DocOpError::KioskExists(id)) if id == kid(1))
        );
        let long = "x".repeat(MAX_NAME_CHARS);
        add_kiosk(&mut doc, kid(2), &long).unwrap();
        let too_long = "é".repeat(MAX_NAME_CHARS + 1);
        for bad in ["", " \t", "a\nb", too_long.as_str()] {
            let err = add_kiosk(&mut doc, kid(3), bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    DocOpError::InvalidName {
                        what: "kiosk",
                        max: MAX_NAME_CHARS,
                        ..
                    }
                ),
                "{bad:?}"
            );
        }
        assert_eq!(load_venue(&doc).unwrap().kiosks.len(), 2);
    }

    #[test]
    fn kiosk_edits_write_their_field_and_name_missing_kiosks() {
        let mut doc = venue();
        add_kiosk(&mut doc, kid(1), "Door").unwrap();
        create_playlist(&mut doc, pid(1), "Main").unwrap();
        rename_kiosk(&mut doc, kid(1), "Front door").unwrap();
        set_kiosk_group(&mut doc, kid(1), Some("entrance")).unwrap();
        set_orientation(&mut doc, kid(1), Orientation::PortraitFlipped).unwrap();
        assign_playlist(&mut doc, kid(1), Some(pid(1))).unwrap();
        let k = &load_venue(&doc).unwrap().kiosks[&kid(1)];
        assert_eq!(
            *k,
            Kiosk {
                name: "Front door".into(),
                group: Some("entrance".into()),
                orientation: Orientation::PortraitFlipped,
                playlist: Some(pid(1)),
            }
        );
        set_kiosk_group(&mut doc, kid(1), None).unwrap();
        assign_playlist(&mut doc, kid(1), None).unwrap();
        let k = &load_venue(&doc).unwrap().kiosks[&kid(1)];
        assert_eq!((k.group.as_deref(), k.playlist), (None, None));

        assert!(matches!(
            set_kiosk_group(&mut doc, kid(1), Some("")),
            Err(DocOpError::InvalidName { what: "group", .. })
        ));
        assert!(matches!(
            assign_playlist(&mut doc, kid(1), Some(pid(7))),
            Err(DocOpError::PlaylistNotFound(_))
        ));
        let missing = kid(5);
        assert!(
            matches!(rename_kiosk(&mut doc, missing, "N"), Err(DocOpError::KioskNotFound(id)) if id == missing)
        );
        assert!(matches!(
            set_orientation(&mut doc, missing, Orientation::Portrait),
            Err(DocOpError::KioskNotFound(_))
        ));
        assert!(matches!(
            assign_playlist(&mut doc, missing, None),
            Err(DocOpError::KioskNotFound(_))
        ));
        let msg = remove_kiosk(&mut doc, missing).unwrap_err().to_string();
        assert_eq!(msg, format!("kiosk {missing} does not exist"));
        remove_kiosk(&mut doc, kid(1)).unwrap();
        assert!(load_venue(&doc).unwrap().kiosks.is_empty());
    }

    #[test]
    fn group_playlists_need_an_existing_playlist_and_none_deletes_the_entry() {
        let mut doc = venue();
        assert!(matches!(
            assign_group_playlist(&mut doc, "bar", Some(pid(1))),
            Err(DocOpError::PlaylistNotFound(_))
        ));
        create_playlist(&mut doc, pid(1), "Main").unwrap();
        assign_group_playlist(&mut doc, "bar", Some(pid(1))).unwrap();
        assert_eq!(
            load_venue(&doc).unwrap().group_playlists.get("bar"),
            Some(&pid(1))
        );
        assign_group_playlist(&mut doc, "bar", None).unwrap();
        assert!(load_venue(&doc).unwrap().group_playlists.is_empty());
        doc.commit();
        assign_group_playlist(&mut doc, "bar", None).unwrap();
        assert_eq!(pending(&doc), 0, "clearing an absent entry writes nothing");
        assert!(matches!(
            assign_group_playlist(&mut doc, " ", None),
            Err(DocOpError::InvalidName { .. })
        ));
    }
}
