//! The Redis backend: one server by URL, through a reconnecting
//! [`ConnectionManager`].
//!
//! Security invariants, and why the code is shaped the way it is:
//!
//! - **One key per operation.** Every command and every Lua script touches
//!   exactly one key (`sb:s:{id}` or `sb:t:{jti}`). A script is atomic on one
//!   server, and a single-key script is also legal on Redis Cluster (all its
//!   keys hash to one slot), so the same code is correct on one server,
//!   behind Sentinel and on Cluster. No read-then-write across round trips:
//!   that would let two concurrent redemptions both see a pending token.
//! - **Token consumption is one script on one key.** Check-and-mark happens
//!   inside Redis, so of any number of concurrent `consume_token` calls for a
//!   jti exactly one sees the pending state; the rest see consumed (replay).
//!   The consumed record is kept until its TTL ends (`KEEPTTL`), so a replay
//!   within the token's lifetime is recognised as a replay, not as unknown.
//! - **Creation is `SET … NX`.** Session ids and jtis are random; an existing
//!   key means a collision (a bug) or an attempt to plant a record, and a
//!   plain `SET` would silently overwrite someone else's session or reset a
//!   consumed token back to pending. `NX` makes "create" never overwrite.
//! - **Session updates are a compare-and-set script** on the stored
//!   `version`, so a stale writer can never overwrite a newer session.
//! - **Every record has a TTL** (`PX`, at least 1 ms): nothing lives forever.
//! - **Errors never carry keys, session ids or tokens**: a Redis error is
//!   reduced to a fixed, short reason before it leaves this module.
//! - **Fail closed, fast.** Connection and response timeouts and a bounded
//!   number of reconnect attempts make a dead Redis an
//!   [`StoreError::Unavailable`] within a few seconds, never a hang; the
//!   manager reconnects by itself once Redis is back.

use super::{
    ConsumeOutcome, Session, SessionId, Store, StoreError, TokenRecord, TokenStatus, UpdateOutcome,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script, Value};
use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

/// Each TCP connect (with the handshake) gives up after this long.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);
/// Each command gives up after this long.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Reconnect attempts after the first one, per reconnection.
const RECONNECT_RETRIES: usize = 2;
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
const RECONNECT_MAX_DELAY: Duration = Duration::from_millis(400);
/// Upper bound for a TTL in milliseconds (about 35 000 years): keeps
/// `now + PX` far from overflowing inside Redis.
const MAX_TTL_MS: u64 = 1 << 50;

/// Lua numbers are doubles: versions at or above this cannot be compared
/// exactly, so the update script refuses them (fail closed).
const MAX_EXACT_VERSION: &str = "9007199254740992"; // 2^53

/// Compare-and-set of a session on its `version`.
///
/// KEYS[1] = `sb:s:{id}`; ARGV[1] = expected version; ARGV[2] = the new JSON;
/// ARGV[3] = TTL in ms. Replies `{0}` missing, `{1}` saved,
/// `{2, current_version}` conflict, `{3}` stored value unreadable.
static UPDATE_SESSION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"
local current = redis.call('GET', KEYS[1])
if not current then
  return {{0}}
end
local ok, doc = pcall(cjson.decode, current)
if not ok or type(doc) ~= 'table' then
  return {{3}}
end
local version = doc['version']
if type(version) ~= 'number' or version < 0 or version % 1 ~= 0 or version >= {MAX_EXACT_VERSION} then
  return {{3}}
end
if version ~= tonumber(ARGV[1]) then
  return {{2, version}}
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return {{1}}
"
    ))
});

/// The single atomic consumption step of a token.
///
/// KEYS[1] = `sb:t:{jti}`. Missing → nil. Pending (`p…`) → rewritten to
/// consumed (`c…`) keeping its TTL, and the OLD value is returned (its `p`
/// tells the caller it redeemed it). Consumed (`c…`) → returned unchanged (a
/// replay). Anything else is returned unchanged and reported as corrupt.
static CONSUME_TOKEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local value = redis.call('GET', KEYS[1])
if not value then
  return false
end
if string.sub(value, 1, 1) == 'p' then
  redis.call('SET', KEYS[1], 'c' .. string.sub(value, 2), 'KEEPTTL')
