//! The OpenAPI 3.1 document of central's API, generated from the code: the paths and
//! methods are the declared routes (`routes()`), the access of each is its declared
//! `Access`, and the schemas are the request and response types themselves
//! (`utoipa::ToSchema`). What a route takes and answers is written once, in [`OPS`]; a
//! route missing from it, or an entry naming a route that does not exist, fails
//! `document` (and the test that builds it). Served at `GET /api/v1/openapi.json`, with
//! Swagger UI at `/api/docs` from assets compiled into the binary (no internet needed).

use std::sync::{Arc, OnceLock};

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use taplink_sync_io::web::access::{Access, Declared};
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ComponentsBuilder, Object, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathItem, PathsBuilder, Ref, Required,
};

use crate::state::AppState;

use super::ApiError;

/// What a request or response body is.
#[derive(Debug, Clone, Copy)]
pub enum Body {
    /// None.
    Empty,
    /// JSON of this component schema.
    Json(&'static str),
    /// Any JSON (a venue document, one operation or an array of them).
    AnyJson(&'static str),
    /// Raw bytes of a media file, typed by `Content-Type`.
    Media,
    /// Text of this media type (`text/csv`, OpenMetrics).
    Text(&'static str),
}

/// One operation: a route's method, what it takes and what it answers.
#[derive(Debug, Clone, Copy)]
pub struct Op {
    /// The method.
    pub method: &'static str,
    /// The route's path template.
    pub path: &'static str,
    /// One line for people.
    pub summary: &'static str,
    /// Query parameters: name and meaning.
    pub query: &'static [(&'static str, &'static str)],
    /// The request body.
    pub request: Body,
    /// The success status.
    pub status: u16,
    /// The success body.
    pub response: Body,
    /// Error statuses besides the ones every route of its access may answer.
    pub errors: &'static [u16],
}

macro_rules! op {
    ($m:literal $p:literal, $s:literal, q $q:expr, in $req:expr, out $st:literal $res:expr, err $e:expr) => {
        Op {
            method: $m,
            path: $p,
            summary: $s,
            query: $q,
            request: $req,
            status: $st,
            response: $res,
            errors: $e,
        }
    };
}

use Body::{AnyJson, Empty, Json, Media, Text};

/// Every operation of the API. Keep in the order of `routes()`.
pub const OPS: &[Op] = &[
    op!("GET" "/healthz", "Whether central and its registry answer", q &[], in Empty, out 200 Json("Health"), err &[503]),
    op!("GET" "/metrics", "Prometheus metrics", q &[], in Empty, out 200 Text("application/openmetrics-text"), err &[]),
    op!("GET" "/api/v1/venues", "A page of the venues in reach, each with its hub's state", q &[("tag", "only venues with this tag"), ("q", "only venues whose name contains this"), ("hub_state", "online, offline, never_connected or no_hub"), ("cursor", "the previous page's next_cursor"), ("limit", "rows per page, 1 to 1000 (default 100)")], in Empty, out 200 Json("VenueList"), err &[]),
    op!("POST" "/api/v1/venues", "Create a venue (and its document)", q &[], in Json("CreateVenueRequest"), out 201 Json("VenueJson"), err &[]),
    op!("GET" "/api/v1/venues/{id}", "One venue", q &[], in Empty, out 200 Json("VenueJson"), err &[]),
    op!("PATCH" "/api/v1/venues/{id}", "Rename, move to another time zone, retag", q &[], in Json("UpdateVenueRequest"), out 200 Json("VenueJson"), err &[422]),
    op!("GET" "/api/v1/venues/{id}/document", "The venue document (the shape of the hub's GET /api/v1/venue)", q &[], in Empty, out 200 AnyJson("the venue document"), err &[]),
    op!("POST" "/api/v1/venues/{id}/ops", "Apply one VenueCommand or an array of them, all or nothing", q &[], in AnyJson("one VenueCommand ({\"op\": …}) or an array of at most 1000"), out 200 AnyJson("{status, operations}"), err &[422]),
    op!("PATCH" "/api/v1/venues/{id}/kiosks/{kiosk}", "Rename, regroup or turn a kiosk", q &[], in Json("KioskPatch"), out 200 AnyJson("{kiosk}"), err &[422]),
    op!("DELETE" "/api/v1/venues/{id}/kiosks/{kiosk}", "Remove a kiosk", q &[], in Empty, out 204 Empty, err &[422]),
    op!("POST" "/api/v1/venues/{id}/playlists", "Create a playlist", q &[], in Json("PlaylistBody"), out 201 AnyJson("{id}"), err &[422]),
    op!("PATCH" "/api/v1/venues/{id}/playlists/{playlist}", "Rename a playlist", q &[], in Json("PlaylistBody"), out 200 AnyJson("{id}"), err &[422]),
    op!("DELETE" "/api/v1/venues/{id}/playlists/{playlist}", "Remove a playlist", q &[], in Empty, out 204 Empty, err &[422]),
    op!("POST" "/api/v1/venues/{id}/playlists/{playlist}/items", "Add an item to a playlist", q &[], in Json("NewItem"), out 201 AnyJson("{item}"), err &[422]),
    op!("PATCH" "/api/v1/venues/{id}/playlists/{playlist}/items/{item}", "Change an item's duration, schedule window or place", q &[], in Json("ItemPatch"), out 200 AnyJson("{item}"), err &[422]),
    op!("DELETE" "/api/v1/venues/{id}/playlists/{playlist}/items/{item}", "Remove an item", q &[], in Empty, out 204 Empty, err &[422]),
    op!("PUT" "/api/v1/venues/{id}/assignments", "Assign playlists to kiosks, groups and the venue default", q &[], in Json("Assignments"), out 200 AnyJson("{status, assignments}"), err &[422]),
    op!("POST" "/api/v1/venues/{id}/enrollment-codes", "A single-use code that enrolls one hub in the venue", q &[], in Json("CreateEnrollmentCodeRequest"), out 201 Json("EnrollmentCodeJson"), err &[]),
    op!("GET" "/api/v1/venues/{id}/kiosk-codes", "The venue's kiosk codes (never the codes)", q &[], in Empty, out 200 Json("KioskCodeList"), err &[]),
    op!("POST" "/api/v1/venues/{id}/kiosk-codes", "A kiosk code: a pairing approved in advance", q &[], in Json("CreateKioskCodeRequest"), out 201 Json("KioskCodeJson"), err &[]),
    op!("DELETE" "/api/v1/venues/{id}/kiosk-codes/{code}", "Revoke a kiosk code", q &[], in Empty, out 204 Empty, err &[]),
    op!("POST" "/api/v1/auth/login", "Sign in: a session cookie and the CSRF token for writes", q &[], in Json("LoginRequest"), out 200 Json("LoginResponse"), err &[]),
    op!("POST" "/api/v1/auth/logout", "End the session", q &[], in Empty, out 204 Empty, err &[]),
    op!("GET" "/api/v1/auth/me", "Who is calling", q &[], in Empty, out 200 Json("MeResponse"), err &[]),
    op!("GET" "/api/v1/users", "Every user", q &[], in Empty, out 200 Json("UserList"), err &[]),
    op!("POST" "/api/v1/users", "Create a user", q &[], in Json("CreateUserRequest"), out 201 Json("UserJson"), err &[409]),
    op!("PATCH" "/api/v1/users/{id}", "Change a user's role, scope, name or password, or disable them", q &[], in Json("UpdateUserRequest"), out 200 Json("UserJson"), err &[409]),
    op!("DELETE" "/api/v1/users/{id}", "Delete a user (their credentials and personal data)", q &[], in Empty, out 204 Empty, err &[409]),
    op!("GET" "/api/v1/tokens", "Your API tokens", q &[], in Empty, out 200 Json("TokenList"), err &[]),
    op!("POST" "/api/v1/tokens", "Make an API token (shown once)", q &[], in Json("CreateTokenRequest"), out 201 Json("CreatedToken"), err &[]),
    op!("DELETE" "/api/v1/tokens/{id}", "Revoke an API token", q &[], in Empty, out 204 Empty, err &[]),
    op!("GET" "/api/v1/kiosks", "A page of kiosks of the venues in reach", q &[("venue", "only this venue's"), ("cursor", "the previous page's next_cursor"), ("limit", "rows per page, 1 to 1000 (default 100)")], in Empty, out 200 Json("KioskList"), err &[]),
    op!("GET" "/api/v1/media", "A page of a venue's media (or the org library), with where each is used", q &[("venue", "this venue's media (absent: the org library)"), ("cursor", "the previous page's next_cursor"), ("limit", "rows per page, 1 to 1000 (default 100)")], in Empty, out 200 Json("MediaList"), err &[]),
    op!("PUT" "/api/v1/media", "Upload a media file (image, WebM or MP4) to a venue or the org library", q &[("name", "the file's name"), ("content_type", "optional: must equal Content-Type"), ("venue", "the venue (absent: the org library, admins only)")], in Media, out 201 Json("MediaJson"), err &[413, 415, 507]),
    op!("GET" "/api/v1/media/{hash}", "The bytes of a media file of a venue or the org library (ETag, Range)", q &[("venue", "the venue (absent: the org library)")], in Empty, out 200 Media, err &[416]),
    op!("DELETE" "/api/v1/media/{hash}", "Remove a media file (409 while a playlist shows it, unless force=true)", q &[("venue", "the venue (absent: the org library, admins only)"), ("force", "true: also remove the items that show it")], in Empty, out 200 Json("DeletedMedia"), err &[409]),
    op!("GET" "/api/v1/audit", "The audit log, newest first (CSV with format=csv)", q &[("venue", "only this venue's"), ("actor", "only this actor's (user:<id>, token:<id>, hub_staff:<name>, …)"), ("from", "made at or after (RFC 3339 or a date)"), ("to", "made before"), ("cursor", "the previous page's next_cursor"), ("limit", "rows per page, 1 to 1000 (default 100)"), ("format", "json (default) or csv")], in Empty, out 200 Json("AuditPage"), err &[]),
    op!("GET" "/api/v1/hubs", "A page of the hubs of the venues in reach", q &[("venue", "only this venue's"), ("cursor", "the previous page's next_cursor"), ("limit", "rows per page, 1 to 1000 (default 100)")], in Empty, out 200 Json("HubList"), err &[]),
    op!("GET" "/api/v1/hubs/{id}", "One hub", q &[], in Empty, out 200 Json("HubJson"), err &[]),
    op!("POST" "/api/v1/hubs/{id}/revoke", "Revoke a hub (its certificate is refused from now on)", q &[], in Empty, out 200 Json("HubJson"), err &[]),
    op!("GET" "/api/v1/reports/proof-of-play", "Proof of play: plays per kiosk, media and venue-local day, or each play (streamed)", q &[("venue", "only this venue (absent: every venue in reach)"), ("kiosk", "only this kiosk"), ("media", "only this media hash"), ("from", "a date (the venue's local day) or an RFC 3339 time"), ("to", "a date (included) or an RFC 3339 time (excluded)"), ("format", "csv (default) or json"), ("granularity", "day (default) or raw")], in Empty, out 200 Text("text/csv"), err &[]),
    op!("GET" "/api/v1/openapi.json", "This document", q &[], in Empty, out 200 AnyJson("an OpenAPI 3.1 document"), err &[]),
    op!("GET" "/api/docs", "Swagger UI (redirects to /api/docs/)", q &[], in Empty, out 308 Empty, err &[]),
    op!("GET" "/api/docs/", "Swagger UI", q &[], in Empty, out 200 Text("text/html"), err &[]),
    op!("GET" "/api/docs/{*file}", "Swagger UI's assets", q &[], in Empty, out 200 Text("application/octet-stream"), err &[]),
];

/// The error statuses every route with this access may answer.
fn common_errors(access: Access, method: &str) -> Vec<u16> {
    let mut errors = vec![400, 404, 500];
    if matches!(access, Access::Public) {
        return errors;
    }
    errors.extend([401, 429]);
    if !matches!(access, Access::Secret) {
        errors.push(403);
    }
    if method != "GET" {
        errors.extend([413, 415]);
    }
    errors
}

/// Every status `method path` is documented to answer (for the tests).
pub fn documented_statuses(declared: &[Declared], method: &str, path: &str) -> Vec<u16> {
    let access = declared
        .iter()
        .find(|d| d.path == path && d.methods.contains(&method))
        .map_or(Access::Public, |d| d.access);
    OPS.iter()
        .filter(|o| o.method == method && o.path == path)
        .flat_map(|o| {
            let mut all = vec![o.status];
            all.extend(common_errors(access, method));
            all.extend(o.errors);
            all
        })
        .collect()
}

fn schema_ref(name: &str) -> Ref {
    Ref::from_schema_name(name)
}

fn content_of(body: Body) -> Option<(String, utoipa::openapi::Content)> {
    match body {
        Body::Empty => None,
        Body::Json(name) => Some((
            "application/json".into(),
            ContentBuilder::new().schema(Some(schema_ref(name))).build(),
        )),
        Body::AnyJson(what) => Some((
            "application/json".into(),
            ContentBuilder::new()
                .schema(Some(
                    utoipa::openapi::ObjectBuilder::new()
                        .description(Some(what))
                        .build(),
                ))
                .build(),
        )),
        Body::Media => Some((
            "application/octet-stream".into(),
            ContentBuilder::new()
                .schema(Some(
                    utoipa::openapi::ObjectBuilder::new()
                        .schema_type(Type::String)
                        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                            utoipa::openapi::KnownFormat::Binary,
                        )))
                        .description(Some(
                            "the file's bytes; Content-Type: image/png, image/jpeg, image/gif, image/webp, image/svg+xml, video/webm or video/mp4",
                        ))
                        .build(),
                ))
                .build(),
        )),
        Body::Text(media_type) => Some((
            media_type.into(),
            ContentBuilder::new()
                .schema(Some(Object::with_type(Type::String)))
                .build(),
        )),
    }
}

