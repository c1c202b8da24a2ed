//! The frame codec: turns a [`Message`] into one length-prefixed frame and back, enforcing
//! every size limit of the protocol on both sides.
//!
//! # Frame format
//!
//! ```text
//! +----------------+-----+------------------------------+
//! | len: u32 BE    | tag | body (postcard)              |
//! +----------------+-----+------------------------------+
//!   4 bytes          1     len - 1 bytes
//! ```
//!
//! `len` counts the tag and the body and is at most [`MAX_FRAME_LEN`] (or a lower limit a
//! stream chose with [`FrameDecoder::with_max_len`]). The body is the postcard encoding of
//! the variant's payload: the newtype's inner struct for [`Message::Hello`], and the fields
//! in declaration order as a tuple for the struct variants. Byte payloads (`data`) are a
//! varint length followed by the raw bytes.
//!
//! | tag | message                     | body                                       |
//! |-----|-----------------------------|--------------------------------------------|
//! | 1   | [`Message::Hello`]          | [`Hello`]                                  |
//! | 2   | [`Message::DocSync`]        | `(doc, data)`                              |
//! | 3   | [`Message::Changed`]        | `(doc, heads)`                             |
//! | 4   | [`Message::BlobRequest`]    | `(hash, offset)`                           |
//! | 5   | [`Message::BlobChunk`]      | `(hash, offset, total_len, data)`          |
//! | 6   | [`Message::TelemetryBatch`] | `(batch, events)`                          |
//! | 7   | [`Message::TelemetryAck`]   | `(batch, stored)`                          |
//! | 8   | [`Message::Error`]          | `(code, reason)`                           |
//! | 9   | [`Message::Roster`]         | `(body, signature, signer)` ([`crate::roster::SignedRoster`]) |
//!
//! Tags are part of the wire format of this ALPN version: never renumber or reuse one.
//! Tag 0 is deliberately unused so that a zero-filled buffer never decodes.
//!
//! # Limits
//!
//! Besides [`MAX_FRAME_LEN`], [`MAX_BLOB_CHUNK`] and [`MAX_TELEMETRY_BATCH`] from the parent
//! module, the codec enforces [`MAX_HELLO_DOCS`], [`MAX_HEADS_PER_DOC`],
//! [`MAX_SOFTWARE_LEN`], [`MAX_ERROR_REASON_LEN`] and [`MAX_TELEMETRY_STRING_LEN`]. The
//! encoder checks them too, so we never send what the peer must refuse.
//!
//! # Resource use
//!
//! Decoding never panics and never allocates in proportion to a length field that claims
//! more than the bytes present: strings and byte payloads are checked against the bytes
//! present before they are copied, and every list is read through a bounded collector that
//! stores at most its limit of elements (the rest are decoded, counted and dropped, so the
//! error can say how many there were).

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};
use serde::{Serialize, Serializer};

use super::{
    ChangeHash, DocHeads, DocId, ErrorCode, Hello, MAX_BLOB_CHUNK, MAX_FRAME_LEN,
    MAX_TELEMETRY_BATCH, Message, PeerIdentity, TelemetryEvent, TelemetryKind,
};
use crate::ids::MediaHash;

/// Length of the frame header: the big-endian `u32` length of tag + body.
pub const FRAME_HEADER_LEN: usize = 4;

/// Most documents one [`Hello`] may list.
pub const MAX_HELLO_DOCS: usize = 4096;

/// Most heads one document may have in a [`Hello`] or a [`Message::Changed`]. A document
/// has several heads only while concurrent changes are unmerged, so this is generous.
pub const MAX_HEADS_PER_DOC: usize = 1024;

/// Longest [`Hello::software`] string, in bytes.
pub const MAX_SOFTWARE_LEN: usize = 256;

/// Longest reason in a [`Message::Error`], in bytes. [`Message::error`] clips to it.
pub const MAX_ERROR_REASON_LEN: usize = 4096;

/// Longest string field of a telemetry event (a heartbeat's `manifest_version` and
/// `software`), in bytes; it keeps the worst case of a stored batch predictable.
pub const MAX_TELEMETRY_STRING_LEN: usize = 256;

// Frame lengths travel as u32 and are used as usize; the crate does not support 16-bit targets.
const _: () = assert!(usize::BITS >= 32);
// The largest frame must be expressible in the u32 header.
const _: () = assert!(MAX_FRAME_LEN <= u32::MAX as usize);

const TAG_HELLO: u8 = 1;
const TAG_DOC_SYNC: u8 = 2;
const TAG_CHANGED: u8 = 3;
const TAG_BLOB_REQUEST: u8 = 4;
const TAG_BLOB_CHUNK: u8 = 5;
const TAG_TELEMETRY_BATCH: u8 = 6;
const TAG_TELEMETRY_ACK: u8 = 7;
const TAG_ERROR: u8 = 8;
const TAG_ROSTER: u8 = 9;

