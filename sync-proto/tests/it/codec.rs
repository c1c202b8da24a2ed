//! Tests of the frame codec: round trips of every message, streaming with arbitrary splits,
//! truncation, limits on both sides, hostile length fields and random input.

use proptest::prelude::*;
use proptest::sample::Index;

use taplink_sync_proto::ids::{HubId, ItemId, KioskId, MediaHash, PlaylistId, VenueId};
use taplink_sync_proto::wire::{
    ChangeHash, DecodeError, DocHeads, DocId, EncodeError, ErrorCode, FRAME_HEADER_LEN,
    FrameDecoder, Heartbeat, Hello, LimitError, MAX_BLOB_CHUNK, MAX_ERROR_REASON_LEN,
    MAX_FRAME_LEN, MAX_HEADS_PER_DOC, MAX_HELLO_DOCS, MAX_SOFTWARE_LEN, MAX_TELEMETRY_BATCH,
    MAX_TELEMETRY_STRING_LEN, Message, PeerIdentity, ProofOfPlay, TelemetryEvent, TelemetryKind,
    decode_frame, encode_frame, encode_frame_into,
};

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

fn arb_doc() -> impl Strategy<Value = DocId> {
    prop_oneof![
        Just(DocId::Org),
        any::<[u8; 16]>().prop_map(|b| DocId::Venue(VenueId::from_bytes(b))),
    ]
}

fn arb_heads() -> impl Strategy<Value = Vec<ChangeHash>> {
    prop::collection::vec(any::<[u8; 32]>(), 0..6)
}

fn arb_hash() -> impl Strategy<Value = MediaHash> {
    any::<[u8; 32]>().prop_map(MediaHash::from_bytes)
}

fn arb_identity() -> impl Strategy<Value = PeerIdentity> {
    prop_oneof![
        Just(PeerIdentity::Central),
        (any::<[u8; 16]>(), any::<[u8; 16]>()).prop_map(|(h, v)| PeerIdentity::Hub {
            hub: HubId::from_bytes(h),
            venue: VenueId::from_bytes(v),
        }),
    ]
}

fn arb_hello() -> impl Strategy<Value = Hello> {
    (
        any::<u32>(),
        // At most 60 chars of at most 4 bytes: within MAX_SOFTWARE_LEN.
        "\\PC{0,60}",
        arb_identity(),
        prop::collection::vec(
            (arb_doc(), arb_heads()).prop_map(|(doc, heads)| DocHeads { doc, heads }),
            0..5,
        ),
    )
        .prop_map(|(protocol, software, identity, docs)| Hello {
            protocol,
            software,
            identity,
            docs,
        })
}

fn arb_event() -> impl Strategy<Value = TelemetryEvent> {
    let heartbeat = (
        proptest::option::of(arb_hash()),
        "\\PC{0,30}",
        any::<u64>(),
        proptest::option::of(any::<i32>()),
        any::<u64>(),
        "\\PC{0,30}",
    )
        .prop_map(
            |(on_screen, manifest_version, disk_free_bytes, temperature_mc, uptime_s, software)| {
                TelemetryKind::Heartbeat(Heartbeat {
                    on_screen,
                    manifest_version,
                    disk_free_bytes,
                    temperature_mc,
                    uptime_s,
                    software,
                })
            },
        );
    let play = (
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        arb_hash(),
        any::<i64>(),
        any::<u64>(),
    )
        .prop_map(|(p, i, media, started_ms, duration_ms)| {
            TelemetryKind::ProofOfPlay(ProofOfPlay {
                playlist: PlaylistId::from_bytes(p),
                item: ItemId::from_bytes(i),
                media,
                started_ms,
                duration_ms,
            })
        });
    (
        any::<[u8; 16]>(),
        proptest::option::of(any::<[u8; 16]>().prop_map(KioskId::from_bytes)),
        any::<i64>(),
        prop_oneof![heartbeat, play],
    )
        .prop_map(|(id, kiosk, at_ms, kind)| TelemetryEvent {
            id,
            kiosk,
            at_ms,
            kind,
        })
}

const ALL_CODES: [ErrorCode; 8] = [
    ErrorCode::UnsupportedVersion,
    ErrorCode::Unauthorized,
    ErrorCode::Forbidden,
    ErrorCode::Malformed,
    ErrorCode::TooLarge,
    ErrorCode::NotFound,
    ErrorCode::Busy,
    ErrorCode::Internal,
];

