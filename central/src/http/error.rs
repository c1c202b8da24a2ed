//! The admin API's errors ([`ApiError`]: one status and one sentence each, internals only
//! in the log) and the extractors that answer with them.

use std::fmt::Display;
use std::str::FromStr;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use taplink_sync_proto::doc::DocOpError;

use crate::kiosk_codes::KioskCodeError;
use crate::store::RegistryError;
use crate::venue::CreateVenueError;

use super::BODY_LIMIT;

/// Why an HTTP request failed. Each variant is one status; the body is
/// `{"error": "<the Display text>"}`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 401: no `Authorization: Bearer` header, or a token that is unknown or revoked.
    #[error(
        "missing or wrong token: send `Authorization: Bearer <token>` with an API token, or the \
         admin token `taplink-central init` wrote to <data dir>/admin-token"
    )]
    Unauthorized,
    /// 401: a route for signed-in people, asked without a live session or token.
    #[error(
        "sign in first (POST /api/v1/auth/login), or send `Authorization: Bearer <admin token>`"
    )]
    NotSignedIn,
    /// 401: a failed sign-in. One sentence for an unknown user, a wrong password and a
    /// disabled account, so that it does not tell which usernames exist.
    #[error("wrong username or password")]
    SignInFailed,
    /// 403: signed in, but not allowed: the role, the scope, or a missing CSRF token.
    #[error("{reason}")]
    Forbidden {
        /// Why, in a sentence.
        reason: String,
    },
    /// 400: the body is not JSON of the expected shape (the message names the field).
    #[error("invalid request body: {message}")]
    InvalidBody {
        /// What the JSON parser reported.
        message: String,
    },
    /// 400: a field has a value the server refuses.
    #[error("field `{field}`: {message}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// Why it was refused.
        message: String,
    },
    /// 400: a path segment is not a valid id.
    #[error("invalid path: {message}")]
    InvalidPath {
        /// What is wrong with it.
        message: String,
    },
    /// 400: a query parameter is invalid.
    #[error("invalid query parameter `{param}`: {message}")]
    InvalidQuery {
        /// The parameter (or `query` for the whole query string).
        param: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// 413: the body exceeds [`BODY_LIMIT`].
    #[error("the request body is larger than the {limit}-byte limit")]
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// 415: a JSON body was sent without `Content-Type: application/json`.
    #[error("send the body as JSON with the header `Content-Type: application/json`")]
    UnsupportedMediaType,
    /// 413: an upload larger than its limit (`max_upload_bytes`, or the SVG limit).
    #[error("{message}")]
    UploadTooLarge {
        /// Which limit, with its size.
        message: String,
    },
    /// 415: an upload whose declared media type is not one Taplink plays, or whose bytes
    /// are not that type.
    #[error("{message}")]
    MediaRefused {
        /// What was declared and what was found.
        message: String,
    },
    /// 507: storing the upload would pass a media quota.
    #[error("{message}")]
    InsufficientStorage {
        /// Which quota, how much of it is used, and what to do.
        message: String,
    },
    /// 416: the requested byte range lies outside the file.
    #[error("the requested range is outside the file's {size} bytes")]
    RangeNotSatisfiable {
        /// The file's size in bytes.
        size: u64,
    },
    /// 404: the named thing does not exist.
    #[error("{what} does not exist")]
    NotFound {
        /// What was asked for, e.g. `venue 0123...`.
        what: String,
    },
    /// 404: no route has this path.
    #[error("no route for {method} {path}; the admin API lives under /api/v1")]
    NoRoute {
        /// The request method.
        method: Method,
        /// The request path.
        path: String,
    },
    /// 405: the route exists but not with this method.
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The request method.
        method: Method,
        /// The request path.
        path: String,
    },
    /// 409: the request conflicts with the current state.
    #[error("{message}")]
    Conflict {
        /// What conflicts.
        message: String,
    },
    /// 422: an operation was refused by the document's rules; nothing was applied.
    #[error("{message}")]
    Unprocessable {
        /// Which operation and why.
        message: String,
    },
    /// 503: the registry cannot be used right now.
    #[error("central is unavailable: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
    /// 500: a bug or a storage failure. The response says only this fixed sentence: the
    /// detail (which may name files, tables or internal state) went to central's log with
    /// what was being done when the error was made ([`ApiError::internal`]).
    #[error(
        "central could not complete this request; the failure has been logged on central for its operator"
    )]
    Internal,
}

