//! Redis going away and coming back: the bridge fails closed (503 and a
//! retry page, never a token issued or redeemed without the store) and
//! recovers by itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::StatusCode;
use support::app::{API_KEY, Backend, TestApp};
use support::browser::Browser;

async fn sign_in(app: &TestApp, browser: &mut Browser) {
    app.sign_in(browser, "olga", None).await;
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

async fn redis_get(url: &str, key: &str) -> Option<String> {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut connection)
        .await
        .unwrap()
}

/// A logout while Redis does not answer is honoured on this node at once
/// and written to Redis when it answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_during_an_outage_is_honoured_and_written_later() {
    let app = TestApp::spawn(Backend::Redis).await;
    let mut browser = Browser::new(app.port);
    sign_in(&app, &mut browser).await;
    let id = browser.cookie("account.localhost", "__Host-sb").unwrap();
    let url = app.redis.as_ref().unwrap().url();
    assert!(redis_get(&url, &format!("sb:s:{id}")).await.is_some());
    app.redis.as_ref().unwrap().pause();
    let logout = browser
        .post_form(&format!("{}/bridge/logout", app.origin("account")), &[])
        .await;
    assert!(
        logout.status.is_success(),
        "{} {}",
        logout.status,
        logout.body
    );
    // Honoured here at once, although Redis still holds the record.
    browser.set_cookie("account.localhost", "__Host-sb", &id);
    let mut json = Browser::new(app.port);
    json.accept_json = true;
    json.set_cookie("account.localhost", "__Host-sb", &id);
    let read = json
        .get(&format!("{}/bridge/session", app.origin("account")))
        .await;
    assert_eq!(read.status, StatusCode::UNAUTHORIZED, "{}", read.body);
    app.redis.as_ref().unwrap().resume();
    let mut written = false;
    for _ in 0..50 {
        if redis_get(&url, &format!("sb:s:{id}")).await.is_none() {
            written = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(written, "the queued revocation reached Redis");
}

/// With `[store] cache_ttl`, reads of a session seen recently are served
/// while Redis does not answer; tokens still fail closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_cache_serves_recent_sessions_but_never_tokens() {
    let app = TestApp::spawn_with(Backend::Redis, |config| {
        config.store.cache_ttl = session_bridge::config::Seconds::new(30);
    })
    .await;
    let mut browser = Browser::new(app.port);
    sign_in(&app, &mut browser).await;
    browser.accept_json = true;
    let session = format!("{}/bridge/session", app.origin("account"));
    assert_eq!(browser.get(&session).await.status, StatusCode::OK);
    app.redis.as_ref().unwrap().pause();
    let cached = browser.get(&session).await;
    assert_eq!(cached.status, StatusCode::OK, "{}", cached.body);
    assert!(cached.body.contains("olga"));
    browser.accept_json = false;
    let start = browser
        .get(&format!(
            "{}/bridge/start?from=account&return_to=%2F",
            app.origin("shop")
        ))
        .await;
    let issue = browser.get(start.location().unwrap().as_str()).await;
    assert_eq!(
        issue.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "no token without the store"
    );
    app.redis.as_ref().unwrap().resume();
}

/// Redis stops in the middle of a stream of hand-offs: no 500, no double
/// redemption, 503 while it is down, recovery within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_hand_offs_survives_a_stop() {
    let app = std::sync::Arc::new(TestApp::spawn(Backend::Redis).await);
    let statuses = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let redeemed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (app, statuses, redeemed) = (app.clone(), statuses.clone(), redeemed.clone());
        workers.push(tokio::spawn(async move {
            let mut browser = Browser::new(app.port);
            sign_in(&app, &mut browser).await;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(4);
            while std::time::Instant::now() < deadline {
                browser.clear_cookies("shop.localhost");
                let start = browser
                    .get(&format!(
                        "{}/bridge/start?from=account&return_to=%2F",
                        app.origin("shop")
                    ))
                    .await;
                let issue = browser.get(start.location().unwrap().as_str()).await;
                statuses.lock().unwrap().push(issue.status.as_u16());
                let Some(accept) = issue.location() else {
                    continue;
                };
                let accepted = browser.get(accept.as_str()).await;
                statuses.lock().unwrap().push(accepted.status.as_u16());
                if accepted.status == StatusCode::SEE_OTHER {
                    redeemed.lock().unwrap().push(accept.to_string());
                }
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    app.redis.as_ref().unwrap().pause();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    app.redis.as_ref().unwrap().resume();
    for worker in workers {
        worker.await.unwrap();
    }
    let statuses = statuses.lock().unwrap().clone();
    assert!(
        !statuses.iter().any(|s| *s >= 500 && *s != 503),
        "{statuses:?}"
    );
    assert!(statuses.contains(&503), "the stop was seen: {statuses:?}");
    let redeemed = redeemed.lock().unwrap().clone();
    let unique: std::collections::HashSet<&String> = redeemed.iter().collect();
    assert_eq!(unique.len(), redeemed.len(), "no token redeemed twice");
    // Recovery: the last statuses are successes again.
    assert_eq!(statuses.last(), Some(&303), "{statuses:?}");
}

/// The service API's logout (DELETE) during an outage is queued the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_delete_during_an_outage_is_honoured_and_written_later() {
    let app = TestApp::spawn(Backend::Redis).await;
    let created: serde_json::Value = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/api/v1/sessions", app.port))
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({"site": "account", "user_id": "pia"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created["session_fp"].as_str().map(str::len),
        Some(32),
        "the fingerprint back-channel tokens carry as sid"
    );
    let url = app.redis.as_ref().unwrap().url();
    app.redis.as_ref().unwrap().pause();
    let deleted = reqwest::Client::new()
        .delete(format!(
            "http://127.0.0.1:{}/api/v1/sessions/{id}",
            app.port
        ))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    app.redis.as_ref().unwrap().resume();
    let mut written = false;
    for _ in 0..50 {
        if redis_get(&url, &format!("sb:s:{id}")).await.is_none() {
            written = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(written, "the queued revocation reached Redis");
}
