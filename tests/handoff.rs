//! Flow A over real HTTP, one acceptance suite run against both stores.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::StatusCode;
use support::app::{API_KEY, Backend, TestApp};
use support::browser::{Browser, Page};
use url::Url;

/// Signs `user` in on `account` through the service API and gives the
/// browser the session cookie, as a site's login code would.
async fn sign_in(app: &TestApp, browser: &mut Browser, user: &str) -> String {
    app.sign_in(browser, user, Some(serde_json::json!({"cart": ["tea"]})))
        .await
}

fn start_url(app: &TestApp, site: &str, from: &str, return_to: &str, mode: &str) -> String {
    format!(
        "{}/bridge/start?from={from}&return_to={}&mode={mode}",
        app.origin(site),
        urlencode(return_to)
    )
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Runs start and issue (query mode) and returns the accept URL with the token.
async fn accept_url(app: &TestApp, browser: &mut Browser, site: &str, from: &str) -> Url {
    let started = browser.get(&start_url(app, site, from, "/", "query")).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    let issued = browser.get(started.location().unwrap().as_str()).await;
    assert_eq!(issued.status, StatusCode::SEE_OTHER, "{}", issued.body);
    issued.location().unwrap()
}

fn token_of(accept: &Url) -> String {
    accept
        .query_pairs()
        .find(|(k, _)| k == "token")
        .unwrap()
        .1
        .into_owned()
}

fn assert_error(page: &Page, status: StatusCode, code: &str) {
    assert_eq!(
        (page.status, page.error_code().as_deref()),
        (status, Some(code)),
        "{}",
        page.url
    );
    assert!(
        page.header("location").is_none(),
        "an error never redirects"
    );
    // Error answers carry the same security headers as every bridge response.
    assert_eq!(page.header("cache-control"), Some("no-store"), "{code}");
    assert_eq!(
        page.header("referrer-policy"),
        Some("no-referrer"),
        "{code}"
    );
    assert_eq!(
        page.header("x-content-type-options"),
        Some("nosniff"),
        "{code}"
    );
    if page
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html"))
    {
        let csp = page.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("default-src 'none'"), "{code}: {csp}");
    }
}

