//! Binding a token to the browser that asked for it (PKCE S256, RFC 7636):
//! the receiving site keeps a random verifier in the browser; the token
//! carries its challenge. A token minted in another browser does not match.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

/// Length of a verifier and of a challenge: 32 bytes, base64url without padding.
pub const ENCODED_LEN: usize = 43;

/// 32 random bytes as base64url, from the system generator. `None` only if
/// the operating system's generator fails.
pub fn random_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).ok()?;
    Some(B64.encode(bytes))
}

/// `BASE64URL(SHA-256(verifier))`.
pub fn challenge_of(verifier: &str) -> String {
    B64.encode(digest::digest(&digest::SHA256, verifier.as_bytes()))
}

/// Whether `text` has the shape of a verifier or challenge.
pub fn is_well_formed(text: &str) -> bool {
    text.len() == ENCODED_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `verifier` hashes to `challenge`, compared in constant time
/// (`subtle`; only the lengths, public, may show in the timing).
pub fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    let computed = challenge_of(verifier);
    bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

/// Constant-time equality for secrets of public length.
pub fn secrets_equal(a: &str, b: &str) -> bool {
    secrets_equal_bytes(a.as_bytes(), b.as_bytes())
}

/// Constant-time equality of byte strings (`subtle`); only the lengths may leak.
pub fn secrets_equal_bytes(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

/// What `/bridge/start` leaves in the browser (`__Host-sb-state`): the
/// verifier and the site the hand-off must come from (mix-up defence).
#[derive(Clone, PartialEq, Eq)]
pub struct BridgeState {
    pub verifier: String,
    pub from_site: String,
}

impl std::fmt::Debug for BridgeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The verifier is a secret of the browser's; never print it.
        f.debug_struct("BridgeState")
            .field("from_site", &self.from_site)
            .finish_non_exhaustive()
    }
}

impl BridgeState {
    /// Cookie value: `<verifier>.<site id>` (a verifier never contains `.`).
    pub fn encode(&self) -> String {
        format!("{}.{}", self.verifier, self.from_site)
    }

    /// Reads a cookie value written by [`BridgeState::encode`].
    pub fn decode(value: &str) -> Option<Self> {
        let (verifier, from_site) = value.split_once('.')?;
        (is_well_formed(verifier) && !from_site.is_empty() && from_site.len() <= 64).then(|| Self {
            verifier: verifier.to_owned(),
            from_site: from_site.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_vector() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(
            challenge_of(verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(verifier_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!verifier_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"
        ));
    }

    #[test]
    fn state_round_trips_and_refuses_junk() {
        let state = BridgeState {
            verifier: random_token().unwrap(),
            from_site: "account".to_owned(),
        };
        assert_eq!(BridgeState::decode(&state.encode()), Some(state));
        for junk in ["", ".", "abc.account", &format!("{}.", "a".repeat(43))] {
            assert_eq!(BridgeState::decode(junk), None, "{junk}");
        }
    }
}