end
return value
",
    )
});

/// Sessions and tokens in Redis. Clones share one connection manager.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
}

impl fmt::Debug for RedisStore {
    // The manager's own Debug prints the connection info (URL, user): keep it out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RedisStore")
    }
}

impl RedisStore {
    /// Connects to one Redis server (`redis://…` or `rediss://…`, when built
    /// with TLS support) and keeps reconnecting by itself after it is lost.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the URL is invalid or the server does
    /// not answer within a few seconds.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        // The URL may hold a password: never echo it.
        let client = redis::Client::open(url)
            .map_err(|_| StoreError::Unavailable("invalid redis url".to_owned()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(RECONNECT_RETRIES)
            .set_min_delay(RECONNECT_MIN_DELAY)
            .set_max_delay(RECONNECT_MAX_DELAY)
            .set_exponent_base(2.0);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(Self { conn })
    }

    async fn query(&self, cmd: &redis::Cmd) -> Result<Value, StoreError> {
        let mut conn = self.conn.clone();
        cmd.query_async::<Value>(&mut conn)
            .await
            .map_err(|e| unavailable(&e))
    }
}

/// A Redis error as a short, fixed reason: never the server's text (it may
/// quote a key) and never the URL.
fn unavailable(err: &RedisError) -> StoreError {
    let why = if err.is_timeout() {
        "redis timed out"
    } else if err.is_connection_refusal() {
        "redis refused the connection"
    } else if err.is_connection_dropped() {
        "redis connection lost"
    } else if err.is_io_error() {
        "redis i/o error"
    } else {
        match err.kind() {
            redis::ErrorKind::AuthenticationFailed => "redis authentication failed",
            redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading) => "redis is loading",
            redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly) => "redis is read-only",
            redis::ErrorKind::Server(redis::ServerErrorKind::MasterDown) => "redis master down",
            redis::ErrorKind::Server(redis::ServerErrorKind::ClusterDown) => "redis cluster down",
            redis::ErrorKind::Server(redis::ServerErrorKind::TryAgain) => {
                "redis asked to try again"
            }
            redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm) => "redis denied permission",
            redis::ErrorKind::Server(_) | redis::ErrorKind::Extension => "redis command failed",
            redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType => {
                "redis reply unreadable"
            }
            _ => "redis error",
        }
    };
    StoreError::Unavailable(why.to_owned())
}

/// TTL for `PX`: whole milliseconds, at least 1 (a 0 or sub-millisecond TTL
/// would be an error in Redis, or would round to "no expiry").
fn px(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_TTL_MS)
}

fn corrupt(why: &str) -> StoreError {
    StoreError::Corrupt(why.to_owned())
}

/// Reply of `SET … NX`: OK when set, nil when the key existed.
fn set_nx_result(reply: Value) -> Result<(), StoreError> {
    match reply {
        Value::Okay => Ok(()),
        Value::SimpleString(s) if s == "OK" => Ok(()),
        Value::Nil => Err(StoreError::AlreadyExists),
        _ => Err(StoreError::Unavailable("unexpected redis reply".to_owned())),
    }
}

/// A string reply (bulk, simple or verbatim) as bytes; nil as `None`.
fn bytes_reply(reply: Value) -> Result<Option<Vec<u8>>, StoreError> {
    match reply {
        Value::Nil => Ok(None),
        Value::BulkString(bytes) => Ok(Some(bytes)),
        Value::SimpleString(s) => Ok(Some(s.into_bytes())),
        Value::VerbatimString { text, .. } => Ok(Some(text.into_bytes())),
        _ => Err(StoreError::Unavailable("unexpected redis reply".to_owned())),
    }
}