impl Message {
    /// The message's tag byte on the wire (see the table in this module's docs).
    pub fn tag(&self) -> u8 {
        match self {
            Message::Hello(_) => TAG_HELLO,
            Message::DocSync { .. } => TAG_DOC_SYNC,
            Message::Changed { .. } => TAG_CHANGED,
            Message::BlobRequest { .. } => TAG_BLOB_REQUEST,
            Message::BlobChunk { .. } => TAG_BLOB_CHUNK,
            Message::TelemetryBatch { .. } => TAG_TELEMETRY_BATCH,
            Message::TelemetryAck { .. } => TAG_TELEMETRY_ACK,
            Message::Error { .. } => TAG_ERROR,
            Message::Roster(_) => TAG_ROSTER,
        }
    }

    /// An [`Message::Error`] whose reason is clipped to [`MAX_ERROR_REASON_LEN`] bytes (on a
    /// character boundary), so that it always encodes.
    pub fn error(code: ErrorCode, reason: impl Into<String>) -> Message {
        let mut reason = reason.into();
        if reason.len() > MAX_ERROR_REASON_LEN {
            let mut end = MAX_ERROR_REASON_LEN;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
        }
        Message::Error { code, reason }
    }
}

/// A message breaks one of the protocol's size limits or invariants. Both the encoder and
/// the decoder report these, wrapped in [`EncodeError::Limit`] and [`DecodeError::Limit`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// A [`Message::BlobChunk`] carries more than [`MAX_BLOB_CHUNK`] bytes.
    #[error("blob chunk of {len} bytes exceeds the {max}-byte limit; send smaller chunks")]
    BlobChunkTooLarge {
        /// Bytes in the chunk.
        len: usize,
        /// The limit, [`MAX_BLOB_CHUNK`].
        max: usize,
    },
    /// A [`Message::BlobChunk`]'s `offset + data.len()` overflows or exceeds `total_len`.
    #[error(
        "blob chunk at offset {offset} with {len} bytes ends past the blob's total length of {total_len} bytes"
    )]
    BlobChunkOutOfRange {
        /// The chunk's offset.
        offset: u64,
        /// Bytes in the chunk.
        len: usize,
        /// The blob length the chunk claims.
        total_len: u64,
    },
    /// A [`Message::TelemetryBatch`] holds more than [`MAX_TELEMETRY_BATCH`] events.
    #[error("telemetry batch of {count} events exceeds the limit of {max}; send smaller batches")]
    TelemetryBatchTooLarge {
        /// Events in the batch.
        count: usize,
        /// The limit, [`MAX_TELEMETRY_BATCH`].
        max: usize,
    },
    /// A [`Hello`] lists more than [`MAX_HELLO_DOCS`] documents.
    #[error("Hello lists {count} documents, more than the limit of {max}")]
    TooManyDocs {
        /// Documents listed.
        count: usize,
        /// The limit, [`MAX_HELLO_DOCS`].
        max: usize,
    },
    /// A document in a [`Hello`] or [`Message::Changed`] has more than
    /// [`MAX_HEADS_PER_DOC`] heads.
    #[error("{kind} gives document {doc} {count} heads, more than the limit of {max}")]
    TooManyHeads {
        /// Which message ("Hello" or "Changed").
        kind: &'static str,
        /// The document.
        doc: DocId,
        /// Heads given.
        count: usize,
        /// The limit, [`MAX_HEADS_PER_DOC`].
        max: usize,
    },
    /// A string field is longer than its limit.
    #[error("{kind} field `{field}` is {len} bytes long, more than the limit of {max}")]
    StringTooLong {
        /// Which message.
        kind: &'static str,
        /// Which field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit for that field.
        max: usize,
    },
}

/// Why a message could not be encoded into a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The encoded frame (tag + body) would exceed [`MAX_FRAME_LEN`].
    #[error("{kind} frame of {len} bytes exceeds the {max}-byte limit")]
    FrameTooLarge {
        /// Which message.
        kind: &'static str,
        /// Length the frame would have (tag + body).
        len: usize,
        /// The limit, [`MAX_FRAME_LEN`].
        max: usize,
    },
    /// The message breaks a protocol limit the peer would refuse it for.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// postcard refused to serialize the payload. Not expected for these types; reported
    /// rather than panicking.
    #[error("{kind} could not be serialized: {reason}")]
    Serialize {
        /// Which message.
        kind: &'static str,
        /// postcard's reason.
        reason: String,
    },
}

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The length header claims more than the allowed maximum (16 MiB, or a stream's lower
    /// limit). Reported as soon as the 4 header bytes are known.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    FrameTooLarge {
        /// The length the header claims (tag + body).
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// [`decode_frame`] got fewer bytes than the frame needs.
    #[error("frame is truncated: it needs {needed} bytes and only {have} are present")]
    Truncated {
        /// Bytes needed for the whole frame, header included (4 while the header itself is
        /// incomplete).
        needed: usize,
        /// Bytes present.
        have: usize,
    },
    /// [`decode_frame`] got more bytes than one frame.
    #[error(
        "{count} bytes follow the end of the {frame_len}-byte frame; pass exactly one frame or use FrameDecoder"
    )]
    ExtraBytesAfterFrame {
        /// Length of the whole frame, header included.
        frame_len: usize,
        /// Bytes after it.
        count: usize,
    },
    /// The length header is 0, so there is not even a message tag.
    #[error("frame has length 0 and carries no message tag")]
    EmptyFrame,
    /// The tag byte names no message of this protocol version.
    #[error("unknown message tag {tag}; the peer may speak a different protocol version")]
    UnknownTag {
        /// The tag byte.
        tag: u8,
    },
    /// The body is not a valid postcard encoding of the message's payload.
    #[error("{kind} body could not be decoded: {reason}")]
    Malformed {
        /// Which message the tag announced.
        kind: &'static str,
        /// postcard's reason.
        reason: String,
    },
    /// The body decoded but bytes remain after it inside the frame.
    #[error("{kind} body is followed by {count} unexpected bytes inside the frame")]
    TrailingBytes {
        /// Which message.
        kind: &'static str,
        /// Bytes left over.
        count: usize,
    },
    /// The message decoded but breaks a protocol limit.
    #[error(transparent)]
    Limit(#[from] LimitError),
}

