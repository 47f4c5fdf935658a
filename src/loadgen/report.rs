//! The outcome of a run, for people (`render`) and for scripts (`to_json`).

use super::Latencies;
use super::scenario::Scenario;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::time::Duration;

/// The outcome of a run.
pub struct LoadReport {
    pub scenario: Scenario,
    /// Completed iterations (hand-offs, or reads).
    pub handoffs: u64,
    pub elapsed: Duration,
    pub latencies: Latencies,
    /// Error code (or `http_<status>`, `connect`, `timeout`,
    /// `double_redemption`) → count.
    pub errors: BTreeMap<String, u64>,
    /// Redeeming requests that failed in transit: the server may or may
    /// not have redeemed their tokens.
    pub uncertain_redemptions: u64,
    /// Remarks that do not fail the run (e.g. a check that was skipped).
    pub notes: Vec<String>,
}

fn ms(value: u64) -> f64 {
    value as f64 / 1000.0
}

fn percentiles(h: &Histogram<u64>) -> [f64; 4] {
    [
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.9)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max()),
    ]
}

fn json_percentiles(h: &Histogram<u64>) -> serde_json::Value {
    let [p50, p90, p99, max] = percentiles(h);
    serde_json::json!({
        "count": h.len(),
        "p50_ms": p50,
        "p90_ms": p90,
        "p99_ms": p99,
        "max_ms": max,
    })
}

impl LoadReport {
    pub fn per_second(&self) -> f64 {
        self.handoffs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Human-readable summary.
    pub fn render(&self) -> String {
        let row = |name: &str, h: &Histogram<u64>| {
            let [p50, p90, p99, max] = percentiles(h);
            format!(
                "  {name:<8} p50 {p50:>8.3} ms  p90 {p90:>8.3} ms  p99 {p99:>8.3} ms  max {max:>8.3} ms\n"
            )
        };
        let (plural, singular) = self.scenario.unit();
        let mut out = format!(
            "{}: {} {plural} in {:.2} s: {:.0} {plural}/s\n",
            self.scenario,
            self.handoffs,
            self.elapsed.as_secs_f64(),
            self.per_second()
        );
        for (name, h) in self.scenario.steps().iter().zip(&self.latencies.steps) {
            out.push_str(&row(name, h));
        }
        out.push_str(&row(singular, &self.latencies.total));
        if self.errors.is_empty() {
            out.push_str("errors: none\n");
        } else {
            for (code, count) in &self.errors {
                out.push_str(&format!("error {code}: {count}\n"));
            }
        }
        for note in &self.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        out
    }

    /// The machine-readable report (`bench --json`); latencies in ms.
    pub fn to_json(&self) -> serde_json::Value {
        let steps: Vec<serde_json::Value> = self
            .scenario
            .steps()
            .iter()
            .zip(&self.latencies.steps)
            .map(|(name, h)| {
                let mut step = json_percentiles(h);
                step["name"] = serde_json::Value::from(*name);
                step
            })
            .collect();
        serde_json::json!({
            "scenario": self.scenario.name(),
            "handoffs": self.handoffs,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "per_second": self.per_second(),
            "steps": steps,
            "total": json_percentiles(&self.latencies.total),
            "errors": self.errors,
            "uncertain_redemptions": self.uncertain_redemptions,
            "notes": self.notes,
            "failed": self.failed(),
        })
    }

    /// Any error fails the run (a token refused as replayed is an error
    /// too, and so is a token the servers redeemed more often than asked).
    pub fn failed(&self) -> bool {
        !self.errors.is_empty()
    }
}
