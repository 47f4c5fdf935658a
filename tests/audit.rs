//! The audit trail end to end: events with their fields, never a secret,
//! and `session-bridge audit verify` catching every kind of tampering, in
//! the file and in the Redis Stream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::StatusCode;
use std::path::Path;
use std::process::Command;
use support::app::{ADMIN_TOKEN, Backend, TestApp};
use support::browser::Browser;

const BIN: &str = env!("CARGO_BIN_EXE_session-bridge");

async fn sign_in(app: &TestApp, browser: &mut Browser, user: &str) -> String {
    app.sign_in(browser, user, None).await
}

fn record(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap()
}

/// A config file for the CLI that points at the app's keys and audit file.
fn cli_config(app: &TestApp, audit_file: &Path) -> std::path::PathBuf {
    let path = app.keys_dir.path().join("cli.toml");
    std::fs::write(
        &path,
        format!(
            "[tokens]\nkeys_dir = \"{}\"\n[audit]\nfile = \"{}\"\n",
            app.keys_dir.path().display(),
            audit_file.display()
        ),
    )
    .unwrap();
    path
}

fn verify(config: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .args(["audit", "verify", "--config"])
        .arg(config)
        .args(extra)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

async fn events_and_fields(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        if config.store.url.is_some() {
            config.audit.redis_stream = true;
        }
    })
    .await;
    let mut browser = Browser::new(app.port);
    let id = sign_in(&app, &mut browser, "ada").await;
    let start = format!(
        "{}/bridge/start?from=account&return_to=%2F",
        app.origin("shop")
    );
    let issue = browser.get(&start).await.location().unwrap();
    let accept = browser.get(issue.as_str()).await.location().unwrap();
    let token = accept
        .query_pairs()
        .find(|(k, _)| k == "token")
        .unwrap()
        .1
        .into_owned();
    assert_eq!(
        browser.get(accept.as_str()).await.status,
        StatusCode::SEE_OTHER
    );
    // A refusal, a leaked replay (another browser), and the revocation.
    browser
        .get(&format!("{}/bridge/accept?token=junk", app.origin("shop")))
        .await;
    let mut thief = Browser::new(app.port);
    thief.get(accept.as_str()).await;
    // Refusals on the other endpoints.
    browser
        .get(&format!(
            "{}/bridge/issue?to=ghost&challenge=x&return_to=%2F",
            app.origin("account")
        ))
        .await;
    browser
        .get(&format!(
            "{}/bridge/issue?to=shop&challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&return_to=%2F%2Fevil",
            app.origin("account")
        ))
        .await;
    browser
        .get(&format!(
            "{}/bridge/frame?to=ghost&challenge=x",
            app.origin("account")
        ))
        .await;
    browser
        .post_form(
            &format!("{}/bridge/exchange", app.origin("shop")),
            &[("token", "x")],
        )
        .await;

    let wanted = [
        "session.created",
        "token.issued",
        "token.redeemed",
        "token.rejected",
        "token.replayed",
        "session.revoked",
        "redirect.refused",
        "frame.refused",
        "exchange.rejected",
    ];
    let lines = app
        .audit_lines_until(|lines| {
            wanted.iter().all(|w| {
                lines
                    .iter()
                    .any(|l| l.contains(&format!("\"event\":\"{w}\"")))
            })
        })
        .await;
    let records: Vec<serde_json::Value> = lines.iter().map(|l| record(l)).collect();
    for event in wanted {
        assert!(
            records.iter().any(|r| r["event"] == event),
            "{event} missing from {lines:#?}"
        );
    }
    // Field names in their fixed order, `mac` last.
    let order = [
        "id",
        "ts",
        "seq",
        "node",
        "event",
        "site",
        "partner",
        "jti",
        "session_fp",
        "ip",
        "user_agent",
        "reason",
        "request_id",
        "mac",
    ];
    for line in &lines {
        let positions: Vec<usize> = order
            .iter()
            .map(|name| line.find(&format!("\"{name}\":")).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{line}");
        assert_eq!(records[0].as_object().unwrap().len(), order.len());
    }
    for (i, r) in records.iter().enumerate() {
        let id = r["id"].as_str().unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "7", "UUID v7: {id}");
        assert!(r["ts"].as_str().unwrap().ends_with('Z'));
        assert_eq!(r["seq"], (i + 1) as u64);
        assert_eq!(r["ip"], "127.0.0.1");
        assert!(r["request_id"].as_str().is_some_and(|v| !v.is_empty()));
        assert_eq!(r["mac"].as_str().unwrap().len(), 64);
    }
    let issued = records
        .iter()
        .find(|r| r["event"] == "token.issued")
        .unwrap();
    let redeemed = records
        .iter()
        .find(|r| r["event"] == "token.redeemed")
        .unwrap();
    assert_eq!(issued["site"], "account");
    assert_eq!(issued["partner"], "shop");
    assert_eq!(issued["jti"], redeemed["jti"]);
    assert_eq!(
        issued["session_fp"], redeemed["session_fp"],
        "one session, one fingerprint"
    );
    assert_eq!(issued["session_fp"].as_str().unwrap().len(), 32);
    let replayed = records
        .iter()
        .find(|r| r["event"] == "token.replayed")
        .unwrap();
    assert_eq!(replayed["reason"], "token_replayed");
    assert_eq!(replayed["session_fp"], issued["session_fp"]);
    let rejected = records
        .iter()
        .find(|r| r["event"] == "token.rejected")
        .unwrap();
    assert_eq!(rejected["reason"], "token_malformed");
    // The CLI computes the same fingerprint from the raw ID.
    let config = cli_config(&app, &app.audit_path());
    let out = Command::new(BIN)
        .args(["audit", "fingerprint", "--config"])
        .arg(&config)
        .arg(&id)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        issued["session_fp"].as_str().unwrap(),
        "exit {:?}, stderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    // Base64url session IDs can begin with `-`: read as the ID, not an option.
    let fingerprint_of = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["audit", "fingerprint", "--config"])
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let dashed = format!("-b{}", &id[2..]);
    let bare = fingerprint_of(&[&dashed]);
    assert_eq!(bare.len(), 32);
    assert_eq!(bare, fingerprint_of(&["--", &dashed]));
    assert_ne!(bare, issued["session_fp"].as_str().unwrap());
    // Never a raw session ID or token.
    let text = std::fs::read_to_string(app.audit_path()).unwrap();
    assert!(!text.contains(&id));
    assert!(!text.contains(&token));
    for part in token.split('.') {
        assert!(
            !text.contains(part),
            "a token part leaked into the audit trail"
        );
    }
    // Intact trail verifies; so does the stream when there is one.
    let (code, out) = verify(&config, &[]);
    assert_eq!(code, Some(0), "{out}");
    if let Some(url) = app.config.store.url.clone() {
        let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", app.port))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains(
                "session_bridge_store_operation_duration_seconds_count{reason=\"consume_token\"}"
            ),
            "store latency by operation: {metrics}"
        );
        let stream_lines = wait_for_stream(&url, lines.len()).await;
        assert!(stream_lines >= lines.len());
        let (code, out) = verify(&config, &["--redis", &url]);
        assert_eq!(code, Some(0), "{out}");
    }
}

