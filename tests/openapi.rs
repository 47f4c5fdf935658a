//! `/api/openapi.json` (src/http/openapi.json) against the code: served
//! as OpenAPI 3.1, every JSON route registered in src/http is in it (and
//! nothing else), every operation it lists answers on a live bridge with a
//! documented status and content type, and its error codes are the ones
//! the source emits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::Method;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use support::app::{API_KEY, Backend, TestApp};

/// Routes under `/bridge` that answer pages, scripts, styles or redirects.
const NOT_JSON: &[&str] = &[
    "/bridge/start",
    "/bridge/issue",
    "/bridge/accept",
    "/bridge/frame",
    "/bridge/session-bridge.js",
    "/bridge/session-bridge.mjs",
    "/bridge/assets/bridge.css",
];
/// Outside `/api` and `/bridge`, the JSON routes.
const JSON_ELSEWHERE: &[&str] = &["/healthz", "/readyz"];
/// Files whose `web::resource(…).route(web::<method>()…)` calls register routes.
const ROUTE_FILES: &[&str] = &["src/http/mod.rs", "src/http/session_api.rs"];
/// Files with a `fn code(&self)` whose codes reach HTTP answers.
const CODE_FNS: &[&str] = &[
    "src/flows/mod.rs",
    "src/sessions.rs",
    "src/store/mod.rs",
    "src/token/mod.rs",
];
/// Calls whose first string argument (after at most a status) is an error code.
const CODE_CALLS: &[&str] = &[
    "HttpError::new(",
    "Self::new(",
    "bad_request(",
    "problem(",
    "=> (",
];
const METHODS: &[&str] = &["get", "post", "put", "patch", "delete"];

fn source(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

fn document() -> Value {
    serde_json::from_str(session_bridge::http::api::OPENAPI).expect("openapi.json is JSON")
}

/// `(path, method)` of every route the source registers.
fn registered_routes() -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for file in ROUTE_FILES {
        let text = source(file);
        for chunk in text.split("web::resource(\"").skip(1) {
            let path = &chunk[..chunk.find('"').unwrap()];
            // The methods of this resource: up to the next resource.
            for method in METHODS {
                if chunk.contains(&format!("web::{method}()")) {
                    routes.insert((path.to_owned(), (*method).to_owned()));
                }
            }
        }
    }
    routes
}

fn is_json_route(path: &str) -> bool {
    let under = |prefix: &str| path.starts_with(prefix);
    ((under("/api/") || under("/bridge/")) && !NOT_JSON.contains(&path))
        || JSON_ELSEWHERE.contains(&path)
}

/// `(path, method)` of every operation in the document.
fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if METHODS.contains(&method.as_str()) {
                operations.insert((path.clone(), method.clone()));
            }
        }
    }
    operations
}

/// `true` when `text` is shaped like an error code: `snake_case` letters.
fn is_code(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// The error codes the source emits: the first string argument of the
/// calls that make error answers in src/http, and the arms of the
/// `code()` functions of the errors that reach them.
fn emitted_codes() -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for call in CODE_CALLS {
            for (at, _) in text.match_indices(call) {
                let rest = &text[at + call.len()..];
                let Some(quote) = rest.find('"') else {
                    continue;
                };
                // Only a status may come before the code: `StatusCode::X,`.
                let before = &rest[..quote];
                let plain = before
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_:, \n".contains(c));
                if !plain || before.matches(',').count() > 1 {
                    continue;
                }
                let literal = &rest[quote + 1..];
                let literal = &literal[..literal.find('"').unwrap()];
                if is_code(literal) {
                    codes.insert(literal.to_owned());
                }
            }
        }
    }
    for file in CODE_FNS {
        let text = source(file);
        let body = text.split("fn code(").nth(1).expect("a code() function");
        let body = &body[..body.find("\n    }\n").unwrap()];
        for arm in body.split("=> \"").skip(1) {
            codes.insert(arm[..arm.find('"').unwrap()].to_owned());
        }
    }
    codes
}

/// The codes of the `enum` or `const` of `code` in a problem schema.
fn schema_codes(schema: &Value) -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        let code = &part["properties"]["code"];
        codes.extend(code["const"].as_str().map(str::to_owned));
        for value in code["enum"].as_array().into_iter().flatten() {
            codes.insert(value.as_str().unwrap().to_owned());
        }
    }
    codes
}

