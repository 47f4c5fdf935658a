//! Flow B over real HTTP, one acceptance suite run against both stores:
//! `/bridge/frame` on the origin, `/bridge/exchange` and `/bridge/session`
//! on the partner, header delivery, and the handshake script.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::header::SET_COOKIE;
use reqwest::{Client, Method, StatusCode, redirect};
use session_bridge::config::{Delivery, MissingSessionPolicy};
use session_bridge::flows::binding::{challenge_of, random_token};
use std::time::Duration;
use support::app::{API_KEY, Backend, TestApp};
use support::browser::Page;
use url::Url;

const SESSION_COOKIE: &str = "__Host-sb";
const EVIL: &str = "http://evil.localhost:1";

// ------------------------------------------------------------------ helpers

/// A bare HTTP client: every header, cookie included, is given by the test.
/// `*.localhost` names resolve to the bridge, as in browsers.
struct Http {
    client: Client,
}

impl Http {
    fn new(app: &TestApp) -> Self {
        let mut builder = Client::builder().redirect(redirect::Policy::none());
        for host in [
            "account.localhost",
            "shop.localhost",
            "www.shop.localhost",
            "checkout.localhost",
            "evil.localhost",
        ] {
            builder = builder.resolve(host, ([127, 0, 0, 1], app.port).into());
        }
        Self {
            client: builder.build().unwrap(),
        }
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Page {
        let url = Url::parse(url).unwrap();
        let mut request = self.client.request(method, url.clone());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let set_cookies = headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        let body = response.text().await.unwrap();
        Page {
            url,
            status,
            headers,
            body,
            set_cookies,
        }
    }

    async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Page {
        self.send(Method::GET, url, headers, None).await
    }
}

/// A session made through the service API, as a site's login code would;
/// returns its id (the value of the site's cookie).
async fn create_session(app: &TestApp, site: &str, user: Option<&str>) -> String {
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/api/v1/sessions", app.port))
        .header("Host", format!("{site}.localhost:{}", app.port))
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({"site": site, "user_id": user, "data": {"cart": ["tea"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: serde_json::Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

fn cookie_header(id: &str) -> String {
    format!("{SESSION_COOKIE}={id}")
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A verifier and its challenge, as the script makes them.
fn pkce() -> (String, String) {
    let verifier = random_token().unwrap();
    let challenge = challenge_of(&verifier);
    (verifier, challenge)
}

/// `GET {on}/bridge/frame?to=…&challenge=…{extra}` with `session` as the
/// issuer's cookie.
async fn frame(
    http: &Http,
    app: &TestApp,
    on: &str,
    to: &str,
    challenge: &str,
    session: Option<&str>,
    extra: &str,
) -> Page {
    let url = format!(
        "{}/bridge/frame?to={}&challenge={}{extra}",
        app.origin(on),
        urlencode(to),
        urlencode(challenge)
    );
    let cookie = session.map(cookie_header);
    let mut headers = vec![("Sec-Fetch-Dest", "iframe")];
    if let Some(cookie) = &cookie {
        headers.push(("Cookie", cookie.as_str()));
    }
    http.get(&url, &headers).await
}

/// The message the frame page posts: its `data-*` attributes.
#[derive(Debug, PartialEq, Eq)]
struct FrameData {
    target: String,
    kind: String,
    token: String,
    code: String,
    popup: String,
}

/// Undoes HTML attribute escaping (what `dataset` gives the page's script).
fn unescape(text: &str) -> String {
    text.replace("&#x2f;", "/")
        .replace("&#x2F;", "/")
        .replace("&#47;", "/")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn attribute(body: &str, name: &str) -> Option<String> {
    let marker = format!("{name}=\"");
    let start = body.find(&marker)? + marker.len();
    let end = body[start..].find('"')? + start;
    Some(unescape(&body[start..end]))
}

fn frame_data(page: &Page) -> FrameData {
    let get = |name: &str| {
        attribute(&page.body, name).unwrap_or_else(|| panic!("no {name} in {}", page.body))
    };
    FrameData {
        target: get("data-target"),
        kind: get("data-type"),
        token: get("data-token"),
        code: get("data-code"),
        popup: get("data-popup"),
    }
}

/// A token from the frame on `on` for `to`, bound to a fresh verifier.
async fn token_for(
    http: &Http,
    app: &TestApp,
    on: &str,
    to: &str,
    session: &str,
) -> (String, String) {
    let (verifier, challenge) = pkce();
    let page = frame(http, app, on, to, &challenge, Some(session), "").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let data = frame_data(&page);
    assert_eq!(data.kind, "sb:token", "{}", page.body);
    (data.token, verifier)
}

/// One directive of a CSP, e.g. `frame-ancestors`: its values.
fn csp_directive(csp: &str, name: &str) -> Option<Vec<String>> {
    csp.split(';').map(str::trim).find_map(|directive| {
        let mut words = directive.split_whitespace();
        (words.next() == Some(name)).then(|| words.map(str::to_owned).collect())
    })
}

/// The configured origins of `site`, in order.
fn configured_origins(app: &TestApp, site: &str) -> Vec<String> {
    app.config
        .sites
        .iter()
        .find(|s| s.id == site)
        .unwrap()
        .origins
        .clone()
}

/// `POST {on}/bridge/exchange`, as the handshake script sends it
/// (same-origin fetch, JSON), with `headers` replacing the defaults.
async fn exchange_raw(
    http: &Http,
    app: &TestApp,
    on: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> Page {
    let origin = app.origin(on);
    let mut all: Vec<(&str, &str)> = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json"),
        ("Origin", origin.as_str()),
        ("Sec-Fetch-Site", "same-origin"),
        ("Sec-Fetch-Mode", "cors"),
    ];
    for (name, value) in headers {
        all.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        if !value.is_empty() {
            all.push((name, value));
        }
    }
    let url = format!("{origin}/bridge/exchange");
    http.send(Method::POST, &url, &all, Some(body)).await
}

async fn exchange(
    http: &Http,
    app: &TestApp,
    on: &str,
    token: &str,
    verifier: &str,
    from: &str,
) -> Page {
    let body = serde_json::json!({"token": token, "verifier": verifier, "from": from});
    exchange_raw(http, app, on, body.to_string().into_bytes(), &[]).await
}

/// `GET {on}/bridge/session` with these headers (plus Accept: JSON).
async fn session_read(http: &Http, app: &TestApp, on: &str, headers: &[(&str, &str)]) -> Page {
    let mut all = vec![("Accept", "application/json")];
    all.extend_from_slice(headers);
    http.get(&format!("{}/bridge/session", app.origin(on)), &all)
        .await
}

async fn session_with_cookie(http: &Http, app: &TestApp, on: &str, id: &str) -> Page {
    let cookie = cookie_header(id);
    session_read(http, app, on, &[("Cookie", &cookie)]).await
}

fn json(page: &Page) -> serde_json::Value {
    serde_json::from_str(&page.body).unwrap_or_else(|e| panic!("{e}: {}", page.body))
}

/// A refusal: its status and code, as problem+json, with no cookie set and
/// nothing cached.
fn assert_refused(page: &Page, status: StatusCode, code: &str) {
    assert_eq!(
        (page.status, page.error_code().as_deref()),
        (status, Some(code)),
        "{}",
        page.body
    );
    assert_eq!(
        page.header("content-type"),
        Some("application/problem+json"),
        "{code}"
    );
    assert!(
        page.set_cookies.is_empty(),
        "{code}: a refusal sets no cookie: {:?}",
        page.set_cookies
    );
    assert_eq!(page.header("cache-control"), Some("no-store"), "{code}");
}

/// The public session view: exactly these fields, `id` only when asked.
fn assert_view(page: &Page, user: Option<&str>, with_id: Option<&str>) -> serde_json::Value {
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{:?}",
        page.header("content-type")
    );
    assert_eq!(page.header("cache-control"), Some("no-store"));
    let view = json(page);
    let mut keys: Vec<&str> = view
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut expected = vec![
        "absolute_expires_at",
        "data",
        "expires_at",
        "user_id",
        "version",
    ];
    if with_id.is_some() {
        expected.push("id");
        expected.sort_unstable();
    }
    assert_eq!(keys, expected, "{view}");
    assert_eq!(view["user_id"].as_str(), user, "{view}");
    assert_eq!(view["data"]["cart"], serde_json::json!(["tea"]), "{view}");
    assert!(view["version"].as_u64().is_some_and(|v| v >= 1), "{view}");
    for field in ["expires_at", "absolute_expires_at"] {
        let text = view[field].as_str().unwrap();
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("{field} = {text}: {e}"));
    }
    if let Some(id) = with_id {
        assert_eq!(view["id"].as_str(), Some(id), "{view}");
    }
    // Without header delivery, the id is nowhere in the answer.
    if with_id.is_none() {
        assert!(!page.body.contains("\"id\""), "{}", page.body);
    }
    view
}

// ------------------------------------------------------------ /bridge/frame

async fn frame_posts_a_token_to_the_exact_partner_origin(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let http = Http::new(&app);
    let id = create_session(&app, "account", Some("alice")).await;
    let (_, challenge) = pkce();
    let shop = app.origin("shop");
    let url = format!(
        "{}/bridge/frame?to={}&challenge={challenge}",
        app.origin("account"),
        urlencode(&shop)
    );
    let cookie = cookie_header(&id);
    // A bogus Origin and Referer: the page must not take its ancestors or
    // its target from them.
    let page = http
        .get(
            &url,
            &[
                ("Cookie", &cookie),
                ("Origin", EVIL),
                ("Referer", "http://evil.localhost:1/attack"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert!(
        page.header("x-frame-options").is_none(),
        "the frame page must be framable by its partner"
    );
    assert!(page.set_cookies.is_empty(), "{:?}", page.set_cookies);
    let csp = page.header("content-security-policy").unwrap().to_owned();
    assert_eq!(
        csp_directive(&csp, "frame-ancestors"),
        Some(configured_origins(&app, "shop")),
        "{csp}"
    );
    assert_eq!(
        csp_directive(&csp, "default-src"),
        Some(vec!["'none'".to_owned()])
    );
    assert!(!csp.contains("evil"), "{csp}");
    assert!(!page.body.contains("evil"), "{}", page.body);
    assert!(!format!("{:?}", page.headers).contains("evil"));
    let script_src = csp_directive(&csp, "script-src").unwrap();
    assert_eq!(script_src.len(), 1, "{csp}");
    let nonce = script_src[0]
        .strip_prefix("'nonce-")
        .and_then(|n| n.strip_suffix('\''))
        .unwrap();
    assert!(nonce.len() >= 22, "{nonce}");
    assert!(
        page.body.contains(&format!("<script nonce=\"{nonce}\">")),
        "{}",
        page.body
    );
    assert_eq!(page.body.matches("<script").count(), 1, "{}", page.body);
    let data = frame_data(&page);
    assert_eq!(data.target, shop);
    assert_eq!(data.kind, "sb:token");
    assert_eq!(data.code, "");
    assert_eq!(data.popup, "false");
    assert_eq!(data.token.split('.').count(), 3, "a JWT: {}", data.token);
    // The page posts to the configured target, never to "*".
    assert!(page.body.contains("postMessage(message, d.target)"));
    assert!(!page.body.contains("\"*\""), "{}", page.body);
    // No session id in the page.
    assert!(!page.body.contains(&id));
    // A fresh nonce on every answer.
    let again = http.get(&url, &[("Cookie", &cookie)]).await;
    let again_csp = again.header("content-security-policy").unwrap();
    assert_ne!(again_csp, csp, "the nonce must not repeat");
    assert_ne!(
        frame_data(&again).token,
        data.token,
        "one token per request"
    );

    // `to` as the site's id: the target is its primary origin.
    let by_id = frame(&http, &app, "account", "shop", &challenge, Some(&id), "").await;
    assert_eq!(by_id.status, StatusCode::OK, "{}", by_id.body);
    let by_id_data = frame_data(&by_id);
    assert_eq!(by_id_data.target, shop);
    assert_eq!(by_id_data.kind, "sb:token");
    assert_eq!(
        csp_directive(
            by_id.header("content-security-policy").unwrap(),
            "frame-ancestors"
        ),
        Some(vec![shop.clone()])
    );
    // The same for another partner.
    let checkout = frame(
        &http,
        &app,
        "account",
        "checkout",
        &challenge,
        Some(&id),
        "",
    )
    .await;
    assert_eq!(frame_data(&checkout).target, app.origin("checkout"));
}

async fn frame_ancestors_name_every_configured_origin(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        let port = config.sites[1].origins[0]
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned();
        config.sites[1]
            .origins
            .push(format!("http://www.shop.localhost:{port}"));
    })
    .await;
    let http = Http::new(&app);
    let id = create_session(&app, "account", Some("alice")).await;
    let (_, challenge) = pkce();
    let origins = configured_origins(&app, "shop");
    assert_eq!(origins.len(), 2);
    for (to, target) in [
        ("shop".to_owned(), origins[0].clone()),
        (origins[0].clone(), origins[0].clone()),
        (origins[1].clone(), origins[1].clone()),
    ] {
        let page = frame(&http, &app, "account", &to, &challenge, Some(&id), "").await;
        assert_eq!(page.status, StatusCode::OK, "{to}: {}", page.body);
        let csp = page.header("content-security-policy").unwrap();
        assert_eq!(
            csp_directive(csp, "frame-ancestors"),
            Some(origins.clone()),
            "{to}: {csp}"
        );
        let data = frame_data(&page);
        assert_eq!(data.target, target, "{to}");
        assert_eq!(data.kind, "sb:token", "{to}");
    }
}

async fn frame_without_a_session_says_so_and_makes_none(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let http = Http::new(&app);
    let (_, challenge) = pkce();
    let shop_session = create_session(&app, "shop", Some("sam")).await;
    let unknown = "A".repeat(43);
    let cases: [(&str, &str, Option<&str>); 5] = [
        // account: on_missing_session = login in the demo.
        ("account", "shop", None),
        // checkout: on_missing_session = anonymous in the demo.
        ("checkout", "shop", None),
        // A cookie of the right shape naming no session.
        ("account", "shop", Some(&unknown)),
        // A cookie of the wrong shape.
        ("account", "shop", Some("not-a-session")),
        // A live session that account never joined.
        ("account", "shop", Some(&shop_session)),
    ];
    for (on, to, cookie) in cases {
        let page = frame(&http, &app, on, to, &challenge, cookie, "").await;
        assert_eq!(
            page.status,
            StatusCode::OK,
            "{on} {cookie:?}: {}",
            page.body
        );
        let data = frame_data(&page);
        assert_eq!(
            (data.kind.as_str(), data.token.as_str(), data.code.as_str()),
            ("sb:no-session", "", ""),
            "{on} {cookie:?}"
        );
        assert_eq!(data.target, app.origin(to));
        assert!(
            page.set_cookies.is_empty(),
            "{on} {cookie:?}: the frame never makes a session: {:?}",
            page.set_cookies
        );
        let csp = page.header("content-security-policy").unwrap();
        assert_eq!(
            csp_directive(csp, "frame-ancestors"),
            Some(vec![app.origin(to)])
        );
    }
    app.stop().await;

    // Even where the site's own policy would make an anonymous session.
    let app = TestApp::spawn_with(backend, |config| {
        config.sites[0].on_missing_session = MissingSessionPolicy::Anonymous;
    })
    .await;
    let http = Http::new(&app);
    for extra in ["", "&mode=popup"] {
        let page = frame(&http, &app, "account", "shop", &challenge, None, extra).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert_eq!(frame_data(&page).kind, "sb:no-session", "{extra}");
        assert!(page.set_cookies.is_empty(), "{:?}", page.set_cookies);
    }
}

async fn frame_modes_and_malformed_challenges(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let http = Http::new(&app);
    let id = create_session(&app, "account", Some("alice")).await;
    let (_, challenge) = pkce();
    let popup = frame(
        &http,
        &app,
        "account",
        "shop",
        &challenge,
        Some(&id),
        "&mode=popup",
    )
    .await;
    assert_eq!(popup.status, StatusCode::OK, "{}", popup.body);
    let data = frame_data(&popup);
    assert_eq!(
        (data.popup.as_str(), data.kind.as_str()),
        ("true", "sb:token")
    );
    assert_eq!(data.target, app.origin("shop"));
    let iframe = frame(
        &http,
        &app,
        "account",
        "shop",
        &challenge,
        Some(&id),
        "&mode=iframe",
    )
    .await;
    assert_eq!(frame_data(&iframe).popup, "false");
    // Popups without a session say so too, to the opener.
    let popup = frame(
        &http,
        &app,
        "account",
        "shop",
        &challenge,
        None,
        "&mode=popup",
    )
    .await;
    let data = frame_data(&popup);
    assert_eq!(
        (data.popup.as_str(), data.kind.as_str()),
        ("true", "sb:no-session")
    );

    // A malformed challenge: an error message to the partner, no token.
    let too_long = format!("{challenge}A");
    let bad_char = format!("{}*", &challenge[..42]);
    let padded = format!("{}=", &challenge[..42]);
    for bad in [
        "",
        "short",
        too_long.as_str(),
        bad_char.as_str(),
        padded.as_str(),
    ] {
        let page = frame(&http, &app, "account", "shop", bad, Some(&id), "").await;
        assert_eq!(page.status, StatusCode::OK, "{bad:?}: {}", page.body);
        let data = frame_data(&page);
        assert_eq!(
            (data.kind.as_str(), data.code.as_str(), data.token.as_str()),
            ("sb:error", "invalid_request", ""),
            "{bad:?}"
        );
        assert_eq!(data.target, app.origin("shop"));
        assert!(page.set_cookies.is_empty());
    }

    // Broken requests: an error page, no message at all.
    let base = format!("{}/bridge/frame", app.origin("account"));
    let cookie = cookie_header(&id);
    for (query, status, code) in [
        (
            format!("to=shop&challenge={challenge}&mode=window"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            format!("challenge={challenge}"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "to=shop".to_owned(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            format!("to=shop&to=checkout&challenge={challenge}"),
            StatusCode::BAD_REQUEST,
            "duplicate_parameter",
        ),
    ] {
        let page = http
            .get(&format!("{base}?{query}"), &[("Cookie", &cookie)])
            .await;
        assert_no_frame_message(&page, status, code);
    }
}

/// An error page that posts nothing and may not be framed by anyone.
fn assert_no_frame_message(page: &Page, status: StatusCode, code: &str) {
    assert_eq!(
        (page.status, page.error_code().as_deref()),
        (status, Some(code)),
        "{}: {}",
        page.url,
        page.body
    );
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert_eq!(
        csp_directive(csp, "frame-ancestors"),
        Some(vec!["'none'".to_owned()]),
        "{}: {csp}",
        page.url
    );
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    for marker in [
        "data-target",
        "data-token",
        "data-type",
        "postMessage",
        "<script",
    ] {
        assert!(
            !page.body.contains(marker),
            "{}: {marker} in {}",
            page.url,
            page.body
        );
    }
    assert!(page.set_cookies.is_empty());
}

async fn frame_refuses_unknown_and_non_partner_sites(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        // account hands to shop only.
        config.sites[0].partners = vec!["shop".to_owned()];
    })
    .await;
    let http = Http::new(&app);
    let id = create_session(&app, "account", Some("alice")).await;
    let (_, challenge) = pkce();
    let port = app.port;
    let cases = [
        (
            "checkout".to_owned(),
            StatusCode::FORBIDDEN,
            "partner_not_allowed",
        ),
        (
            app.origin("checkout"),
            StatusCode::FORBIDDEN,
            "partner_not_allowed",
        ),
        // A site is not its own partner.
        (
            "account".to_owned(),
            StatusCode::FORBIDDEN,
            "partner_not_allowed",
        ),
        (
            "nowhere".to_owned(),
            StatusCode::BAD_REQUEST,
            "site_unknown",
        ),
        (EVIL.to_owned(), StatusCode::BAD_REQUEST, "site_unknown"),
        (
            format!("http://evil.localhost:{port}"),
            StatusCode::BAD_REQUEST,
            "site_unknown",
        ),
        // Near misses of shop's exact origin.
        (
            "http://shop.localhost:1".to_owned(),
            StatusCode::BAD_REQUEST,
            "site_unknown",
        ),
        (
            format!("https://shop.localhost:{port}"),
            StatusCode::BAD_REQUEST,
            "site_unknown",
        ),
        (
            format!("http://shop.localhost:{port}/"),
            StatusCode::BAD_REQUEST,
            "site_unknown",
        ),
        (
            format!("http://x.shop.localhost:{port}"),
            StatusCode::BAD_REQUEST,
            "site_unknown",
        ),
        ("*".to_owned(), StatusCode::BAD_REQUEST, "site_unknown"),
        ("null".to_owned(), StatusCode::BAD_REQUEST, "site_unknown"),
        (String::new(), StatusCode::BAD_REQUEST, "site_unknown"),
    ];
    for (to, status, code) in cases {
        let page = frame(&http, &app, "account", &to, &challenge, Some(&id), "").await;
        assert_no_frame_message(&page, status, code);
    }
    // The allowed partner still works.
    let page = frame(&http, &app, "account", "shop", &challenge, Some(&id), "").await;
    assert_eq!(frame_data(&page).kind, "sb:token");
}

// --------------------------------------------------------- /bridge/exchange

async fn exchange_sets_the_cookie_and_answers_the_public_view(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let http = Http::new(&app);
    let id = create_session(&app, "account", Some("alice")).await;
    let (token, verifier) = token_for(&http, &app, "account", "shop", &id).await;
    let page = exchange(&http, &app, "shop", &token, &verifier, "account").await;
    let view = assert_view(&page, Some("alice"), None);
    assert_eq!(view["version"], 2, "joining shop is one write: {view}");
    assert_eq!(page.set_cookies.len(), 1, "{:?}", page.set_cookies);
    let cookie = page.set_cookie(SESSION_COOKIE).unwrap();
    assert_eq!(
        cookie.split(';').next().unwrap(),
        format!("{SESSION_COOKIE}={id}"),
        "the cookie holds the session id itself"
    );
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(
            cookie.split(';').any(|a| a.trim() == attribute),
            "{attribute}: {cookie}"
        );
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    assert!(!page.body.contains(&id));
    assert!(!page.body.contains(&token));
    // shop now reads the session through its own cookie.
    assert_view(
        &session_with_cookie(&http, &app, "shop", &id).await,
        Some("alice"),
        None,
    );

    // `from` may also be the issuer's exact origin.
    let (token, verifier) = token_for(&http, &app, "account", "checkout", &id).await;
    let page = exchange(
        &http,
        &app,
        "checkout",
        &token,
        &verifier,
        &app.origin("account"),
    )
    .await;
    assert_view(&page, Some("alice"), None);
    assert!(page.set_cookie(SESSION_COOKIE).is_some());

    // Anonymous sessions travel the same way (user_id null).
    let guest = create_session(&app, "checkout", None).await;
    let (token, verifier) = token_for(&http, &app, "checkout", "shop", &guest).await;
    let page = exchange(&http, &app, "shop", &token, &verifier, "checkout").await;
    assert_view(&page, None, None);
}

async fn exchange_refusals_leave_the_token_usable(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let http = Http::new(&app);
    let id = create_session(&app, "account", Some("alice")).await;
    let (token, verifier) = token_for(&http, &app, "account", "shop", &id).await;
    let (other_verifier, _) = pkce();
    // Another browser's verifier.
    assert_refused(
        &exchange(&http, &app, "shop", &token, &other_verifier, "account").await,
        StatusCode::UNAUTHORIZED,
        "token_binding_mismatch",
    );
    // The script asked another site than the one that issued the token.
    assert_refused(
        &exchange(&http, &app, "shop", &token, &verifier, "checkout").await,
        StatusCode::UNAUTHORIZED,
        "token_issuer_mismatch",
    );
    assert_refused(
        &exchange(
            &http,
            &app,
            "shop",
            &token,
            &verifier,
            &app.origin("checkout"),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "token_issuer_mismatch",
    );
    for unknown in ["nowhere", EVIL, "http://account.localhost:1", ""] {
        assert_refused(
            &exchange(&http, &app, "shop", &token, &verifier, unknown).await,
            StatusCode::BAD_REQUEST,
            "site_unknown",
        );
    }
    // None of these burnt the token: the right browser still gets in.
    let page = exchange(&http, &app, "shop", &token, &verifier, "account").await;
    assert_view(&page, Some("alice"), None);
    assert!(page.set_cookie(SESSION_COOKIE).is_some());

    // A token past its lifetime (30 s) and leeway (5 s) has its own code.
    let (token, verifier) = token_for(&http, &app, "account", "shop", &id).await;
    app.clock.advance(std::time::Duration::from_secs(36));
    assert_refused(
        &exchange(&http, &app, "shop", &token, &verifier, "account").await,
        StatusCode::UNAUTHORIZED,
        "token_expired",
    );
}

async fn a_token_for_another_site_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let http = Http::new(&app);
    let id = create_session(&app, "account", Some("alice")).await;
    let (token, verifier) = token_for(&http, &app, "account", "checkout", &id).await;
    assert_refused(
        &exchange(&http, &app, "shop", &token, &verifier, "account").await,
        StatusCode::UNAUTHORIZED,
        "token_wrong_audience",
    );
    // shop has not joined the session.
    assert_refused(
        &session_with_cookie(&http, &app, "shop", &id).await,
        StatusCode::UNAUTHORIZED,
        "no_session",
    );
    // The token still works where it was meant to go.
    assert_view(
        &exchange(&http, &app, "checkout", &token, &verifier, "account").await,
        Some("alice"),
        None,
    );
    // Junk tokens each have a token code, never a 500.
    for junk in ["", "abc", "a.b.c", &format!("{token}x")] {
        let page = exchange(&http, &app, "shop", junk, &verifier, "account").await;
        assert!(page.status.is_client_error(), "{junk}: {}", page.body);
        let code = page.error_code().unwrap();
        assert!(code.starts_with("token_"), "{junk}: {code}");
        assert!(page.set_cookies.is_empty());
    }
}

async fn replays_are_refused_and_a_leaked_token_revokes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let http = Http::new(&app);
    let id = create_session(&app, "account", Some("alice")).await;
    let (token, verifier) = token_for(&http, &app, "account", "shop", &id).await;
    assert_view(
        &exchange(&http, &app, "shop", &token, &verifier, "account").await,
        Some("alice"),
        None,
    );
    // The same browser again (a lost response, a double submit): refused,
    // but not a leak.
    assert_refused(
        &exchange(&http, &app, "shop", &token, &verifier, "account").await,
        StatusCode::UNAUTHORIZED,
        "token_replayed",
    );
    assert_view(
        &session_with_cookie(&http, &app, "shop", &id).await,
        Some("alice"),
        None,
    );
    assert_eq!(
        frame_data(&frame(&http, &app, "account", "shop", &pkce().1, Some(&id), "").await).kind,
        "sb:token",
        "the session survives a same-browser retry"
    );

    // A consumed token from another browser: it leaked; the session dies everywhere.
    let (token, verifier) = token_for(&http, &app, "account", "checkout", &id).await;
    assert_view(
        &exchange(&http, &app, "checkout", &token, &verifier, "account").await,
        Some("alice"),
        None,
    );
    let (thief, _) = pkce();
    assert_refused(
        &exchange(&http, &app, "checkout", &token, &thief, "account").await,
        StatusCode::UNAUTHORIZED,
        "token_replayed",
    );
    for site in ["account", "shop", "checkout"] {
        assert_refused(
            &session_with_cookie(&http, &app, site, &id).await,
            StatusCode::UNAUTHORIZED,
            "no_session",
        );
    }
    assert_eq!(
        frame_data(&frame(&http, &app, "account", "shop", &pkce().1, Some(&id), "").await).kind,
        "sb:no-session"
    );
}

/// A request body, its headers, and the refusal it must get.
type Refusal<'a> = (Vec<u8>, Vec<(&'a str, &'a str)>, StatusCode, &'a str);

async fn exchange_accepts_same_origin_json_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let http = Http::new(&app);
    let id = create_session(&app, "account", Some("alice")).await;
    let (token, verifier) = token_for(&http, &app, "account", "shop", &id).await;
    let body = serde_json::json!({"token": token, "verifier": verifier, "from": "account"})
        .to_string()
        .into_bytes();
    let form = format!("token={token}&verifier={verifier}&from=account").into_bytes();
    let account = app.origin("account");
    let shop = app.origin("shop");
    let refusals: Vec<Refusal<'_>> = vec![
        (
            body.clone(),
            vec![("Content-Type", "text/plain")],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            body.clone(),
            vec![("Content-Type", "text/plain;charset=UTF-8")],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            form.clone(),
            vec![("Content-Type", "application/x-www-form-urlencoded")],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            body.clone(),
            vec![("Content-Type", "multipart/form-data; boundary=x")],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            body.clone(),
            vec![("Content-Type", "")],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        // Cross-origin callers, by Origin (no Sec-Fetch-Site)...
        (
            body.clone(),
            vec![("Origin", EVIL), ("Sec-Fetch-Site", "")],
            StatusCode::FORBIDDEN,
            "cross_origin_refused",
        ),
        (
            body.clone(),
            vec![("Origin", account.as_str()), ("Sec-Fetch-Site", "")],
            StatusCode::FORBIDDEN,
            "cross_origin_refused",
        ),
        (
            body.clone(),
            vec![("Origin", "null"), ("Sec-Fetch-Site", "")],
            StatusCode::FORBIDDEN,
            "cross_origin_refused",
        ),
        // ...and by Sec-Fetch-Site, which wins over Origin.
        (
            body.clone(),
            vec![("Origin", shop.as_str()), ("Sec-Fetch-Site", "cross-site")],
            StatusCode::FORBIDDEN,
            "cross_origin_refused",
        ),
        (
            body.clone(),
            vec![("Sec-Fetch-Site", "cross-site")],
            StatusCode::FORBIDDEN,
            "cross_origin_refused",
        ),
        (
            body.clone(),
            vec![("Sec-Fetch-Site", "same-site")],
            StatusCode::FORBIDDEN,
            "cross_origin_refused",
        ),
        (
            body.clone(),
            vec![("Sec-Fetch-Site", "none")],
            StatusCode::FORBIDDEN,
            "cross_origin_refused",
        ),
        // A cross-origin form post is refused for its origin first.
        (
            form.clone(),
            vec![
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Origin", EVIL),
                ("Sec-Fetch-Site", "cross-site"),
            ],
            StatusCode::FORBIDDEN,
            "cross_origin_refused",
        ),
    ];
    for (body, headers, status, code) in refusals {
        let page = exchange_raw(&http, &app, "shop", body, &headers).await;
        assert_eq!(page.status, status, "{headers:?}: {}", page.body);
        assert_refused(&page, status, code);
    }
    // `Origin: null` (no-referrer pages) is trusted with Sec-Fetch-Site: same-origin.
    let page = exchange_raw(
        &http,
        &app,
        "shop",
        body.clone(),
        &[("Origin", "null"), ("Sec-Fetch-Site", "same-origin")],
    )
    .await;
    assert_view(&page, Some("alice"), None);
    assert!(page.set_cookie(SESSION_COOKIE).is_some());
    // A charset parameter is fine; so is the site's own Origin alone.
    let (token, verifier) = token_for(&http, &app, "account", "shop", &id).await;
    let body = serde_json::json!({"token": token, "verifier": verifier, "from": "account"});
    let page = exchange_raw(
        &http,
        &app,
        "shop",
        body.to_string().into_bytes(),
        &[
            ("Content-Type", "application/json; charset=utf-8"),
            ("Origin", shop.as_str()),
            ("Sec-Fetch-Site", ""),
        ],
    )
    .await;
    assert_view(&page, Some("alice"), None);
}

async fn malformed_bodies_have_stable_codes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let http = Http::new(&app);
    let id = create_session(&app, "account", Some("alice")).await;
    let (token, verifier) = token_for(&http, &app, "account", "shop", &id).await;
    let nested = |depth: usize| {
        format!(
            "{{\"token\":{}{},\"verifier\":\"{verifier}\",\"from\":\"account\"}}",
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    let huge_token = "a".repeat(1024 * 1024);
    let cases: Vec<(String, String)> = vec![
        ("empty".into(), String::new()),
        ("not JSON".into(), "{not json".into()),
        ("truncated".into(), format!("{{\"token\":\"{token}\"")),
        ("array".into(), "[]".into()),
        ("null".into(), "null".into()),
        ("string".into(), "\"token\"".into()),
        ("no verifier".into(), format!("{{\"token\":\"{token}\"}}")),
        (
            "unknown field".into(),
            serde_json::json!({"token": token, "verifier": verifier, "from": "account", "session_id": id}).to_string(),
        ),
        (
            "duplicate field".into(),
            format!(
                "{{\"token\":\"x\",\"token\":\"{token}\",\"verifier\":\"{verifier}\",\"from\":\"account\"}}"
            ),
        ),
        (
            "token as a number".into(),
            format!("{{\"token\":1,\"verifier\":\"{verifier}\",\"from\":\"account\"}}"),
        ),
        (
            "verifier as null".into(),
            format!("{{\"token\":\"{token}\",\"verifier\":null,\"from\":\"account\"}}"),
        ),
        ("nested 100".into(), nested(100)),
        ("nested 1 000".into(), nested(1_000)),
        ("nested 3 000 (under the size limit)".into(), nested(3_000)),
        ("nested 10 000".into(), nested(10_000)),
        (
            "1 MB token".into(),
            format!("{{\"token\":\"{huge_token}\",\"verifier\":\"{verifier}\",\"from\":\"account\"}}"),
        ),
        ("1 MB of spaces".into(), " ".repeat(1024 * 1024)),
        (
            "malformed verifier".into(),
            format!("{{\"token\":\"{token}\",\"verifier\":\"short\",\"from\":\"account\"}}"),
        ),
        (
            "verifier with a bad character".into(),
            format!(
                "{{\"token\":\"{token}\",\"verifier\":\"{}*\",\"from\":\"account\"}}",
                &verifier[..42]
            ),
        ),
    ];
    let mut cases: Vec<(String, Vec<u8>)> = cases
        .into_iter()
        .map(|(name, body)| (name, body.into_bytes()))
        .collect();
    let not_utf8 = format!("{{\"token\":\"#\",\"verifier\":\"{verifier}\",\"from\":\"account\"}}");
    let mut not_utf8 = not_utf8.into_bytes();
    let at = not_utf8.iter().position(|b| *b == b'#').unwrap();
    not_utf8[at] = 0xff;
    cases.push(("not UTF-8".into(), not_utf8));
    for (name, body) in &cases {
        let page = exchange_raw(&http, &app, "shop", body.clone(), &[]).await;
        let code = page.error_code();
        let expected = match page.status {
            StatusCode::BAD_REQUEST => ["invalid_json", "invalid_request"].as_slice(),
            StatusCode::PAYLOAD_TOO_LARGE => ["payload_too_large"].as_slice(),
            other => panic!("{name}: {other}: {}", page.body),
        };
        assert!(
            code.as_deref().is_some_and(|c| expected.contains(&c)),
            "{name}: {} {code:?}",
            page.status
        );
        assert_refused(&page, page.status, code.as_deref().unwrap());
        eprintln!("{name}: {} {}", page.status, code.unwrap());
    }
    // Sizes decide 413 exactly; shapes decide the 400 code exactly.
    let status_of = |name: &str| {
        let (_, body) = cases.iter().find(|(n, _)| n == name).unwrap();
        let body = body.clone();
        let http = &http;
        let app = &app;
        async move {
            let page = exchange_raw(http, app, "shop", body, &[]).await;
            (page.status, page.error_code().unwrap())
        }
    };
    for name in ["1 MB token", "1 MB of spaces", "nested 10 000"] {
        assert_eq!(
            status_of(name).await,
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large".to_owned()
            ),
            "{name}"
        );
    }
    for name in [
        "not JSON",
        "unknown field",
        "duplicate field",
        "nested 3 000 (under the size limit)",
    ] {
        assert_eq!(
            status_of(name).await,
            (StatusCode::BAD_REQUEST, "invalid_json".to_owned()),
            "{name}"
        );
    }
    assert_eq!(
        status_of("malformed verifier").await,
        (StatusCode::BAD_REQUEST, "invalid_request".to_owned())
    );
    // The server is still fine, and the token was never burnt.
    assert_view(
        &exchange(&http, &app, "shop", &token, &verifier, "account").await,
        Some("alice"),
        None,
    );
}

// ---------------------------------------------------------- header delivery

async fn header_delivery_gives_the_id_and_takes_x_session_id(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.sites[1].delivery = Delivery::Header;
    })
    .await;
    let http = Http::new(&app);
    let id = create_session(&app, "account", Some("alice")).await;
    let (token, verifier) = token_for(&http, &app, "account", "shop", &id).await;
    let page = exchange(&http, &app, "shop", &token, &verifier, "account").await;
    assert_view(&page, Some("alice"), Some(&id));
    assert!(
        page.set_cookies.is_empty(),
        "header delivery sets no cookie: {:?}",
        page.set_cookies
    );
    // The client sends the id back in X-Session-Id.
    let page = session_read(&http, &app, "shop", &[("X-Session-Id", &id)]).await;
    assert_view(&page, Some("alice"), Some(&id));
    // The header wins over a cookie for another session.
    let other = create_session(&app, "shop", Some("mallory")).await;
    let other_cookie = cookie_header(&other);
    let page = session_read(
        &http,
        &app,
        "shop",
        &[("Cookie", &other_cookie), ("X-Session-Id", &id)],
    )
    .await;
    assert_view(&page, Some("alice"), Some(&id));
    // A malformed header is no session, whatever the cookie says.
    assert_refused(
        &session_read(
            &http,
            &app,
            "shop",
            &[("Cookie", &other_cookie), ("X-Session-Id", "junk")],
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "no_session",
    );
    assert_refused(
        &session_read(&http, &app, "shop", &[]).await,
        StatusCode::UNAUTHORIZED,
        "no_session",
    );
    // A session shop never joined is not shop's.
    let checkout_only = create_session(&app, "checkout", Some("carol")).await;
    assert_refused(
        &session_read(&http, &app, "shop", &[("X-Session-Id", &checkout_only)]).await,
        StatusCode::UNAUTHORIZED,
        "no_session",
    );
    // Cookie-delivery sites never show the id.
    let (token, verifier) = token_for(&http, &app, "account", "checkout", &id).await;
    assert_view(
        &exchange(&http, &app, "checkout", &token, &verifier, "account").await,
        Some("alice"),
        None,
    );
}

// ---------------------------------------------------------- /bridge/session

async fn session_endpoint_answers_the_view_or_no_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let http = Http::new(&app);
    let id = create_session(&app, "shop", Some("sam")).await;
    assert_view(
        &session_with_cookie(&http, &app, "shop", &id).await,
        Some("sam"),
        None,
    );
    // Without a session: 401 no_session, as problem+json for JSON callers...
    for cookie in [None, Some("junk".to_owned()), Some("A".repeat(43))] {
        let headers: Vec<(&str, String)> = cookie
            .iter()
            .map(|c| ("Cookie", cookie_header(c)))
            .collect();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        assert_refused(
            &session_read(&http, &app, "shop", &headers).await,
            StatusCode::UNAUTHORIZED,
            "no_session",
        );
    }
    // ...a session of a site that never joined it is not this site's...
    assert_refused(
        &session_with_cookie(&http, &app, "checkout", &id).await,
        StatusCode::UNAUTHORIZED,
        "no_session",
    );
    // ...and an HTML page for browsers.
    let page = http
        .get(
            &format!("{}/bridge/session", app.origin("shop")),
            &[("Accept", "text/html")],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert_eq!(page.error_code().as_deref(), Some("no_session"));
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("text/html"))
    );
    assert_eq!(page.header("cache-control"), Some("no-store"));
}

async fn session_reads_slide_the_idle_timeout(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let http = Http::new(&app);
    let read = create_session(&app, "shop", Some("sam")).await;
    let unread = create_session(&app, "shop", Some("una")).await;
    match backend {
        Backend::Memory => {
            // The memory store expires records on the app's manual clock.
            let minutes = |m: u64| Duration::from_secs(m * 60);
            app.clock.advance(minutes(20));
            let view = assert_view(
                &session_with_cookie(&http, &app, "shop", &read).await,
                Some("sam"),
                None,
            );
            let expected = time::OffsetDateTime::from_unix_timestamp(app.clock.unix() + 30 * 60)
                .unwrap()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            assert_eq!(view["expires_at"].as_str(), Some(expected.as_str()));
            // 40 minutes after creation: past the idle timeout from
            // creation, within it from the read.
            app.clock.advance(minutes(20));
            assert_view(
                &session_with_cookie(&http, &app, "shop", &read).await,
                Some("sam"),
                None,
            );
            assert_refused(
                &session_with_cookie(&http, &app, "shop", &unread).await,
                StatusCode::UNAUTHORIZED,
                "no_session",
            );
            // 31 minutes without a read: gone.
            app.clock.advance(minutes(31));
            assert_refused(
                &session_with_cookie(&http, &app, "shop", &read).await,
                StatusCode::UNAUTHORIZED,
                "no_session",
            );
        }
        Backend::Redis => {
            // Redis keeps TTLs in its own real time, not on the app's manual
            // clock, so the clock-driven walk above cannot run here. Instead,
            // shorten the key's TTL behind the bridge's back and check that a
            // read sets it to the idle timeout again.
            let server = app.redis.as_ref().unwrap();
            let client = ::redis::Client::open(server.url()).unwrap();
            let mut con = client.get_multiplexed_async_connection().await.unwrap();
            let key = format!("sb:s:{read}");
            let _: i64 = ::redis::cmd("PEXPIRE")
                .arg(&key)
                .arg(5_000)
                .query_async(&mut con)
                .await
                .unwrap();
            assert_view(
                &session_with_cookie(&http, &app, "shop", &read).await,
                Some("sam"),
                None,
            );
            let ttl: i64 = ::redis::cmd("PTTL")
                .arg(&key)
                .query_async(&mut con)
                .await
                .unwrap();
            assert!(
                (29 * 60_000..=30 * 60_000).contains(&ttl),
                "the read slides the TTL to the idle timeout: {ttl} ms"
            );
            // The read is no write: the version stays.
            let raw: String = ::redis::cmd("GET")
                .arg(&key)
                .query_async(&mut con)
                .await
                .unwrap();
            let stored: serde_json::Value = serde_json::from_str(&raw).unwrap();
            assert_eq!(stored["v"], 1, "{stored}");
            // A read of a session whose key has expired is no session.
            let _: i64 = ::redis::cmd("PEXPIRE")
                .arg(format!("sb:s:{unread}"))
                .arg(1)
                .query_async(&mut con)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_refused(
                &session_with_cookie(&http, &app, "shop", &unread).await,
                StatusCode::UNAUTHORIZED,
                "no_session",
            );
        }
    }
}

// ------------------------------------------------------- handshake script

async fn handshake_scripts_are_cacheable_and_pinned(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let http = Http::new(&app);
    for (file, source) in [
        ("session-bridge.js", session_bridge::handshake::CLASSIC),
        ("session-bridge.mjs", session_bridge::handshake::MODULE),
    ] {
        for site in ["account", "shop"] {
            let page = http
                .get(&format!("{}/bridge/{file}", app.origin(site)), &[])
                .await;
            assert_eq!(page.status, StatusCode::OK, "{file}");
            assert_eq!(
                page.header("content-type"),
                Some("text/javascript; charset=utf-8"),
                "{file}"
            );
            let cache = page.header("cache-control").unwrap_or_default();
            assert!(!cache.contains("no-store"), "{file}: {cache}");
            assert!(
                cache.split(',').any(|d| d.trim() == "public"),
                "{file}: {cache}"
            );
            let max_age: u64 = cache
                .split(',')
                .find_map(|d| d.trim().strip_prefix("max-age="))
                .unwrap_or_else(|| panic!("{file}: no max-age in {cache}"))
                .parse()
                .unwrap();
            assert!(max_age >= 24 * 3600, "{file}: max-age={max_age}");
            let etag = format!("\"{}\"", session_bridge::handshake::sri(source));
            assert_eq!(page.header("etag"), Some(etag.as_str()), "{file}");
            assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
            assert!(page.set_cookies.is_empty());
            assert_eq!(page.body, source, "{file}");
        }
    }
    match std::process::Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {
            let dir = tempfile::tempdir().unwrap();
            for (file, source) in [
                ("session-bridge.js", session_bridge::handshake::CLASSIC),
                ("session-bridge.mjs", session_bridge::handshake::MODULE),
            ] {
                let path = dir.path().join(file);
                std::fs::write(&path, source).unwrap();
                let out = std::process::Command::new("node")
                    .arg("--check")
                    .arg(&path)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "node --check {file}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        _ => eprintln!("note: `node` is not on PATH; skipping `node --check` of the scripts"),
    }
}

async fn hardening_of_headers_and_revalidation(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let http = Http::new(&app);
    let session = create_session(&app, "account", Some("ivy")).await;
    let (token, verifier) = token_for(&http, &app, "account", &app.origin("shop"), &session).await;
    let body =
        serde_json::json!({"token": token, "verifier": verifier, "from": app.origin("account")});
    // Contradictory headers: an Origin of another site is refused whatever
    // Sec-Fetch-Site claims.
    let forged = exchange_raw(
        &http,
        &app,
        "shop",
        body.to_string().into_bytes(),
        &[("Origin", "http://evil.localhost:1")],
    )
    .await;
    assert_refused(&forged, StatusCode::FORBIDDEN, "cross_origin_refused");
    // Media types are case-insensitive; `application/jsonfoo` is not JSON.
    let odd = exchange_raw(
        &http,
        &app,
        "shop",
        body.to_string().into_bytes(),
        &[("Content-Type", "application/jsonfoo")],
    )
    .await;
    assert_refused(
        &odd,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let upper = exchange_raw(
        &http,
        &app,
        "shop",
        body.to_string().into_bytes(),
        &[("Content-Type", "Application/JSON")],
    )
    .await;
    assert_eq!(upper.status, StatusCode::OK, "{}", upper.body);
    // `from` is required: without it any partner's token would do.
    let no_from = serde_json::json!({"token": "a.b.c", "verifier": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"});
    let refused = exchange_raw(&http, &app, "shop", no_from.to_string().into_bytes(), &[]).await;
    assert_refused(&refused, StatusCode::BAD_REQUEST, "invalid_json");
    // The script's ETag revalidates.
    let url = format!("{}/bridge/session-bridge.js", app.origin("shop"));
    let etag = format!(
        "\"{}\"",
        session_bridge::handshake::sri(session_bridge::handshake::CLASSIC)
    );
    let revalidated = http.get(&url, &[("If-None-Match", etag.as_str())]).await;
    assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED);
    assert!(revalidated.body.is_empty());
    let stale = http.get(&url, &[("If-None-Match", "\"sha384-old\"")]).await;
    assert_eq!(stale.status, StatusCode::OK);
}

macro_rules! on_every_store {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(super::Backend::Memory).await })*
        }
        mod redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(super::Backend::Redis).await })*
        }
    };
}

on_every_store!(
    frame_posts_a_token_to_the_exact_partner_origin,
    frame_ancestors_name_every_configured_origin,
    frame_without_a_session_says_so_and_makes_none,
    frame_modes_and_malformed_challenges,
    frame_refuses_unknown_and_non_partner_sites,
    exchange_sets_the_cookie_and_answers_the_public_view,
    exchange_refusals_leave_the_token_usable,
    a_token_for_another_site_is_refused,
    replays_are_refused_and_a_leaked_token_revokes,
    exchange_accepts_same_origin_json_only,
    malformed_bodies_have_stable_codes,
    header_delivery_gives_the_id_and_takes_x_session_id,
    session_endpoint_answers_the_view_or_no_session,
    session_reads_slide_the_idle_timeout,
    handshake_scripts_are_cacheable_and_pinned,
    hardening_of_headers_and_revalidation,
);
