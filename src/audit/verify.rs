//! Checking an audit trail: every line's MAC against its predecessor in the
//! same node's chain, and that sequence numbers follow each other.

use super::line::{self, GENESIS, LineError, SignedLine};
use ring::hmac;
use std::collections::HashMap;
use std::fmt;

/// Where and why a trail fails verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based position among all lines given (across files, in order).
    pub line: usize,
    pub what: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.what)
    }
}

/// What an intact trail holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub lines: usize,
    /// Node name → last sequence number.
    pub nodes: HashMap<String, u64>,
}

/// Verifies `lines` in order. `partial_start` accepts a node's chain that
/// begins after seq 1 (a trimmed Redis Stream); for files, pass the rotated
/// files first instead.
pub fn verify_lines<'a>(
    key: &hmac::Key,
    lines: impl IntoIterator<Item = &'a str>,
    partial_start: bool,
) -> Result<Summary, Problem> {
    let mut chains: HashMap<String, (u64, [u8; 32])> = HashMap::new();
    let mut count = 0;
    for (index, text) in lines.into_iter().enumerate() {
        let number = index + 1;
        count = number;
        let problem = |what: String| Problem { line: number, what };
        let (parsed, _) = line::parse(text).map_err(|_| {
            problem("not an audit line (edited, truncated or inserted by hand)".to_owned())
        })?;
        let SignedLine { record, .. } = parsed.clone();
        let prev = match chains.get(&record.node) {
            // A stream write that timed out but was applied is resent: the
            // same line twice in a row is one line. Both MACs are read from
            // the trail (nothing secret is compared), in constant time all
            // the same, like every MAC comparison.
            Some((seq, mac))
                if partial_start
                    && record.seq == *seq
                    && crate::flows::binding::secrets_equal_bytes(&parsed.mac, mac) =>
            {
                continue;
            }
            Some((seq, mac)) => {
                if record.seq != seq + 1 {
                    return Err(problem(format!(
                        "node {} jumps from seq {seq} to {} (lines removed, reordered or inserted)",
                        record.node, record.seq
                    )));
                }
                *mac
            }
            None if record.seq == 1 => GENESIS,
            None if partial_start => {
                // The predecessor is gone (trimmed): take this line's MAC on
                // trust and check everything after it.
                let (parsed, _) =
                    line::parse(text).map_err(|_| problem("unreadable".to_owned()))?;
                chains.insert(record.node.clone(), (record.seq, parsed.mac));
                continue;
            }
            None => {
                return Err(problem(format!(
                    "node {} starts at seq {}: earlier lines are missing (verify rotated files first, oldest first)",
                    record.node, record.seq
                )));
            }
        };
        match line::verify(key, &prev, text) {
            Ok(verified) => {
                chains.insert(record.node.clone(), (record.seq, verified.mac));
            }
            Err(LineError::BadMac) => {
                return Err(problem(format!(
                    "MAC mismatch: this line (node {} seq {}) was changed, or a line before it was",
                    record.node, record.seq
                )));
            }
            Err(LineError::Malformed) => return Err(problem("not an audit line".to_owned())),
        }
    }
    Ok(Summary {
        lines: count,
        nodes: chains
            .into_iter()
            .map(|(node, (seq, _))| (node, seq))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::line::{AuditRecord, sign};
    use super::*;

    fn trail(key: &hmac::Key, count: u64) -> Vec<String> {
        let mut prev = GENESIS;
        (1..=count)
            .map(|seq| {
                let record = AuditRecord {
                    id: format!("id-{seq}"),
                    ts: "2026-11-25T12:00:00Z".into(),
                    seq,
                    node: "n1".into(),
                    event: "token.issued".into(),
                    site: "account".into(),
                    partner: None,
                    jti: None,
                    session_fp: None,
                    ip: None,
                    user_agent: None,
                    reason: None,
                    request_id: None,
                };
                let (text, mac) = sign(key, &prev, &record);
                prev = mac;
                text
            })
            .collect()
    }

    fn check(key: &hmac::Key, lines: &[String]) -> Result<Summary, Problem> {
        verify_lines(key, lines.iter().map(String::as_str), false)
    }

    #[test]
    fn intact_passes_and_each_tampering_fails_at_its_line() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"audit-key-0123456789");
        let lines = trail(&key, 5);
        assert_eq!(check(&key, &lines).unwrap().lines, 5);

        let mut edited = lines.clone();
        edited[2] = edited[2].replace("account", "acc0unt");
        assert_eq!(check(&key, &edited).unwrap_err().line, 3);

        let mut deleted = lines.clone();
        deleted.remove(1);
        assert_eq!(check(&key, &deleted).unwrap_err().line, 2);

        let mut swapped = lines.clone();
        swapped.swap(1, 2);
        assert_eq!(check(&key, &swapped).unwrap_err().line, 2);

        let mut inserted = lines.clone();
        inserted.insert(3, lines[3].clone());
        assert_eq!(check(&key, &inserted).unwrap_err().line, 5);

        let mut first_gone = lines.clone();
        first_gone.remove(0);
        assert_eq!(check(&key, &first_gone).unwrap_err().line, 1);
        assert!(
            verify_lines(&key, first_gone.iter().map(String::as_str), true).is_ok(),
            "a trimmed stream"
        );
    }
}
