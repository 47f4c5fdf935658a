//! Properties of the security checks, over generated input (proptest):
//! what `return_to` accepts never leaves the site, whatever the encoding;
//! origins normalise (IDN, case, trailing dot, default ports); the
//! same-site relation is an equivalence that ports do not change; every
//! token the bridge signs verifies, and no single changed byte does.
//!
//! (Symmetry of the relation and origins parsing back to themselves are in
//! tests/topology.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use session_bridge::config::TokenAlgorithm;
use session_bridge::flows::return_to::{ReturnToError, validate_return_to};
use session_bridge::token::{KeySet, TokenRequest, TokenService};
use session_bridge::topology::{Origin, Relation};
use std::sync::OnceLock;
use url::Url;

// ------------------------------------------------------------- return_to

/// The pieces open redirects are made of, to be put together in any order.
#[rustfmt::skip]
const PIECES: &[&str] = &[
    "/", "//", "///", "\\", "/\\", "\\/", ".", "..", "./", "../", "..;", ";", ";x=1", "?", "??",
    "#", "&", "=", "@", ":", "https:", "javascript:", "evil.example", "app", "cart", "x", "A",
    "%2F", "%2f", "%2F%2F", "%5C", "%5c", "%2e", "%2E", "%2e%2e", "%3B", "%3b", "%3F", "%23",
    "%40", "%25", "%252f", "%252e", "%00", "%0d%0a", "%09", "%20", "%41", "%C3%A9", "%", "%z",
    "%2", "%+1", "\t", "\n", "\r", " ", "\u{0}", "\u{7f}", "\u{85}", "é", "\u{ff0f}", "\u{2215}",
    "\u{2044}", "\u{3002}", "\u{ff0e}", "\u{202e}", "\u{200b}",
];

/// The `return_paths` a site may have (each passes `check`).
const PREFIXES: &[&str] = &["/", "/app", "/cart/", "/app/x", "/a-b/c_d"];

fn pieces() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 1..8).prop_map(|p| p.concat())
}

/// What a path segment may be made of when it tries to be a dot segment,
/// or to become one once decoded; and what the validator must refuse.
const SEGMENT_PIECES: &[&str] = &[".", "..", "%3B", "%3b", "x", "%41", "%20", "%3F", "?", "="];
const REFUSED_PIECES: &[&str] = &[
    ";", "%2e", "%2E", "%2F", "%5C", "%00", "%25", "\\", "\u{ff0e}", "#",
];

/// One of `allowed`, then segments made of those pieces.
fn segments_under(allowed: Vec<String>) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        8 => prop::sample::select(SEGMENT_PIECES),
        1 => prop::sample::select(REFUSED_PIECES),
    ];
    let segment = prop::collection::vec(piece, 1..4).prop_map(|p| p.concat());
    (
        prop::sample::select(allowed),
        prop::collection::vec(segment, 1..4),
    )
        .prop_map(|(prefix, segments)| {
            format!("{}/{}", prefix.trim_end_matches('/'), segments.join("/"))
        })
}

/// A site's `return_paths` and a `return_to` to check against them.
fn return_to_case() -> impl Strategy<Value = (Vec<String>, String)> {
    prefixes().prop_flat_map(|allowed| {
        let candidate = prop_oneof![
            6 => pieces(),
            6 => segments_under(allowed.clone()),
            // An allowed prefix, then anything.
            3 => (prop::sample::select(PREFIXES), pieces()).prop_map(|(p, rest)| format!("{p}{rest}")),
            1 => any::<String>(),
            1 => "[ -~]{0,40}",
        ];
        (Just(allowed), candidate)
    })
}

fn prefixes() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(prop::sample::select(PREFIXES), 1..3)
        .prop_map(|v| v.into_iter().map(str::to_owned).collect())
}

