//! Blob transfers over QUIC: one bidirectional stream per blob. The requester sends one
//! `BlobRequest { hash, offset }`; the server answers with `BlobChunk`s from that offset to
//! the end and finishes the stream, or with one `Error` (`NotFound`, `Forbidden`).
//!
//! The fetching side writes into a [`Partial`](crate::blobs::Partial), fsyncs it every
//! [`SYNC_EVERY`] bytes and at the end, and resumes from the partial's durable length
//! after a cut or a restart. The blob becomes visible only when its whole content matched
//! its hash; a mismatch discards it, and the next fetch starts from zero.
//!
//! Both ends keep the disk off the stream's task and copy a chunk's bytes as little as they
//! can. The server reads chunks ahead on a blocking thread, each into a buffer of its own,
//! and hands quinn the frame's head ([`encode_blob_chunk_head`]) and that buffer: the data
//! is never copied into a frame. The fetcher reads each frame into a buffer of its own,
//! decodes it in place ([`decode_blob_frame`]) and queues the buffer for a blocking thread
//! that writes and hashes from it, so the stream keeps flowing while the disk works. That
//! thread in turn hands each fsync to a flusher thread of its own ([`Partial::flusher`]):
//! an fsync of [`SYNC_EVERY`] bytes takes about as long as writing and hashing them, and
//! doing the two in turn made the writer the bottleneck of a fast transfer.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use taplink_sync_proto::ids::MediaHash;
use taplink_sync_proto::wire::{
    BlobFrame, DecodeError, ErrorCode, FRAME_HEADER_LEN, MAX_BLOB_CHUNK, MAX_FRAME_LEN, Message,
    decode_blob_frame, encode_blob_chunk_head,
};
use tracing::{debug, info, warn};

use taplink_sync_proto::doc::load_venue;
use taplink_sync_proto::wire::DocId;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::blobs::{BlobError, BlobStore, Flusher, Partial};
use crate::docs::Documents;
use crate::frames::{FrameError, write_frame};

/// How many received bytes may be written before an fsync of the partial blob is started.
/// A power cut loses at most about three such windows: the writer runs ahead of its flusher
/// thread by up to two. Syncing this often also keeps the disk streaming: without it dirty
/// pages pile up, the kernel throttles the writer and a big blob transfers at about half
/// the speed (docs/performance.md, `bench blob`).
pub const SYNC_EVERY: u64 = 4 * 1024 * 1024;

/// How often missing blobs are retried while connected, even without a document change.
pub const BLOB_RETRY: Duration = Duration::from_secs(30);

/// How soon a fetch that failed on our side is tried again.
const FAILED_RETRY: Duration = Duration::from_secs(2);

/// Chunks the server's reader thread prepares ahead of the stream (1 MiB).
const READ_AHEAD: usize = 4;

/// Chunks received but not yet written (8 MiB): enough to keep reading from the stream
/// through an fsync of the partial file.
const WRITE_QUEUE: usize = 32;

/// Blobs at least this big log their progress at info level.
const LOUD_SIZE: u64 = 8 * 1024 * 1024;

/// Decides which blobs a peer may read (central: only those its venue references).
pub type BlobPolicy = Arc<dyn Fn(&MediaHash) -> bool + Send + Sync>;

/// Serves blob requests from one peer.
#[derive(Clone)]
pub struct BlobServer {
    store: Arc<BlobStore>,
    allow: BlobPolicy,
}

impl std::fmt::Debug for BlobServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobServer").finish_non_exhaustive()
    }
}

impl BlobServer {
    /// Serve from `store` whatever `allow` permits.
    pub fn new(store: Arc<BlobStore>, allow: BlobPolicy) -> Self {
        Self { store, allow }
    }

    /// Answer one request whose first frame the acceptor already read; errors are logged
    /// and told to the peer, never raised.
    pub async fn serve(&self, mut send: quinn::SendStream, hash: MediaHash, offset: u64) {
        if let Err(e) = self.try_serve(&mut send, hash, offset).await {
            debug!(error = %e, "blob request ended early");
        }
        let _ = send.finish();
    }

