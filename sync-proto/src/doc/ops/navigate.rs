//! Navigation to the objects the operations change, reading only what they need.

use std::collections::BTreeSet;

use automerge::{AutoCommit, ObjId, ObjType, ROOT, ReadDoc as _, ScalarValue, Value};

use crate::ids::{ItemId, KioskId, PlaylistId};

use super::DocOpError;
use super::create::schema_version;

/// A required top-level map, after checking that this build may write the document.
pub(super) fn top(doc: &AutoCommit, key: &str) -> Result<ObjId, DocOpError> {
    schema_version(doc)?;
    map_at(doc, &ROOT, key)?
        .ok_or_else(|| DocOpError::Malformed(format!("the document has no `{key}` map")))
}

/// The map under `key` of `obj`; `None` if the key is absent, an error if it holds a value
/// that is not a map.
pub(super) fn map_at(
    doc: &AutoCommit,
    obj: &ObjId,
    key: &str,
) -> Result<Option<ObjId>, DocOpError> {
    match doc.get(obj, key)? {
        None => Ok(None),
        Some((Value::Object(ObjType::Map), id)) => Ok(Some(id)),
        Some((other, _)) => Err(DocOpError::Malformed(format!(
            "`{key}` holds {other:?}, not a map"
        ))),
    }
}

/// The string under `key` of `obj`; `None` if absent, null or not a string.
pub(super) fn get_str(
    doc: &AutoCommit,
    obj: &ObjId,
    key: &str,
) -> Result<Option<String>, DocOpError> {
    Ok(match doc.get(obj, key)? {
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Str(text) => Some(text.to_string()),
            _ => None,
        },
        _ => None,
    })
}

pub(super) fn kiosk_obj(doc: &AutoCommit, id: KioskId) -> Result<ObjId, DocOpError> {
    let kiosks = top(doc, "kiosks")?;
    map_at(doc, &kiosks, &id.to_string())?.ok_or(DocOpError::KioskNotFound(id))
}

pub(super) fn playlist_obj(doc: &AutoCommit, id: PlaylistId) -> Result<ObjId, DocOpError> {
    let playlists = top(doc, "playlists")?;
    map_at(doc, &playlists, &id.to_string())?.ok_or(DocOpError::PlaylistNotFound(id))
}

pub(super) fn items_obj(doc: &AutoCommit, playlist: PlaylistId) -> Result<ObjId, DocOpError> {
    let p = playlist_obj(doc, playlist)?;
    map_at(doc, &p, "items")?
        .ok_or_else(|| DocOpError::Malformed(format!("playlist {playlist} has no `items` map")))
}

pub(super) fn item_obj(
    doc: &AutoCommit,
    playlist: PlaylistId,
    item: ItemId,
) -> Result<ObjId, DocOpError> {
    let items = items_obj(doc, playlist)?;
    map_at(doc, &items, &item.to_string())?.ok_or(DocOpError::ItemNotFound { playlist, item })
}

/// Every playlist with an item whose media is `hash_key`, reading only the `media` fields.
pub(super) fn playlists_using(
    doc: &AutoCommit,
    hash_key: &str,
) -> Result<Vec<PlaylistId>, DocOpError> {
    let playlists = top(doc, "playlists")?;
    let mut users = BTreeSet::new();
    for pkey in doc.keys(&playlists).collect::<Vec<_>>() {
        let Some(p) = map_at(doc, &playlists, &pkey)? else {
            continue;
        };
        let Some(items) = map_at(doc, &p, "items")? else {
            continue;
        };
        for ikey in doc.keys(&items).collect::<Vec<_>>() {
            let Some(item) = map_at(doc, &items, &ikey)? else {
                continue;
            };
            if get_str(doc, &item, "media")?.as_deref() == Some(hash_key) {
                let id = pkey.parse().map_err(|_| {
                    DocOpError::Malformed(format!("playlist key {pkey:?} is not an id"))
                })?;
                users.insert(id);
            }
        }
    }
    Ok(users.into_iter().collect())
}
