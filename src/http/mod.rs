//! HTTP: routes, headers, and the server. Handlers are thin: they parse the
//! request, call [`crate::flows`] or the store, and shape the answer.

pub mod admin;
pub mod api;
pub mod bridge;
pub mod cors;
pub mod error;
pub mod handshake;
pub mod headers;
pub mod limits;
pub mod middleware;
pub mod observe;
pub mod rate_limit;
pub mod request;
pub mod session_api;
pub mod tls;

use crate::clock::Clock;
use crate::flows::Bridge;
use actix_web::dev::Server;
use actix_web::http::KeepAlive;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use error::HttpError;

/// Shared by every request (each server worker has a copy that differs
/// only in its store handle: see [`AppState::for_worker`]).
#[derive(Clone)]
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
    /// Peers whose `X-Forwarded-For` names the client and whose
    /// `X-Forwarded-Proto` names the scheme.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Sizes and timeouts from `[server]`.
    pub limits: limits::Limits,
    /// Rate limits per client IP from `[limits]`.
    pub rate_limits: std::sync::Arc<rate_limit::RateLimits>,
}

impl AppState {
    /// This state for one server worker: the same everything, but the
    /// worker's own store handle, so its Redis I/O runs on its own thread.
    #[must_use]
    pub fn for_worker(&self) -> Self {
        let mut state = self.clone();
        state.bridge.store = self.bridge.store.for_worker();
        state
    }
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, HttpError> {
    Err(HttpError::not_found(&req))
}

/// Registers every route on an actix `App`. Each path is one resource with
/// a route per method, so a known path with another method gets `405` and
/// an `Allow` header listing that path's methods (see
/// [`error::HttpError::shape_framework_refusal`] for its error answer), not a
/// `404`.
pub fn configure(cfg: &mut web::ServiceConfig, demo: bool) {
    cfg.service(web::resource("/bridge/start").route(web::get().to(bridge::start)))
        .service(web::resource("/bridge/issue").route(web::get().to(bridge::issue)))
        .service(
            web::resource("/bridge/accept")
                .route(web::get().to(bridge::accept_get))
                .route(web::post().to(bridge::accept_post)),
        )
        .service(web::resource("/bridge/jwks.json").route(web::get().to(bridge::jwks)))
        .service(web::resource("/bridge/frame").route(web::get().to(handshake::frame)))
        .service(web::resource("/bridge/exchange").route(web::post().to(handshake::exchange)))
        .service(
            web::resource("/bridge/session-bridge.js").route(web::get().to(bridge::classic_script)),
        )
        .service(
            web::resource("/bridge/session-bridge.mjs").route(web::get().to(bridge::module_script)),
        )
        .service(
            web::resource("/bridge/assets/bridge.css").route(web::get().to(bridge::stylesheet)),
        )
        .service(web::resource("/api/v1/sessions").route(web::post().to(api::create_session)))
        .service(web::resource("/api/openapi.json").route(web::get().to(api::openapi)))
        .service(web::resource("/admin/audit").route(web::get().to(admin::audit)))
        .service(web::resource("/metrics").route(web::get().to(observe::metrics)))
        .service(web::resource("/healthz").route(web::get().to(bridge::healthz)))
        .service(web::resource("/readyz").route(web::get().to(bridge::readyz)));
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
    let limits = state.limits.clone();
    // One middleware (see middleware.rs for what it does, in which order).
    // The factory runs once on each worker's thread.
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.for_worker()))
            .wrap(from_fn(middleware::around))
            .configure(|cfg| configure(cfg, demo))
            // The session API (`/bridge/session`, heartbeat, logout with CORS per site; `/api/v1/sessions/{id}`).
            .configure(|cfg| session_api::configure(cfg, &topology))
            .default_service(web::to(not_found))
    })
    .client_request_timeout(limits.request_timeout)
    .client_disconnect_timeout(limits.disconnect_timeout)
    .keep_alive(
        limits
            .keep_alive
            .map_or(KeepAlive::Disabled, KeepAlive::Timeout),
    );
    server = match tls {
        Some(config) => server.listen_rustls_0_23(listener, config)?,
        None => server.listen(listener)?,
    };
    if workers > 0 {
        server = server.workers(workers);
    }
    Ok(server.run())
}
