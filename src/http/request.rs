//! Reading requests: which site, which parameters, which cookies; and the
//! cookies the bridge sets.

use super::error::HttpError;
use crate::audit::RequestContext;
use crate::flows::ResponseMode;
use crate::store::SessionId;
use crate::topology::{Origin, SameSite, Scheme, Site, Topology};
use actix_web::cookie::{Cookie, SameSite as CookieSameSite, time::Duration as CookieDuration};
use actix_web::http::header;
use actix_web::{HttpRequest, web};
use std::borrow::Cow;
use std::sync::Arc;
use url::form_urlencoded;

/// The state cookie of flow A (`__Host-`: Secure, Path=/, no Domain, so no
/// other host can plant or read it).
pub const STATE_COOKIE: &str = "__Host-sb-state";
/// Lifetime of the state cookie, seconds (at most 300).
pub const STATE_MAX_AGE: i64 = 300;

/// The site and origin of the request: its `Host` (or the HTTP/2
/// authority; never `X-Forwarded-Host`) and its scheme, from the listener or
/// from a trusted proxy's `X-Forwarded-Proto` ([`is_https`]).
///
/// Security: the scheme must be the configured origin's. A site configured
/// for `https://` never answers a request that reached the bridge over
/// plain HTTP: its tokens, state cookie and session cookie would cross the
/// network in clear, and a `Secure` cookie set on such an answer would have
/// come from a page an on-path attacker could write. (Each host has one
/// scheme: the topology refuses the same authority twice.)
pub fn site_of(req: &HttpRequest, topology: &Topology) -> Result<(Arc<Site>, Origin), HttpError> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("");
    let (site, origin) = topology
        .site_and_origin_for_host(host)
        .ok_or_else(|| HttpError::unknown_host(req))?;
    let https = is_https(req);
    if (origin.scheme() == Scheme::Https) != https {
        return Err(HttpError::scheme_mismatch(origin, https, req));
    }
    Ok((Arc::clone(site), origin.clone()))
}

/// Query or form parameters, each name at most once: a repeated name is
/// refused rather than resolved by first-wins or last-wins. Values borrow
/// from the request where no decoding was needed (a token never needs any).
#[derive(Debug, Default)]
pub struct Params<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

/// Up to this many parameters, duplicates are found by comparing every
/// pair; past it, by sorting (a hostile query of thousands of names stays
/// O(n log n)).
const PAIRWISE_LIMIT: usize = 16;

impl<'a> Params<'a> {
    pub fn parse(encoded: &'a [u8], req: &HttpRequest) -> Result<Self, HttpError> {
        let pairs: Vec<_> = form_urlencoded::parse(encoded).collect();
        let duplicate = if pairs.len() <= PAIRWISE_LIMIT {
            pairs
                .iter()
                .enumerate()
                .find(|(i, (name, _))| pairs[..*i].iter().any(|(seen, _)| seen == name))
                .map(|(_, (name, _))| name.clone())
        } else {
            let mut names: Vec<&Cow<'_, str>> = pairs.iter().map(|(name, _)| name).collect();
            names.sort_unstable();
            names
                .windows(2)
                .find(|pair| pair[0] == pair[1])
                .map(|pair| pair[0].clone())
        };
        match duplicate {
            Some(name) => Err(HttpError::duplicate_parameter(&name, req)),
            None => Ok(Self(pairs)),
        }
    }

    pub fn query(req: &'a HttpRequest) -> Result<Self, HttpError> {
        Self::parse(req.query_string().as_bytes(), req)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_ref())
    }

    pub fn require(&self, name: &'static str, req: &HttpRequest) -> Result<&str, HttpError> {
        self.get(name).ok_or_else(|| {
            HttpError::bad_request(
                "invalid_request",
                format!("the parameter `{name}` is missing"),
                req,
            )
        })
    }
}

/// Who is asking, for the audit trail.
pub fn context(req: &HttpRequest) -> RequestContext {
    RequestContext {
        ip: client_ip(req).map(|ip| ip.to_string()).unwrap_or_default(),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .chars()
            .take(256)
            .collect(),
        request_id: super::observe::request_id(req),
    }
}

