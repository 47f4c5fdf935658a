//! The session API over real HTTP, on both stores: create, rotate, read,
//! merge patch with `If-Match`, delete; sliding and absolute expiry through
//! the browser endpoints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod session_support;
mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use session_bridge::config::Seconds;
use session_support::{Http, assert_problem, json};
use std::time::Duration;
use support::app::{Backend, TestApp};

const MINUTE: Duration = Duration::from_secs(60);

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

async fn create_read_and_delete(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let http = Http::new(&app);
    let view = http
        .create("shop", Some("sam"), json!({"cart": ["tea"]}))
        .await;
    let id = view["id"].as_str().unwrap();
    assert_eq!(view["version"], 1);
    let page = http.get_session(id).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.header("etag"), Some("\"1\""));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    let read = json(&page);
    assert_eq!(read["id"], id);
    assert_eq!(read["user_id"], "sam");
    assert_eq!(read["data"], json!({"cart": ["tea"]}));
    // A service read is no user activity: the version stays.
    assert_eq!(read["version"], 1);

    // Unknown and malformed ids: 404, and the id is never repeated.
    let unknown = "A".repeat(43);
    for probe in [
        unknown.as_str(),
        "not-a-session",
        "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "..%2F..%2Fetc",
    ] {
        let page = http.get_session(probe).await;
        assert_problem(&page, StatusCode::NOT_FOUND, "session_not_found");
        assert!(!page.body.contains("script") && !page.body.contains(&unknown));
        assert_problem(
            &http.patch(probe, Some("\"1\""), &json!({})).await,
            StatusCode::NOT_FOUND,
            "session_not_found",
        );
        assert_problem(
            &http.delete(probe).await,
            StatusCode::NOT_FOUND,
            "session_not_found",
        );
    }
    // The key is checked before anything about the session is revealed.
    let url = format!("http://account.localhost:{}/api/v1/sessions/{id}", app.port);
    for method in [Method::GET, Method::PATCH, Method::DELETE] {
        let page = http.send(method, &url, &[], None).await;
        assert_problem(&page, StatusCode::UNAUTHORIZED, "unauthorized");
    }

    // DELETE: logout everywhere; a second one finds nothing.
    assert_eq!(http.delete(id).await.status, StatusCode::NO_CONTENT);
    assert_problem(
        &http.get_session(id).await,
        StatusCode::NOT_FOUND,
        "session_not_found",
    );
    assert_problem(
        &http.delete(id).await,
        StatusCode::NOT_FOUND,
        "session_not_found",
    );
}