fn int_reply(value: &Value) -> Option<i64> {
    match value {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

fn decode_session(bytes: &[u8], id: &SessionId) -> Result<Session, StoreError> {
    let session: Session =
        serde_json::from_slice(bytes).map_err(|_| corrupt("session is not valid JSON"))?;
    // The key is derived from the id; a record claiming another id was not written by us.
    if &session.id != id {
        return Err(corrupt("session id does not match its key"));
    }
    Ok(session)
}

/// Token value: `<state>|<aud>|<challenge>|<session id>`, state `p` (pending)
/// or `c` (consumed). The state is the first byte so the consume script can
/// flip it without parsing.
fn encode_token(record: &TokenRecord) -> Result<String, StoreError> {
    let field_ok = |s: &str| !s.is_empty() && !s.contains('|');
    if !field_ok(&record.aud)
        || !field_ok(&record.challenge)
        || SessionId::parse(record.session_id.expose()).is_none()
    {
        return Err(corrupt("token record cannot be encoded"));
    }
    Ok(format!(
        "p|{}|{}|{}",
        record.aud,
        record.challenge,
        record.session_id.expose()
    ))
}

enum TokenState {
    Pending,
    Consumed,
}

fn decode_token(bytes: &[u8]) -> Result<(TokenState, TokenRecord), StoreError> {
    let text = std::str::from_utf8(bytes).map_err(|_| corrupt("token record is not UTF-8"))?;
    let mut parts = text.splitn(4, '|');
    let (Some(state), Some(aud), Some(challenge), Some(sid)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(corrupt("token record is malformed"));
    };
    let state = match state {
        "p" => TokenState::Pending,
        "c" => TokenState::Consumed,
        _ => return Err(corrupt("token record has an unknown state")),
    };
    let session_id = SessionId::parse(sid).ok_or_else(|| corrupt("token record is malformed"))?;
    if aud.is_empty() || challenge.is_empty() {
        return Err(corrupt("token record is malformed"));
    }
    Ok((
        state,
        TokenRecord {
            session_id,
            aud: aud.to_owned(),
            challenge: challenge.to_owned(),
        },
    ))
}

impl Store for RedisStore {
    async fn create_session(&self, session: &Session, ttl: Duration) -> Result<(), StoreError> {
        let json =
            serde_json::to_string(session).map_err(|_| corrupt("session cannot be encoded"))?;
        // NX: never overwrite an existing session (see the module notes).
        let reply = self
            .query(
                redis::cmd("SET")
                    .arg(super::session_key(&session.id))
                    .arg(json)
                    .arg("PX")
                    .arg(px(ttl))
                    .arg("NX"),
            )
            .await?;
        set_nx_result(reply)
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        let reply = self
            .query(redis::cmd("GET").arg(super::session_key(id)))
            .await?;
        match bytes_reply(reply)? {
            None => Ok(None),
            Some(bytes) => decode_session(&bytes, id).map(Some),
        }
    }

    async fn update_session(
        &self,
        session: &Session,
        expected_version: u64,
        ttl: Duration,
    ) -> Result<UpdateOutcome, StoreError> {
        let json =
            serde_json::to_string(session).map_err(|_| corrupt("session cannot be encoded"))?;
        let mut conn = self.conn.clone();
        // One script on one key: the version check and the write are atomic.
        let reply: Value = UPDATE_SESSION
            .key(super::session_key(&session.id))
            .arg(expected_version.to_string())
            .arg(json)
            .arg(px(ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        let Value::Array(items) = reply else {
            return Err(StoreError::Unavailable("unexpected redis reply".to_owned()));
        };
        match items.first().and_then(int_reply) {
            Some(0) => Ok(UpdateOutcome::Missing),
            Some(1) => Ok(UpdateOutcome::Saved),
            Some(2) => items
                .get(1)
                .and_then(int_reply)
                .and_then(|v| u64::try_from(v).ok())
                .map(|current_version| UpdateOutcome::Conflict { current_version })
                .ok_or_else(|| StoreError::Unavailable("unexpected redis reply".to_owned())),
            Some(3) => Err(corrupt("stored session has no valid version")),
            _ => Err(StoreError::Unavailable("unexpected redis reply".to_owned())),
        }
    }

    async fn touch_session(&self, id: &SessionId, ttl: Duration) -> Result<bool, StoreError> {
        let reply = self
            .query(
                redis::cmd("PEXPIRE")
                    .arg(super::session_key(id))
                    .arg(px(ttl)),
            )
            .await?;
        match int_reply(&reply) {
            Some(n) => Ok(n > 0),
            None => Err(StoreError::Unavailable("unexpected redis reply".to_owned())),
        }
    }

    async fn delete_session(&self, id: &SessionId) -> Result<bool, StoreError> {
        let reply = self
            .query(redis::cmd("DEL").arg(super::session_key(id)))
            .await?;
        match int_reply(&reply) {
            Some(n) => Ok(n > 0),
            None => Err(StoreError::Unavailable("unexpected redis reply".to_owned())),
        }
    }

    async fn put_token(
        &self,
        jti: &str,
        record: &TokenRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let value = encode_token(record)?;
        // NX: a jti is written once; overwriting could turn a consumed token
        // back into a pending one.
        let reply = self
            .query(
                redis::cmd("SET")
                    .arg(super::token_key(jti))
                    .arg(value)
                    .arg("PX")
                    .arg(px(ttl))
                    .arg("NX"),
            )
            .await?;
        set_nx_result(reply)
    }

    async fn peek_token(&self, jti: &str) -> Result<TokenStatus, StoreError> {
        let reply = self
            .query(redis::cmd("GET").arg(super::token_key(jti)))
            .await?;
        let Some(bytes) = bytes_reply(reply)? else {
            return Ok(TokenStatus::Unknown);
        };
        Ok(match decode_token(&bytes)? {
            (TokenState::Pending, record) => TokenStatus::Pending(record),
            (TokenState::Consumed, record) => TokenStatus::Consumed(record),
        })
    }

    async fn consume_token(&self, jti: &str) -> Result<ConsumeOutcome, StoreError> {
        let mut conn = self.conn.clone();
        // One script on one key (see the module notes). Note: if this times
        // out, the script may still have run; a retry then sees a replay.
        let reply: Value = CONSUME_TOKEN
            .key(super::token_key(jti))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        let Some(bytes) = bytes_reply(reply)? else {
            return Ok(ConsumeOutcome::Unknown);
        };
        match decode_token(&bytes)? {
            (TokenState::Pending, record) => Ok(ConsumeOutcome::Redeemed(record)),
            (TokenState::Consumed, record) => Ok(ConsumeOutcome::Replayed(record)),
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let reply = self.query(&redis::cmd("PING")).await?;
        match reply {
            Value::SimpleString(s) if s == "PONG" => Ok(()),
            Value::BulkString(b) if b == b"PONG" => Ok(()),
            Value::Okay => Ok(()),
            _ => Err(StoreError::Unavailable("unexpected redis reply".to_owned())),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn record() -> TokenRecord {
        TokenRecord {
            session_id: SessionId::from_generated("A".repeat(43)),
            aud: "shop".to_owned(),
            challenge: "c_-".repeat(14) + "x",
        }
    }

    #[test]
    fn token_encoding_round_trips() {
        let encoded = encode_token(&record()).unwrap();
        assert!(encoded.starts_with("p|shop|"));
        let (state, decoded) = decode_token(encoded.as_bytes()).unwrap();
        assert!(matches!(state, TokenState::Pending));
        assert_eq!(decoded, record());
        let consumed = format!("c{}", &encoded[1..]);
        let (state, decoded) = decode_token(consumed.as_bytes()).unwrap();
        assert!(matches!(state, TokenState::Consumed));
        assert_eq!(decoded, record());
    }

    #[test]
    fn ambiguous_or_broken_tokens_are_refused() {
        let mut bad = record();
        bad.aud = "sh|op".to_owned();
        assert!(matches!(encode_token(&bad), Err(StoreError::Corrupt(_))));
        for raw in [
            "",
            "p",
            "x|shop|c|",
            "p|shop|c|short",
            "p||c|AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(
                matches!(decode_token(raw.as_bytes()), Err(StoreError::Corrupt(_))),
                "{raw}"
            );
        }
        assert!(matches!(
            decode_token(&[0xff, b'|']),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn ttl_is_at_least_one_millisecond() {
        assert_eq!(px(Duration::ZERO), 1);
        assert_eq!(px(Duration::from_micros(10)), 1);
        assert_eq!(px(Duration::from_secs(30)), 30_000);
        assert_eq!(px(Duration::MAX), MAX_TTL_MS);
    }
}
