//! What a node does while Redis is unreachable (DESIGN.md, "Stores").
//!
//! - Token issue and redemption go straight through and fail closed: there
//!   is no fallback for them here, ever.
//! - A logout (session delete) that cannot reach Redis is honoured on this
//!   node at once — the ID reads as missing here — and queued; a background
//!   task writes it to Redis when Redis answers again. No revocation is lost
//!   while the process lives.
//! - Optionally (`[store] cache_ttl`, off by default), reads of sessions
//!   this node saw within `cache_ttl` are answered from a bounded local cache
//!   while Redis is down. Strict deployments leave it off.

use super::{
    ConsumeOutcome, IssueOutcome, Session, SessionId, Store, StoreError, TokenRecord, TokenStatus,
    UpdateOutcome,
};
use crate::metrics::ReasonLabels;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Sessions kept in the read cache, at most.
pub const CACHE_ENTRIES: usize = 10_000;
/// How often queued revocations are retried.
const RETRY_EVERY: Duration = Duration::from_millis(500);

#[derive(Default)]
struct State {
    /// Revoked here while Redis was down; not yet written to Redis.
    pending_revocations: HashSet<SessionId>,
    cache: HashMap<SessionId, (Session, Instant)>,
}

/// Latency and failures of store calls, by operation.
#[derive(Clone)]
pub struct StoreMetrics {
    pub duration: Family<ReasonLabels, Histogram, fn() -> Histogram>,
    pub errors: Family<ReasonLabels, Counter>,
}

/// A store wrapper with a local revocation queue, an optional read cache,
/// and metrics of every call.
#[derive(Clone)]
pub struct Resilient<S> {
    inner: S,
    cache_ttl: Duration,
    state: Arc<Mutex<State>>,
    metrics: Option<StoreMetrics>,
}

fn unavailable(result: &Result<impl Sized, StoreError>) -> bool {
    matches!(result, Err(StoreError::Unavailable(_)))
}

impl<S: Store + Clone + 'static> Resilient<S> {
    /// Wraps `inner`; `cache_ttl` zero turns the read cache off.
    pub fn new(inner: S, cache_ttl: Duration) -> Self {
        Self {
            inner,
            cache_ttl,
            state: Arc::default(),
            metrics: None,
        }
    }

    /// Records latency and failures of every call in `metrics`.
    pub fn with_metrics(mut self, metrics: StoreMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Runs one store call, timing it and counting its failure.
    async fn timed<T>(
        &self,
        op: &str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = call.await;
        if let Some(metrics) = &self.metrics {
            let labels = ReasonLabels {
                reason: op.to_owned(),
            };
            metrics
                .duration
                .get_or_create(&labels)
                .observe(started.elapsed().as_secs_f64());
            if result.is_err() {
                metrics.errors.get_or_create(&labels).inc();
            }
        }
        result
    }

    /// A session read as the cache sees it: an answer is remembered (or
    /// forgotten), and an outage is answered from the cache when it can be.
    fn read_through(
        &self,
        id: &SessionId,
        result: Result<Option<Session>, StoreError>,
    ) -> Result<Option<Session>, StoreError> {
        match &result {
            Ok(Some(session)) => self.remember(session),
            Ok(None) => self.forget(id),
            Err(StoreError::Unavailable(_)) => {
                if let Some(session) = self.cached(id) {
                    return Ok(Some(session));
                }
            }
            Err(_) => {}
        }
        result
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This wrapper around another handle of the wrapped store (a server
    /// worker's own, say), sharing the queue, the cache and the metrics.
    #[must_use]
    pub fn with_inner(&self, inner: S) -> Self {
        Self {
            inner,
            cache_ttl: self.cache_ttl,
            state: Arc::clone(&self.state),
            metrics: self.metrics.clone(),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Revocations waiting for Redis.
    pub fn pending_revocations(&self) -> usize {
        self.lock().pending_revocations.len()
    }

    fn revoked_here(&self, id: &SessionId) -> bool {
        self.lock().pending_revocations.contains(id)
    }

    fn remember(&self, session: &Session) {
        if self.cache_ttl.is_zero() {
            return;
        }
        let mut state = self.lock();
        if state.cache.len() >= CACHE_ENTRIES {
            let ttl = self.cache_ttl;
            state.cache.retain(|_, (_, seen)| seen.elapsed() < ttl);
            if state.cache.len() >= CACHE_ENTRIES {
                state.cache.clear();
            }
        }
        state
            .cache
            .insert(session.id.clone(), (session.clone(), Instant::now()));
    }

    fn forget(&self, id: &SessionId) {
        self.lock().cache.remove(id);
    }

    /// Drops cached sessions for which `matches` is true (another node
    /// ended them: its event names the session only by fingerprint).
    pub fn forget_matching(&self, matches: impl Fn(&SessionId) -> bool) {
        self.lock().cache.retain(|id, _| !matches(id));
    }

    fn cached(&self, id: &SessionId) -> Option<Session> {
        let state = self.lock();
        let (session, seen) = state.cache.get(id)?;
        (seen.elapsed() < self.cache_ttl).then(|| session.clone())
    }

    /// Writes queued revocations to the store; keeps those that still fail.
    pub async fn flush_revocations(&self) {
        let pending: Vec<SessionId> = self.lock().pending_revocations.iter().cloned().collect();
        for id in pending {
            if self.inner.delete_session(&id).await.is_ok() {
                self.lock().pending_revocations.remove(&id);
                tracing::info!("a revocation queued during a store outage was written");
            }
        }
    }

    /// Retries queued revocations in the background while the process lives.
    pub fn spawn_flusher(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RETRY_EVERY).await;
                if this.pending_revocations() > 0 {
                    this.flush_revocations().await;
                }
            }
        });
    }
}