async fn query_mode_hands_the_session_over(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut browser = Browser::new(app.port);
    let id = sign_in(&app, &mut browser, "alice").await;
    let pages = browser
        .follow(&start_url(&app, "shop", "account", "/", "query"))
        .await;
    let hosts: Vec<_> = pages
        .iter()
        .map(|p| {
            (
                p.url.host_str().unwrap().to_owned(),
                p.url.path().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        hosts,
        [
            ("shop.localhost".into(), "/bridge/start".into()),
            ("account.localhost".into(), "/bridge/issue".into()),
            ("shop.localhost".into(), "/bridge/accept".into()),
            ("shop.localhost".into(), "/".into()),
        ]
    );
    let state = pages[0].set_cookie("__Host-sb-state").unwrap();
    for attribute in [
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=300",
    ] {
        assert!(state.contains(attribute), "{state}");
    }
    let cookie = pages[2].set_cookie("__Host-sb").unwrap();
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    assert_eq!(
        browser.cookie("shop.localhost", "__Host-sb").as_deref(),
        Some(id.as_str())
    );
    assert!(
        browser
            .cookie("shop.localhost", "__Host-sb-state")
            .is_none(),
        "state cookie cleared"
    );
    assert!(
        pages[3].body.contains("Hello, <strong>alice</strong>"),
        "{}",
        pages[3].body
    );
    assert!(pages[3].body.contains("tea"));
    for page in &pages[..3] {
        assert_eq!(page.header("cache-control"), Some("no-store"));
        assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    }
    assert!(pages[3].header("content-security-policy").is_some());
}

async fn form_post_mode_posts_the_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut browser = Browser::new(app.port);
    sign_in(&app, &mut browser, "bob").await;
    let started = browser
        .get(&start_url(&app, "checkout", "account", "/", "form_post"))
        .await;
    assert!(
        started
            .set_cookie("__Host-sb-state")
            .unwrap()
            .contains("SameSite=None")
    );
    let form = browser.get(started.location().unwrap().as_str()).await;
    assert_eq!(form.status, StatusCode::OK);
    let csp = form.header("content-security-policy").unwrap().to_owned();
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    assert!(
        form.body.contains(&format!("<script nonce=\"{nonce}\">")),
        "{}",
        form.body
    );
    assert!(
        csp.contains(&format!("form-action {}", app.origin("checkout"))),
        "{csp}"
    );
    let action = format!("{}/bridge/accept", app.origin("checkout"));
    assert!(form.body.contains(&format!("action=\"{action}\"")));
    let token = form
        .body
        .split("name=\"token\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let accepted = browser.post_form(&action, &[("token", &token)]).await;
    assert_eq!(accepted.status, StatusCode::SEE_OTHER, "{}", accepted.body);
    let home = browser.visit(accepted.location().unwrap().as_str()).await;
    assert!(home.body.contains("bob"), "{}", home.body);
}

async fn a_replayed_token_is_refused_and_revokes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut browser = Browser::new(app.port);
    sign_in(&app, &mut browser, "carol").await;
    let accept = accept_url(&app, &mut browser, "shop", "account").await;
    let state = browser.cookie("shop.localhost", "__Host-sb-state").unwrap();
    assert_eq!(
        browser.get(accept.as_str()).await.status,
        StatusCode::SEE_OTHER
    );
    // The same browser again (a lost response, a double submit): refused,
    // but only this browser holds the verifier, so nothing leaked.
    browser.set_cookie("shop.localhost", "__Host-sb-state", &state);
    let retry = browser.get(accept.as_str()).await;
    assert_error(&retry, StatusCode::UNAUTHORIZED, "token_replayed");
    let account = browser.visit(&format!("{}/", app.origin("account"))).await;
    assert!(
        account.body.contains("carol"),
        "a retry revokes nothing: {}",
        account.body
    );
    // The token used again from another browser: it leaked. Refused as a
    // replay (not as a missing state), and the session dies everywhere.
    let mut thief = Browser::new(app.port);
    let stolen = thief.get(accept.as_str()).await;
    assert_error(&stolen, StatusCode::UNAUTHORIZED, "token_replayed");
    let account = browser.visit(&format!("{}/", app.origin("account"))).await;
    assert!(account.body.contains("not signed in"), "{}", account.body);
    let shop = browser.get(&format!("{}/", app.origin("shop"))).await;
    assert_eq!(
        shop.status,
        StatusCode::SEE_OTHER,
        "shop's copy of the session is gone too"
    );
}

async fn a_junk_token_does_not_cancel_a_hand_off(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut browser = Browser::new(app.port);
    sign_in(&app, &mut browser, "nina").await;
    let accept = accept_url(&app, &mut browser, "shop", "account").await;
    // Another site sends the browser to accept with a junk token first.
    let junk = browser
        .get(&format!("{}/bridge/accept?token=junk", app.origin("shop")))
        .await;
    assert_error(&junk, StatusCode::BAD_REQUEST, "token_malformed");
    assert!(
        junk.set_cookie("__Host-sb-state").is_none(),
        "the state cookie is left alone"
    );
    assert_eq!(
        browser.get(accept.as_str()).await.status,
        StatusCode::SEE_OTHER
    );
}

async fn return_paths_of_the_receiving_site_apply(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.sites[1].return_paths = vec!["/cart".into(), "/".into()];
        config.sites[2].return_paths = vec!["/orders".into()];
    })
    .await;
    let mut browser = Browser::new(app.port);
    sign_in(&app, &mut browser, "oscar").await;
    for (path, ok) in [
        ("/orders", true),
        ("/orders/7?x=1", true),
        ("/ordersx", false),
        ("/", false),
        ("/cart", false),
    ] {
        let page = browser
            .get(&start_url(&app, "checkout", "account", path, "query"))
            .await;
        if ok {
            assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        } else {
            assert_error(&page, StatusCode::BAD_REQUEST, "return_to_invalid");
        }
    }
    // issue checks the RECEIVING site's paths, not its own.
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let issue = format!(
        "{}/bridge/issue?to=checkout&challenge={challenge}&return_to=%2Fcart",
        app.origin("account")
    );
    assert_error(
        &browser.get(&issue).await,
        StatusCode::BAD_REQUEST,
        "return_to_invalid",
    );
    let pages = browser
        .follow(&start_url(
            &app,
            "checkout",
            "account",
            "/orders/7",
            "query",
        ))
        .await;
    assert_eq!(pages.last().unwrap().url.path(), "/orders/7");
}

