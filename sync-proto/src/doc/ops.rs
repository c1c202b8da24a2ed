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

use std::collections::{BTreeMap, BTreeSet};

use automerge::transaction::{CommitOptions, Transactable as _};
use automerge::{
    AutoCommit, AutomergeError, ObjId, ObjType, ROOT, ReadDoc as _, ScalarValue, Value,
};
use autosurgeon::{HydrateError, ReconcileError};
use fractional_index::FractionalIndex;

use crate::ids::{GrantId, ItemId, KioskId, MediaHash, PlaylistId};
use crate::kiosk_code::KioskCodeHash;
use crate::schedule::{ScheduleError, ScheduleWindow};

use super::schema::{
    Kiosk, KioskGrant, MediaMeta, OrgDefaults, OrgDoc, Orientation, Playlist, PlaylistItem,
    SCHEMA_VERSION, VenueDoc, VenueSettings,
};

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

// ---------------------------------------------------------------------------------------
// Creating and reading documents
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// Venue settings
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// Kiosks
// ---------------------------------------------------------------------------------------

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
fn validate_kiosk_names(name: &str, group: Option<&str>) -> Result<(), DocOpError> {
    validate_name("kiosk", name)?;
    group.map_or(Ok(()), |g| validate_name("group", g))
}

/// Adds kiosk `id` as `kiosk` describes it, its name and group validated; refused if the
/// id is taken.
fn insert_kiosk(doc: &mut AutoCommit, id: KioskId, kiosk: &Kiosk) -> Result<(), DocOpError> {
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

// ---------------------------------------------------------------------------------------
// Kiosk grants (pairings pre-approved by central)
// ---------------------------------------------------------------------------------------

/// What [`redeem_kiosk_grant`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redemption {
    /// The kiosk was added and the grant marked used by it.
    Redeemed,
    /// The grant was already used by this same kiosk (a retry): nothing was written.
    AlreadyRedeemed,
}

/// Adds a kiosk grant, made by central: the hash of a fresh code and what the kiosk will
/// be (name, group, playlist). Refused if the name or group is invalid, the playlist is
/// not in the document, the expiry is not after both `created_at_ms` and `now_ms`, the
/// grant is already marked used, the id is taken, or [`MAX_OPEN_KIOSK_GRANTS`] grants are
/// open at `now_ms`.
///
/// Creates the `kiosk_grants` map in a document made before grants existed. Only central
/// may call this: the map must have a single creator (see the module docs on why two
/// independently created objects under one key lose one of them).
pub fn add_kiosk_grant(
    doc: &mut AutoCommit,
    id: GrantId,
    grant: &KioskGrant,
    now_ms: i64,
) -> Result<(), DocOpError> {
    schema_version(doc)?;
    validate_kiosk_names(&grant.name, grant.group.as_deref())?;
    if grant.expires_at_ms <= grant.created_at_ms || grant.expires_at_ms <= now_ms {
        return Err(DocOpError::InvalidGrant(
            "it must expire after it is created, in the future".into(),
        ));
    }
    if grant.consumed_by.is_some() || grant.consumed_at_ms.is_some() {
        return Err(DocOpError::InvalidGrant(
            "a new grant cannot be already used".into(),
        ));
    }
    if let Some(p) = grant.playlist {
        playlist_obj(doc, p)?;
    }
    let key = id.to_string();
    let grants = match map_at(doc, &ROOT, "kiosk_grants")? {
        Some(grants) => {
            if map_at(doc, &grants, &key)?.is_some() {
                return Err(DocOpError::GrantExists(id));
            }
            if open_grants(doc, &grants, now_ms)? >= MAX_OPEN_KIOSK_GRANTS {
                return Err(DocOpError::TooManyGrants {
                    max: MAX_OPEN_KIOSK_GRANTS,
                });
            }
            grants
        }
        None => doc.put_object(ROOT, "kiosk_grants", ObjType::Map)?,
    };
    autosurgeon::reconcile_prop(doc, &grants, key.as_str(), grant)?;
    Ok(())
}

/// The grant whose code has this hash, if any, in a read venue document.
pub fn find_kiosk_grant<'a>(
    venue: &'a VenueDoc,
    hash: &KioskCodeHash,
) -> Option<(GrantId, &'a KioskGrant)> {
    venue
        .kiosk_grants
        .iter()
        .find(|(_, g)| g.code_hash == *hash)
        .map(|(id, g)| (*id, g))
}