async fn rotation_moves_the_data_and_kills_the_old_id(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let http = Http::new(&app);
    let old = http
        .create("shop", None, json!({"cart": ["tea"], "theme": "dark"}))
        .await;
    let old_id = old["id"].as_str().unwrap();
    let page = http
        .create_raw(&json!({
            "site": "shop",
            "user_id": "sam",
            "rotate_from": old_id,
            "data": {"theme": null, "greeted": true},
        }))
        .await;
    assert_eq!(page.status, StatusCode::CREATED, "{}", page.body);
    assert_eq!(page.header("etag"), Some("\"1\""));
    let fresh = json(&page);
    let new_id = fresh["id"].as_str().unwrap();
    assert_ne!(new_id, old_id, "a NEW id");
    assert_eq!(fresh["user_id"], "sam");
    // The data moved over, with `data` merged as a patch.
    assert_eq!(fresh["data"], json!({"cart": ["tea"], "greeted": true}));

    // The old id is dead: for services, for browsers, and for rotation.
    assert_problem(
        &http.get_session(old_id).await,
        StatusCode::NOT_FOUND,
        "session_not_found",
    );
    let page = http
        .browser(
            Method::GET,
            &app,
            "shop",
            "/bridge/session",
            Some(old_id),
            &[],
        )
        .await;
    assert_problem(&page, StatusCode::UNAUTHORIZED, "no_session");
    let page = http
        .browser(
            Method::GET,
            &app,
            "shop",
            "/bridge/session",
            Some(new_id),
            &[],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let again = http
        .create_raw(&json!({"site": "shop", "rotate_from": old_id}))
        .await;
    assert_problem(&again, StatusCode::NOT_FOUND, "session_not_found");
    assert!(!again.body.contains(old_id), "the id is never repeated");

    // The rotating site must hold the session; malformed ids are just unknown.
    let page = http
        .create_raw(&json!({"site": "checkout", "rotate_from": new_id}))
        .await;
    assert_problem(&page, StatusCode::NOT_FOUND, "session_not_found");
    assert_eq!(http.get_session(new_id).await.status, StatusCode::OK);
    let page = http
        .create_raw(&json!({"site": "shop", "rotate_from": "x"}))
        .await;
    assert_problem(&page, StatusCode::NOT_FOUND, "session_not_found");
}

async fn merge_patch_with_if_match(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let http = Http::new(&app);
    let view = http
        .create(
            "shop",
            Some("sam"),
            json!({"cart": ["tea"], "theme": "dark", "prefs": {"a": 1, "b": 2}}),
        )
        .await;
    let id = view["id"].as_str().unwrap();

    let page = http
        .patch(
            id,
            Some("\"1\""),
            &json!({"theme": null, "prefs": {"b": null, "c": 3}, "cart": ["tea", "cake"]}),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.header("etag"), Some("\"2\""));
    let patched = json(&page);
    assert_eq!(patched["version"], 2);
    assert_eq!(patched["id"], id);
    assert_eq!(
        patched["data"],
        json!({"cart": ["tea", "cake"], "prefs": {"a": 1, "c": 3}})
    );
    assert_eq!(json(&http.get_session(id).await)["data"], patched["data"]);

    // 428 without If-Match (and `*` does not opt out of the check).
    for tag in [None, Some("*")] {
        assert_problem(
            &http.patch(id, tag, &json!({"x": 1})).await,
            StatusCode::PRECONDITION_REQUIRED,
            "precondition_required",
        );
    }
    // 412 on a stale version, with the current one in the problem body.
    let page = http.patch(id, Some("\"1\""), &json!({"x": 1})).await;
    assert_problem(&page, StatusCode::PRECONDITION_FAILED, "version_mismatch");
    assert_eq!(json(&page)["current_version"], 2);
    let page = http.patch(id, Some("\"7\""), &json!({"x": 1})).await;
    assert_eq!(json(&page)["current_version"], 2);
    // Malformed tags, bodies and media types are refused.
    for tag in ["2", "W/\"2\"", "\"2\", \"3\"", "\"two\""] {
        assert_problem(
            &http.patch(id, Some(tag), &json!({"x": 1})).await,
            StatusCode::BAD_REQUEST,
            "invalid_if_match",
        );
    }
    for body in [json!(["x"]), json!(null), json!("x"), json!(1)] {
        assert_problem(
            &http.patch(id, Some("\"2\""), &body).await,
            StatusCode::BAD_REQUEST,
            "invalid_patch",
        );
    }
    let page = http
        .api(
            Method::PATCH,
            &format!("/api/v1/sessions/{id}"),
            &[("Content-Type", "application/json"), ("If-Match", "\"2\"")],
            Some(b"{\"x\":1}".to_vec()),
        )
        .await;
    assert_problem(
        &page,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    // A session cannot be grown without bound.
    let big = "x".repeat(40 * 1024);
    let page = http.patch(id, Some("\"2\""), &json!({"a": big})).await;
    assert_eq!(page.status, StatusCode::OK);
    let page = http.patch(id, Some("\"3\""), &json!({"b": big})).await;
    assert_problem(
        &page,
        StatusCode::PAYLOAD_TOO_LARGE,
        "session_data_too_large",
    );
    // Nothing above changed the session but the two good patches.
    assert_eq!(http.get_session(id).await.header("etag"), Some("\"3\""));
}

/// Twenty services add twenty different items to one cart at once, each
/// re-reading and retrying on 412: no item is lost.
async fn concurrent_patches_lose_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let http = Http::new(&app);
    let view = http.create("shop", None, json!({"cart": []})).await;
    let id = view["id"].as_str().unwrap().to_owned();
    let mut tasks = Vec::new();
    for item in 0..20 {
        let http = http.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            for attempt in 0..500 {
                let page = http.get_session(&id).await;
                assert_eq!(page.status, StatusCode::OK);
                let tag = page.header("etag").unwrap().to_owned();
                let mut cart = json(&page)["data"]["cart"].as_array().unwrap().clone();
                cart.push(Value::from(format!("item-{item}")));
                let page = http.patch(&id, Some(&tag), &json!({"cart": cart})).await;
                match page.status {
                    StatusCode::OK => return attempt,
                    StatusCode::PRECONDITION_FAILED => continue,
                    other => panic!("{other}: {}", page.body),
                }
            }
            panic!("item-{item} never got in");
        }));
    }
    let mut retries = 0;
    for task in tasks {
        retries += task.await.unwrap();
    }
    let view = json(&http.get_session(&id).await);
    let mut cart: Vec<String> = view["data"]["cart"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    cart.sort();
    let mut expected: Vec<String> = (0..20).map(|i| format!("item-{i}")).collect();
    expected.sort();
    assert_eq!(cart, expected, "after {retries} retries");
    assert_eq!(view["version"], 21);
}

