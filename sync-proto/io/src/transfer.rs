//! Blob transfers over QUIC: one bidirectional stream per blob. The requester sends one
//! `BlobRequest { hash, offset }`; the server answers with `BlobChunk`s from that offset to
//! the end and finishes the stream, or with one `Error` (`NotFound`, `Forbidden`).
//!
//! The fetching side writes into a [`Partial`](crate::blobs::Partial), fsyncs it every
//! [`SYNC_EVERY`] bytes and at the end, and resumes from the partial's durable length
//! after a cut or a restart. The blob becomes visible only when its whole content matched
//! its hash; a mismatch discards it, and the next fetch starts from zero.

use std::sync::Arc;
use std::time::Duration;

use taplink_sync_proto::ids::MediaHash;
use taplink_sync_proto::wire::{ErrorCode, MAX_BLOB_CHUNK, MAX_FRAME_LEN, Message};
use tracing::{debug, info, warn};

use taplink_sync_proto::doc::load_venue;
use taplink_sync_proto::wire::DocId;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::blobs::{BlobError, BlobStore};
use crate::docs::Documents;
use crate::frames::{FrameError, FrameReader, write_frame};

/// How many received bytes may be lost to a crash before the next fsync of a partial blob.
pub const SYNC_EVERY: u64 = 4 * 1024 * 1024;

/// How often missing blobs are retried while connected, even without a document change.
pub const BLOB_RETRY: Duration = Duration::from_secs(30);

/// How soon a fetch that failed on our side is tried again.
const FAILED_RETRY: Duration = Duration::from_secs(2);

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
        let mut at = offset;
        loop {
            let store = self.store.clone();
            let data =
                tokio::task::spawn_blocking(move || store.read_range(&hash, at, MAX_BLOB_CHUNK))
                    .await
                    .map_err(|e| {
                        TransferError::Protocol(format!("blob reader task failed: {e}"))
                    })??;
            let len = data.len() as u64;
            write_frame(
                send,
                &Message::BlobChunk {
                    hash,
                    offset: at,
                    total_len,
                    data,
                },
            )
            .await?;
            at += len;
            if at >= total_len || len == 0 {
                return Ok(());
            }
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
    let mut partial = store.partial(hash, total_len)?;
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
    let mut reader = FrameReader::new(recv, MAX_FRAME_LEN);
    let mut since_sync = 0u64;
    let mut next_report = total_len / 4;
    while partial.offset() < total_len {
        match reader.next().await? {
            Some(Message::BlobChunk {
                hash: h,
                offset,
                total_len: t,
                data,
            }) => {
                if h != hash || t != total_len {
                    return Err(TransferError::Protocol(format!(
                        "asked for {hash} ({total_len} bytes), got a chunk of {h} ({t} bytes)"
                    )));
                }
                since_sync += data.len() as u64;
                partial.write_chunk(offset, &data)?;
                if since_sync >= SYNC_EVERY {
                    partial.sync()?;
                    since_sync = 0;
                }
                if loud && partial.offset() >= next_report && partial.offset() < total_len {
                    info!(%hash, received = partial.offset(), total_len, "blob transfer progress");
                    next_report += total_len / 4;
                }
            }
            Some(Message::Error { code, reason }) => {
                partial.sync()?;
                return Err(TransferError::Refused { code, reason });
            }
            Some(other) => {
                partial.sync()?;
                return Err(TransferError::Protocol(format!(
                    "unexpected {} on a blob stream",
                    other.kind()
                )));
            }
            None => {
                partial.sync()?;
                return Err(TransferError::Protocol(format!(
                    "peer ended blob {hash} at {} of {total_len} bytes",
                    partial.offset()
                )));
            }
        }
    }
    partial.sync()?;
    match partial.finish() {
        Ok(_) => {
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
        Err(e) => {
            warn!(%hash, error = %e, "received blob failed verification; it will be fetched again");
            Err(e.into())
        }
    }
}

/// For as long as `conn` lives: whenever `wake` fires (a document change, a new session)
/// and every [`BLOB_RETRY`], fetch from the peer, one at a time, every blob the venue
/// document `venue` references and `store` lacks. Central and hubs both run this: a hub
/// gets the media central's admins added, central gets the media uploaded at the venue.
/// `on_fetched` is told the bytes moved for each blob stored.
pub async fn fetch_missing(
    conn: quinn::Connection,
    docs: Arc<Documents>,
    venue: DocId,
    store: Arc<BlobStore>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
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
        for (hash, size) in wanted {
            if cancel.is_cancelled() {
                return;
            }
            if store.has(&hash).unwrap_or(false) {
                continue;
            }
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
