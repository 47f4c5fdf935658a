//! A small W3C WebDriver client for the browser end-to-end tests.
//!
//! [`ChromeDriver::start`] runs its own `chromedriver` on a free loopback
//! port; [`ChromeDriver::browser`] opens a headless Chromium session with a
//! fresh profile (its own `--user-data-dir`), so two sessions are two
//! separate browsers that share no cookies or storage. Dropping the driver
//! quits every browser it started and stops `chromedriver`.
//!
//! Every wait is bounded: HTTP requests to the driver time out, page loads
//! and scripts have driver-side timeouts, and [`Browser::wait_for`] polls
//! until a deadline and then panics with what the page showed.

use base64::Engine as _;
use reqwest::{Client, Method};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The key of a W3C web element reference (the "web element identifier" of
/// the WebDriver spec).
pub const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// Debian's Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's `chromium-driver`, from `PATH`.
pub const CHROMEDRIVER: &str = "chromedriver";
/// The browser's command line, besides its `--user-data-dir`.
pub const CHROMIUM_ARGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
];
/// How long `chromedriver` has to answer `/status` as ready.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Ports tried before giving up (a port can be taken between picking and binding).
const START_ATTEMPTS: usize = 4;
/// Upper bound of one request to the driver (a new session starts a browser).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Driver-side page load timeout.
const PAGE_LOAD_TIMEOUT: Duration = Duration::from_secs(15);
/// Driver-side timeout of scripts.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default deadline of [`Browser::wait_for`].
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long dropping the driver waits for it to quit its browsers.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// An error answered by the driver (or the transport to it).
#[derive(Debug, Clone)]
pub struct WebDriverError {
    pub status: u16,
    /// The W3C error code, e.g. `no such element`.
    pub error: String,
    pub message: String,
}

impl std::fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let message = self.message.lines().next().unwrap_or_default();
        write!(f, "{} ({}): {message}", self.error, self.status)
    }
}

impl std::error::Error for WebDriverError {}

/// Options of one browser session.
#[derive(Debug, Clone, Default)]
pub struct BrowserOptions {
    /// Chromium preferences (`goog:chromeOptions.prefs`), e.g.
    /// `{"profile.cookie_controls_mode": 0}` to allow third-party cookies.
    pub prefs: Option<Value>,
    /// Records the DevTools network events, for [`Browser::requests`].
    pub network_log: bool,
    /// Default switches of chromedriver to leave out
    /// (`goog:chromeOptions.excludeSwitches`), e.g. `disable-popup-blocking`
    /// to keep Chromium's popup blocker on.
    pub exclude_switches: Vec<String>,
}

/// One request the browser sent, from the network log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentRequest {
    pub method: String,
    pub url: String,
    /// The `Referer` header it carried, if any.
    pub referer: Option<String>,
}

/// A `chromedriver` process of our own.
pub struct ChromeDriver {
    child: Option<Child>,
    port: u16,
    http: Client,
    /// Every profile handed to a browser, with the browser's process id once
    /// known. Kept until the browsers are gone.
    profiles: Mutex<Vec<(TempDir, Option<u32>)>>,
}

impl ChromeDriver {
    /// Starts `chromedriver` on a free loopback port and waits (bounded)
    /// until it is ready. Panics when it cannot.
    pub async fn start() -> Self {
        let http = Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .no_proxy()
            .build()
            .expect("an HTTP client for chromedriver");
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            match spawn_and_wait(&http, port).await {
                Ok(child) => {
                    return Self {
                        child: Some(child),
                        port,
                        http,
                        profiles: Mutex::new(Vec::new()),
                    };
                }
                Err(why) => failures.push(format!("port {port}: {why}")),
            }
        }
        panic!(
            "chromedriver did not start (install chromium and chromium-driver; scripts/test.sh does):\n{}",
            failures.join("\n")
        );
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A new headless Chromium with a fresh profile.
    pub async fn browser(&self) -> Browser {
        self.browser_with(BrowserOptions::default()).await
    }