impl DecodeError {
    /// The [`ErrorCode`] to send the peer when refusing its frame for this reason.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            DecodeError::FrameTooLarge { .. } => ErrorCode::TooLarge,
            DecodeError::Limit(LimitError::BlobChunkOutOfRange { .. }) => ErrorCode::Malformed,
            DecodeError::Limit(_) => ErrorCode::TooLarge,
            _ => ErrorCode::Malformed,
        }
    }
}

/// Encode `msg` as one frame (header, tag, body).
pub fn encode_frame(msg: &Message) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    encode_frame_into(msg, &mut out)?;
    Ok(out)
}

/// Append `msg` as one frame to `out`. On error `out` is left as it was.
pub fn encode_frame_into(msg: &Message, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    check_limits(msg)?;
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    out.push(msg.tag());
    if let Err(e) = serialize_body(msg, out) {
        out.truncate(start);
        return Err(EncodeError::Serialize {
            kind: msg.kind(),
            reason: e.to_string(),
        });
    }
    let len = out.len() - start - FRAME_HEADER_LEN;
    // MAX_FRAME_LEN is the protocol limit; it fits in a u32 (asserted at compile time), and
    // `try_from` makes the header conversion total without a lossy cast.
    let Some(header) = u32::try_from(len).ok().filter(|_| len <= MAX_FRAME_LEN) else {
        out.truncate(start);
        return Err(EncodeError::FrameTooLarge {
            kind: msg.kind(),
            len,
            max: MAX_FRAME_LEN,
        });
    };
    out[start..start + FRAME_HEADER_LEN].copy_from_slice(&header.to_be_bytes());
    Ok(())
}

/// The start of the `BlobChunk` frame that carries `data_len` bytes of `hash` from
/// `offset`: everything before the data (frame header, tag, hash, offset, total length and
/// the data's length). The frame is this followed by the data itself, byte for byte what
/// [`encode_frame`] makes of the same [`Message::BlobChunk`], so a sender can hand the
/// head and its data buffer to the transport separately instead of copying the data into a
/// frame. The limits are those of `encode_frame`.
pub fn encode_blob_chunk_head(
    hash: &MediaHash,
    offset: u64,
    total_len: u64,
    data_len: usize,
) -> Result<Vec<u8>, EncodeError> {
    check_blob_chunk(offset, total_len, data_len)?;
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    out.push(TAG_BLOB_CHUNK);
    postcard::to_io(&(hash, offset, total_len), &mut out).map_err(|e| EncodeError::Serialize {
        kind: "BlobChunk",
        reason: e.to_string(),
    })?;
    // postcard's length prefix of a byte payload: a LEB128 varint.
    let mut len = data_len;
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    // At most MAX_BLOB_CHUNK + ~70 bytes (checked above), far below MAX_FRAME_LEN and u32.
    let frame_len = out.len() - FRAME_HEADER_LEN + data_len;
    let Some(header) = u32::try_from(frame_len)
        .ok()
        .filter(|_| frame_len <= MAX_FRAME_LEN)
    else {
        return Err(EncodeError::FrameTooLarge {
            kind: "BlobChunk",
            len: frame_len,
            max: MAX_FRAME_LEN,
        });
    };
    out[..FRAME_HEADER_LEN].copy_from_slice(&header.to_be_bytes());
    Ok(out)
}

fn serialize_body(msg: &Message, out: &mut Vec<u8>) -> postcard::Result<()> {
    let w = &mut *out;
    match msg {
        Message::Hello(hello) => postcard::to_io(hello, w),
        Message::DocSync { doc, data } => postcard::to_io(&(doc, ByteSlice(data)), w),
        Message::Changed { doc, heads } => postcard::to_io(&(doc, heads), w),
        Message::BlobRequest { hash, offset } => postcard::to_io(&(hash, offset), w),
        Message::BlobChunk {
            hash,
            offset,
            total_len,
            data,
        } => postcard::to_io(&(hash, offset, total_len, ByteSlice(data)), w),
        Message::TelemetryBatch { batch, events } => postcard::to_io(&(batch, events), w),
        Message::TelemetryAck { batch, stored } => postcard::to_io(&(batch, stored), w),
        Message::Error { code, reason } => postcard::to_io(&(code, reason), w),
        Message::Roster(r) => postcard::to_io(
            &(
                ByteSlice(&r.body),
                ByteSlice(&r.signature),
                ByteSlice(&r.signer),
            ),
            w,
        ),
    }
    .map(|_| ())
}

