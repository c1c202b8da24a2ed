//! Which media a venue may upload, decided by the bytes and not by what the uploader
//! says; how an upload is received ([`receive_upload`]: streamed to a staging file within
//! its limits, then checked), the one mechanism of the hub's and central's
//! `PUT /api/v1/media`; and the headers every media response carries so that no browser
//! ever runs an uploaded file as a page.

use std::path::Path;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use http_body_util::BodyExt as _;
use taplink_sync_proto::ids::MediaHash;
use tokio::io::AsyncWriteExt as _;

use crate::blobs::{BlobError, BlobStore};

/// The media types Taplink stores and plays.
pub const ALLOWED: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/svg+xml",
    "video/webm",
    "video/mp4",
];

/// Bytes of a file's start that [`sniff`] needs to see.
pub const SNIFF_LEN: usize = 4096;

/// Why an upload's content was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MediaTypeError {
    /// The declared type is not one Taplink plays.
    #[error("Content-Type {0:?} is not a media type Taplink plays; allowed: {list}", list = ALLOWED.join(", "))]
    NotAllowed(String),
    /// The bytes are not any allowed type.
    #[error("the file's content is not an image or video Taplink plays (allowed: {list})", list = ALLOWED.join(", "))]
    Unrecognised,
    /// The bytes are another type than the one declared.
    #[error("the file was declared as {declared} but its content is {found}")]
    Mismatch {
        /// What the uploader said.
        declared: String,
        /// What the bytes are.
        found: &'static str,
    },
    /// An SVG with scripts, event handlers or embedded HTML.
    #[error("SVG images with scripts, event handlers or embedded HTML are refused")]
    ActiveSvg,
}

/// The declared type, normalised (`image/PNG; charset=x` → `image/png`), if allowed.
pub fn declared(content_type: &str) -> Result<&'static str, MediaTypeError> {
    let base = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    ALLOWED
        .iter()
        .copied()
        .find(|t| *t == base)
        .ok_or_else(|| MediaTypeError::NotAllowed(content_type.chars().take(100).collect()))
}

/// The allowed media type of a file that starts with `head` (at least [`SNIFF_LEN`] bytes,
/// or the whole file if shorter).
pub fn sniff(head: &[u8]) -> Result<&'static str, MediaTypeError> {
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok("image/png");
    }
    if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok("image/jpeg");
    }
    if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        return Ok("image/gif");
    }
    if head.len() >= 12 && &head[0..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        return Ok("image/webp");
    }
    if head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return Ok("video/webm");
    }
    if head.len() >= 12 && &head[4..8] == b"ftyp" {
        return Ok("video/mp4");
    }
    sniff_svg(head)
}

/// An SVG document: text whose first element is `<svg`, with no active content.
fn sniff_svg(head: &[u8]) -> Result<&'static str, MediaTypeError> {
    let text = std::str::from_utf8(head)
        .or_else(|e| std::str::from_utf8(&head[..e.valid_up_to()]))
        .map_err(|_| MediaTypeError::Unrecognised)?;
    let lower = text.trim_start_matches('\u{feff}').to_ascii_lowercase();
    let mut rest = lower.trim_start();
    // Skip an XML declaration, comments and a doctype before the root element.
    loop {
        if let Some(r) = rest.strip_prefix("<?xml") {
            rest = r.split_once("?>").map_or("", |(_, r)| r).trim_start();
        } else if let Some(r) = rest.strip_prefix("<!--") {
            rest = r.split_once("-->").map_or("", |(_, r)| r).trim_start();
        } else if let Some(r) = rest.strip_prefix("<!doctype") {
            rest = r.split_once('>').map_or("", |(_, r)| r).trim_start();
        } else {
            break;
        }
    }
    if !rest.starts_with("<svg") {
        return Err(MediaTypeError::Unrecognised);
    }
    Ok("image/svg+xml")
}

/// Whether an SVG's whole text holds active content (checked on the full file).
pub fn svg_is_active(svg: &[u8]) -> bool {
    let lower = String::from_utf8_lossy(svg).to_ascii_lowercase();
    let handler = lower
        .match_indices(" on")
        .chain(lower.match_indices("\non"))
        .chain(lower.match_indices("\ton"))
        .any(|(i, m)| {
            let after = &lower[i + m.len()..];
            let name_len = after
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .count();
            name_len > 0 && after[name_len..].trim_start().starts_with('=')
        });
    handler
        || lower.contains("<script")
        || lower.contains("<foreignobject")
        || lower.contains("javascript:")
        || lower.contains("<iframe")
        || lower.contains("<embed")
        || lower.contains("<object")
}

