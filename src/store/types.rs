//! The records the store keeps.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A session ID: 32 random bytes, base64url. Its `Debug` and `Display` never
/// show the value, so it cannot leak into logs by accident; use
/// [`SessionId::expose`] where the raw value is really needed (cookie, store key).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(String);

impl SessionId {
    /// Wraps a value read from a cookie, header or record. Returns `None`
    /// unless it has the shape of an ID we issue (43 base64url characters).
    pub fn parse(raw: &str) -> Option<Self> {
        let well_formed = raw.len() == 43
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        well_formed.then(|| Self(raw.to_owned()))
    }

    /// Wraps a freshly generated value.
    pub fn from_generated(raw: String) -> Self {
        Self(raw)
    }

    /// The raw value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(..)")
    }
}

/// The shared ("mesh") session record (`sb:s:{id}`). Times are Unix seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: SessionId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// A reference to credentials held elsewhere; never a credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_ref: Option<String>,
    pub created_at: i64,
    pub last_seen: i64,
    pub absolute_expires_at: i64,
    pub origin_site: String,
    pub joined_sites: Vec<String>,
    pub data: serde_json::Map<String, serde_json::Value>,
    pub version: u64,
}

impl Session {
    /// Whether `site` may use this session: it started there or joined it.
    pub fn is_joined_by(&self, site: &str) -> bool {
        self.origin_site == site || self.joined_sites.iter().any(|s| s == site)
    }
}

/// A bridge token's record (`sb:t:{jti}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    pub session_id: SessionId,
    /// The receiving site's id.
    pub aud: String,
    /// `BASE64URL(SHA-256(verifier))`.
    pub challenge: String,
    /// The receiving site had already joined the session when the token was
    /// issued, so redeeming it needs no session write. Set by the store in
    /// [`super::Store::put_token_for_session`].
    pub receiver_joined: bool,
}

/// What [`super::Store::put_token_for_session`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssueOutcome {
    /// The token is recorded; whether the receiving site had already joined.
    Recorded { receiver_joined: bool },
    /// No usable session (missing, past its absolute expiry, or not the
    /// issuing site's): no record is left for the token.
    NoSession,
}

/// What [`super::Store::consume_token`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsumeOutcome {
    /// It was pending and is now consumed.
    Redeemed(TokenRecord),
    /// It had been consumed before: a replay.
    Replayed(TokenRecord),
    /// No such token, or it expired.
    Unknown,
}

/// What [`super::Store::peek_token`] found, without changing anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenStatus {
    Pending(TokenRecord),
    Consumed(TokenRecord),
    Unknown,
}

/// What [`super::Store::update_session`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpdateOutcome {
    Saved,
    /// The stored version differs; it is given.
    Conflict {
        current_version: u64,
    },
    /// No such session.
    Missing,
}