/// `path` is `prefix` or below it, segment by segment.
fn is_under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| char::from(*b).to_digit(16));
        if let (b'%', Some(high), Some(low)) = (bytes[i], hex(i + 1), hex(i + 2)) {
            out.push((high * 16 + low) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// The pages a browser may be on when it follows the redirect.
const PAGES: &[&str] = &[
    "https://shop.example.com/bridge/accept?token=t",
    "https://shop.example.com:8443/deep/er/page?q#f",
    "http://shop.localhost:8080/",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Whatever is accepted resolves, from any page of the site, to the
    /// site's own origin, under an allowed prefix; decoded once more (a
    /// proxy or framework), it is still a plain path under that prefix.
    #[test]
    fn accepted_return_to_stays_on_the_site((allowed, raw) in return_to_case()) {
        let Ok(accepted) = validate_return_to(&raw, &allowed) else {
            return Ok(());
        };
        prop_assert_eq!(accepted, raw.as_str());
        for page in PAGES {
            let base = Url::parse(page).unwrap();
            let joined = base.join(&raw).unwrap();
            prop_assert_eq!(joined.origin(), base.origin(), "{:?} leaves {}", raw, page);
            prop_assert!(joined.username().is_empty() && joined.password().is_none());
            prop_assert!(joined.fragment().is_none());
            prop_assert!(
                allowed.iter().any(|p| is_under(joined.path(), base.join(p).unwrap().path())),
                "{:?} resolves to {} outside {:?}", raw, joined.path(), allowed
            );
        }
        let path = raw.split_once('?').map_or(raw.as_str(), |(path, _)| path);
        let decoded = String::from_utf8_lossy(&percent_decode(path)).into_owned();
        prop_assert!(!decoded.starts_with("//") && !decoded.contains('\\'), "{:?}", decoded);
        for segment in decoded.split('/') {
            let bare = segment.split(';').next().unwrap();
            prop_assert!(bare != "." && bare != "..", "{:?} decodes to {:?}", raw, decoded);
        }
        prop_assert!(allowed.iter().any(|p| is_under(&decoded, p)));
    }

    /// The refusals that matter are refused whatever surrounds them (`//`
    /// only matters first, and `accepted_return_to_stays_on_the_site`
    /// covers it).
    #[test]
    fn ways_out_are_refused_anywhere(
        before in "(/[a-z]{1,3}){0,2}",
        attack in prop::sample::select(&[
            "/\\evil.example", "/%2F%2Fevil.example", "/%5Cevil.example",
            "/..", "/%2e%2e", "/..;", "/..%3B", "/x#y", "/\u{ff0f}\u{ff0f}evil", "/\t/evil",
        ][..]),
        after in "(/[a-z]{1,3}){0,2}",
    ) {
        let raw = format!("{before}{attack}{after}");
        prop_assert!(validate_return_to(&raw, &["/".to_owned()]).is_err(), "{:?}", raw);
    }
}

#[test]
fn encoded_semicolon_dot_segment_is_refused() {
    // Found by the `return_to` fuzz target: `..%3B` decodes to `..;`.
    assert_eq!(
        validate_return_to("/app/..%3B/admin", &["/app".to_owned()]),
        Err(ReturnToError::EncodedSeparator)
    );
    assert!(validate_return_to("/app/x?q=a%3Bb", &["/app".to_owned()]).is_ok());
}

// ---------------------------------------------------------------- origins

/// A label: ASCII, or one with letters `url` turns into punycode.
fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?",
        1 => prop::sample::select(&["bücher", "münchen", "例え", "пример", "ÅÄÖ", "straße"][..])
            .prop_map(str::to_owned),
    ]
}

fn host() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(label(), 1..3),
        prop::sample::select(&["com", "example", "co.uk", "github.io", "localhost", "de"][..]),
    )
        .prop_map(|(labels, tld)| format!("{}.{tld}", labels.join(".")))
}

/// Upper-cases the ASCII letters that `mask` picks.
fn mixed_case(text: &str, mask: u64) -> String {
    text.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask >> (i % 64) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Scheme and host case, a trailing dot and Unicode spelling do not
    /// change an origin; the host comes out lower-case ASCII (punycode).
    #[test]
    fn origins_normalise(
        https in any::<bool>(),
        host in host(),
        port in prop::option::of(1024u16..),
        mask in any::<u64>(),
        dot in any::<bool>(),
    ) {
        let scheme = if https { "https" } else { "http" };
        let port_text = port.map(|p| format!(":{p}")).unwrap_or_default();
        let plain = Origin::parse(&format!("{scheme}://{host}{port_text}")).unwrap();
        let written = format!(
            "{}://{}{}{port_text}",
            mixed_case(scheme, mask),
            mixed_case(&host, mask.rotate_left(7)),
            if dot { "." } else { "" },
        );
        let spelled = Origin::parse(&written).unwrap();
        prop_assert_eq!(&spelled, &plain);
        let expected_host = url::Host::parse(&host.to_lowercase()).unwrap().to_string();
        prop_assert_eq!(plain.host(), expected_host.as_str());
        prop_assert!(plain.host().bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()));
        if !host.is_ascii() {
            prop_assert!(plain.host().split('.').any(|l| l.starts_with("xn--")));
        }
        prop_assert_eq!(plain.port(), port.unwrap_or(if https { 443 } else { 80 }));
        prop_assert_eq!(plain.to_string(), format!("{scheme}://{expected_host}{port_text}"));
        prop_assert_eq!(Origin::parse(&plain.to_string()).unwrap(), plain);
    }

    /// The scheme's default port is left out, never written.
    #[test]
    fn default_ports_are_refused_when_written(https in any::<bool>(), host in host()) {
        let (scheme, port) = if https { ("https", 443) } else { ("http", 80) };
        let err = Origin::parse(&format!("{scheme}://{host}:{port}")).unwrap_err();
        prop_assert_eq!(err.code, "origin_default_port");
        let other = if https { 80 } else { 443 };
        let origin = Origin::parse(&format!("{scheme}://{host}:{other}")).unwrap();
        prop_assert_eq!(origin.port(), other);
    }

    /// Same-site (or same-origin) is an equivalence: reflexive, symmetric,
    /// transitive; ports never change it, and it needs the same scheme
    /// and registrable domain.
    #[test]
    fn same_site_is_an_equivalence_that_ignores_ports(
        hosts in prop::collection::vec(host(), 3),
        https in prop::collection::vec(any::<bool>(), 3),
        ports in prop::collection::vec(prop::option::of(1024u16..), 3),
    ) {
        let origins: Vec<Origin> = (0..3)
            .map(|i| {
                let scheme = if https[i] { "https" } else { "http" };
                let port = ports[i].map(|p| format!(":{p}")).unwrap_or_default();
                Origin::parse(&format!("{scheme}://{}{port}", hosts[i])).unwrap()
            })
            .collect();
        let same_site = |a: &Origin, b: &Origin| a.relation(b) != Relation::CrossSite;
        let [a, b, c] = [&origins[0], &origins[1], &origins[2]];
        prop_assert!(same_site(a, a));
        prop_assert_eq!(same_site(a, b), same_site(b, a));
        if same_site(a, b) && same_site(b, c) {
            prop_assert!(same_site(a, c));
        }
        prop_assert_eq!(
            same_site(a, b),
            a.scheme() == b.scheme() && a.registrable_domain() == b.registrable_domain()
        );
        let moved = Origin::parse(&format!(
            "{}://{}:{}",
            a.scheme().as_str(),
            a.host(),
            if a.port() == 8443 { 8444 } else { 8443 }
        ))
        .unwrap();
        prop_assert_eq!(moved.relation(a), Relation::SameSite);
        prop_assert_eq!(moved.relation(b) == Relation::CrossSite, a.relation(b) == Relation::CrossSite);
    }
}

