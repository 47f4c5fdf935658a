//! The `Store` contract, one suite run against every backend: the memory
//! store and a Redis store on its own fresh `redis-server`. Plus Redis-only
//! fault tests (server killed and restarted under a live store).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use futures::future::join_all;
use session_bridge::clock::Clock;
use session_bridge::store::{
    ConsumeOutcome, IssueOutcome, MemoryStore, RedisStore, Session, SessionId, Store, StoreError,
    TokenRecord, TokenStatus, UpdateOutcome,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::redis_server::RedisServer;

const LONG: Duration = Duration::from_secs(600);
const SHORT: Duration = Duration::from_secs(1);
/// Comfortably past `SHORT`.
const PAST_SHORT: Duration = Duration::from_millis(1200);

// ---------------------------------------------------------------- fixtures

/// A store under test and whatever keeps it alive.
struct Backend<S> {
    store: S,
    /// Present for Redis: the server dies with the backend.
    server: Option<RedisServer>,
}

fn memory_backend() -> Backend<MemoryStore> {
    Backend {
        store: MemoryStore::new(Clock::system()),
        server: None,
    }
}

async fn redis_backend() -> Backend<RedisStore> {
    let server = start_redis().await;
    let store = RedisStore::connect(&server.url())
        .await
        .expect("connect to a fresh redis-server");
    Backend {
        store,
        server: Some(server),
    }
}

/// A server worker's own handle (its own connection, opened on first use).
async fn redis_worker_backend() -> Backend<RedisStore> {
    let backend = redis_backend().await;
    Backend {
        store: backend.store.for_worker(),
        server: backend.server,
    }
}

async fn start_redis() -> RedisServer {
    tokio::task::spawn_blocking(RedisServer::start)
        .await
        .expect("redis-server start task")
}

/// 32 random bytes, base64url: the shape of a real session id.
fn random_b64() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn new_id() -> SessionId {
    let raw = random_b64();
    assert_eq!(raw.len(), 43);
    SessionId::from_generated(raw)
}

fn new_jti() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn session(id: &SessionId) -> Session {
    let data = serde_json::json!({ "cart": ["book", "lamp"], "note": "ünïcode | pipes \" quotes" });
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

/// `previous` after one more write: new content, version bumped.
fn next_version(previous: &Session, item: &str) -> Session {
    let mut next = previous.clone();
    next.data
        .insert("cart".to_owned(), serde_json::json!([item]));
    next.joined_sites
        .push(format!("site-{}", previous.version + 1));
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

// ------------------------------------------------------------ the contract

async fn ping_answers<S: Store>(b: &Backend<S>) {
    b.store.ping().await.unwrap();
}

async fn session_round_trip<S: Store>(b: &Backend<S>) {
    let s = session(&new_id());
    b.store.create_session(&s, LONG).await.unwrap();
    assert_eq!(b.store.get_session(&s.id).await.unwrap(), Some(s.clone()));
    // Anonymous sessions (no user, no auth_ref, empty data) round-trip too.
    let mut anon = session(&new_id());
    anon.user_id = None;
    anon.auth_ref = None;
    anon.data.clear();
    anon.joined_sites.clear();
    b.store.create_session(&anon, LONG).await.unwrap();
    assert_eq!(b.store.get_session(&anon.id).await.unwrap(), Some(anon));
    // An id never stored reads as missing.
    assert_eq!(b.store.get_session(&new_id()).await.unwrap(), None);
}

async fn create_never_overwrites<S: Store>(b: &Backend<S>) {
    let s = session(&new_id());
    b.store.create_session(&s, LONG).await.unwrap();
    let mut other = next_version(&s, "planted");
    other.version = 1;
    assert_eq!(
        b.store.create_session(&other, LONG).await,
        Err(StoreError::AlreadyExists)
    );
    assert_eq!(b.store.get_session(&s.id).await.unwrap(), Some(s));
}

async fn update_with_right_version_saves<S: Store>(b: &Backend<S>) {
    let v1 = session(&new_id());
    b.store.create_session(&v1, LONG).await.unwrap();
    let v2 = next_version(&v1, "chair");
    assert_eq!(
        b.store.update_session(&v2, 1, LONG).await.unwrap(),
        UpdateOutcome::Saved
    );
    assert_eq!(b.store.get_session(&v1.id).await.unwrap(), Some(v2.clone()));
    let v3 = next_version(&v2, "desk");
    assert_eq!(
        b.store.update_session(&v3, 2, LONG).await.unwrap(),
        UpdateOutcome::Saved
    );
    assert_eq!(b.store.get_session(&v1.id).await.unwrap(), Some(v3));
}

async fn update_with_stale_version_conflicts<S: Store>(b: &Backend<S>) {
    let v1 = session(&new_id());
    b.store.create_session(&v1, LONG).await.unwrap();
    let v2 = next_version(&v1, "chair");
    assert_eq!(
        b.store.update_session(&v2, 1, LONG).await.unwrap(),
        UpdateOutcome::Saved
    );
    // A writer that still holds v1 loses, and learns the current version.
    let stale = next_version(&v1, "stale");
    assert_eq!(
        b.store.update_session(&stale, 1, LONG).await.unwrap(),
        UpdateOutcome::Conflict { current_version: 2 }
    );
    // A version from the future loses too.
    assert_eq!(
        b.store.update_session(&stale, 7, LONG).await.unwrap(),
        UpdateOutcome::Conflict { current_version: 2 }
    );
    assert_eq!(b.store.get_session(&v1.id).await.unwrap(), Some(v2));
}

async fn update_of_missing_session_is_missing<S: Store>(b: &Backend<S>) {
    let s = next_version(&session(&new_id()), "ghost");
    assert_eq!(
        b.store.update_session(&s, 1, LONG).await.unwrap(),
        UpdateOutcome::Missing
    );
    // Update never creates.
    assert_eq!(b.store.get_session(&s.id).await.unwrap(), None);
}

async fn delete_reports_whether_it_existed<S: Store>(b: &Backend<S>) {
    let s = session(&new_id());
    b.store.create_session(&s, LONG).await.unwrap();
    assert!(b.store.delete_session(&s.id).await.unwrap());
    assert_eq!(b.store.get_session(&s.id).await.unwrap(), None);
    assert!(!b.store.delete_session(&s.id).await.unwrap());
    // Deleted means gone: an update cannot bring it back.
    assert_eq!(
        b.store
            .update_session(&next_version(&s, "x"), 1, LONG)
            .await
            .unwrap(),
        UpdateOutcome::Missing
    );
}

async fn token_is_redeemed_once_then_replayed<S: Store>(b: &Backend<S>) {
    let jti = new_jti();
    let rec = record(&new_id());
    b.store.put_token(&jti, &rec, LONG).await.unwrap();
    assert_eq!(
        b.store.consume_token(&jti).await.unwrap(),
        ConsumeOutcome::Redeemed(rec.clone())
    );
    for _ in 0..3 {
        assert_eq!(
            b.store.consume_token(&jti).await.unwrap(),
            ConsumeOutcome::Replayed(rec.clone())
        );
    }
    assert_eq!(
        b.store.consume_token(&new_jti()).await.unwrap(),
        ConsumeOutcome::Unknown
    );
}

async fn token_put_never_overwrites<S: Store>(b: &Backend<S>) {
    let jti = new_jti();
    let rec = record(&new_id());
    b.store.put_token(&jti, &rec, LONG).await.unwrap();
    let planted = record(&new_id());
    assert_eq!(
        b.store.put_token(&jti, &planted, LONG).await,
        Err(StoreError::AlreadyExists)
    );
    assert_eq!(
        b.store.consume_token(&jti).await.unwrap(),
        ConsumeOutcome::Redeemed(rec.clone())
    );
    // A consumed token cannot be reset to pending by writing it again.
    assert_eq!(
        b.store.put_token(&jti, &rec, LONG).await,
        Err(StoreError::AlreadyExists)
    );
    assert_eq!(
        b.store.consume_token(&jti).await.unwrap(),
        ConsumeOutcome::Replayed(rec)
    );
}

async fn concurrent_consumers_see_exactly_one_redemption<S>(b: &Backend<S>)
where
    S: Store + Clone + 'static,
{
    const CALLERS: usize = 50;
    let jti = new_jti();
    let rec = record(&new_id());
    b.store.put_token(&jti, &rec, LONG).await.unwrap();
    let start = Arc::new(tokio::sync::Barrier::new(CALLERS));
    let tasks = (0..CALLERS).map(|_| {
        let store = b.store.clone();
        let jti = jti.clone();
        let start = Arc::clone(&start);
        tokio::spawn(async move {
            start.wait().await;
            store.consume_token(&jti).await
        })
    });
    let outcomes: Vec<ConsumeOutcome> = join_all(tasks)
        .await
        .into_iter()
        .map(|joined| joined.unwrap().unwrap())
        .collect();
    let redeemed = outcomes
        .iter()
        .filter(|o| **o == ConsumeOutcome::Redeemed(rec.clone()))
        .count();
    let replayed = outcomes
        .iter()
        .filter(|o| **o == ConsumeOutcome::Replayed(rec.clone()))
        .count();
    assert_eq!((redeemed, replayed), (1, CALLERS - 1), "{outcomes:?}");
}

async fn records_expire<S: Store>(b: &Backend<S>) {
    // Short-lived records of every kind...
    let short = session(&new_id());
    b.store.create_session(&short, SHORT).await.unwrap();
    let pending_jti = new_jti();
    b.store
        .put_token(&pending_jti, &record(&new_id()), SHORT)
        .await
        .unwrap();
    // ...a consumed token keeps its TTL (it must not live on forever)...
    let consumed_jti = new_jti();
    let consumed_rec = record(&new_id());
    b.store
        .put_token(&consumed_jti, &consumed_rec, SHORT)
        .await
        .unwrap();
    assert_eq!(
        b.store.consume_token(&consumed_jti).await.unwrap(),
        ConsumeOutcome::Redeemed(consumed_rec)
    );
    // ...an update sets the TTL it is given, shorter...
    let shortened = session(&new_id());
    b.store.create_session(&shortened, LONG).await.unwrap();
    b.store
        .update_session(&next_version(&shortened, "a"), 1, SHORT)
        .await
        .unwrap();
    // ...or longer (sliding idle timeout).
    let extended = session(&new_id());
    b.store.create_session(&extended, SHORT).await.unwrap();
    let extended_v2 = next_version(&extended, "b");
    assert_eq!(
        b.store.update_session(&extended_v2, 1, LONG).await.unwrap(),
        UpdateOutcome::Saved
    );
    let long = session(&new_id());
    b.store.create_session(&long, LONG).await.unwrap();

    tokio::time::sleep(PAST_SHORT).await;

    assert_eq!(b.store.get_session(&short.id).await.unwrap(), None);
    assert_eq!(
        b.store
            .update_session(&next_version(&short, "late"), 1, LONG)
            .await
            .unwrap(),
        UpdateOutcome::Missing
    );
    assert!(!b.store.delete_session(&short.id).await.unwrap());
    assert_eq!(
        b.store.consume_token(&pending_jti).await.unwrap(),
        ConsumeOutcome::Unknown
    );
    assert_eq!(
        b.store.consume_token(&consumed_jti).await.unwrap(),
        ConsumeOutcome::Unknown
    );
    assert_eq!(b.store.get_session(&shortened.id).await.unwrap(), None);
    assert_eq!(
        b.store.get_session(&extended.id).await.unwrap(),
        Some(extended_v2)
    );
    assert_eq!(b.store.get_session(&long.id).await.unwrap(), Some(long));
    // An expired id is free again.
    b.store.create_session(&short, LONG).await.unwrap();
    assert_eq!(b.store.get_session(&short.id).await.unwrap(), Some(short));
}

async fn keys_are_namespaced<S: Store>(b: &Backend<S>) {
    let s = session(&new_id());
    b.store.create_session(&s, LONG).await.unwrap();
    // A token whose jti equals the session id does not see the session...
    let jti = s.id.expose().to_owned();
    assert_eq!(
        b.store.consume_token(&jti).await.unwrap(),
        ConsumeOutcome::Unknown
    );
    // ...can be stored without colliding with it...
    let rec = record(&new_id());
    b.store.put_token(&jti, &rec, LONG).await.unwrap();
    assert_eq!(b.store.get_session(&s.id).await.unwrap(), Some(s.clone()));
    // ...and deleting the session leaves the token alone, and vice versa.
    assert!(b.store.delete_session(&s.id).await.unwrap());
    assert_eq!(
        b.store.consume_token(&jti).await.unwrap(),
        ConsumeOutcome::Redeemed(rec)
    );
    b.store.create_session(&s, LONG).await.unwrap();
    assert_eq!(b.store.get_session(&s.id).await.unwrap(), Some(s));
}

async fn touch_slides_a_live_session_without_changing_it<S: Store>(b: &Backend<S>) {
    // A session about to expire is given a long TTL by a touch...
    let extended = session(&new_id());
    b.store.create_session(&extended, SHORT).await.unwrap();
    assert!(b.store.touch_session(&extended.id, LONG).await.unwrap());
    // ...a written-to session keeps its latest content and version...
    let written = session(&new_id());
    b.store.create_session(&written, SHORT).await.unwrap();
    let written_v2 = next_version(&written, "mug");
    assert_eq!(
        b.store.update_session(&written_v2, 1, SHORT).await.unwrap(),
        UpdateOutcome::Saved
    );
    assert!(b.store.touch_session(&written.id, LONG).await.unwrap());
    // ...and the TTL given is the one set, shorter too.
    let shortened = session(&new_id());
    b.store.create_session(&shortened, LONG).await.unwrap();
    assert!(b.store.touch_session(&shortened.id, SHORT).await.unwrap());
    // A touch never creates: no such session is `false` and stays missing.
    let ghost = new_id();
    assert!(!b.store.touch_session(&ghost, LONG).await.unwrap());
    assert_eq!(b.store.get_session(&ghost).await.unwrap(), None);
    // One that is about to expire and is not touched.
    let expiring = session(&new_id());
    b.store.create_session(&expiring, SHORT).await.unwrap();

    tokio::time::sleep(PAST_SHORT).await;

    // Content and version untouched by the touch.
    assert_eq!(
        b.store.get_session(&extended.id).await.unwrap(),
        Some(extended.clone())
    );
    assert_eq!(
        b.store.get_session(&written.id).await.unwrap(),
        Some(written_v2.clone())
    );
    assert_eq!(b.store.get_session(&shortened.id).await.unwrap(), None);
    // An expired session cannot be brought back by a touch.
    assert!(!b.store.touch_session(&expiring.id, LONG).await.unwrap());
    assert_eq!(b.store.get_session(&expiring.id).await.unwrap(), None);
    assert!(!b.store.touch_session(&shortened.id, LONG).await.unwrap());
    // A touch is no write: compare-and-set still expects the same version.
    let written_v3 = next_version(&written_v2, "spoon");
    assert_eq!(
        b.store.update_session(&written_v3, 2, LONG).await.unwrap(),
        UpdateOutcome::Saved
    );
    assert_eq!(
        b.store.get_session(&written.id).await.unwrap(),
        Some(written_v3)
    );
}

async fn peek_reports_the_token_state_without_changing_it<S: Store>(b: &Backend<S>) {
    let jti = new_jti();
    let rec = record(&new_id());
    assert_eq!(
        b.store.peek_token(&jti).await.unwrap(),
        TokenStatus::Unknown
    );
    // Peeking at an unknown token does not create it.
    b.store.put_token(&jti, &rec, LONG).await.unwrap();
    for _ in 0..3 {
        assert_eq!(
            b.store.peek_token(&jti).await.unwrap(),
            TokenStatus::Pending(rec.clone())
        );
    }
    // Peeking did not consume: the first consumption still redeems.
    assert_eq!(
        b.store.consume_token(&jti).await.unwrap(),
        ConsumeOutcome::Redeemed(rec.clone())
    );
    for _ in 0..3 {
        assert_eq!(
            b.store.peek_token(&jti).await.unwrap(),
            TokenStatus::Consumed(rec.clone())
        );
    }
    assert_eq!(
        b.store.consume_token(&jti).await.unwrap(),
        ConsumeOutcome::Replayed(rec.clone())
    );
    assert_eq!(
        b.store.peek_token(&jti).await.unwrap(),
        TokenStatus::Consumed(rec)
    );
    // Tokens are namespaced: a session id is no token.
    let s = session(&new_id());
    b.store.create_session(&s, LONG).await.unwrap();
    assert_eq!(
        b.store.peek_token(s.id.expose()).await.unwrap(),
        TokenStatus::Unknown
    );
}

async fn peek_sees_expired_tokens_as_unknown<S: Store>(b: &Backend<S>) {
    let pending = new_jti();
    let consumed = new_jti();
    let rec = record(&new_id());
    b.store.put_token(&pending, &rec, SHORT).await.unwrap();
    b.store.put_token(&consumed, &rec, SHORT).await.unwrap();
    assert_eq!(
        b.store.consume_token(&consumed).await.unwrap(),
        ConsumeOutcome::Redeemed(rec.clone())
    );
    tokio::time::sleep(PAST_SHORT).await;
    assert_eq!(
        b.store.peek_token(&pending).await.unwrap(),
        TokenStatus::Unknown
    );
    assert_eq!(
        b.store.peek_token(&consumed).await.unwrap(),
        TokenStatus::Unknown
    );
}

async fn token_for_session_checks_the_session_and_writes_only_the_token<S: Store>(b: &Backend<S>) {
    let id = new_id();
    let stored = session(&id); // origin `account`, joined by `shop`
    b.store.create_session(&stored, LONG).await.unwrap();
    let now = stored.absolute_expires_at - 100;
    let for_site = |aud: &str| TokenRecord {
        aud: aud.to_owned(),
        ..record(&id)
    };

    // The receiver had joined: the record says so, and redeeming returns it.
    let jti = new_jti();
    assert_eq!(
        b.store
            .put_token_for_session(&jti, &for_site("shop"), "account", now, LONG)
            .await
            .unwrap(),
        IssueOutcome::Recorded {
            receiver_joined: true
        }
    );
    let ConsumeOutcome::Redeemed(redeemed) = b.store.consume_token(&jti).await.unwrap() else {
        panic!("a recorded token is pending");
    };
    assert!(redeemed.receiver_joined);
    assert_eq!(redeemed.session_id, id);

    // Not joined yet, whatever the caller claims.
    let jti = new_jti();
    let claimed = TokenRecord {
        receiver_joined: true,
        ..for_site("checkout")
    };
    assert_eq!(
        b.store
            .put_token_for_session(&jti, &claimed, "shop", now, LONG)
            .await
            .unwrap(),
        IssueOutcome::Recorded {
            receiver_joined: false
        }
    );
    let TokenStatus::Pending(pending) = b.store.peek_token(&jti).await.unwrap() else {
        panic!("a recorded token is pending");
    };
    assert!(!pending.receiver_joined);
    assert_eq!(
        b.store
            .put_token_for_session(&jti, &for_site("shop"), "account", now, LONG)
            .await,
        Err(StoreError::AlreadyExists)
    );
    // The existing record is left as it was.
    assert_eq!(
        b.store.peek_token(&jti).await.unwrap(),
        TokenStatus::Pending(pending)
    );

    // No usable session: no token record is left (Redis writes one in the
    // transaction that reads the session, then deletes it).
    let missing = TokenRecord {
        session_id: new_id(),
        ..for_site("shop")
    };
    let cases = [
        (&missing, "account", now, "no such session"),
        (
            &for_site("shop"),
            "checkout",
            now,
            "an issuer that never joined",
        ),
        (
            &for_site("shop"),
            "account",
            stored.absolute_expires_at,
            "past the absolute expiry",
        ),
    ];
    for (record, issuer, at, why) in cases {
        let jti = new_jti();
        assert_eq!(
            b.store
                .put_token_for_session(&jti, record, issuer, at, LONG)
                .await
                .unwrap(),
            IssueOutcome::NoSession,
            "{why}"
        );
        assert_eq!(
            b.store.peek_token(&jti).await.unwrap(),
            TokenStatus::Unknown,
            "{why}"
        );
    }
    // The session was only read: byte for byte what was stored.
    assert_eq!(b.store.get_session(&id).await.unwrap(), Some(stored));
}

async fn get_and_touch_slides_within_the_absolute_expiry<S: Store>(b: &Backend<S>) {
    let id = new_id();
    let stored = session(&id);
    b.store.create_session(&stored, SHORT).await.unwrap();
    let idle = Duration::from_secs(600);
    // Well before the absolute expiry: read, and the TTL is the idle timeout.
    let now = stored.absolute_expires_at - 10_000;
    assert_eq!(
        b.store.get_and_touch_session(&id, idle, now).await.unwrap(),
        Some(stored.clone())
    );
    let ttl = b.store.session_ttl(&id).await.unwrap().unwrap();
    assert!(ttl > Duration::from_secs(590) && ttl <= idle, "{ttl:?}");
    // In the last idle period: cut short at the absolute expiry.
    let now = stored.absolute_expires_at - 30;
    assert!(
        b.store
            .get_and_touch_session(&id, idle, now)
            .await
            .unwrap()
            .is_some()
    );
    let ttl = b.store.session_ttl(&id).await.unwrap().unwrap();
    assert!(
        ttl > Duration::from_secs(25) && ttl <= Duration::from_secs(30),
        "{ttl:?}"
    );
    // Past it, or no such session: nothing.
    assert_eq!(
        b.store
            .get_and_touch_session(&id, idle, stored.absolute_expires_at)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        b.store
            .get_and_touch_session(&new_id(), idle, now)
            .await
            .unwrap(),
        None
    );
}

/// One `#[tokio::test]` per case and backend: `memory_store::<case>`,
/// `redis_store::<case>`, `redis_worker_link::<case>`.
macro_rules! contract {
    ($($case:ident),+ $(,)?) => {
        mod memory_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let backend = super::memory_backend();
                    super::$case(&backend).await;
                }
            )+
        }
        mod redis_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let backend = super::redis_backend().await;
                    super::$case(&backend).await;
                }
            )+
        }
        mod redis_worker_link {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let backend = super::redis_worker_backend().await;
                    super::$case(&backend).await;
                }
            )+
        }
    };
}