/// Decode exactly one whole frame, length header included. Bytes after the frame are an
/// error ([`DecodeError::ExtraBytesAfterFrame`]); for a byte stream use [`FrameDecoder`].
pub fn decode_frame(frame: &[u8]) -> Result<Message, DecodeError> {
    decode_body(frame_body(frame)?)
}

/// A frame read from a blob stream by [`decode_blob_frame`].
#[derive(Debug, PartialEq)]
pub enum BlobFrame<'a> {
    /// A [`Message::BlobChunk`] whose data is borrowed from the frame.
    Chunk {
        /// The blob.
        hash: MediaHash,
        /// Where `data` starts in the blob.
        offset: u64,
        /// The blob's whole length.
        total_len: u64,
        /// The chunk's bytes: always the frame's last `data.len()` bytes.
        data: &'a [u8],
    },
    /// Any other message (an `Error` ending the stream, or a peer's mistake).
    Other(Message),
}

/// Decode one whole frame like [`decode_frame`], with the same checks, but leave a blob
/// chunk's data in `frame` instead of copying it out: a receiver can then write it from
/// the buffer it read the frame into.
pub fn decode_blob_frame(frame: &[u8]) -> Result<BlobFrame<'_>, DecodeError> {
    let tag_and_body = frame_body(frame)?;
    match tag_and_body.split_first() {
        Some((&TAG_BLOB_CHUNK, body)) => {
            let (hash, offset, total_len, data) = blob_chunk(body)?;
            Ok(BlobFrame::Chunk {
                hash,
                offset,
                total_len,
                data,
            })
        }
        _ => decode_body(tag_and_body).map(BlobFrame::Other),
    }
}