fn method_of(method: &str) -> Option<HttpMethod> {
    Some(match method {
        "GET" => HttpMethod::Get,
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "PATCH" => HttpMethod::Patch,
        "DELETE" => HttpMethod::Delete,
        _ => return None,
    })
}

fn reason(status: u16) -> &'static str {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("see the error sentence")
}

/// Why the document could not be built: the code and [`OPS`] disagree.
#[derive(Debug, thiserror::Error)]
#[error("the OpenAPI table and the routes disagree: {0}")]
pub struct Mismatch(pub String);

/// The document for `declared` (every route of `routes()`).
pub fn document(declared: &[Declared]) -> Result<OpenApi, Mismatch> {
    let mut problems = Vec::new();
    // The dashboard's pages are not the API.
    let declared: Vec<&Declared> = declared
        .iter()
        .filter(|d| !super::auth::is_page(d.path))
        .collect();
    for d in &declared {
        for m in d.methods {
            if !OPS.iter().any(|o| o.method == *m && o.path == d.path) {
                problems.push(format!("{m} {} is not described", d.path));
            }
        }
    }
    for o in OPS {
        if !declared
            .iter()
            .any(|d| d.path == o.path && d.methods.contains(&o.method))
        {
            problems.push(format!(
                "{} {} is described but not routed",
                o.method, o.path
            ));
        }
    }
    if !problems.is_empty() {
        return Err(Mismatch(problems.join("; ")));
    }
    let mut paths = PathsBuilder::new();
    for o in OPS {
        let access = declared
            .iter()
            .find(|d| d.path == o.path && d.methods.contains(&o.method))
            .map_or(Access::Public, |d| d.access);
        let Some(method) = method_of(o.method) else {
            continue;
        };
        let mut op = OperationBuilder::new()
            .summary(Some(o.summary))
            .operation_id(Some(format!("{} {}", o.method, o.path)))
            .description(Some(access_sentence(access)));
        for segment in o.path.split('/') {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                op = op.parameter(
                    ParameterBuilder::new()
                        .name(name.trim_start_matches('*'))
                        .parameter_in(ParameterIn::Path)
                        .required(Required::True)
                        .schema(Some(Object::with_type(Type::String))),
                );
            }
        }
        for (name, meaning) in o.query {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(*name)
                    .parameter_in(ParameterIn::Query)
                    .required(if *name == "name" {
                        Required::True
                    } else {
                        Required::False
                    })
                    .description(Some(*meaning))
                    .schema(Some(Object::with_type(Type::String))),
            );
        }
        if let Some((media_type, content)) = content_of(o.request) {
            op = op.request_body(Some(
                RequestBodyBuilder::new()
                    .content(media_type, content)
                    .required(Some(Required::True))
                    .build(),
            ));
        }
        let mut success = ResponseBuilder::new().description(reason(o.status));
        if let Some((media_type, content)) = content_of(o.response) {
            success = success.content(media_type, content);
        }
        op = op.response(o.status.to_string(), success.build());
        let mut errors = common_errors(access, o.method);
        errors.extend(o.errors);
        errors.sort_unstable();
        errors.dedup();
        for status in errors {
            op = op.response(
                status.to_string(),
                ResponseBuilder::new()
                    .description(reason(status))
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(schema_ref("ErrorBody")))
                            .build(),
                    )
                    .build(),
            );
        }
        if !matches!(access, Access::Public | Access::Secret) {
            op = op.securities(Some([
                SecurityRequirement::new("bearer", Vec::<String>::new()),
                SecurityRequirement::new("session", Vec::<String>::new()),
            ]));
        }
        paths = paths.path(o.path, PathItem::new(method, op.build()));
    }
    let components = schemas(ComponentsBuilder::new())
        .security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        )
        .security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                super::SESSION_COOKIE,
                "the session cookie of POST /api/v1/auth/login; writes also need its csrf_token in X-CSRF-Token",
            ))),
        )
        .build();
    Ok(OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Taplink central")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Central's API. Every error is JSON {\"error\": \"<sentence>\"} (ErrorBody). Callers: Authorization: Bearer <admin token or API token>, or the session cookie (with X-CSRF-Token on writes).",
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components))
        .build())
}

