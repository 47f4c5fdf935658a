//! The Redis store behind Sentinel, on real processes started by the test: a
//! master, a replica (`--replicaof`) and a sentinel (quorum 1, 1 s to mark
//! the master down). The master is killed (SIGKILL); after the sentinel's
//! failover the SAME store / the SAME running bridge works again on the
//! promoted replica — no restart — having answered 503 (never 500, never a
//! second redemption of a token) while there was no master.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::StatusCode;
use session_bridge::config::{SentinelConfig, StoreConfig, StoreKind};
use session_bridge::store::{
    ConsumeOutcome, RedisStore, Session, SessionId, Store, StoreError, TokenRecord,
};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::app::{API_KEY, Backend, TestApp};
use support::browser::{Browser, Page};
use support::redis_topologies::SentinelSet;
use url::Url;

const MASTER_NAME: &str = "mymaster";
const LONG: Duration = Duration::from_secs(600);
/// How long the sentinel may take to promote the replica.
const FAILOVER_LIMIT: Duration = Duration::from_secs(30);
/// No store call may take longer (master lookup + call deadlines, plus slack).
const CALL_LIMIT: Duration = Duration::from_secs(7);

async fn start_set() -> SentinelSet {
    tokio::task::spawn_blocking(|| SentinelSet::start(MASTER_NAME))
        .await
        .expect("sentinel set start task")
}

fn sentinel_config(set: &SentinelSet) -> SentinelConfig {
    SentinelConfig {
        master: MASTER_NAME.to_owned(),
        nodes: set.sentinel_urls(),
    }
}

fn random_b64() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn session(id: &SessionId) -> Session {
    Session {
        id: id.clone(),
        user_id: Some("alice".to_owned()),
        auth_ref: None,
        created_at: 1_700_000_000,
        last_seen: 1_700_000_000,
        absolute_expires_at: 1_700_043_200,
        origin_site: "account".to_owned(),
        joined_sites: Vec::new(),
        data: serde_json::Map::new(),
        version: 1,
    }
}

fn record(session_id: &SessionId) -> TokenRecord {
    TokenRecord {
        session_id: session_id.clone(),
        aud: "shop".to_owned(),
        challenge: random_b64(),
        receiver_joined: false,
    }
}

/// Runs `op`, insisting it answers within [`CALL_LIMIT`].
async fn in_time<T>(what: &str, op: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(CALL_LIMIT, op)
        .await
        .unwrap_or_else(|_| panic!("{what} hung during the failover"))
}

