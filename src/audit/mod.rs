//! Security events of token and session handling.
//!
//! Each event is one structured record: what happened, on which site, for
//! which partner and token id, and why. Raw session IDs and raw tokens are
//! never recorded. Events go to the `audit` tracing target.

use crate::store::SessionId;
use std::fmt;

/// Who made the request, as the HTTP layer saw it.
#[derive(Clone, Debug, Default)]
pub struct RequestContext {
    pub ip: String,
    pub user_agent: String,
    pub request_id: String,
}

/// Event names are part of the audit trail's interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    SessionCreated,
    SessionRotated,
    SessionRevoked,
    TokenIssued,
    TokenRedeemed,
    TokenReplayed,
    TokenRejected,
    RedirectRefused,
    FrameRefused,
    ExchangeRejected,
    LogoutBackchannelSent,
    LogoutBackchannelFailed,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionCreated => "session.created",
            Self::SessionRotated => "session.rotated",
            Self::SessionRevoked => "session.revoked",
            Self::TokenIssued => "token.issued",
            Self::TokenRedeemed => "token.redeemed",
            Self::TokenReplayed => "token.replayed",
            Self::TokenRejected => "token.rejected",
            Self::RedirectRefused => "redirect.refused",
            Self::FrameRefused => "frame.refused",
            Self::ExchangeRejected => "exchange.rejected",
            Self::LogoutBackchannelSent => "logout.backchannel_sent",
            Self::LogoutBackchannelFailed => "logout.backchannel_failed",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One audit event.
#[derive(Clone, Debug)]
pub struct AuditEvent<'a> {
    pub kind: EventKind,
    pub site: &'a str,
    pub partner: Option<&'a str>,
    pub jti: Option<&'a str>,
    pub reason: Option<&'a str>,
    /// The session concerned; recorded only as a keyed fingerprint.
    pub session: Option<&'a SessionId>,
}

impl<'a> AuditEvent<'a> {
    pub fn new(kind: EventKind, site: &'a str) -> Self {
        Self {
            kind,
            site,
            partner: None,
            jti: None,
            reason: None,
            session: None,
        }
    }

    pub fn partner(mut self, partner: &'a str) -> Self {
        self.partner = Some(partner);
        self
    }

    pub fn jti(mut self, jti: &'a str) -> Self {
        self.jti = Some(jti);
        self
    }

    pub fn session(mut self, session: &'a SessionId) -> Self {
        self.session = Some(session);
        self
    }

    pub fn reason(mut self, reason: &'a str) -> Self {
        self.reason = Some(reason);
        self
    }
}

/// Where audit events go.
#[derive(Clone, Debug, Default)]
pub struct Audit;

impl Audit {
    /// Records one event.
    pub fn record(&self, event: &AuditEvent<'_>, ctx: &RequestContext) {
        tracing::info!(
            target: "audit",
            event = event.kind.as_str(),
            site = event.site,
            partner = event.partner.unwrap_or(""),
            jti = event.jti.unwrap_or(""),
            reason = event.reason.unwrap_or(""),
            ip = ctx.ip.as_str(),
            user_agent = ctx.user_agent.as_str(),
            request_id = ctx.request_id.as_str(),
        );
    }
}