    /// A new headless Chromium with a fresh profile and `options`.
    pub async fn browser_with(&self, options: BrowserOptions) -> Browser {
        let profile = tempfile::Builder::new()
            .prefix("sb-e2e-profile-")
            .tempdir()
            .expect("a temporary profile directory");
        let profile_path = profile.path().to_owned();
        let index = {
            let mut profiles = self.profiles.lock().expect("profiles lock");
            profiles.push((profile, None));
            profiles.len() - 1
        };
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| (*a).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile_path.display()));
        let mut chrome_options = json!({ "binary": CHROMIUM, "args": args });
        if let Some(prefs) = options.prefs {
            chrome_options["prefs"] = prefs;
        }
        if !options.exclude_switches.is_empty() {
            chrome_options["excludeSwitches"] = json!(options.exclude_switches);
        }
        let mut capabilities = json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": {
                "implicit": 0,
                "pageLoad": PAGE_LOAD_TIMEOUT.as_millis() as u64,
                "script": SCRIPT_TIMEOUT.as_millis() as u64,
            },
            "goog:chromeOptions": chrome_options,
        });
        if options.network_log {
            capabilities["goog:loggingPrefs"] = json!({ "performance": "ALL" });
        }
        let body = json!({ "capabilities": { "alwaysMatch": capabilities } });
        let value = send(
            &self.http,
            Method::POST,
            &format!("{}/session", self.url()),
            Some(body),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot start Chromium ({CHROMIUM}): {e}"));
        let id = value["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in {value}"))
            .to_owned();
        let pid = value["capabilities"]["goog:processID"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok());
        self.profiles.lock().expect("profiles lock")[index].1 = pid;
        Browser {
            http: self.http.clone(),
            base: format!("{}/session/{id}", self.url()),
            id,
            profile: profile_path,
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // `/shutdown` makes chromedriver quit every browser it started, then exit.
        let _ = raw_get(self.port, "/shutdown", Duration::from_secs(2));
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(POLL_INTERVAL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Give the browsers a moment to exit; one that outlived its driver
        // is ours (it runs on one of our profiles): kill it by its id, only
        // after checking that. The profiles go once the browsers are gone.
        let profiles =
            std::mem::take(&mut *self.profiles.lock().unwrap_or_else(|e| e.into_inner()));
        let alive = |profiles: &[(TempDir, Option<u32>)]| -> Vec<u32> {
            profiles
                .iter()
                .filter_map(|(dir, pid)| pid.filter(|pid| runs_on_profile(*pid, dir.path())))
                .collect()
        };
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        while !alive(&profiles).is_empty() && Instant::now() < deadline {
            std::thread::sleep(POLL_INTERVAL);
        }
        for pid in alive(&profiles) {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        drop(profiles);
    }
}

/// One browser session (one Chromium with its own profile).
pub struct Browser {
    http: Client,
    /// `http://127.0.0.1:PORT/session/ID`
    base: String,
    pub id: String,
    /// The browser's `--user-data-dir`.
    pub profile: PathBuf,
}

impl Browser {
    /// Sends one WebDriver command of this session; `path` is relative to
    /// `/session/{id}` (empty, or starting with `/`).
    pub async fn command(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, WebDriverError> {
        send(&self.http, method, &format!("{}{path}", self.base), body).await
    }

    async fn expect_command(
        &self,
        what: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        match self.command(method, path, body).await {
            Ok(value) => value,
            Err(e) => {
                let url = self.command(Method::GET, "/url", None).await;
                let url = url.ok().and_then(|u| u.as_str().map(str::to_owned));
                panic!(
                    "{what} failed: {e} (on {})",
                    url.as_deref().unwrap_or("an unknown page")
                )
            }
        }
    }

    /// Navigates to `url` and waits for the page to load. Looks like a typed
    /// address to the site (`Sec-Fetch-Site: none`): start cross-site chains
    /// with [`Self::click`] on a link instead.
    pub async fn goto(&self, url: &str) {
        self.expect_command(
            &format!("goto {url}"),
            Method::POST,
            "/url",
            Some(json!({ "url": url })),
        )
        .await;
    }

    /// The browser's Back button.
    pub async fn back(&self) {
        self.expect_command("back", Method::POST, "/back", Some(json!({})))
            .await;
    }

    /// The browser's Forward button.
    pub async fn forward(&self) {
        self.expect_command("forward", Method::POST, "/forward", Some(json!({})))
            .await;
    }

    pub async fn current_url(&self) -> String {
        let value = self
            .expect_command("current_url", Method::GET, "/url", None)
            .await;
        value.as_str().unwrap_or_default().to_owned()
    }

    /// The current URL, or `None` while the driver cannot tell (navigating).
    pub async fn try_current_url(&self) -> Option<String> {
        let value = self.command(Method::GET, "/url", None).await.ok()?;
        value.as_str().map(str::to_owned)
    }

    /// The first element matching `css`, or `None`.
    pub async fn try_find(&self, css: &str) -> Option<String> {
        let value = self
            .command(
                Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await
            .ok()?;
        value[ELEMENT_KEY].as_str().map(str::to_owned)
    }

    /// The first element matching `css` (its WebDriver id); panics when none does.
    pub async fn find(&self, css: &str) -> String {
        let value = self
            .expect_command(
                &format!("find `{css}`"),
                Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        element_id(&value).unwrap_or_else(|| panic!("find `{css}`: no element in {value}"))
    }

    /// Every element matching `css`.
    pub async fn find_all(&self, css: &str) -> Vec<String> {
        let value = self
            .expect_command(
                &format!("find all `{css}`"),
                Method::POST,
                "/elements",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        value
            .as_array()
            .map(|all| all.iter().filter_map(element_id).collect())
            .unwrap_or_default()
    }

    /// Clicks `element` like a user (a user gesture to the page).
    pub async fn click(&self, element: &str) {
        self.expect_command(
            "click",
            Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Types `text` into `element`.
    pub async fn send_keys(&self, element: &str, text: &str) {
        self.expect_command(
            "send_keys",
            Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// The rendered text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        self.element_text(&element).await
    }

    /// The rendered text of the first element matching `css`, or `None`
    /// (no such element yet, or the page is changing).
    pub async fn try_text(&self, css: &str) -> Option<String> {
        let element = self.try_find(css).await?;
        let value = self
            .command(Method::GET, &format!("/element/{element}/text"), None)
            .await
            .ok()?;
        value.as_str().map(str::to_owned)
    }

    pub async fn element_text(&self, element: &str) -> String {
        let value = self
            .expect_command(
                "element text",
                Method::GET,
                &format!("/element/{element}/text"),
                None,
            )
            .await;
        value.as_str().unwrap_or_default().to_owned()
    }

    /// An attribute of `element`, `None` when absent.
    pub async fn attribute(&self, element: &str, name: &str) -> Option<String> {
        let value = self
            .expect_command(
                &format!("attribute {name}"),
                Method::GET,
                &format!("/element/{element}/attribute/{name}"),
                None,
            )
            .await;
        value.as_str().map(str::to_owned)
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page
    /// and returns its JSON result. An element it returns comes back as a
    /// reference: see [`element_id`].
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.expect_command(
            "execute",
            Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Like [`Self::execute`], for polling while the page may be changing.
    pub async fn try_execute(&self, script: &str, args: Vec<Value>) -> Option<Value> {
        self.command(
            Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
        .ok()
    }

    /// The page's HTML as the browser has it now.
    pub async fn source(&self) -> String {
        let value = self
            .expect_command("source", Method::GET, "/source", None)
            .await;
        value.as_str().unwrap_or_default().to_owned()
    }

    /// The text of the page's body.
    pub async fn body_text(&self) -> String {
        self.try_text("body").await.unwrap_or_default()
    }

    /// Every cookie the browser would send to the current page, `HttpOnly`
    /// ones included (`name`, `value`, `httpOnly`, `secure`, `sameSite`, …).
    pub async fn cookies(&self) -> Vec<Value> {
        let value = self
            .expect_command("cookies", Method::GET, "/cookie", None)
            .await;
        value.as_array().cloned().unwrap_or_default()
    }

    /// The cookie `name` of the current page, if the browser has one.
    pub async fn cookie(&self, name: &str) -> Option<Value> {
        self.cookies()
            .await
            .into_iter()
            .find(|c| c["name"].as_str() == Some(name))
    }

    /// Writes a PNG screenshot of the viewport to `path` (making its folder).
    pub async fn screenshot(&self, path: &Path) {
        let value = self
            .expect_command("screenshot", Method::GET, "/screenshot", None)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("screenshot is not base64: {e}"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|e| panic!("cannot make {}: {e}", dir.display()));
        }
        std::fs::write(path, png)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    /// Requests the browser sent since the last call (needs
    /// [`BrowserOptions::network_log`]), in order, redirects included.
    pub async fn requests(&self) -> Vec<SentRequest> {
        let value = self
            .expect_command(
                "network log",
                Method::POST,
                "/se/log",
                Some(json!({ "type": "performance" })),
            )
            .await;
        let mut sent = Vec::new();
        for entry in value.as_array().into_iter().flatten() {
            let Some(message) = entry["message"].as_str() else {
                continue;
            };
            let Ok(message) = serde_json::from_str::<Value>(message) else {
                continue;
            };
            let message = &message["message"];
            if message["method"] != "Network.requestWillBeSent" {
                continue;
            }
            let request = &message["params"]["request"];
            if let (Some(method), Some(url)) = (request["method"].as_str(), request["url"].as_str())
            {
                let referer = request["headers"]
                    .as_object()
                    .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case("referer")))
                    .and_then(|(_, v)| v.as_str())
                    .map(str::to_owned);
                sent.push(SentRequest {
                    method: method.to_owned(),
                    url: url.to_owned(),
                    referer,
                });
            }
        }
        sent
    }

    /// Polls `check` until it gives a value, for at most [`WAIT_TIMEOUT`];
    /// then panics, naming `what` and showing the page.
    pub async fn wait_for<T>(&self, what: &str, check: impl AsyncFnMut(&Self) -> Option<T>) -> T {
        self.wait_for_within(WAIT_TIMEOUT, what, check).await
    }

    /// [`Self::wait_for`] with its own deadline.
    pub async fn wait_for_within<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut check: impl AsyncFnMut(&Self) -> Option<T>,
    ) -> T {
        let start = tokio::time::Instant::now();
        let deadline = start + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            // A check that hangs counts as "not yet" and ends at the deadline.
            if let Ok(Some(value)) = tokio::time::timeout(remaining, check(self)).await {
                return value;
            }
            if tokio::time::Instant::now() >= deadline {
                let url = self.try_current_url().await;
                let text = tokio::time::timeout(Duration::from_secs(2), self.body_text())
                    .await
                    .unwrap_or_default();
                panic!(
                    "timed out after {timeout:?} waiting for {what}; the browser is on {}, showing:\n{}",
                    url.as_deref().unwrap_or("an unknown page"),
                    text.chars().take(600).collect::<String>()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Waits until the current URL satisfies `check`; returns it.
    pub async fn wait_for_url(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        self.wait_for(what, async |b| {
            b.try_current_url().await.filter(|u| check(u))
        })
        .await
    }

    /// Waits until the first element matching `css` shows text containing
    /// `needle`; returns that text.
    pub async fn wait_for_text(&self, css: &str, needle: &str) -> String {
        self.wait_for(&format!("`{css}` to show {needle:?}"), async |b| {
            b.try_text(css).await.filter(|t| t.contains(needle))
        })
        .await
    }

    /// Ends the session: the browser exits. (Dropping the driver does it too.)
    pub async fn quit(self) {
        let _ = self.command(Method::DELETE, "", None).await;
    }
}

/// The id of a W3C element reference, as returned by find or a script.
pub fn element_id(value: &Value) -> Option<String> {
    value[ELEMENT_KEY].as_str().map(str::to_owned)
}

async fn send(
    http: &Client,
    method: Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value, WebDriverError> {
    let mut request = http.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let transport = |e: reqwest::Error| WebDriverError {
        status: 0,
        error: "transport".to_owned(),
        message: e.to_string(),
    };
    let response = request.send().await.map_err(transport)?;
    let status = response.status();
    let text = response.text().await.map_err(transport)?;
    let json: Value = serde_json::from_str(&text).map_err(|e| WebDriverError {
        status: status.as_u16(),
        error: "invalid json".to_owned(),
        message: format!("{e}: {}", text.chars().take(300).collect::<String>()),
    })?;
    let value = json.get("value").cloned().unwrap_or(Value::Null);
    if status.is_success() {
        Ok(value)
    } else {
        Err(WebDriverError {
            status: status.as_u16(),
            error: value["error"]
                .as_str()
                .unwrap_or("unknown error")
                .to_owned(),
            message: value["message"].as_str().unwrap_or_default().to_owned(),
        })
    }
}

/// A port that was free a moment ago: bind port 0, read it, release it.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("cannot bind a local port: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("cannot read a local port: {e}"))
        .port()
}

/// Starts chromedriver on `port` and waits until it says it is ready while
/// our child still runs (one that could not bind exits).
async fn spawn_and_wait(http: &Client, port: u16) -> Result<Child, String> {
    let mut child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .arg("--log-level=SEVERE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {CHROMEDRIVER}: {e}"))?;
    let deadline = Instant::now() + START_TIMEOUT;
    let status_url = format!("http://127.0.0.1:{port}/status");
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("chromedriver exited: {status}"));
        }
        let ready = tokio::time::timeout(Duration::from_secs(1), http.get(&status_url).send())
            .await
            .ok()
            .and_then(Result::ok);
        if let Some(response) = ready
            && let Ok(status) = response.json::<Value>().await
            && status["value"]["ready"] == true
            && matches!(child.try_wait(), Ok(None))
        {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("not ready within {START_TIMEOUT:?}"));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// A blocking `GET` with a deadline, for `Drop` (no runtime needed).
fn raw_get(port: u16, path: &str, timeout: Duration) -> std::io::Result<String> {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&address, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// Whether process `pid` is a Chromium running on the profile `dir`.
fn runs_on_profile(pid: u32, dir: &Path) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        let needle = format!("--user-data-dir={}", dir.display());
        cmdline
            .split(|b| *b == 0)
            .any(|arg| arg == needle.as_bytes())
    })
}
