//! Which media a venue may upload, decided by the bytes and not by what the uploader
//! says, and the headers every media response carries so that no browser ever runs an
//! uploaded file as a page.

use axum::http::{HeaderMap, HeaderValue, header};

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
