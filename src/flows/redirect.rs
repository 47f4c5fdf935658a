//! Flow A: the redirect hand-off (`start` on B, `issue` on A, `accept` on B).

use super::binding::{self, BridgeState};
use super::return_to::validate_return_to;
use super::{Bridge, FlowError, ResponseMode};
use crate::audit::{AuditEvent, EventKind, RequestContext};
use crate::config::MissingSessionPolicy;
use crate::sessions::{NewSession, SessionError};
use crate::store::{ConsumeOutcome, SessionId, Store, TokenRecord, TokenStatus};
use crate::token::TokenRequest;
use crate::topology::{Origin, Site};
use std::sync::Arc;
use std::time::Duration;
use url::form_urlencoded;

/// Extra life of a token record past the token's own expiry and leeway, so
/// a replay is always recognised while the token could still verify.
const RECORD_GRACE_SECS: i64 = 10;

/// `/bridge/start` on B: where to send the browser, and the state to keep.
#[derive(Debug)]
pub struct Started {
    pub state: BridgeState,
    pub mode: ResponseMode,
    /// `https://A/bridge/issue?...`
    pub issue_url: String,
}

/// `/bridge/issue` on A: what to answer.
// No `Debug`: it holds a token.
pub enum Issued {
    /// Deliver `token` to `accept_url` by redirect or auto-submitted form.
    Deliver {
        token: String,
        accept_url: String,
        mode: ResponseMode,
        /// A session made here for the hand-off (policy `anonymous`): set A's cookie.
        new_session: Option<SessionId>,
    },
    /// Send the browser to A's login page first.
    Login { url: String },
}

/// `/bridge/accept` on B: the session to set and where to go.
#[derive(Debug)]
pub struct Accepted {
    pub session_id: SessionId,
    pub return_to: String,
}

fn query(pairs: &[(&str, &str)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        serializer.append_pair(name, value);
    }
    serializer.finish()
}

impl Bridge {
    /// Resolves a site named by id or exact origin; the origin to use is the
    /// named one, or the site's primary origin.
    fn resolve_site(&self, reference: &str) -> Result<(Arc<Site>, Origin), FlowError> {
        let (site, origin) = self
            .topology
            .resolve(reference)
            .ok_or(FlowError::UnknownSite)?;
        let origin = origin.unwrap_or_else(|| site.primary_origin().clone());
        Ok((Arc::clone(site), origin))
    }

    /// Step 1, on B (`receiver`, reached at `receiver_origin`): make a
    /// verifier and send the browser to A's issue endpoint.
    pub fn start(
        &self,
        receiver: &Site,
        receiver_origin: &Origin,
        from: &str,
        return_to: &str,
        mode: Option<&str>,
    ) -> Result<Started, FlowError> {
        let mode = ResponseMode::parse(mode)?;
        let (issuer, issuer_origin) = self.resolve_site(from)?;
        if !issuer.may_hand_to(&receiver.id) {
            return Err(FlowError::PartnerNotAllowed);
        }
        let return_to = validate_return_to(return_to, &receiver.return_paths)?;
        let verifier =
            binding::random_token().ok_or(FlowError::Session(SessionError::RandomFailed))?;
        let challenge = binding::challenge_of(&verifier);
        let to = receiver_origin.to_string();
        let issue_url = format!(
            "{issuer_origin}/bridge/issue?{}",
            query(&[
                ("to", &to),
                ("challenge", &challenge),
                ("return_to", return_to),
                ("mode", mode.as_str())
            ])
        );
        Ok(Started {
            state: BridgeState {
                verifier,
                from_site: issuer.id.clone(),
            },
            mode,
            issue_url,
        })
    }

    /// Step 2, on A (`issuer`): check the request, find or make the session,
    /// record and sign a token for B. `self_path` is this request's path and
    /// query, to come back to after a login.
    #[allow(clippy::too_many_arguments)]
    pub async fn issue(
        &self,
        issuer: &Site,
        to: &str,
        challenge: &str,
        return_to: &str,
        mode: Option<&str>,
        session_id: Option<&SessionId>,
        self_path: &str,
        now: i64,
        ctx: &RequestContext,
    ) -> Result<Issued, FlowError> {
        let mode = ResponseMode::parse(mode)?;
        let (receiver, receiver_origin) = self.resolve_site(to)?;
        if !issuer.may_hand_to(&receiver.id) {
            self.audit.record(
                &AuditEvent::new(EventKind::RedirectRefused, &issuer.id)
                    .partner(&receiver.id)
                    .reason("partner_not_allowed"),
                ctx,
            );
            return Err(FlowError::PartnerNotAllowed);
        }
        if let Err(e) = validate_return_to(return_to, &receiver.return_paths) {
            self.audit.record(
                &AuditEvent::new(EventKind::RedirectRefused, &issuer.id)
                    .partner(&receiver.id)
                    .reason("return_to_invalid"),
                ctx,
            );
            return Err(e.into());
        }
        if !binding::is_well_formed(challenge) {
            return Err(FlowError::InvalidRequest(
                "challenge must be 43 base64url characters",
            ));
        }
        let existing = match session_id {
            Some(id) => {
                self.sessions
                    .load_for_site(&self.store, id, &issuer.id, now)
                    .await?
            }
            None => None,
        };
        let (session_id, new_session) = match existing {
            Some(session) => (session.id, None),
            None => match issuer.on_missing_session {
                MissingSessionPolicy::Deny => return Err(FlowError::NoSession),
                MissingSessionPolicy::Login => {
                    let url = format!(
                        "{}?{}",
                        issuer.login_url,
                        query(&[("return_to", self_path)])
                    );
                    return Ok(Issued::Login { url });
                }
                MissingSessionPolicy::Anonymous => {
                    let new = NewSession {
                        site: &issuer.id,
                        user_id: None,
                        auth_ref: None,
                        data: Default::default(),
                    };
                    let session = self.sessions.create(&self.store, new, now).await?;
                    self.audit.record(
                        &AuditEvent::new(EventKind::SessionCreated, &issuer.id).reason("anonymous"),
                        ctx,
                    );
                    (session.id.clone(), Some(session.id))
                }
            },
        };
        let request = TokenRequest {
            issuer: &issuer.id,
            audience: &receiver.id,
            challenge,
            return_to,
        };
        let (token, claims) = self.tokens.issue(&request, now)?;
        let record = TokenRecord {
            session_id,
            aud: receiver.id.clone(),
            challenge: challenge.to_owned(),
        };
        let record_ttl = self.tokens.ttl_secs() + self.tokens.leeway_secs() + RECORD_GRACE_SECS;
        self.store
            .put_token(
                &claims.jti,
                &record,
                Duration::from_secs(record_ttl.unsigned_abs()),
            )
            .await?;
        self.audit.record(
            &AuditEvent::new(EventKind::TokenIssued, &issuer.id)
                .partner(&receiver.id)
                .jti(&claims.jti),
            ctx,
        );
        Ok(Issued::Deliver {
            token,
            accept_url: format!("{receiver_origin}/bridge/accept"),
            mode,
            new_session,
        })
    }

