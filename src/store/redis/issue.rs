//! Recording a token for a live session in one round trip (in the steady
//! state: see below), on one server or behind Sentinel ([`super::super::Store::put_token_for_session`]; Cluster
//! keeps the session and the token in different slots and reads, then
//! writes, instead).
//!
//! One `MULTI`/`EXEC` transaction reads the session and writes the token
//! record (`SET … NX`, as every creation); the session is then checked
//! here. Why not a Lua script that checks before it writes: Redis 7 spends
//! 5–6 µs of its CPU on a script that does nothing but this `GET` and `SET`
//! (the arguments, the script context, the writes' bookkeeping), and 1.6 µs
//! on the transaction. On a machine that runs the bridge and Redis on the
//! same cores that is a measurable part of every hand-off (BENCHMARKS.md).
//!
//! The price of writing first is a second write when the check does not
//! agree with what was written, both off the steady-state path:
//!
//! - The record is written as "the receiver has already joined", which is
//!   what it says for every hand-off after a site's first. When the session
//!   says otherwise, the record is rewritten (`SET … XX KEEPTTL`) before
//!   the token leaves.
//! - When there is no usable session (missing, past its absolute expiry,
//!   not the issuer's, unreadable), the record is deleted and nothing else
//!   happens.
//!
//! Security invariant: the signed token leaves the bridge only after this
//! returns [`IssueOutcome::Recorded`], and its jti is random; so a record
//! that is corrected or deleted here was never redeemable in between, and a
//! record whose deletion fails is an unusable leftover until its TTL ends.
//! The transaction makes the read and the write one step, as the script
//! did: a token is recorded only if its session was live at that instant.

use super::codec::{bytes_reply, encode_token, px, set_nx_result};
use super::{Op, RedisStore};
use crate::store::encoding::decode_membership;
use crate::store::{IssueOutcome, StoreError, TokenRecord, session_key, token_key};
use redis::Value;
use std::time::Duration;

impl RedisStore {
    /// [`super::super::Store::put_token_for_session`] as one transaction
    /// (see the module notes).
    pub(super) async fn put_token_in_transaction(
        &self,
        jti: &str,
        record: &TokenRecord,
        issuer: &str,
        now: i64,
        ttl: Duration,
    ) -> Result<IssueOutcome, StoreError> {
        let key = token_key(jti);
        let optimistic = TokenRecord {
            receiver_joined: true,
            ..record.clone()
        };
        let mut transaction = redis::pipe();
        transaction
            .atomic()
            .cmd("GET")
            .arg(session_key(&record.session_id))
            .cmd("SET")
            .arg(&key)
            .arg(encode_token(&optimistic)?)
            .arg("PX")
            .arg(px(ttl))
            .arg("NX");
        let (session, written) = two_replies(self.run(Op::Pipeline(&transaction)).await?)?;
        // An existing jti is another record: it is reported, never touched.
        set_nx_result(written)?;
        let read = bytes_reply(session).and_then(|bytes| {
            bytes
                .map(|bytes| decode_membership(&bytes, &record.session_id))
                .transpose()
        });
        let membership = match read {
            Ok(membership) => membership,
            Err(e) => {
                self.discard(&key).await;
                return Err(e);
            }
        };
        let Some(membership) =
            membership.filter(|m| m.is_joined_by(issuer) && m.absolute_expires_at > now)
        else {
            self.discard(&key).await;
            return Ok(IssueOutcome::NoSession);
        };
        let receiver_joined = membership.is_joined_by(&record.aud);
        if !receiver_joined {
            let corrected = TokenRecord {
                receiver_joined: false,
                ..record.clone()
            };
            let reply = self
                .query(
                    redis::cmd("SET")
                        .arg(&key)
                        .arg(encode_token(&corrected)?)
                        .arg("XX")
                        .arg("KEEPTTL"),
                )
                .await?;
            // Nil: the record is gone (a flush, an eviction); no token then.
            set_nx_result(reply).map_err(|_| {
                StoreError::Unavailable("the token record was lost while recording it".to_owned())
            })?;
        }
        Ok(IssueOutcome::Recorded { receiver_joined })
    }

    /// Deletes a token record that no token was handed out for. Failing to
    /// is harmless (see the module notes), so it is only logged.
    async fn discard(&self, key: &str) {
        if let Err(e) = self.query(redis::cmd("DEL").arg(key)).await {
            tracing::warn!(error = %e, "an unused token record was left to expire");
        }
    }
}

/// The replies of a two-command transaction, in order.
fn two_replies(reply: Value) -> Result<(Value, Value), StoreError> {
    match reply {
        Value::Array(items) if items.len() == 2 => {
            let mut items = items.into_iter();
            match (items.next(), items.next()) {
                (Some(first), Some(second)) => Ok((first, second)),
                _ => Err(unexpected()),
            }
        }
        _ => Err(unexpected()),
    }
}

fn unexpected() -> StoreError {
    StoreError::Unavailable("unexpected redis reply".to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_reply_has_two_parts() {
        let (first, second) = two_replies(Value::Array(vec![Value::Nil, Value::Okay])).unwrap();
        assert_eq!(first, Value::Nil);
        assert_eq!(second, Value::Okay);
        for wrong in [
            Value::Nil,
            Value::Okay,
            Value::Array(vec![Value::Okay]),
            Value::Array(vec![Value::Nil, Value::Okay, Value::Okay]),
        ] {
            assert!(matches!(
                two_replies(wrong),
                Err(StoreError::Unavailable(_))
            ));
        }
    }
}