contract!(
    ping_answers,
    session_round_trip,
    create_never_overwrites,
    update_with_right_version_saves,
    update_with_stale_version_conflicts,
    update_of_missing_session_is_missing,
    delete_reports_whether_it_existed,
    token_is_redeemed_once_then_replayed,
    token_put_never_overwrites,
    concurrent_consumers_see_exactly_one_redemption,
    records_expire,
    keys_are_namespaced,
    touch_slides_a_live_session_without_changing_it,
    peek_reports_the_token_state_without_changing_it,
    peek_sees_expired_tokens_as_unknown,
    token_for_session_checks_the_session_and_writes_only_the_token,
    get_and_touch_slides_within_the_absolute_expiry,
);

// ------------------------------------------------------ backend specifics

/// Memory expiry to the millisecond, on a manual clock (no sleeping).
#[tokio::test]
async fn memory_expiry_is_exact_on_a_manual_clock() {
    let start = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    let clock = Clock::manual(start);
    let store = MemoryStore::new(clock.clone());
    let s = session(&new_id());
    let jti = new_jti();
    let rec = record(&s.id);
    store.create_session(&s, SHORT).await.unwrap();
    store.put_token(&jti, &rec, SHORT).await.unwrap();
    clock.advance(Duration::from_millis(999));
    assert_eq!(store.get_session(&s.id).await.unwrap(), Some(s.clone()));
    assert_eq!(
        store.consume_token(&jti).await.unwrap(),
        ConsumeOutcome::Redeemed(rec)
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(store.get_session(&s.id).await.unwrap(), None);
    assert_eq!(
        store.consume_token(&jti).await.unwrap(),
        ConsumeOutcome::Unknown
    );
}

/// A touch on the memory store restarts the TTL from the touch, to the
/// millisecond, on a manual clock.
#[tokio::test]
async fn memory_touch_restarts_the_ttl_from_now() {
    let start = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    let clock = Clock::manual(start);
    let store = MemoryStore::new(clock.clone());
    let s = session(&new_id());
    store.create_session(&s, SHORT).await.unwrap();
    clock.advance(Duration::from_millis(999));
    assert!(store.touch_session(&s.id, SHORT).await.unwrap());
    clock.advance(Duration::from_millis(999));
    assert_eq!(store.get_session(&s.id).await.unwrap(), Some(s.clone()));
    clock.advance(Duration::from_millis(1));
    assert_eq!(store.get_session(&s.id).await.unwrap(), None);
    assert!(!store.touch_session(&s.id, SHORT).await.unwrap());
}

/// Runs `op` and insists it answers (rather than hangs) within 10 s.
async fn answers_in_time<T>(what: &str, op: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(10), op)
        .await
        .unwrap_or_else(|_| panic!("{what} hung while redis was down"));
    eprintln!("{what}: answered in {:?}", started.elapsed());
    out
}

