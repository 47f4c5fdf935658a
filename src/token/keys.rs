//! Signing keys: one JWK (RFC 7517) file per key in `keys_dir`, named
//! `<kid>.json`, private part included. One key signs; all verify.

use super::provider::{ed25519_key_material, ed25519_public_from_seed};
use crate::config::TokenAlgorithm;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{DecodingKey, EncodingKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the keys could not be loaded or made. Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    Io { path: PathBuf, reason: String },
    Invalid { path: PathBuf, reason: String },
    NoSigningKey(String),
}

impl KeyError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Io { .. } => "keys_unreadable",
            Self::Invalid { .. } => "key_invalid",
            Self::NoSigningKey(_) => "no_signing_key",
        }
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, reason } => write!(f, "{}: {reason}", path.display()),
            Self::Invalid { path, reason } => {
                write!(f, "{}: not a usable key: {reason}", path.display())
            }
            Self::NoSigningKey(why) => write!(f, "no signing key: {why}"),
        }
    }
}

impl std::error::Error for KeyError {}

/// A JWK file as stored.
#[derive(Serialize, Deserialize)]
struct JwkFile {
    kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alg: Option<String>,
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    use_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    d: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<String>,
    /// Unix seconds; orders keys so the newest signs.
    #[serde(default)]
    created_at: i64,
}

/// One loaded key.
pub struct Key {
    pub kid: String,
    pub algorithm: TokenAlgorithm,
    pub created_at: i64,
    pub(super) encoding: EncodingKey,
    pub(super) decoding: DecodingKey,
    /// The public JWK (EdDSA only; shared secrets are never published).
    pub public_jwk: Option<serde_json::Value>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({}, {})", self.kid, self.algorithm)
    }
}

/// The keys that verify, and the one that signs.
#[derive(Clone, Debug)]
pub struct KeySet {
    by_kid: HashMap<String, Arc<Key>>,
    signing: Arc<Key>,
}

fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= 64
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn invalid(path: &Path, reason: impl Into<String>) -> KeyError {
    KeyError::Invalid {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn decode_part(path: &Path, name: &str, value: Option<&String>) -> Result<Vec<u8>, KeyError> {
    let value = value.ok_or_else(|| invalid(path, format!("member `{name}` is missing")))?;
    B64.decode(value)
        .map_err(|_| invalid(path, format!("member `{name}` is not base64url")))
}

fn parse_key(path: &Path, kid: &str, text: &str) -> Result<Key, KeyError> {
    let jwk: JwkFile = serde_json::from_str(text).map_err(|e| invalid(path, e.to_string()))?;
    if jwk.kid.as_deref().is_some_and(|k| k != kid) {
        return Err(invalid(path, "`kid` differs from the file name"));
    }
    match (jwk.kty.as_str(), jwk.alg.as_deref()) {
        ("OKP", None | Some("EdDSA")) => {
            if jwk.crv.as_deref() != Some("Ed25519") {
                return Err(invalid(path, "OKP keys must be Ed25519"));
            }
            let seed = decode_part(path, "d", jwk.d.as_ref())?;
            let public = decode_part(path, "x", jwk.x.as_ref())?;
            if seed.len() != 32
                || ed25519_public_from_seed(&seed).as_deref() != Some(public.as_slice())
            {
                return Err(invalid(path, "`d` and `x` are not one Ed25519 key pair"));
            }
            let public_jwk = serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA", "use": "sig",
                "x": B64.encode(&public),
            });
            Ok(Key {
                kid: kid.to_owned(),
                algorithm: TokenAlgorithm::EdDSA,
                created_at: jwk.created_at,
                encoding: EncodingKey::from_ed_der(&ed25519_key_material(&seed, &public)),
                decoding: DecodingKey::from_ed_der(&public),
                public_jwk: Some(public_jwk),
            })
        }
        ("oct", None | Some("HS256")) => {
            let secret = decode_part(path, "k", jwk.k.as_ref())?;
            if secret.len() < 32 {
                return Err(invalid(path, "an HS256 secret needs at least 32 bytes"));
            }
            Ok(Key {
                kid: kid.to_owned(),
                algorithm: TokenAlgorithm::HS256,
                created_at: jwk.created_at,
                encoding: EncodingKey::from_secret(&secret),
                decoding: DecodingKey::from_secret(&secret),
                public_jwk: None,
            })
        }
        (kty, alg) => Err(invalid(
            path,
            format!("unsupported key type {kty} / alg {alg:?} (use OKP Ed25519 or oct HS256)"),
        )),
    }
}

