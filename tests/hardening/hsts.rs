//! `Strict-Transport-Security` only on answers to HTTPS requests.

use crate::session_support::Http;
use crate::support::app::{ADMIN_TOKEN, API_KEY, Backend, TestApp};
use crate::wire::{self, head};
use reqwest::Method;

/// `Strict-Transport-Security` on every answer over the TLS listener
/// (`--tls-self-signed`), errors included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsts_over_the_tls_listener() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let mut config = session_bridge::config::demo_config_with_scheme("127.0.0.1:0", port, "https");
    config.tokens.keys_dir = dir.path().to_owned();
    config.audit.file = Some(dir.path().join("audit.log"));
    config.api.keys = vec![API_KEY.to_owned()];
    config.admin.tokens = vec![ADMIN_TOKEN.to_owned()];
    let clock = session_bridge::clock::Clock::system();
    let prepared = session_bridge::app::prepare(&config, clock, true)
        .await
        .unwrap();
    let tls = session_bridge::http::tls::self_signed(&prepared.state.bridge.topology).unwrap();
    let pem = tls.certificate_pem.clone();
    let server =
        session_bridge::http::serve(prepared.state, listener, 1, Some(tls.config)).unwrap();
    let handle = server.handle();
    tokio::spawn(server);
    let answers = tokio::task::spawn_blocking(move || {
        [
            "/healthz",
            "/bridge/session",
            "/nothing",
            "/bridge/session-bridge.js",
            "/login",
        ]
        .map(|path| {
            let request = head("GET", path, "account", port, &[]);
            (
                path,
                wire::https_request(port, "account.localhost", &pem, &request),
            )
        })
    })
    .await
    .unwrap();
    for (path, raw) in &answers {
        assert!(raw.status < 500, "{path}: {}", raw.status);
        assert_eq!(
            raw.header("strict-transport-security"),
            Some("max-age=31536000"),
            "{path}"
        );
        assert_eq!(
            raw.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
    }
    handle.stop(false).await;
}

/// Behind a trusted proxy, `X-Forwarded-Proto: https` means HTTPS; the same
/// header from anyone else, or a chain ending in `http`, does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsts_behind_a_trusted_proxy_only() {
    let trusting = TestApp::spawn_with(Backend::Memory, |config| {
        config.server.trusted_proxies = vec!["127.0.0.1".to_owned()];
    })
    .await;
    let untrusting = TestApp::spawn(Backend::Memory).await;
    for (app, proto, hsts) in [
        (&trusting, Some("https"), true),
        (&trusting, Some("HTTPS"), true),
        (&trusting, Some("https, http"), false),
        (&trusting, Some("http"), false),
        (&trusting, None, false),
        (&untrusting, Some("https"), false),
    ] {
        let http = Http::new(app);
        for path in ["/healthz", "/bridge/session", "/nothing"] {
            let headers: Vec<(&str, &str)> = proto
                .map(|p| ("X-Forwarded-Proto", p))
                .into_iter()
                .collect();
            let page = http
                .send(
                    Method::GET,
                    &format!("{}{path}", app.origin("shop")),
                    &headers,
                    None,
                )
                .await;
            assert_eq!(
                page.header("strict-transport-security").is_some(),
                hsts,
                "{path} {proto:?}"
            );
        }
    }
}
