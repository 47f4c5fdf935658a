//! Flow A endpoints: thin adapters from HTTP to [`crate::flows`].

use super::AppState;
use super::error::HttpError;
use super::request::{self, Params, STATE_COOKIE};
use crate::flows::ResponseMode;
use crate::flows::binding::BridgeState;
use crate::flows::redeem::Presented;
use crate::flows::redirect::Issued;
use crate::store::Store;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;

#[derive(Template)]
#[template(path = "form_post.html")]
struct FormPostPage<'a> {
    action: &'a str,
    token: &'a str,
    nonce: &'a str,
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

/// `GET /bridge/start?from=A&return_to=/path[&mode=query|form_post]` on B.
pub async fn start(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    let (site, origin) = request::site_of(&req, &state.bridge.topology)?;
    let params = Params::query(&req)?;
    let from = params.require("from", &req)?;
    let return_to = params.require("return_to", &req)?;
    let started = state
        .bridge
        .start(&site, &origin, from, return_to, params.get("mode"))
        .map_err(|e| HttpError::flow(&e, &req))?;
    let mut response = see_other(&started.issue_url);
    response
        .add_cookie(&request::state_cookie(started.state.encode(), started.mode))
        .map_err(|_| {
            HttpError::bad_request("invalid_request", "cannot set the state cookie", &req)
        })?;
    Ok(response)
}

/// `GET /bridge/issue?to=B&challenge=…&return_to=…&mode=…` on A.
pub async fn issue(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    let (site, _) = request::site_of(&req, &state.bridge.topology)?;
    let params = Params::query(&req)?;
    let to = params.require("to", &req)?;
    let challenge = params.require("challenge", &req)?;
    let return_to = params.require("return_to", &req)?;
    let session = request::session_from_cookie(&req, &site);
    let self_path = format!("{}?{}", req.path(), req.query_string());
    let issued = state
        .bridge
        .issue(
            &site,
            to,
            challenge,
            return_to,
            params.get("mode"),
            session.as_ref(),
            &self_path,
            state.clock.unix(),
            &request::context(&req),
        )
        .await
        .map_err(|e| HttpError::flow(&e, &req))?;
    match issued {
        Issued::Login { url } => Ok(see_other(&url)),
        Issued::Deliver {
            token,
            accept_url,
            mode,
            new_session,
        } => {
            let mut response = match mode {
                ResponseMode::Query => {
                    let query = crate::flows::redirect::query(&[("token", &token)]);
                    see_other(&format!("{accept_url}?{query}"))
                }
                ResponseMode::FormPost => form_post_page(&req, &accept_url, &token)?,
            };
            if let Some(id) = new_session {
                response
                    .add_cookie(&request::session_cookie(&site, &id))
                    .map_err(|_| {
                        HttpError::bad_request(
                            "invalid_request",
                            "cannot set the session cookie",
                            &req,
                        )
                    })?;
            }
            Ok(response)
        }
    }
}

/// The auto-submitting form; its only script is allowed by a fresh nonce,
/// and the form may post only to the receiving site's accept URL.
fn form_post_page(
    req: &HttpRequest,
    accept_url: &str,
    token: &str,
) -> Result<HttpResponse, HttpError> {
    let nonce = crate::flows::binding::random_token().unwrap_or_default();
    let action_origin = accept_url.trim_end_matches("/bridge/accept");
    let page = FormPostPage {
        action: accept_url,
        token,
        nonce: &nonce,
    };
    let html = page
        .render()
        .map_err(|_| HttpError::bad_request("internal_error", "page rendering failed", req))?;
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; form-action {action_origin}; frame-ancestors 'none'; base-uri 'none'"
    );
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_SECURITY_POLICY, csp))
        .content_type("text/html; charset=utf-8")
        .body(html))
}

/// `GET /bridge/accept?token=…` on B.
pub async fn accept_get(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    let params = Params::query(&req)?;
    let token = params.require("token", &req)?.to_owned();
    accept(req, state, token).await
}

