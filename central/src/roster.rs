//! Venue rosters: who may sign in at a venue's hub while its internet is down
//! (`taplink_sync_proto::roster`), signed by the roster signer (`CentralPki::roster`, a
//! certificate of the org CA for roster signing only; the CA key signs no data).
//!
//! [`current`] is the one way a roster is made: the users whose role and scope cover the
//! venue (admins cover every venue), with their password hashes and disabled flags, by
//! id. When that list differs from the latest roster stored for the venue, a new one is
//! signed with the next version and the previous body's hash, stored (durable before it is
//! sent), and returned; otherwise the stored one is. Every hub session sends the current
//! roster when it is established and again whenever it changes (`sync.rs`): at once after
//! a change through the API (`AppState::rosters_changed`), and within [`RECHECK`]
//! otherwise (a `taplink-central user …` command is another process).

use std::time::Duration;

use taplink_sync_proto::authz::Role;
use taplink_sync_proto::ids::VenueId;
use taplink_sync_proto::roster::{Roster, RosterUser, SignedRoster, body_hash};

use crate::state::AppState;
use crate::store::RegistryError;

/// How often a session checks whether its venue's roster changed without being told.
pub const RECHECK: Duration = Duration::from_secs(60);

/// Why a roster could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RosterIssueError {
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Signing failed.
    #[error("signing a roster: {0}")]
    Sign(String),
    /// The venue does not exist.
    #[error("venue {0} does not exist")]
    UnknownVenue(VenueId),
}

/// The current signed roster of `venue`: the stored one if its users are still the
/// venue's, else a new version, stored before it is returned. Blocks on SQLite.
pub fn current(state: &AppState, venue: VenueId) -> Result<SignedRoster, RosterIssueError> {
    let registry = &state.registry;
    let record = registry
        .venue(venue)?
        .ok_or(RosterIssueError::UnknownVenue(venue))?;
    let users: Vec<RosterUser> = registry
        .users_with_hashes()?
        .into_iter()
        .filter(|(u, _)| u.role == Role::Admin || u.scope.covers(venue, &record.tags))
        .map(|(u, hash)| RosterUser {
            id: u.id,
            username: u.username,
            role: u.role,
            password_hash: hash,
            disabled: u.disabled,
        })
        .collect();
    let signer = &state.pki.roster;
    let latest = registry.latest_roster(venue)?;
    if let Some((_, body, signature)) = &latest
        && let Ok(held) = serde_json::from_slice::<Roster>(body)
        && held.users == users
    {
        return Ok(SignedRoster {
            body: body.clone(),
            signature: signature.clone(),
            signer: signer.cert_der().to_vec(),
        });
    }
    let roster = Roster {
        venue,
        version: latest.as_ref().map_or(1, |(v, _, _)| v + 1),
        previous: latest.as_ref().map(|(_, body, _)| body_hash(body)),
        issued_at_ms: state.now().timestamp_millis(),
        users,
    };
    let body = roster.body();
    let signature = signer
        .sign(&body)
        .map_err(|e| RosterIssueError::Sign(e.to_string()))?;
    if !registry.store_roster(venue, roster.version, &body, &signature, state.now())? {
        // Another session issued this version first: send that one.
        return current(state, venue);
    }
    tracing::info!(%venue, version = roster.version, users = roster.users.len(), "roster issued");
    Ok(SignedRoster {
        body,
        signature,
        signer: signer.cert_der().to_vec(),
    })
}
