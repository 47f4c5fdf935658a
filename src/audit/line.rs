//! One audit line and the MAC chain that makes deletion, editing,
//! reordering and insertion detectable.
//!
//! A line is a JSON object with the fields in a fixed order, the last being
//! `mac`. The MAC covers the line's bytes up to (not including) `,"mac":`,
//! closed with `}`, chained to the previous line of the same node:
//! `mac = HMAC-SHA256(key, prev_mac || signed_bytes)`, hex. A node's first
//! line chains to 32 zero bytes. JSON string escaping means no field can
//! carry a newline or a quote: attacker text cannot forge a line.

use ring::hmac;
use serde::{Deserialize, Serialize};

/// The fields of a line, in their order on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// UUID v7.
    pub id: String,
    /// UTC, RFC 3339.
    pub ts: String,
    /// Position in this node's chain, from 1.
    pub seq: u64,
    pub node: String,
    pub event: String,
    pub site: String,
    pub partner: Option<String>,
    pub jti: Option<String>,
    /// Keyed fingerprint of the session ID.
    pub session_fp: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub reason: Option<String>,
    pub request_id: Option<String>,
}

/// A parsed line with its MAC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedLine {
    pub record: AuditRecord,
    pub mac: [u8; 32],
}

/// The MAC of the chain before a node's first line.
pub const GENESIS: [u8; 32] = [0; 32];

const MAC_FIELD: &str = ",\"mac\":\"";

fn chain_mac(key: &hmac::Key, prev: &[u8; 32], signed: &[u8]) -> [u8; 32] {
    let mut context = hmac::Context::with_key(key);
    context.update(prev);
    context.update(signed);
    let mut mac = [0u8; 32];
    mac.copy_from_slice(context.sign().as_ref());
    mac
}

/// Lower-case hex, without a formatter call or an allocation per byte (it
/// runs for every audit line and every session fingerprint).
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Serialises `record` as a line chained to `prev` (no trailing newline).
pub fn sign(key: &hmac::Key, prev: &[u8; 32], record: &AuditRecord) -> (String, [u8; 32]) {
    // Serialising a struct of strings and integers cannot fail.
    let signed = serde_json::to_string(record).unwrap_or_default();
    let mac = chain_mac(key, prev, signed.as_bytes());
    let body = signed.strip_suffix('}').unwrap_or(&signed);
    (format!("{body}{MAC_FIELD}{}\"}}", hex(&mac)), mac)
}

/// Why a line does not verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineError {
    /// Not a line this format produces.
    Malformed,
    /// The MAC does not match its content and predecessor.
    BadMac,
}

/// Parses a line without checking its MAC.
pub fn parse(line: &str) -> Result<(SignedLine, &str), LineError> {
    let at = line.rfind(MAC_FIELD).ok_or(LineError::Malformed)?;
    let mac_text = line[at + MAC_FIELD.len()..]
        .strip_suffix("\"}")
        .ok_or(LineError::Malformed)?;
    let mac = unhex(mac_text).ok_or(LineError::Malformed)?;
    let signed = &line[..at];
    let record: AuditRecord =
        serde_json::from_str(&format!("{signed}}}")).map_err(|_| LineError::Malformed)?;
    Ok((SignedLine { record, mac }, signed))
}

/// Parses a line and checks its MAC against `prev`.
pub fn verify(key: &hmac::Key, prev: &[u8; 32], line: &str) -> Result<SignedLine, LineError> {
    let (parsed, signed) = parse(line)?;
    let expected = chain_mac(key, prev, format!("{signed}}}").as_bytes());
    // Constant-time comparison of the tags (`subtle`, via binding.rs).
    if crate::flows::binding::secrets_equal_bytes(&expected, &parsed.mac) {
        Ok(parsed)
    } else {
        Err(LineError::BadMac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, reason: &str) -> AuditRecord {
        AuditRecord {
            id: "0190f0c4-0000-7000-8000-000000000000".into(),
            ts: "2026-11-25T12:00:00Z".into(),
            seq,
            node: "n1".into(),
            event: "token.issued".into(),
            site: "account".into(),
            partner: Some("shop".into()),
            jti: None,
            session_fp: None,
            ip: None,
            user_agent: Some(reason.into()),
            reason: Some(reason.into()),
            request_id: None,
        }
    }

    #[test]
    fn hex_is_lower_case_and_round_trips() {
        assert_eq!(hex(&[0x00, 0x01, 0xab, 0xff]), "0001abff");
        let bytes: [u8; 32] = std::array::from_fn(|i| (i * 37) as u8);
        let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex(&bytes), expected);
        assert_eq!(unhex(&hex(&bytes)), Some(bytes));
    }

    #[test]
    fn lines_chain_and_verify() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"k");
        let (first, mac1) = sign(&key, &GENESIS, &record(1, "a"));
        let (second, _) = sign(&key, &mac1, &record(2, "b"));
        assert!(first.ends_with("\"}") && first.contains(",\"mac\":\""));
        assert_eq!(verify(&key, &GENESIS, &first).unwrap().record.seq, 1);
        assert!(verify(&key, &mac1, &second).is_ok());
        assert_eq!(
            verify(&key, &GENESIS, &second),
            Err(LineError::BadMac),
            "wrong predecessor"
        );
        let edited = first.replace("\"account\"", "\"acc0unt\"");
        assert_eq!(verify(&key, &GENESIS, &edited), Err(LineError::BadMac));
        let other_key = hmac::Key::new(hmac::HMAC_SHA256, b"other");
        assert_eq!(verify(&other_key, &GENESIS, &first), Err(LineError::BadMac));
    }

    #[test]
    fn attacker_text_cannot_break_the_line() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"k");
        let evil = "x\"}\n{\"id\":\"forged\",\"mac\":\"00\"}\r\n\u{2028}";
        let (line, _) = sign(&key, &GENESIS, &record(1, evil));
        assert!(!line.contains('\n') && !line.contains('\r'));
        let parsed = verify(&key, &GENESIS, &line).unwrap();
        assert_eq!(parsed.record.reason.as_deref(), Some(evil));
    }
}
