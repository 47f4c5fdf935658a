//! Security alerts: a replayed (leaked) token, or a burst of refused tokens
//! from one IP or for one partner within a minute, raises an alert — a
//! counter in `/metrics`, a warning in the log, and, when
//! `[alerts] webhook_url` is set, a signed POST (a JWT with `typ: alert+jwt`,
//! signed by the bridge's signing key: verify it with `/bridge/jwks.json`),
//! retried with backoff, off the request path.

use super::line::AuditRecord;
use crate::metrics::ReasonLabels;
use crate::token::TokenService;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Duration;

/// The `typ` of alert JWTs.
pub const ALERT_TOKEN_TYPE: &str = "alert+jwt";
const QUEUE_CAPACITY: usize = 1024;
const BACKOFF: [Duration; 2] = [Duration::from_millis(500), Duration::from_secs(1)];
/// Burst counters kept at most (keys are IPs and partners); past it, reset.
const MAX_TRACKED_KEYS: usize = 100_000;

/// How alerts are raised.
pub struct AlertSettings {
    pub webhook_url: Option<String>,
    pub rejections_per_minute: u32,
    pub signer: TokenService,
    /// `session_bridge_alerts_total{reason}`.
    pub counter: Family<ReasonLabels, Counter>,
}

/// What an alert says (the JWT's claims, besides `iat` and `jti`).
#[derive(Clone, Debug, Serialize)]
pub struct Alert {
    /// `token_replayed` or `rejection_burst`.
    pub kind: &'static str,
    pub site: String,
    pub partner: Option<String>,
    pub ip: Option<String>,
    pub token_jti: Option<String>,
    pub session_fp: Option<String>,
    /// For bursts: `ip:…` or `partner:…`, and the count in the minute.
    pub burst_key: Option<String>,
    pub count: Option<u32>,
    pub audit_id: String,
}

#[derive(Serialize)]
struct AlertClaims<'a> {
    iat: i64,
    jti: String,
    alert: &'a Alert,
}

/// Counts rejections per key and minute; raises at the threshold, once.
pub struct Alerter {
    threshold: u32,
    counter: Family<ReasonLabels, Counter>,
    windows: Mutex<HashMap<String, (i64, u32)>>,
    sender: Option<SyncSender<Alert>>,
}

impl Alerter {
    pub fn start(settings: AlertSettings) -> Result<Self, String> {
        let sender = match settings.webhook_url.filter(|u| !u.is_empty()) {
            Some(url) => {
                let (sender, receiver) = sync_channel(QUEUE_CAPACITY);
                let signer = settings.signer;
                std::thread::Builder::new()
                    .name("alert-webhook".to_owned())
                    .spawn(move || {
                        actix_web::rt::System::new().block_on(deliver_all(receiver, url, signer))
                    })
                    .map_err(|e| format!("cannot start the alert sender: {e}"))?;
                Some(sender)
            }
            None => None,
        };
        Ok(Self {
            threshold: settings.rejections_per_minute.max(1),
            counter: settings.counter,
            windows: Mutex::new(HashMap::new()),
            sender,
        })
    }

    /// Looks at one audit record; raises what it calls for.
    pub fn observe(&self, record: &AuditRecord, unix_minute: i64) {
        let base = || Alert {
            kind: "token_replayed",
            site: record.site.clone(),
            partner: record.partner.clone(),
            ip: record.ip.clone(),
            token_jti: record.jti.clone(),
            session_fp: record.session_fp.clone(),
            burst_key: None,
            count: None,
            audit_id: record.id.clone(),
        };
        match record.event.as_str() {
            // A retry by the same browser is not a leak.
            "token.replayed" if record.reason.as_deref() == Some("token_replayed") => {
                self.raise(base())
            }
            "token.rejected" | "exchange.rejected" => {
                let partner = record
                    .partner
                    .clone()
                    .unwrap_or_else(|| record.site.clone());
                let keys = [
                    record.ip.as_ref().map(|ip| format!("ip:{ip}")),
                    Some(format!("partner:{partner}")),
                ];
                for key in keys.into_iter().flatten() {
                    if let Some(count) = self.count(&key, unix_minute) {
                        self.raise(Alert {
                            kind: "rejection_burst",
                            burst_key: Some(key),
                            count: Some(count),
                            token_jti: None,
                            session_fp: None,
                            ..base()
                        });
                    }
                }
            }
            _ => {}
        }
    }

    /// The count when it has just reached the threshold in this minute.
    fn count(&self, key: &str, minute: i64) -> Option<u32> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() >= MAX_TRACKED_KEYS {
            windows.retain(|_, (m, _)| *m == minute);
            if windows.len() >= MAX_TRACKED_KEYS {
                windows.clear();
            }
        }
        let entry = windows.entry(key.to_owned()).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 += 1;
        (entry.1 == self.threshold).then_some(entry.1)
    }

    fn raise(&self, alert: Alert) {
        self.counter
            .get_or_create(&ReasonLabels {
                reason: alert.kind.to_owned(),
            })
            .inc();
        tracing::warn!(
            target: "alert",
            kind = alert.kind,
            site = alert.site.as_str(),
            burst_key = alert.burst_key.as_deref().unwrap_or(""),
            audit_id = alert.audit_id.as_str(),
            "security alert"
        );
        if let Some(sender) = &self.sender
            && sender.try_send(alert).is_err()
        {
            tracing::error!("the alert queue is full: a webhook alert was not sent");
        }
    }
}

async fn deliver_all(receiver: Receiver<Alert>, url: String, signer: TokenService) {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(5))
        .finish();
    // The receiver is blocking; wait for it off the runtime's thread.
    let (forward, mut alerts) = tokio::sync::mpsc::channel::<Alert>(QUEUE_CAPACITY);
    std::thread::spawn(move || {
        while let Ok(alert) = receiver.recv() {
            if forward.blocking_send(alert).is_err() {
                break;
            }
        }
    });
    while let Some(alert) = alerts.recv().await {
        let claims = AlertClaims {
            iat: time::OffsetDateTime::now_utc().unix_timestamp(),
            jti: uuid::Uuid::new_v4().to_string(),
            alert: &alert,
        };
        let Ok(body) = signer.sign_claims(&claims, ALERT_TOKEN_TYPE) else {
            tracing::error!("could not sign an alert");
            continue;
        };
        for attempt in 0..=BACKOFF.len() {
            let sent = client
                .post(&url)
                .insert_header(("Content-Type", "application/jwt"))
                .send_body(body.clone())
                .await;
            match sent {
                Ok(response) if response.status().is_success() => break,
                outcome => {
                    let status = outcome.map(|r| r.status().as_u16()).unwrap_or(0);
                    tracing::warn!(status, attempt, "alert webhook attempt failed");
                    match BACKOFF.get(attempt) {
                        Some(wait) => actix_web::rt::time::sleep(*wait).await,
                        None => tracing::error!("alert webhook gave up after retries"),
                    }
                }
            }
        }
    }
}
