//! The session lifecycle: create, join, rotate. Plain protocol code over a
//! [`Store`]; time comes in as a parameter.

use crate::flows::binding::random_token;
use crate::store::{Session, SessionId, Store, StoreError, UpdateOutcome};
use serde_json::{Map, Value};
use std::fmt;
use std::time::Duration;

/// Attempts at a compare-and-set before giving up on a busy session.
const CAS_ATTEMPTS: usize = 5;

/// Largest `data` a session may hold, in bytes of compact JSON: a session is
/// read on every request of every site, so it stays small.
pub const MAX_DATA_BYTES: usize = 64 * 1024;

/// Whether `data` fits in a session (see [`MAX_DATA_BYTES`]).
pub fn data_fits(data: &Map<String, Value>) -> bool {
    serde_json::to_vec(data).is_ok_and(|bytes| bytes.len() <= MAX_DATA_BYTES)
}

/// Applies a JSON merge patch (RFC 7396) to `target`: members of an object
/// patch are merged recursively, `null` removes a member, anything else
/// replaces the target. Recursion is bounded by the JSON parser's depth limit.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(members) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (name, value) in members {
            if value.is_null() {
                target.remove(name);
            } else {
                merge_patch(target.entry(name.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// [`merge_patch`] of an object patch into a session's `data` (which stays an object).
pub fn merge_patch_data(data: &mut Map<String, Value>, patch: &Map<String, Value>) {
    let mut target = Value::Object(std::mem::take(data));
    merge_patch(&mut target, &Value::Object(patch.clone()));
    if let Value::Object(merged) = target {
        *data = merged;
    }
}

/// What a client's compare-and-set ([`SessionPolicy::patch_data`]) did.
#[derive(Debug, Clone, PartialEq)]
pub enum PatchOutcome {
    /// Saved; the session as stored now.
    Saved(Session),
    /// The client's version is stale; the stored one is given.
    Conflict { current_version: u64 },
    /// No such live session.
    Missing,
    /// The patched `data` would exceed [`MAX_DATA_BYTES`]; nothing was saved.
    TooLarge,
}

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

    /// The idle timeout.
    pub fn idle(&self) -> Duration {
        Duration::from_secs(self.idle_secs.unsigned_abs())
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

    /// One compare-and-set on behalf of a client that read `expected_version`
    /// (`If-Match`): applies the merge `patch` to `data` and saves only if the
    /// stored version is still `expected_version` — never retried here, the
    /// client decides (a retry must re-read what it is changing). Records `now`
    /// as last seen and slides the idle TTL.
    pub async fn patch_data<S: Store>(
        &self,
        store: &S,
        id: &SessionId,
        expected_version: u64,
        patch: &Map<String, Value>,
        now: i64,
    ) -> Result<PatchOutcome, SessionError> {
        let Some(mut session) = store
            .get_session(id)
            .await?
            .filter(|s| s.absolute_expires_at > now)
        else {
            return Ok(PatchOutcome::Missing);
        };
        if session.version != expected_version {
            return Ok(PatchOutcome::Conflict {
                current_version: session.version,
            });
        }
        merge_patch_data(&mut session.data, patch);
        if !data_fits(&session.data) {
            return Ok(PatchOutcome::TooLarge);
        }
        session.last_seen = now;
        session.version = expected_version.saturating_add(1);
        let Some(ttl) = self.ttl(&session, now) else {
            return Ok(PatchOutcome::Missing);
        };
        Ok(
            match store
                .update_session(&session, expected_version, ttl)
                .await?
            {
                UpdateOutcome::Saved => PatchOutcome::Saved(session),
                UpdateOutcome::Conflict { current_version } => {
                    PatchOutcome::Conflict { current_version }
                }
                UpdateOutcome::Missing => PatchOutcome::Missing,
            },
        )
    }

    /// Slides a live session's idle TTL from `now` (never past its absolute
    /// expiry) without writing the record; `false` when it is gone.
    pub async fn touch<S: Store>(
        &self,
        store: &S,
        session: &Session,
        now: i64,
    ) -> Result<bool, SessionError> {
        match self.ttl(session, now) {
            Some(ttl) => Ok(store.touch_session(&session.id, ttl).await?),
            None => Ok(false),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The examples of RFC 7396, Appendix A.
    #[test]
    fn merge_patch_follows_rfc_7396() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (target, patch, expected) in cases {
            let mut merged = target.clone();
            merge_patch(&mut merged, &patch);
            assert_eq!(merged, expected, "{target} + {patch}");
        }
    }

    #[test]
    fn data_stays_an_object_and_bounded() {
        let mut data = json!({"cart": ["tea"], "theme": "dark"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let patch = json!({"theme": null, "cart": ["tea", "cake"]});
        merge_patch_data(&mut data, patch.as_object().unwrap_or(&Map::new()));
        assert_eq!(
            Value::Object(data.clone()),
            json!({"cart": ["tea", "cake"]})
        );
        assert!(data_fits(&data));
        data.insert("big".to_owned(), Value::String("x".repeat(MAX_DATA_BYTES)));
        assert!(!data_fits(&data));
    }
}
