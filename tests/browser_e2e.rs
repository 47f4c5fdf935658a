//! Flow A and the demo in a real browser: Debian's headless Chromium driven
//! through its own `chromedriver` (tests/support/webdriver.rs).
//!
//! The demo sites are `http://{account,shop,checkout}.localhost:PORT`: Chromium
//! resolves `*.localhost` to loopback by itself and treats the three as three
//! sites (cross-site to each other), and as secure contexts, so `Secure` and
//! `__Host-` cookies work over plain HTTP. Cross-site chains start with a click
//! on a real link, as a person's would: a typed address (`goto`) is a
//! `Sec-Fetch-Site: none` navigation that would hide cookie rules.
//! Screenshots go to `target/tmp/e2e/<test>/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::StatusCode;
use serde_json::json;
use std::path::{Path, PathBuf};
use support::app::{Backend, TestApp};
use support::browser::Browser as HttpBrowser;
use support::webdriver::{Browser, BrowserOptions, ChromeDriver, SentRequest, element_id};

const SESSION_COOKIE: &str = "__Host-sb";
const STATE_COOKIE: &str = "__Host-sb-state";

/// A fresh, empty `target/tmp/e2e/<test>` folder for screenshots.
fn screenshot_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("e2e")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `NN-<page>.png` and checks it is a non-empty PNG.
async fn screenshot(browser: &Browser, dir: &Path, n: u32, page: &str) -> PathBuf {
    let path = dir.join(format!("{n:02}-{page}.png"));
    browser.screenshot(&path).await;
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 100, "{} is too small", path.display());
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is no PNG",
        path.display()
    );
    path
}

/// Signs in on account's login page by typing a name and submitting.
async fn sign_in(browser: &Browser, app: &TestApp, name: &str) {
    browser
        .goto(&format!("{}/login", app.origin("account")))
        .await;
    let field = browser.find("input[name=username]").await;
    browser.send_keys(&field, name).await;
    let submit = browser.find("form button[type=submit]").await;
    browser.click(&submit).await;
    browser
        .wait_for_text("main", &format!("Signed in as {name}"))
        .await;
}

/// Clicks the link whose `href` is exactly `href`.
async fn click_link(browser: &Browser, href: &str) {
    let link = browser.find(&format!("a[href=\"{href}\"]")).await;
    browser.click(&link).await;
}

/// Puts a link to `href` on the current page and clicks it, as a person
/// following a link on this page would (the demo has no page with it).
async fn click_new_link(browser: &Browser, href: &str) {
    let link = browser
        .execute(
            "const a = document.createElement('a');
             a.href = arguments[0];
             a.textContent = 'follow me';
             a.style.display = 'block';
             document.body.prepend(a);
             return a;",
            vec![json!(href)],
        )
        .await;
    let link = element_id(&link).unwrap_or_else(|| panic!("no link element: {link}"));
    browser.click(&link).await;
}

/// The error code an error page shows, once it shows one.
async fn wait_for_error_code(browser: &Browser) -> String {
    browser
        .wait_for("an error page", async |b| {
            let text = b.try_text("p.code code").await?;
            (!text.is_empty()).then_some(text)
        })
        .await
}

/// The value of the session cookie the browser holds for the current page.
async fn session_cookie(browser: &Browser) -> Option<String> {
    let cookie = browser.cookie(SESSION_COOKIE).await?;
    Some(cookie["value"].as_str().unwrap().to_owned())
}

/// Everything a script on the page (or a later page) could read.
async fn page_visible_state(browser: &Browser) -> String {
    let state = browser
        .execute(
            "const dump = (s) => { const o = {}; for (let i = 0; i < s.length; i++) { const k = s.key(i); o[k] = s.getItem(k); } return o; };
             return {
               url: location.href,
               referrer: document.referrer,
               localStorage: dump(window.localStorage),
               sessionStorage: dump(window.sessionStorage),
               documentCookie: document.cookie,
               performance: performance.getEntries().map((e) => e.name),
               historyState: JSON.stringify(history.state),
               html: document.documentElement.outerHTML,
             };",
            vec![],
        )
        .await;
    let source = browser.source().await;
    format!("{state}\n{source}")
}

