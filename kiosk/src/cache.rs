//! The media cache on top of [`BlobStore`]: the eviction policy and verified downloads
//! from the hub.
//!
//! **Eviction** keeps the cache within its byte budget by removing the least recently used
//! blobs that no manifest in play needs; a needed blob is never removed, even when the
//! needed set alone exceeds the budget (playing beats the budget, and the overflow is
//! logged).
//!
//! **Downloads** go through [`BlobStore::partial`]: bytes land in `partial/`, invisible,
//! and become a blob only once the whole file matched its BLAKE3 hash. An interrupted
//! download resumes with a `Range` request; a wrong hash deletes the partial file.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;
use taplink_sync_io::blobs::{BlobError, BlobStore, Partial};
use taplink_sync_proto::ids::MediaHash;
use tracing::{debug, info, warn};

use crate::hub::{HubApi, HubError};

/// Bytes gathered before one write to the partial file.
const WRITE_CHUNK: usize = 1024 * 1024;

/// Bytes written between fsyncs of a partial file (what survives a power cut for resume).
const SYNC_EVERY: u64 = 16 * 1024 * 1024;

/// Longest wait for the next piece of a media body before the download counts as broken.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Which blobs to evict, in order, so that the cache holds at most `budget - incoming`
/// bytes: the least recently used first, never one in `needed`.
///
/// `lru` is every cached blob with its size, least recently used first (as
/// [`BlobStore::list_least_recently_used`] gives it). When the needed blobs alone exceed
/// the target, everything else is evicted and the cache stays over budget.
pub fn plan_eviction(
    lru: &[(MediaHash, u64)],
    needed: &HashSet<MediaHash>,
    budget: u64,
    incoming: u64,
) -> Vec<MediaHash> {
    let target = budget.saturating_sub(incoming);
    let mut total: u64 = lru.iter().map(|(_, size)| size).sum();
    let mut evict = Vec::new();
    for (hash, size) in lru {
        if total <= target {
            break;
        }
        if needed.contains(hash) {
            continue;
        }
        evict.push(*hash);
        total -= size;
    }
    evict
}

/// What [`evict`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evicted {
    /// Blobs removed.
    pub blobs: usize,
    /// Bytes freed.
    pub bytes: u64,
    /// Bytes in the cache afterwards.
    pub total: u64,
}

/// Make room for `incoming` bytes within `budget` by the [`plan_eviction`] policy.
/// Blocking (SQLite and file removal).
pub fn evict(
    blobs: &BlobStore,
    needed: &HashSet<MediaHash>,
    budget: u64,
    incoming: u64,
) -> Result<Evicted, BlobError> {
    let lru = blobs.list_least_recently_used()?;
    let plan = plan_eviction(&lru, needed, budget, incoming);
    let mut done = Evicted::default();
    for hash in &plan {
        let size = lru
            .iter()
            .find(|(h, _)| h == hash)
            .map_or(0, |(_, size)| *size);
        if blobs.remove(hash)? {
            done.blobs += 1;
            done.bytes += size;
            debug!(%hash, size, "evicted media");
        }
    }
    done.total = blobs.total_size()?;
    if done.total.saturating_add(incoming) > budget {
        warn!(
            cache_bytes = done.total,
            incoming,
            budget,
            "the media the manifest needs exceeds the cache budget; keeping it anyway"
        );
    }
    Ok(done)
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The hub said 401: this kiosk's token was revoked.
    #[error("the hub no longer accepts this kiosk's token")]
    Revoked,
    /// The hub did not answer, or the body broke off.
    #[error(transparent)]
    Unreachable(#[from] HubError),
    /// The body stopped arriving.
    #[error("media {hash}: no data for {STALL_TIMEOUT:?}")]
    Stalled {
        /// The blob.
        hash: MediaHash,
    },
    /// The hub answered with an error (e.g. 404: not referenced by this venue).
    #[error("media {hash}: hub answered {status}: {message}")]
    Refused {
        /// The blob.
        hash: MediaHash,
        /// The status.
        status: StatusCode,
        /// The hub's sentence.
        message: String,
    },
    /// The hub's answer is not a usable body for this blob (no length, wrong range, too
    /// short).
    #[error("media {hash}: {reason}")]
    BadAnswer {
        /// The blob.
        hash: MediaHash,
        /// What was wrong.
        reason: String,
    },
    /// The blob cannot fit in the cache at all.
    #[error("media {hash} is {size} bytes, more than the whole cache budget of {budget}")]
    TooLarge {
        /// The blob.
        hash: MediaHash,
        /// Its size.
        size: u64,
        /// The budget.
        budget: u64,
    },
    /// The cache failed, or the bytes did not match the hash (the partial file is gone).
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// A blocking task panicked or was cancelled at shutdown.
    #[error("media {hash}: background write did not finish: {reason}")]
    Task {
        /// The blob.
        hash: MediaHash,
        /// Why.
        reason: String,
    },
}

/// What [`fetch`] needs to know about the cache.
#[derive(Debug)]
pub struct Room<'a> {
    /// Blobs that must not be evicted to make room.
    pub needed: &'a HashSet<MediaHash>,
    /// The cache budget.
    pub budget: u64,
}

