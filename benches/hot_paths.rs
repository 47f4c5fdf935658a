//! The hot pieces of a hand-off, measured side by side so their ratios hold
//! on a noisy shared machine: token sign and verify per algorithm, the
//! consume step on the memory store, the cookie and `return_to` checks, and
//! the audit trail (a line's MAC, and what a request pays to record an event).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use session_bridge::audit::line::{AuditRecord, GENESIS, sign};
use session_bridge::audit::{Audit, AuditEvent, AuditSettings, EventKind, RequestContext};
use session_bridge::clock::Clock;
use session_bridge::config::TokenAlgorithm;
use session_bridge::flows::return_to::validate_return_to;
use session_bridge::store::{MemoryStore, SessionId, Store, TokenRecord};
use session_bridge::token::{KeySet, TokenRequest, TokenService};
use std::hint::black_box;
use std::time::Duration;

const NOW: i64 = 1_800_000_000;

fn tokens(c: &mut Criterion) {
    let request = TokenRequest {
        issuer: "account",
        audience: "shop",
        challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        return_to: "/cart",
    };
    for algorithm in [TokenAlgorithm::EdDSA, TokenAlgorithm::HS256] {
        let service = TokenService::new(KeySet::ephemeral(algorithm, NOW).unwrap(), 30, 5);
        let (token, _) = service.issue(&request, NOW).unwrap();
        c.bench_function(&format!("token sign {algorithm}"), |b| {
            b.iter(|| service.issue(black_box(&request), NOW).unwrap())
        });
        c.bench_function(&format!("token verify {algorithm}"), |b| {
            b.iter(|| service.verify(black_box(&token), "shop", NOW).unwrap())
        });
    }
}

fn store(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let store = MemoryStore::new(Clock::system());
    let record = TokenRecord {
        session_id: SessionId::from_generated("s".repeat(43)),
        aud: "shop".to_owned(),
        challenge: "c".repeat(43),
        receiver_joined: false,
    };
    let mut n = 0u64;
    c.bench_function("memory put + consume", |b| {
        b.iter(|| {
            n += 1;
            let jti = format!("jti-{n}");
            runtime.block_on(async {
                store
                    .put_token(&jti, &record, Duration::from_secs(45))
                    .await
                    .unwrap();
                store.consume_token(&jti).await.unwrap()
            })
        })
    });
}

fn checks(c: &mut Criterion) {
    let paths = vec!["/".to_owned(), "/cart".to_owned()];
    c.bench_function("return_to check", |b| {
        b.iter(|| validate_return_to(black_box("/cart/items?page=2"), &paths).unwrap())
    });
    let cookie = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    c.bench_function("session cookie parse", |b| {
        b.iter(|| SessionId::parse(black_box(cookie)).unwrap())
    });
}

fn audit(c: &mut Criterion) {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"bench-audit-key-0123456789");
    let record = AuditRecord {
        id: uuid::Uuid::now_v7().to_string(),
        ts: "2026-11-25T12:00:00Z".into(),
        seq: 1,
        node: "bench:8080".into(),
        event: "token.redeemed".into(),
        site: "shop".into(),
        partner: Some("account".into()),
        jti: Some(uuid::Uuid::new_v4().to_string()),
        session_fp: Some("9c2b4e0f5a7d13e8b6c1a2f4d5e6a7b8".into()),
        ip: Some("203.0.113.9".into()),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
        reason: None,
        request_id: Some(uuid::Uuid::now_v7().to_string()),
    };
    c.bench_function("audit line MAC", |b| {
        b.iter(|| sign(&key, &GENESIS, black_box(&record)))
    });
    let dir = tempfile::tempdir().unwrap();
    let trail = Audit::start(AuditSettings {
        key: b"bench-audit-key-0123456789".to_vec(),
        node: "bench:8080".to_owned(),
        file: Some(dir.path().join("audit.log")),
        rotate_bytes: 1 << 30,
        stream_url: None,
        alerts: None,
    })
    .unwrap();
    let session = SessionId::from_generated("s".repeat(43));
    let ctx = RequestContext {
        ip: "203.0.113.9".into(),
        user_agent: "Mozilla/5.0 (X11; Linux x86_64)".into(),
        request_id: uuid::Uuid::now_v7().to_string(),
    };
    let event = AuditEvent::new(EventKind::TokenRedeemed, "shop")
        .partner("account")
        .jti("3f1c")
        .session(&session);
    // What a request pays: build the record and hand it to the writer's queue.
    c.bench_function("audit record (request side)", |b| {
        b.iter(|| trail.record(black_box(&event), &ctx))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2)).sample_size(30);
    targets = tokens, store, checks, audit
}
criterion_main!(benches);
