//! Serving stored bytes over HTTP, the one way every node does it: a media file of the
//! blob store with `ETag` (`304` on `If-None-Match`), a single `Range` (`206`/`416`),
//! immutable caching, streamed from disk in small chunks (a 500 MB video never sits in
//! memory), and the safety headers of [`super::media::add_safety_headers`]. The hub's kiosk
//! and staff media routes and central's dashboard previews all answer through
//! [`blob_response`]; each caller decides first whether the asker may see that hash.

use std::io::SeekFrom;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::counter::Counter;
use taplink_sync_proto::ids::MediaHash;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, ReadBuf};
use tokio_util::io::ReaderStream;

use crate::blobs::{BlobError, BlobStore};

/// Media is read from disk and sent in pieces of this size.
pub const MEDIA_CHUNK: usize = 64 * 1024;

/// `Cache-Control` of media: content-addressed bytes never change.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Why a blob could not be served. Each node turns it into its own error answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// This store does not hold the blob (yet).
    #[error("media {0} is not stored here")]
    NotFound(MediaHash),
    /// The requested byte range lies outside the file of this size (`416`).
    #[error("the requested range is outside the file's {size} bytes")]
    RangeNotSatisfiable {
        /// The file's size in bytes.
        size: u64,
    },
    /// Reading the store failed.
    #[error("{what}: {error}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The cause, for the log.
        error: String,
    },
}

/// Whether `If-None-Match` names `tag` (or is `*`). Weak and strong tags compare alike: a
/// manifest or media file is never partially different.
pub fn etag_matches(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| {
            t == "*"
                || t.strip_prefix("W/")
                    .unwrap_or(t)
                    .strip_prefix('"')
                    .and_then(|t| t.strip_suffix('"'))
                    == Some(tag)
        })
}

/// A strong `ETag` header value for `tag`.
pub fn etag(tag: &str) -> HeaderValue {
    // Manifest versions and media hashes are lowercase hex.
    HeaderValue::from_str(&format!("\"{tag}\"")).unwrap_or(HeaderValue::from_static("\"\""))
}

/// What a `Range` header asks of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// The whole file: no `Range`, or one we ignore (several ranges, another unit, invalid
    /// syntax), as RFC 9110 §14.2 allows.
    Full,
    /// Bytes `start..=end`.
    Partial {
        /// First byte.
        start: u64,
        /// Last byte (inclusive).
        end: u64,
    },
    /// No byte of the file is in the range.
    Unsatisfiable,
}

fn digits(s: &str) -> Option<u64> {
    // `u64::from_str` accepts a leading `+`, which a byte position may not have.
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Reads a single `bytes=a-b`, `bytes=a-` or `bytes=-n` range against a file of `size`.
pub fn parse_range(header: &str, size: u64) -> RangeRequest {
    let Some((unit, spec)) = header.trim().split_once('=') else {
        return RangeRequest::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        let Some(n) = digits(last) else {
            return RangeRequest::Full;
        };
        if n == 0 || size == 0 {
            return RangeRequest::Unsatisfiable;
        }
        return RangeRequest::Partial {
            start: size - n.min(size),
            end: size - 1,
        };
    }
    let Some(start) = digits(first) else {
        return RangeRequest::Full;
    };
    let end = if last.is_empty() {
        None
    } else {
        match digits(last) {
            Some(end) if end >= start => Some(end),
            _ => return RangeRequest::Full,
        }
    };
    if start >= size {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Partial {
        start,
        end: end.map_or(size - 1, |e| e.min(size - 1)),
    }
}

/// A reader that counts the bytes it yields into a metric.
struct Counted<R> {
    inner: R,
    counter: Option<Counter>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counted<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(counter)) = (&polled, &this.counter) {
            let read = buf.filled().len().saturating_sub(before);
            counter.inc_by(read as u64);
        }
        polled
    }
}

fn io_error(what: &'static str, error: impl std::fmt::Display) -> ServeError {
    ServeError::Io {
        what,
        error: error.to_string(),
    }
}