fn failover_seen(set: &SentinelSet, old_port: u16) -> bool {
    tokio::task::block_in_place(|| set.master_addr()).is_some_and(|(_, port)| port != old_port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_follows_a_failover() {
    let started = Instant::now();
    let mut set = start_set().await;
    let store = RedisStore::from_config(&StoreConfig {
        kind: StoreKind::Redis,
        url: None,
        sentinel: Some(sentinel_config(&set)),
        cluster: None,
        ..StoreConfig::default()
    })
    .await
    .expect("connect through the sentinel");
    let s = session(&SessionId::from_generated(random_b64()));
    let jti = uuid::Uuid::new_v4().to_string();
    let rec = record(&s.id);
    store.create_session(&s, LONG).await.unwrap();
    store.put_token(&jti, &rec, LONG).await.unwrap();
    tokio::task::block_in_place(|| set.wait_replica_caught_up(Duration::from_secs(5)));

    let old_port = set.master.port();
    tokio::task::block_in_place(|| set.master.kill());
    let killed = Instant::now();

    // Until the failover: every call fails closed, promptly. After it: the
    // same store answers again (a call or two may still report the switch).
    let mut unavailable = 0;
    let recovered_at = loop {
        let outcome = in_time("ping", store.ping()).await;
        match outcome {
            Ok(()) => break killed.elapsed(),
            Err(StoreError::Unavailable(_)) => unavailable += 1,
            Err(other) => panic!("unexpected error during the failover: {other}"),
        }
        assert!(
            killed.elapsed() < FAILOVER_LIMIT,
            "the store did not follow the failover within {FAILOVER_LIMIT:?}{}",
            set.sentinel.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(unavailable > 0, "the master was dead for a while");
    assert!(
        failover_seen(&set, old_port),
        "answers come from the new master"
    );
    eprintln!("recovered {recovered_at:?} after the kill ({unavailable} unavailable pings)");

    // The replicated data is there, the token is still pending and redeems
    // exactly once on the new master, and writes work (no READONLY).
    assert_eq!(store.get_session(&s.id).await.unwrap(), Some(s.clone()));
    assert_eq!(
        store.consume_token(&jti).await.unwrap(),
        ConsumeOutcome::Redeemed(rec.clone())
    );
    assert_eq!(
        store.consume_token(&jti).await.unwrap(),
        ConsumeOutcome::Replayed(rec)
    );
    let fresh = session(&SessionId::from_generated(random_b64()));
    store.create_session(&fresh, LONG).await.unwrap();
    assert_eq!(store.get_session(&fresh.id).await.unwrap(), Some(fresh));
    eprintln!("test took {:?}", started.elapsed());
}

/// A failover without a crash (`SENTINEL FAILOVER`): the old master lives on
/// and is turned into a replica. The store must leave it (the sentinel
/// drops its clients; writes there would get READONLY, reads would be
/// stale) and write to the promoted one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_follows_a_manual_failover_off_a_live_master() {
    let started = Instant::now();
    let set = start_set().await;
    let store = RedisStore::from_config(&StoreConfig {
        kind: StoreKind::Redis,
        url: None,
        sentinel: Some(sentinel_config(&set)),
        cluster: None,
        ..StoreConfig::default()
    })
    .await
    .expect("connect through the sentinel");
    let before = session(&SessionId::from_generated(random_b64()));
    store.create_session(&before, LONG).await.unwrap();
    tokio::task::block_in_place(|| set.wait_replica_caught_up(Duration::from_secs(5)));

    let old_port = set.master.port();
    let reply: String = tokio::task::block_in_place(|| {
        set.sentinel
            .query(redis::cmd("SENTINEL").arg("FAILOVER").arg(MASTER_NAME))
            .expect("SENTINEL FAILOVER")
    });
    assert_eq!(reply, "OK");
    let new_port = tokio::task::block_in_place(|| set.wait_for_failover(old_port, FAILOVER_LIMIT));

    let promoted = Instant::now();

    // Writes through the same store soon land on the promoted master (the
    // store's watcher asks the sentinels twice a second), and stay there.
    let on_new_master = |s: &Session| -> bool {
        let found: Option<String> = tokio::task::block_in_place(|| {
            support::redis_topologies::query(
                new_port,
                redis::cmd("GET").arg(format!("sb:s:{}", s.id.expose())),
            )
        });
        found.is_some()
    };
    let mut attempts: BTreeMap<&str, usize> = BTreeMap::new();
    let after = loop {
        let s = session(&SessionId::from_generated(random_b64()));
        match in_time("create_session", store.create_session(&s, LONG)).await {
            Ok(()) if on_new_master(&s) => break s,
            Ok(()) => *attempts.entry("written to the old master").or_default() += 1,
            Err(StoreError::Unavailable(_)) => *attempts.entry("503").or_default() += 1,
            Err(other) => panic!("unexpected error during the failover: {other}"),
        }
        assert!(
            promoted.elapsed() < Duration::from_secs(3),
            "writes still miss the promoted master 3 s after the failover: {attempts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "writes reach the promoted master {:?} after the failover ({attempts:?})",
        promoted.elapsed()
    );
    for _ in 0..5 {
        let s = session(&SessionId::from_generated(random_b64()));
        store.create_session(&s, LONG).await.unwrap();
        assert!(on_new_master(&s), "a later write went elsewhere");
    }
    assert_eq!(store.get_session(&after.id).await.unwrap(), Some(after));
    assert_eq!(store.get_session(&before.id).await.unwrap(), Some(before));
    eprintln!("test took {:?}", started.elapsed());
}

// ----------------------------------------------------- flow A over HTTP

/// What one hand-off attempt came to.
enum Attempt {
    /// Redeemed: the accept URL and the state cookie that went with it.
    Done { accept: Url, state: String },
    /// A 503 at some step (the store was unavailable).
    Unavailable,
}

/// Only two answers are allowed while the master changes: the normal one
/// and 503 (with the retry page). Never a 500.
fn allowed(page: &Page, normal: StatusCode, step: &str) -> bool {
    if page.status == normal {
        return true;
    }
    assert_eq!(
        page.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{step}: only {normal} or 503 are acceptable: {}",
        page.body
    );
    false
}

/// Signs a new user in on `account` and hands the session to `shop`.
async fn hand_off(app: &TestApp, user: &str) -> Attempt {
    let mut browser = Browser::new(app.port);
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/api/v1/sessions", app.port))
        .header("Host", format!("account.localhost:{}", app.port))
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({"site": "account", "user_id": user}))
        .send()
        .await
        .unwrap();
    match response.status() {
        StatusCode::CREATED => {}
        StatusCode::SERVICE_UNAVAILABLE => return Attempt::Unavailable,
        other => panic!(
            "sign-in: only 201 or 503 are acceptable, got {other}: {}",
            response.text().await.unwrap()
        ),
    }
    let body: serde_json::Value = response.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_owned();
    browser.set_cookie("account.localhost", "__Host-sb", &id);
    hand_over(app, &mut browser, "shop").await
}

/// Flow A from `account` (whose session the browser holds) to `target`.
async fn hand_over(app: &TestApp, browser: &mut Browser, target: &str) -> Attempt {
    let id = browser.cookie("account.localhost", "__Host-sb").unwrap();
    let host = format!("{target}.localhost");
    let start = format!(
        "{}/bridge/start?from=account&return_to=%2F&mode=query",
        app.origin(target)
    );
    let started = browser.get(&start).await;
    if !allowed(&started, StatusCode::SEE_OTHER, "start") {
        return Attempt::Unavailable;
    }
    let state = browser.cookie(&host, "__Host-sb-state").unwrap();
    let issued = browser.get(started.location().unwrap().as_str()).await;
    if !allowed(&issued, StatusCode::SEE_OTHER, "issue") {
        return Attempt::Unavailable;
    }
    let accept = issued.location().unwrap();
    let accepted = browser.get(accept.as_str()).await;
    if !allowed(&accepted, StatusCode::SEE_OTHER, "accept") {
        return Attempt::Unavailable;
    }
    assert_eq!(
        browser.cookie(&host, "__Host-sb").as_deref(),
        Some(id.as_str())
    );
    Attempt::Done { accept, state }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_offs_work_again_after_a_failover_without_a_restart() {
    let started = Instant::now();
    let mut set = start_set().await;
    let sentinel = sentinel_config(&set);
    let app = TestApp::spawn_with(Backend::Memory, move |c| {
        c.store.kind = StoreKind::Redis;
        c.store.url = None;
        c.store.sentinel = Some(sentinel);
    })
    .await;

    let mut redeemed: Vec<(Url, String, &str)> = Vec::new();
    // Before the kill: alice signs in and her session goes to shop.
    let mut alice = Browser::new(app.port);
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/api/v1/sessions", app.port))
        .header("Host", format!("account.localhost:{}", app.port))
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({"site": "account", "user_id": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: serde_json::Value = response.json().await.unwrap();
    alice.set_cookie(
        "account.localhost",
        "__Host-sb",
        body["id"].as_str().unwrap(),
    );
    match hand_over(&app, &mut alice, "shop").await {
        Attempt::Done { accept, state } => redeemed.push((accept, state, "shop")),
        Attempt::Unavailable => panic!("a hand-off before the failover got a 503"),
    }
    tokio::task::block_in_place(|| set.wait_replica_caught_up(Duration::from_secs(5)));

    let old_port = set.master.port();
    tokio::task::block_in_place(|| set.master.kill());
    let killed = Instant::now();

    // A stream of hand-offs through the failover, until three in a row have
    // worked after the sentinel promoted the replica.
    let mut statuses: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failover_at = None;
    let mut in_a_row = 0;
    let mut n = 0;
    while in_a_row < 3 {
        assert!(
            killed.elapsed() < FAILOVER_LIMIT,
            "no working hand-offs within {FAILOVER_LIMIT:?} of the kill ({statuses:?}){}",
            set.sentinel.log_tail()
        );
        if failover_at.is_none() && failover_seen(&set, old_port) {
            failover_at = Some(killed.elapsed());
        }
        n += 1;
        let attempt = in_time("hand-off", hand_off(&app, &format!("user{n}"))).await;
        match attempt {
            Attempt::Done { accept, state } => {
                *statuses.entry("redeemed").or_default() += 1;
                redeemed.push((accept, state, "shop"));
                if failover_at.is_some() {
                    in_a_row += 1;
                }
            }
            Attempt::Unavailable => {
                *statuses.entry("503").or_default() += 1;
                in_a_row = 0;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered = killed.elapsed();
    eprintln!(
        "failover seen after {failover_at:?}, hand-offs working after {recovered:?}: {statuses:?}"
    );
    assert!(
        statuses.get("503").is_some_and(|&n| n > 0),
        "the master was gone for a while: {statuses:?}"
    );

    // Alice's session, made before the kill, was replicated: it still
    // hands over, now to checkout.
    match in_time("hand-off", hand_over(&app, &mut alice, "checkout")).await {
        Attempt::Done { accept, state } => redeemed.push((accept, state, "checkout")),
        Attempt::Unavailable => panic!("a hand-off after the recovery got a 503"),
    }
    let home = alice.visit(&format!("{}/", app.origin("checkout"))).await;
    assert!(home.body.contains("alice"), "{}", home.body);

    let ready = reqwest::get(format!("http://127.0.0.1:{}/readyz", app.port))
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    // No token was redeemed twice: every redeemed token, presented again
    // with its own state cookie (a double submit), is refused as a replay.
    for (accept, state, target) in &redeemed {
        let mut again = Browser::new(app.port);
        again.set_cookie(&format!("{target}.localhost"), "__Host-sb-state", state);
        let replay = again.get(accept.as_str()).await;
        assert_eq!(
            (replay.status, replay.error_code().as_deref()),
            (StatusCode::UNAUTHORIZED, Some("token_replayed")),
            "{}",
            replay.body
        );
    }
    app.stop().await;
    eprintln!(
        "{} tokens checked for replays; test took {:?}",
        redeemed.len(),
        started.elapsed()
    );
}
