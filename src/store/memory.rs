//! The embedded store: one process, expiry honoured, memory reclaimed.

use super::{
    ConsumeOutcome, IssueOutcome, Session, SessionId, Store, StoreError, TokenRecord, TokenStatus,
    UpdateOutcome,
};
use crate::clock::Clock;
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use stored::{StoredSession, key};

mod stored;

/// Writes between two sweeps of expired entries. A sweep is O(live entries),
/// so the cost per write stays constant while a stream of tokens that are
/// never redeemed cannot grow the maps without bound.
const SWEEP_EVERY: u64 = 1024;

struct Entry<T> {
    value: T,
    /// Unix milliseconds.
    expires_at: i64,
}

#[derive(Clone)]
struct TokenEntry {
    record: TokenRecord,
    consumed: bool,
}

struct Maps {
    /// Each session's expiry (Unix milliseconds), keyed by the session
    /// itself: its id and compact JSON in one allocation, looked up by id
    /// (see [`stored`] for why; the JSON takes about a fifth of the memory
    /// of the decoded record). A bucket is 24 bytes. The expiry is a `Cell`
    /// because std's map lends its key only beside a shared borrow of the
    /// value (`get_key_value`), and a read that decodes the session also
    /// slides its expiry, in one lookup, under the lock.
    sessions: HashMap<StoredSession, Cell<i64>>,
    tokens: HashMap<String, Entry<TokenEntry>>,
}

/// An in-process store. Clones share the same data.
#[derive(Clone)]
pub struct MemoryStore {
    maps: Arc<Mutex<Maps>>,
    writes: Arc<AtomicU64>,
    clock: Clock,
}

fn millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

impl MemoryStore {
    /// An empty store that reads time from `clock`.
    pub fn new(clock: Clock) -> Self {
        Self {
            maps: Arc::new(Mutex::new(Maps {
                sessions: HashMap::new(),
                tokens: HashMap::new(),
            })),
            writes: Arc::new(AtomicU64::new(0)),
            clock,
        }
    }

    fn now_ms(&self) -> i64 {
        (self.clock.now().unix_timestamp_nanos() / 1_000_000) as i64
    }

    fn lock(&self) -> MutexGuard<'_, Maps> {
        // A panic while holding the lock cannot leave a map half-updated
        // (every update is a single insert or field write), so a poisoned
        // lock is safe to keep using.
        self.maps
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts a write and, every [`SWEEP_EVERY`] writes, drops expired entries.
    fn after_write(&self, maps: &mut Maps, now: i64) {
        if self.writes.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            maps.sessions.retain(|_, expires_at| expires_at.get() > now);
            maps.tokens.retain(|_, e| e.expires_at > now);
        }
    }

    /// Inserts a pending token unless a live one has this jti.
    fn insert_token(
        &self,
        maps: &mut Maps,
        jti: &str,
        record: TokenRecord,
        ttl: Duration,
        now: i64,
    ) -> Result<(), StoreError> {
        if maps.tokens.get(jti).is_some_and(|e| e.expires_at > now) {
            return Err(StoreError::AlreadyExists);
        }
        maps.tokens.insert(
            jti.to_owned(),
            Entry {
                value: TokenEntry {
                    record,
                    consumed: false,
                },
                expires_at: now.saturating_add(millis(ttl)),
            },
        );
        self.after_write(maps, now);
        Ok(())
    }

    /// Stores `stored`, replacing any session under its id. The old entry
    /// goes first: `HashMap::insert` keeps an equal key already present,
    /// and the key here is the record.
    fn put_session(maps: &mut Maps, id: &SessionId, stored: StoredSession, expires_at: i64) {
        maps.sessions.remove(key(id));
        maps.sessions.insert(stored, Cell::new(expires_at));
    }

    /// Number of entries held, expired or not (for tests of reclamation).
    pub fn entry_count(&self) -> usize {
        let maps = self.lock();
        maps.sessions.len() + maps.tokens.len()
    }
}

impl Store for MemoryStore {
    async fn create_session(&self, session: &Session, ttl: Duration) -> Result<(), StoreError> {
        let stored = StoredSession::encode(session)?;
        let now = self.now_ms();
        let mut maps = self.lock();
        if maps
            .sessions
            .get(key(&session.id))
            .is_some_and(|expires_at| expires_at.get() > now)
        {
            return Err(StoreError::AlreadyExists);
        }
        let expires_at = now.saturating_add(millis(ttl));
        Self::put_session(&mut maps, &session.id, stored, expires_at);
        self.after_write(&mut maps, now);
        Ok(())
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        let now = self.now_ms();
        // Copy the bytes under the lock, decode outside it.
        let json = {
            let maps = self.lock();
            let Some((stored, _)) = maps
                .sessions
                .get_key_value(key(id))
                .filter(|(_, expires_at)| expires_at.get() > now)
            else {
                return Ok(None);
            };
            stored.json().to_vec()
        };
        super::encoding::decode_session_without_id(&json, id).map(Some)
    }

    async fn update_session(
        &self,
        session: &Session,
        expected_version: u64,
        ttl: Duration,
    ) -> Result<UpdateOutcome, StoreError> {
        let stored = StoredSession::encode(session)?;
        let now = self.now_ms();
        let mut maps = self.lock();
        let Some((current, _)) = maps
            .sessions
            .get_key_value(key(&session.id))
            .filter(|(_, expires_at)| expires_at.get() > now)
        else {
            return Ok(UpdateOutcome::Missing);
        };
        let current_version = current.version()?;
        if current_version != expected_version {
            return Ok(UpdateOutcome::Conflict { current_version });
        }
        let expires_at = now.saturating_add(millis(ttl));
        Self::put_session(&mut maps, &session.id, stored, expires_at);
        self.after_write(&mut maps, now);
        Ok(UpdateOutcome::Saved)
    }

