//! Flow B (the postMessage hand-off of `session-bridge.js`) in a real browser:
//! Debian's headless Chromium through its own `chromedriver`
//! (tests/support/webdriver.rs), on the demo partner page `/embed` of the shop.
//!
//! What decides the path the script takes is the browser, so each test sets
//! it up the way a person's browser would be:
//! - third-party cookies: the pref `profile.cookie_controls_mode` (0 allows
//!   them, 1 blocks them, as this Chromium does by default);
//! - the popup blocker: chromedriver turns it off by default
//!   (`--disable-popup-blocking`); every browser here leaves that switch out,
//!   so `window.open` works only with a user gesture. A WebDriver click is
//!   one; a click made by a script run through WebDriver (`execute`) is not.
//!
//! A probe installed in the page (see [`PROBE`]) records each `window.open`
//! (and whether it gave a window), each message the page received (origin,
//! type, and whether it came from a frame or a popup of the page; never the
//! token itself) and the hidden iframe coming and going. Its `marker`
//! survives only while the page does not navigate.
//!
//! The attacker is a separate tiny HTTP server in the test ([`EvilServer`]),
//! reached as `http://evil.localhost:PORT`: a third site the bridge does not
//! serve.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::app::{Backend, TestApp};
use support::browser::Browser as HttpBrowser;
use support::webdriver::{Browser, BrowserOptions, ChromeDriver, element_id};

const SESSION_COOKIE: &str = "__Host-sb";
const REDIRECT_GUARD_PREFIX: &str = "session-bridge:redirect:";
/// How long a flow may take in the browser before the test gives up.
const FLOW_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the tests watch for something that must not happen.
const QUIET_PERIOD: Duration = Duration::from_millis(2500);

// ---------------------------------------------------------------------------
// Browsers
// ---------------------------------------------------------------------------

/// Whether the browser sends cookies to third-party frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ThirdPartyCookies {
    Allowed,
    Blocked,
}

/// A browser with a fresh profile, the network log on, the popup blocker on,
/// and third-party cookies allowed or blocked.
async fn browser(driver: &ChromeDriver, cookies: ThirdPartyCookies) -> Browser {
    let mode = match cookies {
        ThirdPartyCookies::Allowed => 0,
        ThirdPartyCookies::Blocked => 1,
    };
    driver
        .browser_with(BrowserOptions {
            prefs: Some(json!({ "profile.cookie_controls_mode": mode })),
            network_log: true,
            exclude_switches: vec!["disable-popup-blocking".to_owned()],
        })
        .await
}

/// Signs in on account's login page by typing a name and submitting.
async fn sign_in(browser: &Browser, app: &TestApp, name: &str) {
    browser
        .goto(&format!("{}/login", app.origin("account")))
        .await;
    submit_login(browser, name).await;
    browser
        .wait_for_text("main", &format!("Signed in as {name}"))
        .await;
}

/// Types `name` into the login form on the current page and submits it.
async fn submit_login(browser: &Browser, name: &str) {
    let field = browser.find("input[name=username]").await;
    browser.send_keys(&field, name).await;
    let submit = browser.find("form button[type=submit]").await;
    browser.click(&submit).await;
}

/// The session cookie of the site the browser is on.
async fn session_cookie(browser: &Browser) -> Option<String> {
    let cookie = browser.cookie(SESSION_COOKIE).await?;
    cookie["value"].as_str().map(str::to_owned)
}

/// Opens the shop's `/embed`, picks `mode` and installs the probe.
async fn open_embed(browser: &Browser, app: &TestApp, mode: &str) {
    browser.goto(&format!("{}/embed", app.origin("shop"))).await;
    browser.find("#connect").await;
    let chosen = browser
        .execute(
            "const select = document.getElementById('mode');
             select.value = arguments[0];
             return select.value;",
            vec![json!(mode)],
        )
        .await;
    assert_eq!(chosen, json!(mode));
    // The page asks `/bridge/session` once on load; let that answer arrive
    // (draining the network log) so what the tests read from the log
    // afterwards is only what a click did.
    browser
        .wait_for("the page's own session check", async |b| {
            network_log(b)
                .await
                .iter()
                .any(|h| h.path().ends_with("/bridge/session") && h.status.is_some())
                .then_some(())
        })
        .await;
    install_probe(browser).await;
}

/// Records `window.open` calls, received messages and the hidden iframe.
const PROBE: &str = r#"
const probe = { marker: arguments[0], opened: [], messages: [], frames: [] };
const popups = [];
const open = window.open;
window.open = function () {
  const popup = open.apply(this, arguments);
  if (popup) { popups.push(popup); }
  probe.opened.push({ url: String(arguments[0]), window: popup !== null, t: performance.now() });
  return popup;
};
window.addEventListener("message", (event) => {
  const data = event.data;
  const isObject = data !== null && typeof data === "object";
  probe.messages.push({
    origin: event.origin,
    type: isObject ? String(data.type) : typeof data,
    carriesToken: isObject && typeof data.token === "string",
    fromPopup: popups.includes(event.source),
    fromFrame: Array.from(document.querySelectorAll("iframe")).some((f) => f.contentWindow === event.source),
    t: performance.now(),
  });
});
new MutationObserver((records) => {
  for (const record of records) {
    for (const node of record.addedNodes) {
      if (node.tagName === "IFRAME") { probe.frames.push({ event: "added", src: node.src, t: performance.now() }); }
    }
    for (const node of record.removedNodes) {
      if (node.tagName === "IFRAME") { probe.frames.push({ event: "removed", t: performance.now() }); }
    }
  }
}).observe(document.documentElement, { childList: true, subtree: true });
window.__sbProbe = probe;
return true;
"#;

const MARKER: &str = "this page did not navigate";

async fn install_probe(browser: &Browser) {
    assert_eq!(browser.execute(PROBE, vec![json!(MARKER)]).await, true);
}

/// What the probe recorded; `None` when the page navigated away (the probe is gone).
async fn probe(browser: &Browser) -> Option<Value> {
    let value = browser
        .execute("return window.__sbProbe || null;", vec![])
        .await;
    (!value.is_null()).then_some(value)
}

/// Clicks `#connect` like a person (a user gesture: a popup may open).
async fn click_connect(browser: &Browser) {
    let button = browser.find("#connect").await;
    browser.click(&button).await;
}

/// Clicks `#connect` from a script: no user gesture, so Chromium's popup
/// blocker makes `window.open` return `null`.
async fn click_connect_without_gesture(browser: &Browser) {
    let activation = browser
        .execute(
            "const active = navigator.userActivation.isActive;
             document.getElementById('connect').click();
             return active;",
            vec![],
        )
        .await;
    assert_eq!(
        activation, false,
        "a script run by WebDriver carries no user activation"
    );
}

