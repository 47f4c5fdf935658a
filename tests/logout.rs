//! Logout everywhere over real HTTP: the session ends on every site, its
//! pending bridge tokens die with it, other bridge nodes hear of it on
//! Redis pub/sub, and back-channel receivers get a signed logout token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod session_support;
mod support;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use session_bridge::config::StoreKind;
use session_support::Http;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::app::{Backend, TestApp};
use support::browser::Browser;

/// Signs `user` in on `account` through the service API and gives the
/// browser the session cookie, as a site's login code would.
async fn sign_in(app: &TestApp, browser: &mut Browser, user: &str) -> String {
    app.sign_in(browser, user, Some(serde_json::json!({"cart": ["tea"]})))
        .await
}

fn start_url(app: &TestApp, site: &str, from: &str) -> String {
    format!(
        "{}/bridge/start?from={from}&return_to=%2F&mode=query",
        app.origin(site)
    )
}

/// A hand-off from `account` to `shop` in `browser`; both then hold the session.
async fn hand_off_to_shop(app: &TestApp, browser: &mut Browser, id: &str) {
    browser.follow(&start_url(app, "shop", "account")).await;
    assert_eq!(
        browser.cookie("shop.localhost", "__Host-sb").as_deref(),
        Some(id)
    );
}

async fn session_status(app: &TestApp, browser: &mut Browser, site: &str) -> StatusCode {
    browser.accept_json = true;
    let page = browser
        .get(&format!("{}/bridge/session", app.origin(site)))
        .await;
    browser.accept_json = false;
    page.status
}

async fn logout_on(app: &TestApp, browser: &mut Browser, site: &str) -> support::browser::Page {
    browser
        .request(
            Method::POST,
            &format!("{}/bridge/logout", app.origin(site)),
            None,
        )
        .await
}

async fn logout_on_one_site_ends_it_on_the_others(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut browser = Browser::new(app.port);
    let id = sign_in(&app, &mut browser, "alice").await;
    hand_off_to_shop(&app, &mut browser, &id).await;
    assert_eq!(
        session_status(&app, &mut browser, "shop").await,
        StatusCode::OK
    );
    assert_eq!(
        session_status(&app, &mut browser, "account").await,
        StatusCode::OK
    );

    let page = logout_on(&app, &mut browser, "shop").await;
    assert_eq!(page.status, StatusCode::NO_CONTENT, "{}", page.body);
    let cleared = page.set_cookie("__Host-sb").unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert!(browser.cookie("shop.localhost", "__Host-sb").is_none());

    // account still has its cookie, but the session behind it is gone.
    assert_eq!(
        browser.cookie("account.localhost", "__Host-sb").as_deref(),
        Some(id.as_str())
    );
    assert_eq!(
        session_status(&app, &mut browser, "account").await,
        StatusCode::UNAUTHORIZED
    );
    let http = Http::new(&app);
    assert_eq!(http.get_session(&id).await.status, StatusCode::NOT_FOUND);
    // A second logout has nothing left to end, and still answers 204.
    browser.set_cookie("shop.localhost", "__Host-sb", &id);
    let page = logout_on(&app, &mut browser, "shop").await;
    assert_eq!(page.status, StatusCode::NO_CONTENT);
    // A logout without any session also answers 204.
    browser.clear_cookies("checkout.localhost");
    assert_eq!(
        logout_on(&app, &mut browser, "checkout").await.status,
        StatusCode::NO_CONTENT
    );
}

/// A token minted before the logout fails at redemption: its record names
/// a session that no longer exists (no index of tokens is needed).
async fn pending_tokens_die_with_the_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut browser = Browser::new(app.port);
    let id = sign_in(&app, &mut browser, "alice").await;
    let started = browser.get(&start_url(&app, "shop", "account")).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    let issued = browser.get(started.location().unwrap().as_str()).await;
    assert_eq!(issued.status, StatusCode::SEE_OTHER, "{}", issued.body);
    let accept = issued.location().unwrap();
    assert!(accept.path().ends_with("/bridge/accept"));

    let page = logout_on(&app, &mut browser, "account").await;
    assert_eq!(page.status, StatusCode::NO_CONTENT);

    let page = browser.get(accept.as_str()).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.body);
    assert_eq!(page.error_code().as_deref(), Some("session_not_found"));
    assert!(browser.cookie("shop.localhost", "__Host-sb").is_none());
    assert!(!page.body.contains(&id));
}