/// The bridge tokens that travelled in the URL of a `GET …/bridge/accept`.
fn tokens_in_urls(requests: &[SentRequest]) -> Vec<String> {
    requests
        .iter()
        .filter_map(|r| {
            let url = url::Url::parse(&r.url).ok()?;
            (url.path() == "/bridge/accept")
                .then(|| url.query_pairs().find(|(k, _)| k == "token"))
                .flatten()
                .map(|(_, v)| v.into_owned())
        })
        .collect()
}

/// The README's demo journey: sign in on account, follow the link to the
/// shop (greeted by name, no second sign-in), fill the cart, follow the link
/// to checkout: the same name and cart. A screenshot of every page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_journey_in_a_real_browser() {
    let app = TestApp::spawn(Backend::Memory).await;
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;
    let shots = screenshot_dir("demo_journey_in_a_real_browser");
    let (account, shop, checkout) = (
        app.origin("account"),
        app.origin("shop"),
        app.origin("checkout"),
    );
    let mut written = Vec::new();

    browser.goto(&format!("{account}/login")).await;
    assert!(
        browser
            .text("main")
            .await
            .contains("there is no password check"),
        "the login page says it is a demo"
    );
    written.push(screenshot(&browser, &shots, 1, "account-login").await);
    let field = browser.find("input[name=username]").await;
    browser.send_keys(&field, "Ada").await;
    let submit = browser.find("form button[type=submit]").await;
    browser.click(&submit).await;
    browser.wait_for_text("main", "Signed in as Ada").await;
    assert_eq!(browser.current_url().await, format!("{account}/"));
    written.push(screenshot(&browser, &shots, 2, "account").await);

    // The shop has never seen this browser: a click on the link bounces
    // through shop/bridge/start → account/bridge/issue → shop/bridge/accept.
    click_link(&browser, &shop).await;
    let greeting = browser.wait_for_text("p.greeting", "Hello, Ada!").await;
    assert_eq!(greeting, "Hello, Ada!");
    let url = browser.current_url().await;
    assert!(url.starts_with(&format!("{shop}/")), "on the shop: {url}");
    assert!(!url.contains("token"), "{url}");
    assert!(browser.text("main").await.contains("Your cart is empty"));
    written.push(screenshot(&browser, &shots, 3, "shop").await);

    let item = browser.find("input[name=item]").await;
    browser.send_keys(&item, "Teapot").await;
    let add = browser.find("form button[type=submit]").await;
    browser.click(&add).await;
    browser.wait_for_text("ul.cart", "Teapot").await;
    assert_eq!(browser.text("p.greeting").await, "Hello, Ada!");
    written.push(screenshot(&browser, &shots, 4, "shop-cart").await);

    click_link(&browser, &checkout).await;
    browser.wait_for_text("h1", "Checkout").await;
    let url = browser.current_url().await;
    assert!(
        url.starts_with(&format!("{checkout}/")),
        "on checkout: {url}"
    );
    assert_eq!(browser.text("p.greeting").await, "Hello, Ada!");
    let cart: Vec<String> = {
        let mut items = Vec::new();
        for li in browser.find_all("ul.cart li").await {
            items.push(browser.element_text(&li).await);
        }
        items
    };
    assert_eq!(cart, ["Teapot"]);
    assert!(
        browser.try_find("input[name=username]").await.is_none(),
        "no second sign-in"
    );
    written.push(screenshot(&browser, &shots, 5, "checkout").await);

    // Back to the shop by its link: no new hand-off, the same cart.
    click_link(&browser, &shop).await;
    browser.wait_for_text("h1", "Shop").await;
    browser.wait_for_text("ul.cart", "Teapot").await;

    let mut on_disk: Vec<PathBuf> = std::fs::read_dir(&shots)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    on_disk.sort();
    assert_eq!(on_disk, written);
    for path in &written {
        assert!(
            std::fs::metadata(path).unwrap().len() > 0,
            "{}",
            path.display()
        );
    }
    browser.quit().await;
}

