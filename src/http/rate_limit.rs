//! Rate limits per client IP (`[limits]`), on this node.
//!
//! - The hand-off endpoints (`/bridge/start`, `issue`, `accept`, `frame`,
//!   `exchange`) share one budget per client: they are what an anonymous
//!   client can make the bridge sign, store or verify.
//! - The service API (`/api/v1/*`) has its own.
//! - Refused tokens (a failed `accept` or `exchange`) spend a much smaller
//!   budget; once it is spent, that client's redemptions are refused before
//!   any token is looked at, until it refills. A burst of junk tokens is
//!   cut off even when the client's request rate is modest.
//!
//! A refusal is `429` with `Retry-After` and the code `rate_limited`, in the
//! error type's two faces. Only the first refusal of a client per limit
//! and minute is audited (`rate.limited`): auditing each one would let a
//! client write to the trail as fast as it can send. Every refusal counts
//! in `session_bridge_rate_limited_total{route}`.
//!
//! The client is [`request::client_ip`]: `X-Forwarded-For` only from a
//! trusted proxy.

pub mod limiter;

use super::AppState;
use super::error::HttpError;
use super::request;
use crate::audit::{AuditEvent, EventKind};
use crate::flows::FlowError;
use crate::token::TokenError;
use actix_web::dev::ServiceRequest;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
pub use limiter::{Limit, RateLimits, Refusal};

/// The limit a request path falls under, if any.
pub fn limit_for(path: &str) -> Option<Limit> {
    match path {
        "/bridge/start" | "/bridge/issue" | "/bridge/accept" | "/bridge/frame"
        | "/bridge/exchange" => Some(Limit::Bridge),
        "/api/v1" => Some(Limit::Api),
        _ if path.starts_with("/api/v1/") => Some(Limit::Api),
        _ => None,
    }
}

/// Whether the path redeems tokens, so a spent rejection budget refuses it.
pub fn redeems_tokens(path: &str) -> bool {
    matches!(path, "/bridge/accept" | "/bridge/exchange")
}

/// Whether a failed redemption is the client's token (or its binding)
/// being refused, as opposed to the bridge failing.
fn is_token_refusal(error: &FlowError) -> bool {
    match error {
        FlowError::Token(TokenError::SigningFailed) => false,
        FlowError::Token(_)
        | FlowError::StateMissing
        | FlowError::UnknownIssuer
        | FlowError::IssuerMismatch
        | FlowError::BindingMismatch
        | FlowError::Replayed
        | FlowError::UnknownToken => true,
        FlowError::InvalidRequest(_)
        | FlowError::UnknownSite
        | FlowError::PartnerNotAllowed
        | FlowError::ReturnTo(_)
        | FlowError::NoSession
        | FlowError::Session(_) => false,
    }
}

/// The answer to `refusal`: counted, audited when it is the first of its
/// window, and shaped by the error type.
fn refuse(req: &HttpRequest, state: &AppState, refusal: Refusal) -> HttpError {
    // The pattern, never the raw path: labels must not grow with what
    // clients send.
    let route = req
        .resource_map()
        .match_pattern(routed_path(req))
        .unwrap_or_else(|| "unmatched".to_owned());
    state
        .metrics
        .rate_limited
        .get_or_create(&crate::metrics::RouteLabels { route })
        .inc();
    if refusal.audit {
        // An unknown host still names no site: the line says so with "".
        let site = request::site_of(req, &state.bridge.topology)
            .map(|(site, _)| site.id.clone())
            .unwrap_or_default();
        let event = AuditEvent::new(EventKind::RateLimited, &site).reason(refusal.limit.reason());
        state.bridge.audit.record(&event, &request::context(req));
    }
    HttpError::rate_limited(refusal.retry_after, req)
}

/// The error of a failed redemption: the flow's own, or `429` when this
/// refusal spent the client's rejection budget.
pub fn redeem_error(req: &HttpRequest, state: &AppState, error: &FlowError) -> HttpError {
    if is_token_refusal(error)
        && let Some(ip) = request::client_ip(req)
        && let Some(refusal) = state.rate_limits.token_refused(ip)
    {
        return refuse(req, state, refusal);
    }
    HttpError::flow(error, req)
}

/// The path as the router matches it: percent-encoded unreserved
/// characters decoded (`/bridge/%69ssue` is `/bridge/issue`), unlike
/// [`HttpRequest::path`], which a client could use to slip past the limits.
fn routed_path(req: &HttpRequest) -> &str {
    req.match_info().as_str()
}

/// The refusal of a request over its client's budget, checked before it is
/// routed; `None` lets it through.
pub fn check(req: &ServiceRequest) -> Option<HttpResponse> {
    let path = routed_path(req.request());
    match (limit_for(path), req.app_data::<web::Data<AppState>>()) {
        // All off (a load test): not even the client's address is worked out.
        (Some(limit), Some(state)) if !state.rate_limits.is_off() => {
            request::client_ip(req.request()).and_then(|ip| {
                state
                    .rate_limits
                    .check(limit, redeems_tokens(path), ip)
                    .err()
                    .map(|refusal| refuse(req.request(), state, refusal).error_response())
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limited_paths() {
        for path in [
            "/bridge/start",
            "/bridge/issue",
            "/bridge/accept",
            "/bridge/frame",
            "/bridge/exchange",
        ] {
            assert_eq!(limit_for(path), Some(Limit::Bridge), "{path}");
        }
        for path in ["/api/v1", "/api/v1/sessions", "/api/v1/sessions/x"] {
            assert_eq!(limit_for(path), Some(Limit::Api), "{path}");
        }
        for path in [
            "/bridge/session",
            "/bridge/jwks.json",
            "/bridge/session-bridge.js",
            "/healthz",
            "/metrics",
            "/api/v10",
            "/login",
        ] {
            assert_eq!(limit_for(path), None, "{path}");
        }
        assert!(redeems_tokens("/bridge/accept") && redeems_tokens("/bridge/exchange"));
        assert!(!redeems_tokens("/bridge/issue"));
    }

    #[test]
    fn only_the_clients_token_failures_count() {
        assert!(is_token_refusal(&FlowError::Token(TokenError::Malformed)));
        assert!(is_token_refusal(&FlowError::Replayed));
        assert!(is_token_refusal(&FlowError::StateMissing));
        assert!(!is_token_refusal(&FlowError::Token(
            TokenError::SigningFailed
        )));
        assert!(!is_token_refusal(&FlowError::Session(
            crate::sessions::SessionError::Busy
        )));
    }
}
