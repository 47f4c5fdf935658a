//! Prometheus metrics (`/metrics`), with `prometheus-client`.
//!
//! Labels never carry a token, a session ID or a raw path: endpoints are
//! route patterns (`/api/v1/sessions/{id}`), outcomes are error codes.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: String,
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandoffLabels {
    /// `redirect` (flow A) or `postmessage` (flow B).
    pub flow: String,
    /// `redeemed`, or the error code.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route pattern (`/bridge/issue`, `/api/v1/sessions/{id}`).
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

fn latency_histogram() -> Histogram {
    // 50 µs … ~1.6 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// Every metric the bridge exports.
pub struct Metrics {
    registry: Registry,
    pub request_duration: Family<EndpointLabels, Histogram, fn() -> Histogram>,
    pub handoffs: Family<HandoffLabels, Counter>,
    pub token_rejections: Family<ReasonLabels, Counter>,
    pub store_errors: Family<ReasonLabels, Counter>,
    pub store_duration: Family<ReasonLabels, Histogram, fn() -> Histogram>,
    pub alerts: Family<ReasonLabels, Counter>,
    pub rate_limited: Family<RouteLabels, Counter>,
    pub audit_queue_depth: Gauge,
    pub audit_dropped: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("session_bridge");
        let request_duration =
            Family::<EndpointLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        let handoffs = Family::<HandoffLabels, Counter>::default();
        let token_rejections = Family::<ReasonLabels, Counter>::default();
        let store_errors = Family::<ReasonLabels, Counter>::default();
        let store_duration =
            Family::<ReasonLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        let alerts = Family::<ReasonLabels, Counter>::default();
        let rate_limited = Family::<RouteLabels, Counter>::default();
        let audit_queue_depth = Gauge::default();
        let audit_dropped = Gauge::default();
        registry.register(
            "http_request_duration_seconds",
            "Request latency per endpoint",
            request_duration.clone(),
        );
        registry.register(
            "handoffs",
            "Token redemptions by flow and outcome",
            handoffs.clone(),
        );
        registry.register(
            "token_rejections",
            "Refused tokens by reason",
            token_rejections.clone(),
        );
        registry.register(
            "store_errors",
            "Store failures by operation",
            store_errors.clone(),
        );
        registry.register(
            "store_operation_duration_seconds",
            "Store latency per operation",
            store_duration.clone(),
        );
        registry.register("alerts", "Security alerts raised, by kind", alerts.clone());
        registry.register(
            "rate_limited",
            "Requests refused by a rate limit ([limits]), by route",
            rate_limited.clone(),
        );
        registry.register(
            "audit_queue_depth",
            "Audit events waiting to be written",
            audit_queue_depth.clone(),
        );
        registry.register(
            "audit_dropped_events",
            "Audit events dropped because the queue was full",
            audit_dropped.clone(),
        );
        Self {
            registry,
            request_duration,
            handoffs,
            token_rejections,
            store_errors,
            store_duration,
            alerts,
            rate_limited,
            audit_queue_depth,
            audit_dropped,
        }
    }

    /// Counts the outcome of a redemption endpoint.
    pub fn record_handoff(&self, flow: &str, outcome: &str) {
        self.handoffs
            .get_or_create(&HandoffLabels {
                flow: flow.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        if outcome.starts_with("token_") {
            self.token_rejections
                .get_or_create(&ReasonLabels {
                    reason: outcome.to_owned(),
                })
                .inc();
        }
    }

    /// The text exposition format, with the audit queue read now.
    pub fn render(&self, audit: &crate::audit::Audit) -> String {
        if let Some(stats) = audit.stats() {
            self.audit_queue_depth
                .set(stats.depth.load(Ordering::Relaxed));
            self.audit_dropped
                .set(i64::try_from(stats.dropped.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
