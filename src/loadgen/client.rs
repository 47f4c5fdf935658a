//! One client thread: an actix runtime running its share of the virtual
//! browsers over keep-alive connections (awc).

use super::{Latencies, Shared};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use url::Url;

/// What a thread brings back.
pub struct ThreadOutcome {
    pub handoffs: u64,
    pub latencies: Latencies,
    pub errors: BTreeMap<String, u64>,
}

/// A failed step: an error code.
type StepError = String;

struct Browser {
    client: awc::Client,
    /// The session cookie on the issuing site (`name=value`).
    issuer_cookie: String,
}

fn authority(origin: &str) -> Result<String, String> {
    let url = Url::parse(origin).map_err(|_| format!("`{origin}` is not an origin"))?;
    let host = url
        .host_str()
        .ok_or_else(|| format!("`{origin}` has no host"))?;
    Ok(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    })
}

async fn error_code(
    mut response: awc::ClientResponse<
        impl futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>>
        + Unpin,
    >,
) -> String {
    let status = response.status().as_u16();
    let body = response.body().limit(64 * 1024).await.unwrap_or_default();
    serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("http_{status}"))
}

fn set_cookie(response: &awc::ClientResponse<impl Sized>, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

fn location(response: &awc::ClientResponse<impl Sized>) -> Option<String> {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `http://node/path?query` for an absolute or relative URL of `origin`.
fn on_node(node: SocketAddr, url: &str) -> String {
    match Url::parse(url) {
        Ok(parsed) => {
            let query = parsed.query().map(|q| format!("?{q}")).unwrap_or_default();
            format!("http://{node}{}{query}", parsed.path())
        }
        Err(_) => format!("http://{node}{url}"),
    }
}

impl Browser {
    async fn new(shared: &Shared, node: SocketAddr) -> Result<Self, StepError> {
        let options = &shared.options;
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .disable_redirects()
            .finish();
        let mut response = client
            .post(format!("http://{node}/api/v1/sessions"))
            .insert_header(("Host", authority(&options.from)?))
            .bearer_auth(&options.api_key)
            .send_json(&serde_json::json!({"site": options.from_site}))
            .await
            .map_err(|_| "connect".to_owned())?;
        if response.status().as_u16() != 201 {
            return Err(error_code(response).await);
        }
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|_| "invalid_json".to_owned())?;
        let id = body["id"].as_str().ok_or("no_session_id")?.to_owned();
        Ok(Self {
            client,
            issuer_cookie: format!("__Host-sb={id}"),
        })
    }

    /// One hand-off; the three step latencies in microseconds.
    async fn hand_off(
        &self,
        shared: &Shared,
        issue_node: SocketAddr,
        accept_node: SocketAddr,
    ) -> Result<[u64; 3], StepError> {
        let options = &shared.options;
        let from = authority(&options.from)?;
        let to = authority(&options.to)?;
        let micros =
            |since: Instant| u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
        // start, on the receiving site
        let began = Instant::now();
        let path = format!(
            "/bridge/start?from={}&return_to=%2F",
            url::form_urlencoded::byte_serialize(options.from.as_bytes()).collect::<String>()
        );
        let response = self
            .client
            .get(format!("http://{accept_node}{path}"))
            .insert_header(("Host", to.as_str()))
            .insert_header(("Accept", "application/json"))
            .send()
            .await
            .map_err(|_| "connect".to_owned())?;
        if response.status().as_u16() != 303 {
            return Err(error_code(response).await);
        }
        let state = set_cookie(&response, "__Host-sb-state").ok_or("no_state_cookie")?;
        let issue = location(&response).ok_or("no_location")?;
        let start_us = micros(began);
        // issue, on the issuing site (maybe another node)
        let began = Instant::now();
        let response = self
            .client
            .get(on_node(issue_node, &issue))
            .insert_header(("Host", from.as_str()))
            .insert_header(("Cookie", self.issuer_cookie.as_str()))
            .insert_header(("Accept", "application/json"))
            .send()
            .await
            .map_err(|_| "connect".to_owned())?;
        if response.status().as_u16() != 303 {
            return Err(error_code(response).await);
        }
        let accept = location(&response).ok_or("no_location")?;
        let issue_us = micros(began);
        // accept, on the receiving site
        let began = Instant::now();
        let response = self
            .client
            .get(on_node(accept_node, &accept))
            .insert_header(("Host", to.as_str()))
            .insert_header(("Cookie", state.as_str()))
            .insert_header(("Accept", "application/json"))
            .send()
            .await
            .map_err(|_| "connect".to_owned())?;
        if response.status().as_u16() != 303 {
            return Err(error_code(response).await);
        }
        Ok([start_us, issue_us, micros(began)])
    }
}

/// Runs `browsers` virtual browsers on this thread until the run is over.
pub async fn run_thread(
    shared: Arc<Shared>,
    thread: usize,
    browsers: usize,
) -> Result<ThreadOutcome, String> {
    let mut tasks = Vec::new();
    for index in 0..browsers {
        let shared = Arc::clone(&shared);
        tasks.push(actix_web::rt::spawn(async move {
            run_browser(&shared, thread * 10_000 + index).await
        }));
    }
    let mut outcome = ThreadOutcome {
        handoffs: 0,
        latencies: Latencies::new()?,
        errors: BTreeMap::new(),
    };
    for task in tasks {
        let browser = task
            .await
            .map_err(|_| "a virtual browser failed".to_owned())??;
        outcome.handoffs += browser.handoffs;
        outcome.latencies.add(&browser.latencies);
        for (code, count) in browser.errors {
            *outcome.errors.entry(code).or_insert(0) += count;
        }
    }
    Ok(outcome)
}

async fn run_browser(shared: &Shared, index: usize) -> Result<ThreadOutcome, String> {
    let nodes = &shared.options.connect;
    let home = nodes[index % nodes.len()];
    let mut outcome = ThreadOutcome {
        handoffs: 0,
        latencies: Latencies::new()?,
        errors: BTreeMap::new(),
    };
    let browser = match Browser::new(shared, home).await {
        Ok(browser) => browser,
        Err(code) => {
            outcome.errors.insert(format!("setup:{code}"), 1);
            return Ok(outcome);
        }
    };
    let mut round = index;
    while let Some(due) = shared.next() {
        let now = Instant::now();
        if due > now {
            actix_web::rt::time::sleep(due - now).await;
        }
        // Tokens issued on one node are redeemed on the next.
        let issue_node = nodes[round % nodes.len()];
        let accept_node = nodes[(round + 1) % nodes.len()];
        round += 1;
        match browser.hand_off(shared, issue_node, accept_node).await {
            Ok(steps) => {
                for (histogram, value) in outcome.latencies.steps.iter_mut().zip(steps) {
                    let _ = histogram.record(value.max(1));
                }
                let total = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX);
                let _ = outcome.latencies.total.record(total.max(1));
                outcome.handoffs += 1;
                shared
                    .done
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err(code) => *outcome.errors.entry(code).or_insert(0) += 1,
        }
    }
    Ok(outcome)
}