/// A blob chunk whose range is valid: `offset + len <= total_len`, anywhere in u64.
fn arb_blob_chunk() -> impl Strategy<Value = Message> {
    (
        arb_hash(),
        any::<u64>(),
        any::<u64>(),
        prop::collection::vec(any::<u8>(), 0..1024),
    )
        .prop_map(|(hash, offset, extra, data)| {
            let len = data.len() as u64;
            let offset = offset.min(u64::MAX - len);
            let total_len = offset + len + extra.min(u64::MAX - offset - len);
            Message::BlobChunk {
                hash,
                offset,
                total_len,
                data,
            }
        })
}

fn arb_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        arb_hello().prop_map(Message::Hello),
        (arb_doc(), prop::collection::vec(any::<u8>(), 0..2048))
            .prop_map(|(doc, data)| Message::DocSync { doc, data }),
        (arb_doc(), arb_heads()).prop_map(|(doc, heads)| Message::Changed { doc, heads }),
        (arb_hash(), any::<u64>()).prop_map(|(hash, offset)| Message::BlobRequest { hash, offset }),
        arb_blob_chunk(),
        (any::<u64>(), prop::collection::vec(arb_event(), 0..6))
            .prop_map(|(batch, events)| Message::TelemetryBatch { batch, events }),
        (any::<u64>(), any::<u32>())
            .prop_map(|(batch, stored)| Message::TelemetryAck { batch, stored }),
        (prop::sample::select(&ALL_CODES[..]), "\\PC{0,100}")
            .prop_map(|(code, reason)| Message::Error { code, reason }),
    ]
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A frame around `tag` and `body`, with a correct length header.
fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len() + 1).unwrap();
    let mut f = len.to_be_bytes().to_vec();
    f.push(tag);
    f.extend_from_slice(body);
    f
}

fn postcard<T: serde::Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).unwrap()
}

/// Push `bytes` in pieces cut at `splits`, draining the decoder after every piece.
fn stream(decoder: &mut FrameDecoder, bytes: &[u8], splits: &[Index]) -> Vec<Message> {
    let mut cuts: Vec<usize> = splits.iter().map(|i| i.index(bytes.len() + 1)).collect();
    cuts.push(0);
    cuts.push(bytes.len());
    cuts.sort_unstable();
    let mut out = Vec::new();
    for w in cuts.windows(2) {
        decoder.push(&bytes[w[0]..w[1]]);
        while let Some(m) = decoder.next_frame().unwrap() {
            out.push(m);
        }
    }
    out
}

/// If random input decoded, it must re-encode and decode to the same message.
fn assert_reencodes(msg: &Message) {
    let again = encode_frame(msg).expect("a decoded message must re-encode");
    assert_eq!(&decode_frame(&again).unwrap(), msg);
}

const VENUE: DocId = DocId::Venue(VenueId::from_bytes([7; 16]));

fn blob_chunk(offset: u64, total_len: u64, len: usize) -> Message {
    Message::BlobChunk {
        hash: MediaHash::from_bytes([3; 32]),
        offset,
        total_len,
        data: vec![0xab; len],
    }
}

fn heartbeat_event(i: u32) -> TelemetryEvent {
    TelemetryEvent {
        id: [i as u8; 16],
        kiosk: None,
        at_ms: i64::from(i),
        kind: TelemetryKind::Heartbeat(Heartbeat {
            on_screen: None,
            manifest_version: "v1".into(),
            disk_free_bytes: 1,
            temperature_mc: Some(40_000),
            uptime_s: 2,
            software: "kiosk 0.1".into(),
        }),
    }
}

