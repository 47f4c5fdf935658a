//! Rate limits per client IP (`[limits]`) over real HTTP: `429` with
//! `Retry-After` after the burst on every limited route, one budget per
//! client (by `X-Forwarded-For` only from a trusted proxy), refused tokens
//! throttled and audited once per window, `0` turning a limit off, and the
//! refusal's two faces. Time is the app's manual clock: nothing sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use session_bridge::config::{Config, LimitsConfig};
use std::time::Duration;
use support::app::{API_KEY, Backend, TestApp};
use support::browser::Browser;

const VERIFIER: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn limits(bridge: (u32, u32), api: (u32, u32), rejections: (u32, u32)) -> LimitsConfig {
    LimitsConfig {
        bridge_per_second: bridge.0,
        bridge_burst: bridge.1,
        api_per_second: api.0,
        api_burst: api.1,
        token_rejections_per_minute: rejections.0,
        token_rejections_burst: rejections.1,
        ..LimitsConfig::default()
    }
}

/// An app with `limits`, behind a proxy at 127.0.0.1 when `proxied`.
async fn spawn(limits: LimitsConfig, proxied: bool) -> TestApp {
    TestApp::spawn_with(Backend::Memory, move |config: &mut Config| {
        config.limits = limits;
        if proxied {
            config.server.trusted_proxies = vec!["127.0.0.1".to_owned()];
        }
    })
    .await
}

/// One request to the limited surface.
#[derive(Clone, Copy, Debug)]
struct Call {
    method: &'static str,
    site: &'static str,
    path: &'static str,
    body: Option<&'static str>,
}

const fn get(site: &'static str, path: &'static str) -> Call {
    Call {
        method: "GET",
        site,
        path,
        body: None,
    }
}