/// Redeems a grant for `kiosk` at `now_ms` (the redeeming hub's clock): adds the kiosk with
/// the grant's name, group and playlist (a playlist no longer in the document is left
/// out) and marks the grant used by it, in one transaction so that the two land in one
/// change. Redeeming again for the same kiosk is a no-op ([`Redemption::AlreadyRedeemed`]),
/// so a retried pairing never adds a second kiosk.
///
/// Refused when the grant is absent ([`DocOpError::GrantNotFound`]), used by another kiosk
/// ([`DocOpError::GrantUsed`]), expired ([`DocOpError::GrantExpired`]), or the kiosk id is
/// taken.
pub fn redeem_kiosk_grant(
    doc: &mut AutoCommit,
    id: GrantId,
    kiosk: KioskId,
    now_ms: i64,
) -> Result<Redemption, DocOpError> {
    schema_version(doc)?;
    let key = id.to_string();
    let grants = map_at(doc, &ROOT, "kiosk_grants")?.ok_or(DocOpError::GrantNotFound(id))?;
    let grant_obj = map_at(doc, &grants, &key)?.ok_or(DocOpError::GrantNotFound(id))?;
    let grant: KioskGrant = autosurgeon::hydrate_prop(doc, &grants, key.as_str())?;
    match grant.consumed_by {
        Some(by) if by == kiosk => return Ok(Redemption::AlreadyRedeemed),
        Some(by) => {
            return Err(DocOpError::GrantUsed {
                grant: id,
                kiosk: by,
            });
        }
        None => {}
    }
    if now_ms >= grant.expires_at_ms {
        return Err(DocOpError::GrantExpired {
            grant: id,
            expires_at_ms: grant.expires_at_ms,
        });
    }
    let playlist = match grant.playlist {
        Some(p) => playlist_obj(doc, p).ok().map(|_| p),
        None => None,
    };
    let new_kiosk = Kiosk {
        name: grant.name,
        group: grant.group,
        orientation: Orientation::default(),
        playlist,
    };
    // The name and group were validated by central, and are again here, as the document
    // came over the network.
    insert_kiosk(doc, kiosk, &new_kiosk)?;
    autosurgeon::reconcile_prop(doc, &grant_obj, "consumed_by", Some(kiosk))?;
    autosurgeon::reconcile_prop(doc, &grant_obj, "consumed_at_ms", Some(now_ms))?;
    Ok(Redemption::Redeemed)
}

/// Removes a grant: revokes it if unused, forgets it if used (the kiosk it paired stays).
/// A redemption made concurrently elsewhere loses its mark on the grant but keeps its
/// kiosk (remove beats edit).
pub fn remove_kiosk_grant(doc: &mut AutoCommit, id: GrantId) -> Result<(), DocOpError> {
    schema_version(doc)?;
    let key = id.to_string();
    let grants = map_at(doc, &ROOT, "kiosk_grants")?.ok_or(DocOpError::GrantNotFound(id))?;
    if map_at(doc, &grants, &key)?.is_none() {
        return Err(DocOpError::GrantNotFound(id));
    }
    doc.delete(&grants, key.as_str())?;
    Ok(())
}

/// How many grants of the `kiosk_grants` map are open at `now_ms`, reading only the two
/// fields that decide it.
fn open_grants(doc: &AutoCommit, grants: &ObjId, now_ms: i64) -> Result<usize, DocOpError> {
    let mut open = 0;
    for key in doc.keys(grants).collect::<Vec<_>>() {
        let Some(grant) = map_at(doc, grants, &key)? else {
            continue;
        };
        // A used grant's `consumed_by` holds the kiosk id as text; an unused one's is null.
        let unused = get_str(doc, &grant, "consumed_by")?.is_none();
        let expires = match doc.get(&grant, "expires_at_ms")? {
            Some((Value::Scalar(v), _)) => match v.as_ref() {
                ScalarValue::Int(i) => *i,
                ScalarValue::Uint(u) => i64::try_from(*u).unwrap_or(i64::MAX),
                _ => 0,
            },
            _ => 0,
        };
        if unused && now_ms < expires {
            open += 1;
        }
    }
    Ok(open)
}

// ---------------------------------------------------------------------------------------
// Playlists and items
// ---------------------------------------------------------------------------------------

/// Creates an empty playlist. Ids must be fresh (see [`add_kiosk`]).
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

// ---------------------------------------------------------------------------------------
// Media
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// Org document
// ---------------------------------------------------------------------------------------