impl ApiError {
    /// Log `error` with `context` and return [`ApiError::Internal`].
    pub(crate) fn internal(context: &'static str, error: impl Display) -> ApiError {
        tracing::error!(%error, "central request failed: {context}");
        ApiError::Internal
    }

    /// The response status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized | ApiError::NotSignedIn | ApiError::SignInFailed => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::InvalidBody { .. }
            | ApiError::InvalidField { .. }
            | ApiError::InvalidPath { .. }
            | ApiError::InvalidQuery { .. } => StatusCode::BAD_REQUEST,
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UploadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType | ApiError::MediaRefused { .. } => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ApiError::InsufficientStorage { .. } => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::NotFound { .. } | ApiError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A sentence a person can act on.
    pub error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (
            status,
            Json(ErrorBody {
                error: self.to_string(),
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let ApiError::RangeNotSatisfiable { size } = &self
            && let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}"))
        {
            // RFC 9110 §15.5.17: a 416 names the current length.
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        response
    }
}

impl From<crate::store::UserError> for ApiError {
    fn from(e: crate::store::UserError) -> Self {
        use crate::store::UserError;
        match e {
            UserError::Invalid { field, reason } => ApiError::InvalidField {
                field,
                message: reason,
            },
            e @ UserError::Taken(_) => ApiError::Conflict {
                message: e.to_string(),
            },
            UserError::BadCredentials => ApiError::SignInFailed,
            UserError::Registry(e) => ApiError::from(e),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> ApiError {
        match e {
            RegistryError::Invalid { field, reason } => ApiError::InvalidField {
                field,
                message: reason,
            },
            RegistryError::UnknownVenue { venue } => ApiError::NotFound {
                what: format!("venue {venue}"),
            },
            RegistryError::UnknownHub { hub } => ApiError::NotFound {
                what: format!("hub {hub}"),
            },
            e @ RegistryError::HubExists { .. } => ApiError::Conflict {
                message: e.to_string(),
            },
            e @ (RegistryError::Sqlite { .. }
            | RegistryError::Encode { .. }
            | RegistryError::Corrupt { .. }) => ApiError::internal("registry operation failed", e),
        }
    }
}

impl From<CreateVenueError> for ApiError {
    fn from(e: CreateVenueError) -> ApiError {
        match e {
            CreateVenueError::Invalid(e @ DocOpError::UnknownTimezone(_)) => {
                ApiError::InvalidField {
                    field: "timezone",
                    message: e.to_string(),
                }
            }
            CreateVenueError::Invalid(e @ DocOpError::InvalidName { .. }) => {
                ApiError::InvalidField {
                    field: "name",
                    message: e.to_string(),
                }
            }
            CreateVenueError::Invalid(e) => ApiError::InvalidBody {
                message: e.to_string(),
            },
            CreateVenueError::Registry(e) => e.into(),
            e @ CreateVenueError::Document(_) => ApiError::internal(
                "venue created in the registry but its document was not stored",
                e,
            ),
        }
    }
}

impl From<KioskCodeError> for ApiError {
    fn from(e: KioskCodeError) -> ApiError {
        let field = |field, e: DocOpError| ApiError::InvalidField {
            field,
            message: e.to_string(),
        };
        match e {
            KioskCodeError::UnknownVenue { venue } => ApiError::NotFound {
                what: format!("venue {venue}"),
            },
            e @ KioskCodeError::InvalidTtl { .. } => ApiError::InvalidField {
                field: "expires_in_hours",
                message: e.to_string(),
            },
            KioskCodeError::Refused(e) => match e {
                DocOpError::InvalidName { what: "group", .. } => field("group", e),
                DocOpError::InvalidName { .. } => field("name", e),
                DocOpError::PlaylistNotFound(_) => field("playlist", e),
                DocOpError::InvalidGrant(_) => field("expires_in_hours", e),
                DocOpError::GrantNotFound(grant) => ApiError::NotFound {
                    what: format!("kiosk code {grant}"),
                },
                e @ DocOpError::TooManyGrants { .. } => ApiError::Conflict {
                    message: e.to_string(),
                },
                other => ApiError::internal("kiosk code refused by the venue document", other),
            },
            KioskCodeError::Registry(e) => e.into(),
            e @ (KioskCodeError::Documents(_) | KioskCodeError::Storage(_)) => {
                ApiError::internal("kiosk code: venue document failed", e)
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        let text = rejection.body_text();
        // axum prefixes serde's message (which names the field and position) with a
        // generic sentence; the rest is what a person needs.
        let detail = |prefix: &str| text.strip_prefix(prefix).unwrap_or(&text).to_owned();
        match rejection {
            JsonRejection::JsonDataError(_) => ApiError::InvalidBody {
                message: detail("Failed to deserialize the JSON body into the target type: "),
            },
            JsonRejection::JsonSyntaxError(_) => ApiError::InvalidBody {
                message: format!(
                    "not valid JSON: {}",
                    detail("Failed to parse the request body as JSON: ")
                ),
            },
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::BodyTooLarge { limit: BODY_LIMIT }
            }
            other => ApiError::InvalidBody {
                message: other.body_text(),
            },
        }
    }
}

/// A JSON body; malformed bodies become [`ApiError`]s that name the field.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(value)| ApiJson(value))
            .map_err(ApiError::from)
    }
}

/// One path parameter parsed with `FromStr` (ids); a bad one is a 400 naming the id kind.
#[derive(Debug, Clone, Copy)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: FromStr,
    T::Err: Display,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::InvalidPath {
                message: e.body_text(),
            })?;
        raw.parse()
            .map(ApiPath)
            .map_err(|e: T::Err| ApiError::InvalidPath {
                message: e.to_string(),
            })
    }
}

