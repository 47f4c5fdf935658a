//! Where sessions and bridge-token records live.
//!
//! Two backends implement [`Store`]: [`MemoryStore`] (the embedded default,
//! one process) and [`RedisStore`] (one server, Sentinel or Cluster). Keys
//! are namespaced (`sb:s:` sessions, `sb:t:` tokens) so a token id can never
//! address a session. Every write touches exactly one key, so it runs
//! unchanged on Redis Cluster; the one operation that reads a second key
//! (recording a token for a session) reads then writes on a Cluster.

pub mod encoding;
mod memory;
mod redis;
pub mod resilient;
mod types;

pub use self::memory::MemoryStore;
pub use self::redis::RedisStore;
pub use types::{
    ConsumeOutcome, IssueOutcome, Session, SessionId, TokenRecord, TokenStatus, UpdateOutcome,
};

use std::fmt;
use std::future::Future;
use std::time::Duration;

/// Why a store operation failed. Never carries a session ID or a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The backend cannot be reached or did not answer in time. Callers fail
    /// closed: no token is issued or redeemed.
    Unavailable(String),
    /// A record with this key already exists (ids are random: a collision is a bug or an attack).
    AlreadyExists,
    /// A stored value could not be decoded.
    Corrupt(String),
}

impl StoreError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "store_unavailable",
            Self::AlreadyExists => "store_conflict",
            Self::Corrupt(_) => "store_corrupt",
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable(why) => write!(f, "store unavailable: {why}"),
            Self::AlreadyExists => f.write_str("record already exists"),
            Self::Corrupt(why) => write!(f, "stored record unreadable: {why}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// Storage for sessions and bridge-token records.
///
/// TTLs are given by the caller and are always positive; a record is gone
/// (reads as missing) once its TTL has passed.
pub trait Store: Send + Sync {
    /// Stores a new session under `sb:s:{id}` with `ttl`. Never overwrites:
    /// an existing id gives [`StoreError::AlreadyExists`].
    fn create_session(
        &self,
        session: &Session,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The live session with this id, or `None` when missing or expired.
    fn get_session(
        &self,
        id: &SessionId,
    ) -> impl Future<Output = Result<Option<Session>, StoreError>> + Send;

    /// Compare-and-set: replaces the stored session with `session` (and sets
    /// its TTL to `ttl`) only if the stored version equals `expected_version`.
    /// The caller has already set `session.version` to the new version.
    /// Atomic with respect to every other operation on the same session.
    fn update_session(
        &self,
        session: &Session,
        expected_version: u64,
        ttl: Duration,
    ) -> impl Future<Output = Result<UpdateOutcome, StoreError>> + Send;

    /// Sets a live session's TTL to `ttl` without changing the record or its
    /// version (sliding expiry on reads); `false` when there is no such session.
    fn touch_session(
        &self,
        id: &SessionId,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Reads a live session and slides its TTL to `idle`, cut short by its
    /// absolute expiry (`now` is Unix seconds): one round trip where the
    /// backend can. `None` when there is no such session or it is past its
    /// absolute expiry. When the read succeeds but the TTL cannot be set
    /// because the store stopped answering, the session is still returned.
    fn get_and_touch_session(
        &self,
        id: &SessionId,
        idle: Duration,
        now: i64,
    ) -> impl Future<Output = Result<Option<Session>, StoreError>> + Send {
        get_then_touch(self, id, idle, now)
    }

    /// Deletes a session; `true` when it existed.
    fn delete_session(
        &self,
        id: &SessionId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records a pending token under `sb:t:{jti}` with `ttl`. Never
    /// overwrites: an existing jti gives [`StoreError::AlreadyExists`].
    fn put_token(
        &self,
        jti: &str,
        record: &TokenRecord,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records a pending token for `record.session_id`, in one round trip
    /// where the backend can, but only if that session is live, usable by
    /// `issuer` (it started there or joined it) and `now` (Unix seconds) is
    /// before its absolute expiry; otherwise answers
    /// [`IssueOutcome::NoSession`] and leaves no record (Redis writes one in
    /// the transaction that reads the session and deletes it; should the
    /// delete fail, a record no token was handed out for stays until its
    /// TTL). The stored record's `receiver_joined` is set from the session
    /// (has `record.aud` joined it?), whatever the caller passed. Never
    /// overwrites or deletes an existing jti, like [`Store::put_token`].
    /// The caller hands out the token only after `Recorded`.
    ///
    /// The default reads the session, then writes the token: two round
    /// trips, and a logout in between still gets a token recorded — which
    /// is harmless, as redeeming it only sets a cookie naming a deleted
    /// session.
    fn put_token_for_session(
        &self,
        jti: &str,
        record: &TokenRecord,
        issuer: &str,
        now: i64,
        ttl: Duration,
    ) -> impl Future<Output = Result<IssueOutcome, StoreError>> + Send {
        read_then_put_token(self, jti, record, issuer, now, ttl)
    }

    /// The single atomic consumption step on one key: a pending token
    /// becomes consumed and is returned as [`ConsumeOutcome::Redeemed`]; an
    /// already consumed one is [`ConsumeOutcome::Replayed`] (with the record,
    /// so the caller can revoke its session); a missing or expired one is
    /// [`ConsumeOutcome::Unknown`]. Of any number of concurrent calls for one
    /// jti, exactly one sees `Redeemed`. The record keeps its TTL.
    fn consume_token(
        &self,
        jti: &str,
    ) -> impl Future<Output = Result<ConsumeOutcome, StoreError>> + Send;

    /// Reads a token record's state without changing it (the refusal path
    /// uses it to tell a replay from a first, refused use).
    fn peek_token(&self, jti: &str)
    -> impl Future<Output = Result<TokenStatus, StoreError>> + Send;

    /// Whether the backend answers.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The remaining lifetime of a live session (`session show`), or `None`
    /// when there is no such session.
    fn session_ttl(
        &self,
        id: &SessionId,
    ) -> impl Future<Output = Result<Option<Duration>, StoreError>> + Send;

    /// Tells the other bridge nodes sharing this store about an event (Redis
    /// pub/sub `PUBLISH channel message`; see [`EVENTS_CHANNEL`]). Fire and
    /// forget: nobody listening is not an error. A single-process store has
    /// no one to tell, so the default does nothing.
    fn publish(
        &self,
        channel: &str,
        message: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = (channel, message);
        async { Ok(()) }
    }
}

/// The TTL that slides a session read at `now`: `idle`, cut short by the
/// absolute expiry; `None` once that has passed.
pub fn sliding_ttl(session: &Session, idle: Duration, now: i64) -> Option<Duration> {
    let remaining = u64::try_from(session.absolute_expires_at.saturating_sub(now)).ok()?;
    (remaining > 0).then(|| idle.min(Duration::from_secs(remaining)))
}

/// [`Store::get_and_touch_session`] in two steps: read, then set the TTL.
pub async fn get_then_touch<S: Store + ?Sized>(
    store: &S,
    id: &SessionId,
    idle: Duration,
    now: i64,
) -> Result<Option<Session>, StoreError> {
    let Some(session) = store.get_session(id).await? else {
        return Ok(None);
    };
    let Some(ttl) = sliding_ttl(&session, idle, now) else {
        return Ok(None);
    };
    match store.touch_session(id, ttl).await {
        Ok(_) | Err(StoreError::Unavailable(_)) => Ok(Some(session)),
        Err(e) => Err(e),
    }
}

/// [`Store::put_token_for_session`] in two steps: read the session, then
/// record the token.
pub async fn read_then_put_token<S: Store + ?Sized>(
    store: &S,
    jti: &str,
    record: &TokenRecord,
    issuer: &str,
    now: i64,
    ttl: Duration,
) -> Result<IssueOutcome, StoreError> {
    let Some(session) = store
        .get_session(&record.session_id)
        .await?
        .filter(|s| s.is_joined_by(issuer) && s.absolute_expires_at > now)
    else {
        return Ok(IssueOutcome::NoSession);
    };
    let record = TokenRecord {
        receiver_joined: session.is_joined_by(&record.aud),
        ..record.clone()
    };
    store.put_token(jti, &record, ttl).await?;
    Ok(IssueOutcome::Recorded {
        receiver_joined: record.receiver_joined,
    })
}

/// The pub/sub channel of session events (`{"type":"logout","session_fp":…}`).
pub const EVENTS_CHANNEL: &str = "sb:events";

/// The configured backend.
#[derive(Clone)]
pub enum AnyStore {
    Memory(MemoryStore),
    /// Redis behind the outage layer ([`resilient::Resilient`]).
    Redis(resilient::Resilient<RedisStore>),
}

impl AnyStore {
    /// A handle for one server worker (see [`RedisStore::for_worker`]); the
    /// memory store is one map, shared.
    #[must_use]
    pub fn for_worker(&self) -> Self {
        match self {
            Self::Memory(store) => Self::Memory(store.clone()),
            Self::Redis(store) => Self::Redis(store.with_inner(store.inner().for_worker())),
        }
    }

    /// Short name for logs and `/readyz`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            Self::Redis(_) => "redis",
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Memory($store) => $call.await,
            AnyStore::Redis($store) => $call.await,
        }
    };
}

impl Store for AnyStore {
    async fn create_session(&self, session: &Session, ttl: Duration) -> Result<(), StoreError> {
        dispatch!(self, s => s.create_session(session, ttl))
    }
    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        dispatch!(self, s => s.get_session(id))
    }
    async fn update_session(
        &self,
        session: &Session,
        expected_version: u64,
        ttl: Duration,
    ) -> Result<UpdateOutcome, StoreError> {
        dispatch!(self, s => s.update_session(session, expected_version, ttl))
    }
    async fn touch_session(&self, id: &SessionId, ttl: Duration) -> Result<bool, StoreError> {
        dispatch!(self, s => s.touch_session(id, ttl))
    }
    async fn get_and_touch_session(
        &self,
        id: &SessionId,
        idle: Duration,
        now: i64,
    ) -> Result<Option<Session>, StoreError> {
        dispatch!(self, s => s.get_and_touch_session(id, idle, now))
    }
    async fn delete_session(&self, id: &SessionId) -> Result<bool, StoreError> {
        dispatch!(self, s => s.delete_session(id))
    }
    async fn put_token(
        &self,
        jti: &str,
        record: &TokenRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.put_token(jti, record, ttl))
    }
    async fn put_token_for_session(
        &self,
        jti: &str,
        record: &TokenRecord,
        issuer: &str,
        now: i64,
        ttl: Duration,
    ) -> Result<IssueOutcome, StoreError> {
        dispatch!(self, s => s.put_token_for_session(jti, record, issuer, now, ttl))
    }
    async fn consume_token(&self, jti: &str) -> Result<ConsumeOutcome, StoreError> {
        dispatch!(self, s => s.consume_token(jti))
    }
    async fn peek_token(&self, jti: &str) -> Result<TokenStatus, StoreError> {
        dispatch!(self, s => s.peek_token(jti))
    }
    async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.ping())
    }
    async fn session_ttl(&self, id: &SessionId) -> Result<Option<Duration>, StoreError> {
        dispatch!(self, s => s.session_ttl(id))
    }
    async fn publish(&self, channel: &str, message: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.publish(channel, message))
    }
}

/// Key of a session record.
pub fn session_key(id: &SessionId) -> String {
    format!("sb:s:{}", id.expose())
}

/// Key of a token record.
pub fn token_key(jti: &str) -> String {
    format!("sb:t:{jti}")
}
