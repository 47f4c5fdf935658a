//! The demo's own pages: sign in on `account`, fill a cart on `shop`, see it
//! on `checkout`. They sit outside `/bridge` and `/api` and exist only in
//! demo mode. They use the bridge the way a real site would: a page without
//! a session sends the browser through `/bridge/start`.

use crate::audit::{AuditEvent, EventKind};
use crate::flows::return_to::validate_local_target;
use crate::http::AppState;
use crate::http::error::HttpError;
use crate::http::request::{self, Params};
use crate::sessions::NewSession;
use crate::store::Session;
use crate::topology::Site;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde_json::Value;
use std::sync::Arc;

/// Marks the page a hand-off returns to, so a hand-off that does not stick
/// (cookies refused) shows an explanation instead of looping.
const BRIDGED_MARK: &str = "bridged=1";

#[derive(Template)]
#[template(path = "demo/embed.html")]
struct EmbedPage<'a> {
    heading: &'a str,
    account_origin: String,
    sri: String,
}

#[derive(Template)]
#[template(path = "demo/account.html")]
struct AccountPage<'a> {
    user: Option<&'a str>,
    shop_url: String,
    checkout_url: String,
}

#[derive(Template)]
#[template(path = "demo/login.html")]
struct LoginPage<'a> {
    return_to: &'a str,
}

#[derive(Template)]
#[template(path = "demo/store.html")]
struct StorePage<'a> {
    heading: &'a str,
    user: Option<&'a str>,
    cart: Vec<String>,
    can_add: bool,
    login_url: String,
    shop_url: String,
    checkout_url: String,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/login", web::get().to(login_form))
        .route("/login", web::post().to(login_submit))
        .route("/cart", web::post().to(add_to_cart))
        .route("/embed", web::get().to(embed))
        .route("/demo/embed.js", web::get().to(embed_script));
}

fn page(html: Result<String, askama::Error>, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
    let html = html.map_err(|_| {
        HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "page rendering failed",
            req,
        )
    })?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html))
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

fn origin_of(state: &AppState, id: &str) -> String {
    state
        .bridge
        .topology
        .site(id)
        .map(|s| s.primary_origin().to_string())
        .unwrap_or_default()
}

async fn current_session(
    req: &HttpRequest,
    state: &AppState,
    site: &Site,
) -> Result<Option<Session>, HttpError> {
    let Some(id) = request::session_from_cookie(req, site) else {
        return Ok(None);
    };
    state
        .bridge
        .sessions
        .load_for_site(&state.bridge.store, &id, &site.id, state.clock.unix())
        .await
        .map_err(|e| HttpError::session(&e, req))
}

/// Demo POSTs accept only same-origin requests (login CSRF defence).
fn require_same_origin(req: &HttpRequest, site: &Arc<Site>) -> Result<(), HttpError> {
    if request::is_same_origin_request(req, site) {
        Ok(())
    } else {
        Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "cross_origin_refused",
            "this form only accepts same-origin posts",
            req,
        ))
    }
}

fn cart_of(session: Option<&Session>) -> Vec<String> {
    session
        .and_then(|s| s.data.get("cart"))
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn index(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, HttpError> {
    let (site, _) = request::site_of(&req, &state.bridge.topology)?;
    let session = current_session(&req, &state, &site).await?;
    let user = session.as_ref().and_then(|s| s.user_id.as_deref());
    if site.id == "account" {
        let html = AccountPage {
            user,
            shop_url: origin_of(&state, "shop"),
            checkout_url: origin_of(&state, "checkout"),
        }
        .render();
        return page(html, &req);
    }
    if session.is_none() {
        if req.query_string() == BRIDGED_MARK {
            return Err(HttpError::new(
                StatusCode::BAD_REQUEST,
                "cookie_not_kept",
                "the hand-off finished but this browser did not keep the session cookie; check that cookies are allowed",
                &req,
            ));
        }
        return Ok(see_other(&format!(
            "/bridge/start?from=account&return_to=%2F%3F{}",
            BRIDGED_MARK.replace('=', "%3D")
        )));
    }
    let html = StorePage {
        heading: if site.id == "shop" {
            "Shop"
        } else {
            "Checkout"
        },
        user,
        cart: cart_of(session.as_ref()),
        can_add: site.id == "shop",
        login_url: format!("{}/login", origin_of(&state, "account")),
        shop_url: origin_of(&state, "shop"),
        checkout_url: origin_of(&state, "checkout"),
    }
    .render();
    page(html, &req)
}

async fn login_form(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, HttpError> {
    let (site, _) = request::site_of(&req, &state.bridge.topology)?;
    if site.id != "account" {
        return Err(HttpError::not_found(&req));
    }
    let params = Params::query(&req)?;
    let return_to = params
        .get("return_to")
        .and_then(|r| validate_local_target(r).ok())
        .unwrap_or("/");
    let mut response = page(LoginPage { return_to }.render(), &req)?;
    // Browsers check `form-action` against every redirect after the post:
    // signing in continues to /bridge/issue and on to a partner's accept
    // URL, so the partners' origins must be allowed too.
    let partners: Vec<String> = site
        .partners
        .iter()
        .filter_map(|id| state.bridge.topology.site(id))
        .flat_map(|partner| partner.origins.iter().map(ToString::to_string))
        .collect();
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' {}; frame-ancestors 'none'; base-uri 'none'",
        partners.join(" ")
    );
    if let Ok(value) = header::HeaderValue::from_str(&csp) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, value);
    }
    Ok(response)
}

