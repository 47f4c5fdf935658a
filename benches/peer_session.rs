//! A reference for the bridge's session read: a plain actix-web app with
//! actix-session on Redis, the way an actix application keeps its own
//! sessions. `scripts/bench-http.sh` holds `GET /bridge/session` against
//! its `GET /session`.
//!
//! Like the bridge (which slides the idle timeout on every read), sessions
//! here last 30 minutes from the last request, so each read is a load plus
//! a TTL update in Redis on both sides.
//!
//! `cargo bench` runs this without `--serve`: it then only says how to use it.

// The product's allocator (see src/main.rs): the comparison is of the work
// done, not of malloc implementations.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use actix_session::config::{PersistentSession, TtlExtensionPolicy};
use actix_session::storage::RedisSessionStore;
use actix_session::{Session, SessionMiddleware};
use actix_web::cookie::Key;
use actix_web::{App, HttpResponse, HttpServer, web};
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

const USAGE: &str = "peer_session: cargo bench --bench peer_session -- --serve ADDR --redis URL [--workers N] (serves until killed; see scripts/bench-http.sh)";

/// The bridge's default idle timeout.
const IDLE_MINUTES: i64 = 30;

struct Args {
    serve: Option<String>,
    redis: String,
    workers: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        serve: None,
        redis: "redis://127.0.0.1:6379".to_owned(),
        // 0: actix's default, one worker per core, as the bridge's
        // `[server] workers = 0`.
        workers: 0,
    };
    let mut given = std::env::args().skip(1);
    while let Some(arg) = given.next() {
        let mut value = || given.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--serve" => args.serve = Some(value()?),
            "--redis" => args.redis = value()?,
            "--workers" => {
                args.workers = value()?
                    .parse()
                    .map_err(|_| "--workers needs a number".to_owned())?
            }
            // What `cargo bench` passes (`--bench`, filters) is ignored.
            _ => {}
        }
    }
    Ok(args)
}

fn problem(status: actix_web::http::StatusCode, code: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/json")
        .body(format!(r#"{{"code":"{code}"}}"#))
}

static USERS: AtomicU64 = AtomicU64::new(0);

/// `POST /login`: a user id and a small `data` map, as the bridge's
/// load generator gives its sessions.
async fn login(session: Session) -> HttpResponse {
    let user_id = format!("peer-{}", USERS.fetch_add(1, Ordering::Relaxed));
    let data = serde_json::json!({"cart": ["book"], "theme": "dark"});
    if session.insert("user_id", &user_id).is_err() || session.insert("data", data).is_err() {
        return problem(
            actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
            "session_write",
        );
    }
    session.renew();
    HttpResponse::Ok()
        .content_type("application/json")
        .body(serde_json::json!({ "user_id": user_id }).to_string())
}

/// `GET /session`: the session's view, shaped like the bridge's.
async fn read(session: Session) -> HttpResponse {
    let user_id = session.get::<String>("user_id").ok().flatten();
    let data = session.get::<serde_json::Value>("data").ok().flatten();
    let Some(user_id) = user_id else {
        return problem(actix_web::http::StatusCode::UNAUTHORIZED, "no_session");
    };
    HttpResponse::Ok().content_type("application/json").body(
        serde_json::json!({
            "user_id": user_id,
            "data": data.unwrap_or_else(|| serde_json::json!({})),
        })
        .to_string(),
    )
}

async fn serve(args: Args, listen: String) -> Result<(), String> {
    let store = RedisSessionStore::new(args.redis.as_str())
        .await
        .map_err(|e| format!("redis: {e}"))?;
    let key = Key::generate();
    let mut server = HttpServer::new(move || {
        let lifecycle = PersistentSession::default()
            .session_ttl(actix_web::cookie::time::Duration::minutes(IDLE_MINUTES))
            .session_ttl_extension_policy(TtlExtensionPolicy::OnEveryRequest);
        App::new()
            .wrap(
                SessionMiddleware::builder(store.clone(), key.clone())
                    // Plain HTTP on loopback.
                    .cookie_secure(false)
                    .session_lifecycle(lifecycle)
                    .build(),
            )
            .route("/login", web::post().to(login))
            .route("/session", web::get().to(read))
    })
    .bind(listen.as_str())
    .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    if args.workers > 0 {
        server = server.workers(args.workers);
    }
    for addr in server.addrs() {
        println!("listening on {addr}");
    }
    let _ = std::io::stdout().flush();
    server.run().await.map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("peer_session: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let Some(listen) = args.serve.clone() else {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    };
    match actix_web::rt::System::new().block_on(serve(args, listen)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peer_session: {e}");
            ExitCode::from(1)
        }
    }
}
