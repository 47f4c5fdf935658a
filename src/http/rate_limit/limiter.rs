//! The budgets themselves, without HTTP: `governor`'s keyed GCRA limiters,
//! time read from a [`LimiterClock`] so tests move it instead of sleeping.
//!
//! Memory stays bounded under an attacker who sprays addresses: each
//! limiter forgets clients whose budget is full again (a sweep every
//! [`SWEEP_EVERY`], [`RateLimits::spawn_sweeper`]), and never holds more
//! than twice `max_tracked_clients` keys: past the cap it first drops idle
//! clients, and if that is not enough, starts afresh (everyone's budget
//! full again, the attacker's too) rather than grow.

use crate::config::LimitsConfig;
use governor::clock::Clock as _;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

/// How often idle clients are forgotten.
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// A client's refusals are audited once per limit and this long.
pub const AUDIT_WINDOW: Duration = Duration::from_secs(60);

/// `governor`'s clock over the bridge's: monotonic time in production (the
/// wall clock can step back), the manual clock under test.
#[derive(Clone, Debug)]
pub struct LimiterClock {
    clock: crate::clock::Clock,
    started: std::time::Instant,
    started_at: time::OffsetDateTime,
}

impl LimiterClock {
    pub fn new(clock: crate::clock::Clock) -> Self {
        Self {
            started: std::time::Instant::now(),
            started_at: clock.now(),
            clock,
        }
    }
}

impl governor::clock::Clock for LimiterClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        let nanos = if self.clock.is_manual() {
            (self.clock.now() - self.started_at)
                .whole_nanoseconds()
                .max(0)
        } else {
            i128::try_from(self.started.elapsed().as_nanos()).unwrap_or(i128::MAX)
        };
        Nanos::from(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// Which budget a refusal came from; its name is the audit reason.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Limit {
    /// The hand-off endpoints, one budget per client.
    Bridge,
    /// `/api/v1/*`.
    Api,
    /// Refused tokens.
    TokenRejections,
}

impl Limit {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Bridge => "bridge_rate",
            Self::Api => "api_rate",
            Self::TokenRejections => "token_rejections",
        }
    }
}

/// Whose budget a request spends: an IPv4 address, or an IPv6 /64. One
/// host is usually given a whole /64, so counting single IPv6 addresses
/// would hand each attacker billions of budgets.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => Self(IpAddr::V6(Ipv6Addr::from(
                    u128::from(v6) & !u128::from(u64::MAX),
                ))),
            },
        }
    }
}

/// A request refused: `429` with `Retry-After: retry_after` (whole
/// seconds, at least 1); `audit` for the first refusal of the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub limit: Limit,
    pub retry_after: u64,
    pub audit: bool,
}

type Keyed<K> = RateLimiter<K, DashMapStateStore<K>, LimiterClock, NoOpMiddleware<Nanos>>;

/// One keyed limiter that never holds more than twice `max_keys` keys.
struct Bucket<K: Hash + Eq + Clone> {
    quota: Quota,
    clock: LimiterClock,
    max_keys: usize,
    /// Counting keys walks every shard: done once per `cap_every` checks,
    /// so at most `cap_every` (≤ `max_keys`) keys get in past the cap.
    cap_every: usize,
    checks: AtomicUsize,
    limiter: RwLock<Arc<Keyed<K>>>,
}

impl<K: Hash + Eq + Clone> Bucket<K> {
    fn new(quota: Quota, clock: &LimiterClock, max_keys: usize) -> Self {
        Self {
            quota,
            clock: clock.clone(),
            max_keys,
            cap_every: max_keys.clamp(1, 1024),
            checks: AtomicUsize::new(0),
            limiter: RwLock::new(Arc::new(RateLimiter::dashmap_with_clock(
                quota,
                clock.clone(),
            ))),
        }
    }

