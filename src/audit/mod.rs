//! The audit trail for security teams: every token and session event as one
//! JSON line, chained by MAC per writing node, written off the request path
//! to a file and/or a Redis Stream. Raw session IDs and raw tokens are never
//! recorded: sessions appear as keyed fingerprints.

pub mod alerts;
pub mod export;
pub mod line;
pub mod sink;
pub mod verify;
pub mod writer;

use crate::store::SessionId;
use line::AuditRecord;
use ring::hmac;
use sink::{FileSink, StreamSink};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use writer::Sinks;

/// Who made the request, as the HTTP layer saw it.
#[derive(Clone, Debug, Default)]
pub struct RequestContext {
    pub ip: String,
    pub user_agent: String,
    pub request_id: String,
}

/// Event names are part of the audit trail's interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    SessionCreated,
    SessionRotated,
    SessionRevoked,
    TokenIssued,
    TokenRedeemed,
    TokenReplayed,
    TokenRejected,
    RedirectRefused,
    FrameRefused,
    ExchangeRejected,
    LogoutBackchannelSent,
    LogoutBackchannelFailed,
    /// A client went over a rate limit: the first refusal of a window only.
    RateLimited,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionCreated => "session.created",
            Self::SessionRotated => "session.rotated",
            Self::SessionRevoked => "session.revoked",
            Self::TokenIssued => "token.issued",
            Self::TokenRedeemed => "token.redeemed",
            Self::TokenReplayed => "token.replayed",
            Self::TokenRejected => "token.rejected",
            Self::RedirectRefused => "redirect.refused",
            Self::FrameRefused => "frame.refused",
            Self::ExchangeRejected => "exchange.rejected",
            Self::LogoutBackchannelSent => "logout.backchannel_sent",
            Self::LogoutBackchannelFailed => "logout.backchannel_failed",
            Self::RateLimited => "rate.limited",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One audit event.
#[derive(Clone, Debug)]
pub struct AuditEvent<'a> {
    pub kind: EventKind,
    pub site: &'a str,
    pub partner: Option<&'a str>,
    pub jti: Option<&'a str>,
    pub reason: Option<&'a str>,
    /// The session concerned; recorded only as a keyed fingerprint.
    pub session: Option<&'a SessionId>,
}

impl<'a> AuditEvent<'a> {
    pub fn new(kind: EventKind, site: &'a str) -> Self {
        Self {
            kind,
            site,
            partner: None,
            jti: None,
            reason: None,
            session: None,
        }
    }

    pub fn partner(mut self, partner: &'a str) -> Self {
        self.partner = Some(partner);
        self
    }

    pub fn jti(mut self, jti: &'a str) -> Self {
        self.jti = Some(jti);
        self
    }

    pub fn session(mut self, session: &'a SessionId) -> Self {
        self.session = Some(session);
        self
    }

    pub fn reason(mut self, reason: &'a str) -> Self {
        self.reason = Some(reason);
        self
    }
}

/// Where audit events go, and the key that fingerprints sessions and
/// chains lines. Clones share one writer.
#[derive(Clone)]
pub struct Audit {
    inner: Arc<Inner>,
}

struct Inner {
    key: hmac::Key,
    node: String,
    queue: Option<writer::Queue>,
    alerter: Option<alerts::Alerter>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Audit {{ node: {:?} }}", self.inner.node)
    }
}

impl Default for Audit {
    /// No sinks, a random key: events only reach the application log.
    fn default() -> Self {
        let key = crate::flows::binding::random_token().unwrap_or_default();
        Self::without_sinks(key.as_bytes(), "local")
    }
}

/// How the audit trail is set up.
pub struct AuditSettings {
    pub key: Vec<u8>,
    /// This writer's name in every line (its chain is per node).
    pub node: String,
    pub file: Option<PathBuf>,
    pub rotate_bytes: u64,
    /// `XADD` lines to `sb:audit` on this Redis.
    pub stream_url: Option<String>,
    pub alerts: Option<alerts::AlertSettings>,
}