fn access_sentence(access: Access) -> String {
    match access {
        Access::Public => "Anyone.".to_owned(),
        Access::Secret => {
            "Anyone; the body carries a secret, checked against the guessing throttle.".to_owned()
        }
        Access::User => "Anyone signed in (or a token).".to_owned(),
        Access::Act(action) => format!(
            "Callers whose role allows `{}` on the route's venue (or on the organisation).",
            action.as_str()
        ),
        other => format!("{other:?}"),
    }
}

fn schemas(c: ComponentsBuilder) -> ComponentsBuilder {
    use super::*;
    use crate::store::{HubState, KioskRow, MediaRow, MediaUse};
    c.schema_from::<Health>()
        .schema_from::<ErrorBody>()
        .schema_from::<VenueJson>()
        .schema_from::<VenueList>()
        .schema_from::<HubState>()
        .schema_from::<CreateVenueRequest>()
        .schema_from::<UpdateVenueRequest>()
        .schema_from::<EnrollmentCodeJson>()
        .schema_from::<CreateEnrollmentCodeRequest>()
        .schema_from::<KioskCodeList>()
        .schema_from::<KioskCodeJson>()
        .schema_from::<KioskGrantJson>()
        .schema_from::<CreateKioskCodeRequest>()
        .schema_from::<LoginRequest>()
        .schema_from::<LoginResponse>()
        .schema_from::<MeResponse>()
        .schema_from::<UserJson>()
        .schema_from::<UserList>()
        .schema_from::<CreateUserRequest>()
        .schema_from::<UpdateUserRequest>()
        .schema_from::<TokenList>()
        .schema_from::<TokenJson>()
        .schema_from::<CreateTokenRequest>()
        .schema_from::<CreatedToken>()
        .schema_from::<KioskList>()
        .schema_from::<KioskRow>()
        .schema_from::<MediaList>()
        .schema_from::<MediaRow>()
        .schema_from::<MediaUse>()
        .schema_from::<MediaJson>()
        .schema_from::<DeletedMedia>()
        .schema_from::<RemovedItem>()
        .schema_from::<AuditPage>()
        .schema_from::<AuditEntryJson>()
        .schema_from::<HubList>()
        .schema_from::<HubJson>()
        .schema_from::<KioskPatch>()
        .schema_from::<PlaylistBody>()
        .schema_from::<NewItem>()
        .schema_from::<ItemPatch>()
        .schema_from::<Assignments>()
}