/// The tag and body of exactly one whole frame (length header included, nothing after it).
fn frame_body(frame: &[u8]) -> Result<&[u8], DecodeError> {
    let Some(len) = header_len(frame) else {
        return Err(DecodeError::Truncated {
            needed: FRAME_HEADER_LEN,
            have: frame.len(),
        });
    };
    if len > MAX_FRAME_LEN {
        return Err(DecodeError::FrameTooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    let frame_len = FRAME_HEADER_LEN + len;
    match frame.len().cmp(&frame_len) {
        std::cmp::Ordering::Less => Err(DecodeError::Truncated {
            needed: frame_len,
            have: frame.len(),
        }),
        std::cmp::Ordering::Greater => Err(DecodeError::ExtraBytesAfterFrame {
            frame_len,
            count: frame.len() - frame_len,
        }),
        std::cmp::Ordering::Equal => Ok(&frame[FRAME_HEADER_LEN..]),
    }
}

/// A `BlobChunk` body, its limits checked, its data borrowed.
fn blob_chunk(body: &[u8]) -> Result<(MediaHash, u64, u64, &[u8]), DecodeError> {
    let (hash, offset, total_len, data): (MediaHash, u64, u64, &[u8]) = payload("BlobChunk", body)?;
    check_blob_chunk(offset, total_len, data.len())?;
    Ok((hash, offset, total_len, data))
}

/// The length in the header at the start of `bytes`, if all 4 header bytes are there.
fn header_len(bytes: &[u8]) -> Option<usize> {
    let header: [u8; FRAME_HEADER_LEN] = bytes.get(..FRAME_HEADER_LEN)?.try_into().ok()?;
    // Lossless: usize has at least 32 bits (asserted at compile time above).
    Some(u32::from_be_bytes(header) as usize)
}

/// Decode tag + body (the part of a frame the length header covers).
fn decode_body(tag_and_body: &[u8]) -> Result<Message, DecodeError> {
    let Some((&tag, body)) = tag_and_body.split_first() else {
        return Err(DecodeError::EmptyFrame);
    };
    let msg = match tag {
        TAG_HELLO => {
            let h: HelloIn = payload("Hello", body)?;
            if h.docs.total > MAX_HELLO_DOCS {
                return Err(LimitError::TooManyDocs {
                    count: h.docs.total,
                    max: MAX_HELLO_DOCS,
                }
                .into());
            }
            let mut docs = Vec::with_capacity(h.docs.items.len());
            for d in h.docs.items {
                docs.push(DocHeads {
                    doc: d.doc,
                    heads: d.heads.into_vec("Hello", d.doc)?,
                });
            }
            Message::Hello(Hello {
                protocol: h.protocol,
                software: h.software,
                identity: h.identity,
                docs,
            })
        }
        TAG_DOC_SYNC => {
            let (doc, data): (DocId, &[u8]) = payload("DocSync", body)?;
            Message::DocSync {
                doc,
                data: data.to_vec(),
            }
        }
        TAG_CHANGED => {
            let (doc, heads): (DocId, Bounded<ChangeHash, MAX_HEADS_PER_DOC>) =
                payload("Changed", body)?;
            Message::Changed {
                doc,
                heads: heads.into_vec("Changed", doc)?,
            }
        }
        TAG_BLOB_REQUEST => {
            let (hash, offset): (MediaHash, u64) = payload("BlobRequest", body)?;
            Message::BlobRequest { hash, offset }
        }
        TAG_BLOB_CHUNK => {
            // Limits are checked before copying, so an oversized chunk costs no allocation.
            let (hash, offset, total_len, data) = blob_chunk(body)?;
            Message::BlobChunk {
                hash,
                offset,
                total_len,
                data: data.to_vec(),
            }
        }
        TAG_TELEMETRY_BATCH => {
            let (batch, events): (u64, Bounded<TelemetryEvent, MAX_TELEMETRY_BATCH>) =
                payload("TelemetryBatch", body)?;
            if events.total > MAX_TELEMETRY_BATCH {
                return Err(LimitError::TelemetryBatchTooLarge {
                    count: events.total,
                    max: MAX_TELEMETRY_BATCH,
                }
                .into());
            }
            Message::TelemetryBatch {
                batch,
                events: events.items,
            }
        }
        TAG_TELEMETRY_ACK => {
            let (batch, stored): (u64, u32) = payload("TelemetryAck", body)?;
            Message::TelemetryAck { batch, stored }
        }
        TAG_ERROR => {
            let (code, reason): (ErrorCode, String) = payload("Error", body)?;
            Message::Error { code, reason }
        }
        TAG_ROSTER => {
            let (body, signature, signer): (&[u8], &[u8], &[u8]) = payload("Roster", body)?;
            Message::Roster(crate::roster::SignedRoster {
                body: body.to_vec(),
                signature: signature.to_vec(),
                signer: signer.to_vec(),
            })
        }
        tag => return Err(DecodeError::UnknownTag { tag }),
    };
    // The list counts were checked above while decoding; this covers strings and ranges
    // with the same function the encoder uses, so both sides agree on what is valid.
    check_limits(&msg)?;
    Ok(msg)
}

/// Decode one payload that must fill `body` exactly.
fn payload<'de, T: Deserialize<'de>>(
    kind: &'static str,
    body: &'de [u8],
) -> Result<T, DecodeError> {
    let (value, rest) = postcard::take_from_bytes(body).map_err(|e| DecodeError::Malformed {
        kind,
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes {
            kind,
            count: rest.len(),
        });
    }
    Ok(value)
}

/// Every limit a message must respect, shared by the encoder and the decoder.
fn check_limits(msg: &Message) -> Result<(), LimitError> {
    match msg {
        Message::Hello(h) => {
            check_str("Hello", "software", &h.software, MAX_SOFTWARE_LEN)?;
            if h.docs.len() > MAX_HELLO_DOCS {
                return Err(LimitError::TooManyDocs {
                    count: h.docs.len(),
                    max: MAX_HELLO_DOCS,
                });
            }
            for d in &h.docs {
                check_heads("Hello", d.doc, d.heads.len())?;
            }
        }
        Message::Changed { doc, heads } => check_heads("Changed", *doc, heads.len())?,
        Message::BlobChunk {
            offset,
            total_len,
            data,
            ..
        } => check_blob_chunk(*offset, *total_len, data.len())?,
        Message::TelemetryBatch { events, .. } => {
            if events.len() > MAX_TELEMETRY_BATCH {
                return Err(LimitError::TelemetryBatchTooLarge {
                    count: events.len(),
                    max: MAX_TELEMETRY_BATCH,
                });
            }
            for e in events {
                match &e.kind {
                    TelemetryKind::Heartbeat(hb) => {
                        check_str(
                            "TelemetryBatch",
                            "manifest_version",
                            &hb.manifest_version,
                            MAX_TELEMETRY_STRING_LEN,
                        )?;
                        check_str(
                            "TelemetryBatch",
                            "software",
                            &hb.software,
                            MAX_TELEMETRY_STRING_LEN,
                        )?;
                    }
                    TelemetryKind::ProofOfPlay(_) => {}
                }
            }
        }
        Message::Error { reason, .. } => {
            check_str("Error", "reason", reason, MAX_ERROR_REASON_LEN)?
        }
        // Bounded only by the frame length (a roster body also by `MAX_ROSTER_BYTES`, checked
        // where it is read).
        Message::DocSync { .. }
        | Message::BlobRequest { .. }
        | Message::TelemetryAck { .. }
        | Message::Roster(_) => {}
    }
    Ok(())
}

fn check_str(
    kind: &'static str,
    field: &'static str,
    s: &str,
    max: usize,
) -> Result<(), LimitError> {
    if s.len() > max {
        return Err(LimitError::StringTooLong {
            kind,
            field,
            len: s.len(),
            max,
        });
    }
    Ok(())
}

fn check_heads(kind: &'static str, doc: DocId, count: usize) -> Result<(), LimitError> {
    if count > MAX_HEADS_PER_DOC {
        return Err(LimitError::TooManyHeads {
            kind,
            doc,
            count,
            max: MAX_HEADS_PER_DOC,
        });
    }
    Ok(())
}

fn check_blob_chunk(offset: u64, total_len: u64, len: usize) -> Result<(), LimitError> {
    if len > MAX_BLOB_CHUNK {
        return Err(LimitError::BlobChunkTooLarge {
            len,
            max: MAX_BLOB_CHUNK,
        });
    }
    let end = u64::try_from(len).ok().and_then(|l| offset.checked_add(l));
    if end.is_none_or(|end| end > total_len) {
        return Err(LimitError::BlobChunkOutOfRange {
            offset,
            len,
            total_len,
        });
    }
    Ok(())
}

/// Serializes a byte slice as postcard bytes (varint length + raw bytes): the same wire form
/// as a `Vec<u8>`, written in one copy instead of one call per byte.
struct ByteSlice<'a>(&'a [u8]);

impl Serialize for ByteSlice<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// Decode-side mirror of [`Hello`] with bounded lists; same wire form.
#[derive(serde::Deserialize)]
struct HelloIn {
    protocol: u32,
    software: String,
    identity: PeerIdentity,
    docs: Bounded<DocHeadsIn, MAX_HELLO_DOCS>,
}

/// Decode-side mirror of [`DocHeads`] with a bounded list; same wire form.
#[derive(serde::Deserialize)]
struct DocHeadsIn {
    doc: DocId,
    heads: Bounded<ChangeHash, MAX_HEADS_PER_DOC>,
}

/// A list read from the wire that keeps at most `MAX` elements and counts the rest.
///
/// Elements past the limit are still decoded (so the body's framing stays intact and the
/// error can report the real count) but dropped at once, so memory stays bounded by `MAX`
/// whatever the length field claims.
struct Bounded<T, const MAX: usize> {
    items: Vec<T>,
    total: usize,
}

impl<const MAX: usize> Bounded<ChangeHash, MAX> {
    fn into_vec(self, kind: &'static str, doc: DocId) -> Result<Vec<ChangeHash>, LimitError> {
        check_heads(kind, doc, self.total)?;
        Ok(self.items)
    }
}

impl<'de, T: Deserialize<'de>, const MAX: usize> Deserialize<'de> for Bounded<T, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T, const MAX: usize>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>, const MAX: usize> Visitor<'de> for V<T, MAX> {
            type Value = Bounded<T, MAX>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a list of at most {MAX} elements")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                // postcard gives no hint when the claimed length exceeds the bytes left, and
                // the hint is capped by MAX, so a lying length cannot cause a big allocation.
                let cap = seq.size_hint().unwrap_or(0).min(MAX);
                let mut items = Vec::with_capacity(cap);
                let mut total = 0usize;
                while let Some(item) = seq.next_element::<T>()? {
                    total = total.saturating_add(1);
                    if items.len() < MAX {
                        items.push(item);
                    }
                }
                Ok(Bounded { items, total })
            }
        }

        d.deserialize_seq(V::<T, MAX>(PhantomData))
    }
}

