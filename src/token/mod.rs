//! Bridge tokens: short-lived, signed, single-use JWTs that stand for "the
//! holder of session S on site A may join it on site B".
//!
//! The token never carries the session ID or user data: only who issued it
//! (`iss`), for whom (`aud`), its id (`jti`), times, the PKCE-style challenge
//! (`cch`) and where to go afterwards (`rt`, re-validated on accept).

mod keys;
mod provider;

pub use keys::{Key, KeyError, KeySet, generate_key_file};

use crate::config::TokenAlgorithm;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The `typ` header of every bridge token.
pub const TOKEN_TYPE: &str = "sb+jwt";
/// The `typ` header of back-channel logout tokens (OpenID Back-Channel
/// Logout 1.0 recommends `logout+jwt`); a bridge never accepts one as a
/// bridge token, since [`TokenService::verify`] requires [`TOKEN_TYPE`].
pub const LOGOUT_TOKEN_TYPE: &str = "logout+jwt";
/// No token may live longer than this, whatever the configuration says.
pub const MAX_TTL_SECS: i64 = 120;
/// Clock-skew leeway is capped at this.
pub const MAX_LEEWAY_SECS: i64 = 5;
/// Longer input is refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 4096;

/// The claims of a bridge token, exactly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeClaims {
    pub iss: String,
    pub aud: String,
    pub jti: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// `BASE64URL(SHA-256(verifier))` of the receiving browser.
    pub cch: String,
    /// The path on the receiving site to go to afterwards.
    pub rt: String,
}

/// Why a token was refused. Each has its own stable code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    BadAlgorithm,
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    WrongAudience,
    /// Signing failed (a key problem on our side).
    SigningFailed,
}

impl TokenError {
    pub fn code(self) -> &'static str {
        match self {
            Self::Malformed => "token_malformed",
            Self::BadAlgorithm => "token_bad_algorithm",
            Self::UnknownKey => "token_unknown_key",
            Self::BadSignature => "token_bad_signature",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::WrongAudience => "token_wrong_audience",
            Self::SigningFailed => "token_signing_failed",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "the token is not a well-formed bridge token",
            Self::BadAlgorithm => "the token's algorithm is not the one its key was made for",
            Self::UnknownKey => "the token names a key the bridge does not have",
            Self::BadSignature => "the token's signature does not verify",
            Self::Expired => "the token has expired",
            Self::NotYetValid => "the token is not valid yet",
            Self::WrongAudience => "the token was issued for another site",
            Self::SigningFailed => "the bridge could not sign a token",
        })
    }
}

impl std::error::Error for TokenError {}

/// What an issued token is for.
pub struct TokenRequest<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub challenge: &'a str,
    pub return_to: &'a str,
}

/// Signs and verifies bridge tokens with a key set and time limits.
#[derive(Clone, Debug)]
pub struct TokenService {
    keys: KeySet,
    ttl_secs: i64,
    leeway_secs: i64,
}

/// The header members we read; `jku`, `jwk`, `x5u`, `x5c` and the rest are ignored.
#[derive(Deserialize)]
struct SeenHeader {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

fn jwt_algorithm(algorithm: TokenAlgorithm) -> Algorithm {
    match algorithm {
        TokenAlgorithm::EdDSA => Algorithm::EdDSA,
        TokenAlgorithm::HS256 => Algorithm::HS256,
    }
}

impl TokenService {
    /// `ttl_secs` is clamped to 1..=120 and `leeway_secs` to 0..=5.
    pub fn new(keys: KeySet, ttl_secs: u64, leeway_secs: u64) -> Self {
        provider::install();
        Self {
            keys,
            ttl_secs: i64::try_from(ttl_secs)
                .unwrap_or(MAX_TTL_SECS)
                .clamp(1, MAX_TTL_SECS),
            leeway_secs: i64::try_from(leeway_secs)
                .unwrap_or(MAX_LEEWAY_SECS)
                .clamp(0, MAX_LEEWAY_SECS),
        }
    }

    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    pub fn leeway_secs(&self) -> i64 {
        self.leeway_secs
    }

