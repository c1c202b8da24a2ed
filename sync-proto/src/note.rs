//! Who made a document change, carried inside the change itself.
//!
//! Every attributed edit (an API or CLI request at central, a staff edit on a hub) commits
//! its automerge change with a [`ChangeNote`] as the change's message: who made it, when
//! (the wall-clock time where it was made, so a change made offline at a venue keeps its
//! time), and what was asked for (the operations as JSON). The note travels with the change
//! through sync and merges, so central's audit log can attribute a hub's offline edits
//! after the fact. Which *device* made a change is not taken from the note but from the
//! change's automerge actor ([`node_actor`]): the note says who claims to have acted, the
//! actor which node wrote it.

use automerge::ActorId;
use serde::{Deserialize, Serialize};

/// The version of the note format this build writes.
pub const NOTE_VERSION: u32 = 1;

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Author {
    /// A person with a central account (its stable id, never a name: names are personal
    /// data and may be erased).
    User {
        /// The user's id.
        id: String,
    },
    /// An API token, by id.
    Token {
        /// The token's id.
        id: String,
    },
    /// Central's bootstrap admin token.
    AdminToken,
    /// A hub's local staff token, by the name the hub gave it.
    HubStaff {
        /// The staff token's name on the hub.
        name: String,
    },
    /// A device acting on its own behalf (a kiosk pairing itself, a hub's housekeeping).
    Device {
        /// What kind of device: `hub` or `kiosk`.
        device: String,
        /// Its id.
        id: String,
    },
}

/// Through what a change was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// An HTTP API request.
    Api,
    /// The command line (through the API).
    Cli,
    /// A web page.
    Web,
    /// The node itself.
    System,
}

/// The message of an attributed change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeNote {
    /// [`NOTE_VERSION`].
    pub v: u32,
    /// Who acted.
    pub by: Author,
    /// Through what.
    pub via: Via,
    /// When, in Unix milliseconds, by the clock of the node where it was made.
    pub at_ms: i64,
    /// What was asked for: the operations as JSON (one object, or an array).
    pub ops: serde_json::Value,
}

impl ChangeNote {
    /// A note of [`NOTE_VERSION`].
    pub fn new(by: Author, via: Via, at_ms: i64, ops: serde_json::Value) -> Self {
        Self {
            v: NOTE_VERSION,
            by,
            via,
            at_ms,
            ops,
        }
    }

    /// The note as a change message.
    pub fn to_message(&self) -> String {
        // A note is plain data: serialising it cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The note in a change message, if the message is one.
    pub fn from_message(message: &str) -> Option<Self> {
        serde_json::from_str(message).ok()
    }
}

/// The automerge actor of a node's own changes: the node's 16-byte id (a hub's id, or
/// central's), so the author device of every change is known from the change itself.
pub fn node_actor(id: [u8; 16]) -> ActorId {
    ActorId::from(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_survives_its_message() {
        let note = ChangeNote::new(
            Author::HubStaff { name: "bar".into() },
            Via::Api,
            1_700_000_000_000,
            serde_json::json!([{"op": "rename_venue", "name": "X"}]),
        );
        let message = note.to_message();
        assert_eq!(ChangeNote::from_message(&message), Some(note));
        assert_eq!(ChangeNote::from_message("not a note"), None);
        assert!(message.contains(r#""kind":"hub_staff""#), "{message}");
    }
}
