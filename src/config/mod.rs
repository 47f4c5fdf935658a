//! Typed configuration: one TOML file, every key overridable from the
//! environment (`SESSION_BRIDGE__TOKENS__TTL=20s`), passed by value.
//!
//! Key names are part of the public interface (DESIGN.md, "Configuration").

mod demo;
mod duration;
mod limits;
mod secret;
mod server;

pub use demo::{demo_config, demo_config_with_scheme};
pub use duration::Seconds;
pub use limits::LimitsConfig;
pub use secret::{SecretError, resolve_secret};
pub use server::ServerConfig;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// The whole configuration, as written in the file.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub tokens: TokensConfig,
    #[serde(default)]
    pub sessions: SessionsConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub alerts: AlertsConfig,
    #[serde(default)]
    pub api: ApiConfig,
    /// Rate limits per client IP.
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub sites: Vec<SiteConfig>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    #[default]
    Memory,
    Redis,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default)]
    pub kind: StoreKind,
    /// One Redis server.
    pub url: Option<String>,
    /// Redis Sentinel.
    pub sentinel: Option<SentinelConfig>,
    /// Redis Cluster seed nodes.
    pub cluster: Option<Vec<String>>,
    /// While Redis is down, answer reads of sessions this node saw within
    /// this long from a local cache; `0s` (the default) turns it off.
    #[serde(default = "zero_seconds")]
    pub cache_ttl: Seconds,
}

fn zero_seconds() -> Seconds {
    Seconds::new(0)
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: StoreKind::Memory,
            url: None,
            sentinel: None,
            cluster: None,
            cache_ttl: zero_seconds(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SentinelConfig {
    pub master: String,
    pub nodes: Vec<String>,
}

/// Signing algorithm for bridge tokens.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum TokenAlgorithm {
    #[default]
    EdDSA,
    HS256,
}

impl fmt::Display for TokenAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::EdDSA => "EdDSA",
            Self::HS256 => "HS256",
        })
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokensConfig {
    #[serde(default)]
    pub algorithm: TokenAlgorithm,
    #[serde(default = "default_token_ttl")]
    pub ttl: Seconds,
    #[serde(default = "default_leeway")]
    pub leeway: Seconds,
    #[serde(default = "default_keys_dir")]
    pub keys_dir: PathBuf,
    #[serde(default = "default_true")]
    pub revoke_on_replay: bool,
    /// The key that signs; the newest key in `keys_dir` when unset.
    pub signing_kid: Option<String>,
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            algorithm: TokenAlgorithm::EdDSA,
            ttl: default_token_ttl(),
            leeway: default_leeway(),
            keys_dir: default_keys_dir(),
            revoke_on_replay: true,
            signing_kid: None,
        }
    }
}

fn default_token_ttl() -> Seconds {
    Seconds::new(30)
}
fn default_leeway() -> Seconds {
    Seconds::new(5)
}
fn default_keys_dir() -> PathBuf {
    PathBuf::from("keys")
}
fn default_true() -> bool {
    true
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsConfig {
    #[serde(default = "default_idle")]
    pub idle_timeout: Seconds,
    #[serde(default = "default_absolute")]
    pub absolute_timeout: Seconds,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self {
            idle_timeout: default_idle(),
            absolute_timeout: default_absolute(),
        }
    }
}

fn default_idle() -> Seconds {
    Seconds::new(30 * 60)
}
fn default_absolute() -> Seconds {
    Seconds::new(12 * 3600)
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    #[serde(default = "default_audit_file")]
    pub file: Option<PathBuf>,
    #[serde(default)]
    pub redis_stream: bool,
    /// HMAC key for fingerprints and the chain (`env:NAME` or the value).
    pub key: Option<String>,
    /// The file is rotated when it reaches this many bytes.
    #[serde(default = "default_rotate_bytes")]
    pub rotate_bytes: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            file: default_audit_file(),
            redis_stream: false,
            key: None,
            rotate_bytes: default_rotate_bytes(),
        }
    }
}

fn default_rotate_bytes() -> u64 {
    64 * 1024 * 1024
}

fn default_audit_file() -> Option<PathBuf> {
    Some(PathBuf::from("audit.log"))
}

#[derive(Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default)]
    pub tokens: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    #[serde(default)]
    pub webhook_url: String,
    #[serde(default = "default_rejections")]
    pub rejections_per_minute: u32,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            webhook_url: String::new(),
            rejections_per_minute: default_rejections(),
        }
    }
}

fn default_rejections() -> u32 {
    20
}

#[derive(Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Bearer keys for `/api/v1` (`env:NAME` or the value).
    #[serde(default)]
    pub keys: Vec<String>,
}

/// What `/bridge/issue` does when the browser has no session on the issuing site.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MissingSessionPolicy {
    /// Make an anonymous session and hand that over.
    #[default]
    Anonymous,
    /// Send the browser to `login_url`, which comes back when done.
    Login,
    /// Refuse with `no_session`.
    Deny,
}

