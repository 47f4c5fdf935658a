//! How a session is written down in a store: compact JSON with one-letter
//! field names. A session is the store's biggest record and there is one
//! per visitor, so every byte counts (Redis rounds a value up to its
//! allocator's next size class: 250 bytes of JSON cost 320).
//!
//! | field | name | field | name |
//! |---|---|---|---|
//! | `id` | `id` | `absolute_expires_at` | `x` |
//! | `user_id` | `u` | `origin_site` | `o` |
//! | `auth_ref` | `a` | `joined_sites` | `j` |
//! | `created_at` | `c` | `data` | `d` |
//! | `last_seen` | `l` | `version` | `v` |
//!
//! Records written with the long names (as [`Session`]'s own serde form,
//! used by earlier releases) are still read. The Redis script that looks
//! inside a session (`version`) knows both.

use super::{Session, SessionId, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Readers do not depend on the field order.
#[derive(Serialize)]
struct Write<'a> {
    /// Left out for a store that keeps the id beside the record.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a SessionId>,
    #[serde(rename = "x")]
    absolute_expires_at: i64,
    #[serde(rename = "o")]
    origin_site: &'a str,
    #[serde(rename = "j")]
    joined_sites: &'a [String],
    #[serde(rename = "u", skip_serializing_if = "Option::is_none")]
    user_id: &'a Option<String>,
    #[serde(rename = "a", skip_serializing_if = "Option::is_none")]
    auth_ref: &'a Option<String>,
    #[serde(rename = "c")]
    created_at: i64,
    #[serde(rename = "l")]
    last_seen: i64,
    #[serde(rename = "d")]
    data: &'a Map<String, Value>,
    #[serde(rename = "v")]
    version: u64,
}

#[derive(Deserialize)]
struct Read {
    /// Absent only from records written without it (the memory store's).
    #[serde(default)]
    id: Option<SessionId>,
    #[serde(default, rename = "u", alias = "user_id")]
    user_id: Option<String>,
    #[serde(default, rename = "a", alias = "auth_ref")]
    auth_ref: Option<String>,
    #[serde(rename = "c", alias = "created_at")]
    created_at: i64,
    #[serde(rename = "l", alias = "last_seen")]
    last_seen: i64,
    #[serde(rename = "x", alias = "absolute_expires_at")]
    absolute_expires_at: i64,
    #[serde(rename = "o", alias = "origin_site")]
    origin_site: String,
    #[serde(rename = "j", alias = "joined_sites")]
    joined_sites: Vec<String>,
    #[serde(rename = "d", alias = "data")]
    data: Map<String, Value>,
    #[serde(rename = "v", alias = "version")]
    version: u64,
}

/// What recording a token needs of a stored session: whose it is and until
/// when. Skipping the rest (`d` above all, which can be large) builds no
/// strings or maps for it.
#[derive(Deserialize)]
struct ReadMembership {
    #[serde(default)]
    id: Option<SessionId>,
    #[serde(rename = "x", alias = "absolute_expires_at")]
    absolute_expires_at: i64,
    #[serde(rename = "o", alias = "origin_site")]
    origin_site: String,
    #[serde(rename = "j", alias = "joined_sites")]
    joined_sites: Vec<String>,
}

/// The sites that share a stored session, and its absolute expiry.
#[derive(Debug, PartialEq, Eq)]
pub struct Membership {
    pub absolute_expires_at: i64,
    origin_site: String,
    joined_sites: Vec<String>,
}

impl Membership {
    /// Has `site` started or joined the session? (As [`Session::is_joined_by`].)
    #[must_use]
    pub fn is_joined_by(&self, site: &str) -> bool {
        self.origin_site == site || self.joined_sites.iter().any(|s| s == site)
    }
}