async fn wait_for_stream(url: &str, at_least: usize) -> usize {
    let client = ::redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let mut length = 0;
    for _ in 0..100 {
        length = ::redis::cmd("XLEN")
            .arg("sb:audit")
            .query_async(&mut connection)
            .await
            .unwrap();
        if length >= at_least {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    length
}

async fn tampering_is_caught_at_the_right_line(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut browser = Browser::new(app.port);
    sign_in(&app, &mut browser, "bob").await;
    for _ in 0..3 {
        browser
            .follow(&format!(
                "{}/bridge/start?from=account&return_to=%2F",
                app.origin("checkout")
            ))
            .await;
        browser.clear_cookies("checkout.localhost");
    }
    let lines = app.audit_lines_until(|lines| lines.len() >= 7).await;
    assert!(lines.len() >= 7, "{}", lines.len());
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<String>, usize)> = vec![
        (
            "edited byte",
            {
                let mut l = lines.clone();
                l[3] = l[3].replacen("checkout", "checkOut", 1);
                l
            },
            4,
        ),
        (
            "deleted line",
            {
                let mut l = lines.clone();
                l.remove(2);
                l
            },
            3,
        ),
        (
            "swapped lines",
            {
                let mut l = lines.clone();
                l.swap(4, 5);
                l
            },
            5,
        ),
        (
            "inserted line",
            {
                let mut l = lines.clone();
                let forged = l[1].replace("\"seq\":2", "\"seq\":3");
                l.insert(2, forged);
                l
            },
            3,
        ),
    ];
    for (name, tampered, bad_line) in cases {
        let path = dir.path().join(format!("{}.log", name.replace(' ', "-")));
        std::fs::write(&path, tampered.join("\n") + "\n").unwrap();
        let config = cli_config(&app, &path);
        let (code, out) = verify(&config, &[]);
        assert_eq!(code, Some(1), "{name}: {out}");
        assert!(out.contains(&format!("line {bad_line}:")), "{name}: {out}");
    }
    let (code, out) = verify(&cli_config(&app, &app.audit_path()), &[]);
    assert_eq!(code, Some(0), "{out}");
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

on_every_store!(events_and_fields, tampering_is_caught_at_the_right_line);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_the_chain_and_export_filters() {
    let app = TestApp::spawn_with(Backend::Memory, |config| config.audit.rotate_bytes = 2048).await;
    let mut browser = Browser::new(app.port);
    sign_in(&app, &mut browser, "carol").await;
    for _ in 0..6 {
        browser
            .follow(&format!(
                "{}/bridge/start?from=account&return_to=%2F",
                app.origin("shop")
            ))
            .await;
        browser.clear_cookies("shop.localhost");
    }
    let rotated = app.audit_path().with_extension("log.1");
    for _ in 0..100 {
        if rotated.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(rotated.exists(), "the file rotated");
    // One more event, so the newest file is not empty.
    browser
        .get(&format!("{}/bridge/accept?token=junk", app.origin("shop")))
        .await;
    for _ in 0..100 {
        if std::fs::metadata(app.audit_path()).is_ok_and(|m| m.len() > 0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut files: Vec<std::path::PathBuf> = (1..=10)
        .map(|n| app.audit_path().with_extension(format!("log.{n}")))
        .filter(|p| p.exists())
        .collect();
    files.reverse();
    files.push(app.audit_path());
    let config = cli_config(&app, &app.audit_path());
    let args: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out) = verify(&config, &args);
    assert_eq!(
        code,
        Some(0),
        "rotated files, oldest first, verify as one chain: {out}"
    );
    let (code, out) = verify(&config, &[&app.audit_path().display().to_string()]);
    assert_eq!(
        code,
        Some(1),
        "the newest file alone lacks its start: {out}"
    );
    // Export: only redemptions on shop, as CSV and CEF.
    for (format, marker) in [
        ("csv", "\"token.redeemed\""),
        ("cef", "|token.redeemed|"),
        ("jsonl", "\"event\":\"token.redeemed\""),
    ] {
        let out = Command::new(BIN)
            .args(["audit", "export", "--config"])
            .arg(&config)
            .args([
                "--event",
                "token.redeemed",
                "--site",
                "shop",
                "--format",
                format,
            ])
            .args(&args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let rows: Vec<&str> = text.lines().filter(|l| !l.starts_with("id,")).collect();
        assert_eq!(rows.len(), 6, "{format}: {text}");
        assert!(rows.iter().all(|r| r.contains(marker)), "{format}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_page_for_the_security_team() {
    let app = TestApp::spawn(Backend::Memory).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .resolve("shop.localhost", ([127, 0, 0, 1], app.port).into())
        .resolve("account.localhost", ([127, 0, 0, 1], app.port).into())
        .build()
        .unwrap();
    let mut browser = Browser::new(app.port);
    sign_in(&app, &mut browser, "dora").await;
    let accept = {
        let issue = browser
            .get(&format!(
                "{}/bridge/start?from=account&return_to=%2F",
                app.origin("shop")
            ))
            .await
            .location()
            .unwrap();
        browser.get(issue.as_str()).await.location().unwrap()
    };
    browser.get(accept.as_str()).await;
    for _ in 0..60 {
        client
            .get(format!("{}/bridge/accept?token=junk", app.origin("shop")))
            .send()
            .await
            .unwrap();
    }
    // A replay from an attacker whose user agent is markup (newest: page 1).
    client
        .get(accept.as_str())
        .header("User-Agent", "<script>alert(1)</script>")
        .send()
        .await
        .unwrap();
    app.audit_lines_until(|lines| lines.iter().any(|l| l.contains("token.replayed")))
        .await;
    let admin = format!("{}/admin/audit", app.origin("shop"));
    let refused = client.get(&admin).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(
        refused
            .headers()
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let wrong = client
        .get(&admin)
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let page = client
        .get(&admin)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers().get("cache-control").unwrap(), "no-store");
    assert_eq!(page.headers().get("x-frame-options").unwrap(), "DENY");
    assert!(
        page.headers()
            .get("content-security-policy")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("<strong id=\"replays-hour\">1</strong>"),
        "{html}"
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;") || html.contains("&#60;script&#62;"),
        "escaped"
    );
    assert!(!html.contains("<script>alert(1)</script>"));
    assert!(
        html.contains("page 1 of 2"),
        "60+ records are paginated by 50"
    );
    // Basic auth (what a browser prompt sends) works too.
    let basic = client
        .get(&admin)
        .basic_auth("security", Some(ADMIN_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::OK);
    // Filters.
    let replays = client
        .get(format!("{admin}?event=token.replayed"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(replays.contains("1 matching record(s)"), "{replays}");
    assert!(replays.contains("class=\"highlight\""));
    let by_prefix = client
        .get(format!("{admin}?event=token.&site=shop&page=2"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(by_prefix.contains("page 2 of 2"), "{by_prefix}");
    let bad_time = client
        .get(format!("{admin}?since=yesterday"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_time.status(), StatusCode::BAD_REQUEST);
}

/// `name{labels} value` lines of the Prometheus text format.
fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_owned(), value.parse::<f64>().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_request_ids() {
    let app = TestApp::spawn(Backend::Memory).await;
    let mut browser = Browser::new(app.port);
    let id = sign_in(&app, &mut browser, "eve").await;
    browser
        .follow(&format!(
            "{}/bridge/start?from=account&return_to=%2F",
            app.origin("shop")
        ))
        .await;
    let refused = browser
        .get(&format!("{}/bridge/accept?token=junk", app.origin("shop")))
        .await;
    // The request ID is echoed to the user and found in the audit trail.
    let request_id = refused.header("x-request-id").unwrap().to_owned();
    assert!(
        refused.body.contains(&request_id),
        "the error page shows the request ID"
    );
    browser.accept_json = true;
    let json = browser
        .get(&format!("{}/bridge/accept?token=junk", app.origin("shop")))
        .await;
    let problem: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(problem["request_id"].as_str(), json.header("x-request-id"));
    let lines = app
        .audit_lines_until(|lines| lines.iter().any(|l| l.contains(&request_id)))
        .await;
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&request_id) && l.contains("token.rejected"))
    );

    let scrape = reqwest::get(format!("http://127.0.0.1:{}/metrics", app.port))
        .await
        .unwrap();
    assert_eq!(scrape.status(), StatusCode::OK);
    let text = scrape.text().await.unwrap();
    assert!(!text.contains(&id), "no session ID in metrics");
    let metrics = parse_metrics(&text);
    let value = |name: &str| metrics.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    assert_eq!(
        value("session_bridge_handoffs_total{flow=\"redirect\",outcome=\"redeemed\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value("session_bridge_handoffs_total{flow=\"redirect\",outcome=\"token_malformed\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value("session_bridge_token_rejections_total{reason=\"token_malformed\"}"),
        Some(2.0)
    );
    assert!(
        value("session_bridge_http_request_duration_seconds_count{endpoint=\"/bridge/accept\",method=\"GET\"}").is_some_and(|v| v >= 3.0),
        "{text}"
    );
    assert!(value("session_bridge_audit_queue_depth").is_some());
}

/// A webhook receiver: collects request bodies, answers 200.
async fn webhook_receiver() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = bodies.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buffer).into_owned();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() >= length {
                            store.lock().unwrap().push(body[..length].to_owned());
                            let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (port, bodies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_and_rejection_bursts_raise_signed_alerts() {
    let (hook_port, bodies) = webhook_receiver().await;
    let app = TestApp::spawn_with(Backend::Memory, move |config| {
        config.alerts.webhook_url = format!("http://127.0.0.1:{hook_port}/hook");
        config.alerts.rejections_per_minute = 5;
    })
    .await;
    let mut browser = Browser::new(app.port);
    sign_in(&app, &mut browser, "fay").await;
    let issue = browser
        .get(&format!(
            "{}/bridge/start?from=account&return_to=%2F",
            app.origin("shop")
        ))
        .await
        .location()
        .unwrap();
    let accept = browser.get(issue.as_str()).await.location().unwrap();
    browser.get(accept.as_str()).await;
    Browser::new(app.port).get(accept.as_str()).await; // leaked: another browser
    for _ in 0..5 {
        browser
            .get(&format!("{}/bridge/accept?token=junk", app.origin("shop")))
            .await;
    }
    let mut received = Vec::new();
    for _ in 0..100 {
        received = bodies.lock().unwrap().clone();
        if received.len() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        received.len(),
        3,
        "one replay alert and two burst alerts (per IP, per partner): {received:?}"
    );
    // Each alert is a JWT signed by the bridge's published key.
    let jwks: serde_json::Value =
        reqwest::get(format!("http://127.0.0.1:{}/bridge/jwks.json", app.port))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let x = jwks["keys"][0]["x"].as_str().unwrap();
    let key = jsonwebtoken::DecodingKey::from_ed_components(x).unwrap();
    let _ = app.token_service(); // installs the crypto provider in this process
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let mut kinds = Vec::new();
    for body in &received {
        let header = jsonwebtoken::decode_header(body).unwrap();
        assert_eq!(header.typ.as_deref(), Some("alert+jwt"));
        let data = jsonwebtoken::decode::<serde_json::Value>(body, &key, &validation).unwrap();
        kinds.push(data.claims["alert"]["kind"].as_str().unwrap().to_owned());
        if data.claims["alert"]["kind"] == "rejection_burst" {
            assert_eq!(data.claims["alert"]["count"], 5);
        }
    }
    kinds.sort();
    assert_eq!(
        kinds,
        ["rejection_burst", "rejection_burst", "token_replayed"]
    );
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", app.port))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("session_bridge_alerts_total{reason=\"token_replayed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("session_bridge_alerts_total{reason=\"rejection_burst\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_follows_new_lines() {
    use std::io::{BufRead, BufReader};
    let app = TestApp::spawn(Backend::Memory).await;
    let mut browser = Browser::new(app.port);
    sign_in(&app, &mut browser, "gil").await;
    app.audit_lines_until(|lines| !lines.is_empty()).await;
    let config = cli_config(&app, &app.audit_path());
    let mut child = Command::new(BIN)
        .args(["audit", "tail", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let first = receiver
        .recv_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    assert!(first.contains("session.created"), "{first}");
    browser
        .get(&format!("{}/bridge/accept?token=junk", app.origin("shop")))
        .await;
    let next = receiver
        .recv_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    assert!(next.contains("token.rejected"), "{next}");
    let _ = child.kill();
    let _ = child.wait();
}

async fn ip_seen_for(app: &TestApp, forwarded: &str) -> String {
    let marker = uuid::Uuid::new_v4().to_string();
    reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/bridge/accept?token=junk",
            app.port
        ))
        .header("Host", format!("shop.localhost:{}", app.port))
        .header("X-Forwarded-For", forwarded)
        .header("User-Agent", marker.as_str())
        .send()
        .await
        .unwrap();
    let lines = app
        .audit_lines_until(|lines| lines.iter().any(|l| l.contains(&marker)))
        .await;
    let line = lines.iter().find(|l| l.contains(&marker)).unwrap();
    record(line)["ip"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let untrusting = TestApp::spawn(Backend::Memory).await;
    assert_eq!(
        ip_seen_for(&untrusting, "203.0.113.7").await,
        "127.0.0.1",
        "a client cannot name its own IP"
    );
    let behind_proxy = TestApp::spawn_with(Backend::Memory, |config| {
        config.server.trusted_proxies = vec!["127.0.0.1".to_owned()];
    })
    .await;
    assert_eq!(
        ip_seen_for(&behind_proxy, "203.0.113.7").await,
        "203.0.113.7"
    );
    assert_eq!(
        ip_seen_for(&behind_proxy, "198.51.100.1, 203.0.113.7, 127.0.0.1").await,
        "203.0.113.7",
        "rightmost untrusted hop"
    );
    assert_eq!(ip_seen_for(&behind_proxy, "not-an-ip").await, "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_signed_token_names_its_issuer_and_jti() {
    let app = TestApp::spawn(Backend::Memory).await;
    let mut owner = Browser::new(app.port);
    sign_in(&app, &mut owner, "hal").await;
    let issue = owner
        .get(&format!(
            "{}/bridge/start?from=account&return_to=%2F",
            app.origin("shop")
        ))
        .await
        .location()
        .unwrap();
    let accept = owner.get(issue.as_str()).await.location().unwrap();
    let jti = {
        let token = accept
            .query_pairs()
            .find(|(k, _)| k == "token")
            .unwrap()
            .1
            .into_owned();
        let claims = token.split('.').nth(1).unwrap().to_owned();
        let json =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims)
                .unwrap();
        serde_json::from_slice::<serde_json::Value>(&json).unwrap()["jti"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // Planted in a browser that started its own hand-off: binding mismatch.
    let mut victim = Browser::new(app.port);
    victim
        .get(&format!(
            "{}/bridge/start?from=account&return_to=%2F",
            app.origin("shop")
        ))
        .await;
    victim.get(accept.as_str()).await;
    let lines = app
        .audit_lines_until(|lines| lines.iter().any(|l| l.contains("token_binding_mismatch")))
        .await;
    let rejected = record(
        lines
            .iter()
            .find(|l| l.contains("token_binding_mismatch"))
            .unwrap(),
    );
    assert_eq!(rejected["event"], "token.rejected");
    assert_eq!(rejected["partner"], "account");
    assert_eq!(rejected["jti"], jti.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_catches_up_after_an_outage() {
    let app = TestApp::spawn_with(Backend::Redis, |config| config.audit.redis_stream = true).await;
    let mut browser = Browser::new(app.port);
    browser
        .get(&format!("{}/bridge/accept?token=junk", app.origin("shop")))
        .await;
    let url = app.redis.as_ref().unwrap().url();
    wait_for_stream(&url, 1).await;
    app.redis.as_ref().unwrap().pause();
    for _ in 0..3 {
        browser
            .get(&format!("{}/bridge/accept?token=junk", app.origin("shop")))
            .await;
    }
    app.audit_lines_until(|lines| lines.len() >= 4).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    app.redis.as_ref().unwrap().resume();
    // One more event: its batch resends what the stream missed first.
    browser
        .get(&format!("{}/bridge/accept?token=junk", app.origin("shop")))
        .await;
    assert!(wait_for_stream(&url, 5).await >= 5);
    let (code, out) = verify(&cli_config(&app, &app.audit_path()), &["--redis", &url]);
    assert_eq!(code, Some(0), "{out}");
}