/// `POST /bridge/accept` (form body `token=…`) on B.
pub async fn accept_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, HttpError> {
    if !request::has_content_type(&req, "application/x-www-form-urlencoded") {
        return Err(HttpError::new(
            actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the token as application/x-www-form-urlencoded",
            &req,
        ));
    }
    if !req.query_string().is_empty() && Params::query(&req)?.get("token").is_some() {
        return Err(HttpError::bad_request(
            "duplicate_parameter",
            "the token is given in both the URL and the body",
            &req,
        ));
    }
    let body = request::read_body(payload, super::limits::FORM_BODY_LIMIT, &req).await?;
    let params = Params::parse(&body, &req)?;
    let token = params.require("token", &req)?.to_owned();
    accept(req, state, token).await
}

async fn accept(
    req: HttpRequest,
    state: web::Data<AppState>,
    token: String,
) -> Result<HttpResponse, HttpError> {
    let (site, _) = request::site_of(&req, &state.bridge.topology)?;
    let started = request::cookie(&req, STATE_COOKIE).and_then(BridgeState::decode);
    let result = state
        .bridge
        .accept(
            &site,
            &token,
            started.as_ref().map(|s| Presented {
                verifier: &s.verifier,
                issuer: Some(&s.from_site),
            }),
            state.clock.unix(),
            &request::context(&req),
        )
        .await;
    // On a refusal the state cookie stays: anyone can send a browser to
    // this URL with a junk token, and that must not cancel a hand-off in
    // progress. It expires on its own, and the next start replaces it.
    let accepted = result.map_err(|e| super::rate_limit::redeem_error(&req, &state, &e))?;
    let mut response = see_other(&accepted.return_to);
    response
        .add_cookie(&request::session_cookie(&site, &accepted.session_id))
        .and_then(|()| response.add_cookie(&request::clear_state_cookie()))
        .map_err(|_| {
            HttpError::bad_request("invalid_request", "cannot set the session cookie", &req)
        })?;
    Ok(response)
}

/// `GET /bridge/jwks.json`: the public keys (cacheable).
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .content_type("application/jwk-set+json")
        .body(state.bridge.tokens.keys().public_jwks().to_string())
}

fn script(req: &HttpRequest, source: &'static str) -> HttpResponse {
    // Partners pin the script with SRI; a week of caching, and an ETag of
    // that same hash for revalidation.
    let etag = format!("\"{}\"", crate::handshake::sri(source));
    let cached = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let mut response = if cached {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::CACHE_CONTROL, "public, max-age=604800"))
        .insert_header((header::ETAG, etag));
    if cached {
        return response.finish();
    }
    response
        .content_type("text/javascript; charset=utf-8")
        .body(source)
}

/// `GET /bridge/session-bridge.js`.
pub async fn classic_script(req: HttpRequest) -> HttpResponse {
    script(&req, crate::handshake::CLASSIC)
}

/// `GET /bridge/session-bridge.mjs`.
pub async fn module_script(req: HttpRequest) -> HttpResponse {
    script(&req, crate::handshake::MODULE)
}

/// `GET /bridge/assets/bridge.css`.
pub async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .body(include_str!("../../static/bridge.css"))
}

/// `GET /healthz`: the process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(r#"{"status":"ok"}"#)
}

/// `GET /readyz`: the store answers.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.bridge.store.ping().await {
        Ok(()) => HttpResponse::Ok()
            .content_type("application/json")
            .body(format!(
                r#"{{"status":"ready","store":"{}"}}"#,
                state.bridge.store.kind()
            )),
        Err(e) => HttpResponse::ServiceUnavailable()
            .content_type("application/json")
            .body(format!(
                r#"{{"status":"unavailable","store":"{}","code":"{}"}}"#,
                state.bridge.store.kind(),
                e.code()
            )),
    }
}
