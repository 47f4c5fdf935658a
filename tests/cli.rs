//! The command line, run as a user would: `keys generate`, `serve --config`,
//! the demo with `--listen`, `check` exit codes, environment overrides.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_session-bridge");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `GET /healthz` answers (plain TCP: no client runtime needed).
fn wait_healthy(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if http_get(port, "localhost", "/healthz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the server did not come up on port {port}");
}

fn http_get(port: u16, host: &str, path: &str) -> Option<String> {
    http_get_as(port, &format!("{host}:{port}"), path)
}

/// `GET path` on 127.0.0.1:port with exactly this `Host` header.
fn http_get_as(port: u16, host: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

#[test]
fn keys_generate_makes_private_jwk_files() {
    let dir = tempfile::tempdir().unwrap();
    for (algorithm, kty) in [("EdDSA", "OKP"), ("HS256", "oct")] {
        let out = Command::new(BIN)
            .args(["keys", "generate", "--algorithm", algorithm, "--dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let kid = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let path = dir.path().join(format!("{kid}.json"));
        let jwk: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(jwk["kty"], kty);
        assert_eq!(jwk["kid"], kid.as_str());
        assert_eq!(jwk["alg"], algorithm);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

fn write_config(dir: &std::path::Path, port: u16, extra: &str) -> std::path::PathBuf {
    let path = dir.join("bridge.toml");
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
[tokens]
keys_dir = "{keys}"
[audit]
file = "{audit}"
[api]
keys = ["literal-test-key"]
{extra}
[[sites]]
id = "alpha"
origins = ["http://alpha.localhost:{port}"]
partners = ["beta"]
[[sites]]
id = "beta"
origins = ["http://beta.localhost:{port}"]
partners = ["alpha"]
return_paths = ["/app"]
"#,
        keys = dir.join("keys").display(),
        audit = dir.join("audit.log").display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn serve_with_a_config_file_serves_its_sites() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), 1, "");
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _running = Running(child);
    // --listen overrides the file's address. The origins keep their own
    // port (1 here): behind a gateway the bridge listens elsewhere.
    wait_healthy(port);
    let start = http_get_as(
        port,
        "beta.localhost:1",
        "/bridge/start?from=alpha&return_to=%2Fapp",
    )
    .unwrap();
    assert!(start.starts_with("HTTP/1.1 303"), "{start}");
    assert!(
        start.contains("location: http://alpha.localhost:1/bridge/issue?"),
        "{start}"
    );
    let direct = http_get(
        port,
        "beta.localhost",
        "/bridge/start?from=alpha&return_to=%2Fapp",
    )
    .unwrap();
    assert!(
        direct.starts_with("HTTP/1.1 404"),
        "beta.localhost:{port} is not an origin: {direct}"
    );
    assert!(
        dir.path()
            .join("keys")
            .read_dir()
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "json"))
            .count()
            == 1,
        "a signing key is made on first start"
    );
}

#[test]
fn serve_routes_by_the_configured_origins() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, "");
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _running = Running(child);
    wait_healthy(port);
    let start = http_get(
        port,
        "beta.localhost",
        "/bridge/start?from=alpha&return_to=%2Fapp",
    )
    .unwrap();
    assert!(start.starts_with("HTTP/1.1 303"), "{start}");
    assert!(
        start.contains(&format!(
            "location: http://alpha.localhost:{port}/bridge/issue?"
        )),
        "{start}"
    );
    let outside = http_get(
        port,
        "beta.localhost",
        "/bridge/start?from=alpha&return_to=%2Fother",
    )
    .unwrap();
    assert!(
        outside.starts_with("HTTP/1.1 400") && outside.contains("return_to_invalid"),
        "{outside}"
    );
    let no_demo = http_get(port, "alpha.localhost", "/login").unwrap();
    assert!(
        no_demo.starts_with("HTTP/1.1 404"),
        "demo pages only in the demo"
    );
}

