//! Small HTTP pieces of the virtual browsers: failures by code, cookies,
//! redirects, and reading the flow B frame page the way its script does.

use actix_web::web::Bytes;
use futures_util::Stream;
use std::net::SocketAddr;
use std::time::Instant;
use url::Url;

/// Largest body a virtual browser reads.
const BODY_LIMIT: usize = 256 * 1024;

/// A failed iteration: its error code, and whether the request that failed
/// may have redeemed a token on the server all the same (it failed in
/// transit, or its answer did), which the double-redemption check allows for.
#[derive(Debug)]
pub struct Failure {
    pub code: String,
    pub uncertain: bool,
}

impl From<String> for Failure {
    fn from(code: String) -> Self {
        Self {
            code,
            uncertain: false,
        }
    }
}

impl From<&str> for Failure {
    fn from(code: &str) -> Self {
        Self::from(code.to_owned())
    }
}

impl Failure {
    /// This failure, on a request that redeems a token.
    pub fn redeeming(mut self) -> Self {
        self.uncertain = true;
        self
    }
}

/// A request that never got an answer.
pub fn transport(error: awc::error::SendRequestError) -> Failure {
    match error {
        awc::error::SendRequestError::Timeout => "timeout".into(),
        _ => "connect".into(),
    }
}

/// `host[:port]` of an origin, for the `Host` header.
pub fn authority(origin: &str) -> Result<String, String> {
    let url = Url::parse(origin).map_err(|_| format!("`{origin}` is not an origin"))?;
    let host = url
        .host_str()
        .ok_or_else(|| format!("`{origin}` has no host"))?;
    Ok(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    })
}

/// `scheme://host[:port]` exactly as a browser sends it in `Origin`.
pub fn serialized_origin(origin: &str) -> Result<String, String> {
    let url = Url::parse(origin).map_err(|_| format!("`{origin}` is not an origin"))?;
    Ok(url.origin().ascii_serialization())
}

/// Microseconds since `since`.
pub fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// The code of an unexpected answer: the problem document's `code`, else
/// `http_<status>`.
pub async fn error_code<S>(mut response: awc::ClientResponse<S>) -> Failure
where
    S: Stream<Item = Result<Bytes, awc::error::PayloadError>> + Unpin,
{
    let status = response.status().as_u16();
    let body = response.body().limit(64 * 1024).await.unwrap_or_default();
    serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("http_{status}"))
        .into()
}

/// Reads the whole body, which also lets the connection be reused.
pub async fn read_body<S>(response: &mut awc::ClientResponse<S>) -> Result<Bytes, Failure>
where
    S: Stream<Item = Result<Bytes, awc::error::PayloadError>> + Unpin,
{
    response
        .body()
        .limit(BODY_LIMIT)
        .await
        .map_err(|_| "body".into())
}

/// The `name=value` of the cookie `name` that the response sets.
pub fn set_cookie<S>(response: &awc::ClientResponse<S>, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    set_cookies(response)
        .into_iter()
        .find(|pair| pair.starts_with(&prefix))
}

/// Every `name=value` the response sets, in order.
pub fn set_cookies<S>(response: &awc::ClientResponse<S>) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(|pair| pair.trim().to_owned())
        .collect()
}