/// Download `hash` from the hub into the cache, verified; returns its size and how many
/// bytes came over the network. A blob already stored is not downloaded again.
pub async fn fetch(
    api: &HubApi,
    blobs: &BlobStore,
    hash: MediaHash,
    room: Room<'_>,
) -> Result<(u64, u64), FetchError> {
    let task_err = |e: tokio::task::JoinError| FetchError::Task {
        hash,
        reason: e.to_string(),
    };
    let mut response = api.media(&hash, 0).await?;
    check_status(&response, hash, StatusCode::OK)?;
    let total = response
        .content_length()
        .ok_or_else(|| FetchError::BadAnswer {
            hash,
            reason: "no Content-Length".into(),
        })?;
    if total > room.budget {
        return Err(FetchError::TooLarge {
            hash,
            size: total,
            budget: room.budget,
        });
    }
    let (store, needed, budget) = (blobs.clone(), room.needed.clone(), room.budget);
    let opened = tokio::task::spawn_blocking(move || {
        let evicted = evict(&store, &needed, budget, total)?;
        let partial = match store.partial(hash, total) {
            Ok(p) => Some(p),
            Err(BlobError::AlreadyComplete(_)) => None,
            Err(e) => return Err(e),
        };
        Ok((evicted, partial))
    })
    .await
    .map_err(task_err)??;
    let (evicted, partial) = opened;
    if evicted.blobs > 0 {
        info!(
            blobs = evicted.blobs,
            bytes = evicted.bytes,
            "evicted media to make room"
        );
    }
    let Some(mut partial) = partial else {
        return Ok((total, 0));
    };
    let mut skip = 0u64;
    if partial.offset() > 0 {
        let from = partial.offset();
        drop(response);
        response = api.media(&hash, from).await?;
        if response.status() == StatusCode::OK {
            // The hub ignored the range: read past what we already have.
            skip = from;
        } else {
            check_status(&response, hash, StatusCode::PARTIAL_CONTENT)?;
            let start = response
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(content_range_start);
            if start != Some(from) {
                return Err(FetchError::BadAnswer {
                    hash,
                    reason: format!("asked for bytes from {from}, got range {start:?}"),
                });
            }
        }
        info!(%hash, from, total, "resuming media download");
    }

    let mut received = 0u64;
    let mut buf = Vec::with_capacity(WRITE_CHUNK);
    let mut since_sync = 0u64;
    loop {
        let chunk = tokio::time::timeout(STALL_TIMEOUT, response.chunk())
            .await
            .map_err(|_| FetchError::Stalled { hash })?
            .map_err(|source| HubError::Unreachable {
                addr: api.addr(),
                source,
            })?;
        let done = chunk.is_none();
        if let Some(mut chunk) = chunk {
            received += chunk.len() as u64;
            let dropped = skip.min(chunk.len() as u64);
            skip -= dropped;
            // `dropped <= chunk.len()`, so it fits in a usize.
            let _ = chunk.split_to(usize::try_from(dropped).unwrap_or(chunk.len()));
            buf.extend_from_slice(&chunk);
        }
        if buf.len() >= WRITE_CHUNK || (done && !buf.is_empty()) {
            let data = std::mem::replace(&mut buf, Vec::with_capacity(WRITE_CHUNK));
            since_sync += data.len() as u64;
            let sync = since_sync >= SYNC_EVERY;
            if sync {
                since_sync = 0;
            }
            partial = tokio::task::spawn_blocking(move || write(partial, &data, sync))
                .await
                .map_err(task_err)??;
        }
        if done {
            break;
        }
    }
    if partial.offset() != total {
        return Err(FetchError::BadAnswer {
            hash,
            reason: format!(
                "body ended at {} of {total} bytes (kept for resume)",
                partial.offset()
            ),
        });
    }
    tokio::task::spawn_blocking(move || partial.finish())
        .await
        .map_err(task_err)??;
    Ok((total, received))
}

fn write(mut partial: Partial, data: &[u8], sync: bool) -> Result<Partial, BlobError> {
    let offset = partial.offset();
    partial.write_chunk(offset, data)?;
    if sync {
        partial.sync()?;
    }
    Ok(partial)
}

