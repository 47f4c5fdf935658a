//! Wrong methods (`405` with `Allow`) and duplicated parameters.

use crate::check_page;
use crate::session_support::Http;
use crate::support::app::{ADMIN_TOKEN, Backend, TestApp};
use crate::support::browser::Browser;
use reqwest::{Method, StatusCode};

/// Every path under /bridge, /api, /admin and the probes, with the
/// methods it answers.
const ROUTES: &[(&str, &[&str])] = &[
    ("/bridge/start", &["GET"]),
    ("/bridge/issue", &["GET"]),
    ("/bridge/accept", &["GET", "POST"]),
    ("/bridge/frame", &["GET"]),
    ("/bridge/exchange", &["POST"]),
    ("/bridge/session", &["GET"]),
    ("/bridge/heartbeat", &["POST"]),
    ("/bridge/logout", &["POST"]),
    ("/bridge/jwks.json", &["GET"]),
    ("/bridge/session-bridge.js", &["GET"]),
    ("/bridge/session-bridge.mjs", &["GET"]),
    ("/bridge/assets/bridge.css", &["GET"]),
    ("/api/v1/sessions", &["POST"]),
    ("/api/openapi.json", &["GET"]),
    (
        "/api/v1/sessions/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &["GET", "PATCH", "DELETE"],
    ),
    ("/admin/audit", &["GET"]),
    ("/healthz", &["GET"]),
    ("/readyz", &["GET"]),
    ("/metrics", &["GET"]),
];

/// The browser endpoints behind CORS, where `OPTIONS` is a preflight.
const CORS_PATHS: &[&str] = &["/bridge/session", "/bridge/heartbeat", "/bridge/logout"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_get_405_with_allow() {
    let app = TestApp::spawn(Backend::Memory).await;
    let http = Http::new(&app);
    let base = app.origin("shop");
    for (path, allowed) in ROUTES {
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] {
            if allowed.contains(&method) || (method == "OPTIONS" && CORS_PATHS.contains(path)) {
                continue;
            }
            for accept_json in [false, true] {
                let what = format!("{method} {path} (json: {accept_json})");
                let accept: &[(&str, &str)] = if accept_json {
                    &[("Accept", "application/json")]
                } else {
                    &[]
                };
                let page = http
                    .send(
                        Method::from_bytes(method.as_bytes()).unwrap(),
                        &format!("{base}{path}"),
                        accept,
                        None,
                    )
                    .await;
                assert_eq!(
                    page.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{what}: {}",
                    page.body
                );
                let mut allow: Vec<String> = page
                    .header("allow")
                    .unwrap_or_else(|| panic!("{what}: no Allow"))
                    .split(',')
                    .map(|m| m.trim().to_owned())
                    .collect();
                allow.sort();
                let mut expected: Vec<String> = allowed.iter().map(|m| (*m).to_owned()).collect();
                expected.sort();
                assert_eq!(allow, expected, "{what}");
                check_page(&what, &page);
                if method == "HEAD" {
                    continue;
                }
                assert_eq!(
                    page.error_code().as_deref(),
                    Some("method_not_allowed"),
                    "{what}"
                );
                let json = accept_json || path.starts_with("/api/");
                let kind = page.header("content-type").unwrap();
                assert_eq!(
                    kind.starts_with("application/problem+json"),
                    json,
                    "{what}: {kind}"
                );
            }
        }
    }
    // An unknown path is still a 404, whatever the method.
    let page = http
        .send(Method::DELETE, &format!("{base}/bridge/nothing"), &[], None)
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert_eq!(page.error_code().as_deref(), Some("not_found"));
}

// --------------------------------------------------- duplicated parameters

