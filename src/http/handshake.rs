//! Flow B endpoints and the handshake script: `/bridge/frame` on the origin,
//! `/bridge/exchange` and `/bridge/session` on the partner, and
//! `/bridge/session-bridge.js` / `.mjs`.

use super::AppState;
use super::api::session_view;
use super::error::HttpError;
use super::request::{self, Params};
use crate::audit::{AuditEvent, EventKind};
use crate::config::Delivery;
use crate::flows::binding;
use crate::flows::postmessage::FrameMessage;
use crate::flows::redeem::Presented;
use crate::store::{SessionId, Store};
use crate::topology::Site;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

#[derive(Template)]
#[template(path = "frame.html")]
struct FramePage<'a> {
    target: &'a str,
    kind: &'a str,
    token: &'a str,
    code: &'a str,
    popup: bool,
    nonce: &'a str,
}

/// `GET /bridge/frame?to=B&challenge=…[&mode=iframe|popup]` on A.
pub async fn frame(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    let (site, _) = request::site_of(&req, &state.bridge.topology)?;
    let params = Params::query(&req)?;
    let to = params.require("to", &req)?;
    let challenge = params.require("challenge", &req)?;
    let popup = match params.get("mode") {
        None | Some("iframe") => false,
        Some("popup") => true,
        Some(_) => {
            return Err(HttpError::bad_request(
                "invalid_request",
                "mode must be iframe or popup",
                &req,
            ));
        }
    };
    let session = request::session_from_cookie(&req, &site);
    let answer = state
        .bridge
        .frame(
            &site,
            to,
            challenge,
            session.as_ref(),
            state.clock.unix(),
            &request::context(&req),
        )
        .await
        .map_err(|e| HttpError::flow(&e, &req))?;
    let (kind, token, code) = match &answer.message {
        FrameMessage::Token(token) => ("sb:token", token.as_str(), ""),
        FrameMessage::NoSession => ("sb:no-session", "", ""),
        FrameMessage::Error(code) => ("sb:error", "", *code),
    };
    let nonce = binding::random_token().unwrap_or_default();
    let target = answer.target.to_string();
    let page = FramePage {
        target: &target,
        kind,
        token,
        code,
        popup,
        nonce: &nonce,
    };
    let html = page.render().map_err(|_| {
        HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "page rendering failed",
            &req,
        )
    })?;
    // Only the partner's configured origins may frame this page; the list
    // comes from configuration, never from the request.
    let ancestors: Vec<String> = answer
        .receiver
        .origins
        .iter()
        .map(ToString::to_string)
        .collect();
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; frame-ancestors {}; base-uri 'none'; form-action 'none'",
        ancestors.join(" ")
    );
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_SECURITY_POLICY, csp))
        .content_type("text/html; charset=utf-8")
        .body(html))
}

/// The body of `POST /bridge/exchange`: `{token, verifier, from}`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeBody {
    pub token: String,
    pub verifier: String,
    /// The origin (or site id) the script asked; the token's issuer must be
    /// it (mix-up defence). Required: without it a token from any partner
    /// would do.
    pub from: String,
}

impl std::fmt::Debug for ExchangeBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token and the verifier are secrets; never print them.
        f.debug_struct("ExchangeBody")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

/// Why an exchange body was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExchangeBodyError {
    /// Not the JSON object `{token, verifier, from}` (strings, nothing else).
    InvalidJson,
    /// The verifier is not 43 base64url characters.
    BadVerifier,
}

/// Parses and checks the shape of an exchange body. Pure: the handler does
/// the rest (the site named by `from`, the token, the binding).
pub fn parse_exchange_body(body: &[u8]) -> Result<ExchangeBody, ExchangeBodyError> {
    // serde also reads a struct from a JSON array (`["…", "…", "…"]`); the
    // contract is an object, and nothing else is accepted.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ExchangeBodyError::InvalidJson);
    }
    let body: ExchangeBody =
        serde_json::from_slice(body).map_err(|_| ExchangeBodyError::InvalidJson)?;
    if !binding::is_well_formed(&body.verifier) {
        return Err(ExchangeBodyError::BadVerifier);
    }
    Ok(body)
}