    async fn try_serve(
        &self,
        send: &mut quinn::SendStream,
        hash: MediaHash,
        offset: u64,
    ) -> Result<(), TransferError> {
        let size = if (self.allow)(&hash) {
            self.store.size(&hash)?
        } else {
            let reason = format!("blob {hash} is not shared with you");
            write_frame(send, &Message::error(ErrorCode::Forbidden, &reason)).await?;
            return Err(TransferError::Protocol(reason));
        };
        let Some(total_len) = size else {
            let reason = format!("blob {hash} is not stored here (yet)");
            write_frame(send, &Message::error(ErrorCode::NotFound, &reason)).await?;
            return Ok(());
        };
        if offset > total_len {
            let reason =
                format!("offset {offset} is beyond the end of blob {hash} ({total_len} bytes)");
            write_frame(send, &Message::error(ErrorCode::Malformed, &reason)).await?;
            return Err(TransferError::Protocol(reason));
        }
        // The reader thread stops when this side drops the queue (the peer went away).
        let (chunks_tx, mut chunks) = mpsc::channel(READ_AHEAD);
        let store = self.store.clone();
        let reader = tokio::task::spawn_blocking(move || {
            read_chunks(&store, hash, offset, total_len, &chunks_tx)
        });
        while let Some((head, data)) = chunks.recv().await {
            for part in [head, data] {
                send.write_chunk(part).await.map_err(FrameError::Write)?;
            }
        }
        reader
            .await
            .map_err(|e| TransferError::Protocol(format!("blob reader task failed: {e}")))?
    }
}

/// Read `hash` from `offset` to `total_len` and queue it as `BlobChunk` frames of at most
/// [`MAX_BLOB_CHUNK`] bytes, each as its head and its data (read into a buffer that quinn
/// then owns); at the end of the blob, one (possibly empty) chunk is always sent. Blocks:
/// run it on a blocking thread.
fn read_chunks(
    store: &BlobStore,
    hash: MediaHash,
    offset: u64,
    total_len: u64,
    chunks: &mpsc::Sender<(Bytes, Bytes)>,
) -> Result<(), TransferError> {
    let (mut file, _) = store.open_file(&hash)?;
    let read_err = |source: std::io::Error| {
        let hex = hash.to_string();
        TransferError::Blob(BlobError::Io {
            action: "read blob",
            // Where the store keeps it (`blobs/<2 hex>/<hash>`, see its module docs).
            path: store.dir().join("blobs").join(&hex[..2]).join(&hex),
            source,
        })
    };
    file.seek(SeekFrom::Start(offset)).map_err(read_err)?;
    let mut at = offset;
    loop {
        // At most MAX_BLOB_CHUNK, so it fits in a usize.
        let want =
            usize::try_from((total_len - at).min(MAX_BLOB_CHUNK as u64)).unwrap_or(MAX_BLOB_CHUNK);
        let mut data = Vec::with_capacity(want);
        (&mut file)
            .take(want as u64)
            .read_to_end(&mut data)
            .map_err(read_err)?;
        if data.len() < want {
            // A file shorter than its indexed size: refuse rather than send a short blob.
            return Err(read_err(std::io::ErrorKind::UnexpectedEof.into()));
        }
        let head = encode_blob_chunk_head(&hash, at, total_len, want).map_err(FrameError::from)?;
        if chunks
            .blocking_send((Bytes::from(head), Bytes::from(data)))
            .is_err()
        {
            // The stream's side stopped; it reports why.
            return Ok(());
        }
        at += want as u64;
        if at >= total_len {
            return Ok(());
        }
    }
}

/// What a fetch achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// It was already here.
    AlreadyPresent,
    /// It was transferred (possibly resuming) and verified.
    Stored {
        /// Bytes moved over the network this time.
        transferred: u64,
        /// Where this fetch resumed from (0 for a fresh one).
        resumed_from: u64,
    },
}

/// Why a fetch failed; what was durably received so far is kept for the next attempt,
/// except after [`TransferError::Blob`] with a hash mismatch, which starts over.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// The peer refused or does not have the blob.
    #[error("peer refused blob: {code:?}: {reason}")]
    Refused {
        /// Its code.
        code: ErrorCode,
        /// Its sentence.
        reason: String,
    },
    /// The peer broke the blob protocol.
    #[error("blob protocol violation: {0}")]
    Protocol(String),
    /// A stream failed or carried a bad frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The connection failed.
    #[error("connection failed: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Local storage failed, or the received content did not match its hash.
    #[error(transparent)]
    Blob(#[from] BlobError),
}

