//! The service API (`/api/v1`), behind bearer keys from `[api] keys`.

use super::AppState;
use super::error::HttpError;
use super::limits::{API_BODY_LIMIT, MAX_DATA_DEPTH, json_too_deep};
use super::request;
use crate::audit::{AuditEvent, EventKind};
use crate::flows::binding::secrets_equal_bytes;
use crate::sessions::{NewSession, SessionPolicy};
use crate::store::{Session, SessionId};
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Checks `Authorization: Bearer <key>` against every configured key.
/// SHA-256 digests are compared in constant time, so neither the content
/// nor the length of a key leaks through timing; every key is compared.
pub fn authorize(req: &HttpRequest, keys: &[String]) -> Result<(), HttpError> {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let presented = match header.split_once(' ') {
        Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => key.trim(),
        _ => "",
    };
    let digest = |text: &str| ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let presented_digest = digest(presented);
    let mut ok = false;
    for key in keys {
        // Constant time (`subtle`), and no early exit: every key is compared.
        ok |= secrets_equal_bytes(presented_digest.as_ref(), digest(key).as_ref());
    }
    if ok && !presented.is_empty() {
        Ok(())
    } else {
        Err(HttpError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API key is required",
            req,
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    site: String,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    data: Option<Map<String, Value>>,
    /// A session to replace (login, privilege change): the new session takes
    /// its data (with `data` merged over it as a merge patch) and, unless
    /// `user_id` is given, its user; the old ID dies.
    #[serde(default)]
    rotate_from: Option<String>,
}

fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// The session view (DESIGN.md): `id` only where the caller may see it.
/// The service API's view: the session view with `id`, plus `session_fp`,
/// the keyed fingerprint that back-channel logout tokens carry as `sid`
/// and the audit trail uses, so a site's backend can map one to the other.
pub fn service_view(bridge: &crate::flows::Bridge, session: &Session, now: i64) -> Value {
    let mut view = session_view(session, &bridge.sessions, now, true);
    view["session_fp"] = Value::String(bridge.audit.fingerprint(&session.id));
    view
}

pub fn session_view(session: &Session, policy: &SessionPolicy, now: i64, with_id: bool) -> Value {
    let mut view = serde_json::json!({
        "user_id": session.user_id,
        "data": session.data,
        "version": session.version,
        "expires_at": rfc3339(policy.expires_at(session, now)),
        "absolute_expires_at": rfc3339(session.absolute_expires_at),
    });
    if with_id {
        view["id"] = Value::String(session.id.expose().to_owned());
    }
    view
}

/// The OpenAPI 3.1 description of the JSON endpoints, kept in step with
/// the routes and error codes by `tests/openapi.rs`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// `GET /api/openapi.json`: [`OPENAPI`], without authentication.
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}

/// `POST /api/v1/sessions`: a site's login code hands its session to the bridge.
pub async fn create_session(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, HttpError> {
    authorize(&req, &state.api_keys)?;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/json") {
        return Err(HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send application/json",
            &req,
        ));
    }
    let body = request::read_body(payload, API_BODY_LIMIT, &req).await?;
    // `data` sits one level inside the body.
    if json_too_deep(&body, MAX_DATA_DEPTH + 1) {
        return Err(HttpError::json_too_deep(MAX_DATA_DEPTH + 1, &req));
    }
    let body: CreateSession = serde_json::from_slice(&body).map_err(|e| {
        HttpError::bad_request(
            "invalid_json",
            format!("the body is not a valid request: {e}"),
            &req,
        )
    })?;
    if body
        .user_id
        .as_ref()
        .is_some_and(|u| u.is_empty() || u.len() > 256)
    {
        return Err(HttpError::bad_request(
            "invalid_request",
            "user_id must be 1 to 256 characters",
            &req,
        ));
    }
    let bridge = &state.bridge;
    let site = bridge
        .topology
        .site(&body.site)
        .ok_or_else(|| HttpError::bad_request("site_unknown", "no such site", &req))?;
    let now = state.clock.unix();
    if let Some(old) = &body.rotate_from {
        return rotate_session(&req, &state, site, old, body.user_id, body.data, now).await;
    }
    let data = body.data.unwrap_or_default();
    if !crate::sessions::data_fits(&data) {
        return Err(data_too_large(&req));
    }
    let new = NewSession {
        site: &site.id,
        user_id: body.user_id,
        auth_ref: None,
        data,
    };
    let session = bridge
        .sessions
        .create(&bridge.store, new, now)
        .await
        .map_err(|e| HttpError::session(&e, &req))?;
    bridge.audit.record(
        &AuditEvent::new(EventKind::SessionCreated, &site.id)
            .session(&session.id)
            .reason("api"),
        &request::context(&req),
    );
    Ok(HttpResponse::Created()
        .insert_header((header::ETAG, format!("\"{}\"", session.version)))
        .content_type("application/json")
        .body(service_view(bridge, &session, now).to_string()))
}

fn data_too_large(req: &HttpRequest) -> HttpError {
    HttpError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "session_data_too_large",
        format!(
            "the session's data would exceed {} bytes",
            crate::sessions::MAX_DATA_BYTES
        ),
        req,
    )
}

/// `POST /api/v1/sessions` with `rotate_from`: a NEW id for a login or a
/// privilege change (session fixation defence). The old session must be
/// live and held by `site`; unknown, malformed or foreign ids are all the
/// same `404`, which never repeats the id.
async fn rotate_session(
    req: &HttpRequest,
    state: &AppState,
    site: &crate::topology::Site,
    old: &str,
    user_id: Option<String>,
    patch: Option<Map<String, Value>>,
    now: i64,
) -> Result<HttpResponse, HttpError> {
    let bridge = &state.bridge;
    let not_found = || {
        HttpError::new(
            StatusCode::NOT_FOUND,
            "session_not_found",
            "the session to rotate does not exist or has expired",
            req,
        )
    };
    let old_id = SessionId::parse(old).ok_or_else(not_found)?;
    let mut old = bridge
        .sessions
        .load_for_site(&bridge.store, &old_id, &site.id, now)
        .await
        .map_err(|e| HttpError::session(&e, req))?
        .ok_or_else(not_found)?;
    if let Some(patch) = &patch {
        crate::sessions::merge_patch_data(&mut old.data, patch);
    }
    if !crate::sessions::data_fits(&old.data) {
        return Err(data_too_large(req));
    }
    let user_id = user_id.or_else(|| old.user_id.clone());
    let fresh = bridge
        .sessions
        .rotate(&bridge.store, old, &site.id, user_id, now)
        .await
        .map_err(|e| HttpError::session(&e, req))?;
    let ctx = request::context(req);
    bridge.audit.record(
        &AuditEvent::new(EventKind::SessionRotated, &site.id)
            .session(&fresh.id)
            .reason("api"),
        &ctx,
    );
    bridge.audit.record(
        &AuditEvent::new(EventKind::SessionRevoked, &site.id)
            .session(&old_id)
            .reason("rotated"),
        &ctx,
    );
    // Other nodes drop what they hold of the old id; no back-channel
    // logout: the user is still signed in, under the new id.
    bridge.publish_event("rotated", &old_id).await;
    Ok(HttpResponse::Created()
        .insert_header((header::ETAG, format!("\"{}\"", fresh.version)))
        .content_type("application/json")
        .body(service_view(bridge, &fresh, now).to_string()))
}
