//! A minimal browser for tests: its own cookie jar per host (host-only
//! cookies, as the bridge sets them), redirects followed by hand so every
//! hop can be checked, and names resolved to loopback like Chromium does
//! for `*.localhost`.

use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use reqwest::{Client, Method, StatusCode, redirect};
use std::collections::HashMap;
use url::Url;

/// One response, read completely.
#[derive(Debug, Clone)]
pub struct Page {
    pub url: Url,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
    /// Raw `Set-Cookie` values of this response.
    pub set_cookies: Vec<String>,
}

impl Page {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn location(&self) -> Option<Url> {
        self.header(LOCATION.as_str())
            .map(|l| self.url.join(l).unwrap())
    }

    /// The error code of an HTML error page or a problem+json body.
    pub fn error_code(&self) -> Option<String> {
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(&self.body) {
            return json["code"].as_str().map(str::to_owned);
        }
        let start = self.body.find("Error code: <code>")? + "Error code: <code>".len();
        let end = self.body[start..].find('<')? + start;
        Some(self.body[start..end].to_owned())
    }

    pub fn set_cookie(&self, name: &str) -> Option<&str> {
        self.set_cookies
            .iter()
            .map(String::as_str)
            .find(|c| c.starts_with(&format!("{name}=")))
    }
}

pub struct Browser {
    client: Client,
    /// host → cookie name → value
    jar: HashMap<String, HashMap<String, String>>,
    pub accept_json: bool,
}

impl Browser {
    pub fn new(port: u16) -> Self {
        let mut builder = Client::builder().redirect(redirect::Policy::none());
        for site in ["account", "shop", "checkout", "evil"] {
            builder = builder.resolve(&format!("{site}.localhost"), ([127, 0, 0, 1], port).into());
        }
        Self {
            client: builder.build().unwrap(),
            jar: HashMap::new(),
            accept_json: false,
        }
    }

    pub fn cookie(&self, host: &str, name: &str) -> Option<String> {
        self.jar.get(host).and_then(|c| c.get(name)).cloned()
    }

    pub fn set_cookie(&mut self, host: &str, name: &str, value: &str) {
        super::artifacts::secret(value);
        self.jar
            .entry(host.to_owned())
            .or_default()
            .insert(name.to_owned(), value.to_owned());
    }

    pub fn clear_cookies(&mut self, host: &str) {
        self.jar.remove(host);
    }

    pub async fn request(
        &mut self,
        method: Method,
        url: &str,
        form: Option<&[(&str, &str)]>,
    ) -> Page {
        let url = Url::parse(url).unwrap();
        let host = url.host_str().unwrap().to_owned();
        let mut request = self.client.request(method, url.clone());
        if let Some(cookies) = self.jar.get(&host) {
            let header: Vec<String> = cookies.iter().map(|(n, v)| format!("{n}={v}")).collect();
            if !header.is_empty() {
                request = request.header("Cookie", header.join("; "));
            }
        }
        if self.accept_json {
            request = request.header("Accept", "application/json");
        }
        if let Some(form) = form {
            request = request.form(form);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let set_cookies: Vec<String> = headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        for raw in &set_cookies {
            self.store_cookie(&host, raw);
        }
        let body = response.text().await.unwrap();
        // Every secret this response hands out, and every error page, for
        // the suite-wide leak check.
        if let Some(location) = headers.get(LOCATION).and_then(|v| v.to_str().ok())
            && let Ok(target) = url.join(location)
        {
            for (name, value) in target.query_pairs() {
                if name == "token" {
                    super::artifacts::secret(&value);
                }
            }
        }
        for marker in ["name=\"token\" value=\"", "data-token=\""] {
            if let Some(rest) = body.split(marker).nth(1) {
                super::artifacts::secret(rest.split('"').next().unwrap_or_default());
            }
        }
        if status.as_u16() >= 400 {
            super::artifacts::error_page(status.as_u16(), &format!("{headers:?}"), &body);
        }
        Page {
            url,
            status,
            headers,
            body,
            set_cookies,
        }
    }

    fn store_cookie(&mut self, host: &str, raw: &str) {
        let mut parts = raw.split(';').map(str::trim);
        let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
            return;
        };
        let removed = parts.any(|p| p.eq_ignore_ascii_case("Max-Age=0"));
        super::artifacts::secret(value);
        let jar = self.jar.entry(host.to_owned()).or_default();
        if removed || value.is_empty() {
            jar.remove(name);
        } else {
            jar.insert(name.to_owned(), value.to_owned());
        }
    }

    pub async fn get(&mut self, url: &str) -> Page {
        self.request(Method::GET, url, None).await
    }

    pub async fn post_form(&mut self, url: &str, form: &[(&str, &str)]) -> Page {
        self.request(Method::POST, url, Some(form)).await
    }

    /// Follows redirects (GET) from `url`; returns every response, the last
    /// being the first one that is not a redirect.
    pub async fn follow(&mut self, url: &str) -> Vec<Page> {
        let mut pages = Vec::new();
        let mut next = url.to_owned();
        for _ in 0..10 {
            let page = self.get(&next).await;
            let location = page
                .status
                .is_redirection()
                .then(|| page.location())
                .flatten();
            pages.push(page);
            match location {
                Some(location) => next = location.to_string(),
                None => return pages,
            }
        }
        panic!("redirect loop from {url}");
    }

    /// Follows redirects from `url` and returns the last page.
    pub async fn visit(&mut self, url: &str) -> Page {
        self.follow(url).await.pop().unwrap()
    }
}
