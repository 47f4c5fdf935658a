//! Logout everywhere: the record is deleted, the other bridge nodes hear of
//! it on Redis pub/sub, and every site with a back-channel logout URL gets a
//! signed logout token.
//!
//! - **The record is the session.** Deleting `sb:s:{id}` ends it on every
//!   site at once: every site's cookie holds the ID itself and every read
//!   goes to the store. Pending bridge tokens of the session need no index
//!   of their own: a token record names the session, and redemption loads it
//!   after consuming the token, so a token of a deleted session fails with
//!   `session_not_found` (see `Bridge::accept`).
//! - **Nodes** are told with `PUBLISH sb:events {"type":"logout","session_fp":…}`
//!   (Redis only): the fingerprint is the audit trail's keyed hash, never the
//!   raw ID. [`spawn_event_listener`] subscribes and logs what it hears; it
//!   is the place where a node's local cache would drop the session.
//! - **Back-channel** (OpenID Back-Channel Logout 1.0 in shape): a JWT with
//!   `typ: logout+jwt`, signed with the bridge's signing key (verify it with
//!   `/bridge/jwks.json`), claims `iss` (the site where the logout happened),
//!   `aud` (the receiving site), `iat`, `exp`, `jti`, `events` and `sid` = the
//!   session fingerprint, POSTed as `logout_token=…` (form-encoded). It is sent
//!   off the request path by one worker thread per process, retried with
//!   backoff on network errors and 5xx answers, and every attempt is in the
//!   audit trail (`logout.backchannel_sent` / `logout.backchannel_failed`).

use super::Bridge;
use crate::audit::{Audit, AuditEvent, EventKind, RequestContext};
use crate::config::{StoreConfig, StoreKind};
use crate::store::{EVENTS_CHANNEL, SessionId, Store, StoreError};
use crate::token::LOGOUT_TOKEN_TYPE;
use serde::Serialize;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};

/// The `events` member of a logout token.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// A logout token is valid this long after `iat`.
const LOGOUT_TOKEN_TTL_SECS: i64 = 120;
/// Deliveries waiting for the worker; past this, a delivery is refused
/// (and audited as failed) rather than queued without bound.
const QUEUE_CAPACITY: usize = 1024;
/// Deliveries in flight at once.
const MAX_IN_FLIGHT: usize = 32;
/// One attempt (connect, send, answer) gives up after this long.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Waits before the second and third attempts.
const BACKOFF: [Duration; 2] = [Duration::from_millis(500), Duration::from_secs(1)];

/// A session event as published on [`EVENTS_CHANNEL`].
#[derive(Serialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    session_fp: &'a str,
}

/// The claims of a back-channel logout token.
#[derive(Serialize)]
struct LogoutClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    jti: &'a str,
    sid: &'a str,
    events: serde_json::Value,
}

impl Bridge {
    /// Ends session `id` on every site: deletes the record, tells the other
    /// nodes, and queues a back-channel logout to every site that has a URL.
    /// `initiator` is the site where the logout happened (the tokens'
    /// `iss`); `reason` goes to the audit trail. `false` when there was no
    /// such session (nothing is announced then).
    ///
    /// # Errors
    ///
    /// Only when the record could not be deleted: the session may still be
    /// alive, and the caller must say so. Announcing is best effort.
    pub async fn end_session(
        &self,
        id: &SessionId,
        initiator: &str,
        reason: &str,
        now: i64,
        ctx: &RequestContext,
    ) -> Result<bool, StoreError> {
        if !self.store.delete_session(id).await? {
            return Ok(false);
        }
        self.audit.record(
            &AuditEvent::new(EventKind::SessionRevoked, initiator)
                .session(id)
                .reason(reason),
            ctx,
        );
        self.announce_logout(id, initiator, now, ctx).await;
        Ok(true)
    }

    /// The announcing half of [`Self::end_session`], for callers that
    /// deleted the record themselves (revocation of a replayed token's
    /// session): publish on `sb:events`, queue the back-channel logouts.
    pub async fn announce_logout(
        &self,
        id: &SessionId,
        initiator: &str,
        now: i64,
        ctx: &RequestContext,
    ) {
        self.publish_event("logout", id).await;
        self.send_backchannel_logouts(id, initiator, now, ctx);
    }

    /// Publishes `{"type": kind, "session_fp": …}` on [`EVENTS_CHANNEL`]
    /// (Redis only; a no-op on the memory store). Failures are logged, never
    /// returned: the store already holds the truth.
    pub async fn publish_event(&self, kind: &str, id: &SessionId) {
        let fingerprint = self.audit.fingerprint(id);
        let event = Event {
            kind,
            session_fp: &fingerprint,
        };
        let Ok(message) = serde_json::to_string(&event) else {
            return;
        };
        if let Err(e) = self.store.publish(EVENTS_CHANNEL, &message).await {
            tracing::warn!(code = e.code(), kind, "could not publish a session event");
        }
    }

