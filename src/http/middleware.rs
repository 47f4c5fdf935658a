//! The one middleware every request passes through. In order:
//!
//! 1. observation: the request ID, then on the way out metrics and the
//!    access log ([`super::observe`]);
//! 2. security headers, set on every answer, refusals included
//!    ([`super::headers`]);
//! 3. the size limits of the target and the header section
//!    ([`super::limits`]), before
//! 4. the rate limits ([`super::rate_limit`]), so an oversize request is
//!    refused without spending a budget;
//! 5. the framework's own refusals (`405`, extractor and CORS errors) given
//!    the bridge's error answer ([`HttpError::shape_framework_refusal`]).
//!
//! One layer rather than one per concern: each `from_fn` layer boxes the
//! next one's future and maps the body, on every request, and a hand-off is
//! three requests.

use super::error::HttpError;
use super::headers::SecurityHeaders;
use super::observe::Observation;
use super::{limits, rate_limit};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;

pub async fn around(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let observation = Observation::begin(&req);
    let headers = SecurityHeaders::of(&req);
    let refusal = limits::check(&req).or_else(|| rate_limit::check(&req));
    let mut response = match refusal {
        Some(refusal) => req.into_response(refusal),
        None => HttpError::shape_framework_refusal(next.call(req).await?.map_into_boxed_body()),
    };
    headers.apply(&mut response);
    observation.finish(&mut response);
    Ok(response)
}