/// Two bridge processes share one Redis: a logout on the second is
/// published on `sb:events` with the session's fingerprint, never its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_sub_reaches_other_nodes() {
    let first = TestApp::spawn(Backend::Redis).await;
    let url = first.redis.as_ref().unwrap().url();
    let shared = url.clone();
    let second = TestApp::spawn_with(Backend::Memory, move |c| {
        c.store.kind = StoreKind::Redis;
        c.store.url = Some(shared);
    })
    .await;
    let client = ::redis::Client::open(url).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe("sb:events").await.unwrap();
    let mut events = pubsub.into_on_message();
    let mut next_event = async || -> Value {
        let message = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("an event within 5 s")
            .unwrap();
        assert_eq!(message.get_channel_name(), "sb:events");
        let payload: String = message.get_payload().unwrap();
        serde_json::from_str(&payload).unwrap()
    };

    let http_first = Http::new(&first);
    let http_second = Http::new(&second);
    let view = http_first.create("shop", Some("sam"), json!({})).await;
    let id = view["id"].as_str().unwrap().to_owned();
    // The nodes share the store: the second sees the first's session.
    assert_eq!(http_second.get_session(&id).await.status, StatusCode::OK);

    assert_eq!(http_second.delete(&id).await.status, StatusCode::NO_CONTENT);
    let event = next_event().await;
    assert_eq!(event["type"], "logout", "{event}");
    let fp = event["session_fp"].as_str().unwrap().to_owned();
    assert_eq!(fp.len(), 32, "{fp}");
    assert!(fp.bytes().all(|b| b.is_ascii_hexdigit()), "{fp}");
    assert!(!event.to_string().contains(&id), "never the raw id");
    assert_eq!(
        http_first.get_session(&id).await.status,
        StatusCode::NOT_FOUND
    );
    // The fingerprint is the audit trail's: the same key, the same value.
    let lines = second
        .audit_lines_until(|lines| lines.iter().any(|l| l.contains("session.revoked")))
        .await;
    let revoked: Value = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["event"] == "session.revoked")
        .unwrap();
    assert_eq!(revoked["session_fp"], fp.as_str());

    // A rotation tells the nodes that the old id is dead, too.
    let view = http_first.create("shop", None, json!({})).await;
    let old = view["id"].as_str().unwrap().to_owned();
    let page = http_first
        .create_raw(&json!({"site": "shop", "user_id": "sam", "rotate_from": old}))
        .await;
    assert_eq!(page.status, StatusCode::CREATED);
    let event = next_event().await;
    assert_eq!(event["type"], "rotated", "{event}");
    assert!(!event.to_string().contains(&old));
}

// -------------------------------------------------------------- back-channel

#[derive(Clone, Debug)]
struct Received {
    path: String,
    content_type: String,
    body: String,
}

/// A back-channel receiver: records every request; `/bc/checkout` fails
/// its first request with 500, `/bc/account` always refuses with 400.
struct Receiver {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    handle: actix_web::dev::ServerHandle,
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    log: web::Data<Mutex<Vec<Received>>>,
) -> HttpResponse {
    let received = Received {
        path: req.path().to_owned(),
        content_type: req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let mut log = log.lock().unwrap();
    let earlier = log.iter().filter(|r| r.path == received.path).count();
    log.push(received.clone());
    match (received.path.as_str(), earlier) {
        ("/bc/checkout", 0) => HttpResponse::InternalServerError().finish(),
        ("/bc/account", _) => HttpResponse::BadRequest().finish(),
        _ => HttpResponse::Ok().finish(),
    }
}

impl Receiver {
    async fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = web::Data::new(Mutex::new(Vec::<Received>::new()));
        let received = log.clone().into_inner();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(log.clone())
                .default_service(web::to(receive))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            port,
            received,
            handle,
        }
    }

    fn url(&self, site: &str) -> String {
        format!("http://127.0.0.1:{}/bc/{site}", self.port)
    }

    /// Waits (bounded) until `wanted` holds for what was received.
    async fn until(&self, wanted: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        for _ in 0..100 {
            let received = self.received.lock().unwrap().clone();
            if wanted(&received) {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.received.lock().unwrap().clone()
    }
}

/// Verifies a logout token's EdDSA signature against the bridge's JWKS and
/// returns (header, claims).
async fn verify_logout_token(app: &TestApp, token: &str) -> (Value, Value) {
    let jwks: Value = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/bridge/jwks.json", app.port))
        .header("Host", format!("account.localhost:{}", app.port))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let header: Value = serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    let signature = B64.decode(parts[2]).unwrap();
    assert_eq!(header["typ"], "logout+jwt");
    assert_eq!(header["alg"], "EdDSA");
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("the token's kid is published");
    let public = B64.decode(key["x"].as_str().unwrap()).unwrap();
    let signed = format!("{}.{}", parts[0], parts[1]);
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &public)
        .verify(signed.as_bytes(), &signature)
        .expect("the signature verifies with the published key");
    (header, claims)
}

