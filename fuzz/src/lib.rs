//! The checks behind the fuzz targets, one function per target. Each takes
//! the fuzzer's bytes, runs them through the bridge's parser and asserts
//! what must hold for every input: a panic here is a finding.
//!
//! This file uses only crates the bridge itself depends on, so that
//! `tests/fuzz_regressions.rs` can include it and replay the committed
//! corpora and crash inputs under `cargo test`, without libFuzzer.

use session_bridge::config::{Config, TokenAlgorithm};
use session_bridge::flows::binding;
use session_bridge::flows::return_to::{validate_local_target, validate_return_to};
use session_bridge::http::handshake::{ExchangeBodyError, parse_exchange_body};
use session_bridge::http::request::{cookie_value, session_id_from_cookie_headers};
use session_bridge::store::SessionId;
use session_bridge::token::{BridgeClaims, KeySet, TOKEN_TYPE, TokenError, TokenService};
use session_bridge::topology::check::check;
use session_bridge::topology::{Origin, Relation, SameSite};
use std::borrow::Cow;
use std::sync::OnceLock;

/// The fuzz clock: tokens in the corpora were issued at this instant.
pub const NOW: i64 = 1_800_000_000;
/// Token lifetime and leeway of the fuzzed services (the defaults).
pub const TTL: u64 = 30;
pub const LEEWAY: i64 = 5;
/// The audience every corpus token is for.
pub const AUDIENCE: &str = "shop";
/// The fixed test keys' ids.
pub const ED_KID: &str = "fuzz-eddsa";
pub const HS_KID: &str = "fuzz-hs256";

/// Reads structure out of the fuzzer's bytes; past the end it reads zeros.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&first, rest)) => {
                self.data = rest;
                first
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// At most `max` bytes, the count taken from the input.
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let len = usize::from(self.byte()) % (max + 1);
        let len = len.min(self.data.len());
        let (taken, rest) = self.data.split_at(len);
        self.data = rest;
        taken
    }

    pub fn text(&mut self, max: usize) -> Cow<'a, str> {
        String::from_utf8_lossy(self.bytes(max))
    }

    pub fn pick<'b, T>(&mut self, items: &'b [T]) -> &'b T {
        &items[usize::from(self.byte()) % items.len()]
    }

    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

// ---------------------------------------------------------------- tokens

/// Fixed test keys (never used outside tests and fuzzing): an Ed25519 seed
/// and an HS256 secret, both public knowledge.
const ED_SEED: [u8; 32] = [0x5b; 32];
const HS_SECRET: [u8; 32] = [0xa7; 32];

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn key_texts() -> [(&'static str, String); 2] {
    let Ok(pair) = ring::signature::Ed25519KeyPair::from_seed_unchecked(&ED_SEED) else {
        panic!("the fixed Ed25519 seed is a key");
    };
    let public = ring::signature::KeyPair::public_key(&pair)
        .as_ref()
        .to_vec();
    let ed = serde_json::json!({
        "kty": "OKP", "crv": "Ed25519", "kid": ED_KID, "alg": "EdDSA",
        "x": b64(&public), "d": b64(&ED_SEED), "created_at": 1,
    });
    let hs = serde_json::json!({
        "kty": "oct", "kid": HS_KID, "alg": "HS256", "k": b64(&HS_SECRET), "created_at": 1,
    });
    [(ED_KID, ed.to_string()), (HS_KID, hs.to_string())]
}

/// Two services over the same two keys: one signs with EdDSA, one with
/// HS256; each verifies tokens of both.
pub fn services() -> &'static [TokenService; 2] {
    static SERVICES: OnceLock<[TokenService; 2]> = OnceLock::new();
    SERVICES.get_or_init(|| {
        let texts = key_texts();
        let entries: Vec<(&str, &str)> = texts.iter().map(|(k, t)| (*k, t.as_str())).collect();
        let make = |algorithm, kid| {
            let Ok(keys) = KeySet::from_jwk_texts(&entries, algorithm, Some(kid)) else {
                panic!("the fixed fuzz keys load");
            };
            TokenService::new(keys, TTL, LEEWAY as u64)
        };
        [
            make(TokenAlgorithm::EdDSA, ED_KID),
            make(TokenAlgorithm::HS256, HS_KID),
        ]
    })
}

