//! Redeeming a bridge token on the receiving site: verify, bind, consume
//! once, join. Shared by flow A's `/bridge/accept` and flow B's `/bridge/exchange`.

use super::binding;
use super::return_to::validate_return_to;
use super::{Bridge, FlowError};
use crate::audit::{AuditEvent, EventKind, RequestContext};
use crate::sessions::SessionError;
use crate::store::{ConsumeOutcome, Session, SessionId, Store, TokenRecord, TokenStatus};
use crate::topology::Site;

/// `/bridge/accept` on B: the session to set and where to go.
#[derive(Debug)]
pub struct Accepted {
    pub session_id: SessionId,
    /// The session as joined, when this hand-off had to read and write it.
    pub session: Option<Session>,
    pub return_to: String,
}

/// What the browser presents with a token: its verifier, and the issuer
/// its hand-off started with (flow A's state cookie names it; flow B's
/// script sends the origin it asked).
#[derive(Clone, Copy)]
pub struct Presented<'a> {
    pub verifier: &'a str,
    pub issuer: Option<&'a str>,
}

impl Bridge {
    /// On B (`receiver`): verify, bind to `state` (the browser's verifier and
    /// the issuer its hand-off started with), consume once, join.
    pub async fn accept(
        &self,
        receiver: &Site,
        token: &str,
        presented: Option<Presented<'_>>,
        now: i64,
        ctx: &RequestContext,
    ) -> Result<Accepted, FlowError> {
        let rejected = |e: &FlowError, claims: Option<&crate::token::BridgeClaims>| {
            let mut event =
                AuditEvent::new(EventKind::TokenRejected, &receiver.id).reason(e.code());
            // Once the signature held, the issuer and jti are facts worth keeping.
            if let Some(claims) = claims {
                event = event.partner(&claims.iss).jti(&claims.jti);
            }
            self.audit.record(&event, ctx);
        };
        let claims = match self.tokens.verify(token, &receiver.id, now) {
            Ok(claims) => claims,
            Err(e) => {
                let e = FlowError::from(e);
                rejected(&e, None);
                return Err(e);
            }
        };
        let result = self
            .accept_inner(receiver, &claims, presented, now, ctx)
            .await;
        // Replays have their own event; store outages are not the token's fault.
        if let Err(e) = &result
            && !matches!(
                e,
                FlowError::Replayed | FlowError::Session(SessionError::Store(_))
            )
        {
            rejected(e, Some(&claims));
        }
        result
    }

    async fn accept_inner(
        &self,
        receiver: &Site,
        claims: &crate::token::BridgeClaims,
        presented: Option<Presented<'_>>,
        now: i64,
        ctx: &RequestContext,
    ) -> Result<Accepted, FlowError> {
        if !receiver.accepts_from.contains(&claims.iss) {
            return Err(FlowError::UnknownIssuer);
        }
        if let Err(refusal) = Self::check_binding(presented, &claims.iss, &claims.cch) {
            // Not this browser's hand-off. A token that was already used is
            // being used again from elsewhere: it leaked. One that is still
            // pending is refused without being burnt (a planted token).
            if let TokenStatus::Consumed(record) = self.store.peek_token(&claims.jti).await? {
                self.on_replay(receiver, &claims.iss, &claims.jti, &record, true, now, ctx)
                    .await;
                return Err(FlowError::Replayed);
            }
            return Err(refusal);
        }
        let return_to = validate_return_to(&claims.rt, &receiver.return_paths)?.to_owned();
        let record = match self.store.consume_token(&claims.jti).await? {
            ConsumeOutcome::Redeemed(record) => record,
            ConsumeOutcome::Unknown => return Err(FlowError::UnknownToken),
            ConsumeOutcome::Replayed(record) => {
                // Only this browser holds the verifier: a retry (a lost
                // response, a double submit), refused but not a leak.
                self.on_replay(receiver, &claims.iss, &claims.jti, &record, false, now, ctx)
                    .await;
                return Err(FlowError::Replayed);
            }
        };
        // The record repeats what the signature already covers; a mismatch
        // means the store and the token disagree, so trust neither. The
        // challenges are compared in constant time (`subtle`).
        if record.aud != receiver.id || !binding::secrets_equal(&record.challenge, &claims.cch) {
            return Err(FlowError::BindingMismatch);
        }
        // A receiver that had already joined when the token was issued has
        // nothing to write: the hand-off costs no session round trip. If the
        // session ended since, the cookie set here names a deleted record,
        // which every later read treats as no session.
        let (session_id, session) = if record.receiver_joined {
            (record.session_id, None)
        } else {
            let session = self
                .store
                .get_session(&record.session_id)
                .await?
                .filter(|s| s.absolute_expires_at > now)
                .ok_or(FlowError::Session(SessionError::NotFound))?;
            let session = self
                .sessions
                .join(&self.store, session, &receiver.id, now)
                .await?;
            (session.id.clone(), Some(session))
        };
        self.audit.record(
            &AuditEvent::new(EventKind::TokenRedeemed, &receiver.id)
                .partner(&claims.iss)
                .jti(&claims.jti)
                .session(&session_id),
            ctx,
        );
        Ok(Accepted {
            session_id,
            session,
            return_to,
        })
    }

    /// The browser must name the token's issuer (mix-up defence) and hold
    /// the verifier whose hash is the token's challenge.
    fn check_binding(
        presented: Option<Presented<'_>>,
        issuer: &str,
        challenge: &str,
    ) -> Result<(), FlowError> {
        let presented = presented.ok_or(FlowError::StateMissing)?;
        if presented.issuer.is_some_and(|expected| expected != issuer) {
            return Err(FlowError::IssuerMismatch);
        }
        // SHA-256 of the verifier against `cch`, in constant time (`subtle`).
        if !binding::verifier_matches(presented.verifier, challenge) {
            return Err(FlowError::BindingMismatch);
        }
        Ok(())
    }

    /// A second use: logged as `token.replayed`. When it comes from another
    /// browser the token leaked, and by policy the session it pointed at is
    /// revoked everywhere.
    #[allow(clippy::too_many_arguments)]
    async fn on_replay(
        &self,
        receiver: &Site,
        issuer: &str,
        jti: &str,
        record: &TokenRecord,
        leaked: bool,
        now: i64,
        ctx: &RequestContext,
    ) {
        let reason = if leaked {
            "token_replayed"
        } else {
            "same_browser_retry"
        };
        self.audit.record(
            &AuditEvent::new(EventKind::TokenReplayed, &receiver.id)
                .partner(issuer)
                .jti(jti)
                .session(&record.session_id)
                .reason(reason),
            ctx,
        );
        if leaked && self.revoke_on_replay {
            match self.store.delete_session(&record.session_id).await {
                Ok(existed) => {
                    self.audit.record(
                        &AuditEvent::new(EventKind::SessionRevoked, &receiver.id)
                            .jti(jti)
                            .session(&record.session_id)
                            .reason("token_replayed"),
                        ctx,
                    );
                    // Revoked everywhere: other nodes and back-channels hear of it too.
                    if existed {
                        self.announce_logout(&record.session_id, &receiver.id, now, ctx)
                            .await;
                    }
                }
                Err(e) => tracing::warn!(
                    code = e.code(),
                    "could not revoke the session of a replayed token"
                ),
            }
        }
    }
}