fn assert_unavailable<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, StoreError>,
    secrets: &[&str],
) {
    match result {
        Err(StoreError::Unavailable(why)) => {
            for secret in secrets {
                assert!(
                    !why.contains(secret),
                    "{what}: error text leaks a secret: {why}"
                );
            }
        }
        other => panic!("{what}: expected Unavailable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_closed_and_recovers_on_the_same_store() {
    let mut server = start_redis().await;
    let store = RedisStore::connect(&server.url()).await.unwrap();
    let s = session(&new_id());
    let jti = new_jti();
    let rec = record(&s.id);
    store.create_session(&s, LONG).await.unwrap();
    store.put_token(&jti, &rec, LONG).await.unwrap();

    server.kill();
    let secrets = [s.id.expose(), jti.as_str(), rec.challenge.as_str()];

    // Every operation fails closed, promptly. In particular a redemption is
    // Unavailable, never Unknown or Redeemed.
    for round in 0..2 {
        let r = answers_in_time("ping", store.ping()).await;
        assert_unavailable(&format!("ping #{round}"), r, &secrets);
        let r = answers_in_time("consume_token", store.consume_token(&jti)).await;
        assert_unavailable("consume_token", r, &secrets);
        let r = answers_in_time("get_session", store.get_session(&s.id)).await;
        assert_unavailable("get_session", r, &secrets);
        let r = answers_in_time(
            "create_session",
            store.create_session(&session(&new_id()), LONG),
        )
        .await;
        assert_unavailable("create_session", r, &secrets);
        let r = answers_in_time(
            "update_session",
            store.update_session(&next_version(&s, "x"), 1, LONG),
        )
        .await;
        assert_unavailable("update_session", r, &secrets);
        let r = answers_in_time("delete_session", store.delete_session(&s.id)).await;
        assert_unavailable("delete_session", r, &secrets);
        let r = answers_in_time("put_token", store.put_token(&new_jti(), &rec, LONG)).await;
        assert_unavailable("put_token", r, &secrets);
        let r = answers_in_time("touch_session", store.touch_session(&s.id, LONG)).await;
        assert_unavailable("touch_session", r, &secrets);
        let r = answers_in_time("peek_token", store.peek_token(&jti)).await;
        assert_unavailable("peek_token", r, &secrets);
    }

    tokio::task::block_in_place(|| server.restart());

    // The same store reconnects by itself (the first call after the restart
    // may still report the outage it saw).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match answers_in_time("ping after restart", store.ping()).await {
            Ok(()) => break,
            Err(e) => assert!(Instant::now() < deadline, "no recovery within 10 s: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The restarted server is empty (no persistence); everything works again,
    // scripts included (they are reloaded after NOSCRIPT).
    assert_eq!(store.get_session(&s.id).await.unwrap(), None);
    store.create_session(&s, LONG).await.unwrap();
    assert_eq!(store.get_session(&s.id).await.unwrap(), Some(s.clone()));
    let v2 = next_version(&s, "after");
    assert_eq!(
        store.update_session(&v2, 1, LONG).await.unwrap(),
        UpdateOutcome::Saved
    );
    store.put_token(&jti, &rec, LONG).await.unwrap();
    assert_eq!(
        store.consume_token(&jti).await.unwrap(),
        ConsumeOutcome::Redeemed(rec.clone())
    );
    assert_eq!(
        store.consume_token(&jti).await.unwrap(),
        ConsumeOutcome::Replayed(rec)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_hungserver_times_out_and_replies_stay_in_order() {
    let backend = redis_backend().await;
    let store = &backend.store;
    let server = backend.server.as_ref().unwrap();
    let s = session(&new_id());
    let jti = new_jti();
    let rec = record(&s.id);
    store.create_session(&s, LONG).await.unwrap();
    store.put_token(&jti, &rec, LONG).await.unwrap();

    server.pause();
    // Nothing answers: each call gives up on its own (response timeout).
    let r = answers_in_time("get_session (hung)", store.get_session(&s.id)).await;
    assert_unavailable("get_session (hung)", r, &[s.id.expose()]);
    let r = answers_in_time("ping (hung)", store.ping()).await;
    assert_unavailable("ping (hung)", r, &[]);
    server.resume();

    // The late replies to the abandoned calls must not be handed to later
    // calls: every answer below belongs to its own request.
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.ping().await.is_err() {
        assert!(Instant::now() < deadline, "no recovery after SIGCONT");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..5 {
        assert_eq!(store.get_session(&s.id).await.unwrap(), Some(s.clone()));
        assert_eq!(
            store.consume_token(&new_jti()).await.unwrap(),
            ConsumeOutcome::Unknown
        );
    }
    assert_eq!(
        store.consume_token(&jti).await.unwrap(),
        ConsumeOutcome::Redeemed(rec)
    );
}

#[tokio::test]
async fn redis_connect_to_nothing_is_unavailable_quickly() {
    // A port that nothing listens on (picked free, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}/");
    let result = answers_in_time("connect", RedisStore::connect(&url)).await;
    assert!(matches!(result, Err(StoreError::Unavailable(_))));
    let result = answers_in_time("connect", RedisStore::connect("not a url")).await;
    assert!(matches!(result, Err(StoreError::Unavailable(_))));
}

/// A token record for a receiver that has not joined is written, then
/// rewritten as such (`SET … XX KEEPTTL`): the rewrite keeps its TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rewritten_token_records_keep_their_ttl() {
    let backend = redis_backend().await;
    let s = session(&new_id());
    backend.store.create_session(&s, LONG).await.unwrap();
    let not_joined = TokenRecord {
        aud: "checkout".to_owned(),
        ..record(&s.id)
    };
    let jti = new_jti();
    let ttl = Duration::from_secs(45);
    assert_eq!(
        backend
            .store
            .put_token_for_session(&jti, &not_joined, "account", 0, ttl)
            .await
            .unwrap(),
        IssueOutcome::Recorded {
            receiver_joined: false
        }
    );
    let client = redis::Client::open(backend.server.as_ref().unwrap().url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let pttl: i64 = redis::cmd("PTTL")
        .arg(format!("sb:t:{jti}"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(pttl > 40_000 && pttl <= 45_000, "{pttl}");
}

/// A demoted master refuses the transaction's write while it is queued
/// (`READONLY`) and answers the `EXEC` with `EXECABORT`: the store still
/// reports the refusal itself (and a Sentinel link takes it as a lost master).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_reports_a_read_only_server_inside_a_transaction() {
    let backend = redis_backend().await;
    let s = session(&new_id());
    backend.store.create_session(&s, LONG).await.unwrap();
    let client = redis::Client::open(backend.server.as_ref().unwrap().url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    // A replica of a master that is not there: it keeps its data, refuses writes.
    redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(1)
        .exec_async(&mut con)
        .await
        .unwrap();
    let jti = new_jti();
    assert_eq!(
        backend
            .store
            .put_token_for_session(&jti, &record(&s.id), "account", 0, LONG)
            .await,
        Err(StoreError::Unavailable("redis is read-only".to_owned()))
    );
    assert_eq!(
        backend.store.peek_token(&jti).await.unwrap(),
        TokenStatus::Unknown
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_reports_unreadable_records_as_corrupt() {
    let backend = redis_backend().await;
    let server = backend.server.as_ref().unwrap();
    let s = session(&new_id());
    let jti = new_jti();
    // Write garbage straight into the store's keys.
    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let set = |key: String, value: &'static str| redis::cmd("SET").arg(key).arg(value).clone();
    set(format!("sb:s:{}", s.id.expose()), "{not json")
        .exec_async(&mut con)
        .await
        .unwrap();
    set(format!("sb:t:{jti}"), "x|shop|chal|nope")
        .exec_async(&mut con)
        .await
        .unwrap();
    assert!(matches!(
        backend.store.get_session(&s.id).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        backend
            .store
            .update_session(&next_version(&s, "x"), 1, LONG)
            .await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        backend.store.consume_token(&jti).await,
        Err(StoreError::Corrupt(_))
    ));
    // No token is recorded for an unreadable session, and none is left behind.
    let issued = new_jti();
    assert!(matches!(
        backend
            .store
            .put_token_for_session(&issued, &record(&s.id), "account", 0, LONG)
            .await,
        Err(StoreError::Corrupt(_))
    ));
    assert_eq!(
        backend.store.peek_token(&issued).await.unwrap(),
        TokenStatus::Unknown
    );
    // A record whose stored id differs from its key is not trusted.
    let other = session(&new_id());
    let json = serde_json::to_string(&other).unwrap();
    redis::cmd("SET")
        .arg(format!("sb:s:{}", s.id.expose()))
        .arg(json)
        .exec_async(&mut con)
        .await
        .unwrap();
    assert!(matches!(
        backend.store.get_session(&s.id).await,
        Err(StoreError::Corrupt(_))
    ));
}

/// Server workers each have their own connection. One that sat idle through
/// an outage must not fail its first call once another worker has seen
/// Redis answer again (the bridge is ready by then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_worker_links_idle_through_an_outage_recover_with_the_others() {
    let mut server = start_redis().await;
    let store = RedisStore::connect(&server.url()).await.unwrap();
    let (busy, idle) = (store.for_worker(), store.for_worker());
    let s = session(&new_id());
    busy.create_session(&s, LONG).await.unwrap();
    assert_eq!(idle.get_session(&s.id).await.unwrap(), Some(s.clone()));

    server.kill();
    let r = answers_in_time("ping while down", busy.ping()).await;
    assert_unavailable("ping while down", r, &[s.id.expose()]);
    tokio::task::block_in_place(|| server.restart());
    let deadline = Instant::now() + Duration::from_secs(10);
    while answers_in_time("ping after restart", busy.ping())
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the busy link did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The idle link's connection died with the old server: it is replaced
    // before this call, which therefore succeeds the first time.
    assert_eq!(idle.get_session(&s.id).await.unwrap(), None);
    idle.create_session(&s, LONG).await.unwrap();
    assert_eq!(busy.get_session(&s.id).await.unwrap(), Some(s));
}

/// Redis restarted while nothing called through it: no request saw the
/// outage, but the store's watcher did, and a worker's connection from
/// before it is replaced before its next call, which therefore succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_worker_links_recover_from_an_outage_no_request_saw() {
    let mut server = start_redis().await;
    let store = RedisStore::connect(&server.url()).await.unwrap();
    let idle = store.for_worker();
    let s = session(&new_id());
    idle.create_session(&s, LONG).await.unwrap();

    server.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::block_in_place(|| server.restart());
    // The watcher pings twice a second: long enough for it to see the
    // outage and its end.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(idle.get_session(&s.id).await.unwrap(), None);
    idle.create_session(&s, LONG).await.unwrap();
    assert_eq!(idle.get_session(&s.id).await.unwrap(), Some(s));
}

/// Recording a token reads its session in every shape a record can have
/// (as the store writes it, long names, another order), and nothing a user
/// controls can pose as the fields it checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_reads_a_session_for_a_token_in_every_stored_shape() {
    let backend = redis_backend().await;
    let store = &backend.store;
    let client = redis::Client::open(backend.server.as_ref().unwrap().url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    // Started on `account`, joined by `checkout` only; its user name and
    // data imitate the fields with other sites and a later expiry.
    let decoy = serde_json::json!({"x": 9_999_999_999_i64, "o": "shop", "j": ["shop"]});
    let mut base = session(&new_id());
    base.joined_sites = vec!["checkout".to_owned()];
    base.user_id = Some(r#"","x":9999999999,"o":"shop","j":["shop"],"u":""#.to_owned());
    base.data = decoy.as_object().cloned().unwrap();
    let now = base.absolute_expires_at - 100;
    let long_names = |s: &Session| serde_json::to_string(s).unwrap();
    let other_order = |s: &Session| {
        serde_json::json!({
            "d": s.data, "u": s.user_id, "a": s.auth_ref, "c": s.created_at,
            "l": s.last_seen, "v": s.version, "j": s.joined_sites, "o": s.origin_site,
            "x": s.absolute_expires_at, "id": s.id.expose(),
        })
        .to_string()
    };
    for shape in [
        "as the store writes it",
        "long names",
        "compact names, another order",
    ] {
        let s = Session {
            id: new_id(),
            ..base.clone()
        };
        match shape {
            "as the store writes it" => store.create_session(&s, LONG).await.unwrap(),
            _ => {
                let text = if shape == "long names" {
                    long_names(&s)
                } else {
                    other_order(&s)
                };
                redis::cmd("SET")
                    .arg(format!("sb:s:{}", s.id.expose()))
                    .arg(text)
                    .exec_async(&mut con)
                    .await
                    .unwrap();
            }
        }
        let record = |aud: &str| TokenRecord {
            aud: aud.to_owned(),
            ..record(&s.id)
        };
        let issue = |aud: &'static str, issuer: &'static str, at: i64| {
            let rec = record(aud);
            async move {
                store
                    .put_token_for_session(&new_jti(), &rec, issuer, at, LONG)
                    .await
                    .unwrap()
            }
        };
        let recorded = |receiver_joined| IssueOutcome::Recorded { receiver_joined };
        assert_eq!(
            issue("checkout", "account", now).await,
            recorded(true),
            "{shape}"
        );
        assert_eq!(
            issue("shop", "account", now).await,
            recorded(false),
            "{shape}"
        );
        assert_eq!(
            issue("account", "checkout", now).await,
            recorded(true),
            "{shape}"
        );
        assert_eq!(
            issue("account", "shop", now).await,
            IssueOutcome::NoSession,
            "{shape}"
        );
        let expired = s.absolute_expires_at;
        assert_eq!(
            issue("checkout", "account", expired).await,
            IssueOutcome::NoSession,
            "{shape}"
        );
    }
}
