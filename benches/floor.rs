//! The floor of a hand-off over HTTP: the work no implementation of the
//! protocol can skip, with the bridge's own crypto and the same Redis
//! client, so `scripts/bench-http.sh` can tell what the bridge adds on top.
//!
//! `GET /issue` signs a bridge token (`TokenService::issue`, a random
//! challenge) and records it pending with one `SET … PX … NX`, then 303s to
//! `/accept?token=…`. `GET /accept` verifies it (`TokenService::verify`),
//! consumes it with one Lua script that does what the bridge's consume
//! script does, sets `sb=<session id>` and 303s to `/`. No sites, no
//! session store, no audit, no metrics: whatever the bridge spends beyond
//! this is its own overhead.
//!
//! `GET /start` is flow A's first step at its barest, for an explanatory
//! measurement only (the `floor-flow-a` scenario): a random verifier in a
//! `state` cookie and a 303 to `/issue?challenge=<its S256>`; `/issue` then
//! binds the token to that challenge and redirects to `/accept-bound`,
//! which requires the cookie and checks it against the token. Without
//! `/start`, `/issue` makes up a challenge and redirects to `/accept`, which
//! reads no cookie: the two-request floor the targets compare with.
//!
//! `cargo bench` runs this without `--serve`: it then only says how to use it.

// The product's allocator (see src/main.rs): the comparison is of the work
// done, not of malloc implementations.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use actix_web::cookie::Cookie;
use actix_web::http::header;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use redis::Script;
use redis::aio::ConnectionManager;
use ring::rand::{SecureRandom, SystemRandom};
use session_bridge::config::TokenAlgorithm;
use session_bridge::token::{KeySet, TokenRequest, TokenService, generate_key_file};
use std::io::Write;
use std::process::ExitCode;
use subtle::ConstantTimeEq;

const USAGE: &str = "floor: cargo bench --bench floor -- --serve ADDR --redis URL [--algorithm EdDSA|HS256] [--workers N] [--shared-connection] (serves until killed; see scripts/bench-http.sh)";

/// The bridge's defaults: token TTL and leeway, and the grace its token
/// records get past them.
const TTL_SECS: u64 = 30;
const LEEWAY_SECS: u64 = 5;
const RECORD_GRACE_SECS: u64 = 10;
const ISSUER: &str = "account";
const AUDIENCE: &str = "shop";

/// The consume step, as the bridge does it: pending (`p…`) → consumed
/// (`c…`) keeping the TTL, the old value returned; consumed → returned as
/// is (a replay); missing → nil. One script on one key.
const CONSUME_TOKEN: &str = r"
local value = redis.call('GET', KEYS[1])
if not value then
  return false
end
if string.sub(value, 1, 1) == 'p' then
  redis.call('SET', KEYS[1], 'c' .. string.sub(value, 2), 'KEEPTTL')
end
return value
";

struct Floor {
    tokens: TokenService,
    client: redis::Client,
    /// The connection opened at start, on the main thread; `None` with
    /// per-worker connections.
    shared: Option<ConnectionManager>,
    consume: Script,
    random: SystemRandom,
}

/// A worker's own connection, opened on first use on the worker's runtime,
/// as the bridge does (src/store/redis/worker.rs): a connection's socket
/// I/O runs on the runtime that opened it, so one opened at start would make
/// every command cross to the main thread and back.
#[derive(Default)]
struct WorkerRedis(tokio::sync::OnceCell<ConnectionManager>);

impl Floor {
    async fn redis(&self, worker: &WorkerRedis) -> Result<ConnectionManager, redis::RedisError> {
        if let Some(shared) = &self.shared {
            return Ok(shared.clone());
        }
        worker
            .0
            .get_or_try_init(|| ConnectionManager::new(self.client.clone()))
            .await
            .cloned()
    }
}

