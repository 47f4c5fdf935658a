//! One error type for HTTP with two faces: an HTML page for browsers and
//! `application/problem+json` (RFC 9457) for API callers. It never carries a
//! token, a session ID or an internal message.

use crate::flows::FlowError;
use crate::sessions::SessionError;
use crate::store::StoreError;
use crate::topology::Origin;
use actix_web::body::BoxBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use askama::Template;
use std::fmt;

/// An error answer.
#[derive(Debug)]
pub struct HttpError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub json: bool,
    /// Shown to the user so they can quote it to support.
    pub request_id: String,
    /// Seconds for `Retry-After` (a `429`).
    pub retry_after: Option<u64>,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    code: &'a str,
    detail: &'a str,
    retry: bool,
    request_id: &'a str,
}

/// Whether the caller wants JSON: `/api` paths always, others when `Accept`
/// asks for JSON rather than HTML.
pub fn wants_json(req: &HttpRequest) -> bool {
    if req.path().starts_with("/api/") {
        return true;
    }
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    (accept.contains("application/json") || accept.contains("application/problem+json"))
        && !accept.contains("text/html")
}

impl HttpError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        detail: impl Into<String>,
        req: &HttpRequest,
    ) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            json: wants_json(req),
            request_id: super::observe::request_id(req),
            retry_after: None,
        }
    }

    /// The client is over a rate limit (`[limits]`); it may try again in
    /// `retry_after` seconds.
    pub fn rate_limited(retry_after: u64, req: &HttpRequest) -> Self {
        let unit = if retry_after == 1 {
            "second"
        } else {
            "seconds"
        };
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests from your address; try again in {retry_after} {unit}"),
                req,
            )
        }
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>, req: &HttpRequest) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail, req)
    }

    pub fn not_found(req: &HttpRequest) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "there is nothing here",
            req,
        )
    }

    pub fn unknown_host(req: &HttpRequest) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "site_unknown",
            "this bridge serves no site at this host",
            req,
        )
    }

    /// The `Host` is a site's, but the request came over the other scheme
    /// (see [`super::request::site_of`]): no site answers at this origin.
    pub fn scheme_mismatch(configured: &Origin, came_over_https: bool, req: &HttpRequest) -> Self {
        let message = if came_over_https {
            format!(
                "this bridge serves {configured} over plain HTTP only; a site served over \
                 HTTPS is configured with its https:// origin"
            )
        } else {
            format!(
                "this bridge serves {configured}, not over plain HTTP; behind a proxy that \
                 terminates TLS, list the proxy in [server] trusted_proxies so that its \
                 X-Forwarded-Proto counts"
            )
        };
        Self::new(StatusCode::NOT_FOUND, "site_unknown", message, req)
    }

    /// The request target is longer than `[server] max_uri_bytes`.
    pub fn uri_too_long(limit: usize, req: &HttpRequest) -> Self {
        Self::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request target is longer than {limit} bytes"),
            req,
        )
    }

    /// The header section is larger than `[server] max_header_bytes`.
    pub fn headers_too_large(limit: usize, req: &HttpRequest) -> Self {
        Self::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!("the request headers are larger than {limit} bytes"),
            req,
        )
    }

    /// The body is larger than the endpoint reads.
    pub fn payload_too_large(limit: usize, req: &HttpRequest) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than {limit} bytes"),
            req,
        )
    }

    /// The body did not arrive within `[server] body_timeout`.
    pub fn body_timeout(req: &HttpRequest) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request body did not arrive in time",
            req,
        )
    }

    /// JSON nested deeper than the endpoint accepts.
    pub fn json_too_deep(limit: usize, req: &HttpRequest) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "json_too_deep",
            format!("the JSON body nests arrays and objects deeper than {limit} levels"),
            req,
        )
    }

    /// A parameter given more than once (in one place, or in two).
    pub fn duplicate_parameter(name: &str, req: &HttpRequest) -> Self {
        // The name is the client's text: repeat it only when it looks like
        // a parameter name, never an arbitrary (possibly secret) string.
        let plain = name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        let detail = if plain {
            format!("the parameter `{name}` is given more than once")
        } else {
            "a parameter is given more than once".to_owned()
        };
        Self::bad_request("duplicate_parameter", detail, req)
    }

    pub fn store(e: &StoreError, req: &HttpRequest) -> Self {
        Self::session(&SessionError::Store(e.clone()), req)
    }

    pub fn session(e: &SessionError, req: &HttpRequest) -> Self {
        let status = match e {
            SessionError::Store(StoreError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            SessionError::Store(StoreError::AlreadyExists) | SessionError::Busy => {
                StatusCode::CONFLICT
            }
            SessionError::NotFound => StatusCode::NOT_FOUND,
            SessionError::Store(StoreError::Corrupt(_)) | SessionError::RandomFailed => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        if status.is_server_error() {
            tracing::error!(code = e.code(), error = %e, "request failed");
        }
        let detail = match status {
            StatusCode::SERVICE_UNAVAILABLE => {
                "the session store is unavailable; please try again in a moment".to_owned()
            }
            StatusCode::INTERNAL_SERVER_ERROR => {
                "the bridge could not complete this request".to_owned()
            }
            _ => e.to_string(),
        };
        Self::new(status, e.code(), detail, req)
    }

    pub fn flow(e: &FlowError, req: &HttpRequest) -> Self {
        let status = match e {
            FlowError::Session(inner) => return Self::session(inner, req),
            FlowError::InvalidRequest(_) | FlowError::ReturnTo(_) | FlowError::UnknownSite => {
                StatusCode::BAD_REQUEST
            }
            FlowError::Token(crate::token::TokenError::Malformed) => StatusCode::BAD_REQUEST,
            FlowError::Token(crate::token::TokenError::SigningFailed) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            FlowError::PartnerNotAllowed => StatusCode::FORBIDDEN,
            FlowError::StateMissing => StatusCode::BAD_REQUEST,
            FlowError::NoSession
            | FlowError::Token(_)
            | FlowError::UnknownIssuer
            | FlowError::IssuerMismatch
            | FlowError::BindingMismatch
            | FlowError::Replayed
            | FlowError::UnknownToken => StatusCode::UNAUTHORIZED,
        };
        Self::new(status, e.code(), e.to_string(), req)
    }

    fn title(&self) -> &'static str {
        self.status.canonical_reason().unwrap_or("Error")
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.code)
    }
}

