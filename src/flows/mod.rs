//! Hand-off flows, as plain protocol code that never sees HTTP: the HTTP
//! layer parses requests into these calls and turns outcomes into responses.

pub mod binding;
pub mod logout;
pub mod postmessage;
pub mod redeem;
pub mod redirect;
pub mod return_to;

use crate::audit::{Audit, AuditEvent, EventKind, RequestContext};
use crate::sessions::{SessionError, SessionPolicy};
use crate::store::{AnyStore, IssueOutcome, SessionId, Store, StoreError, TokenRecord};
use crate::token::{TokenError, TokenRequest, TokenService};
use crate::topology::{Origin, Site, Topology};
use return_to::ReturnToError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// How `/bridge/issue` delivers the token to the receiving site.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ResponseMode {
    /// A 303 to `/bridge/accept?token=…` (top-level GET: `Lax` cookies suffice).
    #[default]
    Query,
    /// A page that POSTs the token to `/bridge/accept` (keeps it out of URLs).
    FormPost,
}

impl ResponseMode {
    pub fn parse(text: Option<&str>) -> Result<Self, FlowError> {
        match text {
            None | Some("query") => Ok(Self::Query),
            Some("form_post") => Ok(Self::FormPost),
            Some(_) => Err(FlowError::InvalidRequest("mode must be query or form_post")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::FormPost => "form_post",
        }
    }
}

/// Why a hand-off step was refused. Every variant has a stable code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowError {
    /// A parameter is missing or has the wrong shape.
    InvalidRequest(&'static str),
    /// `from`/`to` names no configured site.
    UnknownSite,
    /// The sites are not partners in this direction.
    PartnerNotAllowed,
    ReturnTo(ReturnToError),
    /// No `__Host-sb-state` cookie: this browser did not start this hand-off.
    StateMissing,
    Token(TokenError),
    /// `iss` is not a site allowed to hand sessions to this one.
    UnknownIssuer,
    /// `iss` is not the site this browser's start named (mix-up defence).
    IssuerMismatch,
    /// The token was minted for another browser.
    BindingMismatch,
    /// The token was used before.
    Replayed,
    /// No record of the token: never issued here, or expired.
    UnknownToken,
    /// The issuing site has no session and its policy is `deny`.
    NoSession,
    Session(SessionError),
}

impl FlowError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::UnknownSite => "site_unknown",
            Self::PartnerNotAllowed => "partner_not_allowed",
            Self::ReturnTo(_) => "return_to_invalid",
            Self::StateMissing => "state_missing",
            Self::Token(e) => e.code(),
            Self::UnknownIssuer => "token_unknown_issuer",
            Self::IssuerMismatch => "token_issuer_mismatch",
            Self::BindingMismatch => "token_binding_mismatch",
            Self::Replayed => "token_replayed",
            Self::UnknownToken => "token_unknown",
            Self::NoSession => "no_session",
            Self::Session(e) => e.code(),
        }
    }
}

impl fmt::Display for FlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidRequest(what) => f.write_str(what),
            Self::UnknownSite => f.write_str("the request names a site this bridge does not serve"),
            Self::PartnerNotAllowed => {
                f.write_str("these sites are not configured to hand sessions to each other")
            }
            Self::ReturnTo(e) => e.fmt(f),
            Self::StateMissing => f.write_str(
                "this browser did not start this hand-off (its state cookie is missing or expired)",
            ),
            Self::Token(e) => e.fmt(f),
            Self::UnknownIssuer => {
                f.write_str("the token comes from a site that may not hand sessions here")
            }
            Self::IssuerMismatch => f.write_str(
                "the token comes from another site than the one this hand-off started with",
            ),
            Self::BindingMismatch => f.write_str("the token was issued to another browser"),
            Self::Replayed => f.write_str("the token has already been used"),
            Self::UnknownToken => f.write_str("the token is unknown or has expired"),
            Self::NoSession => f.write_str("there is no session to hand over"),
            Self::Session(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for FlowError {}

impl From<TokenError> for FlowError {
    fn from(e: TokenError) -> Self {
        Self::Token(e)
    }
}

impl From<ReturnToError> for FlowError {
    fn from(e: ReturnToError) -> Self {
        Self::ReturnTo(e)
    }
}

impl From<SessionError> for FlowError {
    fn from(e: SessionError) -> Self {
        Self::Session(e)
    }
}

impl From<StoreError> for FlowError {
    fn from(e: StoreError) -> Self {
        Self::Session(SessionError::Store(e))
    }
}

/// Extra life of a token record past the token's own expiry and leeway, so
/// a replay is always recognised while the token could still verify.
const RECORD_GRACE_SECS: i64 = 10;

/// Everything the flows need, shared by all requests.
#[derive(Clone)]
pub struct Bridge {
    pub topology: Arc<Topology>,
    pub tokens: TokenService,
    pub store: AnyStore,
    pub sessions: SessionPolicy,
    pub revoke_on_replay: bool,
    pub audit: Audit,
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

    /// Signs a token from `issuer` to `receiver` for `session_id`, and
    /// records it as pending (the record outlives the token's validity) —
    /// only if that session is live and the issuer's: `None` when it is not
    /// (nothing recorded, the signed token dropped unseen). One store round
    /// trip where the backend allows.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn mint_token(
        &self,
        issuer: &Site,
        receiver: &Site,
        session_id: &SessionId,
        challenge: &str,
        return_to: &str,
        now: i64,
        ctx: &RequestContext,
    ) -> Result<Option<String>, FlowError> {
        let request = TokenRequest {
            issuer: &issuer.id,
            audience: &receiver.id,
            challenge,
            return_to,
        };
        let (token, claims) = self.tokens.issue(&request, now)?;
        let record = TokenRecord {
            session_id: session_id.clone(),
            aud: receiver.id.clone(),
            challenge: challenge.to_owned(),
            // Set by the store from the session it checks.
            receiver_joined: false,
        };
        let record_ttl = self.tokens.ttl_secs() + self.tokens.leeway_secs() + RECORD_GRACE_SECS;
        let outcome = self
            .store
            .put_token_for_session(
                &claims.jti,
                &record,
                &issuer.id,
                now,
                Duration::from_secs(record_ttl.unsigned_abs()),
            )
            .await?;
        if outcome == IssueOutcome::NoSession {
            return Ok(None);
        }
        self.audit.record(
            &AuditEvent::new(EventKind::TokenIssued, &issuer.id)
                .partner(&receiver.id)
                .jti(&claims.jti)
                .session(session_id),
            ctx,
        );
        Ok(Some(token))
    }
}
