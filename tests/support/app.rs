//! Spawns the real bridge on a free loopback port, on either store.

use super::redis_server::RedisServer;
use session_bridge::clock::Clock;
use session_bridge::config::{Config, LimitsConfig, StoreKind, demo_config};
use session_bridge::token::{KeySet, TokenService};
use std::net::TcpListener;
use tempfile::TempDir;
use time::OffsetDateTime;

pub const API_KEY: &str = "test-api-key-0123456789";
pub const ADMIN_TOKEN: &str = "test-admin-token-9876543210";

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Memory,
    Redis,
}

/// A running bridge with the demo's three sites on `*.localhost:PORT`.
pub struct TestApp {
    pub port: u16,
    pub clock: Clock,
    pub keys_dir: TempDir,
    pub config: Config,
    pub redis: Option<RedisServer>,
    handle: actix_web::dev::ServerHandle,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Spawns with the demo configuration changed by `customize`.
    pub async fn spawn_with(backend: Backend, customize: impl FnOnce(&mut Config)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        super::artifacts::capture_logs();
        // With the suite-wide leak check on, the keys and audit files live in
        // the artifacts directory and outlive the test.
        let keys_dir = match super::artifacts::dir() {
            Some(dir) => tempfile::Builder::new()
                .prefix("app-")
                .disable_cleanup(true)
                .tempdir_in(dir)
                .unwrap(),
            None => tempfile::tempdir().unwrap(),
        };
        let mut config = demo_config("127.0.0.1:0", port);
        config.tokens.keys_dir = keys_dir.path().to_owned();
        config.audit.file = Some(keys_dir.path().join("audit.log"));
        config.api.keys = vec![API_KEY.to_owned()];
        config.admin.tokens = vec![ADMIN_TOKEN.to_owned()];
        config.server.workers = 2;
        // Tests send many requests from 127.0.0.1, faster than any person:
        // the rate limits are off unless a test turns them on
        // (`tests/rate_limits.rs`).
        config.limits = LimitsConfig::off();
        let redis = match backend {
            Backend::Memory => None,
            Backend::Redis => {
                let server = RedisServer::start();
                config.store.kind = StoreKind::Redis;
                config.store.url = Some(server.url());
                Some(server)
            }
        };
        customize(&mut config);
        // A manual clock starting now: tests move time instead of sleeping.
        let clock = Clock::manual(OffsetDateTime::now_utc());
        let prepared = session_bridge::app::prepare(&config, clock.clone(), true)
            .await
            .unwrap();
        let server = session_bridge::http::serve(prepared.state, listener, 2, None).unwrap();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            port,
            clock,
            keys_dir,
            config,
            redis,
            handle,
        }
    }

    /// `http://{site}.localhost:{port}`
    pub fn origin(&self, site: &str) -> String {
        format!("http://{site}.localhost:{}", self.port)
    }

    /// Creates a session for `user` on `account` through the service API (with
    /// `data`, when given) and gives `browser` its cookie, as a site's login
    /// code would. Returns the session ID.
    pub async fn sign_in(
        &self,
        browser: &mut super::browser::Browser,
        user: &str,
        data: Option<serde_json::Value>,
    ) -> String {
        let mut body = serde_json::json!({"site": "account", "user_id": user});
        if let Some(data) = data {
            body["data"] = data;
        }
        let response = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/api/v1/sessions", self.port))
            .header("Host", format!("account.localhost:{}", self.port))
            .bearer_auth(API_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::CREATED);
        let body: serde_json::Value = response.json().await.unwrap();
        let id = body["id"].as_str().unwrap().to_owned();
        browser.set_cookie("account.localhost", "__Host-sb", &id);
        id
    }

    /// The audit file of this app.
    pub fn audit_path(&self) -> std::path::PathBuf {
        self.keys_dir.path().join("audit.log")
    }

    /// The audit lines written so far, waiting (bounded) until `wanted`
    /// returns true for them.
    pub async fn audit_lines_until(&self, wanted: impl Fn(&[String]) -> bool) -> Vec<String> {
        let mut lines = Vec::new();
        for _ in 0..100 {
            lines = std::fs::read_to_string(self.audit_path())
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect();
            if wanted(&lines) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        lines
    }

    /// A token service with the bridge's own keys, to forge tokens with.
    pub fn token_service(&self) -> TokenService {
        let keys = KeySet::load(self.keys_dir.path(), self.config.tokens.algorithm, None).unwrap();
        TokenService::new(keys, 30, 5)
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}