/// The client's address: the socket's peer, or — only when the peer is a
/// configured trusted proxy — the rightmost `X-Forwarded-For` entry that is
/// not itself a trusted proxy (entries further left are the client's to forge).
pub fn client_ip(req: &HttpRequest) -> Option<std::net::IpAddr> {
    let peer = req.peer_addr()?.ip();
    let trusted = req
        .app_data::<web::Data<super::AppState>>()
        .map(|state| state.trusted_proxies.as_slice())
        .unwrap_or_default();
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok());
    Some(client_ip_from(peer, trusted, forwarded))
}

/// [`client_ip`] of a request from `peer` with these `X-Forwarded-For`
/// header values. Addresses are compared canonically: on a dual-stack
/// listener an IPv4 peer shows up as `::ffff:a.b.c.d`, and must still match
/// a proxy listed as `a.b.c.d` (`trusted` is canonical, see `app::prepare`).
fn client_ip_from<'a>(
    peer: std::net::IpAddr,
    trusted: &[std::net::IpAddr],
    forwarded: impl Iterator<Item = &'a str>,
) -> std::net::IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.iter().rev() {
        match hop.parse::<std::net::IpAddr>().map(|ip| ip.to_canonical()) {
            Ok(ip) if trusted.contains(&ip) => continue,
            Ok(ip) => return ip,
            // A malformed hop: stop believing the header here.
            Err(_) => return peer,
        }
    }
    peer
}

/// Whether `peer` is one of the `trusted` proxies (canonically compared,
/// as in [`client_ip_from`]).
fn is_trusted_proxy(peer: std::net::IpAddr, trusted: &[std::net::IpAddr]) -> bool {
    trusted.contains(&peer.to_canonical())
}

/// The value of the first cookie called `name` in `Cookie` header values
/// (RFC 6265 §5.4: `name=value` pairs separated by `;`, in as many headers
/// as HTTP/2 splits them into).
///
/// Lenient where it cannot hurt: a pair without `=`, a header that is not
/// UTF-8, or an odd value in some other cookie (other code on the same
/// host may set those) never hides this one. Strict where it matters:
/// names match exactly, the first pair with the name wins (browsers send
/// the most specific cookie first), and nothing is percent-decoded: the
/// values the bridge sets are base64url and never need it.
pub fn cookie_value<'a, I>(cookie_headers: I, name: &str) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let value = cookie_headers
        .into_iter()
        .flat_map(|header| header.split(|&b| b == b';'))
        .find_map(|pair| {
            let at = pair.iter().position(|&b| b == b'=')?;
            let (pair_name, value) = (pair[..at].trim_ascii(), pair[at + 1..].trim_ascii());
            (pair_name == name.as_bytes()).then_some(value)
        })?;
    std::str::from_utf8(value).ok()
}

/// The value of the request's cookie `name` (see [`cookie_value`]).
pub fn cookie<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    cookie_value(
        req.headers()
            .get_all(header::COOKIE)
            .map(|value| value.as_bytes()),
        name,
    )
}

/// The session ID in a site's cookie named `name`, if it has the right
/// shape; from raw `Cookie` header values.
pub fn session_id_from_cookie_headers<'a, I>(cookie_headers: I, name: &str) -> Option<SessionId>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    cookie_value(cookie_headers, name).and_then(SessionId::parse)
}

/// The session ID in this site's cookie, if it has the right shape.
pub fn session_from_cookie(req: &HttpRequest, site: &Site) -> Option<SessionId> {
    session_id_from_cookie_headers(
        req.headers()
            .get_all(header::COOKIE)
            .map(|value| value.as_bytes()),
        &site.cookie.name,
    )
}

fn same_site(value: SameSite) -> CookieSameSite {
    match value {
        SameSite::Strict => CookieSameSite::Strict,
        SameSite::Lax => CookieSameSite::Lax,
        SameSite::None => CookieSameSite::None,
    }
}

/// The site's session cookie holding `id`, and nothing else.
pub fn session_cookie(site: &Site, id: &SessionId) -> Cookie<'static> {
    let mut cookie = Cookie::build(site.cookie.name.clone(), id.expose().to_owned())
        .path("/")
        .http_only(true)
        .secure(site.cookie.secure)
        .same_site(same_site(site.cookie.same_site))
        .finish();
    if let Some(domain) = &site.cookie.domain {
        cookie.set_domain(domain.clone());
    }
    cookie
}

