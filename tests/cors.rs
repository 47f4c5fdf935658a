//! CORS on the browser session endpoints: only an exact origin from the
//! site's `cors_origins` is reflected, with credentials and `Vary: Origin`;
//! near misses of every kind and `null` are not; preflights are answered
//! with the allowed methods and headers; the list is the site's, chosen by
//! `Host`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod session_support;
mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use session_support::{Http, assert_problem};
use support::app::{Backend, TestApp};
use support::browser::Page;

const PARTNER: &str = "https://shop.example.com";

/// A bridge whose `shop` allows the partner origin and `account`'s origin.
async fn app() -> TestApp {
    TestApp::spawn_with(Backend::Memory, |c| {
        let account = c.sites.iter().find(|s| s.id == "account").unwrap().origins[0].clone();
        let shop = c.sites.iter_mut().find(|s| s.id == "shop").unwrap();
        shop.cors_origins = vec![PARTNER.to_owned(), account];
    })
    .await
}

fn vary_has_origin(page: &Page) -> bool {
    page.headers
        .get_all("vary")
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("origin"))
}

fn assert_allowed(page: &Page, origin: &str) {
    assert_eq!(
        page.header("access-control-allow-origin"),
        Some(origin),
        "{origin}: {:?}",
        page.headers
    );
    assert_eq!(
        page.header("access-control-allow-credentials"),
        Some("true")
    );
    assert!(vary_has_origin(page), "{:?}", page.headers);
}

fn assert_not_allowed(page: &Page, origin: &str) {
    assert!(
        page.header("access-control-allow-origin").is_none(),
        "{origin} must not be reflected: {:?}",
        page.headers
    );
    assert!(vary_has_origin(page), "{origin}: {:?}", page.headers);
}