struct Args {
    serve: Option<String>,
    redis: String,
    algorithm: TokenAlgorithm,
    workers: usize,
    /// One connection opened at start and shared by the workers, instead of
    /// one per worker.
    shared_connection: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        serve: None,
        redis: "redis://127.0.0.1:6379".to_owned(),
        algorithm: TokenAlgorithm::EdDSA,
        // 0: actix's default, one worker per core, as the bridge's
        // `[server] workers = 0`.
        workers: 0,
        shared_connection: false,
    };
    let mut given = std::env::args().skip(1);
    while let Some(arg) = given.next() {
        let mut value = || given.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--serve" => args.serve = Some(value()?),
            "--redis" => args.redis = value()?,
            "--algorithm" => {
                args.algorithm = match value()?.as_str() {
                    "EdDSA" => TokenAlgorithm::EdDSA,
                    "HS256" => TokenAlgorithm::HS256,
                    other => return Err(format!("unknown algorithm {other}")),
                }
            }
            "--workers" => {
                args.workers = value()?
                    .parse()
                    .map_err(|_| "--workers needs a number".to_owned())?
            }
            "--shared-connection" => args.shared_connection = true,
            // What `cargo bench` passes (`--bench`, filters) is ignored.
            _ => {}
        }
    }
    Ok(args)
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn random_b64(random: &SystemRandom) -> Option<String> {
    let mut bytes = [0u8; 32];
    random.fill(&mut bytes).ok()?;
    Some(B64.encode(bytes))
}

fn refuse(status: u16, code: &str) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
    HttpResponse::build(status)
        .content_type("application/json")
        .body(format!(r#"{{"code":"{code}"}}"#))
}

fn see_other(location: &str) -> actix_web::HttpResponseBuilder {
    let mut response = HttpResponse::SeeOther();
    response.insert_header((header::LOCATION, location));
    response
}

fn s256(verifier: &str) -> String {
    B64.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ))
}

/// `GET /start`: a verifier in the `state` cookie, its challenge to `/issue`.
async fn start(floor: web::Data<Floor>) -> HttpResponse {
    let Some(verifier) = random_b64(&floor.random) else {
        return refuse(500, "random");
    };
    let location = format!("/issue?challenge={}", s256(&verifier));
    let cookie = Cookie::build("state", verifier)
        .path("/")
        .http_only(true)
        .finish();
    see_other(&location).cookie(cookie).finish()
}

/// `GET /issue[?challenge=…]`: sign, record pending, redirect to the accept URL.
async fn issue(
    req: HttpRequest,
    floor: web::Data<Floor>,
    worker: web::Data<WorkerRedis>,
) -> HttpResponse {
    // Without `/start`, a made-up challenge stands for the receiving
    // browser's; the session id stands for the one the bridge would read
    // from the issuing site's cookie.
    let given = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(name, _)| name == "challenge")
        .map(|(_, value)| value.into_owned());
    let after_start = given.is_some();
    let challenge = given.or_else(|| random_b64(&floor.random));
    let (Some(challenge), Some(session_id)) = (challenge, random_b64(&floor.random)) else {
        return refuse(500, "random");
    };
    let request = TokenRequest {
        issuer: ISSUER,
        audience: AUDIENCE,
        challenge: &challenge,
        return_to: "/",
    };
    let Ok((token, claims)) = floor.tokens.issue(&request, now()) else {
        return refuse(500, "token_signing_failed");
    };
    let record = format!("p|{AUDIENCE}|{challenge}|{session_id}");
    let ttl_ms = (TTL_SECS + LEEWAY_SECS + RECORD_GRACE_SECS) * 1000;
    let Ok(mut redis) = floor.redis(&worker).await else {
        return refuse(503, "store_unavailable");
    };
    let stored: Result<Option<String>, _> = redis::cmd("SET")
        .arg(format!("sb:t:{}", claims.jti))
        .arg(record)
        .arg("PX")
        .arg(ttl_ms)
        .arg("NX")
        .query_async(&mut redis)
        .await;
    match stored {
        Ok(Some(_)) => {}
        Ok(None) => return refuse(409, "jti_exists"),
        Err(_) => return refuse(503, "store_unavailable"),
    }
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("token", &token)
        .finish();
    // After `/start`, to the accept that requires the state cookie.
    let path = if after_start {
        "/accept-bound"
    } else {
        "/accept"
    };
    see_other(&format!("{path}?{query}")).finish()
}

