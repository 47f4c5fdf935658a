//! The [`Store`] contract on Redis: each operation as one command, script
//! or transaction (see the module notes of `store/redis` for why each is
//! shaped the way it is).

use super::codec::*;
use super::errors::pong;
use super::{Backend, CALL_TIMEOUT, RedisStore, bounded, cluster::cluster_ping};
use crate::store::{
    ConsumeOutcome, IssueOutcome, Session, SessionId, Store, StoreError, TokenRecord, TokenStatus,
    UpdateOutcome, encoding, read_then_put_token, session_key, token_key,
};
use redis::Value;
use std::time::Duration;

impl Store for RedisStore {
    async fn create_session(&self, session: &Session, ttl: Duration) -> Result<(), StoreError> {
        let json = encoding::encode_session(session)?;
        // NX: never overwrite an existing session (see the module notes).
        let reply = self
            .query(
                redis::cmd("SET")
                    .arg(session_key(&session.id))
                    .arg(json)
                    .arg("PX")
                    .arg(px(ttl))
                    .arg("NX"),
            )
            .await?;
        set_nx_result(reply)
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        let reply = self.query(redis::cmd("GET").arg(session_key(id))).await?;
        match bytes_reply(reply)? {
            None => Ok(None),
            Some(bytes) => encoding::decode_session(&bytes, id).map(Some),
        }
    }

    async fn update_session(
        &self,
        session: &Session,
        expected_version: u64,
        ttl: Duration,
    ) -> Result<UpdateOutcome, StoreError> {
        let json = encoding::encode_session(session)?;
        // One script on one key: the version check and the write are atomic.
        let mut script = UPDATE_SESSION.key(session_key(&session.id));
        script
            .arg(expected_version.to_string())
            .arg(json)
            .arg(px(ttl));
        let reply = self.invoke(&script).await?;
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

    async fn get_and_touch_session(
        &self,
        id: &SessionId,
        idle: Duration,
        now: i64,
    ) -> Result<Option<Session>, StoreError> {
        // One command reads the session and sets its TTL to the idle
        // timeout; only in the last idle period before the absolute expiry
        // does a second one cut the TTL short.
        let reply = self
            .query(
                redis::cmd("GETEX")
                    .arg(session_key(id))
                    .arg("PX")
                    .arg(px(idle)),
            )
            .await?;
        let Some(bytes) = bytes_reply(reply)? else {
            return Ok(None);
        };
        let session = encoding::decode_session(&bytes, id)?;
        let Some(ttl) = crate::store::sliding_ttl(&session, idle, now) else {
            return Ok(None);
        };
        if ttl < idle {
            match self.touch_session(id, ttl).await {
                Ok(_) | Err(StoreError::Unavailable(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Some(session))
    }

    async fn touch_session(&self, id: &SessionId, ttl: Duration) -> Result<bool, StoreError> {
        let reply = self
            .query(redis::cmd("PEXPIRE").arg(session_key(id)).arg(px(ttl)))
            .await?;
        match int_reply(&reply) {
            Some(n) => Ok(n > 0),
            None => Err(StoreError::Unavailable("unexpected redis reply".to_owned())),
        }
    }

    async fn delete_session(&self, id: &SessionId) -> Result<bool, StoreError> {
        let reply = self.query(redis::cmd("DEL").arg(session_key(id))).await?;
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
                    .arg(token_key(jti))
                    .arg(value)
                    .arg("PX")
                    .arg(px(ttl))
                    .arg("NX"),
            )
            .await?;
        set_nx_result(reply)
    }

    async fn put_token_for_session(
        &self,
        jti: &str,
        record: &TokenRecord,
        issuer: &str,
        now: i64,
        ttl: Duration,
    ) -> Result<IssueOutcome, StoreError> {
        if let Backend::Cluster(_) = self.backend {
            // The session and the token hash to different slots.
            return read_then_put_token(self, jti, record, issuer, now, ttl).await;
        }
        self.put_token_in_transaction(jti, record, issuer, now, ttl)
            .await
    }

    async fn peek_token(&self, jti: &str) -> Result<TokenStatus, StoreError> {
        let reply = self.query(redis::cmd("GET").arg(token_key(jti))).await?;
        let Some(bytes) = bytes_reply(reply)? else {
            return Ok(TokenStatus::Unknown);
        };
        Ok(match decode_token(&bytes)? {
            (TokenState::Pending, record) => TokenStatus::Pending(record),
            (TokenState::Consumed, record) => TokenStatus::Consumed(record),
        })
    }

    async fn consume_token(&self, jti: &str) -> Result<ConsumeOutcome, StoreError> {
        // One script on one key (see the module notes). Note: if this times
        // out, the script may still have run; a retry then sees a replay.
        let script = CONSUME_TOKEN.key(token_key(jti));
        let reply = self.invoke(&script).await?;
        let Some(bytes) = bytes_reply(reply)? else {
            return Ok(ConsumeOutcome::Unknown);
        };
        match decode_token(&bytes)? {
            (TokenState::Pending, record) => Ok(ConsumeOutcome::Redeemed(record)),
            (TokenState::Consumed, record) => Ok(ConsumeOutcome::Replayed(record)),
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if let Backend::Cluster(conn) = &self.backend {
            return bounded(CALL_TIMEOUT, cluster_ping(conn.clone())).await?;
        }
        pong(self.query(&redis::cmd("PING")).await?)
    }

    async fn session_ttl(&self, id: &SessionId) -> Result<Option<Duration>, StoreError> {
        let reply = self.query(redis::cmd("PTTL").arg(session_key(id))).await?;
        // -2: no such key; -1: a key without TTL (never written by us).
        match int_reply(&reply) {
            Some(ms) if ms >= 0 => Ok(Some(Duration::from_millis(ms.unsigned_abs()))),
            Some(_) => Ok(None),
            None => Err(StoreError::Unavailable("unexpected redis reply".to_owned())),
        }
    }

    async fn publish(&self, channel: &str, message: &str) -> Result<(), StoreError> {
        // PUBLISH reaches every subscriber of the deployment (on a cluster it
        // is propagated over the bus), so any node will do.
        self.query(redis::cmd("PUBLISH").arg(channel).arg(message))
            .await
            .map(|_| ())
    }
}