impl Audit {
    /// An audit handle that writes nowhere but the application log.
    pub fn without_sinks(key: &[u8], node: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                key: hmac::Key::new(hmac::HMAC_SHA256, key),
                node: node.to_owned(),
                queue: None,
                alerter: None,
            }),
        }
    }

    /// Starts the writer thread with the configured sinks.
    pub fn start(settings: AuditSettings) -> Result<Self, String> {
        let file = match &settings.file {
            Some(path) => Some(
                FileSink::open(path, settings.rotate_bytes)
                    .map_err(|e| format!("cannot open the audit file {}: {e}", path.display()))?,
            ),
            None => None,
        };
        let stream = match &settings.stream_url {
            Some(url) => Some(StreamSink::new(url)?),
            None => None,
        };
        let key = hmac::Key::new(hmac::HMAC_SHA256, &settings.key);
        let queue = writer::start(
            key.clone(),
            settings.node.clone(),
            Sinks { file, stream },
            settings.file.as_deref(),
        )
        .map_err(|e| format!("cannot start the audit writer: {e}"))?;
        let alerter = settings.alerts.map(alerts::Alerter::start).transpose()?;
        Ok(Self {
            inner: Arc::new(Inner {
                key,
                node: settings.node,
                queue: Some(queue),
                alerter,
            }),
        })
    }

    /// The session's fingerprint: the first 128 bits of
    /// HMAC-SHA256(audit key, "sb:session:" ‖ id), hex. The same session
    /// always gives the same fingerprint; without the key it reveals nothing.
    pub fn fingerprint(&self, id: &SessionId) -> String {
        fingerprint(&self.inner.key, id)
    }

    /// Queue statistics, when a writer runs.
    pub fn stats(&self) -> Option<&writer::QueueStats> {
        self.inner.queue.as_ref().map(|q| q.stats.as_ref())
    }

    /// Records one event: off the request path, never blocking.
    pub fn record(&self, event: &AuditEvent<'_>, ctx: &RequestContext) {
        let non_empty = |text: &str| (!text.is_empty()).then(|| text.to_owned());
        let record = AuditRecord {
            id: uuid::Uuid::now_v7().to_string(),
            ts: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            seq: 0,
            node: self.inner.node.clone(),
            event: event.kind.as_str().to_owned(),
            site: event.site.to_owned(),
            partner: event.partner.map(str::to_owned),
            jti: event.jti.map(str::to_owned),
            session_fp: event.session.map(|id| self.fingerprint(id)),
            ip: non_empty(&ctx.ip),
            user_agent: non_empty(&ctx.user_agent),
            reason: event.reason.map(str::to_owned),
            request_id: non_empty(&ctx.request_id),
        };
        tracing::debug!(
            target: "audit",
            event = record.event.as_str(),
            site = record.site.as_str(),
            reason = record.reason.as_deref().unwrap_or(""),
            request_id = record.request_id.as_deref().unwrap_or(""),
        );
        if let Some(alerter) = &self.inner.alerter {
            alerter.observe(
                &record,
                time::OffsetDateTime::now_utc().unix_timestamp() / 60,
            );
        }
        if let Some(queue) = &self.inner.queue {
            queue.push(record);
        }
    }
}

/// See [`Audit::fingerprint`].
pub fn fingerprint(key: &hmac::Key, id: &SessionId) -> String {
    let tag = hmac::sign(key, format!("sb:session:{}", id.expose()).as_bytes());
    line::hex(&tag.as_ref()[..16])
}

/// The audit key: `[audit] key` (`env:NAME` or the value), else a random key
/// kept in `keys_dir/audit.key` (made on first start, mode 0600).
pub fn load_key(reference: Option<&str>, keys_dir: &Path) -> Result<Vec<u8>, String> {
    load_or_make_key(reference, keys_dir, true)
}

/// Like [`load_key`] but never makes a key (for `audit verify` and friends).
pub fn read_key(reference: Option<&str>, keys_dir: &Path) -> Result<Vec<u8>, String> {
    load_or_make_key(reference, keys_dir, false)
}

fn load_or_make_key(
    reference: Option<&str>,
    keys_dir: &Path,
    create: bool,
) -> Result<Vec<u8>, String> {
    if let Some(reference) = reference {
        let key = crate::config::resolve_secret(reference, |name| std::env::var(name).ok())
            .map_err(|e| e.to_string())?;
        if key.len() < 16 {
            return Err("[audit] key must be at least 16 bytes".to_owned());
        }
        return Ok(key.into_bytes());
    }
    let path = keys_dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.trim().as_bytes().to_vec()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let key = crate::flows::binding::random_token()
                .ok_or("the system random generator failed")?;
            std::fs::create_dir_all(keys_dir)
                .map_err(|e| format!("{}: {e}", keys_dir.display()))?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options
                .open(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            std::io::Write::write_all(&mut file, key.as_bytes())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(key.into_bytes())
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// The audit key's file name in `keys_dir` (not `.json`: it is not a signing key).
pub const KEY_FILE: &str = "audit.key";
