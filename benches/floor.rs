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

const USAGE: &str = "floor: cargo bench --bench floor -- --serve ADDR --redis URL [--algorithm EdDSA|HS256] [--workers N] (serves until killed; see scripts/bench-http.sh)";

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
    redis: ConnectionManager,
    consume: Script,
    random: SystemRandom,
}

struct Args {
    serve: Option<String>,
    redis: String,
    algorithm: TokenAlgorithm,
    workers: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        serve: None,
        redis: "redis://127.0.0.1:6379".to_owned(),
        algorithm: TokenAlgorithm::EdDSA,
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

/// `GET /issue`: sign, record pending, redirect to the accept URL.
async fn issue(floor: web::Data<Floor>) -> HttpResponse {
    // The challenge stands for the receiving browser's; the session id for
    // the one the bridge would read from the issuing site's cookie.
    let (Some(challenge), Some(session_id)) =
        (random_b64(&floor.random), random_b64(&floor.random))
    else {
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
    let mut redis = floor.redis.clone();
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
    see_other(&format!("/accept?{query}")).finish()
}

/// `GET /accept?token=…`: verify, consume once, set the cookie, redirect.
async fn accept(req: HttpRequest, floor: web::Data<Floor>) -> HttpResponse {
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
    let mut redis = floor.redis.clone();
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
    let redis = ConnectionManager::new(client)
        .await
        .map_err(|e| format!("redis: {e}"))?;
    let floor = web::Data::new(Floor {
        tokens,
        redis,
        consume: Script::new(CONSUME_TOKEN),
        random: SystemRandom::new(),
    });
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(floor.clone())
            .route("/issue", web::get().to(issue))
            .route("/accept", web::get().to(accept))
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
