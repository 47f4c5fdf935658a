//! JSON nesting, and clients that send too slowly.

use crate::session_support::Http;
use crate::support::app::{Backend, TestApp};
use crate::wire::{self, connect, head};
use crate::{assert_refusal, check_page, check_raw};
use reqwest::{Method, StatusCode};
use std::io::Write;
use std::time::{Duration, Instant};

/// `{"a":{"a":…}}` with `depth` objects.
fn nested_object(depth: usize) -> String {
    format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
}

async fn deep_json_is_refused_with_a_stable_code(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let http = Http::new(&app);
    let max = session_bridge::http::limits::MAX_DATA_DEPTH;
    let create = |depth: usize| {
        let http = http.clone();
        async move {
            let body = format!(r#"{{"site":"shop","data":{}}}"#, nested_object(depth));
            http.api(
                Method::POST,
                "/api/v1/sessions",
                &[("Content-Type", "application/json")],
                Some(body.into_bytes()),
            )
            .await
        }
    };
    // Past the limit, also past serde_json's own (128): the same code.
    for depth in [max + 1, 127, 500, 5000] {
        let page = create(depth).await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{depth}: {}",
            page.body
        );
        assert_eq!(
            page.error_code().as_deref(),
            Some("json_too_deep"),
            "{depth}"
        );
        check_page("deep create", &page);
    }
    let page = create(max).await;
    assert_eq!(page.status, StatusCode::CREATED, "{}", page.body);
    let view: serde_json::Value = serde_json::from_str(&page.body).unwrap();
    let id = view["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/sessions/{id}");
    let patch = |depth: usize| {
        let (http, path) = (http.clone(), path.clone());
        async move {
            http.api(
                Method::PATCH,
                &path,
                &[
                    ("Content-Type", "application/merge-patch+json"),
                    ("If-Match", "\"1\""),
                ],
                Some(nested_object(depth).into_bytes()),
            )
            .await
        }
    };
    for depth in [max + 1, 127, 128, 129, 5000] {
        let page = patch(depth).await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{depth}: {}",
            page.body
        );
        assert_eq!(
            page.error_code().as_deref(),
            Some("json_too_deep"),
            "{depth}"
        );
    }
    let page = patch(max).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    // What was accepted can be read back from the store.
    let page = http.api(Method::GET, &path, &[], None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    // A string full of brackets is not nesting.
    let page = http
        .api(
            Method::POST,
            "/api/v1/sessions",
            &[("Content-Type", "application/json")],
            Some(
                format!(r#"{{"site":"shop","data":{{"s":"{}"}}}}"#, "[{".repeat(200)).into_bytes(),
            ),
        )
        .await;
    assert_eq!(page.status, StatusCode::CREATED, "{}", page.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_json_is_refused_with_a_stable_code_memory() {
    deep_json_is_refused_with_a_stable_code(Backend::Memory).await;
}

/// On Redis a session is stored as JSON, `data` one level inside the
/// record: the depth limit is what keeps every accepted session readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_json_is_refused_with_a_stable_code_redis() {
    deep_json_is_refused_with_a_stable_code(Backend::Redis).await;
}

// ------------------------------------------------------------ slow clients

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_time_out() {
    let app = TestApp::spawn_with(Backend::Memory, |config| {
        config.server.request_timeout = session_bridge::config::Seconds::new(1);
        config.server.body_timeout = session_bridge::config::Seconds::new(1);
        config.server.keep_alive = session_bridge::config::Seconds::new(1);
    })
    .await;
    let port = app.port;
    tokio::task::spawn_blocking(move || {
        let wait = Duration::from_secs(5);
        // A head that never completes: actix answers 408 and closes.
        let mut stream = connect(port);
        stream
            .write_all(
                format!("GET /healthz HTTP/1.1\r\nHost: shop.localhost:{port}\r\n").as_bytes(),
            )
            .unwrap();
        let started = Instant::now();
        let (closed, bytes) = wire::closes_within(&mut stream, wait);
        assert!(closed, "a trickled head keeps the connection");
        assert!(started.elapsed() < Duration::from_secs(3));
        let raw = wire::parse(&bytes).expect("a 408");
        assert_eq!(raw.status, 408);
        // A connection that sends nothing at all is closed too.
        let mut stream = connect(port);
        let (closed, _) = wire::closes_within(&mut stream, wait);
        assert!(closed, "a silent connection stays open");
        // A body that stops halfway: the bridge's own 408.
        let mut stream = connect(port);
        let request = head(
            "POST",
            "/bridge/exchange",
            "shop",
            port,
            &[
                "Content-Type: application/json".into(),
                "Accept: application/json".into(),
                "Sec-Fetch-Site: same-origin".into(),
                "Content-Length: 200".into(),
            ],
        );
        stream.write_all(request.as_bytes()).unwrap();
        stream.write_all(br#"{"token":"#).unwrap();
        let started = Instant::now();
        let raw = wire::read_response(&mut stream, wait).expect("an answer");
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_refusal("trickled body", &raw, 408, "request_timeout", true);
        check_raw("trickled body", "/bridge/exchange", &raw);
        // An idle keep-alive connection is closed after `keep_alive`.
        let mut stream = connect(port);
        stream
            .write_all(
                format!("GET /healthz HTTP/1.1\r\nHost: shop.localhost:{port}\r\n\r\n").as_bytes(),
            )
            .unwrap();
        let raw = wire::read_response(&mut stream, wait).expect("an answer");
        assert_eq!(raw.status, 200);
        let started = Instant::now();
        let (closed, _) = wire::closes_within(&mut stream, wait);
        assert!(closed, "an idle connection stays open");
        assert!(started.elapsed() < Duration::from_secs(3));
    })
    .await
    .unwrap();
    let page = Http::new(&app)
        .send(
            Method::GET,
            &format!("{}/healthz", app.origin("shop")),
            &[],
            None,
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
}
