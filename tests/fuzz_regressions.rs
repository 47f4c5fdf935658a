//! The fuzz targets' checks under plain `cargo test`: every input in the
//! committed corpora (`fuzz/corpus/<target>/`) and every input that once
//! crashed a target (`fuzz/regressions/<target>/`) is replayed through the
//! same function the fuzzer runs (`fuzz/src/lib.rs`), so a fixed finding
//! stays fixed without libFuzzer or a nightly compiler.
//!
//! `cargo test --test fuzz_regressions -- --ignored write_seed_corpora`
//! rewrites the hand-made seeds (valid tokens of the fixed fuzz keys, the
//! configurations of README.md, typical headers and bodies).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod checks;

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Runs `check` on every file under `fuzz/<kind>/<target>/`; returns how many.
fn replay(kind: &str, target: &str, check: fn(&[u8])) -> usize {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut count = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{} fails its check", path.display());
        count += 1;
    }
    count
}

macro_rules! replay_target {
    ($name:ident) => {
        #[test]
        fn $name() {
            let target = stringify!($name);
            let seeds = replay("corpus", target, checks::$name);
            replay("regressions", target, checks::$name);
            assert!(seeds > 0, "fuzz/corpus/{target} is empty");
        }
    };
}

replay_target!(token_verify);
replay_target!(return_to);
replay_target!(origin);
replay_target!(config);
replay_target!(cookie_header);
replay_target!(exchange_body);

// ------------------------------------------------------------ findings