fn hello(software: &str, docs: Vec<DocHeads>) -> Hello {
    Hello {
        protocol: 1,
        software: software.into(),
        identity: PeerIdentity::Central,
        docs,
    }
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_message_round_trips(msg in arb_message()) {
        let f = encode_frame(&msg).unwrap();
        let len = u32::from_be_bytes(f[..4].try_into().unwrap()) as usize;
        prop_assert_eq!(len, f.len() - FRAME_HEADER_LEN);
        prop_assert_eq!(f[4], msg.tag());
        prop_assert_eq!(decode_frame(&f).unwrap(), msg);
    }

    #[test]
    fn frames_split_anywhere_stream_back_in_order(
        msgs in prop::collection::vec(arb_message(), 1..6),
        splits in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let mut bytes = Vec::new();
        for m in &msgs {
            encode_frame_into(m, &mut bytes).unwrap();
        }
        let mut d = FrameDecoder::new();
        let got = stream(&mut d, &bytes, &splits);
        prop_assert_eq!(got, msgs);
        prop_assert_eq!(d.buffered_len(), 0);
        prop_assert!(d.wants_more());
    }

    #[test]
    fn every_strict_prefix_is_truncated(msg in arb_message()) {
        let f = encode_frame(&msg).unwrap();
        let mut d = FrameDecoder::new();
        for cut in 0..f.len() {
            let needed = if cut < FRAME_HEADER_LEN { FRAME_HEADER_LEN } else { f.len() };
            prop_assert_eq!(
                decode_frame(&f[..cut]),
                Err(DecodeError::Truncated { needed, have: cut })
            );
            // The decoder has seen f[..cut] at this point.
            prop_assert_eq!(d.next_frame(), Ok(None));
            prop_assert!(d.wants_more());
            d.push(&f[cut..cut + 1]);
        }
        prop_assert_eq!(d.next_frame(), Ok(Some(msg)));
        prop_assert_eq!(d.next_frame(), Ok(None));
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        if let Ok(m) = decode_frame(&bytes) {
            assert_reencodes(&m);
        }
    }

    #[test]
    fn random_bodies_behind_a_valid_header_never_panic(
        tag in 0u8..10,
        body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let f = frame(tag, &body);
        match decode_frame(&f) {
            Ok(m) => {
                prop_assert_eq!(m.tag(), tag);
                assert_reencodes(&m);
            }
            Err(DecodeError::UnknownTag { tag: t }) => prop_assert!(t == tag && !(1..=8).contains(&t)),
            Err(e) => prop_assert!(matches!(
                e,
                DecodeError::Malformed { .. } | DecodeError::TrailingBytes { .. } | DecodeError::Limit(_)
            ), "unexpected error {e:?}"),
        }
    }

    #[test]
    fn mutated_frames_never_panic_and_stream_like_whole_frames(
        msg in arb_message(),
        flips in prop::collection::vec((any::<Index>(), any::<u8>()), 1..4),
        splits in prop::collection::vec(any::<Index>(), 0..6),
    ) {
        let mut f = encode_frame(&msg).unwrap();
        for (i, x) in flips {
            let i = i.index(f.len());
            f[i] ^= x;
        }
        let whole = decode_frame(&f);
        if let Ok(m) = &whole {
            assert_reencodes(m);
        }
        // The streaming decoder must agree with decode_frame on a lone frame.
        let mut d = FrameDecoder::new();
        let mut cuts: Vec<usize> = splits.iter().map(|i| i.index(f.len() + 1)).collect();
        cuts.extend([0, f.len()]);
        cuts.sort_unstable();
        let mut streamed = None;
        for w in cuts.windows(2) {
            d.push(&f[w[0]..w[1]]);
            match d.next_frame() {
                Ok(None) => {}
                other => {
                    streamed = Some(other);
                    break;
                }
            }
        }
        match (whole, streamed) {
            (Ok(m), Some(Ok(Some(s)))) => prop_assert_eq!(m, s),
            (Err(DecodeError::Truncated { .. } | DecodeError::ExtraBytesAfterFrame { .. }), _) => {}
            (Err(e), Some(Err(s))) => {
                prop_assert_eq!(&e, &s);
                // Poisoned: the same error again.
                prop_assert_eq!(d.next_frame(), Err(e));
            }
            (w, s) => prop_assert!(false, "decode_frame gave {w:?}, FrameDecoder gave {s:?}"),
        }
    }

    #[test]
    fn reading_only_bytes_wanted_bounds_the_buffer(
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
        max_len in 0usize..200,
    ) {
        // Small headers so some random frames are accepted and decoded.
        let bytes: Vec<u8> = bytes
            .chunks(64)
            .flat_map(|c| {
                let mut v = vec![0, 0, 0, c.len() as u8];
                v.extend_from_slice(c);
                v
            })
            .collect();
        let mut d = FrameDecoder::with_max_len(max_len);
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            if !d.wants_more() {
                match d.next_frame() {
                    Ok(Some(m)) => assert_reencodes(&m),
                    Ok(None) => prop_assert!(false, "wants_more false with nothing to take"),
                    Err(_) => break,
                }
                continue;
            }
            let n = d.bytes_wanted().min(rest.len());
            d.push(&rest[..n]);
            rest = &rest[n..];
            prop_assert!(d.buffered_len() <= max_len + FRAME_HEADER_LEN);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Wire format
// ---------------------------------------------------------------------------------------

#[test]
fn tags_are_the_documented_numbers() {
    let cases: [(Message, u8); 8] = [
        (Message::Hello(hello("x", vec![])), 1),
        (
            Message::DocSync {
                doc: DocId::Org,
                data: vec![],
            },
            2,
        ),
        (
            Message::Changed {
                doc: DocId::Org,
                heads: vec![],
            },
            3,
        ),
        (
            Message::BlobRequest {
                hash: MediaHash::from_bytes([0; 32]),
                offset: 0,
            },
            4,
        ),
        (blob_chunk(0, 0, 0), 5),
        (
            Message::TelemetryBatch {
                batch: 0,
                events: vec![],
            },
            6,
        ),
        (
            Message::TelemetryAck {
                batch: 0,
                stored: 0,
            },
            7,
        ),
        (
            Message::Error {
                code: ErrorCode::Busy,
                reason: String::new(),
            },
            8,
        ),
    ];
    for (msg, tag) in cases {
        assert_eq!(msg.tag(), tag, "{}", msg.kind());
        assert_eq!(encode_frame(&msg).unwrap()[4], tag, "{}", msg.kind());
    }
}

#[test]
fn frames_have_the_documented_layout() {
    // Header 4 (tag + 3 body bytes), tag 7, varint 5, varint 300 = [0xac, 0x02].
    let ack = Message::TelemetryAck {
        batch: 5,
        stored: 300,
    };
    assert_eq!(encode_frame(&ack).unwrap(), [0, 0, 0, 4, 7, 5, 0xac, 0x02]);
    // DocId::Org is variant 0; bytes are a varint length and the raw bytes.
    let sync = Message::DocSync {
        doc: DocId::Org,
        data: vec![9, 8, 7],
    };
    assert_eq!(encode_frame(&sync).unwrap(), [0, 0, 0, 6, 2, 0, 3, 9, 8, 7]);
    // Struct variants are the postcard tuple of their fields.
    let chunk = blob_chunk(10, 20, 5);
    let body = postcard(&(
        MediaHash::from_bytes([3; 32]),
        10u64,
        20u64,
        vec![0xabu8; 5],
    ));
    assert_eq!(encode_frame(&chunk).unwrap(), frame(5, &body));
    let h = hello(
        "hub 0.1",
        vec![DocHeads {
            doc: VENUE,
            heads: vec![[1; 32]],
        }],
    );
    assert_eq!(
        encode_frame(&Message::Hello(h.clone())).unwrap(),
        frame(1, &postcard(&h))
    );
}

#[test]
fn limits_at_exactly_the_maximum_are_accepted() {
    let max_chunk = blob_chunk(0, MAX_BLOB_CHUNK as u64, MAX_BLOB_CHUNK);
    assert_eq!(
        decode_frame(&encode_frame(&max_chunk).unwrap()).unwrap(),
        max_chunk
    );
    let full = Message::TelemetryBatch {
        batch: 1,
        events: (0..MAX_TELEMETRY_BATCH as u32)
            .map(heartbeat_event)
            .collect(),
    };
    assert_eq!(decode_frame(&encode_frame(&full).unwrap()).unwrap(), full);
    let changed = Message::Changed {
        doc: VENUE,
        heads: vec![[5; 32]; MAX_HEADS_PER_DOC],
    };
    assert_eq!(
        decode_frame(&encode_frame(&changed).unwrap()).unwrap(),
        changed
    );
    let h = Message::Hello(hello(
        &"s".repeat(MAX_SOFTWARE_LEN),
        vec![
            DocHeads {
                doc: DocId::Org,
                heads: vec![]
            };
            MAX_HELLO_DOCS
        ],
    ));
    assert_eq!(decode_frame(&encode_frame(&h).unwrap()).unwrap(), h);
    let e = Message::Error {
        code: ErrorCode::Internal,
        reason: "r".repeat(MAX_ERROR_REASON_LEN),
    };
    assert_eq!(decode_frame(&encode_frame(&e).unwrap()).unwrap(), e);
    // A chunk ending exactly at u64::MAX is in range.
    let end = blob_chunk(u64::MAX - 4, u64::MAX, 4);
    assert_eq!(decode_frame(&encode_frame(&end).unwrap()).unwrap(), end);
}

// ---------------------------------------------------------------------------------------
// Encoder refusals
// ---------------------------------------------------------------------------------------

#[test]
fn encoder_refuses_what_the_peer_must_refuse() {
    let too_big = blob_chunk(0, u64::MAX, MAX_BLOB_CHUNK + 1);
    assert_eq!(
        encode_frame(&too_big),
        Err(EncodeError::Limit(LimitError::BlobChunkTooLarge {
            len: MAX_BLOB_CHUNK + 1,
            max: MAX_BLOB_CHUNK
        }))
    );
    let batch = Message::TelemetryBatch {
        batch: 1,
        events: (0..=MAX_TELEMETRY_BATCH as u32)
            .map(heartbeat_event)
            .collect(),
    };
    assert_eq!(
        encode_frame(&batch),
        Err(EncodeError::Limit(LimitError::TelemetryBatchTooLarge {
            count: MAX_TELEMETRY_BATCH + 1,
            max: MAX_TELEMETRY_BATCH
        }))
    );
    assert_eq!(
        encode_frame(&blob_chunk(10, 12, 3)),
        Err(EncodeError::Limit(LimitError::BlobChunkOutOfRange {
            offset: 10,
            len: 3,
            total_len: 12
        }))
    );
    assert_eq!(
        encode_frame(&blob_chunk(u64::MAX, u64::MAX, 1)),
        Err(EncodeError::Limit(LimitError::BlobChunkOutOfRange {
            offset: u64::MAX,
            len: 1,
            total_len: u64::MAX
        }))
    );
    let many_docs = hello(
        "x",
        vec![
            DocHeads {
                doc: DocId::Org,
                heads: vec![]
            };
            MAX_HELLO_DOCS + 1
        ],
    );
    assert_eq!(
        encode_frame(&Message::Hello(many_docs)),
        Err(EncodeError::Limit(LimitError::TooManyDocs {
            count: MAX_HELLO_DOCS + 1,
            max: MAX_HELLO_DOCS
        }))
    );
    let many_heads = hello(
        "x",
        vec![DocHeads {
            doc: VENUE,
            heads: vec![[0; 32]; MAX_HEADS_PER_DOC + 1],
        }],
    );
    assert_eq!(
        encode_frame(&Message::Hello(many_heads)),
        Err(EncodeError::Limit(LimitError::TooManyHeads {
            kind: "Hello",
            doc: VENUE,
            count: MAX_HEADS_PER_DOC + 1,
            max: MAX_HEADS_PER_DOC
        }))
    );
    let changed = Message::Changed {
        doc: DocId::Org,
        heads: vec![[0; 32]; MAX_HEADS_PER_DOC + 1],
    };
    assert!(matches!(
        encode_frame(&changed),
        Err(EncodeError::Limit(LimitError::TooManyHeads {
            kind: "Changed",
            ..
        }))
    ));
    let long_sw = hello(&"x".repeat(MAX_SOFTWARE_LEN + 1), vec![]);
    assert_eq!(
        encode_frame(&Message::Hello(long_sw)),
        Err(EncodeError::Limit(LimitError::StringTooLong {
            kind: "Hello",
            field: "software",
            len: MAX_SOFTWARE_LEN + 1,
            max: MAX_SOFTWARE_LEN
        }))
    );
    let reason = Message::Error {
        code: ErrorCode::Busy,
        reason: "x".repeat(MAX_ERROR_REASON_LEN + 1),
    };
    assert!(matches!(
        encode_frame(&reason),
        Err(EncodeError::Limit(LimitError::StringTooLong {
            kind: "Error",
            field: "reason",
            ..
        }))
    ));
    let mut ev = heartbeat_event(1);
    if let TelemetryKind::Heartbeat(hb) = &mut ev.kind {
        hb.manifest_version = "m".repeat(MAX_TELEMETRY_STRING_LEN + 1);
    }
    assert!(matches!(
        encode_frame(&Message::TelemetryBatch {
            batch: 1,
            events: vec![ev]
        }),
        Err(EncodeError::Limit(LimitError::StringTooLong {
            field: "manifest_version",
            ..
        }))
    ));
}

#[test]
fn encoder_refuses_an_oversized_frame_and_leaves_the_buffer_alone() {
    let mut out = encode_frame(&Message::TelemetryAck {
        batch: 1,
        stored: 1,
    })
    .unwrap();
    let before = out.clone();
    // Tag + DocId + 4-byte varint + data: 6 bytes over the limit.
    let huge = Message::DocSync {
        doc: DocId::Org,
        data: vec![0; MAX_FRAME_LEN],
    };
    assert_eq!(
        encode_frame_into(&huge, &mut out),
        Err(EncodeError::FrameTooLarge {
            kind: "DocSync",
            len: MAX_FRAME_LEN + 6,
            max: MAX_FRAME_LEN
        })
    );
    assert_eq!(out, before);
    // The largest DocSync that fits is accepted and decodes.
    let fits = Message::DocSync {
        doc: DocId::Org,
        data: vec![1; MAX_FRAME_LEN - 6],
    };
    let f = encode_frame(&fits).unwrap();
    assert_eq!(f.len(), FRAME_HEADER_LEN + MAX_FRAME_LEN);
    assert_eq!(decode_frame(&f).unwrap(), fits);
    let err = encode_frame(&blob_chunk(0, u64::MAX, MAX_BLOB_CHUNK + 1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "blob chunk of 262145 bytes exceeds the 262144-byte limit; send smaller chunks"
    );
}

// ---------------------------------------------------------------------------------------
// Decoder refusals
// ---------------------------------------------------------------------------------------

#[test]
fn oversized_header_is_refused_from_its_four_bytes() {
    let header = ((MAX_FRAME_LEN + 1) as u32).to_be_bytes();
    let expected = DecodeError::FrameTooLarge {
        len: MAX_FRAME_LEN + 1,
        max: MAX_FRAME_LEN,
    };
    assert_eq!(decode_frame(&header), Err(expected.clone()));

    let mut d = FrameDecoder::new();
    d.push(&header[..3]);
    assert_eq!(d.next_frame(), Ok(None));
    d.push(&header[3..]);
    assert!(!d.wants_more());
    assert_eq!(d.buffered_len(), 0);
    assert_eq!(d.next_frame(), Err(expected.clone()));
    // Poisoned: further input is ignored and the same error comes back.
    d.push(
        &encode_frame(&Message::TelemetryAck {
            batch: 1,
            stored: 1,
        })
        .unwrap(),
    );
    assert_eq!(d.buffered_len(), 0);
    assert_eq!(d.next_frame(), Err(expected.clone()));
    assert_eq!(
        expected.to_string(),
        "frame of 16777217 bytes exceeds the 16777216-byte limit"
    );
    assert_eq!(expected.error_code(), ErrorCode::TooLarge);

    // Exactly the limit is accepted and waits for its body.
    let mut d = FrameDecoder::new();
    d.push(&(MAX_FRAME_LEN as u32).to_be_bytes());
    assert_eq!(d.next_frame(), Ok(None));
    assert_eq!(d.bytes_wanted(), MAX_FRAME_LEN);
}

#[test]
fn oversized_header_body_is_never_buffered_even_in_one_push() {
    let good = encode_frame(&Message::TelemetryAck {
        batch: 9,
        stored: 9,
    })
    .unwrap();
    let mut bytes = good.clone();
    bytes.extend_from_slice(&u32::MAX.to_be_bytes());
    bytes.extend(std::iter::repeat_n(0u8, 1 << 20));
    let mut d = FrameDecoder::new();
    d.push(&bytes);
    assert_eq!(d.buffered_len(), good.len());
    assert!(!d.wants_more());
    // The frame before the bad header is still delivered, then the error.
    assert_eq!(
        d.next_frame(),
        Ok(Some(Message::TelemetryAck {
            batch: 9,
            stored: 9
        }))
    );
    let expected = DecodeError::FrameTooLarge {
        len: u32::MAX as usize,
        max: MAX_FRAME_LEN,
    };
    assert_eq!(d.next_frame(), Err(expected.clone()));
    assert_eq!(d.next_frame(), Err(expected));
}

#[test]
fn a_lower_stream_limit_is_enforced() {
    let small = Message::TelemetryAck {
        batch: 1,
        stored: 1,
    };
    // Tag, DocId, 2-byte varint length, 200 bytes: 204.
    let big = Message::DocSync {
        doc: DocId::Org,
        data: vec![0; 200],
    };
    let mut d = FrameDecoder::with_max_len(100);
    assert_eq!(d.max_len(), 100);
    d.push(&encode_frame(&small).unwrap());
    assert_eq!(d.next_frame(), Ok(Some(small)));
    d.push(&encode_frame(&big).unwrap()[..4]);
    assert_eq!(
        d.next_frame(),
        Err(DecodeError::FrameTooLarge { len: 204, max: 100 })
    );
    assert_eq!(
        FrameDecoder::with_max_len(usize::MAX).max_len(),
        MAX_FRAME_LEN
    );
}

#[test]
fn unknown_tags_are_named() {
    for tag in [0u8, 10, 42, 255] {
        assert_eq!(
            decode_frame(&frame(tag, &[1, 2])),
            Err(DecodeError::UnknownTag { tag })
        );
    }
    assert_eq!(decode_frame(&[0, 0, 0, 0]), Err(DecodeError::EmptyFrame));
    let mut d = FrameDecoder::new();
    d.push(&[0, 0, 0, 0]);
    assert_eq!(d.next_frame(), Err(DecodeError::EmptyFrame));
}

#[test]
fn trailing_bytes_inside_and_after_a_frame_are_refused() {
    let mut body = postcard(&(5u64, 3u32));
    body.push(0);
    assert_eq!(
        decode_frame(&frame(7, &body)),
        Err(DecodeError::TrailingBytes {
            kind: "TelemetryAck",
            count: 1
        })
    );
    let mut f = encode_frame(&Message::TelemetryAck {
        batch: 5,
        stored: 3,
    })
    .unwrap();
    let frame_len = f.len();
    f.extend_from_slice(&[1, 2, 3]);
    assert_eq!(
        decode_frame(&f),
        Err(DecodeError::ExtraBytesAfterFrame {
            frame_len,
            count: 3
        })
    );
}

#[test]
fn corrupted_bodies_are_malformed_and_name_the_message() {
    // DocId has two variants; 7 is not one of them.
    let e = decode_frame(&frame(2, &[7, 0])).unwrap_err();
    assert!(
        matches!(
            e,
            DecodeError::Malformed {
                kind: "DocSync",
                ..
            }
        ),
        "{e:?}"
    );
    // Invalid UTF-8 in the reason.
    let e = decode_frame(&frame(8, &[0, 2, 0xff, 0xfe])).unwrap_err();
    assert!(
        matches!(e, DecodeError::Malformed { kind: "Error", .. }),
        "{e:?}"
    );
    // The body ends before `stored`.
    let e = decode_frame(&frame(7, &[5])).unwrap_err();
    assert!(
        matches!(&e, DecodeError::Malformed { kind: "TelemetryAck", reason } if !reason.is_empty())
    );
    assert!(
        e.to_string()
            .starts_with("TelemetryAck body could not be decoded: "),
        "{e}"
    );
    assert_eq!(e.error_code(), ErrorCode::Malformed);
    // An ErrorCode variant that does not exist.
    let e = decode_frame(&frame(8, &[99, 0])).unwrap_err();
    assert!(
        matches!(e, DecodeError::Malformed { kind: "Error", .. }),
        "{e:?}"
    );
}

#[test]
fn a_body_error_poisons_the_stream() {
    let mut bytes = frame(77, &[]);
    encode_frame_into(
        &Message::TelemetryAck {
            batch: 1,
            stored: 1,
        },
        &mut bytes,
    )
    .unwrap();
    let mut d = FrameDecoder::new();
    d.push(&bytes);
    assert_eq!(d.next_frame(), Err(DecodeError::UnknownTag { tag: 77 }));
    assert_eq!(d.next_frame(), Err(DecodeError::UnknownTag { tag: 77 }));
    assert!(d.is_poisoned());
    assert!(!d.wants_more());
}

#[test]
fn decoder_refuses_frames_over_the_limits() {
    let hash = MediaHash::from_bytes([1; 32]);
    let big = postcard(&(hash, 0u64, u64::MAX, vec![0u8; MAX_BLOB_CHUNK + 1]));
    let e = decode_frame(&frame(5, &big)).unwrap_err();
    assert_eq!(
        e,
        DecodeError::Limit(LimitError::BlobChunkTooLarge {
            len: MAX_BLOB_CHUNK + 1,
            max: MAX_BLOB_CHUNK
        })
    );
    assert_eq!(e.error_code(), ErrorCode::TooLarge);

    let range = postcard(&(hash, 5u64, 6u64, vec![0u8; 2]));
    let e = decode_frame(&frame(5, &range)).unwrap_err();
    assert_eq!(
        e,
        DecodeError::Limit(LimitError::BlobChunkOutOfRange {
            offset: 5,
            len: 2,
            total_len: 6
        })
    );
    assert_eq!(e.error_code(), ErrorCode::Malformed);
    let overflow = postcard(&(hash, u64::MAX, u64::MAX, vec![0u8; 1]));
    assert!(matches!(
        decode_frame(&frame(5, &overflow)),
        Err(DecodeError::Limit(LimitError::BlobChunkOutOfRange { .. }))
    ));

    let events: Vec<TelemetryEvent> = (0..=MAX_TELEMETRY_BATCH as u32)
        .map(heartbeat_event)
        .collect();
    assert_eq!(
        decode_frame(&frame(6, &postcard(&(1u64, events)))),
        Err(DecodeError::Limit(LimitError::TelemetryBatchTooLarge {
            count: MAX_TELEMETRY_BATCH + 1,
            max: MAX_TELEMETRY_BATCH
        }))
    );

    let docs = hello(
        "x",
        vec![
            DocHeads {
                doc: DocId::Org,
                heads: vec![]
            };
            MAX_HELLO_DOCS + 1
        ],
    );
    assert_eq!(
        decode_frame(&frame(1, &postcard(&docs))),
        Err(DecodeError::Limit(LimitError::TooManyDocs {
            count: MAX_HELLO_DOCS + 1,
            max: MAX_HELLO_DOCS
        }))
    );
    let heads = hello(
        "x",
        vec![DocHeads {
            doc: VENUE,
            heads: vec![[2; 32]; MAX_HEADS_PER_DOC + 1],
        }],
    );
    assert_eq!(
        decode_frame(&frame(1, &postcard(&heads))),
        Err(DecodeError::Limit(LimitError::TooManyHeads {
            kind: "Hello",
            doc: VENUE,
            count: MAX_HEADS_PER_DOC + 1,
            max: MAX_HEADS_PER_DOC
        }))
    );
    let changed = postcard(&(DocId::Org, vec![[2u8; 32]; MAX_HEADS_PER_DOC + 5]));
    assert_eq!(
        decode_frame(&frame(3, &changed)),
        Err(DecodeError::Limit(LimitError::TooManyHeads {
            kind: "Changed",
            doc: DocId::Org,
            count: MAX_HEADS_PER_DOC + 5,
            max: MAX_HEADS_PER_DOC
        }))
    );
    let sw = hello(&"y".repeat(MAX_SOFTWARE_LEN + 1), vec![]);
    let e = decode_frame(&frame(1, &postcard(&sw))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Hello field `software` is 257 bytes long, more than the limit of 256"
    );
    let reason = postcard(&(ErrorCode::Busy, "z".repeat(MAX_ERROR_REASON_LEN + 1)));
    assert!(matches!(
        decode_frame(&frame(8, &reason)),
        Err(DecodeError::Limit(LimitError::StringTooLong {
            kind: "Error",
            field: "reason",
            ..
        }))
    ));
}

#[test]
fn lying_length_fields_fail_without_reserving_what_they_claim() {
    // Varint lengths: u32::MAX and u64::MAX. A decoder that reserved capacity from these
    // would ask for up to 2^64 * 32 bytes, which panics ("capacity overflow") or aborts the
    // process on allocation failure; here each must fail cleanly as Malformed.
    let u64_max = [[0xffu8; 9].as_slice(), &[0x01]].concat();
    let claims: [&[u8]; 2] = [&[0xff, 0xff, 0xff, 0xff, 0x0f], &u64_max];
    for claim in claims {
        let hash = [0u8; 32];
        let cases: Vec<(u8, Vec<u8>, &str)> = vec![
            // DocSync data.
            (2, [&[0u8][..], claim, &[1, 2, 3]].concat(), "DocSync"),
            // Changed heads.
            (3, [&[0u8][..], claim, &[9; 40]].concat(), "Changed"),
            // BlobChunk data.
            (5, [&hash[..], &[0, 0], claim, &[1]].concat(), "BlobChunk"),
            // TelemetryBatch events.
            (6, [&[1u8][..], claim, &[0; 20]].concat(), "TelemetryBatch"),
            // Error reason.
            (8, [&[0u8][..], claim, b"abc"].concat(), "Error"),
            // Hello software, then Hello docs.
            (1, [&[1u8][..], claim, b"x"].concat(), "Hello"),
            (1, [&[1u8, 0, 0][..], claim, &[0, 0]].concat(), "Hello"),
        ];
        for (tag, body, kind) in cases {
            match decode_frame(&frame(tag, &body)) {
                Err(DecodeError::Malformed { kind: k, .. }) => assert_eq!(k, kind),
                other => panic!("{kind} with a lying length gave {other:?}"),
            }
        }
    }
}

#[test]
fn doc_ids_print_and_parse() {
    use taplink_sync_proto::ids::VenueId;
    use taplink_sync_proto::wire::DocId;
    let venue = DocId::Venue(VenueId::random());
    assert_eq!(venue.to_string().parse::<DocId>().unwrap(), venue);
    assert_eq!("org".parse::<DocId>().unwrap(), DocId::Org);
    assert!("venue/nope".parse::<DocId>().is_err());
    assert!("orgs".parse::<DocId>().is_err());
}
