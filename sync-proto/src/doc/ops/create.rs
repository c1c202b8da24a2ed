//! Creating venue and org documents, reading them whole, and the item order.

use std::collections::BTreeMap;

use automerge::transaction::CommitOptions;
use automerge::{AutoCommit, ROOT, ScalarValue, Value};

use crate::doc::schema::{
    OrgDefaults, OrgDoc, Playlist, PlaylistItem, SCHEMA_VERSION, VenueDoc, VenueSettings,
};
use crate::ids::ItemId;

use super::DocOpError;
use super::validate::{validate_duration, validate_name, validate_timezone};

/// Creates a venue document with every top-level map, committed as one change.
///
/// Call this once per venue, on central; every replica forks or loads the result (see the
/// module docs for why two independently created documents must never be merged).
pub fn new_venue_doc(name: &str, timezone: &str) -> Result<AutoCommit, DocOpError> {
    validate_name("venue", name)?;
    validate_timezone(timezone)?;
    let venue = VenueDoc {
        schema: SCHEMA_VERSION,
        settings: VenueSettings {
            name: name.to_owned(),
            timezone: timezone.to_owned(),
            default_playlist: None,
        },
        ..VenueDoc::default()
    };
    let mut doc = AutoCommit::new();
    autosurgeon::reconcile(&mut doc, &venue)?;
    doc.commit_with(CommitOptions::default().with_message("create venue document"));
    Ok(doc)
}

/// Creates the org document, committed as one change. Called once per org, on central.
pub fn new_org_doc(timezone: &str, item_duration_ms: u64) -> Result<AutoCommit, DocOpError> {
    validate_timezone(timezone)?;
    validate_duration(item_duration_ms)?;
    let org = OrgDoc {
        schema: SCHEMA_VERSION,
        library: BTreeMap::new(),
        defaults: OrgDefaults {
            timezone: timezone.to_owned(),
            item_duration_ms,
        },
    };
    let mut doc = AutoCommit::new();
    autosurgeon::reconcile(&mut doc, &org)?;
    doc.commit_with(CommitOptions::default().with_message("create org document"));
    Ok(doc)
}

/// Reads a whole venue document, refusing one written with a newer schema version.
pub fn load_venue<D: autosurgeon::ReadDoc>(doc: &D) -> Result<VenueDoc, DocOpError> {
    schema_version(doc)?;
    Ok(autosurgeon::hydrate(doc)?)
}

/// Reads the whole org document, refusing one written with a newer schema version.
pub fn load_org<D: autosurgeon::ReadDoc>(doc: &D) -> Result<OrgDoc, DocOpError> {
    schema_version(doc)?;
    Ok(autosurgeon::hydrate(doc)?)
}

