//! The site is picked by the request's origin, scheme included: the scheme
//! of the listener, or `X-Forwarded-Proto` from a trusted proxy. A site
//! configured for `https://` never answers a plain-HTTP request, and an
//! `http://` site never answers one a trusted proxy says came over HTTPS.

use crate::session_support::Http;
use crate::support::app::{Backend, TestApp};
use reqwest::{Method, StatusCode};

/// The demo's sites on `https://{site}.localhost:PORT`, served by the plain
/// HTTP listener; with `trust_proxy`, 127.0.0.1 is a trusted proxy.
async fn https_sites(trust_proxy: bool) -> TestApp {
    TestApp::spawn_with(Backend::Memory, |config| {
        for site in &mut config.sites {
            for origin in &mut site.origins {
                *origin = origin.replacen("http://", "https://", 1);
            }
        }
        if trust_proxy {
            config.server.trusted_proxies = vec!["127.0.0.1".to_owned()];
        }
    })
    .await
}

async fn start(app: &TestApp, headers: &[(&str, &str)]) -> crate::support::browser::Page {
    // Same host and port over plain HTTP: only the scheme differs from the
    // configured origin.
    let url = format!(
        "http://shop.localhost:{}/bridge/start?from=account&return_to=/",
        app.port
    );
    Http::new(app).send(Method::GET, &url, headers, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_site_refuses_plain_http() {
    let app = https_sites(false).await;
    let http = Http::new(&app);
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let json = ("Content-Type", "application/json");
    for (site, path, method, body) in [
        (
            "shop",
            "/bridge/start?from=account&return_to=/",
            Method::GET,
            None,
        ),
        (
            "account",
            "/bridge/issue?to=shop&challenge=x&return_to=/",
            Method::GET,
            None,
        ),
        ("shop", "/bridge/accept?token=x", Method::GET, None),
        (
            "shop",
            "/bridge/accept",
            Method::POST,
            Some((form, "token=x")),
        ),
        (
            "account",
            "/bridge/frame?to=shop&challenge=x",
            Method::GET,
            None,
        ),
        (
            "shop",
            "/bridge/exchange",
            Method::POST,
            Some((json, r#"{"token":"x","verifier":"y"}"#)),
        ),
        ("shop", "/bridge/session", Method::GET, None),
        ("shop", "/bridge/heartbeat", Method::POST, None),
        ("shop", "/bridge/logout", Method::POST, None),
        ("account", "/login", Method::GET, None),
        ("shop", "/", Method::GET, None),
    ] {
        let url = format!("http://{site}.localhost:{}{path}", app.port);
        let headers: Vec<(&str, &str)> = body.map(|(header, _)| header).into_iter().collect();
        let body = body.map(|(_, text)| text.as_bytes().to_vec());
        let page = http.send(method, &url, &headers, body).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(page.error_code().as_deref(), Some("site_unknown"), "{path}");
        assert!(
            page.set_cookies.is_empty(),
            "{path}: {:?}",
            page.set_cookies
        );
        assert!(
            page.body.contains("trusted_proxies"),
            "{path}: the page says how to fix a proxy set-up: {}",
            page.body
        );
    }
    // Nobody can claim HTTPS for themselves: the peer is not a trusted proxy.
    let page = start(&app, &[("X-Forwarded-Proto", "https")]).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert_eq!(page.error_code().as_deref(), Some("site_unknown"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_site_answers_behind_a_trusted_tls_proxy() {
    let app = https_sites(true).await;
    let page = start(&app, &[("X-Forwarded-Proto", "https")]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let location = page.location().unwrap();
    assert_eq!(location.scheme(), "https");
    assert!(page.set_cookie("__Host-sb-state").is_some());
    // The proxy's hop said http (the last entry counts): refused.
    for proto in ["http", "https, http"] {
        let page = start(&app, &[("X-Forwarded-Proto", proto)]).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{proto}");
        assert_eq!(page.error_code().as_deref(), Some("site_unknown"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_site_refuses_what_a_trusted_proxy_says_came_over_https() {
    let app = TestApp::spawn_with(Backend::Memory, |config| {
        config.server.trusted_proxies = vec!["127.0.0.1".to_owned()];
    })
    .await;
    let page = start(&app, &[("X-Forwarded-Proto", "https")]).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert_eq!(page.error_code().as_deref(), Some("site_unknown"));
    assert!(
        page.body.contains("https:// origin"),
        "the page names the fix for this direction: {}",
        page.body
    );
    let page = start(&app, &[]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    // From a peer that is not a trusted proxy the header means nothing.
    let untrusting = TestApp::spawn(Backend::Memory).await;
    let page = start(&untrusting, &[("X-Forwarded-Proto", "https")]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
}