/// `mode=form_post`: account answers a page that POSTs the token to the
/// shop. Only `SameSite=None` cookies travel on that cross-site POST, so the
/// shop greeting Ada proves the state cookie is `SameSite=None; Secure`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_post_mode_in_a_real_browser() {
    let app = TestApp::spawn(Backend::Memory).await;
    let driver = ChromeDriver::start().await;
    let browser = driver
        .browser_with(BrowserOptions {
            network_log: true,
            ..BrowserOptions::default()
        })
        .await;
    let (account, shop) = (app.origin("account"), app.origin("shop"));
    sign_in(&browser, &app, "Ada").await;

    // A page on the shop that does not bridge by itself (its `/` would hand
    // the session over in query mode first): its 404 page.
    browser.goto(&format!("{shop}/no-such-page")).await;
    assert_eq!(wait_for_error_code(&browser).await, "not_found");
    assert_eq!(session_cookie(&browser).await, None);
    browser.requests().await; // only what follows counts

    click_new_link(
        &browser,
        &format!("{shop}/bridge/start?from=account&return_to=/&mode=form_post"),
    )
    .await;
    browser
        .wait_for_url("the shop's home page", |u| u == format!("{shop}/"))
        .await;
    let greeting = browser.wait_for_text("p.greeting", "Hello, Ada!").await;
    assert_eq!(greeting, "Hello, Ada!");

    let sent = browser.requests().await;
    let hops: Vec<String> = sent
        .iter()
        .filter_map(|r| {
            let url = url::Url::parse(&r.url).unwrap();
            let hop = ["/bridge/start", "/bridge/issue", "/bridge/accept"].contains(&url.path());
            hop.then(|| format!("{} {}{}", r.method, url.host_str().unwrap(), url.path()))
        })
        .collect();
    assert_eq!(
        hops,
        [
            "GET shop.localhost/bridge/start",
            "GET account.localhost/bridge/issue",
            "POST shop.localhost/bridge/accept",
        ],
        "{sent:#?}"
    );
    assert!(
        sent.iter()
            .any(|r| r.url.starts_with(&format!("{account}/bridge/issue?"))
                && r.url.contains("mode=form_post")),
        "{sent:#?}"
    );
    assert!(
        tokens_in_urls(&sent).is_empty(),
        "form_post keeps the token out of every URL: {sent:#?}"
    );
    let cookie = browser
        .cookie(SESSION_COOKIE)
        .await
        .expect("a shop session");
    assert_eq!(cookie["httpOnly"], true, "{cookie}");
    assert_eq!(
        browser.cookie(STATE_COOKIE).await,
        None,
        "accept clears the state cookie"
    );
    browser.quit().await;
}

