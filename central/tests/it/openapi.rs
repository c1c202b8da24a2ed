//! The OpenAPI document: every route of the router is in it with its access, every schema
//! it names exists, what list routes answer has the documented shape, and Swagger UI is
//! served from the binary.

use axum::http::StatusCode;
use taplink_central::http::{app, document, routes};

use crate::support::{Initialised, call, request};

/// The component schema `name` of `doc`.
fn schema<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    &doc["components"]["schemas"][name]
}

#[tokio::test]
async fn every_route_is_documented_and_answers_as_documented() {
    let init = Initialised::new();
    let state = init.state();
    let app = app(state.clone());
    let token = init.token();
    let answer = call(&app, request("GET", "/api/v1/openapi.json", None, None)).await;
    assert_eq!(answer.status, StatusCode::OK);
    let doc = answer.json();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );

    // Every declared route and method, and nothing else.
    let declared = routes(&state);
    let declared = declared.declared();
    document(declared).expect("the table and the routes agree");
    for route in declared
        .iter()
        .filter(|r| !taplink_central::http::is_page(r.path))
    {
        for method in route.methods {
            let op = &doc["paths"][route.path][method.to_lowercase()];
            assert!(
                op.is_object(),
                "{method} {} is not in the document",
                route.path
            );
            let secured = op.get("security").is_some();
            assert_eq!(
                secured,
                !matches!(
                    route.access,
                    taplink_sync_io::web::access::Access::Public
                        | taplink_sync_io::web::access::Access::Secret
                ),
                "{method} {}",
                route.path
            );
        }
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["securitySchemes"]["session"].is_object());

    // Every $ref names a schema that exists.
    let text = doc.to_string();
    for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = piece.split('"').next().unwrap();
        assert!(
            schema(&doc, name).is_object(),
            "{name} is referenced but not defined"
        );
    }

    // What the lists answer has the documented shape: every field the schema requires,
    // and no field it does not name.
    for path in [
        "/api/v1/venues",
        "/api/v1/hubs",
        "/api/v1/kiosks",
        "/api/v1/media",
        "/api/v1/audit",
        "/api/v1/users",
        "/api/v1/tokens",
        "/api/v1/auth/me",
        "/healthz",
    ] {
        let answer = call(&app, request("GET", path, Some(&token), None)).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.text());
        let reference =
            doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
                ["$ref"]
                .as_str()
                .unwrap_or_else(|| panic!("{path} documents no JSON schema"));
        let name = reference.rsplit('/').next().unwrap();
        let documented = schema(&doc, name);
        let body = answer.json();
        let fields = body.as_object().unwrap();
        let properties = documented["properties"].as_object().unwrap();
        for field in fields.keys() {
            assert!(
                properties.contains_key(field),
                "{path}: {field} is not in {name}"
            );
        }
        for required in documented["required"].as_array().into_iter().flatten() {
            assert!(
                fields.contains_key(required.as_str().unwrap()),
                "{path}: {required} is required by {name} but missing"
            );
        }
    }
    // Errors have the documented shape.
    let error = call(
        &app,
        request("GET", "/api/v1/venues?limit=0", Some(&token), None),
    )
    .await;
    assert_eq!(error.status, StatusCode::BAD_REQUEST);
    assert!(schema(&doc, "ErrorBody")["properties"]["error"].is_object());
    assert!(error.json()["error"].is_string());

    // Swagger UI, with no internet: the page, its script, and the pointer to the document.
    let redirect = call(&app, request("GET", "/api/docs", None, None)).await;
    assert_eq!(redirect.status, StatusCode::PERMANENT_REDIRECT);
    let page = call(&app, request("GET", "/api/docs/", None, None)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("swagger-ui"), "{}", page.text());
    let init_js = call(
        &app,
        request("GET", "/api/docs/swagger-initializer.js", None, None),
    )
    .await;
    assert_eq!(init_js.status, StatusCode::OK);
    assert!(
        init_js.text().contains("/api/v1/openapi.json"),
        "{}",
        init_js.text()
    );
    let missing = call(
        &app,
        request("GET", "/api/docs/nothing-here.js", None, None),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}