async fn login_submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, HttpError> {
    let (site, _) = request::site_of(&req, &state.bridge.topology)?;
    if site.id != "account" {
        return Err(HttpError::not_found(&req));
    }
    require_same_origin(&req, &site)?;
    let body = request::read_body(payload, 4096, &req).await?;
    let params = Params::parse(&body, &req)?;
    let username = params.require("username", &req)?.trim();
    if username.is_empty() || username.chars().count() > 64 {
        return Err(HttpError::bad_request(
            "invalid_request",
            "the name must be 1 to 64 characters",
            &req,
        ));
    }
    let return_to = params
        .get("return_to")
        .and_then(|r| validate_local_target(r).ok())
        .unwrap_or("/");
    let bridge = &state.bridge;
    let now = state.clock.unix();
    // Signing in always makes a NEW session ID (fixation defence); an
    // anonymous session's cart comes along.
    let existing = current_session(&req, &state, &site).await?;
    let rotated = existing.is_some();
    let old_id = existing.as_ref().map(|s| s.id.clone());
    let session = match existing {
        Some(old) => {
            bridge
                .sessions
                .rotate(&bridge.store, old, &site.id, Some(username.to_owned()), now)
                .await
        }
        None => {
            let new = NewSession {
                site: &site.id,
                user_id: Some(username.to_owned()),
                auth_ref: None,
                data: Default::default(),
            };
            bridge.sessions.create(&bridge.store, new, now).await
        }
    }
    .map_err(|e| HttpError::session(&e, &req))?;
    let kind = if rotated {
        EventKind::SessionRotated
    } else {
        EventKind::SessionCreated
    };
    if let Some(old_id) = &old_id {
        // As the API's rotation does: the old ID is dead, and other nodes hear it.
        bridge.audit.record(
            &AuditEvent::new(EventKind::SessionRevoked, &site.id)
                .session(old_id)
                .reason("rotated"),
            &request::context(&req),
        );
        bridge.publish_event("rotated", old_id).await;
    }
    bridge.audit.record(
        &AuditEvent::new(kind, &site.id)
            .session(&session.id)
            .reason("login"),
        &request::context(&req),
    );
    let mut response = see_other(return_to);
    response
        .add_cookie(&request::session_cookie(&site, &session.id))
        .map_err(|_| {
            HttpError::bad_request("invalid_request", "cannot set the session cookie", &req)
        })?;
    Ok(response)
}

async fn add_to_cart(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, HttpError> {
    let (site, _) = request::site_of(&req, &state.bridge.topology)?;
    if site.id != "shop" {
        return Err(HttpError::not_found(&req));
    }
    require_same_origin(&req, &site)?;
    let body = request::read_body(payload, 4096, &req).await?;
    let params = Params::parse(&body, &req)?;
    let item = params.require("item", &req)?.trim().to_owned();
    if item.is_empty() || item.chars().count() > 100 {
        return Err(HttpError::bad_request(
            "invalid_request",
            "an item is 1 to 100 characters",
            &req,
        ));
    }
    let Some(session) = current_session(&req, &state, &site).await? else {
        return Ok(see_other("/"));
    };
    let bridge = &state.bridge;
    bridge
        .sessions
        .modify(&bridge.store, session, state.clock.unix(), |s| {
            let cart = s
                .data
                .entry("cart")
                .or_insert_with(|| Value::Array(Vec::new()));
            if !cart.is_array() {
                *cart = Value::Array(Vec::new());
            }
            if let Value::Array(items) = cart {
                items.push(Value::String(item.clone()));
            }
        })
        .await
        .map_err(|e| HttpError::session(&e, &req))?;
    Ok(see_other("/"))
}

/// `GET /embed` on shop and checkout: a partner page that uses flow B.
async fn embed(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, HttpError> {
    let (site, _) = request::site_of(&req, &state.bridge.topology)?;
    if site.id == "account" {
        return Err(HttpError::not_found(&req));
    }
    let account_origin = origin_of(&state, "account");
    let html = EmbedPage {
        heading: if site.id == "shop" {
            "Shop"
        } else {
            "Checkout"
        },
        account_origin: account_origin.clone(),
        sri: crate::handshake::sri(crate::handshake::CLASSIC),
    }
    .render()
    .map_err(|_| {
        HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "page rendering failed",
            &req,
        )
    })?;
    // Scripts only from this origin; frames only from account.
    let csp = format!(
        "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; frame-src {account_origin}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_SECURITY_POLICY, csp))
        .content_type("text/html; charset=utf-8")
        .body(html))
}

async fn embed_script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .body(include_str!("../../static/demo-embed.js"))
}
