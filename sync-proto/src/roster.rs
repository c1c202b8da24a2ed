//! A venue's roster: who may sign in at the venue's hub, verifiable offline.
//!
//! Central issues each venue a [`Roster`] — the users whose scope covers the venue, with
//! their role, password hash and disabled flag — with a version that only grows and the
//! hash of the roster it replaces, and signs its bytes with the roster signer
//! (`taplink_certs::roster`). It travels to the hub as its own protocol message
//! ([`crate::wire::Message::Roster`]), never inside a document a hub could edit. The hub
//! checks the signature and these rules (`taplink_sync_io::roster::admit`) before it keeps
//! it: for its venue, and newer than the one it holds.

use serde::{Deserialize, Serialize};

use crate::authz::Role;
use crate::ids::{UserId, VenueId};

/// Largest roster body accepted: 8 MiB (some 30,000 users).
pub const MAX_ROSTER_BYTES: usize = 8 * 1024 * 1024;

/// One person of a roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterUser {
    /// Their id (as central's audit log names them).
    pub id: UserId,
    /// What they sign in with.
    pub username: String,
    /// Their role.
    pub role: Role,
    /// Their argon2 password hash (PHC string), as central stores it.
    pub password_hash: String,
    /// Disabled at central: may not sign in, and their sessions end.
    pub disabled: bool,
}

/// Who may sign in at one venue's hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roster {
    /// The venue.
    pub venue: VenueId,
    /// Grows by one with each roster central issues for the venue.
    pub version: u64,
    /// The BLAKE3 hash (hex) of the body of the roster this one replaces.
    pub previous: Option<String>,
    /// When central issued it, Unix ms.
    pub issued_at_ms: i64,
    /// The users, by id.
    pub users: Vec<RosterUser>,
}

impl Roster {
    /// The bytes central signs and the hub verifies (JSON, fields in declaration order).
    pub fn body(&self) -> Vec<u8> {
        // Serialising plain structs, strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The user signing in as `username` (any letter case, as central compares them).
    pub fn user(&self, username: &str) -> Option<&RosterUser> {
        self.users
            .iter()
            .find(|u| u.username.eq_ignore_ascii_case(username.trim()))
    }
}

/// The BLAKE3 hash (hex) of a roster body: what the next roster names as `previous`.
pub fn body_hash(body: &[u8]) -> String {
    blake3::hash(body).to_hex().to_string()
}

/// A roster as it travels: its body, the signature and the signer's certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRoster {
    /// [`Roster::body`].
    pub body: Vec<u8>,
    /// ECDSA P-256 SHA-256 (ASN.1 DER) of `body` by the roster signer.
    pub signature: Vec<u8>,
    /// The roster signer's certificate (DER), issued by the org CA.
    pub signer: Vec<u8>,
}

impl SignedRoster {
    /// The roster in the body (not yet checked: see `taplink_sync_io::roster::admit`).
    pub fn roster(&self) -> Result<Roster, String> {
        if self.body.len() > MAX_ROSTER_BYTES {
            return Err(format!(
                "the roster is {} bytes, more than {MAX_ROSTER_BYTES}",
                self.body.len()
            ));
        }
        serde_json::from_slice(&self.body).map_err(|e| e.to_string())
    }
}
