//! Flow B, the origin's side: `/bridge/frame` answers a partner page's
//! hidden iframe (or popup) with a message for exactly that partner origin.
//! The partner's side is `/bridge/exchange`, which redeems through
//! [`Bridge::accept`] like flow A.

use super::binding;
use super::{Bridge, FlowError};
use crate::audit::{AuditEvent, EventKind, RequestContext};
use crate::store::SessionId;
use crate::topology::{Origin, Site};
use std::sync::Arc;

/// What the frame page posts, always to `target` (never `"*"`).
pub enum FrameMessage {
    /// `{"type":"sb:token","token":…}`
    Token(String),
    /// `{"type":"sb:no-session"}`: not signed in here, or third-party
    /// cookies are blocked in this frame. The frame never makes a session.
    NoSession,
    /// `{"type":"sb:error","code":…}`
    Error(&'static str),
}

/// The frame's answer: who may embed it and whom it talks to.
pub struct FrameAnswer {
    pub receiver: Arc<Site>,
    /// The exact partner origin the message is posted to.
    pub target: Origin,
    pub message: FrameMessage,
}

impl Bridge {
    /// On A (`issuer`): a partner page at `to` asks, with `challenge`, for a
    /// token for the session in A's cookie (`session_id`). Unknown sites and
    /// non-partners are refused outright: no message is posted to them.
    pub async fn frame(
        &self,
        issuer: &Site,
        to: &str,
        challenge: &str,
        session_id: Option<&SessionId>,
        now: i64,
        ctx: &RequestContext,
    ) -> Result<FrameAnswer, FlowError> {
        let refused = |reason: &str, partner: Option<&str>| {
            let mut event = AuditEvent::new(EventKind::FrameRefused, &issuer.id).reason(reason);
            if let Some(partner) = partner {
                event = event.partner(partner);
            }
            self.audit.record(&event, ctx);
        };
        let (receiver, target) = match self.resolve_site(to) {
            Ok(found) => found,
            Err(e) => {
                refused(e.code(), None);
                return Err(e);
            }
        };
        if !issuer.may_hand_to(&receiver.id) {
            refused("partner_not_allowed", Some(&receiver.id));
            return Err(FlowError::PartnerNotAllowed);
        }
        let answer = |message| FrameAnswer {
            receiver: Arc::clone(&receiver),
            target: target.clone(),
            message,
        };
        if !binding::is_well_formed(challenge) {
            return Ok(answer(FrameMessage::Error("invalid_request")));
        }
        let Some(session_id) = session_id else {
            return Ok(answer(FrameMessage::NoSession));
        };
        // Flow B returns nowhere, but every token names a place on the
        // receiving site: its first allowed path.
        let return_to = receiver.return_paths.first().map_or("/", String::as_str);
        // The store checks the session is live and A's as it records the token.
        let token = self
            .mint_token(
                issuer, &receiver, session_id, challenge, return_to, now, ctx,
            )
            .await?;
        Ok(answer(match token {
            Some(token) => FrameMessage::Token(token),
            None => FrameMessage::NoSession,
        }))
    }
}