/// Idle and absolute expiry on the memory store, whose records expire on
/// the app's manual clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_and_absolute_expiry_on_the_memory_store() {
    let app = TestApp::spawn_with(Backend::Memory, |c| {
        c.sessions.idle_timeout = Seconds::parse("30m").unwrap();
        c.sessions.absolute_timeout = Seconds::parse("1h").unwrap();
    })
    .await;
    let http = Http::new(&app);
    let kept = http.create("shop", Some("sam"), json!({})).await;
    let kept = kept["id"].as_str().unwrap();
    let idle = http.create("shop", Some("una"), json!({})).await;
    let idle = idle["id"].as_str().unwrap();
    let absolute_expires_at = app.clock.unix() + 3600;
    let heartbeat = async |id: &str| {
        http.browser(
            Method::POST,
            &app,
            "shop",
            "/bridge/heartbeat",
            Some(id),
            &[],
        )
        .await
    };
    let read = async |id: &str| {
        http.browser(Method::GET, &app, "shop", "/bridge/session", Some(id), &[])
            .await
    };

    // Every 20 minutes a heartbeat or a read keeps it alive...
    app.clock.advance(20 * MINUTE);
    let page = heartbeat(kept).await;
    assert_eq!(page.status, StatusCode::NO_CONTENT, "{}", page.body);
    app.clock.advance(20 * MINUTE);
    let page = read(kept).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    // ...while the one left alone for 40 minutes is gone.
    assert_problem(&read(idle).await, StatusCode::UNAUTHORIZED, "no_session");
    assert_problem(
        &heartbeat(idle).await,
        StatusCode::UNAUTHORIZED,
        "no_session",
    );
    // At 50 minutes the idle timeout is cut short by the absolute expiry.
    app.clock.advance(10 * MINUTE);
    let view = json(&read(kept).await);
    assert_eq!(view["expires_at"], rfc3339(absolute_expires_at));
    assert_eq!(view["absolute_expires_at"], rfc3339(absolute_expires_at));
    // Heartbeats cannot carry it past the absolute expiry.
    app.clock.advance(9 * MINUTE);
    assert_eq!(heartbeat(kept).await.status, StatusCode::NO_CONTENT);
    app.clock.advance(2 * MINUTE);
    assert_problem(
        &heartbeat(kept).await,
        StatusCode::UNAUTHORIZED,
        "no_session",
    );
    assert_problem(&read(kept).await, StatusCode::UNAUTHORIZED, "no_session");
    assert_problem(
        &http.get_session(kept).await,
        StatusCode::NOT_FOUND,
        "session_not_found",
    );
}

/// On Redis the TTL is Redis's own: a heartbeat sets it to the idle
/// timeout, cut short by the absolute expiry (computed on the app's clock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_set_the_redis_ttl() {
    let app = TestApp::spawn_with(Backend::Redis, |c| {
        c.sessions.idle_timeout = Seconds::parse("30m").unwrap();
        c.sessions.absolute_timeout = Seconds::parse("1h").unwrap();
    })
    .await;
    let http = Http::new(&app);
    let view = http.create("shop", None, json!({})).await;
    let id = view["id"].as_str().unwrap();
    let client = ::redis::Client::open(app.redis.as_ref().unwrap().url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("sb:s:{id}");
    let pttl = async |con: &mut ::redis::aio::MultiplexedConnection| -> i64 {
        ::redis::cmd("PTTL")
            .arg(&key)
            .query_async(con)
            .await
            .unwrap()
    };
    let _: i64 = ::redis::cmd("PEXPIRE")
        .arg(&key)
        .arg(5_000)
        .query_async(&mut con)
        .await
        .unwrap();
    let page = http
        .browser(
            Method::POST,
            &app,
            "shop",
            "/bridge/heartbeat",
            Some(id),
            &[],
        )
        .await;
    assert_eq!(page.status, StatusCode::NO_CONTENT, "{}", page.body);
    let ttl = pttl(&mut con).await;
    assert!((29 * 60_000..=30 * 60_000).contains(&ttl), "{ttl} ms");
    app.clock.advance(50 * MINUTE);
    let page = http
        .browser(
            Method::POST,
            &app,
            "shop",
            "/bridge/heartbeat",
            Some(id),
            &[],
        )
        .await;
    assert_eq!(page.status, StatusCode::NO_CONTENT, "{}", page.body);
    let ttl = pttl(&mut con).await;
    assert!((9 * 60_000..=10 * 60_000).contains(&ttl), "{ttl} ms");
    // A heartbeat is no write: the version stays.
    assert_eq!(http.get_session(id).await.header("etag"), Some("\"1\""));
}

