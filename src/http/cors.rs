//! CORS for the browser session endpoints (`/bridge/session`,
//! `/bridge/heartbeat`, `/bridge/logout`).
//!
//! The allowed origins depend on the site, and the site on the request's
//! `Host`, so the list is looked up per request. Only an exact, configured
//! origin is reflected (with credentials and `Vary: Origin`); there is no
//! `*`, and `null` can never be configured (see `Origin::parse`).

use super::error::HttpError;
use super::request;
use crate::topology::{Site, Topology};
use actix_cors::Cors;
use actix_web::HttpRequest;
use actix_web::body::MessageBody;
use actix_web::dev::{RequestHead, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use std::sync::Arc;

/// Preflight answers may be cached by browsers this long, in seconds.
const PREFLIGHT_MAX_AGE: usize = 600;

/// CORS for the browser session endpoints: exact origins from the site's
/// `cors_origins`, credentials allowed, `Vary: Origin`, preflights answered
/// with `GET`/`POST` and the headers `Content-Type` and `X-Session-Id`.
pub fn cors(topology: Arc<Topology>) -> Cors {
    Cors::default()
        .allowed_origin_fn(move |origin, head| origin_allowed(&topology, origin, head))
        .allowed_methods([Method::GET, Method::POST])
        .allowed_headers([
            header::CONTENT_TYPE,
            HeaderName::from_static("x-session-id"),
        ])
        .supports_credentials()
        .max_age(PREFLIGHT_MAX_AGE)
}

/// `Vary: Origin` on every answer of a CORS endpoint, refusals of
/// preflights included (`actix-cors` leaves it off its own error answers),
/// so no cache can serve one origin's answer to another.
pub async fn vary_origin(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut response = next.call(req).await?;
    let headers = response.headers_mut();
    let has_origin = headers.get_all(header::VARY).any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|n| n.trim().eq_ignore_ascii_case("origin"))
        })
    });
    if !has_origin {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    Ok(response)
}

/// Whether `origin` is, byte for byte, one of the `cors_origins` of the
/// site that the request's `Host` names. The request's scheme is not
/// compared here: a preflight only says what the real request may carry,
/// and the real request is refused by [`request::site_of`] when its scheme
/// is not the site's.
fn origin_allowed(topology: &Topology, origin: &HeaderValue, head: &RequestHead) -> bool {
    let host = head
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| head.uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    match (topology.site_for_host(host), origin.to_str()) {
        (Some(site), Ok(origin)) => is_cors_origin(site, origin),
        _ => false,
    }
}

fn is_cors_origin(site: &Site, origin: &str) -> bool {
    site.cors_origins.iter().any(|o| o.to_string() == origin)
}

/// State-changing browser endpoints take same-origin requests, and
/// cross-origin ones only from the site's `cors_origins`.
pub fn check_caller(req: &HttpRequest, site: &Site) -> Result<(), HttpError> {
    let from_cors_origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|origin| is_cors_origin(site, origin));
    if from_cors_origin || request::is_same_origin_request(req, site) {
        Ok(())
    } else {
        Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "cross_origin_refused",
            "this endpoint accepts same-origin requests and the site's configured CORS origins only",
            req,
        ))
    }
}
