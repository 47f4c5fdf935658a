//! The Redis store on a real three-master Redis Cluster started by the test
//! (`redis-server --cluster-enabled yes` ×3, `redis-cli --cluster create`):
//! the store contract with keys spread over every node, flow A over HTTP on
//! a bridge configured with `[store] cluster = [...]`, and a dead node
//! failing closed promptly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use futures::future::join_all;
use reqwest::StatusCode;
use session_bridge::config::{StoreConfig, StoreKind};
use session_bridge::store::{
    ConsumeOutcome, IssueOutcome, RedisStore, Session, SessionId, Store, StoreError, TokenRecord,
    TokenStatus, UpdateOutcome,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::app::{API_KEY, Backend, TestApp};
use support::browser::Browser;
use support::redis_topologies::RedisCluster;

const LONG: Duration = Duration::from_secs(600);
const SHORT: Duration = Duration::from_secs(1);
/// Many keys, so every node of the cluster holds some.
const KEYS: usize = 40;

async fn start_cluster() -> RedisCluster {
    tokio::task::spawn_blocking(|| RedisCluster::start(3))
        .await
        .expect("cluster start task")
}

fn cluster_config(cluster: &RedisCluster) -> StoreConfig {
    StoreConfig {
        kind: StoreKind::Redis,
        url: None,
        sentinel: None,
        cluster: Some(cluster.urls()),
        ..StoreConfig::default()
    }
}

fn random_b64() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn new_id() -> SessionId {
    SessionId::from_generated(random_b64())
}

fn new_jti() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn session(id: &SessionId) -> Session {
    let data = serde_json::json!({ "cart": ["book"], "note": "ünïcode | pipes" });
    Session {
        id: id.clone(),
        user_id: Some("alice".to_owned()),
        auth_ref: Some("idp:ref-42".to_owned()),
        created_at: 1_700_000_000,
        last_seen: 1_700_000_100,
        absolute_expires_at: 1_700_043_200,
        origin_site: "account".to_owned(),
        joined_sites: vec!["shop".to_owned()],
        data: data.as_object().cloned().unwrap(),
        version: 1,
    }
}

fn next_version(previous: &Session, item: &str) -> Session {
    let mut next = previous.clone();
    next.data
        .insert("cart".to_owned(), serde_json::json!([item]));
    next.last_seen += 1;
    next.version = previous.version + 1;
    next
}

fn record(session_id: &SessionId) -> TokenRecord {
    TokenRecord {
        session_id: session_id.clone(),
        aud: "shop".to_owned(),
        challenge: random_b64(),
        receiver_joined: false,
    }
}

/// Sessions: create (never overwrites), get, compare-and-set, touch, delete.
async fn session_contract(store: &RedisStore) {
    let absent = new_id();
    assert_eq!(store.get_session(&absent).await.unwrap(), None);
    assert!(!store.touch_session(&absent, LONG).await.unwrap());
    assert!(!store.delete_session(&absent).await.unwrap());
    let v1 = session(&new_id());
    store.create_session(&v1, LONG).await.unwrap();
    assert_eq!(store.get_session(&v1.id).await.unwrap(), Some(v1.clone()));
    assert_eq!(
        store
            .create_session(&next_version(&v1, "planted"), LONG)
            .await,
        Err(StoreError::AlreadyExists)
    );
    let v2 = next_version(&v1, "chair");
    assert_eq!(
        store.update_session(&v2, 1, LONG).await.unwrap(),
        UpdateOutcome::Saved
    );
    let stale = next_version(&v1, "stale");
    assert_eq!(
        store.update_session(&stale, 1, LONG).await.unwrap(),
        UpdateOutcome::Conflict { current_version: 2 }
    );
    assert!(store.touch_session(&v1.id, LONG).await.unwrap());
    assert_eq!(store.get_session(&v1.id).await.unwrap(), Some(v2.clone()));
    assert!(store.delete_session(&v1.id).await.unwrap());
    assert_eq!(store.get_session(&v1.id).await.unwrap(), None);
    assert!(!store.delete_session(&v1.id).await.unwrap());
    assert_eq!(
        store
            .update_session(&next_version(&v2, "ghost"), 2, LONG)
            .await
            .unwrap(),
        UpdateOutcome::Missing
    );
    // A session that stays, so the key counts below see it.
    store
        .create_session(&session(&new_id()), LONG)
        .await
        .unwrap();
}

/// Tokens: put (never overwrites), peek, consume once, then replay.
async fn token_contract(store: &RedisStore) {
    let jti = new_jti();
    let rec = record(&new_id());
    assert_eq!(store.peek_token(&jti).await.unwrap(), TokenStatus::Unknown);
    assert_eq!(
        store.consume_token(&jti).await.unwrap(),
        ConsumeOutcome::Unknown
    );
    store.put_token(&jti, &rec, LONG).await.unwrap();
    assert_eq!(
        store.put_token(&jti, &record(&new_id()), LONG).await,
        Err(StoreError::AlreadyExists)
    );
    assert_eq!(
        store.peek_token(&jti).await.unwrap(),
        TokenStatus::Pending(rec.clone())
    );
    assert_eq!(
        store.consume_token(&jti).await.unwrap(),
        ConsumeOutcome::Redeemed(rec.clone())
    );
    assert_eq!(
        store.consume_token(&jti).await.unwrap(),
        ConsumeOutcome::Replayed(rec.clone())
    );
    assert_eq!(
        store.peek_token(&jti).await.unwrap(),
        TokenStatus::Consumed(rec)
    );

    // A token for a session: the session and the token sit in different
    // slots, so the check reads, then writes.
    let id = new_id();
    let stored = session(&id);
    store.create_session(&stored, LONG).await.unwrap();
    let now = stored.absolute_expires_at - 100;
    let jti = new_jti();
    assert_eq!(
        store
            .put_token_for_session(&jti, &record(&id), "account", now, LONG)
            .await
            .unwrap(),
        IssueOutcome::Recorded {
            receiver_joined: true
        }
    );
    let TokenStatus::Pending(pending) = store.peek_token(&jti).await.unwrap() else {
        panic!("recorded tokens are pending");
    };
    assert!(pending.receiver_joined);
    let jti = new_jti();
    assert_eq!(
        store
            .put_token_for_session(&jti, &record(&id), "checkout", now, LONG)
            .await
            .unwrap(),
        IssueOutcome::NoSession
    );
    assert_eq!(store.peek_token(&jti).await.unwrap(), TokenStatus::Unknown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_contract_holds_on_a_three_master_cluster() {
    let started = Instant::now();
    let cluster = start_cluster().await;
    eprintln!("cluster up in {:?}", started.elapsed());
    let store = RedisStore::from_config(&cluster_config(&cluster))
        .await
        .expect("connect to the cluster");
    store.ping().await.unwrap();

    // Many keys, run concurrently: they hash to slots on every node.
    let store = Arc::new(store);
    let runs = (0..KEYS).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            session_contract(&store).await;
            token_contract(&store).await;
        })
    });
    for run in join_all(runs).await {
        run.unwrap();
    }

    // 50 concurrent consumers of one token, for tokens on several slots:
    // exactly one redemption each.
    for _ in 0..6 {
        let jti = new_jti();
        let rec = record(&new_id());
        store.put_token(&jti, &rec, LONG).await.unwrap();
        let outcomes = join_all((0..50).map(|_| {
            let store = store.clone();
            let jti = jti.clone();
            tokio::spawn(async move { store.consume_token(&jti).await.unwrap() })
        }))
        .await;
        let outcomes: Vec<ConsumeOutcome> = outcomes.into_iter().map(Result::unwrap).collect();
        let redeemed = outcomes
            .iter()
            .filter(|o| matches!(o, ConsumeOutcome::Redeemed(_)))
            .count();
        let replayed = outcomes
            .iter()
            .filter(|o| **o == ConsumeOutcome::Replayed(rec.clone()))
            .count();
        assert_eq!((redeemed, replayed), (1, 49), "{outcomes:?}");
    }

    // Expiry is honoured on the cluster too.
    let jti = new_jti();
    let s = session(&new_id());
    store.put_token(&jti, &record(&s.id), SHORT).await.unwrap();
    store.create_session(&s, SHORT).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(store.peek_token(&jti).await.unwrap(), TokenStatus::Unknown);
    assert_eq!(store.get_session(&s.id).await.unwrap(), None);

    // The keys really are spread: every master holds some.
    let counts = tokio::task::block_in_place(|| cluster.key_counts());
    assert!(counts.iter().all(|&n| n > 0), "keys per node: {counts:?}");
    eprintln!(
        "keys per node: {counts:?}; test took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_cluster_node_fails_closed_promptly() {
    let mut cluster = start_cluster().await;
    let store = RedisStore::from_config(&cluster_config(&cluster))
        .await
        .unwrap();
    let jtis: Vec<String> = (0..15).map(|_| new_jti()).collect();
    let rec = record(&new_id());
    for jti in &jtis {
        store.put_token(jti, &rec, LONG).await.unwrap();
    }
    tokio::task::block_in_place(|| cluster.nodes[0].kill());

    // Tokens on the dead node's slots fail closed (Unavailable, never
    // Unknown or Redeemed); the others still redeem. Nothing hangs.
    let mut unavailable = 0;
    let killed = Instant::now();
    for jti in &jtis {
        let started = Instant::now();
        let outcome = store.consume_token(jti).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "consume took {:?}",
            started.elapsed()
        );
        match outcome {
            Ok(ConsumeOutcome::Redeemed(r)) => assert_eq!(r, rec),
            Err(StoreError::Unavailable(why)) => {
                assert!(!why.contains(jti.as_str()), "{why}");
                unavailable += 1;
            }
            other => panic!("unexpected outcome with a node down: {other:?}"),
        }
    }
    assert!(unavailable > 0, "some tokens live on the dead node's slots");
    eprintln!(
        "{} consumes with a node down took {:?} ({unavailable} unavailable)",
        jtis.len(),
        killed.elapsed()
    );
    let started = Instant::now();
    assert!(matches!(
        store.ping().await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_cluster_node_times_out_and_recovers() {
    let cluster = start_cluster().await;
    let store = RedisStore::from_config(&cluster_config(&cluster))
        .await
        .unwrap();
    let jtis: Vec<String> = (0..6).map(|_| new_jti()).collect();
    let rec = record(&new_id());
    for jti in &jtis {
        store.put_token(jti, &rec, LONG).await.unwrap();
    }
    cluster.nodes[1].pause();
    // A frozen node answers nothing: each call on its slots gives up on its
    // own deadline (Unavailable), the others are served.
    let mut timed_out = Vec::new();
    for jti in &jtis {
        let started = Instant::now();
        let outcome = store.peek_token(jti).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "peek took {:?}",
            started.elapsed()
        );
        match outcome {
            Ok(TokenStatus::Pending(r)) => assert_eq!(r, rec),
            Err(StoreError::Unavailable(_)) => timed_out.push(jti.clone()),
            other => panic!("unexpected outcome with a node hung: {other:?}"),
        }
    }
    let started = Instant::now();
    assert!(matches!(
        store.ping().await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
    cluster.nodes[1].resume();

    // Back: every token, the frozen node's included, redeems exactly once.
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.ping().await.is_err() {
        assert!(Instant::now() < deadline, "no recovery after SIGCONT");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for jti in &jtis {
        assert_eq!(
            store.consume_token(jti).await.unwrap(),
            ConsumeOutcome::Redeemed(rec.clone())
        );
        assert_eq!(
            store.consume_token(jti).await.unwrap(),
            ConsumeOutcome::Replayed(rec.clone())
        );
    }
    eprintln!(
        "{} of {} tokens sat on the hung node",
        timed_out.len(),
        jtis.len()
    );
}

// ----------------------------------------------------- flow A over HTTP

async fn sign_in(app: &TestApp, browser: &mut Browser, user: &str) -> String {
    app.sign_in(browser, user, Some(serde_json::json!({"cart": ["tea"]})))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_a_hands_sessions_over_on_a_cluster() {
    let started = Instant::now();
    let cluster = start_cluster().await;
    let urls = cluster.urls();
    let app = TestApp::spawn_with(Backend::Memory, move |c| {
        c.store.kind = StoreKind::Redis;
        c.store.url = None;
        c.store.cluster = Some(urls);
    })
    .await;
    let ready = reqwest::get(format!("http://127.0.0.1:{}/readyz", app.port))
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    // Several users, so sessions and tokens land on different nodes.
    for n in 0..8 {
        let user = format!("user{n}");
        let mut browser = Browser::new(app.port);
        let id = sign_in(&app, &mut browser, &user).await;
        let target = if n % 2 == 0 { "shop" } else { "checkout" };
        let start = format!(
            "{}/bridge/start?from=account&return_to=%2F&mode=query",
            app.origin(target)
        );
        let started_page = browser.get(&start).await;
        assert_eq!(started_page.status, StatusCode::SEE_OTHER);
        let issued = browser.get(started_page.location().unwrap().as_str()).await;
        assert_eq!(issued.status, StatusCode::SEE_OTHER, "{}", issued.body);
        let accept = issued.location().unwrap();
        let accepted = browser.get(accept.as_str()).await;
        assert_eq!(accepted.status, StatusCode::SEE_OTHER, "{}", accepted.body);
        assert_eq!(
            browser
                .cookie(&format!("{target}.localhost"), "__Host-sb")
                .as_deref(),
            Some(id.as_str())
        );
        let home = browser.visit(accepted.location().unwrap().as_str()).await;
        assert!(
            home.body.contains(&format!("<strong>{user}</strong>")),
            "{}",
            home.body
        );
        // The token is single-use on the cluster too: another browser's
        // replay is refused as a replay.
        let mut thief = Browser::new(app.port);
        let replay = thief.get(accept.as_str()).await;
        assert_eq!(replay.status, StatusCode::UNAUTHORIZED, "{}", replay.body);
        assert_eq!(replay.error_code().as_deref(), Some("token_replayed"));
    }
    // The session API over HTTP on the cluster: read, patch with If-Match
    // (428 without, 412 stale), rotate, delete.
    let api = |method: reqwest::Method, path: String| {
        reqwest::Client::new()
            .request(method, format!("http://127.0.0.1:{}{path}", app.port))
            .bearer_auth(API_KEY)
    };
    let mut browser = Browser::new(app.port);
    let id = sign_in(&app, &mut browser, "api-user").await;
    let read = api(reqwest::Method::GET, format!("/api/v1/sessions/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(read.headers().get("etag").unwrap(), "\"1\"");
    let patch = |version: Option<&'static str>| {
        let mut request = api(reqwest::Method::PATCH, format!("/api/v1/sessions/{id}"))
            .header("Content-Type", "application/merge-patch+json")
            .body(r#"{"cart":["tea","cake"]}"#);
        if let Some(version) = version {
            request = request.header("If-Match", version);
        }
        request.send()
    };
    assert_eq!(
        patch(None).await.unwrap().status(),
        StatusCode::PRECONDITION_REQUIRED
    );
    let patched = patch(Some("\"1\"")).await.unwrap();
    assert_eq!(patched.status(), StatusCode::OK);
    assert_eq!(
        patch(Some("\"1\"")).await.unwrap().status(),
        StatusCode::PRECONDITION_FAILED
    );
    let rotated: serde_json::Value = api(reqwest::Method::POST, "/api/v1/sessions".to_owned())
        .json(&serde_json::json!({"site": "account", "rotate_from": id}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fresh = rotated["id"].as_str().unwrap().to_owned();
    assert_ne!(fresh, id);
    assert_eq!(rotated["data"]["cart"], serde_json::json!(["tea", "cake"]));
    let old = api(reqwest::Method::GET, format!("/api/v1/sessions/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), StatusCode::NOT_FOUND, "the old id is dead");
    let deleted = api(reqwest::Method::DELETE, format!("/api/v1/sessions/{fresh}"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone = api(reqwest::Method::GET, format!("/api/v1/sessions/{fresh}"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    let counts = tokio::task::block_in_place(|| cluster.key_counts());
    assert!(
        counts.iter().filter(|&&n| n > 0).count() >= 2,
        "keys per node: {counts:?}"
    );
    app.stop().await;
    eprintln!(
        "keys per node: {counts:?}; test took {:?}",
        started.elapsed()
    );
}