/// Splits a byte stream into frames and decodes them.
///
/// Feed it whatever the transport delivers with [`push`](Self::push) and take messages out
/// with [`next_frame`](Self::next_frame).
///
/// # Memory bound
///
/// A frame's length header is checked as soon as its 4 bytes arrive, before any of its body
/// is stored; an oversized length poisons the decoder and the bytes after that header are
/// discarded. Hence the frame still being received occupies at most `max_len + 4` bytes.
/// `push` stores everything it is given up to such a header, so the buffer may also hold
/// complete frames not yet taken out; a caller that reads at most
/// [`bytes_wanted`](Self::bytes_wanted) bytes before each `push` (and stops reading while
/// [`wants_more`](Self::wants_more) is false) never holds more than one frame,
/// `max_len + 4` bytes.
///
/// # Errors
///
/// After any error the decoder is poisoned: the stream's framing can no longer be trusted,
/// so every later `next_frame` returns the same error and further input is discarded. The
/// caller should send [`DecodeError::error_code`] to the peer and close the stream. Frames
/// completed before the offending one are still returned first.
pub struct FrameDecoder {
    /// Received bytes; `buf[start..]` is not yet taken out.
    buf: Vec<u8>,
    /// Start of the first frame not yet taken out.
    start: usize,
    /// Start of the frame being received; every frame in `buf[start..recv]` is complete.
    recv: usize,
    /// Largest accepted length header (tag + body).
    max_len: usize,
    /// A bad header found by `push` after the complete frames; reported once they are out.
    pending: Option<DecodeError>,
    /// The error already reported; returned forever after.
    poisoned: Option<DecodeError>,
}

/// Capacity kept in an empty buffer; a larger one (left by a big frame) is released.
const RETAINED_CAPACITY: usize = 64 * 1024;

impl FrameDecoder {
    /// A decoder accepting frames up to [`MAX_FRAME_LEN`].
    pub fn new() -> Self {
        Self::with_max_len(MAX_FRAME_LEN)
    }

