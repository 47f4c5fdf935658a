//! Security headers on every answer.

use crate::check_page;
use crate::session_support::Http;
use crate::support::app::{ADMIN_TOKEN, API_KEY, Backend, TestApp};
use crate::support::browser::{Browser, Page};
use reqwest::Method;

/// One request of the walk: what, method, URL, headers, body.
type Step = (
    &'static str,
    Method,
    String,
    Vec<(&'static str, String)>,
    Option<String>,
);

fn get(what: &'static str, url: String, headers: &[(&'static str, &str)]) -> Step {
    let headers = headers.iter().map(|(n, v)| (*n, (*v).to_owned())).collect();
    (what, Method::GET, url, headers, None)
}

fn send(
    what: &'static str,
    method: Method,
    url: String,
    headers: &[(&'static str, &str)],
    body: &str,
) -> Step {
    let headers = headers.iter().map(|(n, v)| (*n, (*v).to_owned())).collect();
    (what, method, url, headers, Some(body.to_owned()))
}

/// The flows' own pages: flow A in both modes through to the partner's
/// page, and the flow B frame page as iframe, popup and refusal.
async fn flow_pages(app: &TestApp, browser: &mut Browser) -> Vec<(String, Page)> {
    let (account, shop) = (app.origin("account"), app.origin("shop"));
    let mut pages = Vec::new();
    for mode in ["query", "form_post"] {
        let start = format!("{shop}/bridge/start?from=account&return_to=%2F&mode={mode}");
        for page in browser.follow(&start).await {
            pages.push((format!("flow A {mode}: {}", page.url.path()), page));
        }
    }
    let form: &Page = &pages.last().unwrap().1;
    let token = form.body.split("name=\"token\" value=\"").nth(1).unwrap();
    let token = token.split('"').next().unwrap().to_owned();
    let accept = format!("{shop}/bridge/accept");
    let posted = browser
        .post_form(&accept, &[("token", token.as_str())])
        .await;
    pages.push(("flow A form post".into(), posted));
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    for query in [
        format!("to=shop&challenge={challenge}"),
        format!("to=shop&challenge={challenge}&mode=popup"),
        "to=shop".to_owned(),
        format!("to=nowhere&challenge={challenge}"),
    ] {
        let page = browser
            .get(&format!("{account}/bridge/frame?{query}"))
            .await;
        pages.push((format!("frame {query}"), page));
    }
    pages
}

/// Every other endpoint, successes and refusals. `id` is a live session
/// on `account`, `other` one the walk may end.
fn steps(app: &TestApp, id: &str, other: &str) -> Vec<Step> {
    let (account, shop) = (app.origin("account"), app.origin("shop"));
    let cookie = format!("__Host-sb={id}");
    let cookie = ("Cookie", cookie.as_str());
    let json = ("Content-Type", "application/json");
    let same = ("Sec-Fetch-Site", "same-origin");
    let evil = ("Origin", "https://evil.example");
    let wants_json = ("Accept", "application/json");
    let bearer = format!("Bearer {API_KEY}");
    let api = ("Authorization", bearer.as_str());
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let admin = ("Authorization", admin.as_str());
    let etag = format!(
        "\"{}\"",
        session_bridge::handshake::sri(session_bridge::handshake::CLASSIC)
    );
    let merge = ("Content-Type", "application/merge-patch+json");
    let (post, patch, delete) = (Method::POST, Method::PATCH, Method::DELETE);
    let exchange = format!("{shop}/bridge/exchange");
    let other = format!("{account}/api/v1/sessions/{other}");
    vec![
        send(
            "exchange refused",
            post.clone(),
            exchange.clone(),
            &[json, same],
            r#"{"token":"x","verifier":"y","from":"account"}"#,
        ),
        send(
            "exchange cross-origin",
            post.clone(),
            exchange.clone(),
            &[json, evil],
            "{}",
        ),
        send("exchange wrong type", post.clone(), exchange, &[same], "{}"),
        get("session", format!("{account}/bridge/session"), &[cookie]),
        get("no session", format!("{shop}/bridge/session"), &[]),
        get(
            "session, foreign origin",
            format!("{shop}/bridge/session"),
            &[evil],
        ),
        send(
            "preflight refused",
            Method::OPTIONS,
            format!("{shop}/bridge/session"),
            &[evil, ("Access-Control-Request-Method", "GET")],
            "",
        ),
        send(
            "heartbeat",
            post.clone(),
            format!("{account}/bridge/heartbeat"),
            &[cookie, same],
            "",
        ),
        send(
            "heartbeat refused",
            post.clone(),
            format!("{shop}/bridge/heartbeat"),
            &[same],
            "",
        ),
        send(
            "logout refused",
            post.clone(),
            format!("{shop}/bridge/logout"),
            &[evil],
            "",
        ),
        get("jwks", format!("{shop}/bridge/jwks.json"), &[]),
        get("script", format!("{shop}/bridge/session-bridge.js"), &[]),
        get("module", format!("{shop}/bridge/session-bridge.mjs"), &[]),
        get(
            "script revalidated",
            format!("{shop}/bridge/session-bridge.js"),
            &[("If-None-Match", etag.as_str())],
        ),
        get(
            "stylesheet",
            format!("{shop}/bridge/assets/bridge.css"),
            &[],
        ),
        get(
            "start refused",
            format!("{shop}/bridge/start?from=nowhere&return_to=/"),
            &[],
        ),
        get(
            "start refused, JSON",
            format!("{shop}/bridge/start?from=account"),
            &[wants_json],
        ),
        get(
            "issue refused",
            format!("{account}/bridge/issue?to=shop"),
            &[],
        ),
        get(
            "accept refused",
            format!("{shop}/bridge/accept?token=junk"),
            &[],
        ),
        get(
            "accept refused, JSON",
            format!("{shop}/bridge/accept?token=junk"),
            &[wants_json],
        ),
        get("bridge 404", format!("{shop}/bridge/nothing"), &[]),
        get("bare /bridge", format!("{shop}/bridge"), &[]),
        get("api 404", format!("{shop}/api/v1/nothing"), &[]),
        get(
            "unknown host",
            format!("http://127.0.0.1:{}/bridge/session", app.port),
            &[],
        ),
        get(
            "api unauthorized",
            format!("{shop}/api/v1/sessions/{id}"),
            &[],
        ),
        get("api read", format!("{shop}/api/v1/sessions/{id}"), &[api]),
        get(
            "api bad id",
            format!("{shop}/api/v1/sessions/%FF%FE"),
            &[api],
        ),
        send(
            "api create",
            post.clone(),
            format!("{shop}/api/v1/sessions"),
            &[api, json],
            r#"{"site":"shop"}"#,
        ),
        send(
            "api create refused",
            post.clone(),
            format!("{shop}/api/v1/sessions"),
            &[api, json],
            "[",
        ),
        send(
            "api patch",
            patch.clone(),
            other.clone(),
            &[api, merge, ("If-Match", "\"1\"")],
            r#"{"k":1}"#,
        ),
        send(
            "api patch stale",
            patch.clone(),
            other.clone(),
            &[api, merge, ("If-Match", "\"1\"")],
            r#"{"k":2}"#,
        ),
        send(
            "api patch, no If-Match",
            patch,
            other.clone(),
            &[api, merge],
            "{}",
        ),
        send("api delete", delete.clone(), other.clone(), &[api], ""),
        send("api delete again", delete, other, &[api], ""),
        get("admin unauthorized", format!("{account}/admin/audit"), &[]),
        get("admin", format!("{account}/admin/audit"), &[admin]),
        get("metrics", format!("{account}/metrics"), &[]),
        get("healthz", format!("{account}/healthz"), &[]),
        get("readyz", format!("{account}/readyz"), &[]),
        get("404", format!("{account}/nothing"), &[]),
        get("demo account", format!("{account}/"), &[cookie]),
        get("demo login", format!("{account}/login"), &[]),
        send(
            "demo login refused",
            post.clone(),
            format!("{account}/login"),
            &[evil],
            "username=x",
        ),
        get("demo shop", format!("{shop}/"), &[]),
        get("demo embed", format!("{shop}/embed"), &[]),
        get("demo script", format!("{shop}/demo/embed.js"), &[]),
        send(
            "405",
            post.clone(),
            format!("{shop}/bridge/session-bridge.js"),
            &[],
            "",
        ),
        send(
            "405, JSON",
            post,
            format!("{shop}/metrics"),
            &[wants_json],
            "",
        ),
    ]
}

/// Walks every endpoint: GET and POST, successes and refusals, pages and
/// JSON, the demo's pages and the static files, and checks the security
/// headers of each answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_the_security_headers() {
    let app = TestApp::spawn(Backend::Memory).await;
    let http = Http::new(&app);
    let mut browser = Browser::new(app.port);
    let id = app.sign_in(&mut browser, "ada", None).await;
    let other = app.sign_in(&mut Browser::new(app.port), "bob", None).await;
    let mut pages = flow_pages(&app, &mut browser).await;
    for (what, method, url, headers, body) in steps(&app, &id, &other) {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let page = http
            .send(method, &url, &headers, body.map(String::into_bytes))
            .await;
        pages.push((what.to_owned(), page));
    }
    let statuses: std::collections::BTreeSet<u16> =
        pages.iter().map(|(_, p)| p.status.as_u16()).collect();
    for expected in [
        200, 201, 204, 303, 304, 400, 401, 403, 404, 405, 412, 415, 428,
    ] {
        assert!(
            statuses.contains(&expected),
            "the walk never met {expected}: {statuses:?}"
        );
    }
    let kinds: Vec<&str> = pages
        .iter()
        .filter_map(|(_, p)| p.header("content-type"))
        .collect();
    for kind in [
        "text/html",
        "application/json",
        "application/problem+json",
        "application/jwk-set+json",
        "text/javascript",
        "text/css",
        "text/plain",
    ] {
        assert!(
            kinds.iter().any(|k| k.starts_with(kind)),
            "the walk never met {kind}"
        );
    }
    for (what, page) in &pages {
        check_page(what, page);
    }
    let popup = &pages
        .iter()
        .find(|(w, _)| w.ends_with("mode=popup"))
        .unwrap()
        .1;
    assert!(popup.body.contains("data-popup=\"true\""));
    let preflight = &pages
        .iter()
        .find(|(w, _)| w == "preflight refused")
        .unwrap()
        .1;
    assert_eq!(
        preflight.error_code().as_deref(),
        Some("cors_refused"),
        "{}",
        preflight.body
    );
    assert_eq!(preflight.header("vary"), Some("Origin"));
}