impl ResponseError for HttpError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = self.build_response();
        response
            .extensions_mut()
            .insert(super::observe::ErrorCode(self.code));
        response
    }
}

impl HttpError {
    /// Gives a refusal the framework made itself (a resource's `405`, an
    /// extractor's or `actix-cors`' error) this type's answer: a stable code,
    /// problem+json or the HTML page. Status and headers (`Allow`, `Vary`,
    /// CORS) are kept; the framework's own body and content type are not.
    /// Answers that already carry a code, successes, and deliberate
    /// non-error answers (a `412` problem, `readyz`'s `503`) pass unchanged.
    pub fn shape_framework_refusal(response: ServiceResponse<BoxBody>) -> ServiceResponse<BoxBody> {
        let status = response.status();
        let refusal = status.is_client_error() || status.is_server_error();
        let coded = response
            .response()
            .extensions()
            .get::<super::observe::ErrorCode>()
            .is_some();
        let from_framework =
            response.response().error().is_some() || status == StatusCode::METHOD_NOT_ALLOWED;
        if !refusal || coded || !from_framework {
            return response;
        }
        let cors = response
            .response()
            .error()
            .and_then(|e| e.as_error::<actix_cors::CorsError>())
            .is_some();
        let allow = response
            .headers()
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let (code, detail) = match status {
            _ if cors => (
                "cors_refused",
                "this origin, method or header is not allowed here".to_owned(),
            ),
            StatusCode::METHOD_NOT_ALLOWED => (
                "method_not_allowed",
                format!("this endpoint answers only: {allow}"),
            ),
            StatusCode::NOT_FOUND => ("not_found", "there is nothing here".to_owned()),
            StatusCode::PAYLOAD_TOO_LARGE => (
                "payload_too_large",
                "the request body is too large".to_owned(),
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "unsupported_media_type",
                "the request body has the wrong type".to_owned(),
            ),
            s if s.is_server_error() => {
                if let Some(e) = response.response().error() {
                    tracing::error!(error = %e, "request failed in the framework");
                }
                (
                    "internal_error",
                    "the bridge could not complete this request".to_owned(),
                )
            }
            _ => (
                "invalid_request",
                "the request could not be read".to_owned(),
            ),
        };
        let (req, old) = response.into_parts();
        let mut shaped = ResponseError::error_response(&Self::new(status, code, detail, &req));
        for (name, value) in old.headers() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                shaped.headers_mut().append(name.clone(), value.clone());
            }
        }
        ServiceResponse::new(req, shaped)
    }

    fn build_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        } else if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("2")));
        }
        if self.json {
            let mut body = serde_json::json!({
                "type": format!("urn:session-bridge:error:{}", self.code),
                "title": self.title(),
                "status": self.status.as_u16(),
                "code": self.code,
                "detail": self.detail,
                "request_id": self.request_id,
            });
            if let Some(seconds) = self.retry_after {
                body["retry_after"] = seconds.into();
            }
            return response
                .content_type("application/problem+json")
                .body(body.to_string());
        }
        let page = ErrorPage {
            status: self.status.as_u16(),
            title: self.title(),
            code: self.code,
            detail: &self.detail,
            retry: self.status == StatusCode::SERVICE_UNAVAILABLE || self.retry_after.is_some(),
            request_id: &self.request_id,
        };
        match page.render() {
            Ok(html) => response.content_type("text/html; charset=utf-8").body(html),
            Err(_) => response
                .content_type("text/plain; charset=utf-8")
                .body(self.code),
        }
    }
}