/// Fetch `hash` (of `total_len` bytes, from the document's metadata) from the peer on
/// `conn` into `store`, resuming a partial download if there is one.
pub async fn fetch_blob(
    conn: &quinn::Connection,
    store: &Arc<BlobStore>,
    hash: MediaHash,
    total_len: u64,
) -> Result<Fetched, TransferError> {
    if store.has(&hash)? {
        return Ok(Fetched::AlreadyPresent);
    }
    let partial = store.partial(hash, total_len)?;
    let resumed_from = partial.offset();
    let (mut send, recv) = conn.open_bi().await?;
    write_frame(
        &mut send,
        &Message::BlobRequest {
            hash,
            offset: resumed_from,
        },
    )
    .await?;
    let _ = send.finish();
    if resumed_from > 0 {
        info!(%hash, resumed_from, total_len, "resuming blob transfer");
    }
    let loud = total_len >= LOUD_SIZE;
    let (chunks_tx, chunks) = mpsc::channel(WRITE_QUEUE);
    let writer = tokio::task::spawn_blocking(move || write_chunks(partial, chunks, loud));
    let received = receive_chunks(recv, hash, resumed_from, total_len, &chunks_tx).await;
    // Closing the queue lets the writer finish: it syncs what it wrote, and verifies and
    // stores the blob if it is complete.
    drop(chunks_tx);
    let written = writer
        .await
        .map_err(|e| TransferError::Protocol(format!("blob writer task failed: {e}")))?;
    match (received, written) {
        (Ok(()), Ok(true)) => {
            let transferred = total_len - resumed_from;
            if loud {
                info!(%hash, total_len, transferred, "blob stored");
            } else {
                debug!(%hash, total_len, transferred, "blob stored");
            }
            Ok(Fetched::Stored {
                transferred,
                resumed_from,
            })
        }
        // The writer stopped first (it failed): its error is the cause.
        (_, Err(e)) => {
            if matches!(e, BlobError::HashMismatch { .. }) {
                warn!(%hash, error = %e, "received blob failed verification; it will be fetched again");
            }
            Err(e.into())
        }
        (Err(e), Ok(_)) => Err(e),
        (Ok(()), Ok(false)) => Err(TransferError::Protocol(format!(
            "blob {hash} ended before its {total_len} bytes were written"
        ))),
    }
}

/// A received chunk for the writer: its offset in the blob, and the frame it came in,
/// whose bytes from the given index on are the chunk's data.
type Received = (u64, Vec<u8>, usize);

/// Read `BlobChunk` frames from the stream and queue them for the writer until
/// `total_len` bytes have arrived.
async fn receive_chunks(
    mut recv: quinn::RecvStream,
    hash: MediaHash,
    resumed_from: u64,
    total_len: u64,
    chunks: &mpsc::Sender<Received>,
) -> Result<(), TransferError> {
    let mut received = resumed_from;
    while received < total_len {
        let Some(frame) = read_frame(&mut recv).await? else {
            return Err(TransferError::Protocol(format!(
                "peer ended blob {hash} at {received} of {total_len} bytes"
            )));
        };
        let (offset, len) = match decode_blob_frame(&frame).map_err(FrameError::from)? {
            BlobFrame::Chunk {
                hash: h,
                offset,
                total_len: t,
                data,
            } => {
                if h != hash || t != total_len {
                    return Err(TransferError::Protocol(format!(
                        "asked for {hash} ({total_len} bytes), got a chunk of {h} ({t} bytes)"
                    )));
                }
                (offset, data.len())
            }
            BlobFrame::Other(Message::Error { code, reason }) => {
                return Err(TransferError::Refused { code, reason });
            }
            BlobFrame::Other(other) => {
                return Err(TransferError::Protocol(format!(
                    "unexpected {} on a blob stream",
                    other.kind()
                )));
            }
        };
        // The data is the frame's tail.
        let start = frame.len() - len;
        if chunks.send((offset, frame, start)).await.is_err() {
            // The writer stopped on an error, which the caller reports.
            return Ok(());
        }
        received = received.saturating_add(len as u64);
    }
    Ok(())
}

/// Write queued chunks into `partial`; when the queue closes, sync and, if the blob is
/// complete, verify and store it (`Ok(true)`). Dropping the `Partial` on the way out keeps
/// what was written for a resume. Blocks: run it on a blocking thread.
///
/// Every [`SYNC_EVERY`] bytes a flusher thread fsyncs the partial file while this one goes on
/// writing and hashing: an fsync here takes as long as writing the 4 MiB before it, and
/// doing both in turn would halve a fast transfer. The queue to the flusher holds one
/// request, so the durable prefix trails the written one by at most about three windows.
fn write_chunks(
    mut partial: Partial,
    mut chunks: mpsc::Receiver<Received>,
    loud: bool,
) -> Result<bool, BlobError> {
    let hash = partial.hash();
    let total_len = partial.total_len();
    let flusher = partial.flusher()?;
    let written = std::thread::scope(|scope| {
        let (sync_tx, sync_rx) = std::sync::mpsc::sync_channel::<()>(1);
        let flushing = scope.spawn(move || flush(flusher, sync_rx));
        let mut since_sync = 0u64;
        let mut next_report = total_len / 4;
        while let Some((offset, frame, start)) = chunks.blocking_recv() {
            let data = &frame[start..];
            partial.write_chunk(offset, data)?;
            since_sync += data.len() as u64;
            if since_sync >= SYNC_EVERY {
                since_sync = 0;
                if sync_tx.send(()).is_err() {
                    // The flusher failed; joining it below says why.
                    break;
                }
            }
            if loud && partial.offset() >= next_report && partial.offset() < total_len {
                info!(%hash, received = partial.offset(), total_len, "blob transfer progress");
                next_report += total_len / 4;
            }
        }
        drop(sync_tx);
        flushing
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    });
    written?;
    partial.sync()?;
    if partial.offset() < total_len {
        return Ok(false);
    }
    partial.finish()?;
    Ok(true)
}