    /// A decoder accepting frames (tag + body) of at most `max_len` bytes, for streams that
    /// should only ever carry small messages. Values above [`MAX_FRAME_LEN`] are clamped to
    /// it, since no valid frame is larger.
    pub fn with_max_len(max_len: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            recv: 0,
            max_len: max_len.min(MAX_FRAME_LEN),
            pending: None,
            poisoned: None,
        }
    }

    /// The largest frame length (tag + body) this decoder accepts.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Add received bytes. Checks every length header they complete; see the type's docs
    /// for what is stored. Input after an error is discarded.
    pub fn push(&mut self, mut bytes: &[u8]) {
        if self.poisoned.is_some() || self.pending.is_some() {
            return;
        }
        while !bytes.is_empty() {
            // Copy up to the next boundary (header complete or frame complete), so that each
            // header is examined before a byte of its body is stored.
            let take = self.to_boundary().min(bytes.len());
            let (now, rest) = bytes.split_at(take);
            self.buf.extend_from_slice(now);
            bytes = rest;
            let Some(len) = header_len(&self.buf[self.recv..]) else {
                continue;
            };
            if len > self.max_len {
                self.buf.truncate(self.recv);
                self.pending = Some(DecodeError::FrameTooLarge {
                    len,
                    max: self.max_len,
                });
                return;
            }
            if self.buf.len() - self.recv == FRAME_HEADER_LEN + len {
                self.recv = self.buf.len();
            }
        }
    }

    /// Bytes from the end of `buf` to the next point `push` must stop at; at least 1.
    fn to_boundary(&self) -> usize {
        let have = self.buf.len() - self.recv;
        match header_len(&self.buf[self.recv..]) {
            None => FRAME_HEADER_LEN - have,
            Some(len) => FRAME_HEADER_LEN + len - have,
        }
    }

    /// The next complete message, `Ok(None)` if more bytes are needed, or the error that
    /// poisoned the stream.
    pub fn next_frame(&mut self) -> Result<Option<Message>, DecodeError> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone());
        }
        if self.start == self.recv {
            return match self.pending.take() {
                Some(e) => Err(self.poison(e)),
                None => Ok(None),
            };
        }
        // Invariant: start <= recv <= buf.len(), and buf[start..recv] holds only complete
        // frames whose headers push checked. The `get` below turns a broken invariant into
        // an error rather than a panic.
        let queued = &self.buf[self.start..self.recv];
        let frame_len = header_len(queued).map(|len| FRAME_HEADER_LEN + len);
        let result = match frame_len.and_then(|n| queued.get(FRAME_HEADER_LEN..n)) {
            Some(tag_and_body) => decode_body(tag_and_body),
            None => Err(DecodeError::Truncated {
                needed: frame_len.unwrap_or(FRAME_HEADER_LEN),
                have: queued.len(),
            }),
        };
        self.start += frame_len.unwrap_or(queued.len()).min(queued.len());
        match result {
            Ok(msg) => {
                self.compact();
                Ok(Some(msg))
            }
            Err(e) => Err(self.poison(e)),
        }
    }

    fn poison(&mut self, e: DecodeError) -> DecodeError {
        self.buf = Vec::new();
        self.start = 0;
        self.recv = 0;
        self.pending = None;
        self.poisoned = Some(e.clone());
        e
    }

    /// Drop consumed bytes once they are at least half the buffer, so compaction costs
    /// amortised O(1) per byte.
    fn compact(&mut self) {
        if self.start == self.buf.len() {
            self.buf.clear();
            if self.buf.capacity() > RETAINED_CAPACITY {
                self.buf.shrink_to(RETAINED_CAPACITY);
            }
            self.start = 0;
            self.recv = 0;
        } else if self.start >= self.buf.len() - self.start {
            self.buf.drain(..self.start);
            self.recv -= self.start;
            self.start = 0;
        }
    }

    /// Whether reading more input is useful now: false while a complete frame waits to be
    /// taken out with [`next_frame`](Self::next_frame) and after an error.
    pub fn wants_more(&self) -> bool {
        self.bytes_wanted() > 0
    }

    /// How many more bytes complete the current step (the header, then the body) of the
    /// frame being received; 0 when [`wants_more`](Self::wants_more) is false. Reading at
    /// most this many bytes before each [`push`](Self::push) keeps the buffer within one
    /// frame.
    pub fn bytes_wanted(&self) -> usize {
        if self.poisoned.is_some() || self.pending.is_some() || self.start < self.recv {
            0
        } else {
            self.to_boundary()
        }
    }

    /// Bytes currently buffered (complete frames not yet taken out plus the partial one).
    pub fn buffered_len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether an error has been reported or is waiting to be (see the type's docs).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some() || self.pending.is_some()
    }
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for FrameDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameDecoder")
            .field("buffered_len", &self.buffered_len())
            .field("max_len", &self.max_len)
            .field(
                "poisoned",
                &self.poisoned.as_ref().or(self.pending.as_ref()),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_roster_round_trips_with_tag_9() {
        let msg = Message::Roster(crate::roster::SignedRoster {
            body: br#"{"venue":"x"}"#.to_vec(),
            signature: vec![0x30, 1, 2],
            signer: vec![0x30, 9, 9, 9],
        });
        let frame = encode_frame(&msg).unwrap();
        assert_eq!(frame[FRAME_HEADER_LEN], 9);
        assert_eq!(decode_frame(&frame).unwrap(), msg);
    }

    #[test]
    fn bytes_form_matches_vec_u8_form() {
        let data = vec![1u8, 2, 3, 250];
        let ours = postcard::to_stdvec(&ByteSlice(&data)).unwrap();
        let serde_vec = postcard::to_stdvec(&data).unwrap();
        assert_eq!(ours, serde_vec);
    }

    #[test]
    fn blob_chunk_head_and_data_are_the_encoded_frame() {
        let hash = MediaHash::of(b"a blob");
        // Lengths around each varint width, and the largest chunk.
        for len in [0, 1, 127, 128, 16_383, 16_384, MAX_BLOB_CHUNK] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let offset = 7;
            let total_len = offset + len as u64 + 3;
            let mut split = encode_blob_chunk_head(&hash, offset, total_len, len).unwrap();
            split.extend_from_slice(&data);
            let msg = Message::BlobChunk {
                hash,
                offset,
                total_len,
                data: data.clone(),
            };
            assert_eq!(split, encode_frame(&msg).unwrap(), "chunk of {len} bytes");
            // And the borrowing decoder reads it back, the data being the frame's tail.
            let BlobFrame::Chunk {
                hash: h,
                offset: o,
                total_len: t,
                data: d,
            } = decode_blob_frame(&split).unwrap()
            else {
                panic!("not a chunk");
            };
            assert_eq!((h, o, t, d), (hash, offset, total_len, &data[..]));
            assert!(std::ptr::eq(d.as_ptr_range().end, split.as_ptr_range().end));
        }
    }

    #[test]
    fn blob_chunk_head_refuses_what_the_peer_would() {
        let hash = MediaHash::of(b"x");
        assert!(matches!(
            encode_blob_chunk_head(&hash, 0, u64::MAX, MAX_BLOB_CHUNK + 1),
            Err(EncodeError::Limit(LimitError::BlobChunkTooLarge { .. }))
        ));
        assert!(matches!(
            encode_blob_chunk_head(&hash, 10, 12, 5),
            Err(EncodeError::Limit(LimitError::BlobChunkOutOfRange { .. }))
        ));
    }

    #[test]
    fn blob_frame_decoder_checks_like_decode_frame() {
        let err = Message::error(ErrorCode::NotFound, "gone");
        let frame = encode_frame(&err).unwrap();
        assert_eq!(decode_blob_frame(&frame).unwrap(), BlobFrame::Other(err));
        // A chunk claiming to run past the blob's end is refused, as decode_frame does.
        let mut bad = encode_blob_chunk_head(&MediaHash::of(b"x"), 0, 10, 4).unwrap();
        bad.extend_from_slice(&[0; 4]);
        let at = bad.len() - 4 - 2; // the varint total_len (10) just before the data length
        bad[at] = 2;
        assert_eq!(
            decode_blob_frame(&bad).unwrap_err(),
            decode_frame(&bad).unwrap_err()
        );
        assert!(matches!(
            decode_blob_frame(&bad).unwrap_err(),
            DecodeError::Limit(LimitError::BlobChunkOutOfRange { .. })
        ));
        // Truncated and over-long frames.
        assert!(matches!(
            decode_blob_frame(&frame[..frame.len() - 1]),
            Err(DecodeError::Truncated { .. })
        ));
        let mut long = frame.clone();
        long.push(0);
        assert!(matches!(
            decode_blob_frame(&long),
            Err(DecodeError::ExtraBytesAfterFrame { .. })
        ));
    }

    #[test]
    fn bounded_keeps_at_most_max_and_counts_all() {
        let list: Vec<u32> = (0..10).collect();
        let bytes = postcard::to_stdvec(&list).unwrap();
        let b: Bounded<u32, 4> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(b.items, vec![0, 1, 2, 3]);
        assert_eq!(b.total, 10);
        assert_eq!(b.items.capacity(), 4);
    }

    #[test]
    fn error_reason_is_clipped_on_a_char_boundary() {
        let long = "é".repeat(MAX_ERROR_REASON_LEN); // 2 bytes each
        let Message::Error { reason, .. } = Message::error(ErrorCode::Internal, long) else {
            panic!("Message::error built another variant");
        };
        assert_eq!(reason.len(), MAX_ERROR_REASON_LEN);
        let odd = format!("a{}", "é".repeat(MAX_ERROR_REASON_LEN));
        let Message::Error { reason, .. } = Message::error(ErrorCode::Internal, odd) else {
            panic!("Message::error built another variant");
        };
        assert_eq!(reason.len(), MAX_ERROR_REASON_LEN - 1);
    }

    #[test]
    fn decoder_drops_consumed_bytes() {
        let frame = encode_frame(&Message::TelemetryAck {
            batch: 1,
            stored: 2,
        })
        .unwrap();
        let mut d = FrameDecoder::new();
        for _ in 0..100 {
            d.push(&frame);
            d.push(&frame[..2]);
            assert!(d.next_frame().unwrap().is_some());
            d.push(&frame[2..]);
            assert!(d.next_frame().unwrap().is_some());
            assert_eq!(d.next_frame().unwrap(), None);
            assert_eq!(d.buffered_len(), 0);
            assert_eq!(d.buf.len(), 0);
        }
    }
}
