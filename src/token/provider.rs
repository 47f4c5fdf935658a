//! A ring-backed `jsonwebtoken` crypto provider: one crypto stack for the
//! whole bridge, EdDSA and HS256 only, and parsed keys kept between calls.
//!
//! `jsonwebtoken` asks the process-wide provider for a signer or verifier on
//! every call, passing the raw key bytes. Deriving an Ed25519 key pair from
//! its seed costs about as much as a signature, so parsed key pairs are
//! cached by a digest of the key bytes; the cache is bounded (keys are few).

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind, Result};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use ring::{digest, hmac};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// At most this many parsed key pairs are kept; past it the cache restarts.
const MAX_CACHED_KEYS: usize = 64;

/// The provider; installed once per process by [`install`].
static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils::new_unimplemented(),
};

/// Installs the ring provider as `jsonwebtoken`'s process default. Safe to
/// call more than once.
pub fn install() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // Err means a provider is already installed; only this module installs one.
        let _ = PROVIDER.install_default();
    });
}

type KeyCache = Mutex<HashMap<[u8; 32], Arc<Ed25519KeyPair>>>;

fn ed25519_cache() -> &'static KeyCache {
    static CACHE: OnceLock<KeyCache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Ed25519 signing keys are carried in an `EncodingKey` as `seed || public` (64 bytes).
pub fn ed25519_key_material(seed: &[u8], public: &[u8]) -> Vec<u8> {
    [seed, public].concat()
}

fn ed25519_pair(material: &[u8]) -> Result<Arc<Ed25519KeyPair>> {
    let mut fingerprint = [0u8; 32];
    fingerprint.copy_from_slice(digest::digest(&digest::SHA256, material).as_ref());
    let mut cache = ed25519_cache().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(pair) = cache.get(&fingerprint) {
        return Ok(Arc::clone(pair));
    }
    if material.len() != 64 {
        return Err(ErrorKind::InvalidEddsaKey.into());
    }
    let (seed, public) = material.split_at(32);
    let pair = Arc::new(
        Ed25519KeyPair::from_seed_and_public_key(seed, public)
            .map_err(|_| Error::from(ErrorKind::InvalidEddsaKey))?,
    );
    if cache.len() >= MAX_CACHED_KEYS {
        cache.clear();
    }
    cache.insert(fingerprint, Arc::clone(&pair));
    Ok(pair)
}

struct EdSigner(Arc<Ed25519KeyPair>);

impl Signer<Vec<u8>> for EdSigner {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        Ok(self.0.sign(msg).as_ref().to_vec())
    }
}

impl JwtSigner for EdSigner {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

struct EdVerifier(Vec<u8>);

impl Verifier<Vec<u8>> for EdVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        // ring checks the signature with the public key only: there is no
        // secret to leak through timing (and it refuses non-canonical `S`).
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(msg, signature)
            .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for EdVerifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

struct Hs256(hmac::Key);

impl Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        Ok(hmac::sign(&self.0, msg).as_ref().to_vec())
    }
}

impl Verifier<Vec<u8>> for Hs256 {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        // ring recomputes the tag and compares it in constant time, never
        // with `==`.
        hmac::verify(&self.0, msg, signature).map_err(|_| signature::Error::new())
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

fn new_signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    match algorithm {
        Algorithm::EdDSA => Ok(Box::new(EdSigner(ed25519_pair(key.as_bytes())?))),
        Algorithm::HS256 => Ok(Box::new(Hs256(hmac::Key::new(
            hmac::HMAC_SHA256,
            key.as_bytes(),
        )))),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

fn new_verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    let bytes = key.try_get_as_bytes()?;
    match algorithm {
        Algorithm::EdDSA => Ok(Box::new(EdVerifier(bytes.to_vec()))),
        Algorithm::HS256 => Ok(Box::new(Hs256(hmac::Key::new(hmac::HMAC_SHA256, bytes)))),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

/// The public half of an Ed25519 seed.
pub fn ed25519_public_from_seed(seed: &[u8]) -> Option<Vec<u8>> {
    Ed25519KeyPair::from_seed_unchecked(seed)
        .ok()
        .map(|pair| pair.public_key().as_ref().to_vec())
}