/// The document as served (built once).
fn served(state: &AppState) -> Result<&'static str, ApiError> {
    static DOC: OnceLock<Result<String, String>> = OnceLock::new();
    DOC.get_or_init(|| {
        let routes = super::routes(state);
        document(routes.declared())
            .map_err(|e| e.to_string())
            .and_then(|doc| doc.to_pretty_json().map_err(|e| e.to_string()))
    })
    .as_deref()
    .map_err(|e| ApiError::internal("building the OpenAPI document", e.clone()))
}

/// `GET /api/v1/openapi.json`.
pub(super) async fn openapi_json(State(state): State<AppState>) -> Result<Response, ApiError> {
    let doc = served(&state)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], doc).into_response())
}

fn swagger_config() -> Arc<utoipa_swagger_ui::Config<'static>> {
    static CONFIG: OnceLock<Arc<utoipa_swagger_ui::Config<'static>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| Arc::new(utoipa_swagger_ui::Config::from("/api/v1/openapi.json")))
        .clone()
}

fn swagger_file(file: &str) -> Result<Response, ApiError> {
    match utoipa_swagger_ui::serve(file, swagger_config()) {
        Ok(Some(found)) => {
            let mut response = found.bytes.into_owned().into_response();
            if let Ok(value) = HeaderValue::from_str(&found.content_type) {
                response.headers_mut().insert(header::CONTENT_TYPE, value);
            }
            Ok(response)
        }
        Ok(None) => Err(ApiError::NotFound {
            what: format!("/api/docs/{file}"),
        }),
        Err(e) => Err(ApiError::internal("serving Swagger UI", e.to_string())),
    }
}

/// `GET /api/docs`: to `/api/docs/`, where the page's relative asset paths resolve.
pub(super) async fn swagger_redirect() -> Response {
    axum::response::Redirect::permanent("/api/docs/").into_response()
}

/// `GET /api/docs/`: Swagger UI's page.
pub(super) async fn swagger_index() -> Result<Response, ApiError> {
    swagger_file("index.html")
}

/// `GET /api/docs/{*file}`: Swagger UI's assets.
pub(super) async fn swagger_asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    swagger_file(&file)
}
