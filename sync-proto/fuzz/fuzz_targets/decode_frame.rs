//! Fuzz target: arbitrary bytes through `decode_frame` and the streaming `FrameDecoder` must
//! never panic, and whatever decodes must re-encode and decode to the same message.

#![no_main]

use libfuzzer_sys::fuzz_target;
use taplink_sync_proto::wire::{
    FRAME_HEADER_LEN, FrameDecoder, Message, decode_frame, encode_frame,
};

/// A decoded message passed every limit, so it must encode again and survive the trip.
fn assert_round_trips(msg: &Message) {
    let frame = match encode_frame(msg) {
        Ok(f) => f,
        Err(e) => panic!("decoded {} does not re-encode: {e}", msg.kind()),
    };
    assert_eq!(decode_frame(&frame).as_ref(), Ok(msg));
}

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = decode_frame(data) {
        assert_round_trips(&msg);
    }

    // The first byte picks the chunk size the stream arrives in and the decoder's limit, so
    // the fuzzer explores split points and lowered limits too.
    let Some((&knob, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(knob & 0x3f) + 1;
    let mut decoder = if knob & 0x40 != 0 {
        FrameDecoder::with_max_len(usize::from(knob) * 4)
    } else {
        FrameDecoder::new()
    };
    for piece in stream.chunks(chunk) {
        decoder.push(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(msg)) => assert_round_trips(&msg),
                Ok(None) => {
                    // Only the frame in progress is left, and its header was within limits.
                    assert!(decoder.buffered_len() <= decoder.max_len() + FRAME_HEADER_LEN);
                    break;
                }
                Err(e) => {
                    // Poisoned: the same error again, and no more input is accepted.
                    assert_eq!(decoder.next_frame(), Err(e));
                    assert!(!decoder.wants_more());
                    return;
                }
            }
        }
    }
});
