//! Security headers on every response the app makes, error answers and
//! `404`s included.
//!
//! - `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`
//!   everywhere.
//! - `Cache-Control: no-store` everywhere, except the successful answers of
//!   the two resources DESIGN lets caches keep: the handshake script and
//!   `/bridge/jwks.json`.
//! - A charset on every text type a handler forgot to give one.
//! - A CSP on every answer: the page's own (a nonce for its inline script)
//!   or one that allows no script at all; `X-Frame-Options: DENY` with it
//!   unless the CSP names who may frame the page.
//! - `Cross-Origin-Opener-Policy` on HTML pages (see [`coop_for`]).
//! - `Strict-Transport-Security` only on answers to HTTPS requests.

use super::request;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// The CSP of pages that set none themselves: no script at all.
const DEFAULT_HTML_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The CSP of everything that is not a page (JSON, scripts, styles): should a
/// browser ever render one as a document, it may load and run nothing.
const DEFAULT_OTHER_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";
/// One year; no `includeSubDomains`: the bridge shares its hosts with the
/// sites it serves and cannot speak for their other subdomains.
const HSTS: &str = "max-age=31536000";

const COOP: HeaderName = HeaderName::from_static("cross-origin-opener-policy");

/// Paths whose successful answers may be cached (DESIGN: the handshake
/// script and the JWKS).
fn is_cacheable(path: &str) -> bool {
    matches!(
        path,
        "/bridge/jwks.json" | "/bridge/session-bridge.js" | "/bridge/session-bridge.mjs"
    )
}

/// The opener policy of the page at `path`.
///
/// `same-origin-allow-popups` everywhere: no cross-origin page that opened
/// one of ours keeps a handle on it, and the popups our pages open (the
/// demo's flow B popup) keep theirs. The exception is `/bridge/frame`: in
/// the popup path it is opened by the partner's page, a cross-origin
/// opener, and must `postMessage` to `window.opener`. Any policy other than
/// `unsafe-none` on a document opened cross-origin puts it in a new
/// browsing context group and severs `window.opener` (the popup would look
/// closed to the script). The frame page's protection is its CSP
/// (`frame-ancestors` of the partner's origins only) and the exact target
/// origin of its one message; as an iframe, COOP would not apply anyway.
/// Its error answers get the same policy, so a refused popup stays visible
/// to the script until it times out, rather than looking closed.
///
/// The demo's `/embed` stands for a partner's own page, whose headers are
/// the partner's business: it keeps `unsafe-none`, the worst case the
/// handshake script must survive (a cross-site opener holding a handle and
/// posting forged messages, which the browser tests do).
pub fn coop_for(path: &str) -> &'static str {
    if path == "/bridge/frame" || path == "/embed" {
        "unsafe-none"
    } else {
        "same-origin-allow-popups"
    }
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Text types (and JavaScript, which browsers decode as text) without a
/// charset get `utf-8`, the only encoding the bridge writes.
fn with_charset(content_type: &str) -> Option<String> {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let textual = essence.starts_with("text/")
        || matches!(
            essence.as_str(),
            "application/javascript" | "application/ecmascript"
        );
    let has_charset = content_type
        .split(';')
        .skip(1)
        .any(|p| p.trim().to_ascii_lowercase().starts_with("charset="));
    (textual && !has_charset).then(|| format!("{content_type}; charset=utf-8"))
}

/// What the headers of a request's answer depend on, taken from the
/// request before it is handled (the handler consumes it).
pub struct SecurityHeaders {
    cacheable: bool,
    https: bool,
    coop: &'static str,
}

impl SecurityHeaders {
    pub fn of(req: &ServiceRequest) -> Self {
        Self {
            cacheable: is_cacheable(req.path()),
            https: request::is_https(req.request()),
            coop: coop_for(req.path()),
        }
    }

    /// Sets the headers on `response` (see the module notes).
    pub fn apply<B>(&self, response: &mut ServiceResponse<B>) {
        let status = response.status();
        let keep_cache = self.cacheable
            && (status.is_success() || status == actix_web::http::StatusCode::NOT_MODIFIED);
        let headers = response.headers_mut();
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        if !keep_cache {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        if self.https {
            headers.insert(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static(HSTS),
            );
        }
        let kind = content_type(headers);
        if let Some(fixed) = kind.as_deref().and_then(with_charset)
            && let Ok(value) = HeaderValue::from_str(&fixed)
        {
            headers.insert(header::CONTENT_TYPE, value);
        }
        let is_html = kind
            .as_deref()
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/html"));
        if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
            let csp = if is_html {
                DEFAULT_HTML_CSP
            } else {
                DEFAULT_OTHER_CSP
            };
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(csp),
            );
        }
        if is_html {
            // Pages that may not be framed say so twice; the flow B frame page
            // names its allowed ancestors in its CSP instead.
            let framable = headers
                .get(header::CONTENT_SECURITY_POLICY)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|csp| !csp.contains("frame-ancestors 'none'"));
            if !framable {
                headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            }
            headers.insert(COOP, HeaderValue::from_static(self.coop));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_types_get_a_charset_once() {
        assert_eq!(
            with_charset("text/html").as_deref(),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(
            with_charset("application/javascript").as_deref(),
            Some("application/javascript; charset=utf-8")
        );
        assert_eq!(with_charset("text/plain; charset=utf-8"), None);
        assert_eq!(
            with_charset("text/plain; version=0.0.4; Charset=UTF-8"),
            None
        );
        assert_eq!(with_charset("application/json"), None);
        assert_eq!(with_charset("application/problem+json"), None);
    }

    #[test]
    fn only_the_frame_page_keeps_its_opener() {
        assert_eq!(coop_for("/bridge/frame"), "unsafe-none");
        assert_eq!(coop_for("/embed"), "unsafe-none");
        for path in ["/", "/login", "/bridge/issue", "/admin/audit", "/nope"] {
            assert_eq!(coop_for(path), "same-origin-allow-popups", "{path}");
        }
    }
}