/// `exchange_body`: serde reads a struct from a JSON array as well, so
/// `["token", "verifier", "from"]` passed for an exchange body.
#[test]
fn exchange_body_must_be_an_object() {
    use session_bridge::http::handshake::{ExchangeBodyError, parse_exchange_body};
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let array = format!(r#"["t", "{verifier}", "account"]"#);
    assert_eq!(
        parse_exchange_body(array.as_bytes()),
        Err(ExchangeBodyError::InvalidJson)
    );
    checks::exchange_body(b"[\"\",\"\"\n\n\n\n\n\n,\"\"]");
    let object = format!(r#" {{"token": "t", "verifier": "{verifier}", "from": "account"}}"#);
    assert!(parse_exchange_body(object.as_bytes()).is_ok());
}

/// `origin`: a host ending in dots was trimmed of all of them, and
/// `x.6..` became `x.6`, which does not parse again (a name ending in a
/// number is an IPv4 address).
#[test]
fn origin_hosts_keep_their_meaning_when_printed() {
    use session_bridge::topology::Origin;
    checks::origin(b"https://'.............5...........6..\nsplmh");
    for bad in [
        "https://a.1..",
        "https://a..b.example",
        "https://a;b.example",
    ] {
        assert_eq!(
            Origin::parse(bad).unwrap_err().code,
            "origin_invalid",
            "{bad}"
        );
    }
    let dotted = Origin::parse("https://Shop.Example.COM.").unwrap();
    assert_eq!(dotted.to_string(), "https://shop.example.com");
}

/// `return_to`: `..%3B` is not a dot segment to the validator, but is one
/// (`..;`) to a server that decodes the path once more.
#[test]
fn return_to_refuses_an_encoded_semicolon_in_the_path() {
    use session_bridge::flows::return_to::{ReturnToError, validate_return_to};
    checks::return_to(b"/app/..%3B/admin\n/app");
    assert_eq!(
        validate_return_to("/app/..%3B/admin", &["/app".to_owned()]),
        Err(ReturnToError::EncodedSeparator)
    );
}

// ------------------------------------------------------------ seed corpora

fn write_seeds(target: &str, seeds: &[Vec<u8>]) {
    let dir = fuzz_dir().join("corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    for seed in seeds {
        let digest = ring::digest::digest(&ring::digest::SHA256, seed);
        let name: String = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::write(dir.join(format!("seed-{name}")), seed).unwrap();
    }
}

fn with_mode(mode: u8, text: &str) -> Vec<u8> {
    let mut seed = vec![mode];
    seed.extend_from_slice(text.as_bytes());
    seed
}

/// The ```toml blocks of a Markdown file.
fn toml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```toml") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
#[ignore = "writes fuzz/corpus; run by hand when the seeds change"]
fn write_seed_corpora() {
    use session_bridge::token::TokenRequest;

    // Tokens of the fixed fuzz keys, for `shop`, at the fuzz clock.
    let mut tokens = Vec::new();
    for service in checks::services() {
        for (return_to, challenge) in [
            ("/cart", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
            ("/", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        ] {
            let request = TokenRequest {
                issuer: "account",
                audience: checks::AUDIENCE,
                challenge,
                return_to,
            };
            let (token, _) = service.issue(&request, checks::NOW).unwrap();
            tokens.push(with_mode(0, &token));
        }
    }
    tokens.push(with_mode(0, "eyJhbGciOiJub25lIiwidHlwIjoic2Irand0In0.e30."));
    tokens.push(vec![1, 0, 0, 1, 0, 0, 30, 3, b'a', b'b', b'c', 1, b'/']);
    tokens.push(vec![1, 1, 2, 250, 4, b'x', b'y', b'z', b'w', 10, 0, 20]);
    write_seeds("token_verify", &tokens);

    let return_to: Vec<Vec<u8>> = [
        "/cart\n/cart",
        "/app/x?y=1&z=%20\n/app\n/cart/",
        "/\n/",
        "/app/caf%C3%A9\n/app",
        "//evil.example/\n/",
        "/%2f%2fevil.example\n/",
        "/\\evil.example\n/",
        "/app/..;/admin\n/app",
        "/%252f%252fevil\n/",
        "/a/./b\n/a",
        "https://evil.example/\n/",
        "/bridge/issue?to=http%3A%2F%2Fshop.localhost%3A8080&return_to=%2F\n/bridge",
        "/apple\n/app",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    write_seeds("return_to", &return_to);

    let origins: Vec<Vec<u8>> = [
        "https://shop.example.com\nhttps://account.example.com",
        "HTTPS://Shop.Example.COM.\nhttps://shop.example.com",
        "https://bücher.example\nhttps://xn--bcher-kva.example",
        "http://shop.localhost:8080\nhttp://account.localhost:8080",
        "http://127.0.0.1:8080\nhttp://127.0.0.1:8081",
        "http://[::1]:8080\nhttps://[2001:db8::1]",
        "https://a.github.io\nhttps://b.github.io",
        "https://a.example.co.uk\nhttp://b.example.co.uk",
        "https://a.example.com:443\nhttps://a.example.com:8443",
        "https://user@a.example.com\nnull",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    write_seeds("origin", &origins);

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut configs = Vec::new();
    for file in ["README.md"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for block in toml_blocks(&text) {
            configs.push(with_mode(1, &block));
        }
    }
    let demo = session_bridge::config::demo_config("127.0.0.1:8080", 8080);
    let demo = toml::to_string(&demo).unwrap();
    configs.push(with_mode(1, &demo));
    configs.push(with_mode(0, &format!("TOKENS__TTL=20s\n{demo}")));
    configs.push(with_mode(0, &format!("SITES__0__ID=x\n{demo}")));
    write_seeds("config", &configs);

    let id = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let state = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM.account";
    let cookies = vec![
        with_mode(0, &format!("__Host-sb={id}")),
        with_mode(0, &format!("_ga=GA1.2.3; __Host-sb={id}; theme=dark")),
        with_mode(0, &format!("__Host-sb-state={state}\n__Host-sb={id}")),
        with_mode(0, &format!("nameless; __Host-sb=\"{id}\"; sb={id}")),
        with_mode(0, "__Host-sb=; __Host-sb=x; =y; ;;"),
        vec![1, 3, 10, 1, 0, 200, 2, 128, 3, 4],
    ];
    write_seeds("cookie_header", &cookies);

    let token = String::from_utf8_lossy(&tokens[0][1..]).into_owned();
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let bodies: Vec<Vec<u8>> = [
        serde_json::json!({"token": token, "verifier": verifier, "from": "https://account.example.com"}),
        serde_json::json!({"token": "x", "verifier": verifier, "from": "account"}),
        serde_json::json!({"token": "x", "verifier": "short", "from": "account"}),
        serde_json::json!({"token": "x", "verifier": verifier}),
        serde_json::json!({"token": "x", "verifier": verifier, "from": "a", "extra": 1}),
    ]
    .iter()
    .map(|v| v.to_string().into_bytes())
    .collect();
    write_seeds("exchange_body", &bodies);
}
