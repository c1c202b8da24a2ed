//! Protocol frames over quinn streams: a reader that decodes frames as bytes arrive (never
//! buffering more than one frame) and a writer.

use taplink_sync_proto::wire::{DecodeError, EncodeError, FrameDecoder, Message, encode_frame};

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The peer sent bytes that are not a valid frame; the stream's framing is lost.
    #[error("bad frame from peer: {0}")]
    Decode(#[from] DecodeError),
    /// We tried to send a message that breaks a protocol limit (a bug on our side).
    #[error("cannot encode frame: {0}")]
    Encode(#[from] EncodeError),
    /// The stream failed while reading.
    #[error("stream read failed: {0}")]
    Read(#[from] quinn::ReadError),
    /// The stream failed while writing.
    #[error("stream write failed: {0}")]
    Write(#[from] quinn::WriteError),
    /// The peer finished the stream in the middle of a frame.
    #[error("stream ended inside a frame ({buffered} bytes of it received)")]
    Truncated {
        /// How many bytes of the unfinished frame had arrived.
        buffered: usize,
    },
}

/// Reads frames from a receive stream.
#[derive(Debug)]
pub struct FrameReader {
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
    buf: Vec<u8>,
}

impl FrameReader {
    /// A reader accepting frames up to `max_len` bytes (at most the protocol's limit).
    pub fn new(recv: quinn::RecvStream, max_len: usize) -> Self {
        Self {
            recv,
            decoder: FrameDecoder::with_max_len(max_len),
            buf: vec![0; 64 * 1024],
        }
    }

    /// The next message, or `None` when the peer finished the stream cleanly between frames.
    pub async fn next(&mut self) -> Result<Option<Message>, FrameError> {
        loop {
            if let Some(msg) = self.decoder.next_frame()? {
                return Ok(Some(msg));
            }
            // Reading no more than the decoder wants keeps at most one frame buffered.
            let want = self.decoder.bytes_wanted().clamp(1, self.buf.len());
            match self.recv.read(&mut self.buf[..want]).await? {
                Some(n) => self.decoder.push(&self.buf[..n]),
                None if self.decoder.buffered_len() == 0 => return Ok(None),
                None => {
                    return Err(FrameError::Truncated {
                        buffered: self.decoder.buffered_len(),
                    });
                }
            }
        }
    }

    /// Stop reading: tells the peer we will not read more.
    pub fn stop(&mut self, code: u32) {
        // Stopping an already finished or reset stream is harmless.
        let _ = self.recv.stop(code.into());
    }
}

/// Encode `msg` and write it to `send`.
pub async fn write_frame(send: &mut quinn::SendStream, msg: &Message) -> Result<(), FrameError> {
    let frame = encode_frame(msg)?;
    send.write_all(&frame).await?;
    Ok(())
}
