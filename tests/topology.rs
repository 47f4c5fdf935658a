//! The topology check over many deployments: the relation the browser sees,
//! the cookie attributes chosen, and the errors refused at start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use session_bridge::config::{Config, SameSiteSetting, SiteConfig};
use session_bridge::topology::Origin;
use session_bridge::topology::check::{Report, check};

fn site(id: &str, origins: &[&str], partners: &[&str]) -> SiteConfig {
    let mut config: SiteConfig = toml::from_str(&format!("id = \"{id}\"\norigins = []")).unwrap();
    config.origins = origins.iter().map(|o| (*o).to_owned()).collect();
    config.partners = partners.iter().map(|p| (*p).to_owned()).collect();
    config
}

fn two_sites(
    a: &[&str],
    b: &[&str],
    customize: impl FnOnce(&mut SiteConfig, &mut SiteConfig),
) -> Config {
    let mut first = site("a", a, &["b"]);
    let mut second = site("b", b, &["a"]);
    customize(&mut first, &mut second);
    Config {
        sites: vec![first, second],
        ..Config::default()
    }
}

fn codes(report: &Report) -> Vec<&'static str> {
    report.errors.iter().map(|e| e.code).collect()
}

struct Case {
    name: &'static str,
    a: &'static str,
    b: &'static str,
    same_site: SameSiteSetting,
    allow_iframe: bool,
    relation: &'static str,
    /// `SameSite` chosen for site a's cookie, and whether it is `Secure`.
    cookie: (&'static str, bool),
    iframe: &'static str,
}

const fn case(
    name: &'static str,
    a: &'static str,
    b: &'static str,
    relation: &'static str,
) -> Case {
    Case {
        name,
        a,
        b,
        same_site: SameSiteSetting::Auto,
        allow_iframe: false,
        relation,
        cookie: ("Lax", true),
        iframe: if matches!(relation.as_bytes(), b"cross-site") {
            "no"
        } else {
            "yes"
        },
    }
}

fn cases() -> Vec<Case> {
    use SameSiteSetting::*;
    let mut cases = vec![
        case(
            "gateway apex and www",
            "https://example.com",
            "https://www.example.com",
            "same-site",
        ),
        case(
            "app and api subdomains",
            "https://app.example.com",
            "https://api.example.com",
            "same-site",
        ),
        case(
            "deep subdomains",
            "https://a.b.example.com",
            "https://c.example.com",
            "same-site",
        ),
        case(
            "separate registrable domains",
            "https://shop.example.com",
            "https://account.example.net",
            "cross-site",
        ),
        case(
            "similar names, different domains",
            "https://example.com",
            "https://example-login.com",
            "cross-site",
        ),
        case(
            "co.uk same registrable domain",
            "https://a.example.co.uk",
            "https://b.example.co.uk",
            "same-site",
        ),
        case(
            "co.uk different registrable domains",
            "https://example.co.uk",
            "https://other.co.uk",
            "cross-site",
        ),
        case(
            "com.au",
            "https://shop.example.com.au",
            "https://id.example.com.au",
            "same-site",
        ),
        case(
            "private suffix github.io",
            "https://alice.github.io",
            "https://bob.github.io",
            "cross-site",
        ),
        case(
            "private suffix herokuapp",
            "https://a.herokuapp.com",
            "https://b.herokuapp.com",
            "cross-site",
        ),
        case(
            "private suffix appspot",
            "https://x.appspot.com",
            "https://y.appspot.com",
            "cross-site",
        ),
        case(
            "private suffix, same project",
            "https://api.alice.github.io",
            "https://alice.github.io",
            "same-site",
        ),
        case(
            "IDN same domain",
            "https://bücher.example",
            "https://shop.bücher.example",
            "same-site",
        ),
        case(
            "IDN punycode equals unicode",
            "https://xn--bcher-kva.example",
            "https://login.bücher.example",
            "same-site",
        ),
        case(
            "IDN different domains",
            "https://bücher.example",
            "https://bucher.example",
            "cross-site",
        ),
        case(
            "IPv4 loopback, two ports",
            "https://127.0.0.1:8001",
            "https://127.0.0.1:8002",
            "same-site",
        ),
        case(
            "IPv4 public hosts",
            "https://192.0.2.1",
            "https://192.0.2.2",
            "cross-site",
        ),
        case(
            "IPv6 loopback, two ports",
            "https://[::1]:8001",
            "https://[::1]:8002",
            "same-site",
        ),
        case(
            "IP versus name",
            "https://192.0.2.1",
            "https://example.com",
            "cross-site",
        ),
        case(
            "ports on one host",
            "https://example.com:8443",
            "https://example.com",
            "same-site",
        ),
        case(
            "ports on subdomains",
            "https://a.example.com:8443",
            "https://b.example.com:9443",
            "same-site",
        ),
        case(
            "http versus https localhost",
            "http://a.localhost:8080",
            "https://a.localhost:8443",
            "cross-site",
        ),
        case(
            "two *.localhost names",
            "http://account.localhost:8080",
            "http://shop.localhost:8080",
            "cross-site",
        ),
        case(
            "localhost and a sub-name",
            "http://localhost:8080",
            "http://app.localhost:8080",
            "cross-site",
        ),
        case(
            "upper case and trailing dot",
            "https://APP.Example.com.",
            "https://api.example.com",
            "same-site",
        ),
        case(
            "two TLDs of one brand",
            "https://example.de",
            "https://example.fr",
            "cross-site",
        ),
    ];
    cases.push(Case {
        allow_iframe: true,
        cookie: ("None", true),
        iframe: "conditional",
        ..case(
            "cross-site with allow_iframe",
            "https://id.example.net",
            "https://shop.example.com",
            "cross-site",
        )
    });
    cases.push(Case {
        allow_iframe: true,
        cookie: ("None", true),
        ..case(
            "same-site with allow_iframe",
            "https://id.example.com",
            "https://shop.example.com",
            "same-site",
        )
    });
    cases.push(Case {
        same_site: Strict,
        cookie: ("Strict", true),
        ..case(
            "explicit Strict between same-site partners",
            "https://id.example.com",
            "https://shop.example.com",
            "same-site",
        )
    });
    cases.push(Case {
        same_site: Lax,
        ..case(
            "explicit Lax cross-site",
            "https://id.example.org",
            "https://shop.example.com",
            "cross-site",
        )
    });
    cases.push(Case {
        same_site: None,
        cookie: ("None", true),
        iframe: "conditional",
        ..case(
            "explicit None cross-site",
            "https://id.example.org",
            "https://shop.example.com",
            "cross-site",
        )
    });
    cases.push(case(
        "several origins, the closest pair counts",
        "https://id.example.org https://id.example.com",
        "https://shop.example.com",
        "same-site",
    ));
    cases.push(case(
        "plain-HTTP localhost ports",
        "http://localhost:3000",
        "http://localhost:4000",
        "same-site",
    ));
    cases
}

#[test]
fn relation_and_cookie_attributes_over_many_topologies() {
    let cases = cases();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    for case in &cases {
        let a: Vec<&str> = case.a.split(' ').collect();
        let config = two_sites(&a, &[case.b], |a, _| {
            a.cookie.same_site = case.same_site;
            a.allow_iframe = case.allow_iframe;
        });
        let (report, topology) = check(&config);
        assert!(
            report.errors.is_empty(),
            "{}: {:?}",
            case.name,
            report.errors
        );
        assert!(topology.is_some());
        assert_eq!(
            report.pairs.len(),
            2,
            "{}: one entry per direction",
            case.name
        );
        let pair = &report.pairs[0];
        assert_eq!((pair.from.as_str(), pair.to.as_str()), ("a", "b"));
        assert_eq!(pair.relation, case.relation, "{}", case.name);
        assert_eq!(
            report.pairs[1].relation, case.relation,
            "{}: symmetric",
            case.name
        );
        let cookie = &report.sites[0].cookie;
        assert_eq!(
            (cookie.same_site.as_str(), cookie.secure),
            case.cookie,
            "{}",
            case.name
        );
        assert!(cookie.http_only);
        let iframe = pair.flows.iter().find(|f| f.flow == "iframe").unwrap();
        assert_eq!(iframe.works, case.iframe, "{}", case.name);
        let redirect = pair.flows.iter().find(|f| f.flow == "redirect").unwrap();
        assert_eq!(redirect.works, "yes", "{}", case.name);
        let shared = pair
            .flows
            .iter()
            .find(|f| f.flow == "shared_cookie")
            .unwrap();
        assert_eq!(
            shared.works == "yes",
            case.relation != "cross-site",
            "{}",
            case.name
        );
    }
}

#[test]
fn every_documented_error_is_refused_with_its_code() {
    type Change = fn(&mut Config);
    let cases: Vec<(&str, Change)> = vec![
        ("cookie_none_without_secure", |c| {
            c.sites[0].origins = vec!["http://a.example.com".into()];
            c.sites[0].cookie.same_site = SameSiteSetting::None;
        }),
        ("secure_on_plain_http", |c| {
            c.sites[0].origins = vec!["http://a.example.com".into()]
        }),
        ("cookie_domain_public_suffix", |c| {
            c.sites[0].origins = vec!["https://a.example.co.uk".into()];
            c.sites[0].cookie.name = "sb".into();
            c.sites[0].cookie.domain = Some("co.uk".into());
        }),
        ("cookie_domain_public_suffix", |c| {
            c.sites[0].origins = vec!["https://alice.github.io".into()];
            c.sites[0].cookie.name = "sb".into();
            c.sites[0].cookie.domain = Some("github.io".into());
        }),
        ("cookie_domain_not_parent", |c| {
            c.sites[0].cookie.name = "sb".into();
            c.sites[0].cookie.domain = Some("other.com".into());
        }),
        ("cookie_domain_not_parent", |c| {
            c.sites[0].cookie.name = "sb".into();
            c.sites[0].cookie.domain = Some("xa.example.com".into());
        }),
        ("cookie_host_prefix_domain", |c| {
            c.sites[0].cookie.domain = Some("example.com".into())
        }),
        ("origin_path", |c| {
            c.sites[0].origins = vec!["https://a.example.com/app".into()]
        }),
        ("origin_path", |c| {
            c.sites[0].origins = vec!["https://a.example.com?x=1".into()]
        }),
        ("origin_userinfo", |c| {
            c.sites[0].origins = vec!["https://me:pw@a.example.com".into()]
        }),
        ("origin_wildcard", |c| {
            c.sites[0].origins = vec!["https://*.example.com".into()]
        }),
        ("origin_default_port", |c| {
            c.sites[0].origins = vec!["https://a.example.com:443".into()]
        }),
        ("origin_duplicate", |c| {
            c.sites[1].origins = c.sites[0].origins.clone()
        }),
        ("partner_unknown", |c| {
            c.sites[0].partners.push("ghost".into())
        }),
        ("return_path_invalid", |c| {
            c.sites[0].return_paths = vec!["cart".into()]
        }),
        ("return_path_invalid", |c| {
            c.sites[0].return_paths = vec!["//evil".into()]
        }),
        ("cors_origin_wildcard", |c| {
            c.sites[0].cors_origins = vec!["*".into()]
        }),
        ("cors_origin_null", |c| {
            c.sites[0].cors_origins = vec!["null".into()]
        }),
        ("token_ttl_invalid", |c| {
            c.tokens.ttl = session_bridge::config::Seconds::new(121)
        }),
        ("token_leeway_invalid", |c| {
            c.tokens.leeway = session_bridge::config::Seconds::new(6)
        }),
        ("cookie_strict_cross_site", |c| {
            c.sites[0].origins = vec!["https://id.example.org".into()];
            c.sites[0].cookie.same_site = SameSiteSetting::Strict;
        }),
        ("site_id_invalid", |c| c.sites[0].id = "A/B".into()),
        ("login_url_invalid", |c| {
            c.sites[0].login_url = "/\\evil.example".into()
        }),
        ("login_url_invalid", |c| {
            c.sites[0].login_url = "https://evil.example/login".into()
        }),
    ];
    for (code, change) in cases {
        let mut config = two_sites(
            &["https://a.example.com"],
            &["https://b.example.com"],
            |_, _| {},
        );
        change(&mut config);
        let (report, topology) = check(&config);
        assert!(
            codes(&report).contains(&code),
            "{code}: {:?}",
            report.errors
        );
        assert!(topology.is_none(), "{code}: no topology on an error");
        let finding = report.errors.iter().find(|e| e.code == code).unwrap();
        assert!(
            !finding.fix.is_empty() && finding.fix != "see the README's error table",
            "{code} has a fix"
        );
        // The server runs the same check and refuses to start.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let started = runtime.block_on(session_bridge::app::prepare(
            &config,
            Default::default(),
            false,
        ));
        let message = started.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains(code),
            "{code}: the server must refuse to start, got: {message}"
        );
    }
}