async fn fifty_concurrent_redemptions_one_wins(backend: Backend) {
    // Revocation on replay is off here: with it on, a replay may revoke the
    // session before the single winner has joined it, which is right but
    // hides what this test counts.
    let app = TestApp::spawn_with(backend, |config| config.tokens.revoke_on_replay = false).await;
    let mut browser = Browser::new(app.port);
    sign_in(&app, &mut browser, "dave").await;
    let accept = accept_url(&app, &mut browser, "shop", "account").await;
    let state = browser.cookie("shop.localhost", "__Host-sb-state").unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .resolve("shop.localhost", ([127, 0, 0, 1], app.port).into())
        .build()
        .unwrap();
    let attempts = (0..50).map(|_| {
        let request = client
            .get(accept.clone())
            .header("Cookie", format!("__Host-sb-state={state}"))
            .header("Accept", "application/json");
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            (status, response.text().await.unwrap())
        }
    });
    let results = futures::future::join_all(attempts).await;
    let wins = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::SEE_OTHER)
        .count();
    let replays = results
        .iter()
        .filter(|(_, body)| body.contains("\"token_replayed\""))
        .count();
    assert_eq!((wins, replays), (1, 49), "{results:?}");
}

async fn a_token_from_another_browser_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut attacker = Browser::new(app.port);
    sign_in(&app, &mut attacker, "mallory").await;
    let planted = accept_url(&app, &mut attacker, "shop", "account").await;
    // The victim started its own hand-off, so it has a state cookie, but
    // not the one the token was minted for.
    let mut victim = Browser::new(app.port);
    victim
        .get(&start_url(&app, "shop", "account", "/", "query"))
        .await;
    assert_error(
        &victim.get(planted.as_str()).await,
        StatusCode::UNAUTHORIZED,
        "token_binding_mismatch",
    );
    assert!(victim.cookie("shop.localhost", "__Host-sb").is_none());
    // A victim with no hand-off in progress.
    let mut fresh = Browser::new(app.port);
    assert_error(
        &fresh.get(planted.as_str()).await,
        StatusCode::BAD_REQUEST,
        "state_missing",
    );
    // The token was not burnt by those attempts: its owner can still use it.
    assert_eq!(
        attacker.get(planted.as_str()).await.status,
        StatusCode::SEE_OTHER
    );
}

async fn the_issuer_must_be_the_one_the_start_named(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut browser = Browser::new(app.port);
    sign_in(&app, &mut browser, "erin").await;
    let from_account = accept_url(&app, &mut browser, "shop", "account").await;
    // Start again naming checkout: the state now expects checkout.
    browser
        .get(&start_url(&app, "shop", "checkout", "/", "query"))
        .await;
    assert_error(
        &browser.get(from_account.as_str()).await,
        StatusCode::UNAUTHORIZED,
        "token_issuer_mismatch",
    );
}

async fn expired_tokens_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut browser = Browser::new(app.port);
    sign_in(&app, &mut browser, "frank").await;
    let accept = accept_url(&app, &mut browser, "shop", "account").await;
    app.clock.advance(std::time::Duration::from_secs(36));
    assert_error(
        &browser.get(accept.as_str()).await,
        StatusCode::UNAUTHORIZED,
        "token_expired",
    );
}

