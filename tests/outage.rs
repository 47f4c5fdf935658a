//! Redis going away and coming back: the bridge fails closed (503 and a
//! retry page, never a token issued or redeemed without the store) and
//! recovers by itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::StatusCode;
use support::app::{API_KEY, Backend, TestApp};
use support::browser::Browser;

async fn sign_in(app: &TestApp, browser: &mut Browser) {
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/api/v1/sessions", app.port))
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({"site": "account", "user_id": "olga"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: serde_json::Value = response.json().await.unwrap();
    browser.set_cookie(
        "account.localhost",
        "__Host-sb",
        body["id"].as_str().unwrap(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_closed_and_recovers() {
    let mut app = TestApp::spawn(Backend::Redis).await;
    let mut browser = Browser::new(app.port);
    sign_in(&app, &mut browser).await;
    let start = format!(
        "{}/bridge/start?from=account&return_to=%2F",
        app.origin("shop")
    );
    // A token issued while Redis was up...
    let issue = browser.get(&start).await.location().unwrap();
    let accept = browser.get(issue.as_str()).await.location().unwrap();
    let state = browser.cookie("shop.localhost", "__Host-sb-state").unwrap();

    app.redis.as_mut().unwrap().kill();
    let refused = browser.get(issue.as_str()).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.error_code().as_deref(), Some("store_unavailable"));
    assert_eq!(refused.header("retry-after"), Some("2"));
    assert!(
        refused.body.contains("Try again"),
        "a retry page: {}",
        refused.body
    );
    assert!(refused.header("location").is_none());
    // ...is not redeemed without the store.
    let redeem = browser.get(accept.as_str()).await;
    assert_eq!(redeem.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(browser.cookie("shop.localhost", "__Host-sb").is_none());
    let ready = browser.get(&format!("{}/readyz", app.origin("shop"))).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    let health = browser
        .get(&format!("{}/healthz", app.origin("shop")))
        .await;
    assert_eq!(health.status, StatusCode::OK, "the process itself is fine");
    let mut api = Browser::new(app.port);
    api.accept_json = true;
    let created = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/api/v1/sessions", app.port))
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({"site": "account"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::SERVICE_UNAVAILABLE);
    let problem: serde_json::Value = created.json().await.unwrap();
    assert_eq!(problem["code"], "store_unavailable");

    // Redis comes back (empty: it keeps nothing on disk in tests).
    app.redis.as_mut().unwrap().restart();
    let mut ready_again = false;
    for _ in 0..50 {
        if browser
            .get(&format!("{}/readyz", app.origin("shop")))
            .await
            .status
            == StatusCode::OK
        {
            ready_again = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready_again, "the bridge reconnects by itself");
    browser.set_cookie("shop.localhost", "__Host-sb-state", &state);
    let lost = browser.get(accept.as_str()).await;
    assert_eq!(lost.error_code().as_deref(), Some("token_unknown"));
    sign_in(&app, &mut browser).await;
    let home = browser.visit(&start).await;
    assert!(home.body.contains("olga"), "{}", home.body);
}
