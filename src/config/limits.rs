//! `[limits]`: rate limits per client IP. Each node counts on its own.
//!
//! A `0` in either key of a pair turns that limit off. The defaults suit a
//! production deployment where each browser has its own address; load
//! tests from one address (`session-bridge bench`, the test suite) set the
//! limits they need explicitly.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Sustained requests per second per client IP on the hand-off
    /// endpoints (`/bridge/start`, `issue`, `accept`, `frame`, `exchange`),
    /// one budget shared by all of them.
    #[serde(default = "default_bridge_per_second")]
    pub bridge_per_second: u32,
    /// How many of those requests may come at once.
    #[serde(default = "default_bridge_burst")]
    pub bridge_burst: u32,
    /// Sustained requests per second per client IP on `/api/v1/*`.
    #[serde(default = "default_api_per_second")]
    pub api_per_second: u32,
    #[serde(default = "default_api_burst")]
    pub api_burst: u32,
    /// Refused tokens (failed `accept` or `exchange`) per minute per client
    /// IP; past the budget, that IP's redemptions are refused with `429`
    /// until the budget refills.
    #[serde(default = "default_rejections_per_minute")]
    pub token_rejections_per_minute: u32,
    #[serde(default = "default_rejections_burst")]
    pub token_rejections_burst: u32,
    /// Client addresses each limit remembers at most; past it the limit
    /// forgets idle clients, then everyone (see `http::rate_limit`).
    #[serde(default = "default_max_tracked_clients")]
    pub max_tracked_clients: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            bridge_per_second: default_bridge_per_second(),
            bridge_burst: default_bridge_burst(),
            api_per_second: default_api_per_second(),
            api_burst: default_api_burst(),
            token_rejections_per_minute: default_rejections_per_minute(),
            token_rejections_burst: default_rejections_burst(),
            max_tracked_clients: default_max_tracked_clients(),
        }
    }
}

impl LimitsConfig {
    /// Every rate limit off (for load tests from one address).
    pub fn off() -> Self {
        Self {
            bridge_per_second: 0,
            bridge_burst: 0,
            api_per_second: 0,
            api_burst: 0,
            token_rejections_per_minute: 0,
            token_rejections_burst: 0,
            max_tracked_clients: default_max_tracked_clients(),
        }
    }
}

/// A hand-off is three requests (start, issue, accept): twenty a second
/// is several hand-offs a second from one address, far above what one
/// person clicks, and a burst covers a page that bridges to many partners.
fn default_bridge_per_second() -> u32 {
    20
}
fn default_bridge_burst() -> u32 {
    60
}
/// Service callers are few addresses making many calls; a busy backend
/// should raise this (or turn it off and rely on its API key).
fn default_api_per_second() -> u32 {
    100
}
fn default_api_burst() -> u32 {
    200
}
/// A genuine browser rarely fails a hand-off twice in a row; ten refused
/// tokens a minute leaves room for retries while making junk cheap to stop.
fn default_rejections_per_minute() -> u32 {
    10
}
fn default_rejections_burst() -> u32 {
    10
}
fn default_max_tracked_clients() -> usize {
    100_000
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    #[test]
    fn limits_have_defaults_and_take_overrides() {
        let config = Config::from_toml("", &[]).unwrap();
        assert_eq!(config.limits.bridge_per_second, 20);
        assert_eq!(config.limits.bridge_burst, 60);
        assert_eq!(config.limits.api_per_second, 100);
        assert_eq!(config.limits.token_rejections_per_minute, 10);
        assert_eq!(config.limits.max_tracked_clients, 100_000);
        let env = vec![
            (
                "SESSION_BRIDGE__LIMITS__BRIDGE_PER_SECOND".to_owned(),
                "0".to_owned(),
            ),
            (
                "SESSION_BRIDGE__LIMITS__TOKEN_REJECTIONS_BURST".to_owned(),
                "3".to_owned(),
            ),
        ];
        let config = Config::from_toml("[limits]\napi_burst = 7\n", &env).unwrap();
        assert_eq!(config.limits.bridge_per_second, 0);
        assert_eq!(config.limits.token_rejections_burst, 3);
        assert_eq!(config.limits.api_burst, 7);
        assert!(Config::from_toml("[limits]\nbridge_rate = 1\n", &[]).is_err());
    }
}