const START: Call = get("shop", "/bridge/start?from=account&return_to=%2F");
const ISSUE: Call = get("account", "/bridge/issue?to=shop&challenge=x&return_to=%2F");
const ACCEPT: Call = get("shop", "/bridge/accept?token=junk");
const ACCEPT_POST: Call = Call {
    method: "POST",
    site: "shop",
    path: "/bridge/accept",
    body: Some("token=junk"),
};
const FRAME: Call = get("account", "/bridge/frame?to=shop&challenge=x");
const EXCHANGE: Call = Call {
    method: "POST",
    site: "shop",
    path: "/bridge/exchange",
    body: Some(r#"{"token":"junk","verifier":"VERIFIER","from":"account"}"#),
};
const API_CREATE: Call = Call {
    method: "POST",
    site: "account",
    path: "/api/v1/sessions",
    body: Some(r#"{"site":"account"}"#),
};
const API_READ: Call = get("account", "/api/v1/sessions/nope");
const API_DELETE: Call = Call {
    method: "DELETE",
    ..API_READ
};

struct Answer {
    status: StatusCode,
    retry_after: Option<String>,
    content_type: String,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    fn code(&self) -> Option<String> {
        if let Ok(json) = serde_json::from_str::<Value>(&self.body) {
            return json["code"].as_str().map(str::to_owned);
        }
        let start = self.body.find("Error code: <code>")? + "Error code: <code>".len();
        Some(self.body[start..].split('<').next()?.to_owned())
    }

    fn limited(&self) -> bool {
        self.status == StatusCode::TOO_MANY_REQUESTS
    }
}

/// Sends `call` as the client `client` (an `X-Forwarded-For`), as a browser
/// unless `json`.
async fn send(app: &TestApp, call: Call, client: Option<&str>, json: bool) -> Answer {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let method = Method::from_bytes(call.method.as_bytes()).unwrap();
    let mut request = http
        .request(
            method,
            format!("http://127.0.0.1:{}{}", app.port, call.path),
        )
        .header("Host", format!("{}.localhost:{}", call.site, app.port))
        .header(
            "Accept",
            if json {
                "application/json"
            } else {
                "text/html"
            },
        );
    if let Some(client) = client {
        request = request.header("X-Forwarded-For", client);
    }
    if call.path.starts_with("/api/") {
        request = request.bearer_auth(API_KEY);
    }
    if let Some(body) = call.body {
        let kind = if body.starts_with('{') {
            "application/json"
        } else {
            "application/x-www-form-urlencoded"
        };
        request = request
            .header("Content-Type", kind)
            .body(body.replace("VERIFIER", VERIFIER));
    }
    let response = request.send().await.unwrap();
    let headers = response.headers().clone();
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    Answer {
        status: response.status(),
        retry_after: header("retry-after"),
        content_type: header("content-type").unwrap_or_default(),
        body: response.text().await.unwrap(),
        headers,
    }
}

/// Sends `call` `times` times; how many were refused with `429`.
async fn refusals(app: &TestApp, call: Call, client: Option<&str>, times: usize) -> usize {
    let mut refused = 0;
    for _ in 0..times {
        refused += usize::from(send(app, call, client, false).await.limited());
    }
    refused
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_limited_route_answers_429_after_its_burst() {
    let app = spawn(limits((1, 3), (1, 3), (0, 0)), true).await;
    let routes = [
        START,
        ISSUE,
        ACCEPT,
        ACCEPT_POST,
        FRAME,
        EXCHANGE,
        API_CREATE,
        API_READ,
        API_DELETE,
        // Percent-encoding is decoded before routing, so before counting.
        get(
            "account",
            "/bridge/%69ssue?to=shop&challenge=x&return_to=%2F",
        ),
    ];
    for (n, call) in routes.into_iter().enumerate() {
        let client = format!("203.0.113.{n}");
        for _ in 0..3 {
            let answer = send(&app, call, Some(&client), false).await;
            assert!(!answer.limited(), "{call:?}: {}", answer.body);
        }
        let refused = send(&app, call, Some(&client), false).await;
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{call:?}");
        assert_eq!(refused.code().as_deref(), Some("rate_limited"), "{call:?}");
        assert_eq!(refused.retry_after.as_deref(), Some("1"), "{call:?}");
        // Waiting what Retry-After says is enough.
        app.clock.advance(Duration::from_secs(1));
        let again = send(&app, call, Some(&client), false).await;
        assert!(!again.limited(), "{call:?}: {}", again.body);
    }
    // The hand-off endpoints share one budget; the API has its own.
    let client = Some("198.51.100.1");
    assert_eq!(refusals(&app, START, client, 3).await, 0);
    assert!(send(&app, FRAME, client, false).await.limited());
    assert!(!send(&app, API_READ, client, false).await.limited());
    // What a page or a monitor reads often is not limited.
    for path in [
        "/bridge/session",
        "/bridge/jwks.json",
        "/bridge/session-bridge.js",
        "/healthz",
    ] {
        assert_eq!(
            refusals(&app, get("shop", path), client, 10).await,
            0,
            "{path}"
        );
    }
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", app.port))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for route in ["/bridge/issue", "/bridge/exchange", "/api/v1/sessions/{id}"] {
        assert!(
            metrics.contains(&format!(
                "session_bridge_rate_limited_total{{route=\"{route}\"}}"
            )),
            "{route}: {metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_ip_has_its_own_budget() {
    let behind_proxy = spawn(limits((1, 2), (0, 0), (0, 0)), true).await;
    assert_eq!(
        refusals(&behind_proxy, ISSUE, Some("192.0.2.1"), 3).await,
        1
    );
    assert_eq!(
        refusals(&behind_proxy, ISSUE, Some("192.0.2.2"), 2).await,
        0
    );
    // The rightmost hop that is not a trusted proxy is the client: what a
    // client writes further left does not buy it a fresh budget.
    let forged = "10.9.8.7, 192.0.2.1";
    assert!(
        send(&behind_proxy, ISSUE, Some(forged), false)
            .await
            .limited()
    );

    // Not a trusted proxy: its X-Forwarded-For is ignored, and every
    // request is the peer's.
    let direct = spawn(limits((1, 2), (0, 0), (0, 0)), false).await;
    let mut refused = 0;
    for n in 0..3 {
        let client = format!("192.0.2.{n}");
        refused += usize::from(send(&direct, ISSUE, Some(&client), false).await.limited());
    }
    assert_eq!(refused, 1);
}

fn events<'a>(lines: &'a [String], event: &str) -> Vec<&'a String> {
    lines
        .iter()
        .filter(|l| l.contains(&format!("\"event\":\"{event}\"")))
        .collect()
}

/// Sends a junk token from `marker` and waits until its audit line is
/// written: every line recorded before it is then in the file too.
async fn audit_after_marker(app: &TestApp, marker: &str) -> Vec<String> {
    let before = app.audit_lines_until(|_| true).await;
    let seen = |lines: &[String]| {
        lines
            .iter()
            .filter(|l| l.contains(&format!("\"ip\":\"{marker}\"")))
            .count()
    };
    let wanted = seen(&before) + 1;
    assert!(!send(app, ACCEPT, Some(marker), false).await.limited());
    app.audit_lines_until(|lines| seen(lines) >= wanted).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_invalid_tokens_is_throttled_and_audited_once_per_window() {
    // A generous request budget: the client's rate is modest, its tokens
    // are what gets it throttled.
    let app = spawn(limits((100, 100), (0, 0), (6, 3)), true).await;
    let client = Some("198.51.100.7");
    for call in [ACCEPT, EXCHANGE, ACCEPT_POST] {
        let answer = send(&app, call, client, false).await;
        assert!(
            answer.status.is_client_error() && !answer.limited(),
            "{call:?}"
        );
    }
    // The fourth refused token spends the budget; from then on its
    // redemptions are refused before any token is looked at.
    let spent = send(&app, EXCHANGE, client, false).await;
    assert_eq!(spent.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(spent.retry_after.as_deref(), Some("10"));
    assert_eq!(refusals(&app, ACCEPT, client, 5).await, 5);
    assert_eq!(refusals(&app, EXCHANGE, client, 5).await, 5);
    // Its other requests, and other clients, go on.
    assert!(!send(&app, ISSUE, client, false).await.limited());

    let lines = audit_after_marker(&app, "192.0.2.99").await;
    let limited = events(&lines, "rate.limited");
    assert_eq!(limited.len(), 1, "{limited:#?}");
    let line: Value = serde_json::from_str(limited[0]).unwrap();
    assert_eq!(line["ip"], "198.51.100.7");
    assert_eq!(line["reason"], "token_rejections");
    assert_eq!(line["site"], "shop");
    // Refused up front, the junk never reached the token checks.
    let rejected = |lines: &[String]| {
        events(lines, "token.rejected")
            .into_iter()
            .filter(|l| l.contains("198.51.100.7"))
            .count()
    };
    assert_eq!(rejected(&lines), 4);

    // A minute later the budget is full again: a new burst of junk is
    // throttled again, and that is a new window with its own line.
    app.clock.advance(Duration::from_secs(61));
    for _ in 0..3 {
        assert!(!send(&app, ACCEPT, client, false).await.limited());
    }
    assert_eq!(refusals(&app, ACCEPT, client, 10).await, 10);
    let lines = audit_after_marker(&app, "192.0.2.98").await;
    assert_eq!(events(&lines, "rate.limited").len(), 2);
    assert_eq!(rejected(&lines), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_turns_a_limit_off_and_the_defaults_let_a_person_through() {
    let off = spawn(limits((0, 1), (1, 0), (0, 0)), false).await;
    assert_eq!(refusals(&off, ISSUE, None, 100).await, 0);
    assert_eq!(refusals(&off, API_READ, None, 100).await, 0);
    assert_eq!(refusals(&off, ACCEPT, None, 30).await, 0);

    // The shipped defaults: a person signing in and crossing to two
    // partners, twice, is nowhere near them.
    let app = spawn(LimitsConfig::default(), false).await;
    let mut browser = Browser::new(app.port);
    app.sign_in(&mut browser, "ada", None).await;
    for _ in 0..2 {
        for site in ["shop", "checkout"] {
            browser.clear_cookies(&format!("{site}.localhost"));
            let pages = browser
                .follow(&format!(
                    "{}/bridge/start?from=account&return_to=%2F",
                    app.origin(site)
                ))
                .await;
            let last = pages.last().unwrap();
            assert_eq!(last.status, StatusCode::OK, "{site}: {}", last.body);
            assert!(
                pages
                    .iter()
                    .all(|p| p.status != StatusCode::TOO_MANY_REQUESTS)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_a_page_for_browsers_and_a_problem_for_api_callers() {
    let app = spawn(limits((1, 1), (1, 1), (0, 0)), false).await;
    send(&app, ISSUE, None, false).await;
    let page = send(&app, ISSUE, None, false).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(page.content_type, "text/html; charset=utf-8");
    assert_eq!(page.code().as_deref(), Some("rate_limited"));
    assert!(page.body.contains("try again in 1 second"), "{}", page.body);
    assert_eq!(page.retry_after.as_deref(), Some("1"));
    for (name, value) in [
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
    ] {
        assert_eq!(page.headers[name], value, "{name}");
    }
    assert!(page.headers.contains_key("x-request-id"));
    assert!(page.headers.contains_key("content-security-policy"));

    // A script on the bridge that asks for JSON gets a problem.
    let problem = send(&app, EXCHANGE, None, true).await;
    assert_eq!(problem.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(problem.content_type, "application/problem+json");

    send(&app, API_CREATE, None, false).await;
    let problem = send(&app, API_CREATE, None, false).await;
    assert_eq!(problem.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(problem.content_type, "application/problem+json");
    let body: Value = serde_json::from_str(&problem.body).unwrap();
    assert_eq!(body["code"], "rate_limited");
    assert_eq!(body["status"], 429);
    assert_eq!(body["type"], "urn:session-bridge:error:rate_limited");
    assert_eq!(body["retry_after"], json!(1));
    assert_eq!(problem.retry_after.as_deref(), Some("1"));
}