/// Going back after a hand-off, in either mode, returns to the page the
/// link was on without sending anything to the bridge again: the history
/// holds neither the token URL nor account's form page, so Back cannot
/// replay a token (which would revoke the session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn going_back_after_a_hand_off_replays_no_token() {
    let app = TestApp::spawn(Backend::Memory).await;
    let driver = ChromeDriver::start().await;
    let shop = app.origin("shop");
    for mode in ["query", "form_post"] {
        let browser = driver
            .browser_with(BrowserOptions {
                network_log: true,
                ..BrowserOptions::default()
            })
            .await;
        sign_in(&browser, &app, "Ada").await;
        let before = format!("{shop}/no-such-page");
        browser.goto(&before).await;
        click_new_link(
            &browser,
            &format!("{shop}/bridge/start?from=account&return_to=/&mode={mode}"),
        )
        .await;
        browser.wait_for_text("p.greeting", "Hello, Ada!").await;
        browser.requests().await;

        browser.back().await;
        browser
            .wait_for_url(&format!("{mode}: back on the page of the link"), |u| {
                u == before
            })
            .await;
        wait_for_error_code(&browser).await;
        let sent = browser.requests().await;
        assert!(
            sent.iter().all(
                |r| !r.url.contains("/bridge/") || r.url.ends_with("/bridge/assets/bridge.css")
            ),
            "{mode}: {sent:#?}"
        );
        browser.forward().await;
        browser.wait_for_text("p.greeting", "Hello, Ada!").await;
        let sent = browser.requests().await;
        assert!(tokens_in_urls(&sent).is_empty(), "{mode}: {sent:#?}");
        browser.quit().await;
    }
}

/// A token minted for one browser and carried by a link into another
/// browser profile is refused there, whether that profile never started a
/// hand-off (`state_missing`) or started its own (`token_binding_mismatch`);
/// the second profile gets no session, and the token still works for the
/// browser it was minted for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_carried_into_another_profile_is_refused() {
    let app = TestApp::spawn(Backend::Memory).await;
    let (account, shop) = (app.origin("account"), app.origin("shop"));

    // The first browser signs in as Ada and starts a hand-off to the shop,
    // stopping before it redeems the token.
    let mut ada = HttpBrowser::new(app.port);
    let signed_in = ada
        .post_form(&format!("{account}/login"), &[("username", "Ada")])
        .await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    let start = ada
        .get(&format!("{shop}/bridge/start?from=account&return_to=/"))
        .await;
    assert_eq!(start.status, StatusCode::SEE_OTHER);
    let issue = ada.get(start.location().unwrap().as_str()).await;
    assert_eq!(issue.status, StatusCode::SEE_OTHER);
    let accept_url = issue.location().unwrap();
    assert_eq!(accept_url.host_str(), Some("shop.localhost"));
    assert_eq!(accept_url.path(), "/bridge/accept");
    assert!(accept_url.query_pairs().any(|(k, _)| k == "token"));
    let accept_url = accept_url.to_string();

    // A second profile follows a link to that URL from another site's page.
    let driver = ChromeDriver::start().await;
    let victim = driver.browser().await;
    let elsewhere = format!("http://elsewhere.localhost:{}/", app.port);
    victim.goto(&elsewhere).await;
    click_new_link(&victim, &accept_url).await;
    assert_eq!(wait_for_error_code(&victim).await, "state_missing");
    assert!(victim.current_url().await.starts_with(&format!("{shop}/")));
    assert_eq!(session_cookie(&victim).await, None);

    // It starts a hand-off of its own (no session on account: the login
    // page), then follows the planted link: its verifier does not match.
    victim.goto(&elsewhere).await;
    click_new_link(
        &victim,
        &format!("{shop}/bridge/start?from=account&return_to=/"),
    )
    .await;
    victim
        .wait_for_url("account's login page", |u| {
            u.starts_with(&format!("{account}/login"))
        })
        .await;
    victim.goto(&elsewhere).await;
    click_new_link(&victim, &accept_url).await;
    assert_eq!(wait_for_error_code(&victim).await, "token_binding_mismatch");
    assert_eq!(session_cookie(&victim).await, None);

    // The shop does not know this profile: it sends it to sign in.
    victim.goto(&elsewhere).await;
    click_new_link(&victim, &format!("{shop}/")).await;
    victim
        .wait_for_url("account's login page", |u| {
            u.starts_with(&format!("{account}/login"))
        })
        .await;
    let text = victim.body_text().await;
    assert!(!text.contains("Ada"), "{text}");
    victim.goto(&format!("{shop}/bridge/jwks.json")).await;
    assert_eq!(session_cookie(&victim).await, None);
    victim.quit().await;

    // The refusals consumed nothing: the browser the token was minted for
    // redeems it.
    let accepted = ada.get(&accept_url).await;
    assert_eq!(accepted.status, StatusCode::SEE_OTHER, "{}", accepted.body);
    let page = ada.visit(accepted.location().unwrap().as_str()).await;
    assert!(
        page.body.contains("Hello, <strong>Ada</strong>!"),
        "{}",
        page.body
    );
}