/// `hash` from `blobs` as an HTTP response of `content_type` (the recorded type; only an
/// allowed media type is ever named, see [`super::media::served_type`]): `304` when
/// `If-None-Match` names it, `206` for a single `Range`, else `200`; its bytes counted into
/// `counter`.
pub async fn blob_response(
    blobs: std::sync::Arc<BlobStore>,
    hash: MediaHash,
    content_type: &str,
    headers: &HeaderMap,
    counter: Option<Counter>,
) -> Result<Response, ServeError> {
    let cache = [
        (header::ETAG, etag(&hash.to_string())),
        (header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE)),
    ];
    if etag_matches(headers, &hash.to_string()) {
        return Ok((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    let (file, size) = match tokio::task::spawn_blocking(move || blobs.open_file(&hash))
        .await
        .map_err(|e| io_error("opening a media file", e))?
    {
        Ok(opened) => opened,
        Err(BlobError::NotFound(_)) => return Err(ServeError::NotFound(hash)),
        Err(e) => return Err(io_error("opening a media file", e)),
    };
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map_or(RangeRequest::Full, |r| parse_range(r, size));
    let (status, start, len) = match range {
        RangeRequest::Full => (StatusCode::OK, 0, size),
        RangeRequest::Partial { start, end } => {
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeRequest::Unsatisfiable => return Err(ServeError::RangeNotSatisfiable { size }),
    };
    let mut file = tokio::fs::File::from_std(file);
    if start > 0 {
        file.seek(SeekFrom::Start(start))
            .await
            .map_err(|e| io_error("seeking in a media file", e))?;
    }
    let reader = Counted {
        inner: file.take(len),
        counter,
    };
    // Only an allowed media type is ever named; with `nosniff`, a sandboxing CSP and
    // `attachment` for SVG, no browser runs a stored file as a page of the node.
    let content_type = super::media::served_type(content_type);
    let mut response = (
        status,
        cache,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
            (header::CONTENT_LENGTH, HeaderValue::from(len)),
        ],
        Body::from_stream(ReaderStream::with_capacity(reader, MEDIA_CHUNK)),
    )
        .into_response();
    super::media::add_safety_headers(response.headers_mut(), content_type);
    if status == StatusCode::PARTIAL_CONTENT {
        let end = start + len - 1;
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")) {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        use RangeRequest::*;
        let p = |start, end| Partial { start, end };
        let cases: &[(&str, u64, RangeRequest)] = &[
            ("bytes=0-9", 100, p(0, 9)),
            ("bytes=10-", 100, p(10, 99)),
            ("bytes=-5", 100, p(95, 99)),
            ("bytes=-500", 100, p(0, 99)),
            ("bytes=90-200", 100, p(90, 99)),
            ("bytes=99-99", 100, p(99, 99)),
            ("BYTES = 1-2", 100, p(1, 2)),
            ("bytes=100-", 100, Unsatisfiable),
            ("bytes=100-200", 100, Unsatisfiable),
            ("bytes=-0", 100, Unsatisfiable),
            ("bytes=0-", 0, Unsatisfiable),
            ("bytes=-1", 0, Unsatisfiable),
            // Ignored: the whole file is sent.
            ("bytes=5-1", 100, Full),
            ("bytes=0-1,5-6", 100, Full),
            ("items=0-1", 100, Full),
            ("bytes=+1-2", 100, Full),
            ("bytes=a-b", 100, Full),
            ("bytes=", 100, Full),
            ("bytes=-", 100, Full),
            ("garbage", 100, Full),
        ];
        for (header, size, want) in cases {
            assert_eq!(parse_range(header, *size), *want, "{header:?} of {size}");
        }
    }

    #[test]
    fn if_none_match_lists_weak_tags_and_star() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::IF_NONE_MATCH, HeaderValue::from_str(v).unwrap());
            m
        };
        assert!(etag_matches(&h("\"abc\""), "abc"));
        assert!(etag_matches(&h("W/\"abc\""), "abc"));
        assert!(etag_matches(&h("\"x\", \"abc\""), "abc"));
        assert!(etag_matches(&h("*"), "abc"));
        assert!(!etag_matches(&h("\"abcd\""), "abc"));
        assert!(!etag_matches(&h("abc"), "abc"));
        assert!(!etag_matches(&HeaderMap::new(), "abc"));
    }
}