/// Check an upload: `declared_type` must be allowed and match the content, whose first
/// bytes are `head`.
pub fn check(declared_type: &str, head: &[u8]) -> Result<&'static str, MediaTypeError> {
    let declared = declared(declared_type)?;
    let found = sniff(head)?;
    if found != declared {
        return Err(MediaTypeError::Mismatch {
            declared: declared.to_owned(),
            found,
        });
    }
    Ok(found)
}

/// Largest SVG accepted (it is scanned whole for active content).
pub const MAX_SVG: u64 = 16 * 1024 * 1024;

/// The bounds of one upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadLimits {
    /// Largest file accepted, in bytes.
    pub max_bytes: u64,
    /// Bytes the store the file goes to may still take ([`u64::MAX`] for no quota); when
    /// nothing is left the upload is refused before its first byte.
    pub quota_left: u64,
}

/// Why an upload was refused. The callers turn each into their API's status and sentence.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    /// No `Content-Type` header (or one that is not text).
    #[error("Content-Type: send the file's media type, one of {list}", list = ALLOWED.join(", "))]
    NoType,
    /// The `content_type` query parameter names another type than the header.
    #[error("content_type: {given:?} differs from the Content-Type header {header:?}")]
    TypeDiffers {
        /// The query parameter.
        given: String,
        /// The header's type.
        header: &'static str,
    },
    /// The file is larger than [`UploadLimits::max_bytes`].
    #[error("upload exceeds the {max}-byte limit")]
    TooLarge {
        /// The limit.
        max: u64,
    },
    /// An SVG larger than [`MAX_SVG`] (it would be scanned whole).
    #[error("SVG images may be at most {max} bytes")]
    SvgTooLarge {
        /// [`MAX_SVG`].
        max: u64,
    },
    /// The file would pass [`UploadLimits::quota_left`].
    #[error(
        "the upload needs more than the {left} bytes of media storage left ({received} bytes received)"
    )]
    OverQuota {
        /// Bytes received when the quota was found short (0: nothing was left at all).
        received: u64,
        /// What was left.
        left: u64,
    },
    /// The declared type is not allowed, or the bytes are not what was declared, or an
    /// SVG holds active content ([`MediaTypeError::ActiveSvg`]).
    #[error(transparent)]
    Type(#[from] MediaTypeError),
    /// The request body failed before its end (the client went away).
    #[error("the upload was cut short: {0}")]
    Interrupted(axum::Error),
    /// Staging the file failed (the staging directory vanished, the disk is full, ...).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// The media type of an upload: its `Content-Type` header, normalised and allowed; the
/// optional `content_type` query parameter must name the same type.
pub fn upload_type(header: Option<&str>, query: Option<&str>) -> Result<&'static str, UploadError> {
    let declared = declared(header.ok_or(UploadError::NoType)?)?;
    if let Some(given) = query
        && self::declared(given).ok() != Some(declared)
    {
        return Err(UploadError::TypeDiffers {
            given: given.chars().take(100).collect(),
            header: declared,
        });
    }
    Ok(declared)
}

/// An upload received whole into a staging file and checked: its bytes are the declared
/// type. Dropping it deletes the file; [`Staged::store`] moves it into the media store.
#[derive(Debug)]
pub struct Staged {
    file: tempfile::NamedTempFile,
    content_type: &'static str,
    size: u64,
}

impl Staged {
    /// The checked media type.
    pub fn content_type(&self) -> &'static str {
        self.content_type
    }

    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Store the file in `blobs` by its hash (blocking: call it off the async runtime);
    /// the staging file is gone afterwards whatever happens.
    pub fn store(self, blobs: &BlobStore) -> Result<(MediaHash, u64), BlobError> {
        let reader = self
            .file
            .reopen()
            .map_err(|source| BlobError::Input { source })?;
        blobs.put_reader(std::io::BufReader::new(reader), self.size, None)
    }
}

