//! `session-bridge session show ID [--config FILE]`: is this session in the
//! store at all, and for how long? The first question when "my session
//! didn't follow me". An operator tool: it prints the one record asked for
//! (never lists or searches sessions).

use crate::clock::Clock;
use crate::config::{Config, StoreKind, process_env};
use crate::store::{RedisStore, Session, SessionId, Store};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(clap::Subcommand)]
pub enum SessionAction {
    /// Print one session's record and remaining TTL from the configured
    /// store. Exit status: 0 found, 1 not in the store, 2 configuration or
    /// store trouble.
    Show {
        /// The session ID (as in the site's cookie or `X-Session-Id`).
        /// Base64url IDs may begin with `-`, so it is read as a value even
        /// then.
        #[arg(allow_hyphen_values = true)]
        id: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Runs `session …`; returns the process exit code.
pub fn run(action: SessionAction) -> ExitCode {
    match action {
        SessionAction::Show { id, config } => show(&id, config),
    }
}

fn fail(message: &str, code: u8) -> ExitCode {
    eprintln!("session-bridge: {message}");
    ExitCode::from(code)
}

fn show(id: &str, config_path: Option<PathBuf>) -> ExitCode {
    let config = match &config_path {
        Some(path) => match Config::load(path, &process_env()) {
            Ok(config) => config,
            Err(e) => return fail(&e.to_string(), 2),
        },
        None => Config::default(),
    };
    if config.store.kind != StoreKind::Redis {
        return fail(
            "the memory store lives inside the serving process and cannot be read from here; give --config with [store] kind = \"redis\"",
            2,
        );
    }
    let Some(id) = SessionId::parse(id.trim()) else {
        println!("not found: that is not a session ID (43 base64url characters)");
        return ExitCode::from(1);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start a runtime: {e}"), 2),
    };
    let found = runtime.block_on(async {
        let store = RedisStore::from_config(&config.store).await?;
        let session = store.get_session(&id).await?;
        let ttl = match &session {
            Some(_) => store.session_ttl(&id).await?,
            None => None,
        };
        Ok::<_, crate::store::StoreError>(session.map(|s| (s, ttl)))
    });
    match found {
        Ok(Some((session, ttl))) => {
            print!("{}", render(&session, ttl, Clock::system().unix()));
            ExitCode::SUCCESS
        }
        Ok(None) => {
            println!(
                "not found: no such session in the store (never created, expired, or logged out)"
            );
            ExitCode::from(1)
        }
        Err(e) => fail(&format!("[{}] {e}", e.code()), 2),
    }
}

fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m {s}s"),
    }
}

/// The report: a few lines for people, then the record as JSON.
fn render(session: &Session, ttl: Option<Duration>, now: i64) -> String {
    let ttl_line = match ttl {
        Some(ttl) => format!(
            "remaining TTL: {} (gone at {} unless used)",
            human(ttl),
            rfc3339(now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)))
        ),
        None => "remaining TTL: none set (the store holds the record without expiry)".to_owned(),
    };
    let absolute_left = session.absolute_expires_at.saturating_sub(now);
    let absolute = if absolute_left > 0 {
        format!(
            "absolute expiry: {} (in {})",
            rfc3339(session.absolute_expires_at),
            human(Duration::from_secs(absolute_left.unsigned_abs()))
        )
    } else {
        format!(
            "absolute expiry: {} (passed: no site accepts it any more)",
            rfc3339(session.absolute_expires_at)
        )
    };
    let record = serde_json::to_string_pretty(session).unwrap_or_default();
    format!(
        "found in the store\n{ttl_line}\n{absolute}\nsites: {}\nrecord:\n{record}\n",
        session.joined_sites.join(", ")
    )
}
