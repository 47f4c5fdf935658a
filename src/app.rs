//! Turning a configuration into a running bridge: validate the topology,
//! load (or make) keys, connect the store, resolve secrets.

use crate::audit::alerts::AlertSettings;
use crate::audit::{Audit, AuditSettings};
use crate::clock::Clock;
use crate::config::{Config, SecretError, StoreKind, resolve_secret};
use crate::flows::Bridge;
use crate::http::AppState;
use crate::metrics::Metrics;
use crate::sessions::SessionPolicy;
use crate::store::resilient::{Resilient, StoreMetrics};
use crate::store::{AnyStore, MemoryStore, RedisStore, StoreError};
use crate::token::{KeyError, KeySet, TokenService};
use crate::topology::Finding;
use crate::topology::check::check;
use std::fmt;
use std::sync::Arc;

/// Why the bridge refuses to start.
#[derive(Debug)]
pub enum StartError {
    Topology(Vec<Finding>),
    Keys(KeyError),
    Store(StoreError),
    Secret(SecretError),
    Settings(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Topology(errors) => {
                writeln!(f, "the configuration has {} error(s):", errors.len())?;
                for e in errors {
                    writeln!(f, "  {e}\n      fix: {}", e.fix)?;
                }
                Ok(())
            }
            Self::Keys(e) => write!(f, "[{}] {e}", e.code()),
            Self::Store(e) => write!(f, "[{}] {e}", e.code()),
            Self::Secret(e) => write!(f, "[secret_unresolved] {e}"),
            Self::Settings(e) => write!(f, "[config_invalid] {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// What the caller may want to print at start.
pub struct Prepared {
    pub state: AppState,
    /// A demo API key made up at start (when `SESSION_BRIDGE_API_KEY` is unset).
    pub generated_api_key: Option<String>,
    /// A demo admin token made up at start (when `SESSION_BRIDGE_ADMIN_TOKEN` is unset).
    pub generated_admin_token: Option<String>,
}

/// Resolves `env:NAME` references; an unset variable refuses the start.
fn resolve_all(references: &[String]) -> Result<Vec<String>, StartError> {
    references
        .iter()
        .map(|r| resolve_secret(r, |name| std::env::var(name).ok()).map_err(StartError::Secret))
        .collect()
}

/// This process's name in the audit trail: host and listen port.
fn node_name(config: &Config) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "bridge".to_owned());
    let port = config.server.listen.rsplit(':').next().unwrap_or("0");
    format!("{host}:{port}")
}

fn start_audit(
    config: &Config,
    tokens: &TokenService,
    metrics: &Metrics,
) -> Result<Audit, StartError> {
    let key = crate::audit::load_key(config.audit.key.as_deref(), &config.tokens.keys_dir)
        .map_err(StartError::Settings)?;
    let stream_url = if config.audit.redis_stream {
        let url = config.store.url.clone().ok_or_else(|| {
            StartError::Settings(
                "[audit] redis_stream needs [store] url (one Redis server)".to_owned(),
            )
        })?;
        Some(url)
    } else {
        None
    };
    Audit::start(AuditSettings {
        key,
        node: node_name(config),
        file: config
            .audit
            .file
            .clone()
            .filter(|p| !p.as_os_str().is_empty()),
        rotate_bytes: config.audit.rotate_bytes,
        stream_url,
        alerts: Some(AlertSettings {
            webhook_url: Some(config.alerts.webhook_url.clone()),
            rejections_per_minute: config.alerts.rejections_per_minute,
            signer: tokens.clone(),
            counter: metrics.alerts.clone(),
        }),
    })
    .map_err(StartError::Settings)
}

/// Builds everything a server needs from `config`. In `demo` mode an unset
/// API key is replaced by a random one, returned for printing.
pub async fn prepare(config: &Config, clock: Clock, demo: bool) -> Result<Prepared, StartError> {
    let (report, topology) = check(config);
    for warning in &report.warnings {
        tracing::warn!(code = warning.code, fix = warning.fix, "{warning}");
    }
    let topology = topology.ok_or(StartError::Topology(report.errors))?;
    let keys = KeySet::load_or_create(
        &config.tokens.keys_dir,
        config.tokens.algorithm,
        config.tokens.signing_kid.as_deref(),
        clock.unix(),
    )
    .map_err(StartError::Keys)?;
    let metrics = Arc::new(Metrics::new());
    let store = match config.store.kind {
        StoreKind::Memory => AnyStore::Memory(MemoryStore::new(clock.clone())),
        StoreKind::Redis => {
            // Exactly one of url, sentinel, cluster; a readable reason when not.
            RedisStore::check_config(&config.store).map_err(StartError::Settings)?;
            let redis = RedisStore::from_config(&config.store)
                .await
                .map_err(StartError::Store)?;
            let resilient = Resilient::new(redis, config.store.cache_ttl.as_duration())
                .with_metrics(StoreMetrics {
                    duration: metrics.store_duration.clone(),
                    errors: metrics.store_errors.clone(),
                });
            resilient.spawn_flusher();
            AnyStore::Redis(resilient)
        }
    };
    let lookup = |name: &str| std::env::var(name).ok();
    let mut generated_api_key = None;
    let mut api_keys = Vec::new();
    for reference in &config.api.keys {
        match resolve_secret(reference, lookup) {
            Ok(key) => api_keys.push(key),
            Err(_) if demo => {
                let key = crate::flows::binding::random_token().ok_or_else(|| {
                    StartError::Settings("the system random generator failed".to_owned())
                })?;
                generated_api_key = Some(key.clone());
                api_keys.push(key);
            }
            Err(e) => return Err(StartError::Secret(e)),
        }
    }
    let trusted_proxies = config
        .server
        .trusted_proxies
        .iter()
        .map(|text| {
            // Canonical, as peers are compared (`::ffff:a.b.c.d` is a.b.c.d).
            text.parse::<std::net::IpAddr>()
                .map(|ip| ip.to_canonical())
                .map_err(|_| {
                    StartError::Settings(format!(
                        "[server] trusted_proxies: `{text}` is not an IP address"
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (admin_tokens, generated_admin_token) = match resolve_all(&config.admin.tokens) {
        Ok(tokens) => (tokens, None),
        Err(_) if demo => {
            let token = crate::flows::binding::random_token().ok_or_else(|| {
                StartError::Settings("the system random generator failed".to_owned())
            })?;
            (vec![token.clone()], Some(token))
        }
        Err(e) => return Err(e),
    };
    let limits =
        crate::http::limits::Limits::from_config(&config.server).map_err(StartError::Settings)?;
    let rate_limits = Arc::new(
        crate::http::rate_limit::RateLimits::new(&config.limits, clock.clone())
            .map_err(StartError::Settings)?,
    );
    if !rate_limits.is_off() {
        rate_limits.spawn_sweeper();
    }
    let sessions = SessionPolicy {
        idle_secs: i64::try_from(config.sessions.idle_timeout.get()).unwrap_or(i64::MAX),
        absolute_secs: i64::try_from(config.sessions.absolute_timeout.get()).unwrap_or(i64::MAX),
    };
    let tokens = TokenService::new(keys, config.tokens.ttl.get(), config.tokens.leeway.get());
    let audit = start_audit(config, &tokens, &metrics)?;
    let bridge = Bridge {
        topology: Arc::new(topology),
        tokens,
        store,
        sessions,
        revoke_on_replay: config.tokens.revoke_on_replay,
        audit,
    };
    // Logs the session events other nodes publish on `sb:events` (Redis only).
    // Another node's logout or rotation: drop what this node cached.
    let (cache, fingerprints) = (bridge.store.clone(), bridge.audit.clone());
    let on_event: crate::flows::logout::EventHandler = Arc::new(move |_kind: &str, fp: &str| {
        if let AnyStore::Redis(store) = &cache {
            store.forget_matching(|id| fingerprints.fingerprint(id) == fp);
        }
    });
    crate::flows::logout::spawn_event_listener(&config.store, on_event);
    Ok(Prepared {
        state: AppState {
            bridge,
            clock,
            api_keys,
            demo,
            admin_tokens,
            audit_file: config
                .audit
                .file
                .clone()
                .filter(|p| !p.as_os_str().is_empty()),
            metrics,
            trusted_proxies,
            limits,
            rate_limits,
        },
        generated_api_key,
        generated_admin_token,
    })
}