    /// Signs one logout token per site with a back-channel URL and queues it.
    fn send_backchannel_logouts(
        &self,
        id: &SessionId,
        initiator: &str,
        now: i64,
        ctx: &RequestContext,
    ) {
        let fingerprint = self.audit.fingerprint(id);
        for site in self.topology.sites() {
            let Some(url) = &site.backchannel_logout_url else {
                continue;
            };
            let jti = uuid::Uuid::new_v4().to_string();
            let claims = LogoutClaims {
                iss: initiator,
                aud: &site.id,
                iat: now,
                exp: now.saturating_add(LOGOUT_TOKEN_TTL_SECS),
                jti: &jti,
                sid: &fingerprint,
                events: serde_json::json!({ BACKCHANNEL_LOGOUT_EVENT: {} }),
            };
            let failed = |reason: &str| {
                self.audit.record(
                    &AuditEvent::new(EventKind::LogoutBackchannelFailed, initiator)
                        .partner(&site.id)
                        .jti(&jti)
                        .session(id)
                        .reason(reason),
                    ctx,
                );
            };
            let token = match self.tokens.sign_claims(&claims, LOGOUT_TOKEN_TYPE) {
                Ok(token) => token,
                Err(e) => {
                    failed(e.code());
                    continue;
                }
            };
            let delivery = Delivery {
                url: url.to_string(),
                token,
                initiator: initiator.to_owned(),
                receiver: site.id.clone(),
                jti: jti.clone(),
                session: id.clone(),
                audit: self.audit.clone(),
                ctx: ctx.clone(),
            };
            match worker() {
                Some(queue) => {
                    if queue.try_send(delivery).is_err() {
                        failed("queue_full");
                    }
                }
                None => failed("worker_unavailable"),
            }
        }
    }
}

/// One logout token for one site.
struct Delivery {
    url: String,
    token: String,
    initiator: String,
    receiver: String,
    jti: String,
    session: SessionId,
    audit: Audit,
    ctx: RequestContext,
}

impl Delivery {
    fn record(&self, kind: EventKind, reason: &str) {
        self.audit.record(
            &AuditEvent::new(kind, &self.initiator)
                .partner(&self.receiver)
                .jti(&self.jti)
                .session(&self.session)
                .reason(reason),
            &self.ctx,
        );
    }
}

/// How one attempt went.
enum Attempt {
    Delivered(u16),
    /// Worth another try (network trouble, 5xx, 429).
    Retry(String),
    /// The receiver refused the token (4xx): another try would not help.
    Refused(String),
}

/// The process's delivery queue; the worker thread starts on first use.
fn worker() -> Option<&'static mpsc::Sender<Delivery>> {
    static QUEUE: OnceLock<Option<mpsc::Sender<Delivery>>> = OnceLock::new();
    QUEUE.get_or_init(start_worker).as_ref()
}

/// One thread with its own actix runtime: the HTTP client (awc) is
/// single-threaded, and a thread of its own keeps deliveries independent of
/// whichever runtime ended the session.
fn start_worker() -> Option<mpsc::Sender<Delivery>> {
    let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
    let spawned = std::thread::Builder::new()
        .name("sb-backchannel".to_owned())
        .spawn(move || actix_web::rt::System::new().block_on(run_worker(receiver)));
    match spawned {
        Ok(_) => Some(sender),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the back-channel logout worker");
            None
        }
    }
}

async fn run_worker(mut queue: mpsc::Receiver<Delivery>) {
    let client = http_client();
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(delivery) = queue.recv().await {
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            return;
        };
        let client = client.clone();
        actix_web::rt::spawn(async move {
            deliver(&client, &delivery).await;
            drop(permit);
        });
    }
}

/// Up to three attempts, 0.5 s and 1 s apart; each one audited.
async fn deliver(client: &awc::Client, delivery: &Delivery) {
    let attempts = BACKOFF.len() + 1;
    for attempt in 1..=attempts {
        let outcome = attempt_once(client, delivery).await;
        match outcome {
            Attempt::Delivered(status) => {
                delivery.record(
                    EventKind::LogoutBackchannelSent,
                    &format!("attempt_{attempt}:http_{status}"),
                );
                return;
            }
            Attempt::Refused(why) => {
                delivery.record(
                    EventKind::LogoutBackchannelFailed,
                    &format!("attempt_{attempt}:{why}:final"),
                );
                return;
            }
            Attempt::Retry(why) => {
                let last = attempt == attempts;
                let reason = if last {
                    format!("attempt_{attempt}:{why}:final")
                } else {
                    format!("attempt_{attempt}:{why}")
                };
                delivery.record(EventKind::LogoutBackchannelFailed, &reason);
                if let Some(wait) = BACKOFF.get(attempt - 1) {
                    tokio::time::sleep(*wait).await;
                }
            }
        }
    }
}

