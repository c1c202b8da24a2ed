//! Operations on the venue's settings: name, time zone, default playlist.

use automerge::AutoCommit;

use crate::ids::PlaylistId;

use super::DocOpError;
use super::navigate::{playlist_obj, top};
use super::validate::{validate_name, validate_timezone};

/// Renames the venue (LWW).
pub fn rename_venue(doc: &mut AutoCommit, name: &str) -> Result<(), DocOpError> {
    validate_name("venue", name)?;
    let settings = top(doc, "settings")?;
    autosurgeon::reconcile_prop(doc, &settings, "name", name)?;
    Ok(())
}

/// Sets the venue's IANA time zone (LWW).
pub fn set_timezone(doc: &mut AutoCommit, timezone: &str) -> Result<(), DocOpError> {
    validate_timezone(timezone)?;
    let settings = top(doc, "settings")?;
    autosurgeon::reconcile_prop(doc, &settings, "timezone", timezone)?;
    Ok(())
}

/// Sets (or clears) the playlist of kiosks with neither their own nor a group playlist.
pub fn set_default_playlist(
    doc: &mut AutoCommit,
    playlist: Option<PlaylistId>,
) -> Result<(), DocOpError> {
    let settings = top(doc, "settings")?;
    if let Some(p) = playlist {
        playlist_obj(doc, p)?;
    }
    autosurgeon::reconcile_prop(doc, &settings, "default_playlist", playlist)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::ops::test_support::*;
    use crate::doc::ops::*;

    #[test]
    fn venue_settings_ops_validate_and_write() {
        let mut doc = venue();
        rename_venue(&mut doc, "Bar Süd").unwrap();
        set_timezone(&mut doc, "America/New_York").unwrap();
        assert!(matches!(
            set_timezone(&mut doc, "EST5EDT6"),
            Err(DocOpError::UnknownTimezone(_))
        ));
        assert!(matches!(
            rename_venue(&mut doc, ""),
            Err(DocOpError::InvalidName { .. })
        ));
        assert!(
            matches!(set_default_playlist(&mut doc, Some(pid(9))), Err(DocOpError::PlaylistNotFound(p)) if p == pid(9))
        );
        create_playlist(&mut doc, pid(9), "Nine").unwrap();
        set_default_playlist(&mut doc, Some(pid(9))).unwrap();
        let v = load_venue(&doc).unwrap();
        assert_eq!(v.settings.name, "Bar Süd");
        assert_eq!(v.settings.timezone, "America/New_York");
        assert_eq!(v.settings.default_playlist, Some(pid(9)));
        set_default_playlist(&mut doc, None).unwrap();
        assert_eq!(load_venue(&doc).unwrap().settings.default_playlist, None);
    }
}
