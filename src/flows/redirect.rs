//! Flow A: the redirect hand-off (`start` on B, `issue` on A, `accept` on B).

use super::binding::{self, BridgeState};
use super::return_to::validate_return_to;
use super::{Bridge, FlowError, ResponseMode};
use crate::audit::{AuditEvent, EventKind, RequestContext};
use crate::config::MissingSessionPolicy;
use crate::sessions::{NewSession, SessionError};
use crate::store::SessionId;
use crate::topology::{Origin, Site};
use url::form_urlencoded;

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

/// `name=value&…`, form-encoded exactly as `form_urlencoded::Serializer`
/// would. Text that needs no escaping (tokens and challenges: base64url and
/// dots) is copied whole; the encoder walks only the rest byte by byte.
pub(crate) fn query(pairs: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(
        pairs
            .iter()
            .map(|(name, value)| name.len() + value.len() + 2)
            .sum(),
    );
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        push_form_encoded(&mut out, name);
        out.push('=');
        push_form_encoded(&mut out, value);
    }
    out
}

fn push_form_encoded(out: &mut String, text: &str) {
    // The bytes `application/x-www-form-urlencoded` leaves as they are.
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_');
    if text.bytes().all(plain) {
        out.push_str(text);
    } else {
        out.extend(form_urlencoded::byte_serialize(text.as_bytes()));
    }
}

impl Bridge {
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
        let accept_url = format!("{receiver_origin}/bridge/accept");
        // The session in A's cookie: the store checks it is live and A's as
        // it records the token (one round trip).
        if let Some(id) = session_id
            && let Some(token) = self
                .mint_token(issuer, &receiver, id, challenge, return_to, now, ctx)
                .await?
        {
            return Ok(Issued::Deliver {
                token,
                accept_url,
                mode,
                new_session: None,
            });
        }
        let session = match issuer.on_missing_session {
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
                    &AuditEvent::new(EventKind::SessionCreated, &issuer.id)
                        .session(&session.id)
                        .reason("anonymous"),
                    ctx,
                );
                session
            }
        };
        let token = self
            .mint_token(
                issuer,
                &receiver,
                &session.id,
                challenge,
                return_to,
                now,
                ctx,
            )
            .await?
            // Just made; gone only if revoked in the meantime.
            .ok_or(FlowError::Session(SessionError::NotFound))?;
        Ok(Issued::Deliver {
            token,
            accept_url,
            mode,
            new_session: Some(session.id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_encoded_as_the_form_serializer_does() {
        let values = [
            "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJhIn0.c2ln-_",
            "/cart?x=1&y=2",
            "a b+c~d*e",
            "tilde~is~escaped",
            "a*b.c-d_e",
            "ünïcode/%2F",
            "",
        ];
        for value in values {
            let expected = form_urlencoded::Serializer::new(String::new())
                .append_pair("token", value)
                .append_pair("return_to", value)
                .finish();
            assert_eq!(query(&[("token", value), ("return_to", value)]), expected);
        }
    }
}