/// Receive an upload: stream `body` into a staging file in `staging_dir` (never whole in
/// memory), refusing it as soon as it passes `limits`, then check that its bytes are
/// `declared_type` (one of [`ALLOWED`], as [`upload_type`] gives it) and, for an SVG,
/// inert. A refused upload leaves nothing behind.
pub async fn receive_upload(
    body: Body,
    declared_type: &str,
    limits: &UploadLimits,
    staging_dir: &Path,
) -> Result<Staged, UploadError> {
    let content_type = declared(declared_type)?;
    let over_quota = |received| UploadError::OverQuota {
        received,
        left: limits.quota_left,
    };
    if limits.quota_left == 0 {
        return Err(over_quota(0));
    }
    let io = |context| move |source| UploadError::Io { context, source };
    let staging = tempfile::NamedTempFile::new_in(staging_dir)
        .map_err(io("creating the upload's staging file"))?;
    let mut file = tokio::fs::File::from_std(
        staging
            .reopen()
            .map_err(io("reopening the upload's staging file"))?,
    );
    let mut body = body;
    let mut head = Vec::with_capacity(SNIFF_LEN);
    let mut size = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            if is_length_limit(&e) {
                UploadError::TooLarge {
                    max: limits.max_bytes,
                }
            } else {
                UploadError::Interrupted(e)
            }
        })?;
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        size += chunk.len() as u64;
        if size > limits.max_bytes {
            return Err(UploadError::TooLarge {
                max: limits.max_bytes,
            });
        }
        if size > limits.quota_left {
            return Err(over_quota(size));
        }
        if head.len() < SNIFF_LEN {
            let take = (SNIFF_LEN - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        file.write_all(&chunk)
            .await
            .map_err(io("writing the upload's staging file"))?;
    }
    file.flush()
        .await
        .map_err(io("flushing the upload's staging file"))?;
    check(content_type, &head)?;
    if content_type == "image/svg+xml" {
        if size > MAX_SVG {
            return Err(UploadError::SvgTooLarge { max: MAX_SVG });
        }
        let whole = tokio::fs::read(staging.path())
            .await
            .map_err(io("reading the SVG upload"))?;
        if svg_is_active(&whole) {
            return Err(MediaTypeError::ActiveSvg.into());
        }
    }
    Ok(Staged {
        file: staging,
        content_type,
        size,
    })
}

/// Whether a body error is the router's body limit (`DefaultBodyLimit`) being passed.
fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Delete what earlier runs left in an upload staging directory. An upload is staged there
/// only while its request is arriving; a file still there at start-up belongs to a request
/// that died with the process (a crash or `kill -9` mid-upload), was never acknowledged, and
/// nothing else would ever delete it. Failures only cost disk space, so they are logged.
/// Call it once at start, after the media store's lock is taken (no other process of this
/// data directory is receiving uploads).
pub fn clear_stale_uploads(dir: &Path) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot list the upload staging directory");
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "deleted an upload cut short by a previous run")
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete a stale upload")
            }
        }
    }
}

/// `Content-Security-Policy` of every media response: the file may show itself and
/// nothing else; were it opened as a document it runs no script, loads nothing and is a
/// unique origin.
pub const MEDIA_CSP: &str = "sandbox; default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'";

/// The content type a stored file is served with: its recorded type if allowed, else
/// `application/octet-stream` (a type recorded before uploads were checked, say).
pub fn served_type(recorded: &str) -> &'static str {
    declared(recorded).unwrap_or("application/octet-stream")
}