/// Every `$ref` in `value` names something in `doc`.
fn check_refs(doc: &Value, value: &Value) {
    match value {
        Value::Object(map) => {
            if let Some(target) = map.get("$ref").and_then(Value::as_str) {
                let pointer = target.strip_prefix('#').expect("local $ref");
                assert!(doc.pointer(pointer).is_some(), "dangling $ref {target}");
            }
            map.values().for_each(|v| check_refs(doc, v));
        }
        Value::Array(items) => items.iter().for_each(|v| check_refs(doc, v)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_is_served_as_openapi_3_1() {
    let app = TestApp::spawn(Backend::Memory).await;
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/api/openapi.json", app.port))
        .header("Host", format!("account.localhost:{}", app.port))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "served without credentials");
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let served: Value = response.json().await.unwrap();
    assert_eq!(served, document());
    assert!(served["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(served["info"]["version"], env!("CARGO_PKG_VERSION"));
    check_refs(&served, &served);
    app.stop().await;
}

#[test]
fn every_json_route_is_documented_and_nothing_else() {
    let json_routes: BTreeSet<_> = registered_routes()
        .into_iter()
        .filter(|(path, _)| is_json_route(path))
        .collect();
    assert!(json_routes.contains(&("/api/v1/sessions/{id}".to_owned(), "patch".to_owned())));
    let documented = documented_operations(&document());
    let missing: Vec<_> = json_routes.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes missing from openapi.json: {missing:?}"
    );
    let extra: Vec<_> = documented.difference(&json_routes).collect();
    assert!(
        extra.is_empty(),
        "documented but not JSON routes: {extra:?}"
    );
}

#[test]
fn the_documented_error_codes_are_the_emitted_ones() {
    let doc = document();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let all: BTreeSet<String> = schemas["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    let emitted = emitted_codes();
    // A sample the scan must find, so a broken scan cannot pass.
    for code in [
        "unauthorized",
        "version_mismatch",
        "token_replayed",
        "uri_too_long",
    ] {
        assert!(
            emitted.contains(code),
            "the scan misses {code}: {emitted:?}"
        );
    }
    let undocumented: Vec<_> = emitted.difference(&all).collect();
    assert!(
        undocumented.is_empty(),
        "codes missing from ErrorCode: {undocumented:?}"
    );
    let dead: Vec<_> = all.difference(&emitted).collect();
    assert!(
        dead.is_empty(),
        "ErrorCode lists codes nothing emits: {dead:?}"
    );
    // Each status's codes are a subset of them.
    for (name, schema) in schemas.iter().filter(|(n, _)| n.starts_with("Problem")) {
        let codes = schema_codes(schema);
        if name != "Problem" {
            assert!(!codes.is_empty(), "{name} names no code");
        }
        let unknown: Vec<_> = codes.difference(&all).collect();
        assert!(unknown.is_empty(), "{name}: {unknown:?} not in ErrorCode");
    }
}

/// A documented response's content types for `status`, following `$ref`.
fn documented_types(doc: &Value, operation: &Value, status: u16) -> Option<Vec<String>> {
    let mut response = &operation["responses"][status.to_string()];
    if let Some(target) = response["$ref"].as_str() {
        response = doc.pointer(target.strip_prefix('#').unwrap()).unwrap();
    }
    let response = response.as_object()?;
    Some(
        response
            .get("content")
            .and_then(Value::as_object)
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default(),
    )
}

#[tokio::test]
async fn every_documented_operation_answers_as_documented() {
    let app = TestApp::spawn(Backend::Memory).await;
    let doc = document();
    let client = reqwest::Client::new();
    for (path, method) in documented_operations(&doc) {
        let operation = &doc["paths"][&path][&method];
        let url = path.replace("{id}", &"A".repeat(43));
        let mut request = client
            .request(
                Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                format!("http://127.0.0.1:{}{url}", app.port),
            )
            .header("Host", format!("account.localhost:{}", app.port))
            .header("Accept", "application/json")
            .bearer_auth(API_KEY);
        if let Some(media) = operation["requestBody"]["content"]
            .as_object()
            .and_then(|c| c.keys().next())
        {
            request = request.header("Content-Type", media).body("{}");
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let what = format!("{method} {path}: {status}");
        let types = documented_types(&doc, operation, status)
            .unwrap_or_else(|| panic!("{what} is not a documented status"));
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
        match content_type {
            Some(kind) => assert!(types.contains(&kind), "{what}: {kind} not in {types:?}"),
            None => assert!(types.is_empty(), "{what}: no content type"),
        }
    }
    app.stop().await;
}
