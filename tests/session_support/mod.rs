//! Helpers of the session API suites (`session_api`, `logout`, `cors`):
//! a bare HTTP client and the service API calls.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use crate::support::app::{API_KEY, TestApp};
use crate::support::browser::Page;
use reqwest::header::SET_COOKIE;
use reqwest::{Client, Method, StatusCode, redirect};
use serde_json::Value;
use url::Url;

pub const SESSION_COOKIE: &str = "__Host-sb";

/// A bare HTTP client: every header, cookie included, is given by the test.
/// `*.localhost` names resolve to the bridge, as in browsers.
#[derive(Clone)]
pub struct Http {
    client: Client,
    port: u16,
}

impl Http {
    pub fn new(app: &TestApp) -> Self {
        let mut builder = Client::builder().redirect(redirect::Policy::none());
        for host in ["account.localhost", "shop.localhost", "checkout.localhost"] {
            builder = builder.resolve(host, ([127, 0, 0, 1], app.port).into());
        }
        Self {
            client: builder.build().unwrap(),
            port: app.port,
        }
    }

    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Page {
        let url = Url::parse(url).unwrap();
        let mut request = self.client.request(method, url.clone());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let set_cookies = headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        let body = response.text().await.unwrap();
        Page {
            url,
            status,
            headers,
            body,
            set_cookies,
        }
    }

    /// A service API call (bearer key) on `site`'s host.
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Page {
        let url = format!("http://account.localhost:{}{path}", self.port);
        let auth = format!("Bearer {API_KEY}");
        let mut all = vec![("Authorization", auth.as_str())];
        all.extend_from_slice(headers);
        self.send(method, &url, &all, body).await
    }

    /// `POST /api/v1/sessions` with this JSON body; the answer.
    pub async fn create_raw(&self, body: &Value) -> Page {
        self.api(
            Method::POST,
            "/api/v1/sessions",
            &[("Content-Type", "application/json")],
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    /// A new session on `site` with `data`; its view (with `id`).
    pub async fn create(&self, site: &str, user: Option<&str>, data: Value) -> Value {
        let page = self
            .create_raw(&serde_json::json!({"site": site, "user_id": user, "data": data}))
            .await;
        assert_eq!(page.status, StatusCode::CREATED, "{}", page.body);
        assert_eq!(page.header("etag"), Some("\"1\""));
        json(&page)
    }

    pub async fn get_session(&self, id: &str) -> Page {
        self.api(Method::GET, &format!("/api/v1/sessions/{id}"), &[], None)
            .await
    }

    pub async fn patch(&self, id: &str, if_match: Option<&str>, patch: &Value) -> Page {
        let mut headers = vec![("Content-Type", "application/merge-patch+json")];
        if let Some(tag) = if_match {
            headers.push(("If-Match", tag));
        }
        self.api(
            Method::PATCH,
            &format!("/api/v1/sessions/{id}"),
            &headers,
            Some(patch.to_string().into_bytes()),
        )
        .await
    }

    pub async fn delete(&self, id: &str) -> Page {
        self.api(Method::DELETE, &format!("/api/v1/sessions/{id}"), &[], None)
            .await
    }

    /// A browser endpoint on `site` with the session cookie `id` (if any).
    pub async fn browser(
        &self,
        method: Method,
        app: &TestApp,
        site: &str,
        path: &str,
        id: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Page {
        let cookie = id.map(|id| format!("{SESSION_COOKIE}={id}"));
        let mut headers = vec![("Accept", "application/json")];
        if let Some(cookie) = &cookie {
            headers.push(("Cookie", cookie.as_str()));
        }
        headers.extend_from_slice(extra);
        let url = format!("{}{path}", app.origin(site));
        self.send(method, &url, &headers, None).await
    }
}

pub fn json(page: &Page) -> Value {
    serde_json::from_str(&page.body).unwrap_or_else(|e| panic!("{e}: {}", page.body))
}

/// A refusal as problem+json with this status and code.
pub fn assert_problem(page: &Page, status: StatusCode, code: &str) {
    assert_eq!(
        (page.status, page.error_code().as_deref()),
        (status, Some(code)),
        "{}",
        page.body
    );
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("application/problem+json")),
        "{:?}",
        page.header("content-type")
    );
}