    fn current(&self) -> Arc<Keyed<K>> {
        Arc::clone(&self.limiter.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Spends one cell of `key`'s budget; when none is left, the time until
    /// the next one.
    fn take(&self, key: &K) -> Result<(), Nanos> {
        let limiter = self.current();
        let outcome = limiter.check_key(key).map_err(|not_until| {
            not_until
                .earliest_possible()
                .saturating_sub(self.clock.now())
        });
        if self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(self.cap_every)
            && limiter.len() > self.max_keys
        {
            limiter.retain_recent();
            if limiter.len() > self.max_keys {
                tracing::warn!(
                    max_tracked_clients = self.max_keys,
                    "rate limiter full of active clients: starting afresh"
                );
                *self.limiter.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(
                    RateLimiter::dashmap_with_clock(self.quota, self.clock.clone()),
                );
            }
        }
        outcome
    }

    fn sweep(&self) {
        let limiter = self.current();
        limiter.retain_recent();
        limiter.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.current().len()
    }
}

/// `count` per `period`, bursts of `burst`; `None` when either is 0 (off).
fn quota(key: &str, count: u32, period: Duration, burst: u32) -> Result<Option<Quota>, String> {
    let (Some(count), Some(burst)) = (NonZeroU32::new(count), NonZeroU32::new(burst)) else {
        return Ok(None);
    };
    Quota::with_period(period / count.get())
        .map(|q| Some(q.allow_burst(burst)))
        .ok_or_else(|| format!("[limits] {key} = {count} is too large"))
}

/// Every budget of one node.
pub struct RateLimits {
    clock: LimiterClock,
    bridge: Option<Bucket<ClientKey>>,
    api: Option<Bucket<ClientKey>>,
    rejections: Option<Bucket<ClientKey>>,
    /// Clients whose rejection budget is spent, and until when (on
    /// [`LimiterClock`]): their redemptions are refused before any token
    /// is looked at. Read on every redemption, written only when a budget
    /// is spent: a read-write lock keeps redemptions from queueing.
    penalties: RwLock<HashMap<ClientKey, Nanos>>,
    /// One cell per client, limit and [`AUDIT_WINDOW`]: which refusals are
    /// audited.
    audited: Bucket<(ClientKey, Limit)>,
    max_keys: usize,
}

impl RateLimits {
    /// Checks `[limits]` and builds its budgets; the message names the key.
    pub fn new(config: &LimitsConfig, clock: crate::clock::Clock) -> Result<Self, String> {
        let max_keys = config.max_tracked_clients;
        if max_keys == 0 {
            return Err("[limits] max_tracked_clients must be at least 1".to_owned());
        }
        let clock = LimiterClock::new(clock);
        let second = Duration::from_secs(1);
        let bucket = |key: &str, count, period, burst| {
            quota(key, count, period, burst).map(|q| q.map(|q| Bucket::new(q, &clock, max_keys)))
        };
        let audit_quota = Quota::with_period(AUDIT_WINDOW)
            .ok_or_else(|| "the audit window is empty".to_owned())?;
        Ok(Self {
            bridge: bucket(
                "bridge_per_second",
                config.bridge_per_second,
                second,
                config.bridge_burst,
            )?,
            api: bucket(
                "api_per_second",
                config.api_per_second,
                second,
                config.api_burst,
            )?,
            rejections: bucket(
                "token_rejections_per_minute",
                config.token_rejections_per_minute,
                Duration::from_secs(60),
                config.token_rejections_burst,
            )?,
            penalties: RwLock::new(HashMap::new()),
            audited: Bucket::new(audit_quota, &clock, max_keys),
            max_keys,
            clock,
        })
    }

    /// Whether every limit is off.
    pub fn is_off(&self) -> bool {
        self.bridge.is_none() && self.api.is_none() && self.rejections.is_none()
    }

    fn refusal(&self, limit: Limit, key: ClientKey, wait: Nanos) -> Refusal {
        let wait = Duration::from(wait);
        // Round up: a client that waits what it is told finds a cell.
        let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Refusal {
            limit,
            retry_after: retry_after.max(1),
            audit: self.audited.take(&(key, limit)).is_ok(),
        }
    }

    /// A request under `limit` from `ip`; `redeems` when it presents a
    /// token (`accept`, `exchange`), which a spent rejection budget refuses.
    pub fn check(&self, limit: Limit, redeems: bool, ip: IpAddr) -> Result<(), Refusal> {
        let key = ClientKey::of(ip);
        if redeems && self.rejections.is_some() {
            let now = self.clock.now();
            let until = self
                .penalties
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&key)
                .copied()
                .filter(|until| *until > now);
            if let Some(until) = until {
                return Err(self.refusal(Limit::TokenRejections, key, until.saturating_sub(now)));
            }
        }
        let bucket = match limit {
            Limit::Bridge => &self.bridge,
            Limit::Api => &self.api,
            Limit::TokenRejections => &None,
        };
        match bucket {
            Some(bucket) => bucket
                .take(&key)
                .map_err(|wait| self.refusal(limit, key, wait)),
            None => Ok(()),
        }
    }

    /// A token from `ip` was refused. `Some` when that spent the client's
    /// rejection budget: its redemptions are refused until it refills.
    pub fn token_refused(&self, ip: IpAddr) -> Option<Refusal> {
        let key = ClientKey::of(ip);
        let wait = self.rejections.as_ref()?.take(&key).err()?;
        let until = self.clock.now() + wait;
        let mut penalties = self
            .penalties
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // Full: the client is still refused, after its token is checked,
        // by the budget itself; the map never outgrows the cap.
        if penalties.len() < self.max_keys || penalties.contains_key(&key) {
            penalties.insert(key, until);
        }
        drop(penalties);
        Some(self.refusal(Limit::TokenRejections, key, wait))
    }

    /// Forgets clients whose budgets are full again and penalties over.
    pub fn sweep(&self) {
        for bucket in [&self.bridge, &self.api, &self.rejections]
            .into_iter()
            .flatten()
        {
            bucket.sweep();
        }
        self.audited.sweep();
        let now = self.clock.now();
        let mut penalties = self
            .penalties
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        penalties.retain(|_, until| *until > now);
        penalties.shrink_to_fit();
    }

    /// Sweeps every [`SWEEP_EVERY`] while the limits are in use (the task
    /// ends when they are dropped). Needs a Tokio runtime.
    pub fn spawn_sweeper(self: &Arc<Self>) {
        let limits = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SWEEP_EVERY).await;
                match limits.upgrade() {
                    Some(limits) => limits.sweep(),
                    None => break,
                }
            }
        });
    }

    /// Keys held, all limits together (for tests and diagnostics).
    pub fn tracked(&self) -> usize {
        [&self.bridge, &self.api, &self.rejections]
            .into_iter()
            .flatten()
            .map(Bucket::len)
            .sum::<usize>()
            + self.audited.len()
            + self
                .penalties
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .len()
    }
}

#[cfg(test)]
mod tests;