fn check_status(
    response: &reqwest::Response,
    hash: MediaHash,
    want: StatusCode,
) -> Result<(), FetchError> {
    match response.status() {
        s if s == want => Ok(()),
        StatusCode::UNAUTHORIZED => Err(FetchError::Revoked),
        status => Err(FetchError::Refused {
            hash,
            status,
            message: status.canonical_reason().unwrap_or("").to_owned(),
        }),
    }
}

/// The first byte of a `Content-Range: bytes a-b/n` header.
fn content_range_start(value: &str) -> Option<u64> {
    value
        .strip_prefix("bytes ")?
        .split_once('-')?
        .0
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn h(n: u8) -> MediaHash {
        MediaHash::of(&[n])
    }

    #[test]
    fn least_recently_used_unneeded_blobs_go_first() {
        let lru = [(h(1), 40), (h(2), 30), (h(3), 20), (h(4), 10)];
        let needed: HashSet<_> = [h(1)].into();
        // 100 bytes, budget 70: h(1) is needed, so h(2) goes.
        assert_eq!(plan_eviction(&lru, &needed, 70, 0), vec![h(2)]);
        // Room for 15 more (target 55): h(2) and h(3).
        assert_eq!(plan_eviction(&lru, &needed, 70, 15), vec![h(2), h(3)]);
        // Room for 25 more (target 45): h(4) as well.
        assert_eq!(plan_eviction(&lru, &needed, 70, 25), vec![h(2), h(3), h(4)]);
        // Within budget: nothing.
        assert_eq!(
            plan_eviction(&lru, &needed, 100, 0),
            Vec::<MediaHash>::new()
        );
        // Needed alone exceed the budget: everything else goes, the needed stays.
        assert_eq!(plan_eviction(&lru, &needed, 10, 0), vec![h(2), h(3), h(4)]);
    }

    #[test]
    fn content_range_starts_parse() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes */200"), None);
        assert_eq!(content_range_start("items 1-2/3"), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Whatever the cache holds and needs: nothing needed is evicted; the result fits
        /// the target whenever the needed blobs alone do; blobs go in LRU order; and no
        /// blob is evicted that did not have to be (stopping one earlier would not fit).
        #[test]
        fn eviction_respects_need_budget_and_order(
            sizes in prop::collection::vec(0u64..1_000, 0..24),
            needed_mask in prop::collection::vec(any::<bool>(), 24),
            budget in 0u64..10_000,
            incoming in 0u64..2_000,
        ) {
            let lru: Vec<(MediaHash, u64)> = sizes
                .iter()
                .enumerate()
                .map(|(i, s)| (h(i as u8), *s))
                .collect();
            let needed: HashSet<MediaHash> = lru
                .iter()
                .zip(&needed_mask)
                .filter(|(_, n)| **n)
                .map(|((hash, _), _)| *hash)
                .collect();
            let plan = plan_eviction(&lru, &needed, budget, incoming);
            let target = budget.saturating_sub(incoming);
            let total: u64 = lru.iter().map(|(_, s)| s).sum();
            let freed: u64 = plan
                .iter()
                .map(|e| lru.iter().find(|(x, _)| x == e).unwrap().1)
                .sum();
            let needed_bytes: u64 = lru
                .iter()
                .filter(|(x, _)| needed.contains(x))
                .map(|(_, s)| s)
                .sum();
            prop_assert!(plan.iter().all(|e| !needed.contains(e)));
            if needed_bytes <= target {
                prop_assert!(total - freed <= target);
            }
            let positions: Vec<usize> = plan
                .iter()
                .map(|e| lru.iter().position(|(x, _)| x == e).unwrap())
                .collect();
            prop_assert!(positions.windows(2).all(|w| w[0] < w[1]));
            if let Some(last) = plan.last() {
                let last_size = lru.iter().find(|(x, _)| x == last).unwrap().1;
                prop_assert!(total - (freed - last_size) > target);
            }
        }
    }

    #[test]
    fn eviction_on_a_real_store_keeps_needed_blobs_and_meets_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path()).unwrap();
        let a = blobs.put(&[1u8; 100]).unwrap();
        let b = blobs.put(&[2u8; 100]).unwrap();
        let c = blobs.put(&[3u8; 100]).unwrap();
        let needed: HashSet<_> = [a].into();
        let done = evict(&blobs, &needed, 150, 0).unwrap();
        assert_eq!((done.blobs, done.bytes, done.total), (2, 200, 100));
        assert!(blobs.has(&a).unwrap());
        assert!(!blobs.has(&b).unwrap() && !blobs.has(&c).unwrap());
        // Over budget with only needed media: nothing more goes.
        let done = evict(&blobs, &needed, 10, 0).unwrap();
        assert_eq!((done.blobs, done.total), (0, 100));
    }
}