impl<S: Store + Clone + 'static> Store for Resilient<S> {
    async fn create_session(&self, session: &Session, ttl: Duration) -> Result<(), StoreError> {
        self.timed("create_session", self.inner.create_session(session, ttl))
            .await
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        if self.revoked_here(id) {
            return Ok(None);
        }
        let result = self.timed("get_session", self.inner.get_session(id)).await;
        self.read_through(id, result)
    }

    async fn update_session(
        &self,
        session: &Session,
        expected_version: u64,
        ttl: Duration,
    ) -> Result<UpdateOutcome, StoreError> {
        if self.revoked_here(&session.id) {
            return Ok(UpdateOutcome::Missing);
        }
        let outcome = self
            .timed(
                "update_session",
                self.inner.update_session(session, expected_version, ttl),
            )
            .await;
        if matches!(outcome, Ok(UpdateOutcome::Saved)) {
            self.remember(session);
        }
        outcome
    }

    async fn touch_session(&self, id: &SessionId, ttl: Duration) -> Result<bool, StoreError> {
        if self.revoked_here(id) {
            return Ok(false);
        }
        self.timed("touch_session", self.inner.touch_session(id, ttl))
            .await
    }

    async fn get_and_touch_session(
        &self,
        id: &SessionId,
        idle: Duration,
        now: i64,
    ) -> Result<Option<Session>, StoreError> {
        if self.revoked_here(id) {
            return Ok(None);
        }
        let result = self
            .timed(
                "get_session",
                self.inner.get_and_touch_session(id, idle, now),
            )
            .await;
        // Served from the outage cache, a session has no TTL to slide.
        self.read_through(id, result)
    }

    async fn delete_session(&self, id: &SessionId) -> Result<bool, StoreError> {
        self.forget(id);
        let result = self
            .timed("delete_session", self.inner.delete_session(id))
            .await;
        if unavailable(&result) {
            // Honoured here at once; written to the store when it answers.
            self.lock().pending_revocations.insert(id.clone());
            tracing::warn!("store unavailable: a revocation is queued and honoured on this node");
            return Ok(true);
        }
        result
    }

    async fn put_token(
        &self,
        jti: &str,
        record: &TokenRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.timed("put_token", self.inner.put_token(jti, record, ttl))
            .await
    }

    async fn put_token_for_session(
        &self,
        jti: &str,
        record: &TokenRecord,
        issuer: &str,
        now: i64,
        ttl: Duration,
    ) -> Result<IssueOutcome, StoreError> {
        // A revocation queued here wins over what the store still holds.
        if self.revoked_here(&record.session_id) {
            return Ok(IssueOutcome::NoSession);
        }
        self.timed(
            "put_token",
            self.inner
                .put_token_for_session(jti, record, issuer, now, ttl),
        )
        .await
    }

    async fn consume_token(&self, jti: &str) -> Result<ConsumeOutcome, StoreError> {
        self.timed("consume_token", self.inner.consume_token(jti))
            .await
    }

    async fn peek_token(&self, jti: &str) -> Result<TokenStatus, StoreError> {
        self.timed("peek_token", self.inner.peek_token(jti)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.timed("ping", self.inner.ping()).await
    }

    async fn session_ttl(&self, id: &SessionId) -> Result<Option<Duration>, StoreError> {
        if self.revoked_here(id) {
            return Ok(None);
        }
        self.timed("session_ttl", self.inner.session_ttl(id)).await
    }

    async fn publish(&self, channel: &str, message: &str) -> Result<(), StoreError> {
        self.timed("publish", self.inner.publish(channel, message))
            .await
    }
}
