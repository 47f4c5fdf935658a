//! `session-bridge bench`: drives complete hand-offs (or session reads)
//! against running servers, like many browsers at once, and reports
//! throughput, latency per step and errors by code.
//!
//! Each virtual browser has its own session and cookies and keeps its
//! connections alive. What one iteration is depends on the [`Scenario`]:
//! flow A (`start` on the receiving site, `issue` on the issuing site,
//! `accept` on the receiving site), flow B (`frame` on the issuing site,
//! `exchange` on the receiving site), a session read, or the same against
//! the reference apps of `benches/` (the floor, and actix-session). With
//! several nodes (sharing one Redis), a token issued on node `i` is
//! redeemed on node `i + 1`. With `rate`, iterations start on a fixed
//! schedule (paced, not closed-loop) and latency counts from the scheduled
//! start, so a slow server cannot hide its queueing (no coordinated
//! omission).
//!
//! For the flows, the run ends with the double-redemption check of
//! [`redemptions`].

mod client;
mod http;
pub mod redemptions;
mod report;
mod scenario;
mod steps;

pub use report::LoadReport;
pub use scenario::{MAX_STEPS, Scenario};

use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub scenario: Scenario,
    /// Server nodes' TCP addresses.
    pub connect: Vec<SocketAddr>,
    /// Issuing site's origin (its `Host`), e.g. `http://account.localhost:8080`.
    pub from: String,
    /// The issuing site's id, for `POST /api/v1/sessions`.
    pub from_site: String,
    /// Receiving site's origin.
    pub to: String,
    pub api_key: String,
    /// Virtual browsers.
    pub concurrency: usize,
    /// Stop after this long…
    pub duration: Option<Duration>,
    /// …or after this many iterations.
    pub count: Option<u64>,
    /// Iterations per second to start, paced; `None`: as fast as answered.
    pub rate: Option<f64>,
    /// Client threads.
    pub threads: usize,
    pub progress: bool,
}

impl Default for LoadOptions {
    /// Flow A against the demo on its default port.
    fn default() -> Self {
        Self {
            scenario: Scenario::FlowA,
            connect: Vec::new(),
            from: "http://account.localhost:8080".to_owned(),
            from_site: "account".to_owned(),
            to: "http://shop.localhost:8080".to_owned(),
            api_key: String::new(),
            concurrency: 64,
            duration: None,
            count: None,
            rate: None,
            threads: 1,
            progress: false,
        }
    }
}

/// Latencies in microseconds, one histogram per step of the scenario.
pub struct Latencies {
    pub steps: Vec<Histogram<u64>>,
    pub total: Histogram<u64>,
}

impl Latencies {
    fn new(steps: usize) -> Result<Self, String> {
        // 1 µs to 60 s at 3 significant figures: valid bounds, cannot fail.
        let make = || Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string());
        Ok(Self {
            steps: (0..steps).map(|_| make()).collect::<Result<_, _>>()?,
            total: make()?,
        })
    }

    fn add(&mut self, other: &Latencies) {
        for (mine, theirs) in self.steps.iter_mut().zip(&other.steps) {
            let _ = mine.add(theirs);
        }
        let _ = self.total.add(&other.total);
    }
}

/// Shared between the client threads.
struct Shared {
    options: LoadOptions,
    /// When the last virtual browser finished its setup (its session and
    /// connections): the run, its schedule and its clock start there, so
    /// setup is neither counted in the rate nor queued behind by the first
    /// paced hand-offs.
    started: OnceLock<Instant>,
    /// Browsers still setting up.
    setting_up: AtomicUsize,
    tickets: AtomicU64,
    done: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    /// Marks one browser ready; the last one starts the run.
    fn ready(&self) {
        if self.setting_up.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _ = self.started.set(Instant::now());
        }
    }

    /// When the run started, once every browser is ready.
    fn started(&self) -> Option<Instant> {
        self.started.get().copied()
    }

    /// The next hand-off to run, and when it is due; `None` when the run is over.
    fn next(&self) -> Option<Instant> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        let started = self.started()?;
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
        if self.options.count.is_some_and(|count| ticket >= count) {
            return None;
        }
        let due = match self.options.rate {
            Some(rate) => started + Duration::from_secs_f64(ticket as f64 / rate),
            None => Instant::now(),
        };
        if self
            .options
            .duration
            .is_some_and(|d| due.duration_since(started) >= d)
        {
            return None;
        }
        Some(due)
    }
}