    /// Step 3, on B (`receiver`): verify, bind, consume, join.
    pub async fn accept(
        &self,
        receiver: &Site,
        token: &str,
        state: Option<&str>,
        now: i64,
        ctx: &RequestContext,
    ) -> Result<Accepted, FlowError> {
        let result = self.accept_inner(receiver, token, state, now, ctx).await;
        // Replays have their own event; store outages are not the token's fault.
        if let Err(e) = &result
            && !matches!(
                e,
                FlowError::Replayed | FlowError::Session(SessionError::Store(_))
            )
        {
            self.audit.record(
                &AuditEvent::new(EventKind::TokenRejected, &receiver.id).reason(e.code()),
                ctx,
            );
        }
        result
    }

    async fn accept_inner(
        &self,
        receiver: &Site,
        token: &str,
        state: Option<&str>,
        now: i64,
        ctx: &RequestContext,
    ) -> Result<Accepted, FlowError> {
        let claims = self.tokens.verify(token, &receiver.id, now)?;
        if !receiver.accepts_from.contains(&claims.iss) {
            return Err(FlowError::UnknownIssuer);
        }
        if let Err(refusal) = Self::check_binding(state, &claims.iss, &claims.cch) {
            // Not this browser's hand-off. A token that was already used is
            // being used again from elsewhere: it leaked. One that is still
            // pending is refused without being burnt (a planted token).
            if let TokenStatus::Consumed(record) = self.store.peek_token(&claims.jti).await? {
                self.on_replay(receiver, &claims.iss, &claims.jti, &record, true, ctx)
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
                self.on_replay(receiver, &claims.iss, &claims.jti, &record, false, ctx)
                    .await;
                return Err(FlowError::Replayed);
            }
        };
        // The record repeats what the signature already covers; a mismatch
        // means the store and the token disagree, so trust neither.
        if record.aud != receiver.id || !binding::secrets_equal(&record.challenge, &claims.cch) {
            return Err(FlowError::BindingMismatch);
        }
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
        self.audit.record(
            &AuditEvent::new(EventKind::TokenRedeemed, &receiver.id)
                .partner(&claims.iss)
                .jti(&claims.jti),
            ctx,
        );
        Ok(Accepted {
            session_id: session.id,
            return_to,
        })
    }

    /// The state cookie must name the token's issuer (mix-up defence) and
    /// hold the verifier whose hash is the token's challenge.
    fn check_binding(state: Option<&str>, issuer: &str, challenge: &str) -> Result<(), FlowError> {
        let state = state
            .and_then(BridgeState::decode)
            .ok_or(FlowError::StateMissing)?;
        if state.from_site != issuer {
            return Err(FlowError::IssuerMismatch);
        }
        if !binding::verifier_matches(&state.verifier, challenge) {
            return Err(FlowError::BindingMismatch);
        }
        Ok(())
    }

    /// A second use: logged as `token.replayed`. When it comes from another
    /// browser the token leaked, and by policy the session it pointed at is
    /// revoked everywhere.
    async fn on_replay(
        &self,
        receiver: &Site,
        issuer: &str,
        jti: &str,
        record: &TokenRecord,
        leaked: bool,
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
                .reason(reason),
            ctx,
        );
        if leaked && self.revoke_on_replay {
            match self.store.delete_session(&record.session_id).await {
                Ok(_) => self.audit.record(
                    &AuditEvent::new(EventKind::SessionRevoked, &receiver.id)
                        .jti(jti)
                        .reason("token_replayed"),
                    ctx,
                ),
                Err(e) => tracing::warn!(
                    code = e.code(),
                    "could not revoke the session of a replayed token"
                ),
            }
        }
    }
}