/// Removes the site's session cookie.
pub fn clear_session_cookie(site: &Site) -> Cookie<'static> {
    let mut cookie = session_cookie(site, &SessionId::from_generated(String::new()));
    cookie.make_removal();
    cookie
}

/// The flow A state cookie. `form_post` needs `SameSite=None`: the token
/// arrives by a cross-site POST, which carries no `Lax` cookie.
pub fn state_cookie(value: String, mode: ResponseMode) -> Cookie<'static> {
    let site = match mode {
        ResponseMode::Query => CookieSameSite::Lax,
        ResponseMode::FormPost => CookieSameSite::None,
    };
    Cookie::build(STATE_COOKIE, value)
        .path("/")
        .http_only(true)
        .secure(true)
        .same_site(site)
        .max_age(CookieDuration::seconds(STATE_MAX_AGE))
        .finish()
}

/// Removes the state cookie (a hand-off uses it once).
pub fn clear_state_cookie() -> Cookie<'static> {
    let mut cookie = state_cookie(String::new(), ResponseMode::FormPost);
    cookie.make_removal();
    cookie
}

/// Whether the request's `Content-Type` is `essence` (case-insensitive,
/// parameters such as `charset` allowed).
pub fn has_content_type(req: &HttpRequest, essence: &str) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(essence))
}

/// Reads a request body of at most `limit` bytes; more is refused with
/// `413`. The whole body must arrive within `[server] body_timeout`, else
/// `408`: a client trickling bytes would otherwise hold a worker's
/// connection for as long as it likes.
pub async fn read_body(
    payload: web::Payload,
    limit: usize,
    req: &HttpRequest,
) -> Result<web::Bytes, HttpError> {
    let timeout = req
        .app_data::<web::Data<super::AppState>>()
        .map(|state| state.limits.body_timeout)
        .unwrap_or_else(|| super::limits::Limits::default().body_timeout);
    match tokio::time::timeout(timeout, payload.to_bytes_limited(limit)).await {
        Ok(Ok(Ok(bytes))) => Ok(bytes),
        Ok(Ok(Err(_))) => Err(HttpError::bad_request(
            "invalid_request",
            "the request body could not be read",
            req,
        )),
        Ok(Err(_)) => Err(HttpError::payload_too_large(limit, req)),
        Err(_) => Err(HttpError::body_timeout(req)),
    }
}