/// What `verify` must say about `claims` at `now` for `audience`, from the
/// contract (DESIGN.md, "Data"): lifetime 1..=120 s, `nbf` not before
/// `iat`, a UUID-length `jti`, 5 s leeway either side, the audience exact.
fn expected_verdict(claims: &BridgeClaims, audience: &str, now: i64) -> Result<(), TokenError> {
    let lifetime = claims.exp.saturating_sub(claims.iat);
    if !(1..=120).contains(&lifetime) || claims.nbf < claims.iat || claims.jti.len() != 36 {
        return Err(TokenError::Malformed);
    }
    if now > claims.exp.saturating_add(LEEWAY) {
        return Err(TokenError::Expired);
    }
    if now.saturating_add(LEEWAY) < claims.nbf || now.saturating_add(LEEWAY) < claims.iat {
        return Err(TokenError::NotYetValid);
    }
    if claims.aud != audience {
        return Err(TokenError::WrongAudience);
    }
    Ok(())
}

/// An accepted token must be exactly the string the bridge would sign for
/// its claims: no second spelling of a valid token exists (no padding, no
/// non-canonical base64, no reordered JSON, no malleable signature).
fn assert_canonical(token: &str, claims: &BridgeClaims, audience: &str, now: i64) {
    assert_eq!(expected_verdict(claims, audience, now), Ok(()));
    let resigned: Vec<String> = services()
        .iter()
        .filter_map(|service| service.sign_claims(claims, TOKEN_TYPE).ok())
        .collect();
    assert!(
        resigned.iter().any(|t| t == token),
        "an accepted token is not the canonical signature of its claims: {token:?}"
    );
}

const AUDIENCES: [&str; 3] = ["shop", "account", "checkout"];

/// `token_verify`: the first byte picks raw bytes as a token (the corpus
/// holds valid tokens for libFuzzer to mutate) or a token signed from
/// fuzzer-chosen claims, then changed at fuzzer-chosen bytes.
pub fn token_verify(data: &[u8]) {
    let mut input = Input::new(data);
    match input.byte() % 2 {
        0 => {
            let token = String::from_utf8_lossy(input.rest());
            for service in services() {
                for audience in AUDIENCES {
                    if let Ok(claims) = service.verify(&token, audience, NOW) {
                        assert_canonical(&token, &claims, audience, NOW);
                    }
                }
            }
        }
        _ => signed_and_mutated(&mut input),
    }
}

fn signed_and_mutated(input: &mut Input<'_>) {
    let service = input.pick(services());
    let small = |input: &mut Input<'_>| i64::from(input.byte() as i8);
    let iat = NOW + small(input);
    let claims = BridgeClaims {
        iss: input.pick(&AUDIENCES).to_string(),
        aud: if input.byte() < 240 {
            input.pick(&AUDIENCES).to_string()
        } else {
            input.text(16).into_owned()
        },
        jti: if input.byte() < 240 {
            "0b7c1b3e-5d55-4c0e-9f3c-0a6d2f9e4b21".to_owned()
        } else {
            input.text(40).into_owned()
        },
        iat,
        nbf: iat + small(input) / 16,
        exp: iat + small(input),
        cch: input.text(48).into_owned(),
        rt: input.text(32).into_owned(),
    };
    let now = NOW + small(input) / 2;
    let audience = *input.pick(&AUDIENCES);
    let Ok(token) = service.sign_claims(&claims, TOKEN_TYPE) else {
        panic!("the fixed keys sign");
    };
    let verdict = service.verify(&token, audience, now);
    match expected_verdict(&claims, audience, now) {
        Ok(()) => assert_eq!(verdict, Ok(claims.clone()), "a valid token is refused"),
        Err(expected) => assert_eq!(verdict, Err(expected), "{claims:?} at {now}"),
    }
    // Any change to the string, of any byte to any byte, is refused (at
    // the verifying time the unchanged token passes, so only the change
    // can make it fail).
    let Ok(valid_now) = service.verify(&token, &claims.aud, iat) else {
        return;
    };
    let mut bytes = token.clone().into_bytes();
    for _ in 0..(input.byte() % 4) + 1 {
        let at = usize::from(input.u16()) % bytes.len();
        bytes[at] = input.byte();
    }
    let changed = String::from_utf8_lossy(&bytes);
    if changed != token {
        let result = service.verify(&changed, &claims.aud, iat);
        assert!(
            result.is_err(),
            "a changed token verifies: {changed:?} (from {token:?}, {valid_now:?})"
        );
    }
}