/// One request: method, URL, form body, extra headers.
struct Case {
    method: Method,
    url: String,
    form: Option<&'static str>,
    headers: Vec<(&'static str, String)>,
}

fn get(url: String) -> Case {
    Case {
        method: Method::GET,
        url,
        form: None,
        headers: Vec::new(),
    }
}

fn post_form(url: String, form: &'static str) -> Case {
    Case {
        method: Method::POST,
        url,
        form: Some(form),
        headers: vec![(
            "Content-Type",
            "application/x-www-form-urlencoded".to_owned(),
        )],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_parameters_are_refused() {
    let app = TestApp::spawn(Backend::Memory).await;
    let http = Http::new(&app);
    let (account, shop) = (app.origin("account"), app.origin("shop"));
    let c = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let mut audit = get(format!("{account}/admin/audit?page=1&page=2"));
    audit
        .headers
        .push(("Authorization", format!("Bearer {ADMIN_TOKEN}")));
    let cases = vec![
        get(format!(
            "{shop}/bridge/start?from=account&from=checkout&return_to=/"
        )),
        get(format!(
            "{shop}/bridge/start?from=account&return_to=/&return_to=/x"
        )),
        get(format!(
            "{shop}/bridge/start?from=account&return_to=/&mode=query&mode=query"
        )),
        get(format!(
            "{account}/bridge/issue?to=shop&to=checkout&challenge={c}&return_to=/"
        )),
        get(format!(
            "{account}/bridge/issue?to=shop&challenge={c}&challenge={c}&return_to=/"
        )),
        get(format!(
            "{account}/bridge/issue?to=shop&challenge={c}&return_to=/&return_to=/"
        )),
        get(format!(
            "{account}/bridge/frame?to=shop&challenge={c}&challenge={c}"
        )),
        get(format!(
            "{account}/bridge/frame?to=shop&challenge={c}&mode=popup&mode=iframe"
        )),
        get(format!("{shop}/bridge/accept?token=a&token=b")),
        // The same name, percent-encoded, is the same parameter.
        get(format!("{shop}/bridge/accept?token=a&%74oken=a")),
        post_form(format!("{shop}/bridge/accept?token=a"), "token=a"),
        post_form(format!("{shop}/bridge/accept"), "token=a&token=b"),
        post_form(format!("{shop}/bridge/accept?x=1&x=1"), "token=a"),
        audit,
    ];
    for case in &cases {
        for accept_json in [false, true] {
            let mut headers: Vec<(&str, &str)> =
                case.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            if accept_json {
                headers.push(("Accept", "application/json"));
            }
            let body = || case.form.map(|b| b.as_bytes().to_vec());
            // Twice: the answer does not depend on anything but the request.
            let first = http
                .send(case.method.clone(), &case.url, &headers, body())
                .await;
            let second = http
                .send(case.method.clone(), &case.url, &headers, body())
                .await;
            let what = format!("{} {} {:?}", case.method, case.url, case.form);
            for page in [&first, &second] {
                assert_eq!(
                    page.status,
                    StatusCode::BAD_REQUEST,
                    "{what}: {}",
                    page.body
                );
                assert_eq!(
                    page.error_code().as_deref(),
                    Some("duplicate_parameter"),
                    "{what}"
                );
                let kind = page.header("content-type").unwrap();
                assert_eq!(
                    kind.starts_with("application/problem+json"),
                    accept_json,
                    "{what}"
                );
                check_page(&what, page);
            }
        }
    }
}

/// A real token given twice is refused before it is looked at, and stays
/// good for its one proper use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicated_token_is_refused_and_not_burnt() {
    let app = TestApp::spawn(Backend::Memory).await;
    let mut browser = Browser::new(app.port);
    app.sign_in(&mut browser, "ada", None).await;
    let start = format!(
        "{}/bridge/start?from=account&return_to=%2F&mode=query",
        app.origin("shop")
    );
    let started = browser.get(&start).await;
    let issued = browser.get(started.location().unwrap().as_str()).await;
    let accept = issued.location().unwrap();
    let token = accept
        .query_pairs()
        .find(|(k, _)| k == "token")
        .unwrap()
        .1
        .into_owned();
    let base = format!("{}/bridge/accept", app.origin("shop"));
    let twice = browser
        .get(&format!("{base}?token={token}&token={token}"))
        .await;
    assert_eq!(twice.status, StatusCode::BAD_REQUEST);
    assert_eq!(twice.error_code().as_deref(), Some("duplicate_parameter"));
    let both = browser
        .request(
            Method::POST,
            &format!("{base}?token={token}"),
            Some(&[("token", token.as_str())]),
        )
        .await;
    assert_eq!(both.status, StatusCode::BAD_REQUEST);
    assert_eq!(both.error_code().as_deref(), Some("duplicate_parameter"));
    let once = browser.get(accept.as_str()).await;
    assert_eq!(once.status, StatusCode::SEE_OTHER, "{}", once.body);
}
