//! The session API (DESIGN.md, "Session API").
//!
//! Browser endpoints on every site, with CORS for the site's configured
//! `cors_origins`: `GET /bridge/session` (in [`super::handshake`]),
//! `POST /bridge/heartbeat`, `POST /bridge/logout`. Service endpoints behind
//! bearer keys: `GET|PATCH|DELETE /api/v1/sessions/{id}` (`POST
//! /api/v1/sessions` is in [`super::api`]).
//! Their CORS is in [`super::cors`].

use super::AppState;
use super::api::authorize;
use super::cors::{check_caller, cors, vary_origin};
use super::error::HttpError;
use super::handshake::presented_session;
use super::limits::{API_BODY_LIMIT, MAX_DATA_DEPTH, json_too_deep};
use super::request;
use crate::sessions::PatchOutcome;
use crate::store::{Session, SessionId, Store};
use crate::topology::Topology;
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::middleware::from_fn;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value};
use std::sync::Arc;

/// The media type of `PATCH` bodies (RFC 7396).
pub const MERGE_PATCH: &str = "application/merge-patch+json";

/// Registers the session API. The browser endpoints are wrapped in CORS
/// checked against the `cors_origins` of the site the `Host` names.
pub fn configure(cfg: &mut web::ServiceConfig, topology: &Arc<Topology>) {
    cfg.service(
        web::resource("/bridge/session")
            .wrap(cors(Arc::clone(topology)))
            .wrap(from_fn(vary_origin))
            .route(web::get().to(super::handshake::session)),
    )
    .service(
        web::resource("/bridge/heartbeat")
            .wrap(cors(Arc::clone(topology)))
            .wrap(from_fn(vary_origin))
            .route(web::post().to(heartbeat)),
    )
    .service(
        web::resource("/bridge/logout")
            .wrap(cors(Arc::clone(topology)))
            .wrap(from_fn(vary_origin))
            .route(web::post().to(logout)),
    )
    .service(
        web::resource("/api/v1/sessions/{id}")
            .route(web::get().to(get_session))
            .route(web::patch().to(patch_session))
            .route(web::delete().to(delete_session)),
    );
}

fn no_session(req: &HttpRequest) -> HttpError {
    HttpError::new(
        StatusCode::UNAUTHORIZED,
        "no_session",
        "this site has no session for you",
        req,
    )
}

