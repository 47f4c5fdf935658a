//! `session-bridge bench`: drives complete flow-A hand-offs against running
//! bridges, like many browsers at once, and reports throughput, latency per
//! step and errors by code.
//!
//! Each virtual browser has its own session and cookies and keeps its
//! connections alive. A hand-off is the three requests of flow A: `start` on
//! the receiving site, `issue` on the issuing site, `accept` on the receiving
//! site. With several nodes (sharing one Redis), a token issued on node `i`
//! is redeemed on node `i + 1`. With `rate`, hand-offs start on a fixed
//! schedule (paced, not closed-loop) and latency counts from the scheduled
//! start, so a slow server cannot hide its queueing (no coordinated omission).

mod client;

use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Bridge nodes' TCP addresses.
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
    /// …or after this many hand-offs.
    pub count: Option<u64>,
    /// Hand-offs per second to start, paced; `None`: as fast as answered.
    pub rate: Option<f64>,
    /// Client threads.
    pub threads: usize,
    pub progress: bool,
}

/// Latencies in microseconds.
pub struct Latencies {
    pub steps: [Histogram<u64>; 3],
    pub total: Histogram<u64>,
}

impl Latencies {
    fn new() -> Result<Self, String> {
        // 1 µs to 60 s at 3 significant figures: valid bounds, cannot fail.
        let make = || Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string());
        Ok(Self {
            steps: [make()?, make()?, make()?],
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

/// The outcome of a run.
pub struct LoadReport {
    pub handoffs: u64,
    pub elapsed: Duration,
    pub latencies: Latencies,
    /// Error code (or `http_<status>`, `connect`) → count.
    pub errors: BTreeMap<String, u64>,
}

impl LoadReport {
    pub fn per_second(&self) -> f64 {
        self.handoffs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Human-readable summary.
    pub fn render(&self) -> String {
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        let row = |name: &str, h: &Histogram<u64>| {
            format!(
                "  {name:<8} p50 {:>8.3} ms  p90 {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms\n",
                ms(h, 0.5),
                ms(h, 0.9),
                ms(h, 0.99),
                h.max() as f64 / 1000.0
            )
        };
        let mut out = format!(
            "{} hand-offs in {:.2} s: {:.0} hand-offs/s\n",
            self.handoffs,
            self.elapsed.as_secs_f64(),
            self.per_second()
        );
        for (name, h) in ["start", "issue", "accept"]
            .iter()
            .zip(&self.latencies.steps)
        {
            out.push_str(&row(name, h));
        }
        out.push_str(&row("hand-off", &self.latencies.total));
        if self.errors.is_empty() {
            out.push_str("errors: none\n");
        } else {
            for (code, count) in &self.errors {
                out.push_str(&format!("error {code}: {count}\n"));
            }
        }
        out
    }

    /// Any error fails the run (a token refused as replayed is an error too).
    pub fn failed(&self) -> bool {
        !self.errors.is_empty()
    }
}

/// Shared between the client threads.
struct Shared {
    options: LoadOptions,
    started: Instant,
    tickets: AtomicU64,
    done: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    /// The next hand-off to run, and when it is due; `None` when the run is over.
    fn next(&self) -> Option<Instant> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
        if self.options.count.is_some_and(|count| ticket >= count) {
            return None;
        }
        let due = match self.options.rate {
            Some(rate) => self.started + Duration::from_secs_f64(ticket as f64 / rate),
            None => Instant::now(),
        };
        if self
            .options
            .duration
            .is_some_and(|d| due.duration_since(self.started) >= d)
        {
            return None;
        }
        Some(due)
    }
}

/// Runs the load and reports.
pub fn run(options: LoadOptions) -> Result<LoadReport, String> {
    if options.connect.is_empty() {
        return Err("give at least one --connect address".to_owned());
    }
    if options.duration.is_none() && options.count.is_none() {
        return Err("give --duration or --count".to_owned());
    }
    let threads = options.threads.clamp(1, options.concurrency.max(1));
    let shared = Arc::new(Shared {
        options: options.clone(),
        started: Instant::now(),
        tickets: AtomicU64::new(0),
        done: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
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
    while handles.iter().any(|h| !h.is_finished()) {
        if let Some(bar) = &progress {
            let done = shared.done.load(Ordering::Relaxed);
            match options.count {
                Some(_) => bar.set_position(done),
                None => bar.set_position(shared.started.elapsed().as_secs()),
            }
            bar.set_message(format!("{done} hand-offs"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let elapsed = shared.started.elapsed();
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let mut latencies = Latencies::new()?;
    let mut errors = BTreeMap::new();
    let mut handoffs = 0;
    for handle in handles {
        let outcome = handle
            .join()
            .map_err(|_| "a client thread panicked".to_owned())??;
        latencies.add(&outcome.latencies);
        handoffs += outcome.handoffs;
        for (code, count) in outcome.errors {
            *errors.entry(code).or_insert(0) += count;
        }
    }
    Ok(LoadReport {
        handoffs,
        elapsed,
        latencies,
        errors,
    })
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
