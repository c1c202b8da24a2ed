//! Kiosk provisioning codes: pairings pre-approved by central.
//!
//! An admin creates a code for a venue and gives it to whoever sets up the kiosk. Central
//! keeps only the code's hash, as a grant in the venue document
//! ([`taplink_sync_proto::doc::KioskGrant`]), so it reaches the venue's hub by the normal
//! sync and the hub can honour it with the WAN down. The code itself is returned once and
//! stored nowhere. Listing reads the grants back from the document (with the kiosk each one
//! paired, once the hub's redemption has synced back); revoking removes the grant.

use chrono::{DateTime, Utc};
use taplink_sync_io::docs::{Documents, DocumentsError, EditError};
use taplink_sync_proto::doc::{
    DocOpError, KioskGrant, add_kiosk_grant, load_venue, remove_kiosk_grant,
};
use taplink_sync_proto::ids::{GrantId, PlaylistId, VenueId};
use taplink_sync_proto::kiosk_code::KioskCode;
use taplink_sync_proto::wire::DocId;

use crate::store::{Registry, RegistryError};
use crate::timefmt::to_unix_ms;

/// How long a kiosk code stays valid when the admin does not say: a week, time to ship a
/// screen to a venue and set it up.
pub const DEFAULT_KIOSK_CODE_TTL_HOURS: u32 = 7 * 24;

/// The longest a kiosk code may stay valid: 90 days.
pub const MAX_KIOSK_CODE_TTL_HOURS: u32 = 90 * 24;

/// What the admin asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KioskCodeRequest {
    /// The kiosk's name (as kiosk names: 1 to 100 characters, no control characters).
    pub name: String,
    /// Hours until the code expires, 1 to [`MAX_KIOSK_CODE_TTL_HOURS`].
    pub expires_in_hours: u32,
    /// The group the kiosk joins, if any.
    pub group: Option<String>,
    /// The kiosk's own playlist, if any; it must be in the venue document.
    pub playlist: Option<PlaylistId>,
}

/// A code just created: the only time the code is shown.
#[derive(Debug, Clone)]
pub struct IssuedKioskCode {
    /// The grant's id, for listing and revoking.
    pub grant: GrantId,
    /// The code to give the kiosk.
    pub code: KioskCode,
    /// What was stored.
    pub stored: KioskGrant,
}

/// Why a kiosk code operation was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KioskCodeError {
    /// No such venue in the registry.
    #[error("venue {venue} does not exist")]
    UnknownVenue {
        /// The venue asked for.
        venue: VenueId,
    },
    /// The lifetime is outside 1 hour to 90 days.
    #[error("expires_in_hours must be 1 to {MAX_KIOSK_CODE_TTL_HOURS} (90 days), got {hours}")]
    InvalidTtl {
        /// The rejected number of hours.
        hours: u32,
    },
    /// The venue document refused the grant (invalid name or group, unknown playlist, too
    /// many open codes) or has no such grant.
    #[error(transparent)]
    Refused(DocOpError),
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The venue document could not be read or stored.
    #[error("the venue document: {0}")]
    Documents(#[from] DocumentsError),
    /// Storing the change failed in some other way.
    #[error("the venue document could not be changed: {0}")]
    Storage(String),
}

impl From<EditError<DocOpError>> for KioskCodeError {
    fn from(e: EditError<DocOpError>) -> Self {
        match e {
            EditError::Refused(e) => KioskCodeError::Refused(e),
            EditError::Documents(e) => KioskCodeError::Documents(e),
            other => KioskCodeError::Storage(other.to_string()),
        }
    }
}

fn known_venue(registry: &Registry, venue: VenueId) -> Result<(), KioskCodeError> {
    match registry.venue(venue)? {
        Some(_) => Ok(()),
        None => Err(KioskCodeError::UnknownVenue { venue }),
    }
}

/// Create a kiosk code for `venue` at `now`: a fresh random code whose hash goes into the
/// venue document as a grant (durably, before this returns).
pub fn create_kiosk_code(
    registry: &Registry,
    docs: &Documents,
    venue: VenueId,
    request: &KioskCodeRequest,
    now: DateTime<Utc>,
) -> Result<IssuedKioskCode, KioskCodeError> {
    if !(1..=MAX_KIOSK_CODE_TTL_HOURS).contains(&request.expires_in_hours) {
        return Err(KioskCodeError::InvalidTtl {
            hours: request.expires_in_hours,
        });
    }
    known_venue(registry, venue)?;
    let code = KioskCode::random();
    let grant = GrantId::random();
    let now_ms = to_unix_ms(now);
    let ttl_ms = i64::from(request.expires_in_hours) * 3_600_000;
    let stored = KioskGrant {
        code_hash: code.hash(),
        name: request.name.clone(),
        group: request.group.clone(),
        playlist: request.playlist,
        created_at_ms: now_ms,
        expires_at_ms: now_ms.saturating_add(ttl_ms),
        consumed_by: None,
        consumed_at_ms: None,
    };
    docs.edit(DocId::Venue(venue), |am| {
        add_kiosk_grant(am, grant, &stored, now_ms)
    })?;
    Ok(IssuedKioskCode {
        grant,
        code,
        stored,
    })
}

/// Every grant of `venue`, oldest first, as this central's copy of the document has them.
pub fn list_kiosk_codes(
    registry: &Registry,
    docs: &Documents,
    venue: VenueId,
) -> Result<Vec<(GrantId, KioskGrant)>, KioskCodeError> {
    known_venue(registry, venue)?;
    let doc = docs
        .read(DocId::Venue(venue), |am| load_venue(am))?
        .map_err(KioskCodeError::Refused)?;
    let mut grants: Vec<(GrantId, KioskGrant)> = doc.kiosk_grants.into_iter().collect();
    grants.sort_by_key(|(id, g)| (g.created_at_ms, *id));
    Ok(grants)
}

/// Remove grant `grant` of `venue`: an unused code stops working once the removal reaches
/// the hub; a used one's record is dropped (the kiosk it paired stays).
pub fn revoke_kiosk_code(
    registry: &Registry,
    docs: &Documents,
    venue: VenueId,
    grant: GrantId,
) -> Result<(), KioskCodeError> {
    known_venue(registry, venue)?;
    docs.edit(DocId::Venue(venue), |am| remove_kiosk_grant(am, grant))?;
    Ok(())
}