pub fn location<S>(response: &awc::ClientResponse<S>) -> Option<String> {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `http://node/path?query` for an absolute or relative URL (its fragment
/// dropped, as a browser does). Plain string work: the URLs are the
/// bridge's own redirects, and parsing one per request was a measurable
/// part of the load generator's time.
pub fn on_node(node: SocketAddr, url: &str) -> String {
    // Absolute only when `://` comes before any `/`, `?` or `#`.
    let absolute = url
        .find("://")
        .filter(|&at| !url[..at].contains(['/', '?', '#']));
    let target = match absolute.map(|at| &url[at + 3..]) {
        // The authority ends at the first `/`, `?` or `#`.
        Some(after_scheme) => after_scheme
            .find(['/', '?', '#'])
            .map_or("", |at| &after_scheme[at..]),
        None => url,
    };
    let target = target.split_once('#').map_or(target, |(before, _)| before);
    let slash = if target.starts_with('/') { "" } else { "/" };
    format!("http://{node}{slash}{target}")
}

/// The value of the attribute `name="…"` in `html`, HTML entities undone.
fn attribute(html: &str, name: &str) -> Option<String> {
    let marker = format!(" {name}=\"");
    let start = html.find(&marker)? + marker.len();
    let length = html.get(start..)?.find('"')?;
    let raw = html.get(start..start + length)?;
    if !raw.contains('&') {
        return Some(raw.to_owned());
    }
    let mut text = raw.to_owned();
    for (entity, character) in [
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&quot;", "\""),
        ("&#34;", "\""),
        ("&#39;", "'"),
        ("&#x27;", "'"),
        ("&amp;", "&"),
    ] {
        text = text.replace(entity, character);
    }
    Some(text)
}

/// What the frame page would post to its parent, read from the data
/// attributes its script reads (`templates/frame.html`): the token, or the
/// code of `sb:no-session` / `sb:error`.
pub fn frame_token(html: &str) -> Result<String, String> {
    let unreadable = || "frame_unreadable".to_owned();
    match attribute(html, "data-type")
        .ok_or_else(unreadable)?
        .as_str()
    {
        "sb:token" => attribute(html, "data-token")
            .filter(|token| !token.is_empty())
            .ok_or_else(unreadable),
        "sb:no-session" => Err("no_session".to_owned()),
        "sb:error" => Err(attribute(html, "data-code")
            .filter(|code| !code.is_empty())
            .unwrap_or_else(|| "frame_error".to_owned())),
        _ => Err(unreadable()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(kind: &str, token: &str, code: &str) -> String {
        format!(
            r#"<div id="sb" hidden data-target="https://b" data-type="{kind}" data-token="{token}" data-code="{code}" data-popup="false"></div>"#
        )
    }

    #[test]
    fn reads_the_frame_page() {
        assert_eq!(
            frame_token(&page("sb:token", "aaa.bbb.ccc", "")),
            Ok("aaa.bbb.ccc".to_owned())
        );
        assert_eq!(
            frame_token(&page("sb:no-session", "", "")),
            Err("no_session".to_owned())
        );
        assert_eq!(
            frame_token(&page("sb:error", "", "invalid_request")),
            Err("invalid_request".to_owned())
        );
        assert_eq!(
            frame_token(&page("sb:token", "", "")),
            Err("frame_unreadable".to_owned())
        );
        assert_eq!(
            frame_token("<p>nothing</p>"),
            Err("frame_unreadable".to_owned())
        );
        assert_eq!(attribute(r#" a="x&amp;y""#, "a"), Some("x&y".to_owned()));
    }

    #[test]
    fn origins_and_hosts() {
        assert_eq!(
            serialized_origin("http://shop.localhost:8080/").unwrap(),
            "http://shop.localhost:8080"
        );
        assert_eq!(
            authority("http://shop.localhost:8080").unwrap(),
            "shop.localhost:8080"
        );
        let node = "127.0.0.1:1".parse().unwrap();
        assert_eq!(
            on_node(node, "/accept?token=t"),
            "http://127.0.0.1:1/accept?token=t"
        );
        assert_eq!(
            on_node(
                node,
                "http://shop.localhost:8080/bridge/accept?token=a.b.c&x=%2F#frag"
            ),
            "http://127.0.0.1:1/bridge/accept?token=a.b.c&x=%2F"
        );
        assert_eq!(
            on_node(node, "https://shop.localhost"),
            "http://127.0.0.1:1/"
        );
        assert_eq!(
            on_node(node, "/x?u=http://h/"),
            "http://127.0.0.1:1/x?u=http://h/"
        );
        assert_eq!(
            on_node(node, "http://a.localhost?q=1"),
            "http://127.0.0.1:1/?q=1"
        );
    }
}
