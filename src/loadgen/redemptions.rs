//! The double-redemption check: the bridges' own count of redeemed tokens
//! (`session_bridge_handoffs_total{outcome="redeemed"}` on `/metrics`,
//! summed over nodes and flows) before and after a run, held against the
//! hand-offs the generator saw succeed. Each hand-off redeems one fresh
//! token, so a larger server-side count means some token was accepted more
//! than once, which no client-side check can see.

use std::net::SocketAddr;
use std::time::Duration;

/// The counter family, as `/metrics` names its samples.
pub const HANDOFFS_METRIC: &str = "session_bridge_handoffs_total";

/// How long one scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// The sum of `session_bridge_handoffs_total{…,outcome="redeemed"}` over
/// every flow in one Prometheus text exposition; `None` when the page is
/// not a bridge's (no `session_bridge_` metric at all).
pub fn redeemed_total(exposition: &str) -> Option<u64> {
    // A family without samples is left out of the page altogether (before
    // the first hand-off), so any metric of the bridge's says "0 so far".
    let mut bridge_page = false;
    let mut total = 0u64;
    for line in exposition.lines() {
        let line = line.trim();
        bridge_page |=
            line.starts_with("session_bridge_") || line.starts_with("# TYPE session_bridge_");
        if line.starts_with('#') {
            continue;
        }
        let Some((name, rest)) = line.split_once('{') else {
            continue;
        };
        if name != HANDOFFS_METRIC {
            continue;
        }
        let Some((labels, value)) = rest.rsplit_once('}') else {
            continue;
        };
        if !labels
            .split(',')
            .any(|l| l.trim() == "outcome=\"redeemed\"")
        {
            continue;
        }
        // Counters print as integers; a float form is read too.
        let value = value.split_whitespace().next().unwrap_or_default();
        let count = value
            .parse::<u64>()
            .ok()
            .or_else(|| value.parse::<f64>().ok().map(|v| v.max(0.0).round() as u64))?;
        total = total.saturating_add(count);
    }
    bridge_page.then_some(total)
}

/// How many redemptions the servers counted beyond what the generator can
/// explain: the hand-offs it saw succeed, plus those whose redeeming
/// request failed in transit (the server may have redeemed the token and
/// the answer been lost, e.g. to a client timeout). Zero means no sign of
/// a token redeemed twice.
pub fn excess_redemptions(server_delta: u64, client_succeeded: u64, uncertain: u64) -> u64 {
    server_delta.saturating_sub(client_succeeded.saturating_add(uncertain))
}

/// The redeemed total summed over `nodes` (each distinct address read once).
pub fn scrape(nodes: &[SocketAddr], host: &str) -> Result<u64, String> {
    let mut nodes = nodes.to_vec();
    nodes.sort();
    nodes.dedup();
    let host = host.to_owned();
    // A thread of its own: the caller may already be inside a runtime.
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let client = awc::Client::builder().timeout(SCRAPE_TIMEOUT).finish();
            let mut total = 0u64;
            for node in nodes {
                let mut response = client
                    .get(format!("http://{node}/metrics"))
                    .insert_header(("Host", host.as_str()))
                    .send()
                    .await
                    .map_err(|e| format!("{node}: {e}"))?;
                if !response.status().is_success() {
                    return Err(format!("{node}: HTTP {}", response.status().as_u16()));
                }
                let body = response
                    .body()
                    .limit(16 * 1024 * 1024)
                    .await
                    .map_err(|e| format!("{node}: {e}"))?;
                let text = String::from_utf8_lossy(&body);
                let count = redeemed_total(&text)
                    .ok_or_else(|| format!("{node}: no {HANDOFFS_METRIC} on /metrics"))?;
                total = total.saturating_add(count);
            }
            Ok(total)
        })
    })
    .join()
    .map_err(|_| "the metrics reader panicked".to_owned())?
}