async fn attempt_once(client: &awc::Client, delivery: &Delivery) -> Attempt {
    let sent = client
        .post(delivery.url.as_str())
        .timeout(ATTEMPT_TIMEOUT)
        .send_form(&[("logout_token", delivery.token.as_str())])
        .await;
    match sent {
        Ok(response) => {
            let status = response.status();
            if status.is_success() {
                Attempt::Delivered(status.as_u16())
            } else if status.is_server_error() || status.as_u16() == 429 {
                Attempt::Retry(format!("http_{}", status.as_u16()))
            } else {
                Attempt::Refused(format!("http_{}", status.as_u16()))
            }
        }
        Err(awc::error::SendRequestError::Timeout) => Attempt::Retry("timeout".to_owned()),
        Err(awc::error::SendRequestError::Connect(_)) => {
            Attempt::Retry("connect_failed".to_owned())
        }
        Err(awc::error::SendRequestError::Url(_)) => Attempt::Refused("invalid_url".to_owned()),
        Err(_) => Attempt::Retry("send_failed".to_owned()),
    }
}

/// The back-channel client: no redirects (the URL is configuration; a
/// redirect elsewhere is not followed), HTTPS on rustls with the ring
/// provider (the bridge's one crypto stack) and the system's trust store.
/// The bridge's outgoing HTTP client: TLS with the system roots (rustls on
/// ring), no redirects, bounded timeouts.
pub fn http_client() -> awc::Client {
    let mut connector = awc::Connector::new().timeout(ATTEMPT_TIMEOUT);
    if let Some(tls) = tls_config() {
        connector = connector.rustls_0_23(Arc::new(tls));
    }
    awc::Client::builder()
        .disable_redirects()
        .timeout(ATTEMPT_TIMEOUT)
        .add_default_header((
            actix_web::http::header::USER_AGENT,
            concat!("session-bridge/", env!("CARGO_PKG_VERSION")),
        ))
        .connector(connector)
        .finish()
}

fn tls_config() -> Option<rustls::ClientConfig> {
    let found = rustls_native_certs::load_native_certs();
    if let Some(error) = found.errors.first() {
        tracing::warn!(error = %error, "some system root certificates could not be loaded");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        tracing::warn!("no system root certificates: https back-channel logouts will fail");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(builder) => {
            let mut config = builder.with_root_certificates(roots).with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Some(config)
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot set up TLS for back-channel logouts");
            None
        }
    }
}

/// Subscribes to [`EVENTS_CHANNEL`] and logs every event heard (target
/// `events`), reconnecting with backoff. The place where a node-local cache
/// of sessions would drop the session named by the fingerprint.
///
/// Runs for a Redis store given by `url`, or the first node of a `cluster`
/// (cluster nodes relay `PUBLISH` to each other). Sentinel deployments are
/// not subscribed yet: publishing works there, listening needs the current
/// master's address.
/// Called with each event's `type` and `session_fp`.
pub type EventHandler = Arc<dyn Fn(&str, &str) + Send + Sync>;

pub fn spawn_event_listener(store: &StoreConfig, on_event: EventHandler) {
    if store.kind != StoreKind::Redis {
        return;
    }
    let url = match (&store.url, &store.cluster) {
        (Some(url), _) => url.clone(),
        (None, Some(nodes)) => match nodes.first() {
            Some(url) => url.clone(),
            None => return,
        },
        (None, None) => return,
    };
    tokio::spawn(listen_for_events(url, on_event));
}

async fn listen_for_events(url: String, on_event: EventHandler) {
    let mut wait = Duration::from_millis(500);
    loop {
        match subscribe(&url, &on_event).await {
            Ok(()) => wait = Duration::from_millis(500),
            Err(why) => tracing::warn!(why, "session event subscription lost; retrying"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}

/// One subscription, until the connection ends. Errors never quote the URL.
async fn subscribe(url: &str, on_event: &EventHandler) -> Result<(), &'static str> {
    use futures_util::StreamExt;
    let client = redis::Client::open(url).map_err(|_| "invalid redis url")?;
    let mut pubsub = tokio::time::timeout(Duration::from_secs(5), client.get_async_pubsub())
        .await
        .map_err(|_| "redis did not answer")?
        .map_err(|_| "cannot connect to redis")?;
    pubsub
        .subscribe(EVENTS_CHANNEL)
        .await
        .map_err(|_| "cannot subscribe")?;
    let mut messages = pubsub.into_on_message();
    while let Some(message) = messages.next().await {
        let payload: String = message.get_payload().unwrap_or_default();
        let event: serde_json::Value = serde_json::from_str(&payload).unwrap_or_default();
        tracing::info!(
            target: "events",
            kind = event["type"].as_str().unwrap_or("unknown"),
            session_fp = event["session_fp"].as_str().unwrap_or(""),
            "session event received"
        );
        if let (Some(kind), Some(fp)) = (event["type"].as_str(), event["session_fp"].as_str()) {
            on_event(kind, fp);
        }
    }
    Ok(())
}