fn reject_exchange(
    req: &HttpRequest,
    state: &AppState,
    site: &Site,
    error: HttpError,
) -> HttpError {
    let event = AuditEvent::new(EventKind::ExchangeRejected, &site.id).reason(error.code);
    state.bridge.audit.record(&event, &request::context(req));
    error
}

/// `POST /bridge/exchange` on B: same-origin JSON `{token, verifier, from}`.
pub async fn exchange(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, HttpError> {
    let (site, _) = request::site_of(&req, &state.bridge.topology)?;
    if !request::is_same_origin_request(&req, &site) {
        let error = HttpError::new(
            StatusCode::FORBIDDEN,
            "cross_origin_refused",
            "the exchange accepts same-origin requests only",
            &req,
        );
        return Err(reject_exchange(&req, &state, &site, error));
    }
    if !request::has_content_type(&req, "application/json") {
        let error = HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send application/json",
            &req,
        );
        return Err(reject_exchange(&req, &state, &site, error));
    }
    let body = request::read_body(payload, super::limits::JSON_BODY_LIMIT, &req).await?;
    let body = parse_exchange_body(&body).map_err(|e| match e {
        ExchangeBodyError::InvalidJson => HttpError::bad_request(
            "invalid_json",
            "the body must be {\"token\", \"verifier\", \"from\"}",
            &req,
        ),
        ExchangeBodyError::BadVerifier => HttpError::bad_request(
            "invalid_request",
            "verifier must be 43 base64url characters",
            &req,
        ),
    })?;
    let bridge = &state.bridge;
    let issuer = bridge
        .topology
        .resolve(&body.from)
        .map(|(site, _)| site.id.clone())
        .ok_or_else(|| HttpError::bad_request("site_unknown", "`from` names no site", &req))?;
    let presented = Presented {
        verifier: &body.verifier,
        issuer: Some(&issuer),
    };
    let now = state.clock.unix();
    let accepted = bridge
        .accept(
            &site,
            &body.token,
            Some(presented),
            now,
            &request::context(&req),
        )
        .await
        .map_err(|e| super::rate_limit::redeem_error(&req, &state, &e))?;
    let session = match accepted.session.clone() {
        Some(session) => Some(session),
        None => bridge
            .store
            .get_session(&accepted.session_id)
            .await
            .map_err(|e| HttpError::store(&e, &req))?,
    };
    let session = session.ok_or_else(|| {
        HttpError::new(
            StatusCode::NOT_FOUND,
            "session_not_found",
            "the session is gone",
            &req,
        )
    })?;
    let header_delivery = site.delivery == Delivery::Header;
    let mut response = HttpResponse::Ok();
    if !header_delivery {
        response.cookie(request::session_cookie(&site, &accepted.session_id));
    }
    Ok(response
        .content_type("application/json")
        .body(session_view(&session, &bridge.sessions, now, header_delivery).to_string()))
}

/// The session this request carries on `site`: `X-Session-Id` for
/// non-browser clients (it wins), else the site's cookie.
pub fn presented_session(req: &HttpRequest, site: &Site) -> Option<SessionId> {
    match req
        .headers()
        .get("x-session-id")
        .and_then(|v| v.to_str().ok())
    {
        Some(id) => SessionId::parse(id),
        None => request::session_from_cookie(req, site),
    }
}

/// `GET /bridge/session`: the public view of this site's session; slides
/// the idle timeout (never past the absolute one).
pub async fn session(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    let (site, _) = request::site_of(&req, &state.bridge.topology)?;
    let bridge = &state.bridge;
    let now = state.clock.unix();
    let no_session = || {
        HttpError::new(
            StatusCode::UNAUTHORIZED,
            "no_session",
            "this site has no session for you",
            &req,
        )
    };
    let id = presented_session(&req, &site).ok_or_else(no_session)?;
    // Read and slide the idle timeout in one store round trip.
    let session = bridge
        .store
        .get_and_touch_session(&id, bridge.sessions.idle(), now)
        .await
        .map_err(|e| HttpError::store(&e, &req))?
        .filter(|s| s.is_joined_by(&site.id))
        .ok_or_else(no_session)?;
    let with_id = site.delivery == Delivery::Header;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(session_view(&session, &bridge.sessions, now, with_id).to_string()))
}