impl KeySet {
    /// Loads every `<kid>.json` in `dir`. The signing key is `signing_kid`
    /// when given, else the newest key of `algorithm`.
    pub fn load(
        dir: &Path,
        algorithm: TokenAlgorithm,
        signing_kid: Option<&str>,
    ) -> Result<Self, KeyError> {
        let keys = read_dir_keys(dir)?;
        Self::from_keys(keys, algorithm, signing_kid)
    }

    /// Like [`KeySet::load`], but first makes a key of `algorithm` when `dir`
    /// is missing or holds no key at all (first start).
    pub fn load_or_create(
        dir: &Path,
        algorithm: TokenAlgorithm,
        signing_kid: Option<&str>,
        now: i64,
    ) -> Result<Self, KeyError> {
        if read_dir_keys(dir)
            .map(|keys| keys.is_empty())
            .unwrap_or(true)
        {
            generate_key_file(dir, algorithm, now)?;
        }
        Self::load(dir, algorithm, signing_kid)
    }

    fn from_keys(
        keys: Vec<Key>,
        algorithm: TokenAlgorithm,
        signing_kid: Option<&str>,
    ) -> Result<Self, KeyError> {
        let by_kid: HashMap<String, Arc<Key>> = keys
            .into_iter()
            .map(|k| (k.kid.clone(), Arc::new(k)))
            .collect();
        let signing = match signing_kid {
            Some(kid) => by_kid.get(kid).cloned().ok_or_else(|| {
                KeyError::NoSigningKey(format!("signing_kid `{kid}` is not in the keys directory"))
            })?,
            None => by_kid
                .values()
                .filter(|k| k.algorithm == algorithm)
                .max_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)))
                .cloned()
                .ok_or_else(|| {
                    KeyError::NoSigningKey(format!("no {algorithm} key in the keys directory"))
                })?,
        };
        if signing.algorithm != algorithm {
            return Err(KeyError::NoSigningKey(format!(
                "key `{}` is {}, but [tokens] algorithm is {algorithm}",
                signing.kid, signing.algorithm
            )));
        }
        Ok(Self { by_kid, signing })
    }

    /// An in-memory set with one fresh key (tests and throwaway runs).
    pub fn ephemeral(algorithm: TokenAlgorithm, now: i64) -> Result<Self, KeyError> {
        let (kid, jwk) = new_jwk(algorithm, now)?;
        let text = serde_json::to_string(&jwk)
            .map_err(|e| invalid(Path::new("<memory>"), e.to_string()))?;
        let key = parse_key(Path::new("<memory>"), &kid, &text)?;
        Self::from_keys(vec![key], algorithm, None)
    }

    /// A set from JWK texts given as `(kid, json)` pairs, checked exactly as
    /// [`KeySet::load`] checks `<kid>.json` files (for fixed test keys, such
    /// as the fuzz targets' own).
    pub fn from_jwk_texts(
        entries: &[(&str, &str)],
        algorithm: TokenAlgorithm,
        signing_kid: Option<&str>,
    ) -> Result<Self, KeyError> {
        let keys = entries
            .iter()
            .map(|(kid, text)| {
                let path = PathBuf::from(format!("<memory>/{kid}.json"));
                if !valid_kid(kid) {
                    return Err(invalid(&path, "a kid uses A-Z, a-z, 0-9, - and _"));
                }
                parse_key(&path, kid, text)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_keys(keys, algorithm, signing_kid)
    }

    pub fn signing(&self) -> &Arc<Key> {
        &self.signing
    }

    pub fn get(&self, kid: &str) -> Option<&Arc<Key>> {
        self.by_kid.get(kid)
    }

    /// The JWK Set of public keys (`/bridge/jwks.json`); shared secrets are left out.
    pub fn public_jwks(&self) -> serde_json::Value {
        let mut keys: Vec<&Arc<Key>> = self.by_kid.values().collect();
        keys.sort_by(|a, b| (b.created_at, &b.kid).cmp(&(a.created_at, &a.kid)));
        let keys: Vec<&serde_json::Value> =
            keys.iter().filter_map(|k| k.public_jwk.as_ref()).collect();
        serde_json::json!({ "keys": keys })
    }
}

fn read_dir_keys(dir: &Path) -> Result<Vec<Key>, KeyError> {
    let io = |e: std::io::Error| KeyError::Io {
        path: dir.to_owned(),
        reason: e.to_string(),
    };
    let mut keys = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let kid = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        if !valid_kid(&kid) {
            return Err(invalid(
                &path,
                "file names are `<kid>.json` with a kid of A-Z, a-z, 0-9, - and _",
            ));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| KeyError::Io {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        keys.push(parse_key(&path, &kid, &text)?);
    }
    Ok(keys)
}

fn random_bytes(len: usize) -> Result<Vec<u8>, KeyError> {
    let mut bytes = vec![0u8; len];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| KeyError::NoSigningKey("the system random generator failed".to_owned()))?;
    Ok(bytes)
}

fn new_jwk(algorithm: TokenAlgorithm, now: i64) -> Result<(String, JwkFile), KeyError> {
    let date = time::OffsetDateTime::from_unix_timestamp(now)
        .map(|t| format!("{:04}{:02}{:02}", t.year(), u8::from(t.month()), t.day()))
        .unwrap_or_default();
    let kid = format!("{date}-{}", B64.encode(random_bytes(6)?));
    let jwk = match algorithm {
        TokenAlgorithm::EdDSA => {
            let seed = random_bytes(32)?;
            let public = ed25519_public_from_seed(&seed).ok_or_else(|| {
                KeyError::NoSigningKey("Ed25519 key generation failed".to_owned())
            })?;
            JwkFile {
                kty: "OKP".to_owned(),
                crv: Some("Ed25519".to_owned()),
                kid: Some(kid.clone()),
                alg: Some("EdDSA".to_owned()),
                use_: Some("sig".to_owned()),
                x: Some(B64.encode(public)),
                d: Some(B64.encode(seed)),
                k: None,
                created_at: now,
            }
        }
        TokenAlgorithm::HS256 => JwkFile {
            kty: "oct".to_owned(),
            crv: None,
            kid: Some(kid.clone()),
            alg: Some("HS256".to_owned()),
            use_: Some("sig".to_owned()),
            x: None,
            d: None,
            k: Some(B64.encode(random_bytes(32)?)),
            created_at: now,
        },
    };
    Ok((kid, jwk))
}

/// Makes a new key of `algorithm` in `dir` (created if missing, file mode
/// 0600) and returns its kid. Being the newest, it becomes the signing key.
pub fn generate_key_file(
    dir: &Path,
    algorithm: TokenAlgorithm,
    now: i64,
) -> Result<String, KeyError> {
    let (kid, jwk) = new_jwk(algorithm, now)?;
    let path = dir.join(format!("{kid}.json"));
    let io = |e: std::io::Error| KeyError::Io {
        path: path.clone(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let text = serde_json::to_string_pretty(&jwk).map_err(|e| invalid(&path, e.to_string()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(io)?;
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(io)?;
    Ok(kid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_and_the_newest_signs() {
        let dir = tempfile::tempdir().unwrap();
        let old = generate_key_file(dir.path(), TokenAlgorithm::EdDSA, 1_700_000_000).unwrap();
        let new = generate_key_file(dir.path(), TokenAlgorithm::EdDSA, 1_700_000_100).unwrap();
        generate_key_file(dir.path(), TokenAlgorithm::HS256, 1_700_000_200).unwrap();
        let keys = KeySet::load(dir.path(), TokenAlgorithm::EdDSA, None).unwrap();
        assert_eq!(keys.signing().kid, new);
        assert!(keys.get(&old).is_some());
        let jwks = keys.public_jwks();
        let published = jwks["keys"].as_array().unwrap();
        assert_eq!(published.len(), 2, "oct keys are never published");
        assert!(published.iter().all(|k| k.get("d").is_none()));
        let pinned = KeySet::load(dir.path(), TokenAlgorithm::EdDSA, Some(&old)).unwrap();
        assert_eq!(pinned.signing().kid, old);
    }

    #[test]
    fn a_mismatched_pair_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let kid = generate_key_file(dir.path(), TokenAlgorithm::EdDSA, 1).unwrap();
        let path = dir.path().join(format!("{kid}.json"));
        let mut jwk: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        jwk["x"] = serde_json::Value::String(B64.encode([7u8; 32]));
        std::fs::write(&path, jwk.to_string()).unwrap();
        let err = KeySet::load(dir.path(), TokenAlgorithm::EdDSA, None).unwrap_err();
        assert_eq!(err.code(), "key_invalid");
    }

    #[test]
    fn first_start_makes_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys =
            KeySet::load_or_create(&dir.path().join("k"), TokenAlgorithm::HS256, None, 5).unwrap();
        assert_eq!(keys.signing().algorithm, TokenAlgorithm::HS256);
        assert_eq!(keys.public_jwks()["keys"].as_array().unwrap().len(), 0);
    }
}