/// Reads the [`Membership`] of a stored session kept under `id`'s key, with
/// the same checks as [`decode_session`].
pub fn decode_membership(bytes: &[u8], id: &SessionId) -> Result<Membership, StoreError> {
    let corrupt = |why: &str| StoreError::Corrupt(why.to_owned());
    let read: ReadMembership =
        serde_json::from_slice(bytes).map_err(|_| corrupt("session is not valid JSON"))?;
    if read.id.as_ref() != Some(id) {
        return Err(corrupt("session id does not match its key"));
    }
    Ok(Membership {
        absolute_expires_at: read.absolute_expires_at,
        origin_site: read.origin_site,
        joined_sites: read.joined_sites,
    })
}

/// Just the version of a record [`encode_session_without_id`] wrote: compare-and-set
/// needs no more, and skipping the rest builds no strings or maps.
#[derive(Deserialize)]
struct ReadVersion {
    #[serde(rename = "v")]
    version: u64,
}

/// The stored form of `session`.
pub fn encode_session(session: &Session) -> Result<String, StoreError> {
    write(session, Some(&session.id))
}

fn write(session: &Session, id: Option<&SessionId>) -> Result<String, StoreError> {
    serde_json::to_string(&Write {
        id,
        user_id: &session.user_id,
        auth_ref: &session.auth_ref,
        created_at: session.created_at,
        last_seen: session.last_seen,
        absolute_expires_at: session.absolute_expires_at,
        origin_site: &session.origin_site,
        joined_sites: &session.joined_sites,
        data: &session.data,
        version: session.version,
    })
    .map_err(|_| StoreError::Corrupt("session cannot be encoded".to_owned()))
}

/// `read` as the session kept under `id`.
fn session_from(read: Read, id: &SessionId) -> Session {
    Session {
        id: id.clone(),
        user_id: read.user_id,
        auth_ref: read.auth_ref,
        created_at: read.created_at,
        last_seen: read.last_seen,
        absolute_expires_at: read.absolute_expires_at,
        origin_site: read.origin_site,
        joined_sites: read.joined_sites,
        data: read.data,
        version: read.version,
    }
}

/// Reads a stored session kept under `id`'s key.
pub fn decode_session(bytes: &[u8], id: &SessionId) -> Result<Session, StoreError> {
    let corrupt = |why: &str| StoreError::Corrupt(why.to_owned());
    let read: Read =
        serde_json::from_slice(bytes).map_err(|_| corrupt("session is not valid JSON"))?;
    // The key is derived from the id; a record claiming another id (or none)
    // was not written by us.
    if read.id.as_ref() != Some(id) {
        return Err(corrupt("session id does not match its key"));
    }
    Ok(session_from(read, id))
}

/// The stored form of `session` without its id, for a store that keeps the
/// id beside the record (the memory store). Not for Redis: its readers check
/// the id inside the record against the key.
pub fn encode_session_without_id(session: &Session) -> Result<String, StoreError> {
    write(session, None)
}

/// Reads what [`encode_session_without_id`] wrote; the session's id is `id`,
/// the one it was kept under.
pub fn decode_session_without_id(bytes: &[u8], id: &SessionId) -> Result<Session, StoreError> {
    let read: Read = serde_json::from_slice(bytes)
        .map_err(|_| StoreError::Corrupt("session is not valid JSON".to_owned()))?;
    Ok(session_from(read, id))
}