/// Adds a media entry to the org library, or updates it in place (as [`add_media`]).
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

// ---------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------

fn validate_name(what: &'static str, name: &str) -> Result<(), DocOpError> {
    validate_name_max(what, name, MAX_NAME_CHARS)
}

fn validate_name_max(what: &'static str, name: &str, max: usize) -> Result<(), DocOpError> {
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

fn validate_timezone(tz: &str) -> Result<(), DocOpError> {
    tz.parse::<chrono_tz::Tz>()
        .map(|_| ())
        .map_err(|_| DocOpError::UnknownTimezone(clip(tz)))
}

fn validate_duration(ms: u64) -> Result<(), DocOpError> {
    if (1..=MAX_ITEM_DURATION_MS).contains(&ms) {
        Ok(())
    } else {
        Err(DocOpError::InvalidDuration { ms })
    }
}

fn validate_meta(meta: &MediaMeta) -> Result<(), DocOpError> {
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

// ---------------------------------------------------------------------------------------
// Navigation
// ---------------------------------------------------------------------------------------

/// A required top-level map, after checking that this build may write the document.
fn top(doc: &AutoCommit, key: &str) -> Result<ObjId, DocOpError> {
    schema_version(doc)?;
    map_at(doc, &ROOT, key)?
        .ok_or_else(|| DocOpError::Malformed(format!("the document has no `{key}` map")))
}

/// The map under `key` of `obj`; `None` if the key is absent, an error if it holds a value
/// that is not a map.
fn map_at(doc: &AutoCommit, obj: &ObjId, key: &str) -> Result<Option<ObjId>, DocOpError> {
    match doc.get(obj, key)? {
        None => Ok(None),
        Some((Value::Object(ObjType::Map), id)) => Ok(Some(id)),
        Some((other, _)) => Err(DocOpError::Malformed(format!(
            "`{key}` holds {other:?}, not a map"
        ))),
    }
}

/// The string under `key` of `obj`; `None` if absent, null or not a string.
fn get_str(doc: &AutoCommit, obj: &ObjId, key: &str) -> Result<Option<String>, DocOpError> {
    Ok(match doc.get(obj, key)? {
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Str(text) => Some(text.to_string()),
            _ => None,
        },
        _ => None,
    })
}

fn kiosk_obj(doc: &AutoCommit, id: KioskId) -> Result<ObjId, DocOpError> {
    let kiosks = top(doc, "kiosks")?;
    map_at(doc, &kiosks, &id.to_string())?.ok_or(DocOpError::KioskNotFound(id))
}

fn playlist_obj(doc: &AutoCommit, id: PlaylistId) -> Result<ObjId, DocOpError> {
    let playlists = top(doc, "playlists")?;
    map_at(doc, &playlists, &id.to_string())?.ok_or(DocOpError::PlaylistNotFound(id))
}

fn items_obj(doc: &AutoCommit, playlist: PlaylistId) -> Result<ObjId, DocOpError> {
    let p = playlist_obj(doc, playlist)?;
    map_at(doc, &p, "items")?
        .ok_or_else(|| DocOpError::Malformed(format!("playlist {playlist} has no `items` map")))
}

fn item_obj(doc: &AutoCommit, playlist: PlaylistId, item: ItemId) -> Result<ObjId, DocOpError> {
    let items = items_obj(doc, playlist)?;
    map_at(doc, &items, &item.to_string())?.ok_or(DocOpError::ItemNotFound { playlist, item })
}

/// Every playlist with an item whose media is `hash_key`, reading only the `media` fields.
fn playlists_using(doc: &AutoCommit, hash_key: &str) -> Result<Vec<PlaylistId>, DocOpError> {
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

// ---------------------------------------------------------------------------------------
// Positions
// ---------------------------------------------------------------------------------------

/// An item's id and stored position, as read for placing another item.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Slot {
    id: ItemId,
    position: String,
}

/// The items of a playlist in order (by position text, then id), reading only positions.
fn read_slots(
    doc: &AutoCommit,
    items: &ObjId,
    playlist: PlaylistId,
) -> Result<Vec<Slot>, DocOpError> {
    let mut slots = Vec::new();
    for key in doc.keys(items).collect::<Vec<_>>() {
        let id: ItemId = key.parse().map_err(|_| {
            DocOpError::Malformed(format!(
                "playlist {playlist} has an item key {key:?} that is not an id"
            ))
        })?;
        let obj = map_at(doc, items, &key)?.ok_or_else(|| {
            DocOpError::Malformed(format!("item {id} of playlist {playlist} is not a map"))
        })?;
        let position = get_str(doc, &obj, "position")?.unwrap_or_default();
        slots.push(Slot { id, position });
    }
    slots.sort_by(|a, b| (a.position.as_str(), a.id).cmp(&(b.position.as_str(), b.id)));
    Ok(slots)
}

/// The position for a placed item, plus new positions for items that must move with it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Placed {
    position: String,
    respaced: Vec<(ItemId, String)>,
}