/// Add the safety headers of a media response of `content_type`: `nosniff`, the sandbox
/// CSP, and `Content-Disposition: attachment` for anything a browser would render as a
/// document (SVG, unknown types).
pub fn add_safety_headers(headers: &mut HeaderMap, content_type: &str) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(MEDIA_CSP),
    );
    let document_like = content_type == "image/svg+xml" || !ALLOWED.contains(&content_type);
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static(if document_like {
            "attachment"
        } else {
            "inline"
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_decides_the_type() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Ok("image/png"));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Ok("image/jpeg"));
        assert_eq!(sniff(b"GIF89a.."), Ok("image/gif"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Ok("image/webp"));
        assert_eq!(sniff(&[0x1A, 0x45, 0xDF, 0xA3, 0x01]), Ok("video/webm"));
        assert_eq!(sniff(b"\0\0\0\x20ftypisom"), Ok("video/mp4"));
        assert_eq!(
            sniff(
                b"<?xml version=\"1.0\"?>\n<!-- x --><svg xmlns=\"http://www.w3.org/2000/svg\"/>"
            ),
            Ok("image/svg+xml")
        );
        assert_eq!(
            sniff(b"<html><script>alert(1)</script>"),
            Err(MediaTypeError::Unrecognised)
        );
        assert_eq!(sniff(b""), Err(MediaTypeError::Unrecognised));
    }

    #[test]
    fn a_declared_type_must_be_allowed_and_match() {
        assert_eq!(
            check("image/PNG; x=y", b"\x89PNG\r\n\x1a\n"),
            Ok("image/png")
        );
        assert!(matches!(
            check("text/html", b"<html>"),
            Err(MediaTypeError::NotAllowed(_))
        ));
        assert!(matches!(
            check("image/png", &[0xFF, 0xD8, 0xFF]),
            Err(MediaTypeError::Mismatch {
                found: "image/jpeg",
                ..
            })
        ));
    }

    #[test]
    fn active_svg_is_found() {
        assert!(svg_is_active(b"<svg><script>x</script></svg>"));
        assert!(svg_is_active(b"<svg onload = \"x\"></svg>"));
        assert!(svg_is_active(b"<svg><a href=\"javascript:x\"/></svg>"));
        assert!(svg_is_active(b"<svg><foreignObject/></svg>"));
        assert!(!svg_is_active(
            b"<svg><text font=\"one\">only text</text></svg>"
        ));
    }

    fn limits(max_bytes: u64, quota_left: u64) -> UploadLimits {
        UploadLimits {
            max_bytes,
            quota_left,
        }
    }

    fn png(len: usize) -> Vec<u8> {
        let mut bytes = vec![7u8; len];
        bytes[..8].copy_from_slice(b"\x89PNG\r\n\x1a\n");
        bytes
    }

    #[tokio::test]
    async fn an_upload_is_staged_checked_and_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (staging, media) = (dir.path().join("uploads"), dir.path().join("media"));
        std::fs::create_dir_all(&staging).unwrap();
        let blobs = BlobStore::open(&media).unwrap();
        let bytes = png(10_000);
        let staged = receive_upload(
            Body::from(bytes.clone()),
            "image/png",
            &limits(10_000, 10_000),
            &staging,
        )
        .await
        .unwrap();
        assert_eq!(
            (staged.content_type(), staged.size()),
            ("image/png", 10_000)
        );
        let (hash, size) = staged.store(&blobs).unwrap();
        assert_eq!((hash, size), (MediaHash::of(&bytes), 10_000));
        assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn a_refused_upload_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path();
        let refuse = move |bytes: Vec<u8>, ct: &'static str, l: UploadLimits| async move {
            receive_upload(Body::from(bytes), ct, &l, staging)
                .await
                .unwrap_err()
        };
        assert!(matches!(
            refuse(png(101), "image/png", limits(100, u64::MAX)).await,
            UploadError::TooLarge { max: 100 }
        ));
        assert!(matches!(
            refuse(png(101), "image/png", limits(1000, 100)).await,
            UploadError::OverQuota { left: 100, .. }
        ));
        assert!(matches!(
            refuse(png(10), "image/png", limits(1000, 0)).await,
            UploadError::OverQuota { received: 0, .. }
        ));
        assert!(matches!(
            refuse(b"<html></html>".to_vec(), "image/png", limits(1000, 1000)).await,
            UploadError::Type(MediaTypeError::Unrecognised)
        ));
        assert!(matches!(
            refuse(
                b"<svg onload=\"x()\"/>".to_vec(),
                "image/svg+xml",
                limits(1000, 1000)
            )
            .await,
            UploadError::Type(MediaTypeError::ActiveSvg)
        ));
        assert_eq!(std::fs::read_dir(staging).unwrap().count(), 0);
    }

    #[test]
    fn the_upload_type_is_the_header_and_the_query_must_agree() {
        assert_eq!(upload_type(Some("video/webm"), None).unwrap(), "video/webm");
        assert_eq!(
            upload_type(Some("image/png"), Some("IMAGE/PNG")).unwrap(),
            "image/png"
        );
        assert!(matches!(upload_type(None, None), Err(UploadError::NoType)));
        assert!(matches!(
            upload_type(Some("image/png"), Some("image/gif")),
            Err(UploadError::TypeDiffers { .. })
        ));
        assert!(matches!(
            upload_type(Some("text/html"), None),
            Err(UploadError::Type(MediaTypeError::NotAllowed(_)))
        ));
    }

    #[test]
    fn media_headers() {
        let mut h = HeaderMap::new();
        add_safety_headers(&mut h, "image/svg+xml");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::CONTENT_DISPOSITION], "attachment");
        assert!(
            h[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .starts_with("sandbox")
        );
        add_safety_headers(&mut h, "video/webm");
        assert_eq!(h[header::CONTENT_DISPOSITION], "inline");
        assert_eq!(served_type("text/html"), "application/octet-stream");
    }
}