/// Whether the request came over HTTPS: a TLS listener, or a trusted
/// proxy's `X-Forwarded-Proto`. Only the last value counts (the one the
/// proxy next to the bridge wrote); anything else, or the header from any
/// other peer, means plain HTTP.
pub fn is_https(req: &HttpRequest) -> bool {
    if req.app_config().secure() {
        return true;
    }
    let Some(peer) = req.peer_addr().map(|a| a.ip()) else {
        return false;
    };
    let trusted = req
        .app_data::<web::Data<super::AppState>>()
        .is_some_and(|state| is_trusted_proxy(peer, &state.trusted_proxies));
    if !trusted {
        return false;
    }
    req.headers()
        .get_all("x-forwarded-proto")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next_back()
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// Whether a state-changing request comes from the site's own pages.
///
/// `Sec-Fetch-Site` decides when the browser sends it. Otherwise `Origin`
/// must be one of the site's origins. Pages served with
/// `Referrer-Policy: no-referrer` make browsers send `Origin: null` on their
/// own form posts, so `null` is only trusted together with
/// `Sec-Fetch-Site: same-origin`. A request with neither header is not from
/// a browser and passes (browsers always send one on a cross-origin POST).
pub fn is_same_origin_request(req: &HttpRequest, site: &Site) -> bool {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let origin = header("origin");
    let own_origin = |origin: &str| site.origins.iter().any(|o| o.to_string() == origin);
    // An Origin that names another site is refused whatever else is sent.
    if origin.is_some_and(|o| o != "null" && !own_origin(o)) {
        return false;
    }
    if let Some(fetch_site) = header("sec-fetch-site") {
        return fetch_site == "same-origin";
    }
    match origin {
        Some(origin) => own_origin(origin),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies_match_on_a_dual_stack_listener() {
        let ip = |text: &str| text.parse::<std::net::IpAddr>().unwrap();
        let trusted = [ip("10.0.0.2")];
        let mapped_proxy = ip("::ffff:10.0.0.2");
        assert!(is_trusted_proxy(mapped_proxy, &trusted));
        assert!(is_trusted_proxy(ip("10.0.0.2"), &trusted));
        assert!(!is_trusted_proxy(ip("::ffff:10.0.0.3"), &trusted));
        // Through the proxy: the rightmost hop it did not write, canonical.
        let hops = ["198.51.100.1, ::ffff:203.0.113.7"];
        assert_eq!(
            client_ip_from(mapped_proxy, &trusted, hops.into_iter()),
            ip("203.0.113.7")
        );
        // Not through a proxy: the peer itself, canonical; its header ignored.
        assert_eq!(
            client_ip_from(ip("::ffff:192.0.2.9"), &trusted, hops.into_iter()),
            ip("192.0.2.9")
        );
        // A trusted hop inside the header is skipped; a malformed one ends it.
        let hops = ["203.0.113.7", "::ffff:10.0.0.2"];
        assert_eq!(
            client_ip_from(mapped_proxy, &trusted, hops.into_iter()),
            ip("203.0.113.7")
        );
        assert_eq!(
            client_ip_from(mapped_proxy, &trusted, ["203.0.113.7, junk"].into_iter()),
            ip("10.0.0.2")
        );
    }

    fn parsed(query: &str) -> Result<Vec<(String, String)>, String> {
        let req = actix_web::test::TestRequest::default().to_http_request();
        Params::parse(query.as_bytes(), &req)
            .map(|p| {
                p.0.into_iter()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .map_err(|e| e.code.to_owned())
    }

    #[test]
    fn a_repeated_parameter_is_refused_however_many_there_are() {
        assert_eq!(
            parsed("a=1&b=%2F+x").unwrap(),
            [("a".into(), "1".into()), ("b".into(), "/ x".into())]
        );
        assert_eq!(
            parsed("token=x&to=y&token=x").unwrap_err(),
            "duplicate_parameter"
        );
        // Past the pairwise limit, found by sorting; encoded names compare decoded.
        let many: Vec<String> = (0..40).map(|i| format!("p{i}=v")).collect();
        let unique = many.join("&");
        assert_eq!(parsed(&unique).unwrap().len(), 40);
        assert_eq!(
            parsed(&format!("{unique}&p%317=again")).unwrap_err(),
            "duplicate_parameter"
        );
        let req = actix_web::test::TestRequest::default().to_http_request();
        let params = Params::parse(b"to=shop&mode=", &req).unwrap();
        assert_eq!(params.get("to"), Some("shop"));
        assert_eq!(params.get("mode"), Some(""));
        assert_eq!(params.get("nope"), None);
    }

    fn value<'a>(headers: &[&'a str], name: &str) -> Option<&'a str> {
        cookie_value(headers.iter().map(|h| h.as_bytes()), name)
    }

    #[test]
    fn cookie_values_as_browsers_send_them() {
        let id = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let header = format!("_ga=GA1.2; __Host-sb={id};theme=dark");
        assert_eq!(value(&[&header], "__Host-sb"), Some(id));
        assert_eq!(value(&[&header], "theme"), Some("dark"));
        // HTTP/2 may split the header; the first pair with the name wins.
        assert_eq!(value(&["a=1", "sb=2; sb=3"], "sb"), Some("2"));
        // Names match exactly; nothing is percent-decoded.
        assert_eq!(value(&["SB=1; sb%41=2"], "sb"), None);
        assert_eq!(value(&["sb=%41"], "sb"), Some("%41"));
        assert_eq!(value(&["sb="], "sb"), Some(""));
    }

    #[test]
    fn odd_neighbours_do_not_hide_a_cookie() {
        // A nameless cookie (`document.cookie = "x"`), an empty pair, a
        // quoted value, another cookie that is not UTF-8 (actix's own
        // parser drops every cookie of the request for that one).
        let id = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let header = format!("nameless; ; =x; q=\"a b\"; __Host-sb={id}");
        assert_eq!(value(&[&header], "__Host-sb"), Some(id));
        let ours = format!("__Host-sb={id}");
        let headers = [b"x=\xff".as_slice(), ours.as_bytes()];
        assert_eq!(
            session_id_from_cookie_headers(headers, "__Host-sb").map(|s| s.expose().to_owned()),
            Some(id.to_owned())
        );
    }
}