/// The browser endpoints take the `X-Session-Id` header over the cookie,
/// and refuse cross-origin state changes.
async fn browser_endpoints_header_and_origin(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let http = Http::new(&app);
    let mine = http.create("shop", Some("sam"), json!({})).await;
    let mine = mine["id"].as_str().unwrap();
    let other = http.create("shop", Some("una"), json!({})).await;
    let other = other["id"].as_str().unwrap();
    let page = http
        .browser(
            Method::GET,
            &app,
            "shop",
            "/bridge/session",
            Some(other),
            &[("X-Session-Id", mine)],
        )
        .await;
    assert_eq!(json(&page)["user_id"], "sam", "the header wins");
    // Cross-origin posts are refused and change nothing.
    let evil = format!("http://evil.localhost:{}", app.port);
    for headers in [
        vec![("Origin", evil.as_str()), ("Sec-Fetch-Site", "cross-site")],
        vec![("Origin", evil.as_str())],
        vec![("Sec-Fetch-Site", "cross-site")],
        vec![("Sec-Fetch-Site", "same-site")],
    ] {
        for path in ["/bridge/heartbeat", "/bridge/logout"] {
            let page = http
                .browser(Method::POST, &app, "shop", path, Some(mine), &headers)
                .await;
            assert_problem(&page, StatusCode::FORBIDDEN, "cross_origin_refused");
        }
    }
    assert_eq!(http.get_session(mine).await.status, StatusCode::OK);
    // Same-origin ones pass.
    let own = app.origin("shop");
    let page = http
        .browser(
            Method::POST,
            &app,
            "shop",
            "/bridge/heartbeat",
            Some(mine),
            &[("Origin", own.as_str()), ("Sec-Fetch-Site", "same-origin")],
        )
        .await;
    assert_eq!(page.status, StatusCode::NO_CONTENT, "{}", page.body);
    // Only POST: a GET cannot log anyone out (no CSRF by link or image).
    let page = http
        .browser(Method::GET, &app, "shop", "/bridge/logout", Some(mine), &[])
        .await;
    assert_eq!(page.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(http.get_session(mine).await.status, StatusCode::OK);
}

/// `session show` prints the record and its TTL from the configured Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_show_prints_the_record_and_its_ttl() {
    let app = TestApp::spawn(Backend::Redis).await;
    let http = Http::new(&app);
    let view = http
        .create("shop", Some("sam"), json!({"cart": ["tea"]}))
        .await;
    let id = view["id"].as_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bridge.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nkind = \"redis\"\nurl = \"{}\"\n\n[[sites]]\nid = \"shop\"\norigins = [\"https://shop.example.com\"]\n",
            app.redis.as_ref().unwrap().url()
        ),
    )
    .unwrap();
    let run = |id: String| {
        let config = config.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_session-bridge"))
                    .args(["session", "show", &id, "--config"])
                    .arg(&config)
                    .env_remove("SESSION_BRIDGE_API_KEY")
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    let out = run(id.clone()).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("remaining TTL: 29m") || stdout.contains("remaining TTL: 30m"),
        "{stdout}"
    );
    assert!(stdout.contains("\"user_id\": \"sam\""), "{stdout}");
    assert!(stdout.contains(&id), "{stdout}");
    // A base64url ID may begin with `-`; it is looked up, not read as an option.
    for probe in [
        "A".repeat(43),
        "nonsense".to_owned(),
        format!("-{}", "A".repeat(42)),
    ] {
        let out = run(probe).await;
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("not found"));
    }
    // Only the one record asked for is printed.
    let other = http.create("shop", Some("una"), json!({})).await;
    let out = run(id).await;
    assert!(!String::from_utf8_lossy(&out.stdout).contains(other["id"].as_str().unwrap()));
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
    create_read_and_delete,
    rotation_moves_the_data_and_kills_the_old_id,
    merge_patch_with_if_match,
    concurrent_patches_lose_nothing,
    browser_endpoints_header_and_origin,
);
