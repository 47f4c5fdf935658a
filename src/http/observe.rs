//! Per-request observation: a request ID (echoed in `X-Request-Id`, error
//! pages and audit lines), latency and outcome metrics, and one structured
//! access-log line. Nothing here ever sees a query string or a raw path:
//! endpoints are route patterns, so tokens and session IDs stay out.

use super::AppState;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::HeaderValue;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use std::time::Instant;

/// This request's ID (UUID v7), in the request's extensions.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// The stable error code of an error response, in the response's extensions.
#[derive(Clone, Copy, Debug)]
pub struct ErrorCode(pub &'static str);

/// The request ID of `req` (empty outside the middleware, e.g. in unit tests).
pub fn request_id(req: &HttpRequest) -> String {
    req.extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default()
}

/// One request under observation: what is known of it before it is
/// handled, kept for its answer.
pub struct Observation {
    started: Instant,
    id: String,
    labels: crate::metrics::EndpointLabels,
    state: Option<web::Data<AppState>>,
}

impl Observation {
    /// Gives `req` its ID and starts the clock.
    pub fn begin(req: &ServiceRequest) -> Self {
        let id = uuid::Uuid::now_v7().to_string();
        req.extensions_mut().insert(RequestId(id.clone()));
        Self {
            started: Instant::now(),
            id,
            // The metric's labels, built once: the log line borrows them.
            labels: crate::metrics::EndpointLabels {
                endpoint: req
                    .match_pattern()
                    .unwrap_or_else(|| "unmatched".to_owned()),
                method: req.method().as_str().to_owned(),
            },
            state: req.app_data::<web::Data<AppState>>().cloned(),
        }
    }

    /// Echoes the ID on `response`, counts it and logs it.
    pub fn finish<B>(self, response: &mut ServiceResponse<B>) {
        let Self {
            started,
            id,
            labels,
            state,
        } = self;
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(
                actix_web::http::header::HeaderName::from_static("x-request-id"),
                value,
            );
        }
        let (endpoint, method) = (labels.endpoint.as_str(), labels.method.as_str());
        let status = response.status();
        let code = response
            .response()
            .extensions()
            .get::<ErrorCode>()
            .map(|c| c.0);
        let elapsed = started.elapsed();
        if let Some(state) = state {
            let metrics = &state.metrics;
            metrics
                .request_duration
                .get_or_create(&labels)
                .observe(elapsed.as_secs_f64());
            let flow = match endpoint {
                "/bridge/accept" => Some("redirect"),
                "/bridge/exchange" => Some("postmessage"),
                _ => None,
            };
            if let Some(flow) = flow {
                let outcome = if status.is_success() || status.is_redirection() {
                    "redeemed"
                } else {
                    code.unwrap_or("error")
                };
                metrics.record_handoff(flow, outcome);
            }
        }
        // Answers that went as planned are logged at `debug` (set
        // `RUST_LOG=info,access=debug` to see them): the audit trail already
        // records every token and session event and the metrics count every
        // request, and a line per request costs a hand-off a formatted write to
        // stderr three times over. Refusals are `info`, server errors `warn`.
        macro_rules! access {
            ($level:expr) => {
                tracing::event!(
                    target: "access",
                    $level,
                    request_id = id.as_str(),
                    method = method,
                    endpoint = endpoint,
                    status = status.as_u16(),
                    code = code.unwrap_or(""),
                    micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
                )
            };
        }
        if status.is_server_error() {
            access!(tracing::Level::WARN);
        } else if status.is_client_error() {
            access!(tracing::Level::INFO);
        } else {
            access!(tracing::Level::DEBUG);
        }
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(&state.bridge.audit))
}
