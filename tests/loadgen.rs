//! The load generator against a real bridge: every hand-off (flow A and
//! flow B) and every session read completes, failures are counted by code,
//! and the servers' redemption count is held against the generator's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use session_bridge::loadgen::redemptions::{excess_redemptions, redeemed_total};
use session_bridge::loadgen::{LoadOptions, LoadReport, Scenario, run};
use std::time::Duration;
use support::app::{API_KEY, Backend, TestApp};

fn options(app: &TestApp, count: u64) -> LoadOptions {
    LoadOptions {
        scenario: Scenario::FlowA,
        connect: vec![format!("127.0.0.1:{}", app.port).parse().unwrap()],
        from: app.origin("account"),
        from_site: "account".to_owned(),
        to: app.origin("shop"),
        api_key: API_KEY.to_owned(),
        concurrency: 4,
        duration: None,
        count: Some(count),
        rate: None,
        threads: 2,
        progress: false,
    }
}

async fn run_blocking(options: LoadOptions) -> LoadReport {
    tokio::task::spawn_blocking(move || run(options))
        .await
        .unwrap()
        .unwrap()
}

async fn metrics(app: &TestApp) -> String {
    reqwest::get(format!("http://127.0.0.1:{}/metrics", app.port))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drives_complete_hand_offs_on_both_stores() {
    for backend in [Backend::Memory, Backend::Redis] {
        let app = TestApp::spawn(backend).await;
        let report = run_blocking(options(&app, 60)).await;
        assert_eq!(report.handoffs, 60, "{}", report.render());
        assert!(!report.failed(), "{}", report.render());
        assert!(report.notes.is_empty(), "{}", report.render());
        assert_eq!(report.latencies.total.len(), 60);
        let text = report.render();
        assert!(text.contains("hand-offs/s"), "{text}");
        for step in ["start", "issue", "accept"] {
            assert!(text.contains(&format!("  {step} ")), "{text}");
        }
        // The bridge saw them: one redemption per hand-off.
        let metrics = metrics(&app).await;
        assert!(
            metrics.contains(
                "session_bridge_handoffs_total{flow=\"redirect\",outcome=\"redeemed\"} 60"
            ),
            "{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_b_exchanges_on_both_stores() {
    for backend in [Backend::Memory, Backend::Redis] {
        let app = TestApp::spawn(backend).await;
        let mut opts = options(&app, 40);
        opts.scenario = Scenario::FlowB;
        let report = run_blocking(opts).await;
        assert_eq!(report.handoffs, 40, "{backend:?}: {}", report.render());
        assert!(!report.failed(), "{backend:?}: {}", report.render());
        // The double-redemption check ran (and found nothing).
        assert!(report.notes.is_empty(), "{}", report.render());
        assert_eq!(report.latencies.steps.len(), 2);
        assert_eq!(report.latencies.steps[1].len(), 40);
        let text = report.render();
        assert!(
            text.contains("  frame ") && text.contains("  exchange "),
            "{text}"
        );
        let metrics = metrics(&app).await;
        assert!(
            metrics.contains(
                "session_bridge_handoffs_total{flow=\"postmessage\",outcome=\"redeemed\"} 40"
            ),
            "{metrics}"
        );
        assert_eq!(redeemed_total(&metrics), Some(40));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_reads_and_the_json_report() {
    let app = TestApp::spawn(Backend::Redis).await;
    let mut opts = options(&app, 50);
    opts.scenario = Scenario::SessionRead;
    let report = run_blocking(opts).await;
    assert_eq!(report.handoffs, 50, "{}", report.render());
    assert!(!report.failed(), "{}", report.render());
    assert!(report.render().contains("reads/s"));
    let json = report.to_json();
    assert_eq!(json["scenario"], "session-read");
    assert_eq!(json["handoffs"], 50);
    assert_eq!(json["steps"][0]["name"], "read");
    assert_eq!(json["steps"][0]["count"], 50);
    assert!(json["total"]["p99_ms"].as_f64().unwrap() > 0.0);
    assert!(json["per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(json["errors"], serde_json::json!({}));
    // No hand-offs, no redemptions.
    assert_eq!(redeemed_total(&metrics(&app).await), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_runs_and_errors_by_code() {
    let app = TestApp::spawn(Backend::Memory).await;
    let mut paced = options(&app, 20);
    paced.rate = Some(200.0);
    let report = run_blocking(paced).await;
    assert_eq!(report.handoffs, 20);
    assert!(
        report.elapsed.as_secs_f64() >= 0.09,
        "20 at 200/s take about 0.1 s: {:?}",
        report.elapsed
    );
    let mut wrong = options(&app, 5);
    wrong.api_key = "wrong".to_owned();
    let report = run_blocking(wrong).await;
    assert!(report.failed());
    assert_eq!(
        report.errors.get("setup:unauthorized"),
        Some(&4),
        "{}",
        report.render()
    );
    let mut keyless = options(&app, 5);
    keyless.api_key = String::new();
    let refused = tokio::task::spawn_blocking(move || run(keyless))
        .await
        .unwrap();
    assert!(refused.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redemption_the_generator_did_not_make_fails_the_run() {
    let app = TestApp::spawn(Backend::Memory).await;
    // A paced run of about a second…
    let mut watched = options(&app, 30);
    watched.rate = Some(30.0);
    watched.concurrency = 2;
    let watched = tokio::task::spawn_blocking(move || run(watched));
    // …while someone else redeems one token on the same bridge: the
    // servers' count exceeds what the watched run made.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut other = options(&app, 1);
    other.concurrency = 1;
    other.threads = 1;
    let other = run_blocking(other).await;
    assert_eq!(other.handoffs, 1, "{}", other.render());
    let report = watched.await.unwrap().unwrap();
    assert_eq!(report.handoffs, 30, "{}", report.render());
    assert_eq!(
        report.errors.get("double_redemption"),
        Some(&1),
        "{}",
        report.render()
    );
    assert!(report.failed());
}

#[test]
fn the_redemption_comparison() {
    // As many as the generator made: fine.
    assert_eq!(excess_redemptions(100, 100, 0), 0);
    // Fewer (a hand-off refused after the generator counted nothing): fine.
    assert_eq!(excess_redemptions(90, 100, 0), 0);
    // More: tokens redeemed twice.
    assert_eq!(excess_redemptions(103, 100, 0), 3);
    // Unless requests that redeem failed in transit (the server may have
    // redeemed them, the answer lost).
    assert_eq!(excess_redemptions(103, 100, 3), 0);
    assert_eq!(excess_redemptions(105, 100, 3), 2);
    assert_eq!(excess_redemptions(u64::MAX, u64::MAX, u64::MAX), 0);
}

#[test]
fn reads_the_redeemed_count_from_metrics() {
    let page = "\
# HELP session_bridge_handoffs Token redemptions by flow and outcome.
# TYPE session_bridge_handoffs counter
session_bridge_handoffs_total{flow=\"redirect\",outcome=\"redeemed\"} 60
session_bridge_handoffs_total{flow=\"redirect\",outcome=\"token_replayed\"} 2
session_bridge_handoffs_total{outcome=\"redeemed\",flow=\"postmessage\"} 7
session_bridge_token_rejections_total{reason=\"redeemed\"} 9
# EOF
";
    assert_eq!(redeemed_total(page), Some(67));
    // Before the first hand-off the family is not on the page at all.
    let fresh = "# TYPE session_bridge_audit_queue_depth gauge\nsession_bridge_audit_queue_depth 0\n# EOF\n";
    assert_eq!(redeemed_total(fresh), Some(0));
    assert_eq!(redeemed_total("<html>not metrics</html>"), None);
}

/// Two bridge nodes on one Redis, sharing keys: every token issued on one
/// node is redeemed on the other, and both serve their share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_issued_on_one_node_are_redeemed_on_another() {
    let first = TestApp::spawn(Backend::Redis).await;
    let redis_url = first.redis.as_ref().unwrap().url();
    let (sites, keys_dir) = (
        first.config.sites.clone(),
        first.config.tokens.keys_dir.clone(),
    );
    let second = TestApp::spawn_with(Backend::Memory, move |config| {
        config.store.kind = session_bridge::config::StoreKind::Redis;
        config.store.url = Some(redis_url);
        // The same sites (the first node's origins) and the same signing keys.
        config.sites = sites;
        config.tokens.keys_dir = keys_dir;
    })
    .await;
    let mut options = options(&first, 40);
    options
        .connect
        .push(format!("127.0.0.1:{}", second.port).parse().unwrap());
    let report = run_blocking(options).await;
    assert_eq!(report.handoffs, 40, "{}", report.render());
    assert!(!report.failed(), "{}", report.render());
    // Hand-offs alternate which node issues: each node redeemed about half.
    for node in [&first, &second] {
        let redeemed = redeemed_total(&metrics(node).await).unwrap();
        assert!(
            (10..=30).contains(&redeemed),
            "node {} redeemed {redeemed} of 40",
            node.port
        );
    }
}