    /// Signs a new token at `now` (Unix seconds). Returns the token and its claims.
    pub fn issue(
        &self,
        request: &TokenRequest<'_>,
        now: i64,
    ) -> Result<(String, BridgeClaims), TokenError> {
        let claims = BridgeClaims {
            iss: request.issuer.to_owned(),
            aud: request.audience.to_owned(),
            jti: uuid::Uuid::new_v4().to_string(),
            iat: now,
            nbf: now,
            exp: now + self.ttl_secs,
            cch: request.challenge.to_owned(),
            rt: request.return_to.to_owned(),
        };
        let key = self.keys.signing();
        let mut header = Header::new(jwt_algorithm(key.algorithm));
        header.typ = Some(TOKEN_TYPE.to_owned());
        header.kid = Some(key.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding)
            .map_err(|_| TokenError::SigningFailed)?;
        Ok((token, claims))
    }

    /// Signs arbitrary `claims` with the signing key, under the header
    /// `typ` (with `alg` and `kid` of the key). For the bridge's other JWTs,
    /// such as the back-channel logout token; bridge tokens use [`Self::issue`].
    pub fn sign_claims<T: Serialize>(&self, claims: &T, typ: &str) -> Result<String, TokenError> {
        let key = self.keys.signing();
        let mut header = Header::new(jwt_algorithm(key.algorithm));
        header.typ = Some(typ.to_owned());
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding).map_err(|_| TokenError::SigningFailed)
    }

    /// Checks a token's form, header, signature and time claims, and that it
    /// is for `audience`, at `now` (Unix seconds). The issuer, the binding
    /// and single use are the caller's to check.
    pub fn verify(
        &self,
        token: &str,
        audience: &str,
        now: i64,
    ) -> Result<BridgeClaims, TokenError> {
        if token.len() > MAX_TOKEN_LEN || token.split('.').count() != 3 {
            return Err(TokenError::Malformed);
        }
        let header_part = token.split('.').next().unwrap_or_default();
        let header_json = B64.decode(header_part).map_err(|_| TokenError::Malformed)?;
        let header: SeenHeader =
            serde_json::from_slice(&header_json).map_err(|_| TokenError::Malformed)?;
        if header.typ.as_deref() != Some(TOKEN_TYPE) {
            return Err(TokenError::Malformed);
        }
        // `none` and algorithms the bridge never uses are refused before any key is looked up.
        if header.alg != "EdDSA" && header.alg != "HS256" {
            return Err(TokenError::BadAlgorithm);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let key = self.keys.get(&kid).ok_or(TokenError::UnknownKey)?;
        // The algorithm is pinned by the key, never taken from the token:
        // `none`, and HS256 "signed" with a public key, stop here.
        let expected = jwt_algorithm(key.algorithm);
        if header.alg != key.algorithm.to_string() {
            return Err(TokenError::BadAlgorithm);
        }
        let mut validation = Validation::new(expected);
        // Time and audience are checked below against the caller's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        // The signature is checked by `jsonwebtoken` through the ring provider
        // of provider.rs: HMAC tags in constant time, Ed25519 with the public key.
        let data = jsonwebtoken::decode::<BridgeClaims>(token, &key.decoding, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::InvalidAlgorithm => TokenError::BadAlgorithm,
                _ => TokenError::Malformed,
            })?;
        let claims = data.claims;
        self.check_claims(&claims, audience, now)?;
        Ok(claims)
    }

    fn check_claims(
        &self,
        claims: &BridgeClaims,
        audience: &str,
        now: i64,
    ) -> Result<(), TokenError> {
        let lifetime = claims.exp.saturating_sub(claims.iat);
        if lifetime <= 0
            || lifetime > MAX_TTL_SECS
            || claims.nbf < claims.iat
            || claims.jti.len() != 36
        {
            return Err(TokenError::Malformed);
        }
        if now > claims.exp.saturating_add(self.leeway_secs) {
            return Err(TokenError::Expired);
        }
        if now.saturating_add(self.leeway_secs) < claims.nbf
            || now.saturating_add(self.leeway_secs) < claims.iat
        {
            return Err(TokenError::NotYetValid);
        }
        if claims.aud != audience {
            return Err(TokenError::WrongAudience);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