async fn forged_and_broken_tokens_each_have_their_code(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut browser = Browser::new(app.port);
    sign_in(&app, &mut browser, "grace").await;
    let accept = accept_url(&app, &mut browser, "shop", "account").await;
    let token = token_of(&accept);
    let state = browser.cookie("shop.localhost", "__Host-sb-state").unwrap();
    let verifier = state.split('.').next().unwrap().to_owned();
    let challenge = session_bridge::flows::binding::challenge_of(&verifier);
    let ours = app.token_service();
    let now = app.clock.unix();
    let sign = |issuer: &str, audience: &str, return_to: &str, at: i64| {
        let request = session_bridge::token::TokenRequest {
            issuer,
            audience,
            challenge: &challenge,
            return_to,
        };
        ours.issue(&request, at).unwrap().0
    };
    let foreign = session_bridge::token::TokenService::new(
        session_bridge::token::KeySet::ephemeral(
            session_bridge::config::TokenAlgorithm::EdDSA,
            now,
        )
        .unwrap(),
        30,
        5,
    );
    let foreign_token = foreign
        .issue(
            &session_bridge::token::TokenRequest {
                issuer: "account",
                audience: "shop",
                challenge: &challenge,
                return_to: "/",
            },
            now,
        )
        .unwrap()
        .0;
    let mut flipped = token.clone().into_bytes();
    let last = flipped.len() - 2;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let segments: Vec<&str> = token.split('.').collect();
    let none_header = base64_url(br#"{"alg":"none","typ":"sb+jwt","kid":"x"}"#);
    let cases = [
        (
            sign("account", "shop", "/", now + 60),
            StatusCode::UNAUTHORIZED,
            "token_not_yet_valid",
        ),
        (
            sign("account", "checkout", "/", now),
            StatusCode::UNAUTHORIZED,
            "token_wrong_audience",
        ),
        (
            sign("ghost", "shop", "/", now),
            StatusCode::UNAUTHORIZED,
            "token_unknown_issuer",
        ),
        (
            sign("account", "shop", "//evil.example", now),
            StatusCode::BAD_REQUEST,
            "return_to_invalid",
        ),
        (
            sign("account", "shop", "/", now),
            StatusCode::UNAUTHORIZED,
            "token_unknown",
        ),
        (foreign_token, StatusCode::UNAUTHORIZED, "token_unknown_key"),
        (flipped, StatusCode::UNAUTHORIZED, "token_bad_signature"),
        (
            format!("{none_header}.{}.", segments[1]),
            StatusCode::UNAUTHORIZED,
            "token_bad_algorithm",
        ),
        (
            format!("{}.{}", segments[0], segments[1]),
            StatusCode::BAD_REQUEST,
            "token_malformed",
        ),
        (
            format!("{token}.x"),
            StatusCode::BAD_REQUEST,
            "token_malformed",
        ),
        ("x".repeat(5000), StatusCode::BAD_REQUEST, "token_malformed"),
        (
            "not a token".to_owned(),
            StatusCode::BAD_REQUEST,
            "token_malformed",
        ),
    ];
    for (bad, status, code) in cases {
        browser.set_cookie("shop.localhost", "__Host-sb-state", &state);
        let url = format!(
            "{}/bridge/accept?token={}",
            app.origin("shop"),
            urlencode(&bad)
        );
        assert_error(&browser.get(&url).await, status, code);
    }
    // A 1 MB token in a form body is refused before it is read whole.
    let huge = "a".repeat(1 << 20);
    let page = browser
        .post_form(
            &format!("{}/bridge/accept", app.origin("shop")),
            &[("token", &huge)],
        )
        .await;
    assert_error(&page, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // None of those burnt or broke the real token.
    browser.set_cookie("shop.localhost", "__Host-sb-state", &state);
    assert_eq!(
        browser.get(accept.as_str()).await.status,
        StatusCode::SEE_OTHER
    );
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn return_to_attacks_never_redirect(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut browser = Browser::new(app.port);
    sign_in(&app, &mut browser, "heidi").await;
    let attacks = [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "/%2f%2fevil.example",
        "/%5cevil.example",
        "/%2e%2e/admin",
        "/../admin",
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r\nSet-Cookie: x=y",
        "javascript:alert(1)",
        "data:text/html,hi",
        "/\u{ff0f}evil.example",
    ];
    let challenge =
        session_bridge::flows::binding::challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
    for attack in attacks {
        let start = browser
            .get(&start_url(&app, "shop", "account", attack, "query"))
            .await;
        assert_error(&start, StatusCode::BAD_REQUEST, "return_to_invalid");
        let issue = format!(
            "{}/bridge/issue?to=shop&challenge={challenge}&return_to={}",
            app.origin("account"),
            urlencode(attack)
        );
        assert_error(
            &browser.get(&issue).await,
            StatusCode::BAD_REQUEST,
            "return_to_invalid",
        );
    }
}

async fn unknown_sites_and_partners_are_refused(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.sites[2].partners.clear(); // checkout hands to no one
    })
    .await;
    let mut browser = Browser::new(app.port);
    assert_error(
        &browser
            .get(&start_url(&app, "shop", "ghost", "/", "query"))
            .await,
        StatusCode::BAD_REQUEST,
        "site_unknown",
    );
    assert_error(
        &browser
            .get(&start_url(
                &app,
                "shop",
                "https://account.localhost:1",
                "/",
                "query",
            ))
            .await,
        StatusCode::BAD_REQUEST,
        "site_unknown",
    );
    assert_error(
        &browser
            .get(&start_url(&app, "shop", "checkout", "/", "query"))
            .await,
        StatusCode::FORBIDDEN,
        "partner_not_allowed",
    );
    assert_error(
        &browser
            .get(&start_url(&app, "shop", "account", "/", "bogus"))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    for malformed in [
        "http:a",
        "https:",
        "http:\\\\evil.example\\x",
        "https://",
        "://",
        "https://account.localhost:99999",
        "%00",
    ] {
        let page = browser
            .get(&start_url(&app, "shop", malformed, "/", "query"))
            .await;
        assert_error(&page, StatusCode::BAD_REQUEST, "site_unknown");
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        let issue = format!(
            "{}/bridge/issue?to={}&challenge={challenge}&return_to=%2F",
            app.origin("account"),
            urlencode(malformed)
        );
        assert_error(
            &browser.get(&issue).await,
            StatusCode::BAD_REQUEST,
            "site_unknown",
        );
    }
    let origin_form = browser
        .get(&start_url(
            &app,
            "shop",
            &app.origin("account"),
            "/",
            "query",
        ))
        .await;
    assert_eq!(
        origin_form.status,
        StatusCode::SEE_OTHER,
        "an exact origin names a site too"
    );
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let issue = |to: &str| {
        format!(
            "{}/bridge/issue?to={}&challenge={challenge}&return_to=%2F",
            app.origin("checkout"),
            urlencode(to)
        )
    };
    assert_error(
        &browser.get(&issue("shop")).await,
        StatusCode::FORBIDDEN,
        "partner_not_allowed",
    );
    assert_error(
        &browser.get(&issue("nowhere")).await,
        StatusCode::BAD_REQUEST,
        "site_unknown",
    );
    let bad_challenge = format!(
        "{}/bridge/issue?to=shop&challenge=short&return_to=%2F",
        app.origin("account")
    );
    assert_error(
        &browser.get(&bad_challenge).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    let twice = format!(
        "{}/bridge/issue?to=shop&to=checkout&challenge={challenge}&return_to=%2F",
        app.origin("account")
    );
    assert_error(
        &browser.get(&twice).await,
        StatusCode::BAD_REQUEST,
        "duplicate_parameter",
    );
    let unknown_host = browser
        .get(&format!(
            "http://evil.localhost:{}/bridge/start?from=account&return_to=%2F",
            app.port
        ))
        .await;
    assert_error(&unknown_host, StatusCode::NOT_FOUND, "site_unknown");
}

async fn missing_session_policies(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        config.sites[1].on_missing_session = session_bridge::config::MissingSessionPolicy::Deny;
    })
    .await;
    let mut browser = Browser::new(app.port);
    // account: login — the browser goes to the login page and comes back.
    let started = browser
        .get(&start_url(&app, "shop", "account", "/", "query"))
        .await;
    let to_login = browser.get(started.location().unwrap().as_str()).await;
    let login = to_login.location().unwrap();
    assert_eq!(login.path(), "/login");
    let back = login
        .query_pairs()
        .find(|(k, _)| k == "return_to")
        .unwrap()
        .1
        .into_owned();
    assert!(back.starts_with("/bridge/issue?"), "{back}");
    let signed_in = browser
        .post_form(
            &format!("{}/login", app.origin("account")),
            &[("username", "ivan"), ("return_to", &back)],
        )
        .await;
    assert_eq!(signed_in.location().unwrap().path(), "/bridge/issue");
    let home = browser.visit(signed_in.location().unwrap().as_str()).await;
    assert!(home.body.contains("ivan"), "{}", home.body);
    // shop: deny.
    let mut other = Browser::new(app.port);
    let started = other
        .get(&start_url(&app, "checkout", "shop", "/", "query"))
        .await;
    assert_error(
        &other.get(started.location().unwrap().as_str()).await,
        StatusCode::UNAUTHORIZED,
        "no_session",
    );
    // checkout: anonymous — a session is made on checkout and handed over.
    let mut guest = Browser::new(app.port);
    let pages = guest
        .follow(&start_url(&app, "shop", "checkout", "/", "query"))
        .await;
    assert!(
        pages[1].set_cookie("__Host-sb").is_some(),
        "anonymous session cookie on the issuer"
    );
    assert_eq!(
        guest.cookie("shop.localhost", "__Host-sb"),
        guest.cookie("checkout.localhost", "__Host-sb")
    );
    assert!(pages.last().unwrap().body.contains("Hello, guest"));
}

async fn json_callers_get_problem_details(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut browser = Browser::new(app.port);
    browser.accept_json = true;
    let page = browser
        .get(&format!("{}/bridge/accept?token=abc", app.origin("shop")))
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        page.header("content-type"),
        Some("application/problem+json")
    );
    let body: serde_json::Value = serde_json::from_str(&page.body).unwrap();
    assert_eq!(body["code"], "token_malformed");
    assert_eq!(body["status"], 400);
    assert!(body["type"].as_str().unwrap().ends_with("token_malformed"));
}

