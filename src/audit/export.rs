//! Exporting audit records for a SIEM: JSON lines, CSV or CEF, filtered.

use super::line::{self, AuditRecord};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
    Cef,
}

/// Which records to export.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    /// Exact name (`token.replayed`) or a prefix ending in `.` (`token.`).
    pub event: Option<String>,
    pub site: Option<String>,
    pub partner: Option<String>,
    pub jti: Option<String>,
    pub session_fp: Option<String>,
}

impl Filter {
    pub fn matches(&self, record: &AuditRecord) -> bool {
        let ts = OffsetDateTime::parse(&record.ts, &Rfc3339).ok();
        let event_ok = self.event.as_ref().is_none_or(|event| {
            if event.ends_with('.') {
                record.event.starts_with(event.as_str())
            } else {
                record.event == *event
            }
        });
        let same = |wanted: &Option<String>, have: &Option<String>| {
            wanted
                .as_ref()
                .is_none_or(|w| have.as_deref() == Some(w.as_str()))
        };
        self.since
            .is_none_or(|since| ts.is_some_and(|ts| ts >= since))
            && self
                .until
                .is_none_or(|until| ts.is_some_and(|ts| ts < until))
            && event_ok
            && self.site.as_ref().is_none_or(|site| record.site == *site)
            && same(&self.partner, &record.partner)
            && same(&self.jti, &record.jti)
            && same(&self.session_fp, &record.session_fp)
    }
}

/// The records of `lines` that match, in order (unreadable lines skipped).
pub fn select<'a>(lines: impl IntoIterator<Item = &'a str>, filter: &Filter) -> Vec<AuditRecord> {
    lines
        .into_iter()
        .filter_map(|text| line::parse(text).ok().map(|(parsed, _)| parsed.record))
        .filter(|record| filter.matches(record))
        .collect()
}

pub const CSV_HEADER: &str =
    "id,ts,seq,node,event,site,partner,jti,session_fp,ip,user_agent,reason,request_id";

fn fields(record: &AuditRecord) -> [String; 13] {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    [
        record.id.clone(),
        record.ts.clone(),
        record.seq.to_string(),
        record.node.clone(),
        record.event.clone(),
        record.site.clone(),
        opt(&record.partner),
        opt(&record.jti),
        opt(&record.session_fp),
        opt(&record.ip),
        opt(&record.user_agent),
        opt(&record.reason),
        opt(&record.request_id),
    ]
}

/// One CSV cell: quoted, and defused against spreadsheet formulas
/// (a user agent such as `=HYPERLINK(...)` must stay text).
fn csv_cell(value: &str) -> String {
    let defused = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    format!("\"{}\"", defused.replace('"', "\"\""))
}

fn cef_header(value: &str) -> String {
    value.replace('\\', "\\\\").replace('|', "\\|")
}

fn cef_extension(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// How serious an event is for a SIEM (CEF 0–10).
fn severity(event: &str) -> u8 {
    match event {
        "token.replayed" => 9,
        "session.revoked" => 7,
        "token.rejected" | "exchange.rejected" | "frame.refused" | "redirect.refused" => 5,
        "logout.backchannel_failed" | "rate.limited" => 4,
        _ => 2,
    }
}

/// Renders one record.
pub fn render(record: &AuditRecord, format: Format) -> String {
    match format {
        Format::Jsonl => serde_json::to_string(record).unwrap_or_default(),
        Format::Csv => fields(record)
            .iter()
            .map(|f| csv_cell(f))
            .collect::<Vec<_>>()
            .join(","),
        Format::Cef => {
            let millis = OffsetDateTime::parse(&record.ts, &Rfc3339)
                .map(|t| t.unix_timestamp_nanos() / 1_000_000)
                .unwrap_or_default();
            let mut extension = vec![
                format!("rt={millis}"),
                format!("externalId={}", cef_extension(&record.id)),
                format!("cs1Label=site cs1={}", cef_extension(&record.site)),
                format!("dvchost={}", cef_extension(&record.node)),
                format!("cn1Label=seq cn1={}", record.seq),
            ];
            let optional = [
                ("cs2Label=partner cs2", &record.partner),
                ("cs3Label=jti cs3", &record.jti),
                ("cs4Label=session_fp cs4", &record.session_fp),
                ("src", &record.ip),
                ("requestClientApplication", &record.user_agent),
                ("reason", &record.reason),
                ("cs5Label=request_id cs5", &record.request_id),
            ];
            for (name, value) in optional {
                if let Some(value) = value {
                    extension.push(format!("{name}={}", cef_extension(value)));
                }
            }
            format!(
                "CEF:0|session-bridge|session-bridge|{}|{}|{}|{}|{}",
                env!("CARGO_PKG_VERSION"),
                cef_header(&record.event),
                cef_header(&record.event),
                severity(&record.event),
                extension.join(" ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ua: &str) -> AuditRecord {
        AuditRecord {
            id: "i".into(),
            ts: "2026-11-25T12:00:00Z".into(),
            seq: 1,
            node: "n".into(),
            event: "token.replayed".into(),
            site: "shop".into(),
            partner: Some("account".into()),
            jti: None,
            session_fp: None,
            ip: Some("127.0.0.1".into()),
            user_agent: Some(ua.into()),
            reason: None,
            request_id: None,
        }
    }

    #[test]
    fn csv_defuses_formulas_and_quotes() {
        let row = render(&record("=HYPERLINK(\"x\")"), Format::Csv);
        assert!(row.contains("\"'=HYPERLINK(\"\"x\"\")\""), "{row}");
    }

    #[test]
    fn cef_escapes_separators() {
        let row = render(&record("a=b|c\nd"), Format::Cef);
        assert!(row.starts_with("CEF:0|session-bridge|session-bridge|"));
        assert!(row.contains("|token.replayed|token.replayed|9|"));
        assert!(
            row.contains("requestClientApplication=a\\=b|c\\nd"),
            "{row}"
        );
    }

    #[test]
    fn filters_by_event_prefix_and_time() {
        let r = record("ua");
        let by_prefix = Filter {
            event: Some("token.".into()),
            ..Filter::default()
        };
        assert!(by_prefix.matches(&r));
        let other = Filter {
            event: Some("token.issued".into()),
            ..Filter::default()
        };
        assert!(!other.matches(&r));
        let later = Filter {
            since: OffsetDateTime::parse("2026-11-25T12:00:01Z", &Rfc3339).ok(),
            ..Filter::default()
        };
        assert!(!later.matches(&r));
    }
}
