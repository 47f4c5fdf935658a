//! What the Redis backend stores and runs: the Lua scripts, the token
//! record's encoding, and the reading of replies.

use super::super::{SessionId, StoreError, TokenRecord};
use redis::{Script, Value};
use std::sync::LazyLock;
use std::time::Duration;

/// Upper bound for a TTL in milliseconds (about 35 000 years): keeps
/// `now + PX` far from overflowing inside Redis.
pub(super) const MAX_TTL_MS: u64 = 1 << 50;

/// Lua numbers are doubles: versions at or above this cannot be compared
/// exactly, so the update script refuses them (fail closed).
pub(super) const MAX_EXACT_VERSION: &str = "9007199254740992"; // 2^53

/// Compare-and-set of a session on its `version`.
///
/// KEYS[1] = `sb:s:{id}`; ARGV[1] = expected version; ARGV[2] = the new JSON;
/// ARGV[3] = TTL in ms. Replies `{0}` missing, `{1}` saved,
/// `{2, current_version}` conflict, `{3}` stored value unreadable.
pub(super) static UPDATE_SESSION: LazyLock<Script> = LazyLock::new(|| {
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
-- `v`, or `version` in records written before the compact form.
local version = doc['v'] or doc['version']
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
pub(super) static CONSUME_TOKEN: LazyLock<Script> = LazyLock::new(|| {
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

/// TTL for `PX`: whole milliseconds, at least 1 (a 0 or sub-millisecond TTL
/// would be an error in Redis, or would round to "no expiry").
pub(super) fn px(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_TTL_MS)
}

pub(super) fn corrupt(why: &str) -> StoreError {
    StoreError::Corrupt(why.to_owned())
}

/// Reply of `SET … NX`: OK when set, nil when the key existed.
pub(super) fn set_nx_result(reply: Value) -> Result<(), StoreError> {
    match reply {
        Value::Okay => Ok(()),
        Value::SimpleString(s) if s == "OK" => Ok(()),
        Value::Nil => Err(StoreError::AlreadyExists),
        _ => Err(StoreError::Unavailable("unexpected redis reply".to_owned())),
    }
}

/// A string reply (bulk, simple or verbatim) as bytes; nil as `None`.
pub(super) fn bytes_reply(reply: Value) -> Result<Option<Vec<u8>>, StoreError> {
    match reply {
        Value::Nil => Ok(None),
        Value::BulkString(bytes) => Ok(Some(bytes)),
        Value::SimpleString(s) => Ok(Some(s.into_bytes())),
        Value::VerbatimString { text, .. } => Ok(Some(text.into_bytes())),
        _ => Err(StoreError::Unavailable("unexpected redis reply".to_owned())),
    }
}

pub(super) fn int_reply(value: &Value) -> Option<i64> {
    match value {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

/// Token value: `<state>|<aud>|<challenge>|<session id>|<joined>`, state `p`
/// (pending) or `c` (consumed), joined `j` when the receiving site had
/// already joined the session at issue time, else `-`. The state is the
/// first byte so the consume script can flip it without parsing.
pub(super) fn encode_token(record: &TokenRecord) -> Result<String, StoreError> {
    let flag = if record.receiver_joined { 'j' } else { '-' };
    Ok(format!("{}|{flag}", encode_token_fields(record)?))
}

/// The value without its joined flag.
fn encode_token_fields(record: &TokenRecord) -> Result<String, StoreError> {
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

pub(super) enum TokenState {
    Pending,
    Consumed,
}

pub(super) fn decode_token(bytes: &[u8]) -> Result<(TokenState, TokenRecord), StoreError> {
    let text = std::str::from_utf8(bytes).map_err(|_| corrupt("token record is not UTF-8"))?;
    let mut parts = text.split('|');
    let (Some(state), Some(aud), Some(challenge), Some(sid)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(corrupt("token record is malformed"));
    };
    // Records written before the flag existed have four fields: not joined.
    let receiver_joined = match (parts.next(), parts.next()) {
        (None, None) | (Some("-"), None) => false,
        (Some("j"), None) => true,
        _ => return Err(corrupt("token record is malformed")),
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
            receiver_joined,
        },
    ))
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
            receiver_joined: false,
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