/// The document's schema version, if this build may read and write it.
pub fn schema_version<D: autosurgeon::ReadDoc>(doc: &D) -> Result<u64, DocOpError> {
    let found = match autosurgeon::ReadDoc::get(doc, &ROOT, "schema")? {
        None => return Err(DocOpError::MissingSchema),
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Uint(u) => *u,
            ScalarValue::Int(i) if *i >= 0 => i.unsigned_abs(),
            other => {
                return Err(DocOpError::Malformed(format!(
                    "schema version is {other:?}, not a number"
                )));
            }
        },
        Some((Value::Object(t), _)) => {
            return Err(DocOpError::Malformed(format!(
                "schema version is a {t:?}, not a number"
            )));
        }
    };
    if found > SCHEMA_VERSION {
        return Err(DocOpError::NewerSchema {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(found)
}

/// A playlist's items in play order: by (`position`, item id).
///
/// Comparing the hex position strings is the same as comparing the fractional indexes they
/// encode, so no parsing is needed and a corrupt position still sorts deterministically.
pub fn ordered_items(playlist: &Playlist) -> Vec<(ItemId, &PlaylistItem)> {
    let mut items: Vec<(ItemId, &PlaylistItem)> = playlist
        .items
        .iter()
        .map(|(id, item)| (*id, item))
        .collect();
    items.sort_by(|a, b| (a.1.position.as_str(), a.0).cmp(&(b.1.position.as_str(), b.0)));
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::ops::test_support::*;
    use crate::doc::ops::*;

    #[test]
    fn new_venue_doc_creates_every_top_level_map_and_commits() {
        let mut doc = venue();
        assert_eq!(pending(&doc), 0);
        assert_eq!(doc.get_heads().len(), 1);
        for key in [
            "settings",
            "kiosks",
            "playlists",
            "group_playlists",
            "media",
            "kiosk_grants",
        ] {
            assert!(
                matches!(
                    doc.get(ROOT, key).unwrap(),
                    Some((Value::Object(ObjType::Map), _))
                ),
                "{key}"
            );
        }
        let v = load_venue(&doc).unwrap();
        assert_eq!(v.schema, SCHEMA_VERSION);
        assert_eq!(v.settings.name, "Bar Nord");
        assert_eq!(v.settings.timezone, "Europe/Berlin");
        assert_eq!(v.settings.default_playlist, None);
        assert!(v.kiosks.is_empty() && v.playlists.is_empty() && v.media.is_empty());
        assert!(v.kiosk_grants.is_empty());
    }

    #[test]
    fn constructors_validate_name_timezone_and_duration() {
        assert!(
            matches!(new_venue_doc("X", "Mars/Olympus"), Err(DocOpError::UnknownTimezone(tz)) if tz == "Mars/Olympus")
        );
        assert!(matches!(
            new_venue_doc("  ", "UTC"),
            Err(DocOpError::InvalidName { what: "venue", .. })
        ));
        assert!(matches!(
            new_org_doc("Nowhere", 5000),
            Err(DocOpError::UnknownTimezone(_))
        ));
        assert!(matches!(
            new_org_doc("UTC", 0),
            Err(DocOpError::InvalidDuration { ms: 0 })
        ));
        let org = new_org_doc("Europe/Paris", 8000).unwrap();
        let o = load_org(&org).unwrap();
        assert_eq!(o.schema, SCHEMA_VERSION);
        assert_eq!(
            o.defaults,
            OrgDefaults {
                timezone: "Europe/Paris".into(),
                item_duration_ms: 8000
            }
        );
        assert!(o.library.is_empty());
    }

    #[test]
    fn newer_or_missing_schema_is_refused_by_loads_and_ops() {
        let mut doc = venue();
        doc.put(ROOT, "schema", SCHEMA_VERSION + 1).unwrap();
        let err = load_venue(&doc).unwrap_err();
        assert!(
            matches!(err, DocOpError::NewerSchema { found, supported } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION)
        );
        assert!(err.to_string().contains("upgrade"));
        assert!(matches!(
            add_kiosk(&mut doc, kid(1), "K"),
            Err(DocOpError::NewerSchema { .. })
        ));
        assert!(matches!(
            rename_venue(&mut doc, "Y"),
            Err(DocOpError::NewerSchema { .. })
        ));

        let empty = AutoCommit::new();
        assert!(matches!(load_venue(&empty), Err(DocOpError::MissingSchema)));
        assert!(matches!(load_org(&empty), Err(DocOpError::MissingSchema)));
        let mut text = AutoCommit::new();
        text.put(ROOT, "schema", "one").unwrap();
        assert!(matches!(load_venue(&text), Err(DocOpError::Malformed(_))));
    }

    #[test]
    fn ordered_items_breaks_position_ties_by_id() {
        let item = |position: &str| PlaylistItem {
            media: hash(1),
            duration_ms: 1,
            window: None,
            position: position.into(),
        };
        let playlist = Playlist {
            name: "P".into(),
            items: BTreeMap::from([
                (iid(3), item("80")),
                (iid(1), item("81")),
                (iid(2), item("80")),
                (iid(4), item("7f80")),
            ]),
        };
        let ids: Vec<ItemId> = ordered_items(&playlist)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, [4, 2, 3, 1].map(iid));
    }
}
