//! `[server]`: the listener, the workers, the proxies whose forwarding
//! headers are believed, and the limits on what a client may send and how
//! slowly.

use super::Seconds;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Worker threads; 0 means one per core.
    #[serde(default)]
    pub workers: usize,
    /// IP addresses of reverse proxies whose `X-Forwarded-For` and
    /// `X-Forwarded-Proto` are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Longest request target (path and query) in bytes; longer is `414`.
    #[serde(default = "default_max_uri_bytes")]
    pub max_uri_bytes: usize,
    /// Largest header section (names, values and separators) in bytes;
    /// larger is `431`.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Time a new connection has to send a complete request head; then `408`.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Seconds,
    /// Time a request has to send its whole body once the head is in; then `408`.
    #[serde(default = "default_body_timeout")]
    pub body_timeout: Seconds,
    /// How long an idle keep-alive connection stays open; `0s` turns keep-alive off.
    #[serde(default = "default_keep_alive")]
    pub keep_alive: Seconds,
    /// Time a client has to acknowledge the close of its connection.
    #[serde(default = "default_disconnect_timeout")]
    pub disconnect_timeout: Seconds,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            workers: 0,
            trusted_proxies: Vec::new(),
            max_uri_bytes: default_max_uri_bytes(),
            max_header_bytes: default_max_header_bytes(),
            request_timeout: default_request_timeout(),
            body_timeout: default_body_timeout(),
            keep_alive: default_keep_alive(),
            disconnect_timeout: default_disconnect_timeout(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_owned()
}

/// The longest legitimate target is `/bridge/issue` carrying a challenge
/// and a `return_to`; 8 KiB is what common proxies allow for a request line.
fn default_max_uri_bytes() -> usize {
    8 * 1024
}

/// Behind path-based routing the bridge receives every cookie of the
/// site's domain, so the header section gets room for many of them.
fn default_max_header_bytes() -> usize {
    32 * 1024
}

fn default_request_timeout() -> Seconds {
    Seconds::new(5)
}

fn default_body_timeout() -> Seconds {
    Seconds::new(10)
}

fn default_keep_alive() -> Seconds {
    Seconds::new(5)
}

fn default_disconnect_timeout() -> Seconds {
    Seconds::new(1)
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    #[test]
    fn limits_have_defaults_and_take_overrides() {
        let config = Config::from_toml("", &[]).unwrap();
        assert_eq!(config.server.max_uri_bytes, 8192);
        assert_eq!(config.server.max_header_bytes, 32_768);
        assert_eq!(config.server.request_timeout.get(), 5);
        assert_eq!(config.server.body_timeout.get(), 10);
        assert_eq!(config.server.keep_alive.get(), 5);
        assert_eq!(config.server.disconnect_timeout.get(), 1);
        let env = vec![
            (
                "SESSION_BRIDGE__SERVER__MAX_URI_BYTES".to_owned(),
                "4096".to_owned(),
            ),
            (
                "SESSION_BRIDGE__SERVER__BODY_TIMEOUT".to_owned(),
                "3s".to_owned(),
            ),
        ];
        let config =
            Config::from_toml("[server]\nkeep_alive = \"0s\"\nrequest_timeout = 2\n", &env)
                .unwrap();
        assert_eq!(config.server.max_uri_bytes, 4096);
        assert_eq!(config.server.body_timeout.get(), 3);
        assert_eq!(config.server.keep_alive.get(), 0);
        assert_eq!(config.server.request_timeout.get(), 2);
    }
}