    async fn touch_session(&self, id: &SessionId, ttl: Duration) -> Result<bool, StoreError> {
        let now = self.now_ms();
        let maps = self.lock();
        match maps
            .sessions
            .get(key(id))
            .filter(|expires_at| expires_at.get() > now)
        {
            Some(expires_at) => {
                expires_at.set(now.saturating_add(millis(ttl)));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn get_and_touch_session(
        &self,
        id: &SessionId,
        idle: Duration,
        now: i64,
    ) -> Result<Option<Session>, StoreError> {
        let now_ms = self.now_ms();
        let maps = self.lock();
        let Some((stored, expires_at)) = maps
            .sessions
            .get_key_value(key(id))
            .filter(|(_, expires_at)| expires_at.get() > now_ms)
        else {
            return Ok(None);
        };
        let session = stored.decode(id)?;
        let Some(ttl) = super::sliding_ttl(&session, idle, now) else {
            return Ok(None);
        };
        expires_at.set(now_ms.saturating_add(millis(ttl)));
        Ok(Some(session))
    }

    async fn delete_session(&self, id: &SessionId) -> Result<bool, StoreError> {
        let now = self.now_ms();
        let mut maps = self.lock();
        Ok(maps
            .sessions
            .remove(key(id))
            .is_some_and(|expires_at| expires_at.get() > now))
    }

    async fn put_token(
        &self,
        jti: &str,
        record: &TokenRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let now = self.now_ms();
        let mut maps = self.lock();
        self.insert_token(&mut maps, jti, record.clone(), ttl, now)
    }

    async fn put_token_for_session(
        &self,
        jti: &str,
        record: &TokenRecord,
        issuer: &str,
        now: i64,
        ttl: Duration,
    ) -> Result<IssueOutcome, StoreError> {
        let now_ms = self.now_ms();
        // One lock: the session check and the token write are one step.
        let mut maps = self.lock();
        let Some(session) = maps
            .sessions
            .get_key_value(key(&record.session_id))
            .filter(|(_, expires_at)| expires_at.get() > now_ms)
            .map(|(stored, _)| stored.decode(&record.session_id))
            .transpose()?
            .filter(|s| s.is_joined_by(issuer) && s.absolute_expires_at > now)
        else {
            return Ok(IssueOutcome::NoSession);
        };
        let receiver_joined = session.is_joined_by(&record.aud);
        let record = TokenRecord {
            receiver_joined,
            ..record.clone()
        };
        self.insert_token(&mut maps, jti, record, ttl, now_ms)?;
        Ok(IssueOutcome::Recorded { receiver_joined })
    }

    async fn consume_token(&self, jti: &str) -> Result<ConsumeOutcome, StoreError> {
        let now = self.now_ms();
        // The lock makes check-and-mark one step: of concurrent callers,
        // exactly one sees the entry unconsumed.
        let mut maps = self.lock();
        let Some(entry) = maps.tokens.get_mut(jti).filter(|e| e.expires_at > now) else {
            return Ok(ConsumeOutcome::Unknown);
        };
        let record = entry.value.record.clone();
        if entry.value.consumed {
            Ok(ConsumeOutcome::Replayed(record))
        } else {
            entry.value.consumed = true;
            Ok(ConsumeOutcome::Redeemed(record))
        }
    }

    async fn peek_token(&self, jti: &str) -> Result<TokenStatus, StoreError> {
        let now = self.now_ms();
        let maps = self.lock();
        Ok(match maps.tokens.get(jti).filter(|e| e.expires_at > now) {
            None => TokenStatus::Unknown,
            Some(e) if e.value.consumed => TokenStatus::Consumed(e.value.record.clone()),
            Some(e) => TokenStatus::Pending(e.value.record.clone()),
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn session_ttl(&self, id: &SessionId) -> Result<Option<Duration>, StoreError> {
        let now = self.now_ms();
        let maps = self.lock();
        Ok(maps
            .sessions
            .get(key(id))
            .map(Cell::get)
            .filter(|&expires_at| expires_at > now)
            .map(|expires_at| Duration::from_millis((expires_at - now).unsigned_abs())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn record() -> TokenRecord {
        TokenRecord {
            session_id: SessionId::from_generated("s".repeat(43)),
            aud: "shop".to_owned(),
            challenge: "c".repeat(43),
            receiver_joined: false,
        }
    }

    #[tokio::test]
    async fn expired_tokens_are_unknown_and_reclaimed() {
        let clock = Clock::manual(OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap());
        let store = MemoryStore::new(clock.clone());
        for i in 0..(SWEEP_EVERY * 3) {
            store
                .put_token(&format!("t{i}"), &record(), Duration::from_secs(30))
                .await
                .unwrap();
            clock.advance(Duration::from_secs(1));
        }
        assert_eq!(
            store.consume_token("t0").await.unwrap(),
            ConsumeOutcome::Unknown
        );
        assert!(
            store.entry_count() <= (SWEEP_EVERY as usize) + 31,
            "{}",
            store.entry_count()
        );
    }
}
