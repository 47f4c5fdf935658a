//! One virtual browser: its setup (a session on the issuing site, or a
//! login on the reference app) and one iteration of each scenario.

use super::LoadOptions;
use super::http::{
    Failure, authority, error_code, frame_token, location, micros, on_node, read_body,
    serialized_origin, set_cookie, set_cookies, transport,
};
use super::scenario::{MAX_STEPS, Scenario};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::{SecureRandom, SystemRandom};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Step latencies of one iteration in microseconds; the scenario's step
/// count says how many are used.
pub type Times = [u64; MAX_STEPS];

/// The sites as the requests name them, worked out once.
struct Sites {
    from_host: String,
    to_host: String,
    from_origin: String,
    to_origin: String,
}

pub struct Browser {
    scenario: Scenario,
    client: awc::Client,
    sites: Sites,
    /// The node this browser signed in on (the reference apps' sessions
    /// live on their node).
    home: SocketAddr,
    /// What it sends as `Cookie` where a session is needed: the issuing
    /// site's session cookie, or the reference app's.
    cookie: String,
    random: SystemRandom,
}

fn enc(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

impl Browser {
    /// Makes the browser and its session on `home`.
    pub async fn new(
        options: &LoadOptions,
        home: SocketAddr,
        index: usize,
    ) -> Result<Self, Failure> {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .disable_redirects()
            .finish();
        let sites = Sites {
            from_host: authority(&options.from)?,
            to_host: authority(&options.to)?,
            from_origin: serialized_origin(&options.from)?,
            to_origin: serialized_origin(&options.to)?,
        };
        let mut browser = Self {
            scenario: options.scenario,
            client,
            sites,
            home,
            cookie: String::new(),
            random: SystemRandom::new(),
        };
        browser.cookie = match options.scenario {
            Scenario::FlowA | Scenario::FlowB | Scenario::SessionRead => {
                browser.bridge_session(options, index).await?
            }
            Scenario::PeerRead => browser.peer_login().await?,
            Scenario::Floor | Scenario::FloorFlowA => String::new(),
        };
        Ok(browser)
    }

    /// A session on the issuing site through the service API, as a site's
    /// login code makes one; its cookie.
    async fn bridge_session(&self, options: &LoadOptions, index: usize) -> Result<String, Failure> {
        let mut response = self
            .client
            .post(format!("http://{}/api/v1/sessions", self.home))
            .insert_header(("Host", self.sites.from_host.as_str()))
            .bearer_auth(&options.api_key)
            .send_json(&serde_json::json!({
                "site": options.from_site,
                "user_id": format!("loadgen-{index}"),
                "data": {"cart": ["book"], "theme": "dark"},
            }))
            .await
            .map_err(transport)?;
        if response.status().as_u16() != 201 {
            return Err(error_code(response).await);
        }
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|_| Failure::from("invalid_json"))?;
        let id = body["id"].as_str().ok_or("no_session_id")?;
        Ok(format!("__Host-sb={id}"))
    }

    /// `POST /login` on the actix-session app; the cookies it sets.
    async fn peer_login(&self) -> Result<String, Failure> {
        let mut response = self
            .client
            .post(format!("http://{}/login", self.home))
            .send()
            .await
            .map_err(transport)?;
        if !response.status().is_success() {
            return Err(error_code(response).await);
        }
        read_body(&mut response).await?;
        let cookies = set_cookies(&response);
        if cookies.is_empty() {
            return Err("no_session_cookie".into());
        }
        Ok(cookies.join("; "))
    }

    /// One iteration. `issue_node` issues tokens (and serves reads),
    /// `accept_node` redeems them.
    pub async fn iterate(
        &self,
        issue_node: SocketAddr,
        accept_node: SocketAddr,
    ) -> Result<Times, Failure> {
        match self.scenario {
            Scenario::FlowA => self.flow_a(issue_node, accept_node).await,
            Scenario::FlowB => self.flow_b(issue_node, accept_node).await,
            Scenario::SessionRead => {
                let path = "/bridge/session";
                self.read(issue_node, path, Some(&self.sites.from_host))
                    .await
            }
            Scenario::Floor => self.floor().await,
            Scenario::FloorFlowA => self.floor_flow_a().await,
            Scenario::PeerRead => self.read(self.home, "/session", None).await,
        }
    }

    async fn flow_a(
        &self,
        issue_node: SocketAddr,
        accept_node: SocketAddr,
    ) -> Result<Times, Failure> {
        let sites = &self.sites;
        // start, on the receiving site
        let began = Instant::now();
        let path = format!(
            "/bridge/start?from={}&return_to=%2F",
            enc(&sites.from_origin)
        );
        let response = self
            .client
            .get(format!("http://{accept_node}{path}"))
            .insert_header(("Host", sites.to_host.as_str()))
            .insert_header(("Accept", "application/json"))
            .send()
            .await
            .map_err(transport)?;
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
            .insert_header(("Host", sites.from_host.as_str()))
            .insert_header(("Cookie", self.cookie.as_str()))
            .insert_header(("Accept", "application/json"))
            .send()
            .await
            .map_err(transport)?;
        if response.status().as_u16() != 303 {
            return Err(error_code(response).await);
        }
        let accept = location(&response).ok_or("no_location")?;
        let issue_us = micros(began);
        // accept, on the receiving site: this one redeems the token
        let began = Instant::now();
        let response = self
            .client
            .get(on_node(accept_node, &accept))
            .insert_header(("Host", sites.to_host.as_str()))
            .insert_header(("Cookie", state.as_str()))
            .insert_header(("Accept", "application/json"))
            .send()
            .await
            .map_err(|e| transport(e).redeeming())?;
        if response.status().as_u16() != 303 {
            return Err(error_code(response).await);
        }
        Ok([start_us, issue_us, micros(began)])
    }

    /// A verifier (32 random bytes, base64url) and its S256 challenge, as
    /// the handshake script makes them with `crypto.getRandomValues` and
    /// `crypto.subtle`.
    fn pkce_pair(&self) -> Result<(String, String), Failure> {
        let mut bytes = [0u8; 32];
        self.random
            .fill(&mut bytes)
            .map_err(|_| Failure::from("random"))?;
        let verifier = B64.encode(bytes);
        let challenge = B64.encode(ring::digest::digest(
            &ring::digest::SHA256,
            verifier.as_bytes(),
        ));
        Ok((verifier, challenge))
    }

    async fn flow_b(
        &self,
        issue_node: SocketAddr,
        accept_node: SocketAddr,
    ) -> Result<Times, Failure> {
        let sites = &self.sites;
        let (verifier, challenge) = self.pkce_pair()?;
        // frame, on the issuing site, with its session cookie
        let began = Instant::now();
        let mut response = self
            .client
            .get(format!(
                "http://{issue_node}/bridge/frame?to={}&challenge={challenge}",
                enc(&sites.to_origin)
            ))
            .insert_header(("Host", sites.from_host.as_str()))
            .insert_header(("Cookie", self.cookie.as_str()))
            .insert_header(("Accept", "application/json"))
            .send()
            .await
            .map_err(transport)?;
        if response.status().as_u16() != 200 {
            return Err(error_code(response).await);
        }
        let page = read_body(&mut response).await?;
        let token = frame_token(&String::from_utf8_lossy(&page))?;
        let frame_us = micros(began);
        // exchange, on the receiving site: a same-origin fetch of its page
        let began = Instant::now();
        let mut response = self
            .client
            .post(format!("http://{accept_node}/bridge/exchange"))
            .insert_header(("Host", sites.to_host.as_str()))
            .insert_header(("Origin", sites.to_origin.as_str()))
            .insert_header(("Sec-Fetch-Site", "same-origin"))
            .insert_header(("Accept", "application/json"))
            .send_json(&serde_json::json!({
                "token": token,
                "verifier": verifier,
                "from": sites.from_origin,
            }))
            .await
            .map_err(|e| transport(e).redeeming())?;
        if response.status().as_u16() != 200 {
            return Err(error_code(response).await);
        }
        // Redeemed whatever happens to the body; a lost body is still an error.
        read_body(&mut response).await.map_err(Failure::redeeming)?;
        Ok([frame_us, micros(began), 0])
    }

    /// `GET path` with the session cookie; 200 expected.
    async fn read(
        &self,
        node: SocketAddr,
        path: &str,
        host: Option<&str>,
    ) -> Result<Times, Failure> {
        let began = Instant::now();
        let mut request = self
            .client
            .get(format!("http://{node}{path}"))
            .insert_header(("Cookie", self.cookie.as_str()))
            .insert_header(("Accept", "application/json"));
        if let Some(host) = host {
            request = request.insert_header(("Host", host));
        }
        let mut response = request.send().await.map_err(transport)?;
        if response.status().as_u16() != 200 {
            return Err(error_code(response).await);
        }
        read_body(&mut response).await?;
        Ok([micros(began), 0, 0])
    }

    /// The floor app's three steps: `GET /start`, the `/issue` URL it
    /// redirects to, then the accept URL with the state cookie.
    async fn floor_flow_a(&self) -> Result<Times, Failure> {
        let began = Instant::now();
        let mut response = self
            .client
            .get(format!("http://{}/start", self.home))
            .send()
            .await
            .map_err(transport)?;
        if response.status().as_u16() != 303 {
            return Err(error_code(response).await);
        }
        read_body(&mut response).await?;
        let state = set_cookie(&response, "state").ok_or("no_state_cookie")?;
        let issue = location(&response).ok_or("no_location")?;
        let start_us = micros(began);
        let [issue_us, accept_us, _] = self.floor_from(&issue, Some(&state)).await?;
        Ok([start_us, issue_us, accept_us])
    }

    /// The floor app: `GET /issue`, then the accept URL it redirects to.
    async fn floor(&self) -> Result<Times, Failure> {
        self.floor_from("/issue", None).await
    }

    /// The floor's `issue` at `issue_path`, then its accept with `state` as
    /// the cookie, if any.
    async fn floor_from(&self, issue_path: &str, state: Option<&str>) -> Result<Times, Failure> {
        let began = Instant::now();
        let mut response = self
            .client
            .get(on_node(self.home, issue_path))
            .send()
            .await
            .map_err(transport)?;
        if response.status().as_u16() != 303 {
            return Err(error_code(response).await);
        }
        read_body(&mut response).await?;
        let accept = location(&response).ok_or("no_location")?;
        let issue_us = micros(began);
        let began = Instant::now();
        let mut request = self.client.get(on_node(self.home, &accept));
        if let Some(state) = state {
            request = request.insert_header(("Cookie", state));
        }
        let mut response = request.send().await.map_err(transport)?;
        if response.status().as_u16() != 303 {
            return Err(error_code(response).await);
        }
        read_body(&mut response).await?;
        Ok([issue_us, micros(began), 0])
    }
}
