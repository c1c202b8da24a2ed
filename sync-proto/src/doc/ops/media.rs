//! Operations on the venue's media map.

use automerge::AutoCommit;
use automerge::transaction::Transactable as _;

use crate::doc::schema::MediaMeta;
use crate::ids::MediaHash;

use super::DocOpError;
use super::navigate::{map_at, playlists_using, top};
use super::validate::validate_meta;

/// Adds a media entry, or updates the fields of an existing one in place.
///
/// Re-adding a hash this replica already has is a field-by-field LWW update. Two replicas
/// that both add a hash neither had yet create two entries under one key, and one whole entry
/// wins the merge; both describe the same bytes, so either is right.
pub fn add_media(
    doc: &mut AutoCommit,
    hash: MediaHash,
    meta: &MediaMeta,
) -> Result<(), DocOpError> {
    validate_meta(meta)?;
    let media = top(doc, "media")?;
    autosurgeon::reconcile_prop(doc, &media, hash.to_string().as_str(), meta)?;
    Ok(())
}

/// Whether [`add_media`] (and [`add_library_media`](super::add_library_media)) would take
/// `meta`: lets an upload refuse a bad name before its bytes arrive.
pub fn check_media_meta(meta: &MediaMeta) -> Result<(), DocOpError> {
    validate_meta(meta)
}

/// Removes a media entry, refused while an item of this replica's view still shows it.
pub fn remove_media(doc: &mut AutoCommit, hash: MediaHash) -> Result<(), DocOpError> {
    let media = top(doc, "media")?;
    let key = hash.to_string();
    if map_at(doc, &media, &key)?.is_none() {
        return Err(DocOpError::MediaNotFound(hash));
    }
    let users = playlists_using(doc, &key)?;
    if !users.is_empty() {
        return Err(DocOpError::MediaInUse {
            hash,
            playlists: users,
        });
    }
    doc.delete(&media, key.as_str())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::ops::test_support::*;
    use crate::doc::ops::*;

    #[test]
    fn media_is_upserted_validated_and_not_removed_while_used() {
        let mut doc = venue_with_playlist();
        create_playlist(&mut doc, pid(2), "Other").unwrap();
        insert(&mut doc, 1, Placement::End);
        insert_item(&mut doc, pid(2), iid(1), Placement::End, hash(1), 5, None).unwrap();
        add_media(
            &mut doc,
            hash(1),
            &MediaMeta {
                name: "b.png".into(),
                content_type: "image/png".into(),
                size: 10,
            },
        )
        .unwrap();
        assert_eq!(load_venue(&doc).unwrap().media[&hash(1)].name, "b.png");
        for ct in ["png", "image/", "/png", "image/p ng", "a/b/c"] {
            let m = MediaMeta {
                name: "x".into(),
                content_type: ct.into(),
                size: 1,
            };
            assert!(
                matches!(
                    add_media(&mut doc, hash(3), &m),
                    Err(DocOpError::InvalidContentType(_))
                ),
                "{ct}"
            );
        }
        assert!(matches!(
            add_media(&mut doc, hash(3), &meta("")),
            Err(DocOpError::InvalidName { what: "media", .. })
        ));

        let err = remove_media(&mut doc, hash(1)).unwrap_err();
        let DocOpError::MediaInUse { playlists, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(*playlists, vec![pid(1), pid(2)]);
        assert!(
            err.to_string().contains(&pid(1).to_string())
                && err.to_string().contains(&pid(2).to_string())
        );
        assert!(matches!(
            remove_media(&mut doc, hash(2)),
            Err(DocOpError::MediaNotFound(_))
        ));
        remove_item(&mut doc, pid(1), iid(1)).unwrap();
        remove_playlist(&mut doc, pid(2)).unwrap();
        remove_media(&mut doc, hash(1)).unwrap();
        assert!(load_venue(&doc).unwrap().media.is_empty());
    }
}