async fn window_handles(browser: &Browser) -> Vec<String> {
    let value = browser
        .command(Method::GET, "/window/handles", None)
        .await
        .unwrap_or_else(|e| panic!("window handles: {e}"));
    value
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|h| h.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn switch_to_window(browser: &Browser, handle: &str) {
    browser
        .command(Method::POST, "/window", Some(json!({ "handle": handle })))
        .await
        .unwrap_or_else(|e| panic!("switch to window {handle}: {e}"));
}

/// How `#status` ended.
#[derive(Debug)]
struct Outcome {
    state: String,
    code: Option<String>,
    text: String,
    url: String,
    /// The most windows the browser had while the flow ran.
    max_windows: usize,
}

/// Waits (bounded) until `#status` says `connected` or `failed`, through
/// any navigation, counting the browser's windows meanwhile.
async fn wait_for_outcome(browser: &Browser) -> Outcome {
    let deadline = tokio::time::Instant::now() + FLOW_TIMEOUT;
    let mut max_windows = 0;
    let mut last = Value::Null;
    loop {
        if let Ok(handles) = browser.command(Method::GET, "/window/handles", None).await {
            max_windows = max_windows.max(handles.as_array().map_or(0, Vec::len));
        }
        let read = browser
            .try_execute(
                "const s = document.getElementById('status');
                 return { url: location.href, state: s && s.getAttribute('data-state'),
                          code: s && s.getAttribute('data-code'), text: s ? s.textContent : document.body.innerText.slice(0, 300) };",
                vec![],
            )
            .await;
        if let Some(read) = read {
            let state = read["state"].as_str().unwrap_or_default();
            if state == "connected" || state == "failed" {
                return Outcome {
                    state: state.to_owned(),
                    code: read["code"].as_str().map(str::to_owned),
                    text: read["text"].as_str().unwrap_or_default().to_owned(),
                    url: read["url"].as_str().unwrap_or_default().to_owned(),
                    max_windows,
                };
            }
            last = read;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no outcome within {FLOW_TIMEOUT:?}; last seen: {last}"
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

/// Puts a link to `href` on the current page and clicks it.
async fn click_new_link(browser: &Browser, href: &str) {
    let link = browser
        .execute(
            "const a = document.createElement('a');
             a.href = arguments[0];
             a.textContent = 'follow me';
             a.id = 'sb-test-link';
             a.style.display = 'block';
             document.body.prepend(a);
             return a;",
            vec![json!(href)],
        )
        .await;
    let link = element_id(&link).unwrap_or_else(|| panic!("no link element: {link}"));
    browser.click(&link).await;
}

// ---------------------------------------------------------------------------
// The network log: DevTools events chromedriver recorded for the page's
// tab, and for a popup only when it attached to the new window in time
// ---------------------------------------------------------------------------

/// One hop the browser sent, as the network log tells it.
#[derive(Debug, Clone, Default)]
struct Hop {
    id: String,
    method: String,
    url: String,
    post_data: Option<String>,
    /// The headers as sent (cookies included), from `requestWillBeSentExtraInfo`.
    sent_headers: Option<Value>,
    status: Option<u64>,
    failure: Option<String>,
    /// Only the answer is in this batch of the log (the request was in an
    /// earlier one).
    answer_only: bool,
}

impl Hop {
    fn header(&self, name: &str) -> Option<String> {
        self.sent_headers
            .as_ref()?
            .as_object()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_str().map(str::to_owned))
    }

    fn path(&self) -> String {
        url::Url::parse(&self.url)
            .map(|u| format!("{}{}", u.host_str().unwrap_or_default(), u.path()))
            .unwrap_or_default()
    }
}

/// The requests of the main tab since the last call (drains the log).
async fn network_log(browser: &Browser) -> Vec<Hop> {
    let value = browser
        .command(
            Method::POST,
            "/se/log",
            Some(json!({ "type": "performance" })),
        )
        .await
        .unwrap_or_else(|e| panic!("network log: {e}"));
    let mut hops: Vec<Hop> = Vec::new();
    let mut extra: Vec<(String, Value)> = Vec::new();
    for entry in value.as_array().into_iter().flatten() {
        let Some(message) = entry["message"].as_str() else {
            continue;
        };
        let Ok(message) = serde_json::from_str::<Value>(message) else {
            continue;
        };
        let message = &message["message"];
        let params = &message["params"];
        let id = params["requestId"].as_str().unwrap_or_default().to_owned();
        match message["method"].as_str().unwrap_or_default() {
            "Network.requestWillBeSent" => {
                if let Some(status) = params["redirectResponse"]["status"].as_u64()
                    && let Some(previous) = hops.iter_mut().rev().find(|h| h.id == id)
                {
                    previous.status = Some(status);
                }
                let request = &params["request"];
                hops.push(Hop {
                    id,
                    method: request["method"].as_str().unwrap_or_default().to_owned(),
                    url: request["url"].as_str().unwrap_or_default().to_owned(),
                    post_data: request["postData"].as_str().map(str::to_owned),
                    ..Hop::default()
                });
            }
            "Network.requestWillBeSentExtraInfo" => {
                extra.push((id, params["headers"].clone()));
            }
            "Network.responseReceived" => {
                let status = params["response"]["status"].as_u64();
                if let Some(hop) = hops.iter_mut().rev().find(|h| h.id == id) {
                    hop.status = status;
                } else {
                    // Its request was in an earlier batch.
                    hops.push(Hop {
                        id,
                        url: params["response"]["url"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        status,
                        answer_only: true,
                        ..Hop::default()
                    });
                }
            }
            "Network.loadingFailed" => {
                if let Some(hop) = hops.iter_mut().rev().find(|h| h.id == id) {
                    hop.failure = Some(format!(
                        "{} {} {}",
                        params["errorText"].as_str().unwrap_or_default(),
                        params["blockedReason"].as_str().unwrap_or_default(),
                        params["corsErrorStatus"]["corsError"]
                            .as_str()
                            .unwrap_or_default()
                    ));
                }
            }
            _ => {}
        }
    }
    // The n-th `ExtraInfo` of a request id belongs to its n-th hop.
    for (id, headers) in extra {
        if let Some(hop) = hops
            .iter_mut()
            .find(|h| h.id == id && h.sent_headers.is_none())
        {
            hop.sent_headers = Some(headers);
        }
    }
    hops.retain(|h| h.url.starts_with("http"));
    hops
}

/// The popup's own request for account's frame page. chromedriver logs it
/// only sometimes (when it attached to the new window in time).
fn is_popup_hop(hop: &Hop) -> bool {
    hop.url.contains("/bridge/frame?") && hop.url.contains("mode=popup")
}

/// Checks the popup's requests the log caught (in part, at times: its
/// headers or its answer may be missing): a top-level document request
/// that carried account's session cookie (first party). Returns how many
/// there were.
fn check_popup_hops(hops: &[Hop], account_session: &str) -> usize {
    let popup: Vec<&Hop> = hops.iter().filter(|h| is_popup_hop(h)).collect();
    for hop in &popup {
        if hop.sent_headers.is_some() {
            assert_eq!(
                hop.header("sec-fetch-dest").as_deref(),
                Some("document"),
                "{hop:?}"
            );
            assert!(
                hop.header("cookie")
                    .is_some_and(|c| c.contains(&format!("{SESSION_COOKIE}={account_session}"))),
                "the popup is first-party: account's cookie is sent: {hop:?}"
            );
        }
        assert!(matches!(hop.status, None | Some(200)), "{hop:?}");
    }
    popup.len()
}

/// `METHOD host/path` of the page's hops under `/bridge/` (assets, the
/// script and the popup's own request left out).
fn bridge_hops(hops: &[Hop]) -> Vec<String> {
    hops.iter()
        .filter(|h| {
            let path = h.path();
            !h.answer_only
                && !is_popup_hop(h)
                && path.contains("/bridge/")
                && !path.ends_with("/bridge/assets/bridge.css")
                && !path.ends_with("/bridge/session-bridge.js")
        })
        .map(|h| format!("{} {}", h.method, h.path()))
        .collect()
}

// ---------------------------------------------------------------------------
// What a page keeps
// ---------------------------------------------------------------------------

/// Everything a script on the page could read afterwards.
async fn page_state(browser: &Browser) -> Value {
    browser
        .execute(
            "const dump = (s) => { const o = {}; for (let i = 0; i < s.length; i++) { const k = s.key(i); o[k] = s.getItem(k); } return o; };
             return {
               url: location.href,
               referrer: document.referrer,
               localStorage: dump(window.localStorage),
               sessionStorage: dump(window.sessionStorage),
               documentCookie: document.cookie,
               windowName: window.name,
               performance: performance.getEntries().map((e) => e.name),
               historyState: JSON.stringify(history.state),
               html: document.documentElement.outerHTML,
             };",
            vec![],
        )
        .await
}

/// No secret (nor a part of a token) anywhere in `state`; `localStorage`
/// empty; `sessionStorage` holds at most the script's redirect guard, whose
/// value is a timestamp.
fn assert_no_secrets(state: &Value, tokens: &[String], session_ids: &[String]) {
    let text = state.to_string();
    assert!(!text.contains("token="), "{text}");
    for token in tokens {
        assert!(!text.contains(token.as_str()), "a token leaked: {text}");
        // The claims and the signature (the header is the same in every token).
        for part in token.split('.').skip(1) {
            assert!(!text.contains(part), "a token part leaked: {text}");
        }
    }
    for id in session_ids {
        assert!(!text.contains(id.as_str()), "a session ID leaked: {text}");
    }
    assert_eq!(
        state["localStorage"],
        json!({}),
        "nothing in localStorage: {state}"
    );
    for (key, value) in state["sessionStorage"].as_object().into_iter().flatten() {
        assert!(
            key.starts_with(REDIRECT_GUARD_PREFIX),
            "only the redirect guard in sessionStorage: {key} = {value}"
        );
        let value = value.as_str().unwrap_or_default();
        assert!(
            !value.is_empty() && value.len() <= 16 && value.bytes().all(|b| b.is_ascii_digit()),
            "the redirect guard holds a timestamp only: {key} = {value}"
        );
    }
    let url = state["url"].as_str().unwrap_or_default();
    assert!(!url.contains('?'), "no query left in the page URL: {url}");
}

/// The token a `/bridge/exchange` POST carried (from the network log).
fn exchanged_tokens(hops: &[Hop]) -> Vec<String> {
    hops.iter()
        .filter(|h| h.method == "POST" && h.path().ends_with("/bridge/exchange"))
        .filter_map(|h| {
            let body: Value = serde_json::from_str(h.post_data.as_deref()?).ok()?;
            body["token"].as_str().map(str::to_owned)
        })
        .collect()
}

/// The tokens that travelled in an accept URL (flow A, query mode).
fn tokens_in_urls(hops: &[Hop]) -> Vec<String> {
    hops.iter()
        .filter_map(|h| {
            let url = url::Url::parse(&h.url).ok()?;
            (url.path() == "/bridge/accept")
                .then(|| url.query_pairs().find(|(k, _)| k == "token"))
                .flatten()
                .map(|(_, v)| v.into_owned())
        })
        .collect()
}

/// Leaves the page by a link to the evil server and checks the `Referer`
/// it received: none, or at most an origin, and never a secret.
async fn leave_for(
    browser: &Browser,
    evil: &EvilServer,
    tokens: &[String],
    session_ids: &[String],
) -> Option<String> {
    let landing = format!("{}/landing", evil.origin());
    click_new_link(browser, &landing).await;
    browser
        .wait_for_url("the evil landing page", |u| u == landing)
        .await;
    let seen = evil
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.target == "/landing")
        .expect("the evil server saw the landing request");
    let referer = seen.header("referer");
    if let Some(referer) = &referer {
        let url = url::Url::parse(referer).unwrap();
        assert!(
            url.path() == "/" && url.query().is_none(),
            "at most an origin in the Referer: {referer}"
        );
        for secret in tokens.iter().chain(session_ids) {
            assert!(!referer.contains(secret.as_str()), "{referer}");
        }
    }
    let state = page_state(browser).await;
    assert_no_secrets(&state, tokens, session_ids);
    referer
}

// ---------------------------------------------------------------------------
// The attacker
// ---------------------------------------------------------------------------

/// One request the evil server received.
#[derive(Debug, Clone)]
struct Seen {
    target: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

/// The attacker's page, on a site the bridge knows nothing about.
const EVIL_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Win a teapot</title></head>
<body><h1>Win a teapot</h1>
<button type="button" id="go">Claim your prize</button>
<p id="log"></p>
<script>
window.__got = [];
window.addEventListener("message", function (event) {
  window.__got.push({ origin: event.origin, data: JSON.stringify(event.data), t: performance.now() });
});
</script>
</body></html>
"#;

/// A tiny HTTP/1.1 server on `127.0.0.1:PORT` answering [`EVIL_PAGE`] on
/// every path, recording what it received. Stopped when dropped.
struct EvilServer {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EvilServer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let seen = Arc::clone(&seen);
                            std::thread::spawn(move || {
                                let _ = answer(stream, &seen);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        Self {
            port,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://evil.localhost:PORT` (Chromium resolves `*.localhost` to loopback).
    fn origin(&self) -> String {
        format!("http://evil.localhost:{}", self.port)
    }

    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for EvilServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request head (bounded in size and time) and answers the page.
fn answer(mut stream: TcpStream, seen: &Mutex<Vec<Seen>>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut buffer = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 32 * 1024 {
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buffer[..n]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let target = request_line
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    seen.lock().unwrap().push(Seen {
        target: target.clone(),
        headers,
    });
    let (status, body) = if target.starts_with("/favicon") {
        ("404 Not Found", "")
    } else {
        ("200 OK", EVIL_PAGE)
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// A fresh verifier and its S256 challenge.
fn pkce_pair() -> (String, String) {
    let mut random = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random).unwrap();
    let verifier = URL_SAFE_NO_PAD.encode(random);
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    (verifier, URL_SAFE_NO_PAD.encode(digest.as_ref()))
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A real token for `to`, minted for the attacker's own session on account
/// (signed in over plain HTTP), with a verifier only the attacker knows.
/// Returns `(token, verifier)`.
async fn attackers_token(app: &TestApp, attacker: &str, to: &str) -> (String, String) {
    let mut http = HttpBrowser::new(app.port);
    let account = app.origin("account");
    let signed_in = http
        .post_form(&format!("{account}/login"), &[("username", attacker)])
        .await;
    assert_eq!(
        signed_in.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_in.body
    );
    let (verifier, challenge) = pkce_pair();
    let frame = http
        .get(&format!(
            "{account}/bridge/frame?to={}&challenge={challenge}&mode=iframe",
            urlencode(&app.origin(to))
        ))
        .await;
    assert_eq!(frame.status, StatusCode::OK, "{}", frame.body);
    let start = frame
        .body
        .find("data-token=\"")
        .expect("a token in the frame")
        + 12;
    let end = frame.body[start..].find('"').unwrap() + start;
    let token = frame.body[start..end].to_owned();
    assert_eq!(token.split('.').count(), 3, "{token}");
    (token, verifier)
}

/// Redeems `token` on `site`'s exchange the way a same-origin script would
/// (no `Origin`, JSON): the token is still good if this answers the
/// attacker's session.
async fn redeem(app: &TestApp, site: &str, token: &str, verifier: &str) -> (StatusCode, Value) {
    let client = reqwest::Client::builder()
        .resolve(
            &format!("{site}.localhost"),
            ([127, 0, 0, 1], app.port).into(),
        )
        .build()
        .unwrap();
    let response = client
        .post(format!("{}/bridge/exchange", app.origin(site)))
        .json(&json!({ "token": token, "verifier": verifier, "from": "account" }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// The shop session of the browser, as the shop's page sees it.
async fn shop_session_of(browser: &Browser, app: &TestApp) -> (u64, Value) {
    browser.goto(&format!("{}/embed", app.origin("shop"))).await;
    let answer = browser
        .execute(
            "return fetch('/bridge/session', { credentials: 'same-origin', headers: { Accept: 'application/json' } })
               .then(async (r) => [r.status, await r.json().catch(() => null)]);",
            vec![],
        )
        .await;
    (answer[0].as_u64().unwrap_or_default(), answer[1].clone())
}

// ---------------------------------------------------------------------------
// 1. The iframe path
// ---------------------------------------------------------------------------

/// Third-party cookies allowed, mode `auto`: the hidden iframe sees account's
/// `SameSite=None` cookie, gets a token, the page exchanges it and greets the
/// user. No popup, no navigation, no `/bridge/start`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iframe_path_with_third_party_cookies_allowed() {
    let app = TestApp::spawn(Backend::Memory).await;
    let driver = ChromeDriver::start().await;
    let browser = browser(&driver, ThirdPartyCookies::Allowed).await;
    let (account, shop) = (app.origin("account"), app.origin("shop"));
    sign_in(&browser, &app, "Ada").await;
    let account_session = session_cookie(&browser).await.expect("account's session");
    open_embed(&browser, &app, "auto").await;
    network_log(&browser).await;

    click_connect(&browser).await;
    let outcome = wait_for_outcome(&browser).await;
    assert_eq!(outcome.state, "connected", "{outcome:?}");
    assert_eq!(outcome.text, "Hello, Ada!");
    assert_eq!(outcome.url, format!("{shop}/embed"));
    assert_eq!(outcome.max_windows, 1, "no popup: {outcome:?}");
    assert_eq!(window_handles(&browser).await.len(), 1);

    let probe = probe(&browser).await.expect("the page did not navigate");
    assert_eq!(probe["marker"], MARKER);
    assert_eq!(probe["opened"], json!([]), "window.open was never called");
    let messages = probe["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{probe}");
    assert_eq!(messages[0]["origin"], account.as_str());
    assert_eq!(messages[0]["type"], "sb:token");
    assert_eq!(messages[0]["fromFrame"], true, "{probe}");
    let frames = probe["frames"].as_array().unwrap();
    assert_eq!(
        frames.len(),
        2,
        "one hidden iframe, added then removed: {probe}"
    );
    assert!(
        frames[0]["src"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{account}/bridge/frame?"))
    );

    let hops = network_log(&browser).await;
    assert_eq!(
        bridge_hops(&hops),
        [
            "GET shop.localhost/bridge/session",
            "GET account.localhost/bridge/frame",
            "POST shop.localhost/bridge/exchange",
        ],
        "{hops:#?}"
    );
    let frame = hops
        .iter()
        .find(|h| h.path() == "account.localhost/bridge/frame")
        .unwrap();
    assert!(frame.url.contains("mode=iframe"), "{frame:?}");
    assert_eq!(frame.status, Some(200), "{frame:?}");
    let cookie = frame.header("cookie").unwrap_or_default();
    assert!(
        cookie.contains(&format!("{SESSION_COOKIE}={account_session}")),
        "the frame request carried account's session cookie: {frame:?}"
    );
    assert_eq!(frame.header("sec-fetch-dest").as_deref(), Some("iframe"));
    assert_eq!(
        frame.header("sec-fetch-storage-access").as_deref(),
        Some("active"),
        "{frame:?}"
    );
    let exchange = hops
        .iter()
        .find(|h| h.path() == "shop.localhost/bridge/exchange")
        .unwrap();
    assert_eq!(exchange.status, Some(200), "{exchange:?}");
    assert_eq!(
        exchange.header("sec-fetch-site").as_deref(),
        Some("same-origin")
    );
    assert_eq!(
        exchange.header("content-type").as_deref(),
        Some("application/json")
    );

    let shop_cookie = browser
        .cookie(SESSION_COOKIE)
        .await
        .expect("shop's session");
    assert_eq!(shop_cookie["httpOnly"], true, "{shop_cookie}");
    browser.quit().await;
}

// ---------------------------------------------------------------------------
// 2. The popup path
// ---------------------------------------------------------------------------

/// Third-party cookies blocked (this Chromium's default), mode `auto`, a real
/// click: the iframe says `sb:no-session`, the script opens the popup (first
/// party: account's cookie is sent), the popup posts the token, the page
/// connects. The popup is gone afterwards, and the page never navigated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn popup_path_with_third_party_cookies_blocked() {
    let app = TestApp::spawn(Backend::Memory).await;
    let driver = ChromeDriver::start().await;
    let browser = browser(&driver, ThirdPartyCookies::Blocked).await;
    let (account, shop) = (app.origin("account"), app.origin("shop"));
    sign_in(&browser, &app, "Ada").await;
    let account_session = session_cookie(&browser).await.expect("account's session");
    open_embed(&browser, &app, "auto").await;
    network_log(&browser).await;

    click_connect(&browser).await;
    let outcome = wait_for_outcome(&browser).await;
    assert_eq!(outcome.state, "connected", "{outcome:?}");
    assert_eq!(outcome.text, "Hello, Ada!");
    assert_eq!(outcome.url, format!("{shop}/embed"));

    let probe = probe(&browser).await.expect("the page did not navigate");
    assert_eq!(probe["marker"], MARKER);
    let opened = probe["opened"].as_array().unwrap();
    assert_eq!(opened.len(), 1, "one popup: {probe}");
    assert_eq!(opened[0]["window"], true, "the popup opened: {probe}");
    let popup_url = opened[0]["url"].as_str().unwrap();
    assert!(
        popup_url.starts_with(&format!("{account}/bridge/frame?"))
            && popup_url.contains("mode=popup"),
        "{popup_url}"
    );
    let messages: Vec<(String, String, bool, bool)> = probe["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["origin"].as_str().unwrap().to_owned(),
                m["type"].as_str().unwrap().to_owned(),
                m["fromFrame"] == true,
                m["fromPopup"] == true,
            )
        })
        .collect();
    assert_eq!(
        messages,
        [
            (account.clone(), "sb:no-session".to_owned(), true, false),
            (account.clone(), "sb:token".to_owned(), false, true),
        ],
        "the iframe saw no session, the popup sent the token"
    );

    let hops = network_log(&browser).await;
    // The popup's own request to account/bridge/frame?mode=popup is in
    // this log only sometimes (the probe always saw the popup).
    assert!(check_popup_hops(&hops, &account_session) <= 1, "{hops:#?}");
    assert_eq!(
        bridge_hops(&hops),
        [
            "GET shop.localhost/bridge/session",
            "GET account.localhost/bridge/frame",
            "POST shop.localhost/bridge/exchange",
        ],
        "{hops:#?}"
    );
    let frame = hops
        .iter()
        .find(|h| h.path() == "account.localhost/bridge/frame" && !is_popup_hop(h))
        .unwrap();
    assert!(frame.url.contains("mode=iframe"), "{frame:?}");
    let cookie = frame.header("cookie").unwrap_or_default();
    assert!(
        !cookie.contains(&account_session),
        "third-party cookies are blocked: {frame:?}"
    );
    assert_eq!(
        frame.header("sec-fetch-storage-access").as_deref(),
        Some("none"),
        "{frame:?}"
    );
    assert!(hops.iter().all(|h| !h.url.contains("/bridge/start")));
    // The popup closed itself.
    browser
        .wait_for("the popup to close", async |b| {
            (window_handles(b).await.len() == 1).then_some(())
        })
        .await;

    let tokens = exchanged_tokens(&hops);
    assert_eq!(tokens.len(), 1, "{hops:#?}");
    let shop_session = session_cookie(&browser).await.expect("shop's session");
    let state = page_state(&browser).await;
    assert_no_secrets(
        &state,
        &tokens,
        &[account_session.clone(), shop_session.clone()],
    );
    browser.quit().await;
}

// ---------------------------------------------------------------------------
// 3. The redirect path
// ---------------------------------------------------------------------------

/// Third-party cookies and popups blocked (connect is clicked by a script, so
/// there is no user gesture and `window.open` gives `null`): `auto` falls back
/// to flow A by top-level redirect, and the page comes back to `/embed`
/// connected. No token is left in the URL, the storage or a `Referer`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_path_when_popups_are_blocked_too() {
    let app = TestApp::spawn(Backend::Memory).await;
    let driver = ChromeDriver::start().await;
    let browser = browser(&driver, ThirdPartyCookies::Blocked).await;
    let evil = EvilServer::start();
    let (account, shop) = (app.origin("account"), app.origin("shop"));
    sign_in(&browser, &app, "Ada").await;
    let account_session = session_cookie(&browser).await.expect("account's session");
    open_embed(&browser, &app, "auto").await;
    network_log(&browser).await;

    click_connect_without_gesture(&browser).await;
    let outcome = wait_for_outcome(&browser).await;
    assert_eq!(outcome.state, "connected", "{outcome:?}");
    assert_eq!(outcome.text, "Hello, Ada!");
    assert_eq!(
        outcome.url,
        format!("{shop}/embed"),
        "back on the page, no token in the URL"
    );
    assert_eq!(outcome.max_windows, 1, "no popup: {outcome:?}");
    assert!(
        probe(&browser).await.is_none(),
        "the page navigated (the probe is gone)"
    );

    let hops = network_log(&browser).await;
    let flow: Vec<String> = bridge_hops(&hops);
    assert_eq!(
        flow,
        [
            "GET shop.localhost/bridge/session",
            "GET account.localhost/bridge/frame",
            "GET shop.localhost/bridge/start",
            "GET account.localhost/bridge/issue",
            "GET shop.localhost/bridge/accept",
            "GET shop.localhost/bridge/session",
        ],
        "{hops:#?}"
    );
    let navigations: Vec<(String, Option<u64>)> = hops
        .iter()
        .filter(|h| {
            ["/bridge/start", "/bridge/issue", "/bridge/accept", "/embed"]
                .iter()
                .any(|p| h.path().ends_with(p))
        })
        .map(|h| (h.path(), h.status))
        .collect();
    assert_eq!(
        navigations,
        [
            ("shop.localhost/bridge/start".to_owned(), Some(303)),
            ("account.localhost/bridge/issue".to_owned(), Some(303)),
            ("shop.localhost/bridge/accept".to_owned(), Some(303)),
            ("shop.localhost/embed".to_owned(), Some(200)),
        ],
        "{hops:#?}"
    );
    let start = hops
        .iter()
        .find(|h| h.path() == "shop.localhost/bridge/start")
        .unwrap();
    assert!(start.url.contains("return_to=%2Fembed"), "{start:?}");
    let tokens = tokens_in_urls(&hops);
    assert_eq!(tokens.len(), 1, "{hops:#?}");
    let shop_session = session_cookie(&browser).await.expect("shop's session");
    let state = page_state(&browser).await;
    let guard = state["sessionStorage"]
        .as_object()
        .unwrap()
        .get(&format!("{REDIRECT_GUARD_PREFIX}{account}"))
        .cloned();
    assert!(guard.is_some(), "the script left its guard: {state}");
    let secrets = [account_session, shop_session];
    assert_no_secrets(&state, &tokens, &secrets);
    let referer = leave_for(&browser, &evil, &tokens, &secrets).await;
    assert_eq!(referer, None, "Referrer-Policy: no-referrer");
    browser.quit().await;
}

/// Not signed in on account (a fresh profile), popups blocked: `auto` ends
/// in the redirect, which stops on account's login page (its policy) and
/// does not bounce. Connecting again at once is refused by the script's guard
/// (`redirect_failed`) instead of redirecting again; signing in on the login
/// page the redirect reached finishes the hand-off back to `/embed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_without_a_session_stops_on_the_login_page() {
    let app = TestApp::spawn(Backend::Memory).await;
    let driver = ChromeDriver::start().await;
    let browser = browser(&driver, ThirdPartyCookies::Blocked).await;
    let (account, shop) = (app.origin("account"), app.origin("shop"));
    open_embed(&browser, &app, "auto").await;
    network_log(&browser).await;

    click_connect_without_gesture(&browser).await;
    browser
        .wait_for_url("account's login page", |u| {
            u.starts_with(&format!("{account}/login"))
        })
        .await;
    tokio::time::sleep(QUIET_PERIOD).await;
    let url = browser.current_url().await;
    assert!(
        url.starts_with(&format!("{account}/login")),
        "it stays: {url}"
    );
    browser.find("input[name=username]").await;
    let hops = network_log(&browser).await;
    assert_eq!(
        bridge_hops(&hops),
        [
            "GET shop.localhost/bridge/session",
            "GET account.localhost/bridge/frame",
            "GET shop.localhost/bridge/start",
            "GET account.localhost/bridge/issue",
        ],
        "one redirect, no bounce: {hops:#?}"
    );
    assert_eq!(
        hops.iter().filter(|h| h.path().ends_with("/login")).count(),
        1,
        "{hops:#?}"
    );

    // Back on the page at once (a fresh load, same tab), connect again: the
    // guard refuses a second redirect.
    open_embed(&browser, &app, "auto").await;
    network_log(&browser).await;
    click_connect_without_gesture(&browser).await;
    let outcome = wait_for_outcome(&browser).await;
    assert_eq!(
        (outcome.state.as_str(), outcome.code.as_deref()),
        ("failed", Some("redirect_failed")),
        "{outcome:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(browser.current_url().await, format!("{shop}/embed"));
    let hops = network_log(&browser).await;
    assert!(
        hops.iter().all(|h| !h.url.contains("/bridge/start")),
        "{hops:#?}"
    );

    // Connect once more: a redirect again (the guard is one-shot), to the
    // login page again.
    open_embed(&browser, &app, "auto").await;
    network_log(&browser).await;
    click_connect_without_gesture(&browser).await;
    browser
        .wait_for_url("account's login page", |u| {
            u.starts_with(&format!("{account}/login"))
        })
        .await;
    let hops = network_log(&browser).await;
    assert_eq!(
        hops.iter()
            .filter(|h| h.url.contains("/bridge/start"))
            .count(),
        1,
        "{hops:#?}"
    );
    browser.quit().await;
}

/// Signing in on the login page that the redirect fallback reached should
/// finish the hand-off: login → account `/bridge/issue` → shop
/// `/bridge/accept` → `/embed`, connected.
///
/// Chromium applies the login page's CSP `form-action` to the whole
/// redirect chain of the form's POST (`POST /login` 303 → `/bridge/issue`
/// 303 → `shop/bridge/accept`), so the login page allows the partners'
/// origins there; with `form-action 'self'` alone the browser aborted the
/// last hop and stayed on the login page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_where_the_redirect_stopped_returns_to_the_page() {
    let app = TestApp::spawn(Backend::Memory).await;
    let driver = ChromeDriver::start().await;
    let browser = browser(&driver, ThirdPartyCookies::Blocked).await;
    let (account, shop) = (app.origin("account"), app.origin("shop"));
    open_embed(&browser, &app, "auto").await;
    click_connect_without_gesture(&browser).await;
    browser
        .wait_for_url("account's login page", |u| {
            u.starts_with(&format!("{account}/login?return_to=%2Fbridge%2Fissue"))
        })
        .await;
    network_log(&browser).await;
    submit_login(&browser, "Ada").await;
    let outcome = wait_for_outcome(&browser).await;
    assert_eq!(outcome.state, "connected", "{outcome:?}");
    assert_eq!(outcome.text, "Hello, Ada!");
    assert_eq!(outcome.url, format!("{shop}/embed"));
    let hops = network_log(&browser).await;
    assert!(
        hops.iter()
            .all(|h| h.failure.is_none() || !h.url.contains("/bridge/")),
        "{hops:#?}"
    );
    browser.quit().await;
}

// ---------------------------------------------------------------------------
// 4. Forced modes
// ---------------------------------------------------------------------------

/// `mode=popup` with third-party cookies allowed: the script goes straight to
/// the popup (no iframe), and connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_popup_mode_uses_the_popup() {
    let app = TestApp::spawn(Backend::Memory).await;
    let driver = ChromeDriver::start().await;
    let browser = browser(&driver, ThirdPartyCookies::Allowed).await;
    let (account, shop) = (app.origin("account"), app.origin("shop"));
    sign_in(&browser, &app, "Ada").await;
    let account_session = session_cookie(&browser).await.expect("account's session");
    open_embed(&browser, &app, "popup").await;
    network_log(&browser).await;

    click_connect(&browser).await;
    let outcome = wait_for_outcome(&browser).await;
    assert_eq!(outcome.state, "connected", "{outcome:?}");
    assert_eq!(outcome.text, "Hello, Ada!");
    assert_eq!(outcome.url, format!("{shop}/embed"));
    let probe = probe(&browser).await.expect("the page did not navigate");
    let opened = probe["opened"].as_array().unwrap();
    assert_eq!(opened.len(), 1, "{probe}");
    assert_eq!(opened[0]["window"], true, "{probe}");
    assert!(
        opened[0]["url"].as_str().unwrap().contains("mode=popup"),
        "{probe}"
    );
    assert_eq!(probe["frames"], json!([]), "no iframe: {probe}");
    let messages = probe["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{probe}");
    assert_eq!(messages[0]["origin"], account.as_str());
    assert_eq!(messages[0]["type"], "sb:token");
    assert_eq!(messages[0]["fromPopup"], true);
    let hops = network_log(&browser).await;
    assert!(check_popup_hops(&hops, &account_session) <= 1, "{hops:#?}");
    assert_eq!(
        bridge_hops(&hops),
        [
            "GET shop.localhost/bridge/session",
            "POST shop.localhost/bridge/exchange",
        ],
        "no iframe request from the page: {hops:#?}"
    );
    browser.quit().await;
}

/// `mode=iframe` with third-party cookies blocked: the frame sees no
/// session, `connect` fails with `no_session`, and no popup is opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_iframe_mode_fails_without_third_party_cookies() {
    let app = TestApp::spawn(Backend::Memory).await;
    let driver = ChromeDriver::start().await;
    let browser = browser(&driver, ThirdPartyCookies::Blocked).await;
    let shop = app.origin("shop");
    sign_in(&browser, &app, "Ada").await;
    open_embed(&browser, &app, "iframe").await;
    network_log(&browser).await;

    click_connect(&browser).await;
    let outcome = wait_for_outcome(&browser).await;
    assert_eq!(
        (outcome.state.as_str(), outcome.code.as_deref()),
        ("failed", Some("no_session")),
        "{outcome:?}"
    );
    assert_eq!(outcome.url, format!("{shop}/embed"));
    assert_eq!(outcome.max_windows, 1, "{outcome:?}");
    // Nothing follows later either.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(window_handles(&browser).await.len(), 1);
    let probe = probe(&browser).await.expect("the page did not navigate");
    assert_eq!(probe["opened"], json!([]), "no popup: {probe}");
    let hops = network_log(&browser).await;
    assert_eq!(
        bridge_hops(&hops),
        [
            "GET shop.localhost/bridge/session",
            "GET account.localhost/bridge/frame",
        ],
        "{hops:#?}"
    );
    assert_eq!(session_cookie(&browser).await, None);
    browser.quit().await;
}

// ---------------------------------------------------------------------------
// 5. The attacker
// ---------------------------------------------------------------------------

/// An attacker page frames account's `/bridge/frame` with the shop's
/// parameters (and a challenge of its own) while the victim is signed in on
/// account with third-party cookies allowed: Chromium refuses the frame
/// (CSP `frame-ancestors` names the shop only) and the page receives
/// nothing. Opening the same page as a popup gets nothing either: the frame
/// page posts to the shop's exact origin, which the attacker is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacker_page_gets_nothing_from_the_frame() {
    let app = TestApp::spawn(Backend::Memory).await;
    let driver = ChromeDriver::start().await;
    let browser = browser(&driver, ThirdPartyCookies::Allowed).await;
    let evil = EvilServer::start();
    let (account, shop) = (app.origin("account"), app.origin("shop"));
    sign_in(&browser, &app, "Victim").await;
    let (_, challenge) = pkce_pair();
    let frame_url = format!(
        "{account}/bridge/frame?to={}&challenge={challenge}",
        urlencode(&shop)
    );

    browser.goto(&format!("{}/", evil.origin())).await;
    browser.find("#go").await;
    network_log(&browser).await;
    browser
        .execute(
            "const frame = document.createElement('iframe');
             frame.id = 'stolen';
             frame.src = arguments[0];
             document.body.appendChild(frame);
             return true;",
            vec![json!(frame_url)],
        )
        .await;
    tokio::time::sleep(QUIET_PERIOD).await;
    let seen = browser
        .execute(
            "const frame = document.getElementById('stolen');
             let readable;
             try { readable = frame.contentDocument !== null && frame.contentDocument.documentElement.outerHTML; }
             catch (e) { readable = false; }
             let href;
             try { href = frame.contentWindow.location.href; } catch (e) { href = 'inaccessible'; }
             return { got: window.__got, readable: readable, href: href };",
            vec![],
        )
        .await;
    assert_eq!(
        seen["got"],
        json!([]),
        "no message reached the attacker: {seen}"
    );
    let readable = seen["readable"].as_str().unwrap_or_default();
    assert!(
        !readable.contains("data-token") && !readable.contains("sb:"),
        "the frame's document is not readable: {seen}"
    );
    assert_eq!(seen["href"], "inaccessible", "{seen}");
    // What the browser did: the server answered (with the CSP), the browser
    // refused to show the answer in this page.
    let hops = network_log(&browser).await;
    let frame = hops
        .iter()
        .find(|h| h.path() == "account.localhost/bridge/frame")
        .unwrap_or_else(|| panic!("the frame was requested: {hops:#?}"));
    let console = browser
        .command(Method::POST, "/se/log", Some(json!({ "type": "browser" })))
        .await
        .unwrap_or(Value::Null);
    let console = console.to_string();
    assert_eq!(frame.status, Some(200), "{frame:?}");
    assert!(
        frame
            .failure
            .as_deref()
            .is_some_and(|f| f.contains("ERR_BLOCKED_BY_RESPONSE")),
        "Chromium blocked the response: {frame:?}"
    );
    assert!(
        console.contains(&format!("frame-ancestors {shop}")),
        "Chromium names the CSP that refused the frame: {console}"
    );

    // The same page in a popup of the attacker's (a real click).
    browser
        .execute(
            "document.getElementById('go').onclick = () => {
               window.__popup = window.open(arguments[0], 'frame');
               document.getElementById('log').textContent = window.__popup ? 'opened' : 'blocked';
             };
             return true;",
            vec![json!(format!("{frame_url}&mode=popup"))],
        )
        .await;
    let go = browser.find("#go").await;
    browser.click(&go).await;
    browser.wait_for_text("#log", "opened").await;
    // The frame page closes itself after posting (to the shop's origin only).
    browser
        .wait_for("the frame popup to close", async |b| {
            let closed = b
                .try_execute("return window.__popup.closed;", vec![])
                .await?;
            (closed == true).then_some(())
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = browser.execute("return window.__got;", vec![]).await;
    assert_eq!(got, json!([]), "no message reached the attacker's window");
    browser.quit().await;
}

/// The attacker's page opens the shop's `/embed` in a popup and floods it
/// with `{type: "sb:token", token}` messages carrying a real token minted for
/// the attacker's own session, while the victim clicks connect there. The
/// messages arrive (the page's probe sees them) and are ignored: the victim
/// (not signed in on account) ends with `no_session`, no exchange was tried,
/// and the shop has no session; then, signed in, the victim connects as
/// itself, never as the attacker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacker_messages_are_ignored() {
    let app = TestApp::spawn(Backend::Memory).await;
    let driver = ChromeDriver::start().await;
    let browser = browser(&driver, ThirdPartyCookies::Allowed).await;
    let evil = EvilServer::start();
    let (account, shop) = (app.origin("account"), app.origin("shop"));
    let (token, verifier) = attackers_token(&app, "Mallory", "shop").await;

    for round in ["not signed in", "signed in"] {
        if round == "signed in" {
            sign_in(&browser, &app, "Victim").await;
        }
        browser.goto(&format!("{}/", evil.origin())).await;
        let main = window_handles(&browser).await;
        assert_eq!(main.len(), 1);
        browser
            .execute(
                "const [embed, token, shop] = arguments;
                 document.getElementById('go').onclick = () => {
                   const victim = window.open(embed, 'victim');
                   document.getElementById('log').textContent = victim ? 'opened' : 'blocked';
                   const fake = { type: 'sb:token', token: token };
                   window.__flood = setInterval(() => {
                     for (let i = 0; i < 10; i++) {
                       try { victim.postMessage(fake, '*'); victim.postMessage(fake, shop); } catch (e) {}
                     }
                   }, 4);
                 };
                 return true;",
                vec![json!(format!("{shop}/embed")), json!(token), json!(shop)],
            )
            .await;
        let go = browser.find("#go").await;
        browser.click(&go).await;
        browser.wait_for_text("#log", "opened").await;
        let victim = browser
            .wait_for("the victim's window", async |b| {
                let handles = window_handles(b).await;
                handles.into_iter().find(|h| !main.contains(h))
            })
            .await;
        switch_to_window(&browser, &victim).await;
        browser
            .wait_for_url("the shop's embed page", |u| u == format!("{shop}/embed"))
            .await;
        browser.find("#connect").await;
        browser
            .execute(
                "document.getElementById('mode').value = 'iframe'; return true;",
                vec![],
            )
            .await;
        install_probe(&browser).await;
        network_log(&browser).await;

        click_connect(&browser).await;
        let outcome = wait_for_outcome(&browser).await;
        // Let the flood go on a little after the flow.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let probe = probe(&browser)
            .await
            .expect("the victim page did not navigate");
        let messages = probe["messages"].as_array().unwrap();
        let frames = probe["frames"].as_array().unwrap();
        let (added, removed) = (
            frames[0]["t"].as_f64().unwrap(),
            frames[1]["t"].as_f64().unwrap(),
        );
        let fake: Vec<&Value> = messages
            .iter()
            .filter(|m| m["origin"] == evil.origin().as_str())
            .collect();
        let during = fake
            .iter()
            .filter(|m| {
                let t = m["t"].as_f64().unwrap();
                t >= added && t <= removed
            })
            .count();
        println!(
            "{round}: {} fake messages, {during} while the page listened ({:.0} ms)",
            fake.len(),
            removed - added
        );
        assert!(
            fake.iter()
                .all(|m| m["type"] == "sb:token" && m["carriesToken"] == true),
            "{probe}"
        );
        assert!(
            during > 0,
            "the attacker's messages arrived while the page was listening: {probe}"
        );
        let from_account: Vec<&Value> = messages
            .iter()
            .filter(|m| m["origin"] == account.as_str())
            .collect();
        let hops = network_log(&browser).await;
        let exchanges: Vec<&Hop> = hops
            .iter()
            .filter(|h| h.path() == "shop.localhost/bridge/exchange")
            .collect();
        if round == "not signed in" {
            assert_eq!(
                (outcome.state.as_str(), outcome.code.as_deref()),
                ("failed", Some("no_session")),
                "{outcome:?}"
            );
            assert_eq!(from_account.len(), 1, "{probe}");
            assert_eq!(from_account[0]["type"], "sb:no-session");
            assert!(exchanges.is_empty(), "no exchange was tried: {hops:#?}");
            let (status, body) = shop_session_of(&browser, &app).await;
            assert_eq!(status, 401, "the victim has no shop session: {body}");
        } else {
            assert_eq!(outcome.state, "connected", "{outcome:?}");
            assert_eq!(outcome.text, "Hello, Victim!");
            assert_eq!(exchanges.len(), 1, "{hops:#?}");
            let sent = exchanged_tokens(&hops);
            assert_eq!(sent.len(), 1);
            assert_ne!(sent[0], token, "the page exchanged its own token");
            let (status, body) = shop_session_of(&browser, &app).await;
            assert_eq!(status, 200);
            assert_eq!(body["user_id"], "Victim", "{body}");
        }
        browser
            .command(Method::DELETE, "/window", None)
            .await
            .unwrap_or_else(|e| panic!("close the victim window: {e}"));
        switch_to_window(&browser, &main[0]).await;
    }

    // The attacker's token was real and is still unused.
    let (status, body) = redeem(&app, "shop", &token, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "Mallory", "{body}");
    browser.quit().await;
}

/// The attacker's page tries to plant its own session in the victim's shop
/// by calling the shop's `/bridge/exchange` itself, cross-origin with
/// credentials, with a real token and its verifier: as JSON (needs a CORS
/// preflight, which fails), as a `no-cors` `text/plain` fetch, and as the
/// classic form trick that makes a JSON-looking `text/plain` body. Each is
/// refused; the victim's shop gets no session, and the token stays unused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacker_cannot_call_the_exchange_cross_origin() {
    let app = TestApp::spawn(Backend::Memory).await;
    let driver = ChromeDriver::start().await;
    let browser = browser(&driver, ThirdPartyCookies::Allowed).await;
    let evil = EvilServer::start();
    let shop = app.origin("shop");
    let (token, verifier) = attackers_token(&app, "Mallory", "shop").await;
    let body = json!({ "token": token, "verifier": verifier, "from": "account" }).to_string();
    let exchange = format!("{shop}/bridge/exchange");

    browser.goto(&format!("{}/", evil.origin())).await;
    network_log(&browser).await;
    let answers = browser
        .execute(
            "const [url, body] = arguments;
             const attempt = (init) => fetch(url, Object.assign({ method: 'POST', credentials: 'include', body: body }, init))
               .then((r) => ({ type: r.type, status: r.status }), (e) => ({ error: String(e) }));
             return Promise.all([
               attempt({ headers: { 'Content-Type': 'application/json' } }),
               attempt({ mode: 'no-cors', headers: { 'Content-Type': 'text/plain' } }),
               attempt({ mode: 'no-cors', headers: { 'Content-Type': 'application/x-www-form-urlencoded' } }),
             ]);",
            vec![json!(exchange), json!(body)],
        )
        .await;
    assert!(
        answers[0]["error"].as_str().is_some(),
        "the JSON fetch is blocked by CORS: {answers}"
    );
    for opaque in &answers.as_array().unwrap()[1..] {
        assert_eq!(opaque["type"], "opaque", "{answers}");
    }
    let hops = network_log(&browser).await;
    let posts: Vec<&Hop> = hops
        .iter()
        .filter(|h| h.path() == "shop.localhost/bridge/exchange")
        .collect();
    // The JSON one never left the browser (its preflight got no
    // `Access-Control-Allow-Origin`); the two `no-cors` ones reached the
    // shop, which refused them.
    let (preflighted, sent): (Vec<&&Hop>, Vec<&&Hop>) =
        posts.iter().filter(|h| h.method == "POST").partition(|h| {
            h.failure
                .as_deref()
                .is_some_and(|f| f.contains("Preflight"))
        });
    assert_eq!((preflighted.len(), sent.len()), (1, 2), "{posts:#?}");
    assert!(preflighted[0].sent_headers.is_none(), "{posts:#?}");
    for post in sent {
        assert_eq!(
            post.header("sec-fetch-site").as_deref(),
            Some("cross-site"),
            "{post:?}"
        );
        assert_eq!(post.status, Some(403), "the server refused it: {post:?}");
    }

    // The form trick: a top-level cross-site POST whose text/plain body
    // reads as JSON. The browser lands on the shop's answer.
    // `{…,"from":"account","x":"` `=` `"}`: the `=` of the form encoding
    // lands inside a string.
    let name = format!("{},\"x\":\"", &body[..body.len() - 1]);
    let value = "\"}";
    browser
        .execute(
            "const [url, name, value] = arguments;
             const form = document.createElement('form');
             form.method = 'POST';
             form.action = url;
             form.enctype = 'text/plain';
             const input = document.createElement('input');
             input.type = 'hidden';
             input.name = name;
             input.value = value;
             form.appendChild(input);
             document.body.appendChild(form);
             form.submit();
             return true;",
            vec![json!(exchange), json!(name), json!(value)],
        )
        .await;
    browser
        .wait_for_url("the shop's answer", |u| u == exchange)
        .await;
    let hops = network_log(&browser).await;
    let post = hops
        .iter()
        .find(|h| h.method == "POST" && h.path() == "shop.localhost/bridge/exchange")
        .unwrap_or_else(|| panic!("the form was posted: {hops:#?}"));
    assert_eq!(post.status, Some(403), "{post:?}");
    let text = browser.body_text().await;
    assert!(text.contains("cross_origin_refused"), "{text}");

    let (status, answer) = shop_session_of(&browser, &app).await;
    assert_eq!(status, 401, "the victim has no shop session: {answer}");
    assert_eq!(session_cookie(&browser).await, None);
    let status_text = browser.text("#status").await;
    assert!(!status_text.contains("Mallory"), "{status_text}");

    let (status, body) = redeem(&app, "shop", &token, &verifier).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the token was never consumed: {body}"
    );
    assert_eq!(body["user_id"], "Mallory", "{body}");
    browser.quit().await;
}

// ---------------------------------------------------------------------------
// 6. Nothing left behind
// ---------------------------------------------------------------------------

/// After a successful flow B (the iframe path), no token, verifier or
/// session ID is in `localStorage`, `sessionStorage`, the page URL, the HTML,
/// the performance timeline, or the `Referer` a third host receives when
/// the person follows a link from the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_secret_is_left_after_flow_b() {
    let app = TestApp::spawn(Backend::Memory).await;
    let driver = ChromeDriver::start().await;
    let browser = browser(&driver, ThirdPartyCookies::Allowed).await;
    let evil = EvilServer::start();
    let shop = app.origin("shop");
    sign_in(&browser, &app, "Ada").await;
    let account_session = session_cookie(&browser).await.expect("account's session");
    open_embed(&browser, &app, "auto").await;
    network_log(&browser).await;

    click_connect(&browser).await;
    let outcome = wait_for_outcome(&browser).await;
    assert_eq!(outcome.state, "connected", "{outcome:?}");
    let hops = network_log(&browser).await;
    let exchange = hops
        .iter()
        .find(|h| h.path() == "shop.localhost/bridge/exchange")
        .unwrap_or_else(|| panic!("{hops:#?}"));
    let sent: Value = serde_json::from_str(exchange.post_data.as_deref().unwrap()).unwrap();
    let token = sent["token"].as_str().unwrap().to_owned();
    let verifier = sent["verifier"].as_str().unwrap().to_owned();
    let shop_session = session_cookie(&browser).await.expect("shop's session");
    // The exchange answered the public view, without the session ID.
    let view = browser
        .execute(
            "return fetch('/bridge/session', { headers: { Accept: 'application/json' } }).then((r) => r.json());",
            vec![],
        )
        .await;
    assert!(view.get("id").is_none(), "{view}");
    assert_eq!(outcome.url, format!("{shop}/embed"));

    let secrets = vec![account_session, shop_session, verifier];
    let tokens = vec![token];
    let state = page_state(&browser).await;
    assert_no_secrets(&state, &tokens, &secrets);
    assert_eq!(
        state["sessionStorage"],
        json!({}),
        "the iframe path leaves no guard"
    );
    let referer = leave_for(&browser, &evil, &tokens, &secrets).await;
    assert_eq!(referer, None, "Referrer-Policy: no-referrer");
    let landed = page_state(&browser).await;
    assert_eq!(landed["referrer"], "", "{landed}");
    browser.quit().await;
}
