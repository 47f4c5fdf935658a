//! What a client may send, and how slowly: the request target, the header
//! section, bodies, JSON nesting and the time allowed for each.
//!
//! actix-http refuses a request head over 128 KiB (or with more than 96
//! headers) itself, with a bare `431` before any of this code runs; the
//! configurable limits here sit below that, so a normal oversize request
//! gets the bridge's own error answer, with the right status (`414` for the
//! target, `431` for the headers).

use super::AppState;
use super::error::HttpError;
use crate::config::ServerConfig;
use actix_web::dev::ServiceRequest;
use actix_web::{HttpResponse, web};
use std::time::Duration;

/// Largest form body (`POST /bridge/accept`): a token is at most about
/// 4 KiB (its `rt` claim holds a `return_to` of at most 2 KiB).
pub const FORM_BODY_LIMIT: usize = 16 * 1024;
/// Largest JSON body of the bridge's own endpoints (`POST /bridge/exchange`).
pub const JSON_BODY_LIMIT: usize = 16 * 1024;
/// Largest JSON body of the service API: a session's whole `data`
/// ([`crate::sessions::MAX_DATA_BYTES`]) and room for the other members
/// and escapes, so the data limit, not the body limit, is what callers meet.
pub const API_BODY_LIMIT: usize = crate::sessions::MAX_DATA_BYTES + 4 * 1024;
/// Deepest nesting of a session's `data`, the object itself being level 1.
/// Far below `serde_json`'s own limit (128) on purpose: a stored session
/// wraps `data` in its record, and a record nested past the parser's limit
/// could be written but never read back.
pub const MAX_DATA_DEPTH: usize = 32;

/// actix-http's own ceiling for a request head; a configured limit above it
/// could never be reached.
const CODEC_HEAD_LIMIT: usize = 128 * 1024;
/// The smallest limits that still let every bridge request through.
const MIN_URI_BYTES: usize = 1024;
const MIN_HEADER_BYTES: usize = 4 * 1024;

/// The limits in force, from `[server]`.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_uri_bytes: usize,
    pub max_header_bytes: usize,
    pub request_timeout: Duration,
    pub body_timeout: Duration,
    /// `None`: keep-alive off.
    pub keep_alive: Option<Duration>,
    pub disconnect_timeout: Duration,
}

/// The defaults of `[server]`, unchecked (they are within range); for
/// requests that reach the code without an [`AppState`], as in unit tests.
impl Default for Limits {
    fn default() -> Self {
        let server = ServerConfig::default();
        Self {
            max_uri_bytes: server.max_uri_bytes,
            max_header_bytes: server.max_header_bytes,
            request_timeout: server.request_timeout.as_duration(),
            body_timeout: server.body_timeout.as_duration(),
            keep_alive: Some(server.keep_alive.as_duration()),
            disconnect_timeout: server.disconnect_timeout.as_duration(),
        }
    }
}

impl Limits {
    /// Checks `[server]` and takes its limits; the message names the key.
    pub fn from_config(server: &ServerConfig) -> Result<Self, String> {
        let within = |key: &str, value: usize, min: usize| {
            if (min..=CODEC_HEAD_LIMIT).contains(&value) {
                Ok(value)
            } else {
                Err(format!(
                    "[server] {key} = {value}: must be between {min} and {CODEC_HEAD_LIMIT} bytes"
                ))
            }
        };
        let positive = |key: &str, value: crate::config::Seconds| {
            if value.get() > 0 {
                Ok(value.as_duration())
            } else {
                // A zero timeout would mean no timeout: a slow client could
                // hold a connection forever.
                Err(format!("[server] {key} must be at least 1s"))
            }
        };
        Ok(Self {
            max_uri_bytes: within("max_uri_bytes", server.max_uri_bytes, MIN_URI_BYTES)?,
            max_header_bytes: within(
                "max_header_bytes",
                server.max_header_bytes,
                MIN_HEADER_BYTES,
            )?,
            request_timeout: positive("request_timeout", server.request_timeout)?,
            body_timeout: positive("body_timeout", server.body_timeout)?,
            keep_alive: (server.keep_alive.get() > 0).then(|| server.keep_alive.as_duration()),
            disconnect_timeout: positive("disconnect_timeout", server.disconnect_timeout)?,
        })
    }
}

/// Bytes of the request target as sent: path and query.
fn target_len(req: &ServiceRequest) -> usize {
    req.uri()
        .path_and_query()
        .map_or(req.path().len(), |pq| pq.as_str().len())
}

/// Bytes of the header section: each `name: value\r\n`.
fn header_section_len(req: &ServiceRequest) -> usize {
    req.headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

/// The refusal of an oversize target (`414`) or header section (`431`),
/// checked before routing; `None` lets the request through.
pub fn check(req: &ServiceRequest) -> Option<HttpResponse> {
    let state = req.app_data::<web::Data<AppState>>();
    let default;
    let limits = match state {
        Some(state) => &state.limits,
        None => {
            default = Limits::default();
            &default
        }
    };
    let error = if target_len(req) > limits.max_uri_bytes {
        HttpError::uri_too_long(limits.max_uri_bytes, req.request())
    } else if header_section_len(req) > limits.max_header_bytes {
        HttpError::headers_too_large(limits.max_header_bytes, req.request())
    } else {
        return None;
    };
    Some(refusal(&error))
}

/// Answers `error` with a closed connection: what is left of an oversize
/// request is not worth reading.
fn refusal(error: &HttpError) -> HttpResponse {
    let mut response = actix_web::ResponseError::error_response(error);
    response
        .head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    response
}

/// Whether `json` nests arrays and objects deeper than `max`. A byte scan
/// (strings skipped, no recursion), so a hostile body costs one pass and
/// no stack before the parser sees it; malformed JSON is left to the parser.
pub fn json_too_deep(json: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in json {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_arrays_and_objects_outside_strings() {
        assert!(!json_too_deep(br#"{"a":[1,{"b":2}]}"#, 3));
        assert!(json_too_deep(br#"{"a":[1,{"b":[]}]}"#, 3));
        assert!(!json_too_deep(br#"{"a":"[[[[[[{{{{"}"#, 1));
        assert!(!json_too_deep(br#"{"a":"\"[[[[\\"}"#, 1));
        assert!(json_too_deep(br#"{"a":"\\"  ,"b":[[]]}"#, 2));
        assert!(!json_too_deep(b"", 0));
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(json_too_deep(deep.as_bytes(), MAX_DATA_DEPTH));
    }

    #[test]
    fn configured_limits_are_checked() {
        let mut server = ServerConfig::default();
        let limits = Limits::from_config(&server).unwrap();
        assert_eq!(limits.max_uri_bytes, 8192);
        assert_eq!(limits.keep_alive, Some(Duration::from_secs(5)));
        server.keep_alive = crate::config::Seconds::new(0);
        assert_eq!(Limits::from_config(&server).unwrap().keep_alive, None);
        server.max_uri_bytes = 200 * 1024;
        assert!(
            Limits::from_config(&server)
                .unwrap_err()
                .contains("max_uri_bytes")
        );
        server.max_uri_bytes = 8192;
        server.body_timeout = crate::config::Seconds::new(0);
        assert!(
            Limits::from_config(&server)
                .unwrap_err()
                .contains("body_timeout")
        );
    }
}