/// The flusher thread of [`write_chunks`]: one fsync per request, until the writer hangs up.
fn flush(mut flusher: Flusher, requests: std::sync::mpsc::Receiver<()>) -> Result<(), BlobError> {
    for () in requests {
        flusher.sync()?;
    }
    Ok(())
}

/// The next whole frame on a blob stream, read into a buffer of its own (it travels to the
/// writer with the chunk's data in it), or `None` when the peer finished the stream between
/// frames. Like a [`FrameReader`](crate::frames::FrameReader) it checks a frame's length
/// before reading its body, and never buffers more than one frame.
async fn read_frame(recv: &mut quinn::RecvStream) -> Result<Option<Vec<u8>>, FrameError> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    match recv.read_exact(&mut header).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(quinn::ReadExactError::FinishedEarly(buffered)) => {
            return Err(FrameError::Truncated { buffered });
        }
        Err(quinn::ReadExactError::ReadError(e)) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME_LEN {
        return Err(DecodeError::FrameTooLarge {
            len,
            max: MAX_FRAME_LEN,
        }
        .into());
    }
    let frame_len = FRAME_HEADER_LEN + len;
    let mut frame = Vec::with_capacity(frame_len);
    frame.extend_from_slice(&header);
    // Quinn's received chunks are copied once, into the frame; nothing is zeroed first.
    while frame.len() < frame_len {
        match recv.read_chunk(frame_len - frame.len(), true).await? {
            Some(chunk) => frame.extend_from_slice(&chunk.bytes),
            None => {
                return Err(FrameError::Truncated {
                    buffered: frame.len(),
                });
            }
        }
    }
    Ok(Some(frame))
}

/// For as long as `conn` lives: whenever `wake` fires (a document change, a new session)
/// and every [`BLOB_RETRY`], fetch from the peer, one at a time, every blob the venue
/// document `venue` references and `store` lacks. Central and hubs both run this: a hub
/// gets the media central's admins added, central gets the media uploaded at the venue.
/// `on_fetched` is told the bytes moved for each blob stored.
///
/// With a `quota`, the venue's media held here never passes it: a blob that would is not
/// fetched (and said so in the log) until media is deleted or the quota raised. Central
/// sets one per venue, so a compromised hub cannot fill central's disk.
#[allow(clippy::too_many_arguments)]
pub async fn fetch_missing(
    conn: quinn::Connection,
    docs: Arc<Documents>,
    venue: DocId,
    store: Arc<BlobStore>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
    quota: Option<u64>,
    on_fetched: impl Fn(u64) + Send + 'static,
) {
    let mut retry_in = BLOB_RETRY;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(retry_in) => {}
        }
        retry_in = BLOB_RETRY;
        let wanted: Vec<(MediaHash, u64)> = match docs.read(venue, |am| load_venue(am)) {
            Ok(Ok(doc)) => doc.media.iter().map(|(h, m)| (*h, m.size)).collect(),
            // Not synced yet (no schema) or not here: nothing to fetch yet.
            _ => continue,
        };
        // The venue's media held here: what counts against the quota.
        let mut held: u64 = wanted
            .iter()
            .filter(|(h, _)| store.has(h).unwrap_or(false))
            .map(|(_, size)| size)
            .sum();
        for (hash, size) in wanted {
            if cancel.is_cancelled() {
                return;
            }
            if store.has(&hash).unwrap_or(false) {
                continue;
            }
            if let Some(quota) = quota
                && held.saturating_add(size) > quota
            {
                warn!(%venue, %hash, size, held, quota, "not fetching media: the venue's media quota would be exceeded");
                continue;
            }
            held = held.saturating_add(size);
            match fetch_blob(&conn, &store, hash, size).await {
                Ok(Fetched::Stored { transferred, .. }) => on_fetched(transferred),
                Ok(Fetched::AlreadyPresent) => {}
                Err(TransferError::Refused { reason, .. }) => {
                    debug!(%hash, %reason, "peer cannot serve this media yet");
                }
                Err(TransferError::Connection(_)) => return,
                Err(e) => {
                    // A local failure (busy, disk, a corrupt transfer) is worth retrying soon.
                    warn!(%hash, error = %e, "media fetch failed; will retry");
                    retry_in = FAILED_RETRY;
                }
            }
        }
    }
}