async fn session_api_creates_sessions(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{}/api/v1/sessions", app.port);
    let post = |key: Option<&str>, body: &str, content_type: &str| {
        let mut request = client
            .post(&url)
            .header("Content-Type", content_type)
            .body(body.to_owned());
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request
    };
    let read = |response: reqwest::Response| async move {
        let status = response.status();
        let etag = response
            .headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_owned());
        let cache = response
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap().to_owned());
        (
            status,
            etag,
            cache,
            response.json::<serde_json::Value>().await.unwrap(),
        )
    };
    let (status, etag, cache, body) = read(
        post(
            Some(API_KEY),
            r#"{"site":"shop","user_id":"judy","data":{"k":1}}"#,
            "application/json",
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(etag.as_deref(), Some("\"1\""));
    assert_eq!(cache.as_deref(), Some("no-store"));
    assert_eq!(body["id"].as_str().unwrap().len(), 43);
    assert_eq!(body["user_id"], "judy");
    assert_eq!(body["data"]["k"], 1);
    assert_eq!(body["version"], 1);
    assert!(body["expires_at"].as_str().unwrap().ends_with('Z'));
    assert!(body["absolute_expires_at"].is_string());
    let (status, _, _, body) = read(
        post(Some(API_KEY), r#"{"site":"shop"}"#, "application/json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "user_id and data are optional");
    assert!(body["user_id"].is_null());
    for (key, body, content_type, status, code) in [
        (
            None,
            r#"{"site":"shop"}"#,
            "application/json",
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            Some("wrong"),
            r#"{"site":"shop"}"#,
            "application/json",
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            Some(API_KEY),
            r#"{"site":"nowhere"}"#,
            "application/json",
            StatusCode::BAD_REQUEST,
            "site_unknown",
        ),
        (
            Some(API_KEY),
            r#"{"site":"#,
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            Some(API_KEY),
            r#"{"site":"shop","data":[1]}"#,
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            Some(API_KEY),
            r#"{"site":"shop","admin":true}"#,
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            Some(API_KEY),
            "site=shop",
            "application/x-www-form-urlencoded",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
    ] {
        let (got, _, _, problem) = read(post(key, body, content_type).send().await.unwrap()).await;
        assert_eq!(
            (got, problem["code"].as_str().unwrap()),
            (status, code),
            "{body}"
        );
    }
}

async fn jwks_publishes_public_keys_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut browser = Browser::new(app.port);
    let page = browser
        .get(&format!("{}/bridge/jwks.json", app.origin("shop")))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let jwks: serde_json::Value = serde_json::from_str(&page.body).unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "OKP");
    assert_eq!(keys[0]["alg"], "EdDSA");
    assert!(keys[0].get("d").is_none(), "never the private part");
    assert_ne!(page.header("cache-control"), Some("no-store"));
}

async fn errors_never_show_secrets(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut browser = Browser::new(app.port);
    let id = sign_in(&app, &mut browser, "kim").await;
    let accept = accept_url(&app, &mut browser, "shop", "account").await;
    let token = token_of(&accept);
    browser.clear_cookies("shop.localhost");
    let page = browser.get(accept.as_str()).await;
    assert_error(&page, StatusCode::BAD_REQUEST, "state_missing");
    for secret in [&token, &id] {
        assert!(!page.body.contains(secret.as_str()));
        assert!(!format!("{:?}", page.headers).contains(secret.as_str()));
    }
}

async fn api_keys_are_checked_exactly(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let url = format!("http://127.0.0.1:{}/api/v1/sessions", app.port);
    let client = reqwest::Client::new();
    let status_with = |authorization: String| {
        let request = client
            .post(&url)
            .header("Authorization", authorization)
            .json(&serde_json::json!({"site": "shop"}));
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(
        status_with(format!("Bearer {API_KEY}")).await,
        StatusCode::CREATED
    );
    assert_eq!(
        status_with(format!("bearer {API_KEY}")).await,
        StatusCode::CREATED,
        "the scheme is case-insensitive"
    );
    let near_misses = [
        format!("Bearer {}", &API_KEY[..API_KEY.len() - 1]),
        format!("Bearer {API_KEY}x"),
        format!("Basic {API_KEY}"),
        format!("Bearer{API_KEY}"),
        "Bearer ".to_owned(),
        String::new(),
    ];
    for authorization in near_misses {
        assert_eq!(
            status_with(authorization.clone()).await,
            StatusCode::UNAUTHORIZED,
            "{authorization:?}"
        );
    }
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
    query_mode_hands_the_session_over,
    form_post_mode_posts_the_token,
    a_replayed_token_is_refused_and_revokes,
    a_junk_token_does_not_cancel_a_hand_off,
    return_paths_of_the_receiving_site_apply,
    fifty_concurrent_redemptions_one_wins,
    a_token_from_another_browser_is_refused,
    the_issuer_must_be_the_one_the_start_named,
    expired_tokens_are_refused,
    forged_and_broken_tokens_each_have_their_code,
    return_to_attacks_never_redirect,
    unknown_sites_and_partners_are_refused,
    missing_session_policies,
    json_callers_get_problem_details,
    session_api_creates_sessions,
    api_keys_are_checked_exactly,
    jwks_publishes_public_keys_only,
    errors_never_show_secrets,
);
