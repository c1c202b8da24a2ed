//! Creating a venue: its registry entry and its CRDT document, which must be made together.

use automerge::AutoCommit;
use taplink_sync_proto::doc::{DocOpError, new_venue_doc};
use time::OffsetDateTime;

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
}

/// A venue just created: its registry entry and the document every replica will start from.
#[derive(Debug)]
pub struct NewVenue {
    /// The registry entry.
    pub venue: Venue,
    /// The venue document, created exactly once here. Every replica must start from a copy
    /// of it (two independently created venue documents never merge).
    pub doc: AutoCommit,
}

/// Validate `name` and `timezone` the way the venue document does (IANA time zone names
/// from the time zone database, names of 1 to 100 characters), create the document, then
/// the registry entry.
///
/// SEAM(docstore): the caller must persist `NewVenue::doc` under `DocId::Venue(venue.id)`;
/// today's callers (the admin API and the CLI) drop it because the document store is not
/// wired in yet.
pub fn create_venue(
    registry: &Registry,
    name: &str,
    timezone: &str,
    now: OffsetDateTime,
) -> Result<NewVenue, CreateVenueError> {
    let doc = new_venue_doc(name, timezone)?;
    let venue = registry.create_venue(name, timezone, now)?;
    Ok(NewVenue { venue, doc })
}
