//! Input limits, method and parameter refusals, and security headers, over
//! real HTTP: `reqwest` where it will send the request, raw `TcpStream`
//! where it will not (oversize heads, trickled bytes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod session_support;
mod support;

#[path = "hardening/headers.rs"]
mod headers;
#[path = "hardening/hsts.rs"]
mod hsts;
#[path = "hardening/limits.rs"]
mod limits;
#[path = "hardening/refusals.rs"]
mod refusals;
#[path = "hardening/scheme.rs"]
mod scheme;
#[path = "hardening/slow.rs"]
mod slow;
#[path = "hardening/wire.rs"]
mod wire;

use support::browser::Page;
use wire::Raw;

/// The headers of `page` as the security-header check wants them.
fn check_page(what: &str, page: &Page) {
    let path = page.url.path().to_owned();
    assert_security_headers(what, &path, page.status.as_u16(), |name| {
        page.header(name).map(str::to_owned)
    });
}

fn check_raw(what: &str, path: &str, raw: &Raw) {
    assert_security_headers(what, path, raw.status, |name| {
        raw.header(name).map(str::to_owned)
    });
}

/// A refusal in the bridge's error shape: `status`, `code`, HTML for a
/// browser, problem+json for API callers.
fn assert_refusal(what: &str, raw: &Raw, status: u16, code: &str, json: bool) {
    assert_eq!(raw.status, status, "{what}: {}", raw.body);
    assert_eq!(
        raw.error_code().as_deref(),
        Some(code),
        "{what}: {}",
        raw.body
    );
    let kind = raw.header("content-type").unwrap_or_default();
    if json {
        assert_eq!(kind, "application/problem+json", "{what}");
    } else {
        assert_eq!(kind, "text/html; charset=utf-8", "{what}");
    }
    assert!(raw.header("x-request-id").is_some(), "{what}");
}

/// Paths whose successful answers may be cached (DESIGN).
pub fn cacheable(path: &str) -> bool {
    matches!(
        path,
        "/bridge/jwks.json" | "/bridge/session-bridge.js" | "/bridge/session-bridge.mjs"
    )
}

/// The security headers every answer must carry (over plain HTTP).
/// `header` looks a response header up; `what` names the request in failures.
pub fn assert_security_headers(
    what: &str,
    path: &str,
    status: u16,
    header: impl Fn(&str) -> Option<String>,
) {
    assert_eq!(
        header("x-content-type-options").as_deref(),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(
        header("referrer-policy").as_deref(),
        Some("no-referrer"),
        "{what}"
    );
    assert!(status < 500, "{what}: {status}");
    let cache = header("cache-control");
    let under_bridge = ["/bridge", "/api"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")));
    let may_cache = cacheable(path) && ((200..300).contains(&status) || status == 304);
    if under_bridge && !may_cache {
        assert_eq!(cache.as_deref(), Some("no-store"), "{what}");
    }
    if may_cache {
        assert!(
            cache.as_deref().is_some_and(|c| c.contains("max-age")),
            "{what}: {cache:?}"
        );
    }
    if let Some(kind) = header("content-type") {
        let lower = kind.to_ascii_lowercase();
        if lower.starts_with("text/") || lower.contains("javascript") {
            assert!(lower.contains("charset=utf-8"), "{what}: {kind}");
        }
        if lower.starts_with("text/html") {
            let csp = header("content-security-policy").unwrap_or_default();
            assert!(csp.contains("default-src 'none'"), "{what}: {csp}");
            assert!(csp.contains("base-uri 'none'"), "{what}: {csp}");
            if csp.contains("script-src") {
                assert!(
                    csp.contains("'nonce-") || csp.contains("script-src 'self'"),
                    "{what}: {csp}"
                );
                assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
            }
            // The frame page (opened by partners as a popup) and the demo's
            // stand-in for a partner's page keep their openers.
            let coop = if path == "/bridge/frame" || path == "/embed" {
                "unsafe-none"
            } else {
                "same-origin-allow-popups"
            };
            assert_eq!(
                header("cross-origin-opener-policy").as_deref(),
                Some(coop),
                "{what}"
            );
        }
    }
    if status != 304 && status != 204 && !(300..400).contains(&status) {
        assert!(header("content-type").is_some(), "{what}: no content type");
    }
    assert!(
        header("content-security-policy").is_some(),
        "{what}: no CSP"
    );
    assert_eq!(
        header("strict-transport-security"),
        None,
        "{what}: HSTS over HTTP"
    );
}