#[test]
fn a_valid_domain_cookie_is_accepted() {
    let config = two_sites(
        &["https://app.example.com"],
        &["https://api.example.com"],
        |a, _| {
            a.cookie.name = "sb".into();
            a.cookie.domain = Some("example.com".into());
        },
    );
    let (report, _) = check(&config);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        report.sites[0].cookie.domain.as_deref(),
        Some("example.com")
    );
}

#[test]
fn warnings_do_not_stop_the_start() {
    let mut config = two_sites(
        &["https://id.example.org"],
        &["https://shop.example.com"],
        |a, _| a.allow_iframe = true,
    );
    config
        .sites
        .push(site("lonely", &["https://lonely.example.com"], &[]));
    let (report, topology) = check(&config);
    assert!(topology.is_some());
    let warnings: Vec<_> = report.warnings.iter().map(|w| w.code).collect();
    assert!(
        warnings.contains(&"iframe_needs_third_party_cookies"),
        "{warnings:?}"
    );
    assert!(warnings.contains(&"site_isolated"), "{warnings:?}");
}

#[test]
fn one_way_partners_are_reported_with_their_direction() {
    let config = two_sites(
        &["https://id.example.org"],
        &["https://shop.example.com"],
        |_, b| b.partners.clear(),
    );
    let (report, _) = check(&config);
    assert_eq!(report.pairs.len(), 1);
    assert_eq!(
        (report.pairs[0].from.as_str(), report.pairs[0].to.as_str()),
        ("a", "b")
    );
}