/// What the client threads bring back, summed.
struct Totals {
    handoffs: u64,
    elapsed: Duration,
    latencies: Latencies,
    errors: BTreeMap<String, u64>,
    uncertain_redemptions: u64,
}

/// Runs the load and reports.
pub fn run(options: LoadOptions) -> Result<LoadReport, String> {
    if options.connect.is_empty() {
        return Err("give at least one --connect address".to_owned());
    }
    if options.duration.is_none() && options.count.is_none() {
        return Err("give --duration or --count".to_owned());
    }
    if options.scenario.uses_bridge_api() && options.api_key.is_empty() {
        return Err(format!(
            "{} needs --api-key (a key of the bridge's [api] keys)",
            options.scenario
        ));
    }
    let scenario = options.scenario;
    let metrics_host = client::authority(&options.from)?;
    // The bridges' redemption count before the run; unreadable only skips
    // the check (a node may not expose /metrics to this client).
    let before = scenario
        .redeems_on_bridge()
        .then(|| redemptions::scrape(&options.connect, &metrics_host));
    let totals = drive(options.clone())?;
    let mut report = LoadReport {
        scenario,
        handoffs: totals.handoffs,
        elapsed: totals.elapsed,
        latencies: totals.latencies,
        errors: totals.errors,
        uncertain_redemptions: totals.uncertain_redemptions,
        notes: Vec::new(),
    };
    if let Some(before) = before {
        let after = redemptions::scrape(&options.connect, &metrics_host);
        match (before, after) {
            (Ok(before), Ok(after)) => {
                let excess = redemptions::excess_redemptions(
                    after.saturating_sub(before),
                    report.handoffs,
                    report.uncertain_redemptions,
                );
                if excess > 0 {
                    report.errors.insert("double_redemption".to_owned(), excess);
                }
            }
            (Err(e), _) | (_, Err(e)) => report.notes.push(format!(
                "cannot read /metrics ({e}); the double-redemption check was skipped"
            )),
        }
    }
    Ok(report)
}

/// Starts the client threads, waits for them, and sums what they saw.
fn drive(options: LoadOptions) -> Result<Totals, String> {
    let threads = options.threads.clamp(1, options.concurrency.max(1));
    let shared = Arc::new(Shared {
        options: options.clone(),
        started: OnceLock::new(),
        setting_up: AtomicUsize::new(options.concurrency.max(1)),
        tickets: AtomicU64::new(0),
        done: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    if options.concurrency == 0 {
        shared.ready();
    }
    let progress = options.progress.then(|| progress_bar(&options));
    let mut handles = Vec::new();
    for thread in 0..threads {
        let browsers =
            (options.concurrency / threads) + usize::from(thread < options.concurrency % threads);
        let shared = Arc::clone(&shared);
        handles.push(std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(client::run_thread(shared, thread, browsers))
        }));
    }
    let (plural, _) = options.scenario.unit();
    while handles.iter().any(|h| !h.is_finished()) {
        if let Some(bar) = &progress {
            let done = shared.done.load(Ordering::Relaxed);
            match options.count {
                Some(_) => bar.set_position(done),
                None => bar.set_position(
                    shared
                        .started()
                        .map_or(0, |started| started.elapsed().as_secs()),
                ),
            }
            bar.set_message(format!("{done} {plural}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let elapsed = shared
        .started()
        .map_or(Duration::ZERO, |started| started.elapsed());
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let mut totals = Totals {
        handoffs: 0,
        elapsed,
        latencies: Latencies::new(options.scenario.steps().len())?,
        errors: BTreeMap::new(),
        uncertain_redemptions: 0,
    };
    for handle in handles {
        let outcome = handle
            .join()
            .map_err(|_| "a client thread panicked".to_owned())??;
        totals.latencies.add(&outcome.latencies);
        totals.handoffs += outcome.handoffs;
        totals.uncertain_redemptions += outcome.uncertain_redemptions;
        for (code, count) in outcome.errors {
            *totals.errors.entry(code).or_insert(0) += count;
        }
    }
    Ok(totals)
}

fn progress_bar(options: &LoadOptions) -> indicatif::ProgressBar {
    let length = options
        .count
        .or(options.duration.map(|d| d.as_secs()))
        .unwrap_or(0);
    let bar = indicatif::ProgressBar::new(length);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}