/// Parses a stored position, rejecting anything `FractionalIndex::from_string` could
/// mis-read: it slices the text two bytes at a time, which panics inside a multi-byte
/// character and silently drops an odd last digit.
fn parse_position(text: &str) -> Option<FractionalIndex> {
    let hex = text.len().is_multiple_of(2)
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if hex {
        FractionalIndex::from_string(text).ok()
    } else {
        None
    }
}

/// Computes where an item goes among `slots` (sorted, not containing the item).
///
/// For `After(anchor)` the new position lies strictly between the anchor and the first item
/// whose position is greater than the anchor's. Items tied with the anchor (same position,
/// larger id, from concurrent inserts at one spot) would otherwise stay between the anchor
/// and the new item, so they get fresh increasing positions after it, in their old order.
fn place(playlist: PlaylistId, slots: &[Slot], at: Placement) -> Result<Placed, DocOpError> {
    let parse = |s: &Slot| {
        parse_position(&s.position).ok_or_else(|| DocOpError::CorruptPosition {
            playlist,
            item: s.id,
            position: clip(&s.position),
        })
    };
    let alone = |position: FractionalIndex| Placed {
        position: position.to_string(),
        respaced: Vec::new(),
    };
    match at {
        Placement::Front => match slots.first() {
            None => Ok(alone(FractionalIndex::default())),
            Some(first) => Ok(alone(FractionalIndex::new_before(&parse(first)?))),
        },
        Placement::End => match slots.last() {
            None => Ok(alone(FractionalIndex::default())),
            Some(last) => Ok(alone(FractionalIndex::new_after(&parse(last)?))),
        },
        Placement::After(anchor) => {
            let idx =
                slots
                    .iter()
                    .position(|s| s.id == anchor)
                    .ok_or(DocOpError::ItemNotFound {
                        playlist,
                        item: anchor,
                    })?;
            let lower = parse(&slots[idx])?;
            let rest = &slots[idx + 1..];
            let tied = rest
                .iter()
                .take_while(|s| s.position == slots[idx].position)
                .count();
            let upper = rest.get(tied).map(parse).transpose()?;
            let next = |after: &FractionalIndex| {
                FractionalIndex::new(Some(after), upper.as_ref()).ok_or_else(|| {
                    // Sorted, distinct, valid positions always have room between them; this
                    // is reachable only if the sort and the parse disagree (corruption).
                    DocOpError::Malformed(format!(
                        "playlist {playlist}: no position fits after item {anchor}"
                    ))
                })
            };
            let position = next(&lower)?;
            let mut prev = position.clone();
            let mut respaced = Vec::with_capacity(tied);
            for s in &rest[..tied] {
                let p = next(&prev)?;
                respaced.push((s.id, p.to_string()));
                prev = p;
            }
            Ok(Placed {
                position: position.to_string(),
                respaced,
            })
        }
    }
}

