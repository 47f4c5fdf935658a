//! HTTP: routes, headers, and the server. Handlers are thin: they parse the
//! request, call [`crate::flows`] or the store, and shape the answer.

pub mod admin;
pub mod api;
pub mod bridge;
pub mod error;
pub mod handshake;
pub mod observe;
pub mod request;
pub mod session_api;
pub mod tls;

use crate::clock::Clock;
use crate::flows::Bridge;
use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use error::HttpError;

/// Shared by every request.
pub struct AppState {
    pub bridge: Bridge,
    pub clock: Clock,
    /// Resolved bearer keys for `/api/v1`.
    pub api_keys: Vec<String>,
    /// Serve the demo sites' pages.
    pub demo: bool,
    /// Resolved admin tokens for `/admin`.
    pub admin_tokens: Vec<String>,
    /// This node's audit file, for `/admin/audit`.
    pub audit_file: Option<std::path::PathBuf>,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

/// The CSP of pages that set none themselves: no script at all.
const DEFAULT_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Whether a path's answers must never be cached.
fn is_no_store_path(path: &str) -> bool {
    (path.starts_with("/bridge/") || path.starts_with("/api/") || path.starts_with("/admin/"))
        && !matches!(
            path,
            "/bridge/jwks.json" | "/bridge/session-bridge.js" | "/bridge/session-bridge.mjs"
        )
}

/// Security headers on every response.
async fn security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let no_store = is_no_store_path(req.path());
    let mut response = next.call(req).await?;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if no_store {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    let is_html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if is_html {
        if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(DEFAULT_CSP),
            );
        }
        // Pages that may not be framed say so twice; the flow B frame page
        // names its allowed ancestors in its CSP instead.
        let framable = headers
            .get(header::CONTENT_SECURITY_POLICY)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|csp| !csp.contains("frame-ancestors 'none'"));
        if !framable {
            headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        }
    }
    Ok(response)
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, HttpError> {
    Err(HttpError::not_found(&req))
}

/// Registers every route on an actix `App`.
pub fn configure(cfg: &mut web::ServiceConfig, demo: bool) {
    cfg.route("/bridge/start", web::get().to(bridge::start))
        .route("/bridge/issue", web::get().to(bridge::issue))
        .service(
            web::resource("/bridge/accept")
                .route(web::get().to(bridge::accept_get))
                .route(web::post().to(bridge::accept_post)),
        )
        .route("/bridge/jwks.json", web::get().to(bridge::jwks))
        .route("/bridge/frame", web::get().to(handshake::frame))
        .route("/bridge/exchange", web::post().to(handshake::exchange))
        .route(
            "/bridge/session-bridge.js",
            web::get().to(bridge::classic_script),
        )
        .route(
            "/bridge/session-bridge.mjs",
            web::get().to(bridge::module_script),
        )
        .route(
            "/bridge/assets/bridge.css",
            web::get().to(bridge::stylesheet),
        )
        .service(web::resource("/api/v1/sessions").route(web::post().to(api::create_session)))
        .route("/admin/audit", web::get().to(admin::audit))
        .route("/metrics", web::get().to(observe::metrics))
        .route("/healthz", web::get().to(bridge::healthz))
        .route("/readyz", web::get().to(bridge::readyz));
    if demo {
        crate::demo::configure(cfg);
    }
}

/// Starts the server on an already bound listener; with `tls`, over HTTPS.
pub fn serve(
    state: AppState,
    listener: std::net::TcpListener,
    workers: usize,
    tls: Option<rustls::ServerConfig>,
) -> std::io::Result<Server> {
    let demo = state.demo;
    let topology = std::sync::Arc::clone(&state.bridge.topology);
    let state = web::Data::new(state);
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(from_fn(security_headers))
            .wrap(from_fn(observe::observe))
            .configure(|cfg| configure(cfg, demo))
            // The session API (`/bridge/session`, heartbeat, logout with CORS per site; `/api/v1/sessions/{id}`).
            .configure(|cfg| session_api::configure(cfg, &topology))
            .default_service(web::to(not_found))
    });
    server = match tls {
        Some(config) => server.listen_rustls_0_23(listener, config)?,
        None => server.listen(listener)?,
    };
    if workers > 0 {
        server = server.workers(workers);
    }
    Ok(server.run())
}