/// `GET /accept?token=…`: verify, consume once, set the cookie, redirect.
async fn accept(
    req: HttpRequest,
    floor: web::Data<Floor>,
    worker: web::Data<WorkerRedis>,
) -> HttpResponse {
    redeem(req, floor, worker, false).await
}

/// `GET /accept-bound?token=…`: the same, after `/start`: the `state`
/// cookie's verifier must be the token's challenge.
async fn accept_bound(
    req: HttpRequest,
    floor: web::Data<Floor>,
    worker: web::Data<WorkerRedis>,
) -> HttpResponse {
    redeem(req, floor, worker, true).await
}

async fn redeem(
    req: HttpRequest,
    floor: web::Data<Floor>,
    worker: web::Data<WorkerRedis>,
    bound: bool,
) -> HttpResponse {
    let token = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.into_owned());
    let Some(token) = token else {
        return refuse(400, "missing_parameter");
    };
    let claims = match floor.tokens.verify(&token, AUDIENCE, now()) {
        Ok(claims) => claims,
        Err(e) => return refuse(400, e.code()),
    };
    if claims.iss != ISSUER {
        return refuse(400, "issuer_not_allowed");
    }
    let Ok(mut redis) = floor.redis(&worker).await else {
        return refuse(503, "store_unavailable");
    };
    let consumed: Result<Option<String>, _> = floor
        .consume
        .key(format!("sb:t:{}", claims.jti))
        .invoke_async(&mut redis)
        .await;
    let value = match consumed {
        Ok(Some(value)) => value,
        Ok(None) => return refuse(400, "token_unknown"),
        Err(_) => return refuse(503, "store_unavailable"),
    };
    let mut fields = value.splitn(4, '|');
    let (Some(state), Some(aud), Some(challenge), Some(session_id)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return refuse(500, "token_record_corrupt");
    };
    if state != "p" {
        return refuse(400, "token_replayed");
    }
    if aud != claims.aud || challenge != claims.cch {
        return refuse(400, "token_binding_mismatch");
    }
    if bound {
        let Some(state) = req.cookie("state") else {
            return refuse(400, "state_missing");
        };
        if !bool::from(s256(state.value()).as_bytes().ct_eq(claims.cch.as_bytes())) {
            return refuse(400, "token_binding_mismatch");
        }
    }
    let cookie = Cookie::build("sb", session_id.to_owned())
        .path("/")
        .http_only(true)
        .finish();
    see_other("/").cookie(cookie).finish()
}

async fn serve(args: Args, listen: String) -> Result<(), String> {
    let keys_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    generate_key_file(keys_dir.path(), args.algorithm, now()).map_err(|e| e.to_string())?;
    let keys = KeySet::load(keys_dir.path(), args.algorithm, None).map_err(|e| e.to_string())?;
    let tokens = TokenService::new(keys, TTL_SECS, LEEWAY_SECS);
    let client = redis::Client::open(args.redis.as_str()).map_err(|e| e.to_string())?;
    // Fail at start when Redis is not there, either way.
    let opened = ConnectionManager::new(client.clone())
        .await
        .map_err(|e| format!("redis: {e}"))?;
    let floor = web::Data::new(Floor {
        tokens,
        client,
        shared: args.shared_connection.then_some(opened),
        consume: Script::new(CONSUME_TOKEN),
        random: SystemRandom::new(),
    });
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(floor.clone())
            .app_data(web::Data::new(WorkerRedis::default()))
            .route("/start", web::get().to(start))
            .route("/issue", web::get().to(issue))
            .route("/accept", web::get().to(accept))
            .route("/accept-bound", web::get().to(accept_bound))
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
            eprintln!("floor: {e}\n{USAGE}");
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
            eprintln!("floor: {e}");
            ExitCode::from(1)
        }
    }
}
