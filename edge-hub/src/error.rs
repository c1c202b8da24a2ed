//! The error type of the hub's HTTP handlers: each variant is one status code, answered as
//! `{"error": "<a sentence a person can act on>"}`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;
use taplink_sync_proto::doc::DocOpError;

/// Largest JSON request body (operations, pairing, telemetry).
pub const MAX_JSON_BODY: usize = 1024 * 1024;

/// An API error: a status and a sentence, as `{"error": "..."}`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The venue document has not arrived from central yet (first start while offline).
    #[error(
        "the venue document has not been received from central yet; try again once the hub has synced"
    )]
    NotSynced,
    /// The operation was refused by the document's rules (`422`).
    #[error("{0}")]
    Refused(#[from] DocOpError),
    /// The request was malformed; the sentence names the field (`400`).
    #[error("{0}")]
    BadRequest(String),
    /// No usable credentials: missing, unknown or revoked token, or a removed kiosk (`401`).
    #[error("{0}")]
    Unauthorized(String),
    /// No such thing (`404`).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the state of what it names (`409`).
    #[error("{0}")]
    Conflict(String),
    /// It existed and is gone for good: an expired code, a collected token (`410`).
    #[error("{0}")]
    Gone(String),
    /// The body or batch exceeded a limit (`413`).
    #[error("{0}")]
    TooLarge(String),
    /// The requested byte range lies outside the file of this size (`416`).
    #[error("the requested range is outside the file's {size} bytes")]
    RangeNotSatisfiable {
        /// The file's size in bytes.
        size: u64,
    },
    /// The body's media type is not accepted here (`415`).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The hub's media storage quota would be exceeded (`507`).
    #[error("{0}")]
    InsufficientStorage(String),
    /// Too many of something are waiting; retry later (`429`).
    #[error("{0}")]
    TooMany(String),
    /// Signed in, but the person's role does not allow this (`403`).
    #[error("{0}")]
    Forbidden(String),
    /// Something failed on the hub (storage, a task, a bug); nothing was accepted (`500`).
    /// The response says only this fixed sentence: the detail (which may name files,
    /// tables or internal state) went to the hub's log when the error was made, see
    /// [`ApiError::internal`].
    #[error(
        "the hub could not complete this request; the failure has been logged on the hub for its operator"
    )]
    Internal,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::NotSynced => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut response = (status, Json(json!({ "error": self.to_string() }))).into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::RangeNotSatisfiable { size } => {
                // RFC 9110 §15.5.17: a 416 names the current length.
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    headers.insert(header::CONTENT_RANGE, v);
                }
            }
            _ => {}
        }
        response
    }
}

impl ApiError {
    /// A `500` for `error`, which happened while doing `context` (e.g. "storing kiosk events
    /// in the outbox"): both go to the log at error level, the client gets the fixed
    /// sentence of [`ApiError::Internal`].
    pub fn internal(context: &'static str, error: impl std::fmt::Display) -> ApiError {
        tracing::error!(%error, "hub request failed: {context}");
        ApiError::Internal
    }
}

/// [`ApiError::internal`] for `map_err`: `.map_err(internal("writing the upload"))`.
pub(crate) fn internal<E: std::fmt::Display>(context: &'static str) -> impl FnOnce(E) -> ApiError {
    move |error| ApiError::internal(context, error)
}

/// The body of a request limited by `DefaultBodyLimit`, with the limit's rejection turned
/// into a JSON `413` (axum's own is plain text).
pub(crate) fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!(
                "the request body exceeds the {MAX_JSON_BODY}-byte limit"
            ))
        } else {
            ApiError::BadRequest(format!(
                "cannot read the request body: {}",
                rejection.body_text()
            ))
        }
    })
}

/// Decode a JSON body; serde's message names the field that is missing, unknown or wrong.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}
