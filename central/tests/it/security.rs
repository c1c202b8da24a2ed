//! Central's HTTP API against strangers (docs/security.md): every route declared,
//! documented and locked; admin-token guessing slowed and counted; writes only as JSON;
//! `Host` only central's own names.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use taplink_central::http::{app, routes};
use taplink_sync_io::web::access::{Access, check_documented};
use taplink_sync_io::web::guard::FREE_FAILURES;

use crate::support::{Initialised, call, request};

const SECURITY_MD: &str = include_str!("../../../docs/security.md");

#[tokio::test]
async fn every_central_route_is_declared_documented_and_locked() {
    let init = Initialised::new();
    let state = init.state();
    let declared = routes(&state);
    check_documented(declared.declared(), SECURITY_MD, "central").unwrap();
    let app = app(state);
    for route in declared.declared() {
        for method in route.methods {
            let path = route
                .path
                .replace("{id}", "aaaaaaaaaaaaaaaaaaaaaaaaaa")
                .replace("{code}", "aaaaaaaaaaaaaaaaaaaaaaaaaa")
                .replace("{hash}", &"0".repeat(64))
                .replace("{*file}", "index.html");
            let body = matches!(*method, "POST").then_some("{}");
            let answer = call(&app, request(method, &path, None, body)).await;
            let page = taplink_central::http::is_page(route.path);
            match route.access {
                // A page sends a stranger to the sign-in page, and nothing else.
                Access::User | Access::Act(_) if page => {
                    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{method} {path}");
                    let to = answer.headers[axum::http::header::LOCATION]
                        .to_str()
                        .unwrap();
                    assert!(to.starts_with("/login"), "{method} {path} → {to}");
                }
                Access::User | Access::Act(_) => {
                    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{method} {path}")
                }
                // The sign-in form refuses a body that is not a form.
                Access::Secret if page => {
                    assert!(
                        answer.status.is_client_error(),
                        "{method} {path}: {}",
                        answer.status
                    )
                }
                // Public: answered (the bare /api/docs by a redirect to /api/docs/).
                Access::Public => assert!(
                    answer.status == StatusCode::OK
                        || (path == "/api/docs" && answer.status == StatusCode::PERMANENT_REDIRECT),
                    "{method} {path}: {}",
                    answer.status
                ),
                // Sign-in: an empty body is refused naming the field; nothing is opened.
                Access::Secret => {
                    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{method} {path}")
                }
                other => panic!("{method} {path}: central has no {other:?} routes"),
            }
        }
    }
}

#[tokio::test]
async fn admin_token_guessing_is_slowed_and_counted() {
    let init = Initialised::new();
    let app = app(init.state());
    for i in 0..FREE_FAILURES + 3 {
        let answer = call(
            &app,
            request(
                "GET",
                "/api/v1/venues",
                Some(&format!("tla1-guess{i}")),
                None,
            ),
        )
        .await;
        let expected = if i <= FREE_FAILURES {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(answer.status, expected, "attempt {i}");
    }
    // While it must wait, even the right token is not checked.
    let waiting = call(
        &app,
        request("GET", "/api/v1/venues", Some(&init.token()), None),
    )
    .await;
    assert_eq!(waiting.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(waiting.headers.contains_key(header::RETRY_AFTER));
    let metrics = call(&app, request("GET", "/metrics", None, None))
        .await
        .text();
    assert!(
        metrics.contains(&format!(
            "taplink_central_auth_failures_total{{kind=\"admin_token\"}} {}",
            FREE_FAILURES + 1
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("taplink_central_auth_throttled_total 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn writes_must_be_json_and_the_host_centrals() {
    let init = Initialised::new();
    let app = app(init.state());
    let token = init.token();
    let body = r#"{"name":"Bar","timezone":"UTC"}"#;
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let req = Request::post("/api/v1/venues")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_LENGTH, body.len())
            .body(Body::from(body))
            .unwrap();
        let answer = call(&app, req).await;
        assert_eq!(
            answer.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type}"
        );
    }
    // A bodiless write declares nothing, and needs nothing declared.
    let revoke = Request::post("/api/v1/hubs/aaaaaaaaaaaaaaaaaaaaaaaaaa/revoke")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "text/plain")
        .header(header::CONTENT_LENGTH, 3)
        .body(Body::from("x=1"))
        .unwrap();
    assert_eq!(
        call(&app, revoke).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let listed = call(&app, request("GET", "/api/v1/venues", Some(&token), None)).await;
    assert_eq!(
        listed.json()["venues"],
        serde_json::json!([]),
        "nothing was created"
    );
    for (host, expected) in [
        ("rebound.example", StatusCode::MISDIRECTED_REQUEST),
        ("localhost:8480", StatusCode::OK),
        ("127.0.0.1:8480", StatusCode::OK),
    ] {
        let mut req = request("GET", "/api/v1/venues", Some(&token), None);
        req.headers_mut()
            .insert(header::HOST, host.parse().unwrap());
        assert_eq!(call(&app, req).await.status, expected, "{host}");
    }
}
