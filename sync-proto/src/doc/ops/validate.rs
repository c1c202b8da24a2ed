//! Input validation shared by the operations: names, time zones, durations, media metadata.

use crate::doc::schema::MediaMeta;

use super::{
    DocOpError, MAX_CONTENT_TYPE_LEN, MAX_ITEM_DURATION_MS, MAX_MEDIA_NAME_CHARS, MAX_NAME_CHARS,
    clip,
};

pub(super) fn validate_name(what: &'static str, name: &str) -> Result<(), DocOpError> {
    validate_name_max(what, name, MAX_NAME_CHARS)
}

pub(super) fn validate_name_max(
    what: &'static str,
    name: &str,
    max: usize,
) -> Result<(), DocOpError> {
    let ok = !name.trim().is_empty()
        && name.chars().count() <= max
        && !name.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(DocOpError::InvalidName {
            what,
            name: clip(name),
            max,
        })
    }
}

pub(super) fn validate_timezone(tz: &str) -> Result<(), DocOpError> {
    tz.parse::<chrono_tz::Tz>()
        .map(|_| ())
        .map_err(|_| DocOpError::UnknownTimezone(clip(tz)))
}

pub(super) fn validate_duration(ms: u64) -> Result<(), DocOpError> {
    if (1..=MAX_ITEM_DURATION_MS).contains(&ms) {
        Ok(())
    } else {
        Err(DocOpError::InvalidDuration { ms })
    }
}

pub(super) fn validate_meta(meta: &MediaMeta) -> Result<(), DocOpError> {
    validate_name_max("media", &meta.name, MAX_MEDIA_NAME_CHARS)?;
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
    let ct = &meta.content_type;
    let ok = ct.len() <= MAX_CONTENT_TYPE_LEN
        && ct
            .split_once('/')
            .is_some_and(|(t, sub)| token(t) && token(sub));
    if ok {
        Ok(())
    } else {
        Err(DocOpError::InvalidContentType(clip(ct)))
    }
}
