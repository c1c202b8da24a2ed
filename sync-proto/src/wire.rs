//! The wire protocol between central and hubs: ALPN, message types and the frame codec.
//!
//! Every message travels as one frame: `u32` big-endian length of what follows, a one-byte
//! message tag, then the message body encoded with postcard. The length covers tag + body
//! and may not exceed [`MAX_FRAME_LEN`]; a decoder checks the length before it buffers a
//! byte of the body, so a peer cannot make us allocate more than that.

mod codec;

pub use codec::*;

use serde::{Deserialize, Serialize};

use crate::ids::{HubId, ItemId, KioskId, MediaHash, PlaylistId, VenueId};

/// ALPN protocol name for this major version; a peer without it fails the TLS handshake.
pub const ALPN: &[u8] = b"taplink/1";

/// Protocol version carried in [`Hello`]; minor additions keep the ALPN, breaking ones bump it.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest frame (tag + body) either side sends or accepts: 16 MiB.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// Largest blob chunk in one [`Message::BlobChunk`]: 256 KiB.
pub const MAX_BLOB_CHUNK: usize = 256 * 1024;

/// Most events in one telemetry batch.
pub const MAX_TELEMETRY_BATCH: usize = 1000;

/// Which CRDT document a sync message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DocId {
    /// The organisation document (read-only for hubs).
    Org,
    /// One venue's document.
    Venue(VenueId),
}

impl std::fmt::Display for DocId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DocId::Org => f.write_str("org"),
            DocId::Venue(v) => write!(f, "venue/{v}"),
        }
    }
}

impl std::str::FromStr for DocId {
    type Err = crate::ids::ParseIdError;

    /// Parses the printed form: `org` or `venue/<venue id>`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("venue/") {
            Some(id) => id.parse().map(DocId::Venue),
            None if s == "org" => Ok(DocId::Org),
            None => Err(crate::ids::ParseIdError::BadId {
                kind: "document id (org or venue/<id>)",
                text: s.chars().take(64).collect(),
            }),
        }
    }
}

/// An automerge change hash (SHA-256 of the change).
pub type ChangeHash = [u8; 32];

/// Who a peer says it is. Central checks this against the peer's certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerIdentity {
    /// The central server.
    Central,
    /// A venue's edge hub.
    Hub {
        /// The hub.
        hub: HubId,
        /// Its venue.
        venue: VenueId,
    },
}

/// The heads of one document as the sender has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocHeads {
    /// The document.
    pub doc: DocId,
    /// Its current heads.
    pub heads: Vec<ChangeHash>,
}

/// The first message on a connection, from each side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The sender's software version, e.g. `taplink-hub 0.1.0`.
    pub software: String,
    /// Who the sender is.
    pub identity: PeerIdentity,
    /// The documents the sender will sync, with their heads.
    pub docs: Vec<DocHeads>,
}

/// A status report from a kiosk or hub, carried up to central. Idempotent by `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TelemetryEvent {
    /// Unique per event, chosen by its producer; central stores each id once.
    pub id: [u8; 16],
    /// The kiosk it concerns, or `None` for the hub itself.
    pub kiosk: Option<KioskId>,
    /// When it happened, milliseconds since the Unix epoch (producer's clock).
    pub at_ms: i64,
    /// What happened.
    pub kind: TelemetryKind,
}

/// How far back an event's time may lie behind the receiver's clock: a kiosk or hub that
/// was cut off for a long outage still delivers what it buffered.
pub const MAX_EVENT_AGE_MS: i64 = 400 * 24 * 3600 * 1000;
/// How far an event's time may lie ahead of the receiver's clock (clock skew).
pub const MAX_EVENT_AHEAD_MS: i64 = 24 * 3600 * 1000;
/// The longest one showing of one item can last.
pub const MAX_PLAY_MS: u64 = 24 * 3600 * 1000;

impl TelemetryEvent {
    /// Why this event cannot be true at `now_ms` (the receiver's clock), naming the field;
    /// `None` when it is plausible. Hubs check it on intake and central again on arrival,
    /// so forged or broken telemetry never reaches reports.
    pub fn implausible(&self, now_ms: i64) -> Option<String> {
        let window = |field: &str, at: i64| {
            let (earliest, latest) = (
                now_ms.saturating_sub(MAX_EVENT_AGE_MS),
                now_ms.saturating_add(MAX_EVENT_AHEAD_MS),
            );
            (at < earliest || at > latest).then(|| {
                format!("{field} {at} is outside the accepted window {earliest}..={latest} (ms since the epoch)")
            })
        };
        if let Some(problem) = window("at_ms", self.at_ms) {
            return Some(problem);
        }
        match &self.kind {
            TelemetryKind::ProofOfPlay(p) => {
                if p.duration_ms > MAX_PLAY_MS {
                    return Some(format!(
                        "duration_ms {} is longer than a day ({MAX_PLAY_MS})",
                        p.duration_ms
                    ));
                }
                window("started_ms", p.started_ms)
            }
            TelemetryKind::Heartbeat(_) => None,
        }
    }
}