#[test]
fn the_demo_follows_the_listen_port_and_prints_an_api_key() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir.path())
        .env_remove("SESSION_BRIDGE_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _running = Running(child);
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let done = line.starts_with("Demo API key");
        lines.push(line);
        if done {
            break;
        }
    }
    let text = lines.join("\n");
    for site in ["account", "shop", "checkout"] {
        assert!(
            text.contains(&format!("http://{site}.localhost:{port}")),
            "{text}"
        );
    }
    let key = lines.last().unwrap().rsplit(' ').next().unwrap();
    assert_eq!(key.len(), 43, "{text}");
    wait_healthy(port);
    let page = http_get(port, "account.localhost", "/").unwrap();
    assert!(
        page.starts_with("HTTP/1.1 200") && page.contains("not signed in"),
        "{page}"
    );
}

#[test]
fn bad_settings_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), free_port(), "");
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env("SESSION_BRIDGE__TOKENS__TTL", "500s")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ttl"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The TLS listener with an http:// origin would answer nothing on that
/// site (the scheme must be the origin's): refused at start.
#[test]
fn tls_self_signed_refuses_http_origins() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), free_port(), "");
    let out = Command::new(BIN)
        .args(["serve", "--tls-self-signed", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("http://alpha.localhost"), "{stderr}");
    assert!(stderr.contains("https://"), "{stderr}");
}

#[test]
fn check_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_config(dir.path(), 8080, "");
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SameSite=Lax"), "{text}");
    assert!(text.contains("alpha -> beta: cross-site"), "{text}");
    assert!(text.contains("flow A redirect  yes"), "{text}");
    assert!(text.contains("0 error(s), 0 warning(s)"), "{text}");
    let out = Command::new(BIN)
        .args(["check", "--format", "json", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["sites"][0]["cookie"]["same_site"], "Lax");
    assert_eq!(report["sites"][0]["cookie"]["secure"], true);
    assert_eq!(report["sites"][0]["cookie"]["name"], "__Host-sb");
    assert_eq!(report["pairs"][0]["relation"], "cross-site");
    assert_eq!(report["pairs"][0]["flows"][1]["flow"], "redirect");
    assert_eq!(report["errors"].as_array().unwrap().len(), 0);
    assert_eq!(
        report["handshake"]["script_sri"],
        session_bridge::handshake::sri(session_bridge::handshake::CLASSIC)
    );
    assert!(text.contains(&session_bridge::handshake::sri(
        session_bridge::handshake::CLASSIC
    )));
    // With no --config, check reports on the demo.
    let demo = Command::new(BIN).arg("check").output().unwrap();
    assert_eq!(demo.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&demo.stdout).contains("account -> shop: cross-site"));

    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[tokens]\nttl = \n").unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&broken)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let invalid = dir.path().join("invalid.toml");
    std::fs::write(&invalid, "[[sites]]\nid = \"a\"\norigins = [\"https://a.example.com/path\"]\npartners = [\"ghost\"]\n").unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&invalid)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("error [origin_path]") && stdout.contains("error [partner_unknown]"),
        "{stdout}"
    );
    assert!(stdout.contains("fix: remove the path"), "{stdout}");
    let out = Command::new(BIN)
        .args(["check", "--format", "json", "--config"])
        .arg(&invalid)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let codes: Vec<&str> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"origin_path") && codes.contains(&"partner_unknown"),
        "{codes:?}"
    );
    assert!(report["errors"][0]["fix"].is_string());

    let missing = Command::new(BIN)
        .args(["check", "--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn tls_self_signed_serves_https_for_every_configured_host() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--tls-self-signed",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _running = Running(child);
    let mut pem = String::new();
    let mut text = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        text.push_str(&line);
        text.push('\n');
        if line.starts_with("-----BEGIN") || !pem.is_empty() {
            pem.push_str(&line);
            pem.push('\n');
        }
        if line.starts_with("-----END") {
            break;
        }
    }
    assert!(
        text.contains(&format!("https://shop.localhost:{port}")),
        "{text}"
    );
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pem).unwrap();
    // curl verifies the certificate against the printed PEM: the name must be in it.
    let mut answered = None;
    for _ in 0..100 {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(&ca)
            .args(["--resolve", &format!("shop.localhost:{port}:127.0.0.1")])
            .arg(format!("https://shop.localhost:{port}/bridge/jwks.json"))
            .output()
            .expect("curl is installed by scripts/test.sh");
        if out.status.success() {
            answered = Some(String::from_utf8_lossy(&out.stdout).into_owned());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(answered.as_deref(), Some("200"));
}