fn host() -> impl Strategy<Value = String> {
    let labels = prop::sample::select(vec!["a", "b", "app", "api", "www", "xn--bcher-kva", "shop"]);
    let suffixes = prop::sample::select(vec![
        "example.com",
        "example.co.uk",
        "github.io",
        "com",
        "localhost",
        "co.uk",
        "example.net",
    ]);
    (prop::collection::vec(labels, 0..3), suffixes).prop_map(|(labels, suffix)| {
        let mut parts: Vec<&str> = labels;
        parts.push(suffix);
        parts.join(".")
    })
}

fn origin() -> impl Strategy<Value = Origin> {
    let scheme = prop::sample::select(vec!["http", "https"]);
    let port = prop::option::of(prop::sample::select(vec![8080u16, 8443, 3000]));
    let ip = prop::sample::select(vec!["127.0.0.1", "192.0.2.7", "[::1]"]);
    let host = prop_oneof![4 => host(), 1 => ip.prop_map(str::to_owned)];
    (scheme, host, port).prop_map(|(scheme, host, port)| {
        let text = match port {
            Some(port) => format!("{scheme}://{host}:{port}"),
            None => format!("{scheme}://{host}"),
        };
        Origin::parse(&text).unwrap()
    })
}

proptest! {
    #[test]
    fn relation_is_symmetric(a in origin(), b in origin()) {
        prop_assert_eq!(a.relation(&b), b.relation(&a));
    }

    #[test]
    fn same_origin_implies_same_site(a in origin(), b in origin()) {
        prop_assert_eq!(a.relation(&a), session_bridge::topology::Relation::SameOrigin);
        if a == b {
            prop_assert_eq!(a.relation(&b), session_bridge::topology::Relation::SameOrigin);
        }
        if a.relation(&b) != session_bridge::topology::Relation::CrossSite {
            prop_assert_eq!(a.scheme(), b.scheme());
            prop_assert_eq!(a.registrable_domain(), b.registrable_domain());
        }
    }

    #[test]
    fn normalised_origins_parse_back_to_themselves(a in origin()) {
        prop_assert_eq!(Origin::parse(&a.to_string()).unwrap(), a);
    }
}
