//! The hand-off load generator against a real bridge: every hand-off
//! completes, and failures are counted by code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use session_bridge::loadgen::{LoadOptions, run};
use support::app::{API_KEY, Backend, TestApp};

fn options(app: &TestApp, count: u64) -> LoadOptions {
    LoadOptions {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drives_complete_hand_offs_on_both_stores() {
    for backend in [Backend::Memory, Backend::Redis] {
        let app = TestApp::spawn(backend).await;
        let opts = options(&app, 60);
        let report = tokio::task::spawn_blocking(move || run(opts))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(report.handoffs, 60, "{}", report.render());
        assert!(!report.failed(), "{}", report.render());
        assert_eq!(report.latencies.total.len(), 60);
        assert!(report.render().contains("hand-offs/s"));
        // The bridge saw them: one redemption per hand-off.
        let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", app.port))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains(
                "session_bridge_handoffs_total{flow=\"redirect\",outcome=\"redeemed\"} 60"
            ),
            "{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_runs_and_errors_by_code() {
    let app = TestApp::spawn(Backend::Memory).await;
    let mut paced = options(&app, 20);
    paced.rate = Some(200.0);
    let report = tokio::task::spawn_blocking(move || run(paced))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.handoffs, 20);
    assert!(
        report.elapsed.as_secs_f64() >= 0.09,
        "20 at 200/s take about 0.1 s: {:?}",
        report.elapsed
    );
    let mut wrong = options(&app, 5);
    wrong.api_key = "wrong".to_owned();
    let report = tokio::task::spawn_blocking(move || run(wrong))
        .await
        .unwrap()
        .unwrap();
    assert!(report.failed());
    assert_eq!(
        report.errors.get("setup:unauthorized"),
        Some(&4),
        "{}",
        report.render()
    );
}
