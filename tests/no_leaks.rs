//! Never a raw token or session ID in the audit trail, the application
//! logs, the metrics or an error page: drive every kind of request, collect
//! every token and session ID the bridge handed out, then grep everything
//! the bridge produced for them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use support::app::{ADMIN_TOKEN, API_KEY, Backend, TestApp};
use support::browser::{Browser, Page};

/// Everything the application logs, at every level.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_leaves_the_bridge() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .init();
    let mut secrets: Vec<String> = Vec::new();
    let mut error_pages: Vec<Page> = Vec::new();
    for backend in [Backend::Memory, Backend::Redis] {
        let app = TestApp::spawn(backend).await;
        let mut browser = Browser::new(app.port);
        // A session through the API and one through the demo login.
        let created: serde_json::Value = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/api/v1/sessions", app.port))
            .bearer_auth(API_KEY)
            .json(&serde_json::json!({"site": "account", "user_id": "leaky"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        secrets.push(created["id"].as_str().unwrap().to_owned());
        let mut person = Browser::new(app.port);
        person
            .post_form(
                &format!("{}/login", app.origin("account")),
                &[("username", "Lea")],
            )
            .await;
        secrets.push(person.cookie("account.localhost", "__Host-sb").unwrap());
        browser.set_cookie(
            "account.localhost",
            "__Host-sb",
            created["id"].as_str().unwrap(),
        );
        // Flow A in both modes, with a replay from another browser.
        for mode in ["query", "form_post"] {
            let pages = browser
                .follow(&format!(
                    "{}/bridge/start?from=account&return_to=%2F&mode={mode}",
                    app.origin("checkout")
                ))
                .await;
            for page in &pages {
                if let Some(token) = page.location().and_then(|l| {
                    l.query_pairs()
                        .find(|(k, _)| k == "token")
                        .map(|(_, v)| v.into_owned())
                }) {
                    secrets.push(token);
                }
                if let Some(rest) = page.body.split("name=\"token\" value=\"").nth(1) {
                    let token = rest.split('"').next().unwrap().to_owned();
                    secrets.push(token.clone());
                    let accepted = browser
                        .post_form(
                            &format!("{}/bridge/accept", app.origin("checkout")),
                            &[("token", &token)],
                        )
                        .await;
                    let again = Browser::new(app.port)
                        .post_form(
                            &format!("{}/bridge/accept", app.origin("checkout")),
                            &[("token", &token)],
                        )
                        .await;
                    error_pages.push(again);
                    drop(accepted);
                }
            }
            browser.clear_cookies("checkout.localhost");
            browser.set_cookie(
                "account.localhost",
                "__Host-sb",
                created["id"].as_str().unwrap(),
            );
        }
        // Error paths: junk, a planted token, wrong API use, admin without credentials.
        let mut victim = Browser::new(app.port);
        for url in [
            format!("{}/bridge/accept?token=junk", app.origin("shop")),
            format!(
                "{}/bridge/start?from=ghost&return_to=%2F",
                app.origin("shop")
            ),
            format!(
                "{}/bridge/issue?to=shop&challenge=x&return_to=%2F%2Fevil",
                app.origin("account")
            ),
            format!(
                "{}/bridge/frame?to=ghost&challenge=x",
                app.origin("account")
            ),
            format!("{}/admin/audit", app.origin("shop")),
            format!("{}/nothing-here", app.origin("shop")),
        ] {
            error_pages.push(victim.get(&url).await);
        }
        victim.accept_json = true;
        error_pages.push(
            victim
                .get(&format!("{}/bridge/session", app.origin("shop")))
                .await,
        );
        // Flow B: frame and exchange, and a bad verifier.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = session_bridge::flows::binding::challenge_of(verifier);
        let frame = browser
            .get(&format!(
                "{}/bridge/frame?to={}&challenge={challenge}",
                app.origin("account"),
                url::form_urlencoded::byte_serialize(app.origin("shop").as_bytes())
                    .collect::<String>()
            ))
            .await;
        let token = frame
            .body
            .split("data-token=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned();
        secrets.push(token.clone());
        let http = reqwest::Client::builder()
            .resolve("shop.localhost", ([127, 0, 0, 1], app.port).into())
            .build()
            .unwrap();
        for v in ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", verifier] {
            let response = http
                .post(format!("{}/bridge/exchange", app.origin("shop")))
                .json(&serde_json::json!({"token": token, "verifier": v, "from": app.origin("account")}))
                .send()
                .await
                .unwrap();
            if let Some(cookie) = response.headers().get("set-cookie") {
                let value = cookie
                    .to_str()
                    .unwrap()
                    .split(';')
                    .next()
                    .unwrap()
                    .split('=')
                    .nth(1)
                    .unwrap()
                    .to_owned();
                secrets.push(value);
            }
            let _ = response.text().await;
        }
        let _ = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/admin/audit", app.port))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await;
        let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", app.port))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let audit = app
            .audit_lines_until(|lines| {
                lines
                    .iter()
                    .any(|l| l.contains("exchange") || l.contains("token.redeemed"))
            })
            .await
            .join("\n");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let audit = std::fs::read_to_string(app.audit_path()).unwrap_or(audit);
        for secret in secrets.iter().filter(|s| s.len() >= 20) {
            let parts: Vec<&str> = secret.split('.').filter(|p| p.len() >= 20).collect();
            for needle in std::iter::once(secret.as_str()).chain(parts) {
                assert!(!audit.contains(needle), "a secret in the audit trail");
                assert!(!metrics.contains(needle), "a secret in the metrics");
            }
        }
    }
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("\"target\":\"access\""), "the capture works");
    assert!(secrets.len() >= 8, "{} secrets collected", secrets.len());
    for secret in secrets.iter().filter(|s| s.len() >= 20) {
        let parts: Vec<&str> = secret.split('.').filter(|p| p.len() >= 20).collect();
        for needle in std::iter::once(secret.as_str()).chain(parts) {
            assert!(!logs.contains(needle), "a secret in the application log");
            for page in &error_pages {
                assert!(page.status.as_u16() >= 400, "{} is an error", page.url);
                assert!(
                    !page.body.contains(needle),
                    "a secret in an error page at {}",
                    page.url.path()
                );
                let headers = format!("{:?}", page.headers);
                assert!(
                    !headers.contains(needle),
                    "a secret in an error page's headers at {}",
                    page.url.path()
                );
            }
        }
    }
}
