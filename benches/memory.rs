//! Memory per session and per pending token: the memory store's resident
//! size with 1,000,000 sessions (and as many tokens), and Redis's own
//! accounting (`MEMORY USAGE` of one record, `used_memory` over 100,000).
//!
//! `cargo bench --bench memory`. The Redis half starts its own
//! `redis-server` on a free loopback port and is skipped when there is none.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use session_bridge::clock::Clock;
use session_bridge::store::{MemoryStore, RedisStore, Session, SessionId, Store, TokenRecord};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// The allocator of the `session-bridge` binary, so the resident size is the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MEMORY_SESSIONS: usize = 1_000_000;
const REDIS_SESSIONS: usize = 100_000;
const TTL: Duration = Duration::from_secs(3600);

/// A signed-in user's session after a hand-off: a user id, a small cart,
/// the origin site and one joined site.
fn session(n: usize) -> Session {
    let data = serde_json::json!({ "cart": ["tea", "cups"] });
    Session {
        id: id(n, 's'),
        user_id: Some(format!("user-{n:08}")),
        auth_ref: None,
        created_at: 1_800_000_000,
        last_seen: 1_800_000_000,
        absolute_expires_at: 1_800_043_200,
        origin_site: "account".to_owned(),
        joined_sites: vec!["account".to_owned(), "shop".to_owned()],
        data: data.as_object().cloned().unwrap_or_default(),
        version: 2,
    }
}

/// A distinct 43-character id, shaped like the random ones.
fn id(n: usize, tag: char) -> SessionId {
    SessionId::parse(&format!("{tag}{n:0>42}")).expect("43 base64url characters")
}

fn token(n: usize) -> TokenRecord {
    TokenRecord {
        session_id: id(n, 's'),
        aud: "shop".to_owned(),
        challenge: format!("{n:0>43}"),
        receiver_joined: true,
    }
}

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

async fn memory_store() {
    let store = MemoryStore::new(Clock::system());
    let before = resident_bytes();
    let started = Instant::now();
    for n in 0..MEMORY_SESSIONS {
        store.create_session(&session(n), TTL).await.unwrap();
    }
    let sessions = resident_bytes();
    for n in 0..MEMORY_SESSIONS {
        store
            .put_token(&format!("{n:036}"), &token(n), TTL)
            .await
            .unwrap();
    }
    let tokens = resident_bytes();
    let per = |delta: u64| delta as f64 / MEMORY_SESSIONS as f64;
    println!(
        "memory store: {MEMORY_SESSIONS} sessions, resident +{:.0} MiB: {:.0} bytes a session",
        (sessions - before) as f64 / 1_048_576.0,
        per(sessions - before)
    );
    println!(
        "memory store: {MEMORY_SESSIONS} pending tokens, resident +{:.0} MiB: {:.0} bytes a token ({:.1} s in all)",
        (tokens - sessions) as f64 / 1_048_576.0,
        per(tokens - sessions),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(store.entry_count(), 2 * MEMORY_SESSIONS);
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> Option<(Server, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    let server = Server(child);
    let url = format!("redis://127.0.0.1:{port}");
    let client = redis::Client::open(url.as_str()).ok()?;
    for _ in 0..100 {
        if client.get_connection().is_ok() {
            return Some((server, url));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn used_memory(conn: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("memory").query(conn).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn memory_usage(conn: &mut redis::Connection, key: &str) -> u64 {
    redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(key)
        .arg("SAMPLES")
        .arg(0)
        .query(conn)
        .unwrap()
}

async fn redis_store() {
    let Some((_server, url)) = start_redis() else {
        println!("redis: no redis-server here, skipped");
        return;
    };
    let store = RedisStore::connect(&url).await.unwrap();
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    store.create_session(&session(0), TTL).await.unwrap();
    store.put_token("one", &token(0), TTL).await.unwrap();
    let session_key = format!("sb:s:{}", id(0, 's').expose());
    println!(
        "redis: MEMORY USAGE of a session {} bytes, of a pending token {} bytes",
        memory_usage(&mut conn, &session_key),
        memory_usage(&mut conn, "sb:t:one")
    );
    let before = used_memory(&mut conn);
    for n in 1..=REDIS_SESSIONS {
        store.create_session(&session(n), TTL).await.unwrap();
    }
    let sessions = used_memory(&mut conn);
    for n in 1..=REDIS_SESSIONS {
        store
            .put_token(&format!("{n:036}"), &token(n), TTL)
            .await
            .unwrap();
    }
    let tokens = used_memory(&mut conn);
    println!(
        "redis: used_memory over {REDIS_SESSIONS} records (keyspace and expiry entries included): {:.0} bytes a session, {:.0} bytes a pending token",
        (sessions - before) as f64 / REDIS_SESSIONS as f64,
        (tokens - sessions) as f64 / REDIS_SESSIONS as f64
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this
    // too, without it, and should not spend half a minute here.
    if !std::env::args().any(|a| a == "--bench") {
        println!("memory: run it with `cargo bench --bench memory`");
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        redis_store().await;
        memory_store().await;
    });
}