/// The version of a record [`encode_session_without_id`] wrote, without
/// decoding the rest.
pub fn session_version_without_id(bytes: &[u8]) -> Result<u64, StoreError> {
    serde_json::from_slice::<ReadVersion>(bytes)
        .map(|read| read.version)
        .map_err(|_| StoreError::Corrupt("session is not valid JSON".to_owned()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session {
            id: SessionId::from_generated("A".repeat(43)),
            user_id: Some("ada".to_owned()),
            auth_ref: None,
            created_at: 1_800_000_000,
            last_seen: 1_800_000_060,
            absolute_expires_at: 1_800_043_200,
            origin_site: "account".to_owned(),
            joined_sites: vec!["account".to_owned(), "shop".to_owned()],
            data: serde_json::json!({"cart": [], "n": 12345678901234567u64, "f": 0.1})
                .as_object()
                .cloned()
                .unwrap(),
            version: 7,
        }
    }

    #[test]
    fn round_trips_exactly_and_compactly() {
        let encoded = encode_session(&session()).unwrap();
        assert!(encoded.contains("\"x\":1800043200"), "{encoded}");
        assert!(!encoded.contains("absolute_expires_at"));
        assert!(!encoded.contains("\"a\""), "absent fields are left out");
        let id = session().id;
        assert_eq!(decode_session(encoded.as_bytes(), &id).unwrap(), session());
    }

    #[test]
    fn membership_is_read_from_either_form_and_checked_like_a_session() {
        let id = session().id;
        let compact = encode_session(&session()).unwrap();
        let long = serde_json::to_string(&session()).unwrap();
        for stored in [&compact, &long] {
            let membership = decode_membership(stored.as_bytes(), &id).unwrap();
            assert_eq!(membership.absolute_expires_at, 1_800_043_200);
            assert!(membership.is_joined_by("account"), "origin");
            assert!(membership.is_joined_by("shop"), "joined");
            assert!(!membership.is_joined_by("checkout"));
            assert!(!membership.is_joined_by("acc"), "whole ids only");
        }
        // A site id written in `d` does not count as joined.
        let mut with_data = session();
        with_data.joined_sites = vec!["account".to_owned()];
        with_data
            .data
            .insert("j".to_owned(), serde_json::json!(["checkout"]));
        let stored = encode_session(&with_data).unwrap();
        assert!(
            !decode_membership(stored.as_bytes(), &id)
                .unwrap()
                .is_joined_by("checkout")
        );
        let other = SessionId::from_generated("B".repeat(43));
        assert!(matches!(
            decode_membership(compact.as_bytes(), &other),
            Err(StoreError::Corrupt(_))
        ));
        for broken in [&b"not json"[..], b"{}", br#"{"id":1}"#] {
            assert!(matches!(
                decode_membership(broken, &id),
                Err(StoreError::Corrupt(_))
            ));
        }
    }

    #[test]
    fn reads_the_long_names_of_earlier_records() {
        let long = serde_json::to_string(&session()).unwrap();
        assert!(long.contains("absolute_expires_at"));
        let id = session().id;
        assert_eq!(decode_session(long.as_bytes(), &id).unwrap(), session());
    }

    #[test]
    fn refuses_a_record_under_another_id() {
        let encoded = encode_session(&session()).unwrap();
        let other = SessionId::from_generated("B".repeat(43));
        assert!(matches!(
            decode_session(encoded.as_bytes(), &other),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn without_id_round_trips_and_is_the_full_form_minus_the_id() {
        let fields = |json: &str| -> Map<String, Value> { serde_json::from_str(json).unwrap() };
        let mut full = fields(&encode_session(&session()).unwrap());
        let short = encode_session_without_id(&session()).unwrap();
        assert!(full.remove("id").is_some());
        // The same names and values, whatever the order of either form.
        assert_eq!(fields(&short), full);
        let id = session().id;
        assert_eq!(
            decode_session_without_id(short.as_bytes(), &id).unwrap(),
            session()
        );
        assert_eq!(session_version_without_id(short.as_bytes()).unwrap(), 7);
    }

    #[test]
    fn without_id_takes_the_id_from_the_caller() {
        let short = encode_session_without_id(&session()).unwrap();
        assert!(!short.contains(session().id.expose()), "{short}");
        let other = SessionId::from_generated("B".repeat(43));
        let read = decode_session_without_id(short.as_bytes(), &other).unwrap();
        assert_eq!(read.id, other);
        assert_eq!(
            read,
            Session {
                id: other,
                ..session()
            }
        );
    }

    #[test]
    fn without_id_refuses_what_is_not_a_record() {
        let id = session().id;
        assert!(matches!(
            decode_session_without_id(b"{\"v\":1}", &id),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            session_version_without_id(b"not json"),
            Err(StoreError::Corrupt(_))
        ));
    }
}
