//! The session lifecycle: create, join, rotate. Plain protocol code over a
//! [`Store`]; time comes in as a parameter.

use crate::flows::binding::random_token;
use crate::store::{Session, SessionId, Store, StoreError, UpdateOutcome};
use serde_json::{Map, Value};
use std::fmt;
use std::time::Duration;

/// Attempts at a compare-and-set before giving up on a busy session.
const CAS_ATTEMPTS: usize = 5;

/// Idle and absolute lifetimes, in seconds.
#[derive(Clone, Copy, Debug)]
pub struct SessionPolicy {
    pub idle_secs: i64,
    pub absolute_secs: i64,
}

/// Why a session operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    Store(StoreError),
    NotFound,
    /// Kept changing under us; try again.
    Busy,
    RandomFailed,
}

impl SessionError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Store(e) => e.code(),
            Self::NotFound => "session_not_found",
            Self::Busy => "session_busy",
            Self::RandomFailed => "internal_error",
        }
    }
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Store(e) => e.fmt(f),
            Self::NotFound => f.write_str("the session does not exist or has expired"),
            Self::Busy => f.write_str("the session is being changed by another request"),
            Self::RandomFailed => f.write_str("the system random generator failed"),
        }
    }
}

impl std::error::Error for SessionError {}

impl From<StoreError> for SessionError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// What a new session starts with.
pub struct NewSession<'a> {
    pub site: &'a str,
    pub user_id: Option<String>,
    pub auth_ref: Option<String>,
    pub data: Map<String, Value>,
}

impl SessionPolicy {
    /// The store TTL of `session` at `now`: the idle timeout, cut short by the
    /// absolute expiry. `None` once the session is past its absolute expiry.
    pub fn ttl(&self, session: &Session, now: i64) -> Option<Duration> {
        let remaining = session.absolute_expires_at.saturating_sub(now);
        let secs = self.idle_secs.min(remaining);
        (secs > 0).then(|| Duration::from_secs(secs.unsigned_abs()))
    }

    /// Unix time at which `session` expires if idle from `now`.
    pub fn expires_at(&self, session: &Session, now: i64) -> i64 {
        now.saturating_add(self.idle_secs)
            .min(session.absolute_expires_at)
    }

    /// Makes and stores a new session with a fresh random ID.
    pub async fn create<S: Store>(
        &self,
        store: &S,
        new: NewSession<'_>,
        now: i64,
    ) -> Result<Session, SessionError> {
        let id = SessionId::from_generated(random_token().ok_or(SessionError::RandomFailed)?);
        let session = Session {
            id,
            user_id: new.user_id,
            auth_ref: new.auth_ref,
            created_at: now,
            last_seen: now,
            absolute_expires_at: now.saturating_add(self.absolute_secs),
            origin_site: new.site.to_owned(),
            joined_sites: vec![new.site.to_owned()],
            data: new.data,
            version: 1,
        };
        let ttl = self.ttl(&session, now).ok_or(SessionError::NotFound)?;
        store.create_session(&session, ttl).await?;
        Ok(session)
    }

    /// A live session that `site` may use, or `None`.
    pub async fn load_for_site<S: Store>(
        &self,
        store: &S,
        id: &SessionId,
        site: &str,
        now: i64,
    ) -> Result<Option<Session>, SessionError> {
        let session = store.get_session(id).await?;
        Ok(session.filter(|s| s.is_joined_by(site) && s.absolute_expires_at > now))
    }

    /// Applies `change` and saves with compare-and-set, retrying on a
    /// concurrent write; also records `now` as last seen and slides the TTL.
    pub async fn modify<S: Store>(
        &self,
        store: &S,
        mut session: Session,
        now: i64,
        change: impl Fn(&mut Session),
    ) -> Result<Session, SessionError> {
        for _ in 0..CAS_ATTEMPTS {
            let expected = session.version;
            change(&mut session);
            session.last_seen = now;
            session.version = expected + 1;
            let ttl = self.ttl(&session, now).ok_or(SessionError::NotFound)?;
            match store.update_session(&session, expected, ttl).await? {
                UpdateOutcome::Saved => return Ok(session),
                UpdateOutcome::Missing => return Err(SessionError::NotFound),
                UpdateOutcome::Conflict { .. } => {
                    session = store
                        .get_session(&session.id)
                        .await?
                        .ok_or(SessionError::NotFound)?;
                }
            }
        }
        Err(SessionError::Busy)
    }

    /// Adds `site` to the sites that share `session`.
    pub async fn join<S: Store>(
        &self,
        store: &S,
        session: Session,
        site: &str,
        now: i64,
    ) -> Result<Session, SessionError> {
        self.modify(store, session, now, |s| {
            if !s.is_joined_by(site) {
                s.joined_sites.push(site.to_owned());
            }
        })
        .await
    }

    /// A NEW session ID for a login or privilege change: the data moves over
    /// and the old ID dies (session fixation defence). Only `site` holds the
    /// new ID; other sites re-join through the bridge.
    pub async fn rotate<S: Store>(
        &self,
        store: &S,
        old: Session,
        site: &str,
        user_id: Option<String>,
        now: i64,
    ) -> Result<Session, SessionError> {
        let new = NewSession {
            site,
            user_id,
            auth_ref: None,
            data: old.data,
        };
        let fresh = self.create(store, new, now).await?;
        store.delete_session(&old.id).await?;
        Ok(fresh)
    }
}