// ---------------------------------------------------------------- return_to

/// The check `[[sites]] return_paths` must pass at start (topology/build.rs).
pub fn is_configurable_return_path(path: &str) -> bool {
    path.starts_with('/') && !path.starts_with("//") && !path.contains(['\\', '?', '#', '%'])
}

/// `path` is `prefix` or below it, segment by segment.
fn is_under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// One round of percent-decoding, as a proxy or a framework might do.
fn percent_decode_once(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Where the browser is when it follows the redirect: any page of the site.
const SITE_PAGES: [&str; 3] = [
    "https://shop.example.com/bridge/accept?token=x",
    "https://shop.example.com:8443/a/b/c?d#e",
    "http://shop.localhost:8080/",
];

/// What must hold of every `return_to` the bridge accepts under `prefixes`.
pub fn assert_stays_on_site(raw: &str, prefixes: &[String]) {
    let path = raw.split_once('?').map_or(raw, |(path, _)| path);
    assert!(
        !raw.starts_with("//") && !raw.contains('\\') && !raw.contains('#'),
        "{raw:?}"
    );
    assert!(
        raw.bytes().all(|b| b.is_ascii_graphic()),
        "control, space or non-ASCII accepted: {raw:?}"
    );
    for page in SITE_PAGES {
        let Ok(base) = url::Url::parse(page) else {
            panic!("{page} parses");
        };
        let Ok(joined) = base.join(raw) else {
            panic!("an accepted return_to does not resolve: {raw:?}");
        };
        assert_eq!(joined.origin(), base.origin(), "{raw:?} leaves {page}");
        assert!(joined.username().is_empty() && joined.password().is_none());
        assert!(joined.fragment().is_none(), "{raw:?}");
        // The browser's path (dot segments resolved, characters escaped) is
        // under an allowed prefix as the browser spells that prefix.
        let under = prefixes.iter().any(|prefix| {
            base.join(prefix)
                .is_ok_and(|p| is_under(joined.path(), p.path()))
        });
        assert!(
            under,
            "{raw:?} resolves to {} outside {prefixes:?}",
            joined.path()
        );
    }
    // A server or proxy that decodes the path once more still sees a path
    // on this site, under the prefix, without a dot segment (`..;` counts:
    // Tomcat and Spring read it as `..`).
    let decoded = percent_decode_once(path);
    let Ok(decoded) = String::from_utf8(decoded) else {
        return; // not text once decoded: no separator either
    };
    assert!(
        !decoded.starts_with("//") && !decoded.contains('\\'),
        "{raw:?} decodes to {decoded:?}"
    );
    for segment in decoded.split('/') {
        let bare = segment.split(';').next().unwrap_or(segment);
        assert!(
            bare != "." && bare != "..",
            "{raw:?} decodes to a dot segment: {decoded:?}"
        );
    }
    assert!(
        prefixes.iter().any(|p| is_under(&decoded, p)),
        "{raw:?} decodes to {decoded:?} outside {prefixes:?}"
    );
}

/// `return_to`: lines of text; the first is the `return_to`, the others
/// the site's `return_paths`.
pub fn return_to(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let raw = lines.next().unwrap_or_default();
    let all: Vec<String> = lines.take(8).map(str::to_owned).collect();
    let configured: Vec<String> = all
        .iter()
        .filter(|p| is_configurable_return_path(p))
        .cloned()
        .collect();
    for prefixes in [configured, vec!["/".to_owned()]] {
        if let Ok(accepted) = validate_return_to(raw, &prefixes) {
            assert_eq!(accepted, raw);
            assert_stays_on_site(raw, &prefixes);
        }
    }
    // Whatever the list (even one `check` refuses), no panic.
    let _ = validate_return_to(raw, &all);
    if let Ok(target) = validate_local_target(raw) {
        for page in SITE_PAGES {
            let Ok(base) = url::Url::parse(page) else {
                panic!("{page} parses");
            };
            let joined = base.join(target);
            assert!(
                joined.is_ok_and(|j| j.origin() == base.origin()),
                "{target:?} leaves {page}"
            );
        }
    }
}

// ---------------------------------------------------------------- origins

/// What holds of every origin `Origin::parse` accepts.
pub fn assert_normalised(origin: &Origin) {
    let text = origin.to_string();
    assert_eq!(
        Origin::parse(&text).as_ref(),
        Ok(origin),
        "{text} does not parse back to itself"
    );
    let host = origin.host();
    assert!(!host.is_empty() && !host.ends_with('.'), "{text}");
    assert!(
        host.bytes()
            .all(|b| b.is_ascii() && !b.is_ascii_uppercase() && !b.is_ascii_whitespace()),
        "{text}: host not lower-case ASCII"
    );
    assert!(
        !text.ends_with(&format!(":{}", origin.scheme().default_port())),
        "{text}: default port written"
    );
    // The `url` crate serialises the same origin the same way (what a
    // browser sends in `Origin`).
    let Ok(url) = url::Url::parse(&text) else {
        panic!("{text} is not a URL");
    };
    assert_eq!(url.origin().ascii_serialization(), text);
    assert_eq!(url.port_or_known_default(), Some(origin.port()));
    assert_eq!(origin.relation(origin), Relation::SameOrigin);
}

/// `origin`: two lines, two origins; each parsed and checked, and their
/// relation checked both ways.
pub fn origin(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (a, b) = text.split_once('\n').unwrap_or((&text, ""));
    let a = Origin::parse(a);
    let b = Origin::parse(b);
    for origin in [&a, &b].into_iter().flatten() {
        assert_normalised(origin);
    }
    if let (Ok(a), Ok(b)) = (&a, &b) {
        let relation = a.relation(b);
        assert_eq!(relation, b.relation(a), "{a} / {b} not symmetric");
        assert_eq!(relation == Relation::SameOrigin, a == b, "{a} / {b}");
        if relation != Relation::CrossSite {
            assert_eq!(a.scheme(), b.scheme());
            assert_eq!(a.registrable_domain(), b.registrable_domain());
        }
        // The authority a browser writes in `Host` tells origins apart
        // within one scheme.
        if a.scheme() == b.scheme() {
            assert_eq!(a.authority() == b.authority(), a == b, "{a} / {b}");
        }
    }
}

// ---------------------------------------------------------------- config

/// `config`: TOML text through the configuration parser and the start-up
/// check (the first byte may make the second line an environment
/// override). Never panics; a topology that passes the check keeps the
/// contract's cookie and routing rules.
pub fn config(data: &[u8]) {
    let mut input = Input::new(data);
    let with_env = input.byte().is_multiple_of(4);
    let text = String::from_utf8_lossy(input.rest());
    let (env, toml_text) = match text.split_once('\n') {
        Some((line, rest)) if with_env => {
            let (name, value) = line.split_once('=').unwrap_or((line, ""));
            (
                vec![(format!("SESSION_BRIDGE__{name}"), value.to_owned())],
                rest,
            )
        }
        _ => (Vec::new(), &*text),
    };
    let Ok(config) = Config::from_toml(toml_text, &env) else {
        return;
    };
    check_config(&config);
}

/// The start-up check on a parsed configuration, and what a passing one promises.
pub fn check_config(config: &Config) {
    let (report, topology) = check(config);
    let Some(topology) = topology else {
        assert!(report.has_errors());
        return;
    };
    assert!(!report.has_errors());
    for site in topology.sites() {
        assert!(!site.origins.is_empty());
        for origin in &site.origins {
            assert_normalised(origin);
            let found = topology.site_for_host(&origin.authority());
            assert_eq!(found.map(|s| s.id.as_str()), Some(site.id.as_str()));
            let resolved = topology.resolve(&origin.to_string());
            assert_eq!(resolved.map(|(s, _)| s.id.as_str()), Some(site.id.as_str()));
        }
        assert_eq!(
            topology.resolve(&site.id).map(|(s, _)| s.id.as_str()),
            Some(site.id.as_str())
        );
        let cookie = &site.cookie;
        if cookie.same_site == SameSite::None {
            assert!(cookie.secure, "{}: SameSite=None without Secure", site.id);
        }
        if cookie.name.starts_with("__Host-") {
            assert!(cookie.domain.is_none() && cookie.secure, "{}", site.id);
        }
        if let Some(domain) = &cookie.domain {
            assert!(
                psl::suffix_str(domain) != Some(domain.as_str()),
                "{}: Domain={domain} is a public suffix",
                site.id
            );
            for origin in &site.origins {
                let host = origin.host();
                assert!(
                    host == domain || host.ends_with(&format!(".{domain}")),
                    "{}: Domain={domain} is not a parent of {host}",
                    site.id
                );
            }
        }
        for partner in &site.partners {
            assert!(topology.site(partner).is_some(), "{partner}");
        }
        for path in &site.return_paths {
            assert!(is_configurable_return_path(path), "{path:?}");
        }
    }
}

// ---------------------------------------------------------------- cookies

const COOKIE_NAMES: [&str; 4] = ["__Host-sb", "__Host-sb-state", "sb", "SB"];

/// `cookie_header`: the first byte picks raw header values (split at
/// newlines) or headers written from fuzzer-chosen pairs, whose expected
/// answer is known.
pub fn cookie_header(data: &[u8]) {
    let mut input = Input::new(data);
    match input.byte() % 2 {
        0 => {
            let rest = input.rest();
            let headers: Vec<&[u8]> = rest.split(|&b| b == b'\n').collect();
            for name in COOKIE_NAMES {
                let value = cookie_value(headers.iter().copied(), name);
                if let Some(value) = value {
                    assert!(!value.contains(';'), "{value:?}");
                    assert_eq!(value, value.trim_ascii(), "{value:?}");
                    let inside = headers.iter().any(|h| {
                        let range = h.as_ptr_range();
                        range.contains(&value.as_ptr()) || value.is_empty()
                    });
                    assert!(inside, "{value:?} is not a slice of the headers");
                }
                let id = session_id_from_cookie_headers(headers.iter().copied(), name);
                assert_eq!(
                    id.as_ref().map(SessionId::expose),
                    value.filter(|v| SessionId::parse(v).is_some())
                );
            }
        }
        _ => written_pairs(&mut input),
    }
}

fn written_pairs(input: &mut Input<'_>) {
    const VALUES: [&str; 4] = [
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM.account",
        "",
        "x=y",
    ];
    let count = usize::from(input.byte() % 8);
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut headers: Vec<String> = vec![String::new()];
    for _ in 0..count {
        let name = if input.byte() < 200 {
            (*input.pick(&COOKIE_NAMES)).to_owned()
        } else {
            // cookie names are tokens: no separators, no spaces.
            input
                .text(8)
                .chars()
                .filter(|c| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?={}".contains(*c))
                .collect()
        };
        let value: String = if input.byte() < 128 {
            (*input.pick(&VALUES)).to_owned()
        } else {
            input
                .text(48)
                .chars()
                .filter(|c| c.is_ascii_graphic() && *c != ';' && *c != '"')
                .collect()
        };
        let junk = input.byte();
        let Some(header) = headers.last_mut() else {
            continue;
        };
        if !header.is_empty() {
            header.push_str(if junk & 1 == 0 { "; " } else { ";" });
        }
        if junk & 2 != 0 {
            // A nameless cookie (`document.cookie = "x"`) ahead of the pair.
            header.push_str("nameless; ");
        }
        header.push_str(&format!("{name}={value}"));
        if junk & 4 != 0 {
            headers.push(String::new());
        }
        pairs.push((name, value));
    }
    let raw: Vec<&[u8]> = headers.iter().map(String::as_bytes).collect();
    for name in COOKIE_NAMES {
        let expected = pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str());
        assert_eq!(
            cookie_value(raw.iter().copied(), name),
            expected,
            "{name} in {headers:?}"
        );
    }
}

// ---------------------------------------------------------------- exchange

/// `exchange_body`: bytes as the body of `POST /bridge/exchange`.
pub fn exchange_body(data: &[u8]) {
    match parse_exchange_body(data) {
        Ok(body) => {
            assert!(binding::is_well_formed(&body.verifier));
            let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
                panic!("accepted a body that is not JSON");
            };
            let Some(object) = value.as_object() else {
                panic!("accepted a body that is not an object");
            };
            let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(keys, ["from", "token", "verifier"]);
            assert_eq!(object["token"].as_str(), Some(body.token.as_str()));
            assert_eq!(object["from"].as_str(), Some(body.from.as_str()));
            let again = serde_json::json!({
                "token": body.token, "verifier": body.verifier, "from": body.from,
            });
            assert_eq!(parse_exchange_body(again.to_string().as_bytes()), Ok(body));
        }
        Err(ExchangeBodyError::BadVerifier) => {
            let value = serde_json::from_slice::<serde_json::Value>(data);
            assert!(value.is_ok_and(|v| v.is_object()));
        }
        Err(ExchangeBodyError::InvalidJson) => {}
    }
}