/// After the hand-offs, no token and no session ID is anywhere a script or a
/// later site could read it: not in the URL, the referrer, `localStorage`,
/// `sessionStorage`, `document.cookie`, the performance timeline or the HTML.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_or_session_id_is_left_in_the_page() {
    let app = TestApp::spawn(Backend::Memory).await;
    let driver = ChromeDriver::start().await;
    let browser = driver
        .browser_with(BrowserOptions {
            network_log: true,
            ..BrowserOptions::default()
        })
        .await;
    let (account, shop, checkout) = (
        app.origin("account"),
        app.origin("shop"),
        app.origin("checkout"),
    );
    sign_in(&browser, &app, "Ada").await;
    let mut session_ids = vec![session_cookie(&browser).await.expect("account's session")];
    let account_cookie = browser.cookie(SESSION_COOKIE).await.unwrap();
    assert_eq!(account_cookie["httpOnly"], true, "{account_cookie}");
    let mut sent = browser.requests().await;

    click_link(&browser, &shop).await;
    browser.wait_for_text("p.greeting", "Hello, Ada!").await;
    sent.extend(browser.requests().await);
    assert_eq!(
        tokens_in_urls(&sent).len(),
        1,
        "one query-mode hand-off to the shop: {sent:#?}"
    );
    let shop_cookie = browser
        .cookie(SESSION_COOKIE)
        .await
        .expect("shop's session");
    assert_eq!(shop_cookie["httpOnly"], true, "{shop_cookie}");
    session_ids.push(shop_cookie["value"].as_str().unwrap().to_owned());
    let mut seen = vec![page_visible_state(&browser).await];

    click_link(&browser, &checkout).await;
    browser.wait_for_text("h1", "Checkout").await;
    browser.wait_for_text("p.greeting", "Hello, Ada!").await;
    sent.extend(browser.requests().await);
    assert_eq!(
        tokens_in_urls(&sent).len(),
        2,
        "one query-mode hand-off to checkout: {sent:#?}"
    );
    session_ids.push(session_cookie(&browser).await.expect("checkout's session"));
    seen.push(page_visible_state(&browser).await);

    // And account's own page (a typed address: no hand-off is involved).
    browser.goto(&format!("{account}/")).await;
    browser.wait_for_text("main", "Signed in as Ada").await;
    seen.push(page_visible_state(&browser).await);
    sent.extend(browser.requests().await);
    let tokens = tokens_in_urls(&sent);

    // No request carried a token or a session ID in its `Referer`.
    for request in &sent {
        let Some(referer) = &request.referer else {
            continue;
        };
        for secret in tokens.iter().chain(&session_ids) {
            assert!(!referer.contains(secret.as_str()), "{request:?}");
        }
        assert!(!referer.contains("token="), "{request:?}");
    }
    assert!(
        sent.iter().any(|r| r.referer.is_some()),
        "the log records referrers: {sent:#?}"
    );

    for state in &seen {
        assert!(!state.contains("token="), "{state}");
        for token in &tokens {
            assert!(!state.contains(token.as_str()), "a token leaked: {state}");
            // Any part of it: the header, the claims, the signature.
            for part in token.split('.') {
                assert!(!state.contains(part), "a token part leaked: {state}");
            }
        }
        for id in &session_ids {
            assert!(!state.contains(id.as_str()), "a session ID leaked: {state}");
        }
    }
    browser.quit().await;
}
