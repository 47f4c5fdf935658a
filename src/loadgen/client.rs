//! One client thread: an actix runtime running its share of the virtual
//! browsers over keep-alive connections (awc).

use super::steps::Browser;
use super::{Latencies, Shared};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub use super::http::authority;

/// What a thread (or one browser) brings back.
pub struct ThreadOutcome {
    pub handoffs: u64,
    pub latencies: Latencies,
    pub errors: BTreeMap<String, u64>,
    /// Redeeming requests that failed in transit.
    pub uncertain_redemptions: u64,
}

impl ThreadOutcome {
    fn new(shared: &Shared) -> Result<Self, String> {
        Ok(Self {
            handoffs: 0,
            latencies: Latencies::new(shared.options.scenario.steps().len())?,
            errors: BTreeMap::new(),
            uncertain_redemptions: 0,
        })
    }

    fn add(&mut self, other: Self) {
        self.handoffs += other.handoffs;
        self.uncertain_redemptions += other.uncertain_redemptions;
        self.latencies.add(&other.latencies);
        for (code, count) in other.errors {
            *self.errors.entry(code).or_insert(0) += count;
        }
    }
}

/// Runs `browsers` virtual browsers on this thread until the run is over.
pub async fn run_thread(
    shared: Arc<Shared>,
    thread: usize,
    browsers: usize,
) -> Result<ThreadOutcome, String> {
    let mut tasks = Vec::new();
    for index in 0..browsers {
        let shared = Arc::clone(&shared);
        tasks.push(actix_web::rt::spawn(async move {
            run_browser(&shared, thread * 10_000 + index).await
        }));
    }
    let mut outcome = ThreadOutcome::new(&shared)?;
    for task in tasks {
        let browser = task
            .await
            .map_err(|_| "a virtual browser failed".to_owned())??;
        outcome.add(browser);
    }
    Ok(outcome)
}

/// Marks a browser's setup done when dropped.
struct ReadyOnDrop<'a>(&'a Shared);

impl Drop for ReadyOnDrop<'_> {
    fn drop(&mut self) {
        self.0.ready();
    }
}

async fn run_browser(shared: &Shared, index: usize) -> Result<ThreadOutcome, String> {
    let nodes = &shared.options.connect;
    let home = nodes[index % nodes.len()];
    let steps = shared.options.scenario.steps().len();
    let mut outcome = ThreadOutcome::new(shared)?;
    // Ready however setup ends, a panic included: the run waits for every browser.
    let ready = ReadyOnDrop(shared);
    let browser = Browser::new(&shared.options, home, index).await;
    drop(ready);
    let browser = match browser {
        Ok(browser) => browser,
        Err(failure) => {
            outcome.errors.insert(format!("setup:{}", failure.code), 1);
            return Ok(outcome);
        }
    };
    // The run starts when every browser is ready.
    while shared.started().is_none() {
        actix_web::rt::time::sleep(Duration::from_millis(1)).await;
    }
    let mut round = index;
    while let Some(due) = shared.next() {
        let now = Instant::now();
        if due > now {
            actix_web::rt::time::sleep(due - now).await;
        }
        // Tokens issued on one node are redeemed on the next.
        let issue_node = nodes[round % nodes.len()];
        let accept_node = nodes[(round + 1) % nodes.len()];
        round += 1;
        match browser.iterate(issue_node, accept_node).await {
            Ok(times) => {
                for (histogram, value) in outcome.latencies.steps.iter_mut().zip(times).take(steps)
                {
                    let _ = histogram.record(value.max(1));
                }
                // From the scheduled start: queueing behind a slow server counts.
                let total = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX);
                let _ = outcome.latencies.total.record(total.max(1));
                outcome.handoffs += 1;
                shared.done.fetch_add(1, Ordering::Relaxed);
            }
            Err(failure) => {
                outcome.uncertain_redemptions += u64::from(failure.uncertain);
                *outcome.errors.entry(failure.code).or_insert(0) += 1;
            }
        }
    }
    Ok(outcome)
}
