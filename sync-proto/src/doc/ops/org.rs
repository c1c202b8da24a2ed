//! Operations on the org document: the media library and the org defaults.

use automerge::transaction::Transactable as _;
use automerge::{AutoCommit, ROOT};

use crate::doc::schema::{MediaMeta, OrgDefaults};
use crate::ids::MediaHash;

use super::DocOpError;
use super::navigate::{map_at, top};
use super::validate::{validate_duration, validate_meta, validate_timezone};

/// Adds a media entry to the org library, or updates it in place (as
/// [`add_media`](super::add_media)).
pub fn add_library_media(
    doc: &mut AutoCommit,
    hash: MediaHash,
    meta: &MediaMeta,
) -> Result<(), DocOpError> {
    validate_meta(meta)?;
    let library = top(doc, "library")?;
    autosurgeon::reconcile_prop(doc, &library, hash.to_string().as_str(), meta)?;
    Ok(())
}

/// Removes a media entry from the org library. Venues keep their own copies of the metadata
/// of media they use, so no usage check is needed here.
pub fn remove_library_media(doc: &mut AutoCommit, hash: MediaHash) -> Result<(), DocOpError> {
    let library = top(doc, "library")?;
    let key = hash.to_string();
    if map_at(doc, &library, &key)?.is_none() {
        return Err(DocOpError::MediaNotFound(hash));
    }
    doc.delete(&library, key.as_str())?;
    Ok(())
}

/// Sets the org defaults; each field is written in place and merges LWW on its own.
pub fn set_org_defaults(doc: &mut AutoCommit, defaults: &OrgDefaults) -> Result<(), DocOpError> {
    validate_timezone(&defaults.timezone)?;
    validate_duration(defaults.item_duration_ms)?;
    top(doc, "defaults")?;
    autosurgeon::reconcile_prop(doc, ROOT, "defaults", defaults)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::ops::test_support::*;
    use crate::doc::ops::*;

    #[test]
    fn org_library_and_defaults() {
        let mut org = new_org_doc("UTC", 5000).unwrap();
        add_library_media(&mut org, hash(1), &meta("logo.png")).unwrap();
        assert!(matches!(
            add_library_media(&mut org, hash(2), &meta("\u{7}")),
            Err(DocOpError::InvalidName { .. })
        ));
        set_org_defaults(
            &mut org,
            &OrgDefaults {
                timezone: "Asia/Tokyo".into(),
                item_duration_ms: 10_000,
            },
        )
        .unwrap();
        assert!(matches!(
            set_org_defaults(
                &mut org,
                &OrgDefaults {
                    timezone: "Asia/Tokyo".into(),
                    item_duration_ms: 0
                }
            ),
            Err(DocOpError::InvalidDuration { .. })
        ));
        assert!(matches!(
            set_org_defaults(
                &mut org,
                &OrgDefaults {
                    timezone: "Tokyo".into(),
                    item_duration_ms: 1
                }
            ),
            Err(DocOpError::UnknownTimezone(_))
        ));
        let o = load_org(&org).unwrap();
        assert_eq!(o.library[&hash(1)], meta("logo.png"));
        assert_eq!(o.defaults.timezone, "Asia/Tokyo");
        assert_eq!(o.defaults.item_duration_ms, 10_000);
        remove_library_media(&mut org, hash(1)).unwrap();
        assert!(matches!(
            remove_library_media(&mut org, hash(1)),
            Err(DocOpError::MediaNotFound(_))
        ));
        assert!(load_org(&org).unwrap().library.is_empty());
        // Venue ops on an org document find no venue maps.
        assert!(matches!(
            add_kiosk(&mut org, kid(1), "K"),
            Err(DocOpError::Malformed(_))
        ));
    }
}