/// Every kind of near miss of `https://shop.example.com`, and `null`.
fn near_misses(app: &TestApp) -> Vec<String> {
    vec![
        "http://shop.example.com".to_owned(),               // scheme
        "https://shop.example.com:8443".to_owned(),         // port
        "https://shop.example.com:443".to_owned(),          // default port written out
        "https://www.shop.example.com".to_owned(),          // subdomain
        "https://example.com".to_owned(),                   // parent
        "https://shop.example.com.evil.example".to_owned(), // suffix appended
        "https://evilshop.example.com".to_owned(),          // prefix added
        "https://shop.example.co".to_owned(),               // prefix of the allowed one
        "https://shop.example.comm".to_owned(),             // longer
        "https://SHOP.EXAMPLE.COM".to_owned(),              // not as a browser sends it
        "https://shop.example.com/".to_owned(),             // with a path
        "null".to_owned(),
        "*".to_owned(),
        String::new(),
        format!("{PARTNER}, https://evil.example"),
        app.origin("checkout"), // a configured site, but not in shop's list
        app.origin("shop"),     // same origin needs no CORS header
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_exact_allowlisted_origins_are_reflected() {
    let app = app().await;
    let http = Http::new(&app);
    let id = http
        .create("shop", Some("sam"), json!({"cart": ["tea"]}))
        .await;
    let id = id["id"].as_str().unwrap();
    let read = |origin: String| {
        let http = http.clone();
        let app = &app;
        async move {
            http.browser(
                Method::GET,
                app,
                "shop",
                "/bridge/session",
                Some(id),
                &[("Origin", origin.as_str())],
            )
            .await
        }
    };
    for origin in [PARTNER.to_owned(), app.origin("account")] {
        let page = read(origin.clone()).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert_allowed(&page, &origin);
        assert!(page.header("access-control-allow-origin") != Some("*"));
    }
    for origin in near_misses(&app) {
        let page = read(origin.clone()).await;
        assert_not_allowed(&page, &origin);
    }
    // Without an Origin there is nothing to reflect, and the answer still
    // varies by Origin for caches.
    let page = http
        .browser(Method::GET, &app, "shop", "/bridge/session", Some(id), &[])
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert_not_allowed(&page, "(none)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_is_the_sites_own() {
    let app = app().await;
    let http = Http::new(&app);
    // account has no cors_origins: the partner is refused there.
    for path in ["/bridge/session", "/bridge/heartbeat", "/bridge/logout"] {
        let page = preflight(&http, &app, "account", path, PARTNER, "POST", None).await;
        assert_not_allowed(&page, PARTNER);
        let page = preflight(&http, &app, "shop", path, PARTNER, "POST", None).await;
        assert_allowed(&page, PARTNER);
    }
    let page = http
        .browser(
            Method::GET,
            &app,
            "account",
            "/bridge/session",
            None,
            &[("Origin", PARTNER)],
        )
        .await;
    assert_not_allowed(&page, PARTNER);
}

async fn preflight(
    http: &Http,
    app: &TestApp,
    site: &str,
    path: &str,
    origin: &str,
    method: &str,
    headers: Option<&str>,
) -> Page {
    let mut all = vec![
        ("Origin", origin),
        ("Access-Control-Request-Method", method),
    ];
    if let Some(headers) = headers {
        all.push(("Access-Control-Request-Headers", headers));
    }
    http.send(
        Method::OPTIONS,
        &format!("{}{path}", app.origin(site)),
        &all,
        None,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflights_name_the_allowed_methods_and_headers() {
    let app = app().await;
    let http = Http::new(&app);
    for path in ["/bridge/session", "/bridge/heartbeat", "/bridge/logout"] {
        let page = preflight(
            &http,
            &app,
            "shop",
            path,
            PARTNER,
            "POST",
            Some("content-type,x-session-id"),
        )
        .await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        assert_allowed(&page, PARTNER);
        let methods = page.header("access-control-allow-methods").unwrap();
        assert!(
            methods.contains("POST") && methods.contains("GET"),
            "{methods}"
        );
        let headers = page
            .header("access-control-allow-headers")
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            headers.contains("content-type") && headers.contains("x-session-id"),
            "{headers}"
        );
        assert!(page.header("access-control-max-age").is_some());

        // Near misses and `null` get no allowance.
        for origin in near_misses(&app) {
            let page = preflight(&http, &app, "shop", path, &origin, "POST", None).await;
            assert_not_allowed(&page, &origin);
            assert!(
                !page.status.is_success() || origin.is_empty(),
                "{origin}: {}",
                page.status
            );
        }
        // Methods and headers outside the list are refused.
        for (method, headers) in [
            ("DELETE", None),
            ("PUT", None),
            ("POST", Some("authorization")),
            ("POST", Some("content-type,x-api-key")),
        ] {
            let page = preflight(&http, &app, "shop", path, PARTNER, method, headers).await;
            assert!(
                !page.status.is_success(),
                "{path} {method} {headers:?}: {}",
                page.status
            );
        }
    }
}

/// Cross-origin state changes from an allowed origin work, with the cookie
/// or `X-Session-Id`; from anywhere else they are refused and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_origins_may_change_state_and_others_may_not() {
    let app = app().await;
    let http = Http::new(&app);
    let id = http.create("shop", Some("sam"), json!({})).await;
    let id = id["id"].as_str().unwrap().to_owned();
    let cross = |origin: &str| {
        vec![
            ("Origin", origin.to_owned()),
            ("Sec-Fetch-Site", "cross-site".to_owned()),
        ]
    };
    for origin in near_misses(&app) {
        if origin == app.origin("shop") {
            continue;
        }
        let headers = cross(&origin);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        for path in ["/bridge/heartbeat", "/bridge/logout"] {
            let page = http
                .browser(Method::POST, &app, "shop", path, Some(&id), &headers)
                .await;
            assert_problem(&page, StatusCode::FORBIDDEN, "cross_origin_refused");
            assert_not_allowed(&page, &origin);
        }
    }
    assert_eq!(http.get_session(&id).await.status, StatusCode::OK);

    let headers = cross(PARTNER);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let page = http
        .browser(
            Method::POST,
            &app,
            "shop",
            "/bridge/heartbeat",
            Some(&id),
            &headers,
        )
        .await;
    assert_eq!(page.status, StatusCode::NO_CONTENT, "{}", page.body);
    assert_allowed(&page, PARTNER);
    // An error answer carries the CORS headers too, so the page can read it.
    let page = http
        .browser(
            Method::POST,
            &app,
            "shop",
            "/bridge/heartbeat",
            None,
            &headers,
        )
        .await;
    assert_problem(&page, StatusCode::UNAUTHORIZED, "no_session");
    assert_allowed(&page, PARTNER);
    // Logout with X-Session-Id from the allowed origin.
    let mut with_header = headers.clone();
    with_header.push(("X-Session-Id", &id));
    let page = http
        .browser(
            Method::POST,
            &app,
            "shop",
            "/bridge/logout",
            None,
            &with_header,
        )
        .await;
    assert_eq!(page.status, StatusCode::NO_CONTENT, "{}", page.body);
    assert_allowed(&page, PARTNER);
    assert_eq!(http.get_session(&id).await.status, StatusCode::NOT_FOUND);
}

/// CORS stays off the rest of `/bridge` and the service API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_endpoints_have_no_cors() {
    let app = app().await;
    let http = Http::new(&app);
    for path in ["/bridge/exchange", "/bridge/issue", "/api/v1/sessions"] {
        let page = preflight(&http, &app, "shop", path, PARTNER, "POST", None).await;
        assert!(
            page.header("access-control-allow-origin").is_none(),
            "{path}: {:?}",
            page.headers
        );
    }
}