fn write_respaced(
    doc: &mut AutoCommit,
    items: &ObjId,
    respaced: &[(ItemId, String)],
) -> Result<(), DocOpError> {
    for (id, position) in respaced {
        // `place` only respaces items it read from this same map a moment ago.
        if let Some(obj) = map_at(doc, items, &id.to_string())? {
            autosurgeon::reconcile_prop(doc, &obj, "position", position.as_str())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Weekdays;
    use automerge::ActorId;
    use automerge::transaction::Transactable;

    fn kid(n: u8) -> KioskId {
        KioskId::from_bytes([n; 16])
    }
    fn pid(n: u8) -> PlaylistId {
        PlaylistId::from_bytes([n; 16])
    }
    fn iid(n: u8) -> ItemId {
        ItemId::from_bytes([n; 16])
    }
    fn hash(n: u8) -> MediaHash {
        MediaHash::from_bytes([n; 32])
    }
    fn meta(name: &str) -> MediaMeta {
        MediaMeta {
            name: name.into(),
            content_type: "image/png".into(),
            size: 10,
        }
    }
    fn venue() -> AutoCommit {
        new_venue_doc("Bar Nord", "Europe/Berlin").unwrap()
    }
    /// A venue with playlist 1 and media 1, ready for items.
    fn venue_with_playlist() -> AutoCommit {
        let mut doc = venue();
        create_playlist(&mut doc, pid(1), "Main").unwrap();
        add_media(&mut doc, hash(1), &meta("a.png")).unwrap();
        doc.commit();
        doc
    }
    fn order(doc: &AutoCommit, p: PlaylistId) -> Vec<ItemId> {
        let v = load_venue(doc).unwrap();
        ordered_items(&v.playlists[&p])
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }
    fn insert(doc: &mut AutoCommit, item: u8, at: Placement) {
        insert_item(doc, pid(1), iid(item), at, hash(1), 5000, None).unwrap();
    }
    fn pending(doc: &AutoCommit) -> usize {
        Transactable::pending_ops(doc)
    }
    fn fork(doc: &mut AutoCommit, actor: u8) -> AutoCommit {
        doc.fork().with_actor(ActorId::from([actor; 16]))
    }

    fn gid(n: u8) -> GrantId {
        GrantId::from_bytes([n; 16])
    }
    /// A grant for "Bar screen" made at 1,000 ms, expiring at 10,000 ms.
    fn grant(code: u8) -> KioskGrant {
        KioskGrant {
            code_hash: crate::kiosk_code::KioskCode::from_bytes([code; 10]).hash(),
            name: "Bar screen".into(),
            group: None,
            playlist: None,
            created_at_ms: 1_000,
            expires_at_ms: 10_000,
            consumed_by: None,
            consumed_at_ms: None,
        }
    }

    #[test]
    fn grants_are_validated_before_anything_is_written() {
        let mut doc = venue_with_playlist();
        let g = |f: &dyn Fn(&mut KioskGrant)| {
            let mut g = grant(1);
            f(&mut g);
            g
        };
        let cases: Vec<(KioskGrant, i64, &str)> = vec![
            (g(&|g| g.name = String::new()), 2_000, "kiosk name"),
            (g(&|g| g.name = "x".repeat(101)), 2_000, "kiosk name"),
            (g(&|g| g.group = Some("a\nb".into())), 2_000, "group name"),
            (g(&|g| g.playlist = Some(pid(9))), 2_000, "playlist"),
            (g(&|g| g.expires_at_ms = 1_000), 500, "expire"),
            (g(&|_| {}), 10_000, "expire"),
            (g(&|g| g.consumed_by = Some(kid(1))), 2_000, "already used"),
            (g(&|g| g.consumed_at_ms = Some(1)), 2_000, "already used"),
        ];
        for (bad, now, says) in cases {
            let err = add_kiosk_grant(&mut doc, gid(1), &bad, now).unwrap_err();
            assert!(err.to_string().contains(says), "{says}: {err}");
            assert_eq!(pending(&doc), 0, "{says}: nothing written");
        }
        let mut good = grant(1);
        good.group = Some("bar".into());
        good.playlist = Some(pid(1));
        add_kiosk_grant(&mut doc, gid(1), &good, 2_000).unwrap();
        doc.commit();
        assert!(matches!(
            add_kiosk_grant(&mut doc, gid(1), &grant(2), 2_000),
            Err(DocOpError::GrantExists(_))
        ));
        let v = load_venue(&doc).unwrap();
        assert_eq!(v.kiosk_grants[&gid(1)], good);
        assert!(v.kiosk_grants[&gid(1)].is_open(9_999));
        assert!(!v.kiosk_grants[&gid(1)].is_open(10_000));
        let hash = crate::kiosk_code::KioskCode::from_bytes([1; 10]).hash();
        assert_eq!(find_kiosk_grant(&v, &hash).map(|(id, _)| id), Some(gid(1)));
        let other = crate::kiosk_code::KioskCode::from_bytes([2; 10]).hash();
        assert!(find_kiosk_grant(&v, &other).is_none());
    }

    #[test]
    fn open_grants_are_bounded_but_used_and_expired_ones_do_not_count() {
        let mut doc = venue();
        for i in 0..MAX_OPEN_KIOSK_GRANTS {
            let id = GrantId::from_bytes((i as u128).to_be_bytes());
            add_kiosk_grant(&mut doc, id, &grant(1), 2_000).unwrap();
        }
        doc.commit();
        assert!(matches!(
            add_kiosk_grant(&mut doc, gid(255), &grant(1), 2_000),
            Err(DocOpError::TooManyGrants { .. })
        ));
        let first = GrantId::from_bytes(0u128.to_be_bytes());
        redeem_kiosk_grant(&mut doc, first, kid(1), 3_000).unwrap();
        add_kiosk_grant(&mut doc, gid(255), &grant(1), 3_000).unwrap();
        assert!(matches!(
            add_kiosk_grant(&mut doc, gid(254), &grant(1), 3_000),
            Err(DocOpError::TooManyGrants { .. })
        ));
        // Once they have expired there is room again.
        let mut later = grant(1);
        later.expires_at_ms = 20_000;
        add_kiosk_grant(&mut doc, gid(254), &later, 10_000).unwrap();
    }

    #[test]
    fn redeeming_adds_the_kiosk_and_marks_the_grant_in_one_change() {
        let mut doc = venue_with_playlist();
        let mut g = grant(1);
        g.group = Some("bar".into());
        g.playlist = Some(pid(1));
        add_kiosk_grant(&mut doc, gid(1), &g, 2_000).unwrap();
        doc.commit();
        assert_eq!(
            redeem_kiosk_grant(&mut doc, gid(1), kid(7), 5_000).unwrap(),
            Redemption::Redeemed
        );
        doc.commit();
        let v = load_venue(&doc).unwrap();
        assert_eq!(
            v.kiosks[&kid(7)],
            Kiosk {
                name: "Bar screen".into(),
                group: Some("bar".into()),
                orientation: Orientation::Landscape,
                playlist: Some(pid(1)),
            }
        );
        let used = &v.kiosk_grants[&gid(1)];
        assert_eq!(
            (used.consumed_by, used.consumed_at_ms),
            (Some(kid(7)), Some(5_000))
        );
        assert!(!used.is_open(5_000));
        // A retry for the same kiosk writes nothing, even after the expiry.
        assert_eq!(
            redeem_kiosk_grant(&mut doc, gid(1), kid(7), 50_000).unwrap(),
            Redemption::AlreadyRedeemed
        );
        assert_eq!(pending(&doc), 0);
        // Another kiosk is refused, naming the one that used it.
        let err = redeem_kiosk_grant(&mut doc, gid(1), kid(8), 5_000).unwrap_err();
        assert!(
            matches!(err, DocOpError::GrantUsed { kiosk, .. } if kiosk == kid(7)),
            "{err}"
        );
        assert!(matches!(
            redeem_kiosk_grant(&mut doc, gid(2), kid(8), 5_000),
            Err(DocOpError::GrantNotFound(_))
        ));
        // Expired: refused, and nothing written.
        add_kiosk_grant(&mut doc, gid(2), &grant(2), 2_000).unwrap();
        doc.commit();
        assert!(matches!(
            redeem_kiosk_grant(&mut doc, gid(2), kid(8), 10_000),
            Err(DocOpError::GrantExpired {
                expires_at_ms: 10_000,
                ..
            })
        ));
        // A kiosk id already in the document is refused.
        assert!(matches!(
            redeem_kiosk_grant(&mut doc, gid(2), kid(7), 9_000),
            Err(DocOpError::KioskExists(_))
        ));
        assert_eq!(pending(&doc), 0);
        // A playlist removed since the grant was made is left out, not an error.
        let mut g3 = grant(3);
        g3.playlist = Some(pid(1));
        add_kiosk_grant(&mut doc, gid(3), &g3, 2_000).unwrap();
        remove_playlist(&mut doc, pid(1)).unwrap();
        redeem_kiosk_grant(&mut doc, gid(3), kid(9), 3_000).unwrap();
        assert_eq!(load_venue(&doc).unwrap().kiosks[&kid(9)].playlist, None);
    }

    #[test]
    fn removing_a_grant_revokes_it_and_leaves_its_kiosk() {
        let mut doc = venue();
        add_kiosk_grant(&mut doc, gid(1), &grant(1), 2_000).unwrap();
        add_kiosk_grant(&mut doc, gid(2), &grant(2), 2_000).unwrap();
        redeem_kiosk_grant(&mut doc, gid(2), kid(2), 3_000).unwrap();
        remove_kiosk_grant(&mut doc, gid(1)).unwrap();
        remove_kiosk_grant(&mut doc, gid(2)).unwrap();
        assert!(matches!(
            remove_kiosk_grant(&mut doc, gid(1)),
            Err(DocOpError::GrantNotFound(_))
        ));
        assert!(matches!(
            redeem_kiosk_grant(&mut doc, gid(1), kid(1), 3_000),
            Err(DocOpError::GrantNotFound(_))
        ));
        let v = load_venue(&doc).unwrap();
        assert!(v.kiosk_grants.is_empty());
        assert!(v.kiosks.contains_key(&kid(2)));
    }

    /// A venue document as made before grants existed: no `kiosk_grants` map.
    fn venue_without_grants() -> AutoCommit {
        let mut doc = venue();
        doc.delete(ROOT, "kiosk_grants").unwrap();
        doc.commit();
        doc
    }

    #[test]
    fn a_document_from_before_grants_reads_and_gets_the_map_with_the_first_grant() {
        let mut doc = venue_without_grants();
        assert!(load_venue(&doc).unwrap().kiosk_grants.is_empty());
        assert!(matches!(
            redeem_kiosk_grant(&mut doc, gid(1), kid(1), 0),
            Err(DocOpError::GrantNotFound(_))
        ));
        assert!(matches!(
            remove_kiosk_grant(&mut doc, gid(1)),
            Err(DocOpError::GrantNotFound(_))
        ));
        assert_eq!(pending(&doc), 0);
        add_kiosk_grant(&mut doc, gid(1), &grant(1), 2_000).unwrap();
        assert_eq!(load_venue(&doc).unwrap().kiosk_grants.len(), 1);
    }

    #[test]
    fn a_grant_made_at_central_reaches_the_hub_and_its_redemption_comes_back() {
        // The hub's replica dates from before grants existed.
        let mut central = venue_without_grants();
        let mut hub = fork(&mut central, 2);
        add_kiosk_grant(&mut central, gid(1), &grant(1), 2_000).unwrap();
        central.commit();
        hub.merge(&mut central).unwrap();
        assert_eq!(load_venue(&hub).unwrap().kiosk_grants[&gid(1)], grant(1));
        // The hub redeems while central makes another grant: both survive the merge.
        redeem_kiosk_grant(&mut hub, gid(1), kid(1), 3_000).unwrap();
        hub.commit();
        add_kiosk_grant(&mut central, gid(2), &grant(2), 3_000).unwrap();
        central.commit();
        central.merge(&mut hub).unwrap();
        hub.merge(&mut central).unwrap();
        let v = load_venue(&central).unwrap();
        assert_eq!(v, load_venue(&hub).unwrap());
        assert_eq!(v.kiosk_grants[&gid(1)].consumed_by, Some(kid(1)));
        assert_eq!(v.kiosks[&kid(1)].name, "Bar screen");
        assert!(v.kiosk_grants[&gid(2)].is_open(3_000));
    }

    #[test]
    fn a_revocation_beats_a_concurrent_redemption_but_not_its_kiosk() {
        let mut central = venue();
        add_kiosk_grant(&mut central, gid(1), &grant(1), 2_000).unwrap();
        central.commit();
        let mut hub = fork(&mut central, 2);
        remove_kiosk_grant(&mut central, gid(1)).unwrap();
        central.commit();
        redeem_kiosk_grant(&mut hub, gid(1), kid(1), 3_000).unwrap();
        hub.commit();
        central.merge(&mut hub).unwrap();
        hub.merge(&mut central).unwrap();
        let v = load_venue(&central).unwrap();
        assert_eq!(v, load_venue(&hub).unwrap());
        assert!(v.kiosk_grants.is_empty());
        assert!(v.kiosks.contains_key(&kid(1)));
    }

    #[test]
    fn two_replicas_redeeming_one_grant_while_apart_keep_both_kiosks_and_one_mark() {
        let mut origin = venue();
        add_kiosk_grant(&mut origin, gid(1), &grant(1), 2_000).unwrap();
        origin.commit();
        let mut a = fork(&mut origin, 1);
        let mut b = fork(&mut origin, 2);
        redeem_kiosk_grant(&mut a, gid(1), kid(1), 3_000).unwrap();
        redeem_kiosk_grant(&mut b, gid(1), kid(2), 4_000).unwrap();
        a.commit();
        b.commit();
        a.merge(&mut b).unwrap();
        b.merge(&mut a).unwrap();
        let v = load_venue(&a).unwrap();
        assert_eq!(v, load_venue(&b).unwrap());
        assert!(v.kiosks.contains_key(&kid(1)) && v.kiosks.contains_key(&kid(2)));
        let used = &v.kiosk_grants[&gid(1)];
        assert!(
            [Some(kid(1)), Some(kid(2))].contains(&used.consumed_by),
            "{used:?}"
        );
        assert!([Some(3_000), Some(4_000)].contains(&used.consumed_at_ms));
        // Either way, neither replica redeems it a third time.
        assert!(matches!(
            redeem_kiosk_grant(&mut a, gid(1), kid(3), 5_000),
            Err(DocOpError::GrantUsed { .. })
        ));
    }

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
    fn concurrent_inserts_at_one_spot_tie_on_position_and_order_by_id() {
        let mut origin = venue_with_playlist();
        insert(&mut origin, 1, Placement::End);
        insert(&mut origin, 9, Placement::End);
        origin.commit();
        let mut a = fork(&mut origin, 1);
        let mut b = fork(&mut origin, 2);
        insert(&mut a, 5, Placement::After(iid(1)));
        insert(&mut b, 3, Placement::After(iid(1)));
        a.merge(&mut b).unwrap();
        let v = load_venue(&a).unwrap();
        let items = &v.playlists[&pid(1)].items;
        assert_eq!(
            items[&iid(3)].position,
            items[&iid(5)].position,
            "same spot, same position"
        );
        assert_eq!(order(&a, pid(1)), [1, 3, 5, 9].map(iid));

        // Inserting right after the first tied item must land between the two tied items,
        // which needs the second one to get a fresh position.
        insert(&mut a, 4, Placement::After(iid(3)));
        assert_eq!(order(&a, pid(1)), [1, 3, 4, 5, 9].map(iid));
        // And right after the anchor of the tie, before both.
        insert(&mut a, 2, Placement::After(iid(1)));
        assert_eq!(order(&a, pid(1)), [1, 2, 3, 4, 5, 9].map(iid));
    }

    #[test]
    fn place_respaces_items_tied_with_the_anchor_in_their_order() {
        let p = pid(1);
        let tie = FractionalIndex::default().to_string();
        let after = FractionalIndex::new_after(&FractionalIndex::default()).to_string();
        let slots = vec![
            Slot {
                id: iid(1),
                position: tie.clone(),
            },
            Slot {
                id: iid(2),
                position: tie.clone(),
            },
            Slot {
                id: iid(3),
                position: tie.clone(),
            },
            Slot {
                id: iid(4),
                position: after.clone(),
            },
        ];
        let placed = place(p, &slots, Placement::After(iid(1))).unwrap();
        let respaced: Vec<ItemId> = placed.respaced.iter().map(|(id, _)| *id).collect();
        assert_eq!(respaced, vec![iid(2), iid(3)]);
        let seq: Vec<&str> = [
            tie.as_str(),
            placed.position.as_str(),
            placed.respaced[0].1.as_str(),
            placed.respaced[1].1.as_str(),
            after.as_str(),
        ]
        .to_vec();
        assert!(seq.windows(2).all(|w| w[0] < w[1]), "{seq:?}");
        // The last of a tie needs nothing respaced.
        let placed = place(p, &slots, Placement::After(iid(3))).unwrap();
        assert!(placed.respaced.is_empty());
        assert!(tie < placed.position && placed.position < after);
    }

    #[test]
    fn corrupt_positions_are_errors_not_panics_and_can_be_repaired_by_moving() {
        let mut doc = venue_with_playlist();
        insert(&mut doc, 1, Placement::End);
        insert(&mut doc, 2, Placement::End);
        let items = items_obj(&doc, pid(1)).unwrap();
        let one = map_at(&doc, &items, &iid(1).to_string()).unwrap().unwrap();
        for bad in ["é", "8", "zz", "", "00"] {
            doc.put(&one, "position", bad).unwrap();
            let err = insert_item(
                &mut doc,
                pid(1),
                iid(3),
                Placement::After(iid(1)),
                hash(1),
                5,
                None,
            )
            .unwrap_err();
            assert!(
                matches!(err, DocOpError::CorruptPosition { item, .. } if item == iid(1)),
                "{bad:?}: {err}"
            );
        }
        move_item(&mut doc, pid(1), iid(1), Placement::End).unwrap();
        insert(&mut doc, 3, Placement::After(iid(1)));
        assert_eq!(order(&doc, pid(1)), [2, 1, 3].map(iid));
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