async fn backchannel_receivers_get_signed_logout_tokens(backend: Backend) {
    let receiver = Receiver::start().await;
    let urls: HashMap<&str, String> = ["account", "shop", "checkout"]
        .into_iter()
        .map(|site| (site, receiver.url(site)))
        .collect();
    let app = TestApp::spawn_with(backend, move |c| {
        for site in &mut c.sites {
            site.backchannel_logout_url = urls[site.id.as_str()].clone();
        }
    })
    .await;
    let mut browser = Browser::new(app.port);
    let id = sign_in(&app, &mut browser, "alice").await;
    hand_off_to_shop(&app, &mut browser, &id).await;
    let logged_out_at = app.clock.unix();
    let page = logout_on(&app, &mut browser, "shop").await;
    assert_eq!(page.status, StatusCode::NO_CONTENT);

    // shop once; checkout twice (a 500, then the retry); account once (400: no retry).
    let received = receiver
        .until(|r| {
            let count = |path: &str| r.iter().filter(|x| x.path == path).count();
            count("/bc/shop") >= 1 && count("/bc/checkout") >= 2 && count("/bc/account") >= 1
        })
        .await;
    let count = |path: &str| received.iter().filter(|x| x.path == path).count();
    assert_eq!(
        (
            count("/bc/shop"),
            count("/bc/checkout"),
            count("/bc/account")
        ),
        (1, 2, 1),
        "{received:?}"
    );
    let mut jtis = Vec::new();
    let mut sids = Vec::new();
    for got in &received {
        assert_eq!(got.content_type, "application/x-www-form-urlencoded");
        assert!(!got.body.contains(&id), "never the raw session id");
        let form: HashMap<String, String> = url::form_urlencoded::parse(got.body.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(form.len(), 1, "{form:?}");
        let token = &form["logout_token"];
        let (_, claims) = verify_logout_token(&app, token).await;
        let site = got.path.trim_start_matches("/bc/");
        assert_eq!(claims["iss"], "shop", "the site where the logout happened");
        assert_eq!(claims["aud"], site);
        assert_eq!(claims["iat"], logged_out_at);
        assert_eq!(claims["exp"], logged_out_at + 120);
        assert_eq!(
            claims["events"],
            json!({"http://schemas.openid.net/event/backchannel-logout": {}})
        );
        assert!(uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).is_ok());
        let sid = claims["sid"].as_str().unwrap();
        assert_eq!(sid.len(), 32);
        assert_ne!(sid, id);
        assert!(claims.get("sub").is_none() && claims.get("nonce").is_none());
        jtis.push((site.to_owned(), claims["jti"].as_str().unwrap().to_owned()));
        sids.push(sid.to_owned());
    }
    // One fingerprint for all; one token per site, the retry resends it.
    sids.dedup();
    assert_eq!(sids.len(), 1, "{sids:?}");
    let checkout: Vec<_> = jtis.iter().filter(|(s, _)| s == "checkout").collect();
    assert_eq!(checkout[0].1, checkout[1].1);
    let shop = jtis.iter().find(|(s, _)| s == "shop").unwrap();
    assert_ne!(shop.1, checkout[0].1);

    // Every attempt is in the audit trail, with the session's fingerprint.
    let lines = app
        .audit_lines_until(|lines| {
            lines
                .iter()
                .filter(|l| l.contains("logout.backchannel"))
                .count()
                >= 4
        })
        .await;
    let attempts: Vec<(String, String, String, String)> = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| {
            l["event"]
                .as_str()
                .unwrap()
                .starts_with("logout.backchannel")
        })
        .map(|l| {
            assert_eq!(l["session_fp"], sids[0].as_str());
            (
                l["event"].as_str().unwrap().to_owned(),
                l["partner"].as_str().unwrap().to_owned(),
                l["reason"].as_str().unwrap().to_owned(),
                l["site"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let has = |event: &str, partner: &str, reason: &str| {
        attempts
            .iter()
            .any(|(e, p, r, s)| e == event && p == partner && r == reason && s == "shop")
    };
    assert!(
        has("logout.backchannel_sent", "shop", "attempt_1:http_200"),
        "{attempts:?}"
    );
    assert!(
        has(
            "logout.backchannel_failed",
            "checkout",
            "attempt_1:http_500"
        ),
        "{attempts:?}"
    );
    assert!(
        has("logout.backchannel_sent", "checkout", "attempt_2:http_200"),
        "{attempts:?}"
    );
    assert!(
        has(
            "logout.backchannel_failed",
            "account",
            "attempt_1:http_400:final"
        ),
        "{attempts:?}"
    );
    for line in &lines {
        assert!(
            !line.contains(&id),
            "the audit trail never holds the raw id"
        );
    }
    receiver.handle.stop(false).await;
}

macro_rules! on_every_store {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(super::Backend::Memory).await })*
        }
        mod redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(super::Backend::Redis).await })*
        }
    };
}

on_every_store!(
    logout_on_one_site_ends_it_on_the_others,
    pending_tokens_die_with_the_session,
    backchannel_receivers_get_signed_logout_tokens,
);