// ----------------------------------------------------------------- tokens

const NOW: i64 = 1_800_000_000;

fn services() -> &'static [TokenService; 2] {
    static SERVICES: OnceLock<[TokenService; 2]> = OnceLock::new();
    SERVICES.get_or_init(|| {
        [TokenAlgorithm::EdDSA, TokenAlgorithm::HS256]
            .map(|a| TokenService::new(KeySet::ephemeral(a, NOW).unwrap(), 30, 5))
    })
}

fn issue(service: &TokenService, audience: &str, challenge: &str, return_to: &str) -> String {
    let request = TokenRequest {
        issuer: "account",
        audience,
        challenge,
        return_to,
    };
    service.issue(&request, NOW).unwrap().0
}

/// Every way of changing one byte of `token`: a different ASCII byte keeps
/// it a string, any other byte makes it invalid UTF-8 (which no HTTP layer
/// hands over; its lossy reading is tried instead).
fn assert_no_single_byte_change_verifies(service: &TokenService, token: &str, audience: &str) {
    let bytes = token.as_bytes();
    for at in 0..bytes.len() {
        for replacement in 0..=255u8 {
            if replacement == bytes[at] {
                continue;
            }
            let mut changed = bytes.to_vec();
            changed[at] = replacement;
            let text = String::from_utf8_lossy(&changed);
            assert!(
                service.verify(&text, audience, NOW).is_err(),
                "{:?} at {at} verifies",
                char::from(replacement)
            );
        }
    }
}

/// Exhaustively, for one token of each algorithm (EdDSA, then HS256).
#[test]
fn no_single_byte_change_verifies_either_algorithm() {
    for service in services() {
        let token = issue(
            service,
            "shop",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "/cart",
        );
        assert!(service.verify(&token, "shop", NOW).is_ok());
        assert_no_single_byte_change_verifies(service, &token, "shop");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every token the bridge signs verifies, for its audience, throughout
    /// its lifetime and leeway, with the claims it was issued with.
    #[test]
    fn every_issued_token_verifies(
        ed in any::<bool>(),
        audience in "[a-z0-9_.-]{1,64}",
        challenge in "[A-Za-z0-9_-]{43}",
        return_to in "/[ -~]{0,100}",
        offset in -5i64..=35,
    ) {
        let service = &services()[usize::from(!ed)];
        let request = TokenRequest { issuer: "account", audience: &audience, challenge: &challenge, return_to: &return_to };
        let (token, claims) = service.issue(&request, NOW).unwrap();
        prop_assert_eq!(service.verify(&token, &audience, NOW + offset), Ok(claims));
        prop_assert!(service.verify(&token, &audience, NOW + 36).is_err());
        let other = format!("{audience}x");
        prop_assert!(service.verify(&token, &other, NOW).is_err());
    }

    /// Changing any one byte of any token, to any other byte, fails.
    #[test]
    fn any_single_byte_change_fails(
        ed in any::<bool>(),
        return_to in "/[ -~]{0,60}",
        at in any::<prop::sample::Index>(),
        replacement in any::<u8>(),
    ) {
        let service = &services()[usize::from(!ed)];
        let token = issue(service, "shop", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", &return_to);
        let mut bytes = token.clone().into_bytes();
        let at = at.index(bytes.len());
        prop_assume!(bytes[at] != replacement);
        bytes[at] = replacement;
        let changed = String::from_utf8_lossy(&bytes);
        prop_assert!(service.verify(&changed, "shop", NOW).is_err(), "{} at {}", replacement, at);
    }
}