/// How a site's clients carry the session.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    #[default]
    Cookie,
    Header,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SameSiteSetting {
    #[default]
    Auto,
    Strict,
    Lax,
    None,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CookieConfig {
    #[serde(default = "default_cookie_name")]
    pub name: String,
    #[serde(default)]
    pub same_site: SameSiteSetting,
    pub domain: Option<String>,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: default_cookie_name(),
            same_site: SameSiteSetting::Auto,
            domain: None,
        }
    }
}

fn default_cookie_name() -> String {
    "__Host-sb".to_owned()
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub id: String,
    pub origins: Vec<String>,
    #[serde(default)]
    pub partners: Vec<String>,
    #[serde(default = "default_return_paths")]
    pub return_paths: Vec<String>,
    #[serde(default)]
    pub on_missing_session: MissingSessionPolicy,
    #[serde(default = "default_login_url")]
    pub login_url: String,
    #[serde(default)]
    pub cors_origins: Vec<String>,
    #[serde(default)]
    pub delivery: Delivery,
    #[serde(default)]
    pub allow_iframe: bool,
    #[serde(default)]
    pub backchannel_logout_url: String,
    #[serde(default)]
    pub cookie: CookieConfig,
}

fn default_return_paths() -> Vec<String> {
    vec!["/".to_owned()]
}
fn default_login_url() -> String {
    "/login".to_owned()
}

/// Secrets are never printed: `Debug` shows how many there are.
impl fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiConfig {{ keys: [{} redacted] }}", self.keys.len())
    }
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AdminConfig {{ tokens: [{} redacted] }}",
            self.tokens.len()
        )
    }
}

impl fmt::Debug for AuditConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditConfig")
            .field("file", &self.file)
            .field("redis_stream", &self.redis_stream)
            .field("key", &self.key.as_ref().map(|_| "redacted"))
            .field("rotate_bytes", &self.rotate_bytes)
            .finish()
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read { path: PathBuf, reason: String },
    /// The file or an environment override could not be parsed (the message names where).
    Parse(String),
}

impl ConfigError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Read { .. } => "config_unreadable",
            Self::Parse(_) => "config_invalid",
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, reason } => write!(f, "cannot read {}: {reason}", path.display()),
            Self::Parse(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The environment variable prefix; `__` separates nesting levels.
pub const ENV_PREFIX: &str = "SESSION_BRIDGE";

impl Config {
    /// Reads `path` and applies `SESSION_BRIDGE__SECTION__KEY` overrides from `env`.
    pub fn load(path: &Path, env: &[(String, String)]) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Self::from_toml(&text, env).map_err(|e| match e {
            ConfigError::Parse(message) => {
                ConfigError::Parse(format!("{}: {message}", path.display()))
            }
            other => other,
        })
    }

    /// Parses TOML text and applies environment overrides.
    pub fn from_toml(text: &str, env: &[(String, String)]) -> Result<Self, ConfigError> {
        // Parse with `toml` first so syntax errors carry line and column.
        let file: toml::Value =
            toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        Self::from_value(file, env)
    }

    /// Applies environment overrides to an already parsed document.
    pub fn from_value(file: toml::Value, env: &[(String, String)]) -> Result<Self, ConfigError> {
        let file_text = toml::to_string(&file).map_err(|e| ConfigError::Parse(e.to_string()))?;
        let overrides = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .source(Some(env.iter().cloned().collect()));
        config::Config::builder()
            .add_source(config::File::from_str(&file_text, config::FileFormat::Toml))
            .add_source(overrides)
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| ConfigError::Parse(e.to_string()))
    }
}

/// The process environment as pairs, for [`Config::load`].
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
[tokens]
ttl = "20s"
[[sites]]
id = "account"
origins = ["https://account.example.com"]
partners = ["shop"]
[[sites]]
id = "shop"
origins = ["https://shop.example.net"]
partners = ["account"]
"#;

    #[test]
    fn reads_the_file_with_defaults() {
        let config = Config::from_toml(SAMPLE, &[]).unwrap();
        assert_eq!(config.tokens.ttl.get(), 20);
        assert_eq!(config.tokens.leeway.get(), 5);
        assert_eq!(config.sites.len(), 2);
        assert_eq!(config.sites[0].cookie.name, "__Host-sb");
        assert_eq!(config.sites[1].return_paths, vec!["/"]);
    }

    #[test]
    fn environment_overrides_a_key() {
        let env = vec![("SESSION_BRIDGE__TOKENS__TTL".to_owned(), "45s".to_owned())];
        let config = Config::from_toml(SAMPLE, &env).unwrap();
        assert_eq!(config.tokens.ttl.get(), 45);
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = Config::from_toml("[tokens]\nttl = \n", &[]).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Config::from_toml("[tokens]\nttll = \"2s\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("ttll"), "{err}");
    }
}
