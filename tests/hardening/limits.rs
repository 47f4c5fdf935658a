//! Sizes: the request target (`414`), the header section (`431`), and
//! bodies (`413`).

use crate::session_support::Http;
use crate::support::app::{Backend, TestApp};
use crate::support::browser::{Browser, Page};
use crate::wire::{exchange, head};
use crate::{assert_refusal, check_page, check_raw};
use reqwest::{Method, StatusCode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_request_targets_get_414() {
    let app = TestApp::spawn(Backend::Memory).await;
    let port = app.port;
    let long = "a".repeat(9 * 1024);
    for (target, json) in [
        (
            format!("/bridge/start?from=account&return_to=/{long}"),
            false,
        ),
        (format!("/bridge/accept?token={long}"), false),
        (format!("/api/v1/sessions/{long}"), true),
        (format!("/{long}"), false),
    ] {
        let request = head("GET", &target, "shop", port, &[]);
        let raw = tokio::task::spawn_blocking(move || exchange(port, request.as_bytes()))
            .await
            .unwrap()
            .expect("an answer");
        let path = target.split('?').next().unwrap();
        let what = format!("GET {}…", &target[..40]);
        assert_refusal(&what, &raw, 414, "uri_too_long", json);
        check_raw(&what, path, &raw);
        assert_eq!(raw.header("connection"), Some("close"), "{what}");
    }
    // Just under the limit is routed as usual.
    let target = format!("/bridge/accept?token={}", "a".repeat(8 * 1024 - 100));
    let request = head(
        "GET",
        &target,
        "shop",
        port,
        &["Accept: application/json".into()],
    );
    let raw = tokio::task::spawn_blocking(move || exchange(port, request.as_bytes()))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(raw.status, 414, "{}", raw.body);
    assert!(raw.status < 500, "{}", raw.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_header_sections_get_431() {
    let app = TestApp::spawn(Backend::Memory).await;
    let port = app.port;
    let cases = [
        (
            "one 40 KiB cookie",
            vec![format!("Cookie: a={}", "b".repeat(40 * 1024))],
        ),
        (
            "60 headers of 1 KiB",
            (0..60)
                .map(|i| format!("X-Pad-{i}: {}", "c".repeat(1024)))
                .collect(),
        ),
    ];
    for (name, extra) in cases {
        for (path, json) in [("/bridge/session", false), ("/api/v1/sessions", true)] {
            let request = head("GET", path, "shop", port, &extra);
            let raw = tokio::task::spawn_blocking(move || exchange(port, request.as_bytes()))
                .await
                .unwrap()
                .expect("an answer");
            let what = format!("{name} on {path}");
            assert_refusal(&what, &raw, 431, "headers_too_large", json);
            check_raw(&what, path, &raw);
        }
    }
    // 20 KiB of headers are within the default 32 KiB.
    let request = head(
        "GET",
        "/healthz",
        "shop",
        port,
        &[format!("Cookie: a={}", "b".repeat(20 * 1024))],
    );
    let raw = tokio::task::spawn_blocking(move || exchange(port, request.as_bytes()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(raw.status, 200, "{}", raw.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_limits_apply() {
    let app = TestApp::spawn_with(Backend::Memory, |config| {
        config.server.max_uri_bytes = 2048;
        config.server.max_header_bytes = 8192;
    })
    .await;
    let port = app.port;
    let target = format!("/bridge/accept?token={}", "a".repeat(3000));
    let cookie = format!("Cookie: a={}", "b".repeat(10 * 1024));
    let raw = tokio::task::spawn_blocking(move || {
        let uri = exchange(port, head("GET", &target, "shop", port, &[]).as_bytes());
        let headers = exchange(
            port,
            head("GET", "/healthz", "shop", port, &[cookie]).as_bytes(),
        );
        (uri.unwrap(), headers.unwrap())
    })
    .await
    .unwrap();
    assert_refusal("3 KB target", &raw.0, 414, "uri_too_long", false);
    assert_refusal("10 KB cookie", &raw.1, 431, "headers_too_large", false);
}

/// actix-http reads at most 128 KiB of request head (and 96 headers) and
/// answers anything bigger itself: a bare `431` and a closed connection,
/// whether the target or the headers are too long. Nothing reaches the
/// app, nothing panics, and the server serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_past_the_codec_ceiling_get_the_codecs_431() {
    let app = TestApp::spawn(Backend::Memory).await;
    let port = app.port;
    let huge_target = format!("/bridge/accept?token={}", "a".repeat(200 * 1024));
    let many: Vec<String> = (0..100).map(|i| format!("X-H{i}: v")).collect();
    let results = tokio::task::spawn_blocking(move || {
        [
            exchange(
                port,
                head("GET", &huge_target, "shop", port, &[]).as_bytes(),
            ),
            exchange(
                port,
                head("GET", "/healthz", "shop", port, &many).as_bytes(),
            ),
        ]
    })
    .await
    .unwrap();
    for (name, raw) in ["200 KiB target", "100 headers"].iter().zip(results) {
        let raw = raw.unwrap_or_else(|| panic!("{name}: no answer"));
        assert_eq!(raw.status, 431, "{name}");
        assert!(raw.body.is_empty(), "{name}");
    }
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

// -------------------------------------------------------------------- 413

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_bodies_get_413() {
    let app = TestApp::spawn(Backend::Memory).await;
    let http = Http::new(&app);
    let shop = app.origin("shop");
    let form = format!("token={}", "a".repeat(17 * 1024));
    let exchange_body = format!(
        r#"{{"token":"{}","verifier":"v","from":"account"}}"#,
        "a".repeat(17 * 1024)
    );
    let big_data = format!(
        r#"{{"site":"shop","data":{{"big":"{}"}}}}"#,
        "x".repeat(session_bridge::http::limits::API_BODY_LIMIT)
    );
    let patch = format!(
        r#"{{"big":"{}"}}"#,
        "x".repeat(session_bridge::http::limits::API_BODY_LIMIT)
    );
    let form_url = format!("{shop}/bridge/accept");
    let exchange_url = format!("{shop}/bridge/exchange");
    let cases: Vec<(&str, Page)> = vec![
        (
            "accept form",
            http.send(
                Method::POST,
                &form_url,
                &[("Content-Type", "application/x-www-form-urlencoded")],
                Some(form.into_bytes()),
            )
            .await,
        ),
        (
            "exchange JSON",
            http.send(
                Method::POST,
                &exchange_url,
                &[
                    ("Content-Type", "application/json"),
                    ("Sec-Fetch-Site", "same-origin"),
                ],
                Some(exchange_body.into_bytes()),
            )
            .await,
        ),
        (
            "create",
            http.api(
                Method::POST,
                "/api/v1/sessions",
                &[("Content-Type", "application/json")],
                Some(big_data.into_bytes()),
            )
            .await,
        ),
        (
            "patch",
            http.api(
                Method::PATCH,
                &format!("/api/v1/sessions/{}", "A".repeat(43)),
                &[
                    ("Content-Type", "application/merge-patch+json"),
                    ("If-Match", "\"1\""),
                ],
                Some(patch.into_bytes()),
            )
            .await,
        ),
    ];
    for (name, page) in &cases {
        assert_eq!(
            page.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{name}: {}",
            page.body
        );
        assert_eq!(
            page.error_code().as_deref(),
            Some("payload_too_large"),
            "{name}"
        );
        check_page(name, page);
    }
    // Under the limit, the body is read and judged on its content.
    let page = http
        .send(
            Method::POST,
            &form_url,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(format!("token={}", "a".repeat(15 * 1024)).into_bytes()),
        )
        .await;
    assert_ne!(page.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(page.status.is_client_error(), "{}", page.body);
}

/// The longest `return_to` the flows accept (2 KiB, much of it escaped)
/// still makes a whole hand-off under the default limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_hand_off_fits_the_default_limits() {
    let app = TestApp::spawn(Backend::Memory).await;
    let mut browser = Browser::new(app.port);
    app.sign_in(&mut browser, "ada", None).await;
    let return_to = format!("/{}", "a/".repeat(1023));
    assert!(return_to.len() <= 2048);
    let escaped: String = url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
    let start = format!(
        "{}/bridge/start?from=account&return_to={escaped}&mode=query",
        app.origin("shop")
    );
    let pages = browser.follow(&start).await;
    let hops: Vec<u16> = pages.iter().map(|p| p.status.as_u16()).collect();
    assert_eq!(&hops[..3], &[303, 303, 303], "{hops:?}");
    assert!(pages[2].url.path() == "/bridge/accept");
    assert_eq!(pages[2].location().unwrap().path(), return_to);
}
