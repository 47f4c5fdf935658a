//! The demo journey of the README, driven over HTTP with one cookie jar per
//! host: sign in on account, get greeted on shop, fill the cart, see it on
//! checkout — three origins that share no cookies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::StatusCode;
use support::app::{Backend, TestApp};
use support::browser::Browser;

async fn journey(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut person = Browser::new(app.port);

    let account = person.visit(&format!("{}/", app.origin("account"))).await;
    assert!(account.body.contains("not signed in"), "{}", account.body);
    let login = person
        .visit(&format!("{}/login", app.origin("account")))
        .await;
    assert!(
        login.body.contains("no password check"),
        "the demo says so: {}",
        login.body
    );
    let signed_in = person
        .post_form(
            &format!("{}/login", app.origin("account")),
            &[("username", "Ada"), ("return_to", "/")],
        )
        .await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    let account = person.visit(signed_in.location().unwrap().as_str()).await;
    assert!(
        account.body.contains("Signed in as <strong>Ada</strong>"),
        "{}",
        account.body
    );

    // The shop has never seen this browser: it bounces through the bridge.
    let hops = person.follow(&format!("{}/", app.origin("shop"))).await;
    let paths: Vec<String> = hops
        .iter()
        .map(|p| format!("{}{}", p.url.host_str().unwrap(), p.url.path()))
        .collect();
    assert_eq!(
        paths,
        [
            "shop.localhost/",
            "shop.localhost/bridge/start",
            "account.localhost/bridge/issue",
            "shop.localhost/bridge/accept",
            "shop.localhost/",
        ]
    );
    let shop = hops.last().unwrap();
    assert!(
        shop.body.contains("Hello, <strong>Ada</strong>!"),
        "{}",
        shop.body
    );
    assert!(shop.body.contains("Your cart is empty"));

    let added = person
        .post_form(
            &format!("{}/cart", app.origin("shop")),
            &[("item", "Teapot")],
        )
        .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER);
    let shop = person.visit(&format!("{}/", app.origin("shop"))).await;
    assert!(shop.body.contains("<li>Teapot</li>"), "{}", shop.body);

    let checkout = person.follow(&format!("{}/", app.origin("checkout"))).await;
    assert_eq!(
        checkout.len(),
        5,
        "checkout bounces through the bridge once"
    );
    let checkout = checkout.last().unwrap();
    assert!(
        checkout.body.contains("Hello, <strong>Ada</strong>!"),
        "{}",
        checkout.body
    );
    assert!(
        checkout.body.contains("<li>Teapot</li>"),
        "{}",
        checkout.body
    );
    // A second visit needs no bridge.
    assert_eq!(
        person
            .follow(&format!("{}/", app.origin("checkout")))
            .await
            .len(),
        1
    );
}

async fn a_visitor_without_a_session_signs_in_on_the_way(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut person = Browser::new(app.port);
    let hops = person.follow(&format!("{}/", app.origin("shop"))).await;
    let login = hops.last().unwrap();
    assert_eq!(login.url.host_str(), Some("account.localhost"));
    assert_eq!(login.url.path(), "/login");
    let back = login
        .url
        .query_pairs()
        .find(|(k, _)| k == "return_to")
        .unwrap()
        .1
        .into_owned();
    let submitted = person
        .post_form(
            &format!("{}/login", app.origin("account")),
            &[("username", "Grace"), ("return_to", &back)],
        )
        .await;
    let shop = person.visit(submitted.location().unwrap().as_str()).await;
    assert_eq!(shop.url.host_str(), Some("shop.localhost"));
    assert!(
        shop.body.contains("Hello, <strong>Grace</strong>!"),
        "{}",
        shop.body
    );
}

async fn signing_in_rotates_the_session_id(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut person = Browser::new(app.port);
    // A planted (or anonymous) session on account does not survive a login.
    let planted = person
        .post_form(
            &format!("{}/login", app.origin("account")),
            &[("username", "first")],
        )
        .await;
    assert_eq!(planted.status, StatusCode::SEE_OTHER);
    let before = person.cookie("account.localhost", "__Host-sb").unwrap();
    person
        .post_form(
            &format!("{}/login", app.origin("account")),
            &[("username", "second")],
        )
        .await;
    let after = person.cookie("account.localhost", "__Host-sb").unwrap();
    assert_ne!(before, after);
    let mut attacker = Browser::new(app.port);
    attacker.set_cookie("account.localhost", "__Host-sb", &before);
    let page = attacker.visit(&format!("{}/", app.origin("account"))).await;
    assert!(page.body.contains("not signed in"), "the old id is dead");
}

async fn cross_origin_form_posts_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let client = reqwest::Client::builder()
        .resolve("account.localhost", ([127, 0, 0, 1], app.port).into())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .post(format!("{}/login", app.origin("account")))
        .header("Origin", "http://evil.localhost")
        .form(&[("username", "victim")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get("set-cookie").is_none());
    let login = |origin: &'static str, fetch_site: &'static str| {
        client
            .post(format!("{}/login", app.origin("account")))
            .header("Origin", origin)
            .header("Sec-Fetch-Site", fetch_site)
            .form(&[("username", "someone")])
            .send()
    };
    // What Chromium sends for the login form of a no-referrer page.
    assert_eq!(
        login("null", "same-origin").await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        login("null", "cross-site").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        login("null", "same-site").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
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

on_every_store!(
    journey,
    a_visitor_without_a_session_signs_in_on_the_way,
    signing_in_rotates_the_session_id,
    cross_origin_form_posts_are_refused,
);
