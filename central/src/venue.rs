//! Creating a venue: its registry entry and its CRDT document, which must be made together.

use chrono::{DateTime, Utc};
use taplink_sync_io::docs::{Documents, DocumentsError};
use taplink_sync_proto::doc::{DocOpError, new_venue_doc};
use taplink_sync_proto::wire::DocId;

use crate::store::{Registry, RegistryError, Venue};

/// Why a venue was not created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateVenueError {
    /// The name or time zone is not acceptable to the venue document.
    #[error("{0}")]
    Invalid(#[from] DocOpError),
    /// The registry refused or failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The venue document could not be stored.
    #[error("the venue document could not be stored: {0}")]
    Document(#[from] DocumentsError),
}

/// Validate `name` and `timezone` the way the venue document does (IANA time zone names
/// from the time zone database, names of 1 to 100 characters), create the registry entry,
/// then store the venue document: created exactly once, here; every replica (the venue's
/// hub) starts from a copy of it, since two independently created documents never merge.
pub fn create_venue(
    registry: &Registry,
    docs: &Documents,
    name: &str,
    timezone: &str,
    now: DateTime<Utc>,
) -> Result<Venue, CreateVenueError> {
    let doc = new_venue_doc(name, timezone)?;
    let venue = registry.create_venue(name, timezone, now)?;
    docs.create(DocId::Venue(venue.id), doc)?;
    Ok(venue)
}