/// The query string as `T` (its fields `Option`s, unknown ones refused); a bad one is a 400
/// naming the parameter serde names.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        serde_urlencoded::from_str(parts.uri.query().unwrap_or(""))
            .map(ApiQuery)
            .map_err(|e| ApiError::InvalidQuery {
                param: "query",
                message: e.to_string(),
            })
    }
}

/// Parse the query parameter `param`, if given; a bad value is a 400 naming it.
pub(super) fn param<T: FromStr>(
    param: &'static str,
    value: Option<&str>,
) -> Result<Option<T>, ApiError>
where
    T::Err: Display,
{
    value
        .map(|v| {
            v.parse().map_err(|e: T::Err| ApiError::InvalidQuery {
                param,
                message: e.to_string(),
            })
        })
        .transpose()
}

/// An instant given as RFC 3339 (`2026-12-01T08:00:00Z`) or a UTC date (`2026-12-01`).
pub(super) fn instant_param(
    param: &'static str,
    value: Option<&str>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    value
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&chrono::Utc))
                .or_else(|_| {
                    chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
                        .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
                })
                .map_err(|_| ApiError::InvalidQuery {
                    param,
                    message: format!("{v:?} is neither an RFC 3339 time nor a YYYY-MM-DD date"),
                })
        })
        .transpose()
}

/// Run a blocking registry call off the async runtime.
pub(super) async fn blocking<T, E>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Send + 'static,
    ApiError: From<E>,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal("registry task failed", e))?
        .map_err(ApiError::from)
}
