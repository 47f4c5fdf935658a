//! Keys: HS256 deployments, and rotation (one key signs, all verify).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::StatusCode;
use session_bridge::config::TokenAlgorithm;
use session_bridge::token::generate_key_file;
use support::app::{Backend, TestApp};
use support::browser::Browser;

async fn sign_in(app: &TestApp, browser: &mut Browser) {
    app.sign_in(browser, "rotator", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_deployment_hands_over_and_publishes_no_secret() {
    let app = TestApp::spawn_with(Backend::Memory, |c| {
        c.tokens.algorithm = TokenAlgorithm::HS256
    })
    .await;
    let mut browser = Browser::new(app.port);
    sign_in(&app, &mut browser).await;
    let pages = browser
        .follow(&format!(
            "{}/bridge/start?from=account&return_to=%2F",
            app.origin("shop")
        ))
        .await;
    let token_url = pages[2].url.clone();
    let token = token_url
        .query_pairs()
        .find(|(k, _)| k == "token")
        .unwrap()
        .1
        .into_owned();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            token.split('.').next().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "HS256");
    assert!(pages.last().unwrap().body.contains("rotator"));
    let jwks = browser
        .get(&format!("{}/bridge/jwks.json", app.origin("shop")))
        .await;
    assert_eq!(jwks.body, r#"{"keys":[]}"#);
}

/// Two bridge nodes share one Redis: a token signed before a rotation by the
/// old key is still redeemed after it, by a node whose signing key is new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_signed_by_an_older_key_still_verify() {
    let old = TestApp::spawn(Backend::Redis).await;
    let mut browser = Browser::new(old.port);
    sign_in(&old, &mut browser).await;
    let issue = browser
        .get(&format!(
            "{}/bridge/start?from=account&return_to=%2F",
            old.origin("shop")
        ))
        .await
        .location()
        .unwrap();
    let accept = browser.get(issue.as_str()).await.location().unwrap();
    let state = browser.cookie("shop.localhost", "__Host-sb-state").unwrap();

    // Rotate: a newer key joins the same directory; a second node starts with it.
    let newer = generate_key_file(
        old.keys_dir.path(),
        TokenAlgorithm::EdDSA,
        old.clock.unix() + 10,
    )
    .unwrap();
    let url = old.redis.as_ref().unwrap().url();
    let keys_dir = old.keys_dir.path().to_owned();
    let new = TestApp::spawn_with(Backend::Memory, move |c| {
        c.store.kind = session_bridge::config::StoreKind::Redis;
        c.store.url = Some(url);
        c.tokens.keys_dir = keys_dir;
    })
    .await;
    let mut second = Browser::new(new.port);
    second.set_cookie("shop.localhost", "__Host-sb-state", &state);
    let moved = accept
        .as_str()
        .replace(&old.port.to_string(), &new.port.to_string());
    let redeemed = second.get(&moved).await;
    assert_eq!(redeemed.status, StatusCode::SEE_OTHER, "{}", redeemed.body);
    let jwks: serde_json::Value = serde_json::from_str(
        &second
            .get(&format!("{}/bridge/jwks.json", new.origin("shop")))
            .await
            .body,
    )
    .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids.len(), 2);
    assert_eq!(kids[0], newer, "newest first");
}