/// The kinds of telemetry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TelemetryKind {
    /// Periodic health report.
    Heartbeat(Heartbeat),
    /// An item was shown.
    ProofOfPlay(ProofOfPlay),
}

/// A kiosk's (or hub's) periodic health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// What is on screen now.
    pub on_screen: Option<MediaHash>,
    /// The manifest version being played.
    pub manifest_version: String,
    /// Free disk space in bytes.
    pub disk_free_bytes: u64,
    /// SoC temperature in milli-degrees Celsius, where readable.
    pub temperature_mc: Option<i32>,
    /// Seconds since boot.
    pub uptime_s: u64,
    /// Software version string.
    pub software: String,
}

/// One showing of one item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofOfPlay {
    /// Playlist it came from.
    pub playlist: PlaylistId,
    /// Item in that playlist.
    pub item: ItemId,
    /// Media shown.
    pub media: MediaHash,
    /// Start, milliseconds since the Unix epoch.
    pub started_ms: i64,
    /// How long it was on screen.
    pub duration_ms: u64,
}

/// Why a peer refused something. Sent in [`Message::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The peer speaks a protocol version we do not.
    UnsupportedVersion,
    /// The peer's identity (certificate or hello) is not acceptable.
    Unauthorized,
    /// The peer may not touch that document or blob.
    Forbidden,
    /// A frame could not be decoded or made no sense in this state.
    Malformed,
    /// A frame or a batch exceeded a limit.
    TooLarge,
    /// The requested blob is not stored here.
    NotFound,
    /// Too busy now; retry later with backoff.
    Busy,
    /// Something failed on our side.
    Internal,
}

/// Every message of protocol version 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Opening message: versions, identity, document heads.
    Hello(Hello),
    /// One automerge sync message for one document.
    DocSync {
        /// The document.
        doc: DocId,
        /// `automerge::sync::Message::encode()` bytes.
        data: Vec<u8>,
    },
    /// The sender's heads of a document changed; the receiver starts a sync round if they
    /// are news to it.
    Changed {
        /// The document.
        doc: DocId,
        /// Its new heads.
        heads: Vec<ChangeHash>,
    },
    /// Ask for a blob's bytes from `offset` on (resuming a cut transfer).
    BlobRequest {
        /// The blob.
        hash: MediaHash,
        /// First byte wanted.
        offset: u64,
    },
    /// A run of a blob's bytes.
    BlobChunk {
        /// The blob.
        hash: MediaHash,
        /// Offset of `data[0]` in the blob.
        offset: u64,
        /// The blob's total length.
        total_len: u64,
        /// At most [`MAX_BLOB_CHUNK`] bytes.
        data: Vec<u8>,
    },
    /// A batch of telemetry, hub → central.
    TelemetryBatch {
        /// Sender-chosen batch number, echoed in the ack.
        batch: u64,
        /// At most [`MAX_TELEMETRY_BATCH`] events.
        events: Vec<TelemetryEvent>,
    },
    /// The batch is durably stored (duplicates by event id were skipped).
    TelemetryAck {
        /// The acknowledged batch number.
        batch: u64,
        /// How many events were new.
        stored: u32,
    },
    /// The venue's signed roster, central → hub (`crate::roster`).
    Roster(crate::roster::SignedRoster),
    /// A refusal; the connection may carry on unless the code says otherwise.
    Error {
        /// What kind of refusal.
        code: ErrorCode,
        /// A sentence a person can act on.
        reason: String,
    },
}

impl Message {
    /// The message's name, for logs and error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello(_) => "Hello",
            Message::DocSync { .. } => "DocSync",
            Message::Changed { .. } => "Changed",
            Message::BlobRequest { .. } => "BlobRequest",
            Message::BlobChunk { .. } => "BlobChunk",
            Message::TelemetryBatch { .. } => "TelemetryBatch",
            Message::TelemetryAck { .. } => "TelemetryAck",
            Message::Error { .. } => "Error",
            Message::Roster(_) => "Roster",
        }
    }
}
