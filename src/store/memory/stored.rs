//! A session as the memory store keeps it: its id and its compact JSON in
//! one allocation, which is also the key of the session map.
//!
//! Why this shape: at 1,000,000 sessions the map has 2^21 buckets (hashbrown
//! keeps at most 7/8 of them full, and 2^20 · 7/8 < 1,000,000), so each byte
//! of a bucket costs 2.1 bytes a session, and each separate allocation costs
//! its rounding up to the allocator's next size class. A `SessionId` key
//! (a 24-byte `String` in the bucket, 43 bytes on the heap rounded to 48)
//! beside a record whose JSON repeats the id (51 bytes of `"id":"…",`) paid
//! for the id three times. Here the bucket holds one 16-byte pointer (plus
//! the expiry, see `Maps::sessions`) and the id is written once, in front of
//! the JSON, which leaves it out (see [`encoding::encode_session_without_id`]).
//! The version is read from the JSON, where it already is, rather than
//! kept beside it for another 8 bytes of bucket.

use crate::store::{Session, SessionId, StoreError, encoding};
use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

/// Bytes of the id's length in front of it. Four, not one: a `SessionId`
/// built with `from_generated` may in principle be any length. The three
/// extra bytes seldom cost anything: at these sizes the allocator's size
/// classes are 32 bytes apart (the bench's 184-byte record takes 192).
const LEN: usize = size_of::<u32>();

/// `[id length: u32 LE][id][JSON without the id]`. Hashed, compared and
/// borrowed as its id alone, so the map is looked up with
/// `id.expose().as_bytes()` and needs no separate key.
pub(super) struct StoredSession(Box<[u8]>);

impl StoredSession {
    pub(super) fn encode(session: &Session) -> Result<Self, StoreError> {
        let id = session.id.expose().as_bytes();
        let len = u32::try_from(id.len())
            .map_err(|_| StoreError::Corrupt("session id too long".to_owned()))?;
        let json = encoding::encode_session_without_id(session)?;
        let mut bytes = Vec::with_capacity(LEN + id.len() + json.len());
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(id);
        bytes.extend_from_slice(json.as_bytes());
        Ok(Self(bytes.into_boxed_slice()))
    }

    /// The id's bytes and the JSON's. Only [`Self::encode`] builds the
    /// bytes, so the prefix is there and fits.
    fn parts(&self) -> (&[u8], &[u8]) {
        let (prefix, rest) = self.0.split_at(LEN);
        let mut len = [0; LEN];
        len.copy_from_slice(prefix);
        rest.split_at(u32::from_le_bytes(len) as usize)
    }

    /// The JSON, without the id.
    pub(super) fn json(&self) -> &[u8] {
        self.parts().1
    }

    /// The session. `id` is the one it was found under, which is its own.
    pub(super) fn decode(&self, id: &SessionId) -> Result<Session, StoreError> {
        encoding::decode_session_without_id(self.json(), id)
    }

    /// The version, for compare-and-set, without decoding the rest.
    pub(super) fn version(&self) -> Result<u64, StoreError> {
        encoding::session_version_without_id(self.json())
    }
}

/// The key to look a session up with in a map of [`StoredSession`]s.
pub(super) fn key(id: &SessionId) -> &[u8] {
    id.expose().as_bytes()
}

// Hash, Eq and Borrow agree: all three see the id alone, as `[u8]`.
impl Borrow<[u8]> for StoredSession {
    fn borrow(&self) -> &[u8] {
        self.parts().0
    }
}

impl Hash for StoredSession {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts().0.hash(state);
    }
}

impl PartialEq for StoredSession {
    fn eq(&self, other: &Self) -> bool {
        self.parts().0 == other.parts().0
    }
}

impl Eq for StoredSession {}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn session(id: &str, version: u64) -> Session {
        Session {
            id: SessionId::from_generated(id.to_owned()),
            user_id: Some("ada".to_owned()),
            auth_ref: None,
            created_at: 1_800_000_000,
            last_seen: 1_800_000_060,
            absolute_expires_at: 1_800_043_200,
            origin_site: "account".to_owned(),
            joined_sites: vec!["account".to_owned()],
            data: serde_json::Map::new(),
            version,
        }
    }

    #[test]
    fn keeps_the_id_once_and_round_trips() {
        let s = session(&"s".repeat(43), 3);
        let stored = StoredSession::encode(&s).unwrap();
        let json = std::str::from_utf8(stored.json()).unwrap();
        assert!(!json.contains(s.id.expose()), "{json}");
        assert_eq!(stored.decode(&s.id).unwrap(), s);
        assert_eq!(stored.version().unwrap(), 3);
    }

    #[test]
    fn is_a_map_key_by_its_id_alone() {
        let mut map = HashMap::new();
        for id in ["", "a", &"s".repeat(43), &"{\"x\"".repeat(100)] {
            map.insert(StoredSession::encode(&session(id, 1)).unwrap(), id.len());
        }
        for id in ["", "a", &"s".repeat(43), &"{\"x\"".repeat(100)] {
            let sid = SessionId::from_generated(id.to_owned());
            let (stored, len) = map.get_key_value(key(&sid)).unwrap();
            assert_eq!(*len, id.len());
            assert_eq!(stored.decode(&sid).unwrap(), session(id, 1));
        }
        let newer = StoredSession::encode(&session("a", 2)).unwrap();
        assert!(newer == StoredSession::encode(&session("a", 1)).unwrap());
        assert!(map.contains_key(key(&SessionId::from_generated("a".to_owned()))));
        assert!(!map.contains_key(key(&SessionId::from_generated("b".to_owned()))));
    }
}
