//! The audit trail end to end: events with their fields, never a secret,
//! and `session-bridge audit verify` catching every kind of tampering, in
//! the file and in the Redis Stream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::StatusCode;
use std::path::Path;
use std::process::Command;
use support::app::{API_KEY, Backend, TestApp};
use support::browser::Browser;

const BIN: &str = env!("CARGO_BIN_EXE_session-bridge");

async fn sign_in(app: &TestApp, browser: &mut Browser, user: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/api/v1/sessions", app.port))
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({"site": "account", "user_id": user}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let id = response.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    browser.set_cookie("account.localhost", "__Host-sb", &id);
    id
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
        issued["session_fp"].as_str().unwrap()
    );
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