/// `POST /bridge/heartbeat`: slides the idle timeout of this site's session
/// (never past the absolute one) without writing it; `204`.
pub async fn heartbeat(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    let (site, _) = request::site_of(&req, &state.bridge.topology)?;
    check_caller(&req, &site)?;
    let bridge = &state.bridge;
    let now = state.clock.unix();
    let id = presented_session(&req, &site).ok_or_else(|| no_session(&req))?;
    let session = bridge
        .sessions
        .load_for_site(&bridge.store, &id, &site.id, now)
        .await
        .map_err(|e| HttpError::session(&e, &req))?
        .ok_or_else(|| no_session(&req))?;
    let alive = bridge
        .sessions
        .touch(&bridge.store, &session, now)
        .await
        .map_err(|e| HttpError::session(&e, &req))?;
    if !alive {
        return Err(no_session(&req));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /bridge/logout`: ends this site's session on every site, and
/// clears this site's cookie; `204` (also when there was no session: the
/// outcome the caller wants holds).
pub async fn logout(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    let (site, _) = request::site_of(&req, &state.bridge.topology)?;
    check_caller(&req, &site)?;
    let bridge = &state.bridge;
    let now = state.clock.unix();
    if let Some(id) = presented_session(&req, &site) {
        // Only a session this site holds: a cookie or header naming
        // another site's session ends nothing here.
        let session = match bridge
            .sessions
            .load_for_site(&bridge.store, &id, &site.id, now)
            .await
        {
            Ok(session) => session.map(|s| s.id),
            // The store does not answer: end the presented session anyway.
            // The store layer honours it on this node at once and writes it
            // when the store is back (DESIGN: no revocation lost).
            Err(crate::sessions::SessionError::Store(crate::store::StoreError::Unavailable(_))) => {
                Some(id)
            }
            Err(e) => return Err(HttpError::session(&e, &req)),
        };
        if let Some(session_id) = session {
            bridge
                .end_session(
                    &session_id,
                    &site.id,
                    "logout",
                    now,
                    &request::context(&req),
                )
                .await
                .map_err(|e| HttpError::store(&e, &req))?;
        }
    }
    Ok(HttpResponse::NoContent()
        .cookie(request::clear_session_cookie(&site))
        .finish())
}

/// The id in the path, or a `404` that does not repeat it.
fn path_id(req: &HttpRequest, raw: &str) -> Result<SessionId, HttpError> {
    SessionId::parse(raw).ok_or_else(|| session_not_found(req))
}

fn session_not_found(req: &HttpRequest) -> HttpError {
    HttpError::new(
        StatusCode::NOT_FOUND,
        "session_not_found",
        "the session does not exist or has expired",
        req,
    )
}

/// `ETag` of a session: its version, as a strong tag.
pub fn etag(session: &Session) -> String {
    format!("\"{}\"", session.version)
}

/// A problem+json answer (RFC 9457) with an extension member, in the shape
/// of [`HttpError`]'s.
fn problem(
    status: StatusCode,
    code: &'static str,
    detail: &str,
    extension: (&str, Value),
    req: &HttpRequest,
) -> HttpResponse {
    let mut body = serde_json::json!({
        "type": format!("urn:session-bridge:error:{code}"),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "code": code,
        "detail": detail,
        "request_id": super::observe::request_id(req),
    });
    body[extension.0] = extension.1;
    let mut response = HttpResponse::build(status)
        .content_type("application/problem+json")
        .body(body.to_string());
    response
        .extensions_mut()
        .insert(super::observe::ErrorCode(code));
    response
}

fn view_response(
    status: StatusCode,
    session: &Session,
    state: &AppState,
    now: i64,
) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::ETAG, etag(session)))
        .content_type("application/json")
        .body(super::api::service_view(&state.bridge, session, now).to_string())
}

/// `GET /api/v1/sessions/{id}`: the view with its id and `ETag`. A service
/// read is not user activity: it does not slide the idle timeout.
pub async fn get_session(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, HttpError> {
    authorize(&req, &state.api_keys)?;
    let id = path_id(&req, &path)?;
    let now = state.clock.unix();
    let session = state
        .bridge
        .store
        .get_session(&id)
        .await
        .map_err(|e| HttpError::store(&e, &req))?
        .filter(|s| s.absolute_expires_at > now)
        .ok_or_else(|| session_not_found(&req))?;
    Ok(view_response(StatusCode::OK, &session, &state, now))
}

/// `If-Match: "<version>"`. `None` when absent (or `*`, which would opt
/// out of the check); an error when it is not one strong tag of a version.
fn if_match(req: &HttpRequest) -> Result<Option<u64>, HttpError> {
    let Some(value) = req.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").trim();
    if text == "*" {
        return Ok(None);
    }
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse().ok())
        .map(Some)
        .ok_or_else(|| {
            HttpError::bad_request(
                "invalid_if_match",
                "If-Match must be one strong ETag of a version, such as \"3\"",
                req,
            )
        })
}

/// `PATCH /api/v1/sessions/{id}`: a JSON merge patch (RFC 7396) of `data`,
/// `Content-Type: application/merge-patch+json`, applied only if the
/// session's version is the one in `If-Match` (`428` without it, `412` with
/// `current_version` when stale). Answers the new view with its `ETag`.
pub async fn patch_session(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, HttpError> {
    authorize(&req, &state.api_keys)?;
    let id = path_id(&req, &path)?;
    if !request::has_content_type(&req, MERGE_PATCH) {
        return Err(HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send a JSON merge patch of `data` as application/merge-patch+json",
            &req,
        ));
    }
    let Some(expected) = if_match(&req)? else {
        return Err(HttpError::new(
            StatusCode::PRECONDITION_REQUIRED,
            "precondition_required",
            "send If-Match with the version you read, such as If-Match: \"3\"",
            &req,
        ));
    };
    let body = request::read_body(payload, API_BODY_LIMIT, &req).await?;
    // The patch is `data` itself; merged, `data` is no deeper than the
    // deeper of the two.
    if json_too_deep(&body, MAX_DATA_DEPTH) {
        return Err(HttpError::json_too_deep(MAX_DATA_DEPTH, &req));
    }
    let patch: Map<String, Value> = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(patch)) => patch,
        _ => {
            return Err(HttpError::bad_request(
                "invalid_patch",
                "the body must be a JSON object: a merge patch of the session's data",
                &req,
            ));
        }
    };
    let now = state.clock.unix();
    let bridge = &state.bridge;
    let outcome = bridge
        .sessions
        .patch_data(&bridge.store, &id, expected, &patch, now)
        .await
        .map_err(|e| HttpError::session(&e, &req))?;
    match outcome {
        PatchOutcome::Saved(session) => Ok(view_response(StatusCode::OK, &session, &state, now)),
        PatchOutcome::Conflict { current_version } => Ok(problem(
            StatusCode::PRECONDITION_FAILED,
            "version_mismatch",
            "the session has changed since the version in If-Match: read it again and re-apply",
            ("current_version", Value::from(current_version)),
            &req,
        )),
        PatchOutcome::Missing => Err(session_not_found(&req)),
        PatchOutcome::TooLarge => Err(HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "session_data_too_large",
            format!(
                "the session's data would exceed {} bytes",
                crate::sessions::MAX_DATA_BYTES
            ),
            &req,
        )),
    }
}

/// `DELETE /api/v1/sessions/{id}`: logout everywhere; `204`, or `404` when
/// there is no such session.
pub async fn delete_session(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, HttpError> {
    authorize(&req, &state.api_keys)?;
    let id = path_id(&req, &path)?;
    let bridge = &state.bridge;
    let now = state.clock.unix();
    let origin_site = match bridge.store.get_session(&id).await {
        Ok(Some(session)) => Some(session.origin_site),
        Ok(None) => return Err(session_not_found(&req)),
        // The store does not answer: end the session anyway; the store layer
        // honours it on this node at once and writes it when the store is back.
        Err(crate::store::StoreError::Unavailable(_)) => None,
        Err(e) => return Err(HttpError::store(&e, &req)),
    };
    // The logout tokens' issuer: the site whose host the call came to, else
    // the site where the session began (or any site when that is unknown).
    let initiator = request::site_of(&req, &bridge.topology)
        .map(|(site, _)| site.id.clone())
        .ok()
        .or(origin_site)
        .or_else(|| bridge.topology.sites().first().map(|s| s.id.clone()))
        .unwrap_or_default();
    let ended = bridge
        .end_session(&id, &initiator, "api_logout", now, &request::context(&req))
        .await
        .map_err(|e| HttpError::store(&e, &req))?;
    if ended {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(session_not_found(&req))
    }
}
