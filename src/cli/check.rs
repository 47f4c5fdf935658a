//! `session-bridge check`: the topology report as text or JSON.

use crate::topology::Finding;
use crate::topology::check::Report;
use std::fmt::Write;

/// The report for people.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    for site in &report.sites {
        let c = &site.cookie;
        let _ = writeln!(out, "site {}", site.id);
        for origin in &site.origins {
            let _ = writeln!(out, "  origin    {origin}");
        }
        let _ = writeln!(out, "  cookie    {}", c.name);
        let _ = writeln!(
            out,
            "    SameSite={:<7} {}",
            c.same_site, c.same_site_reason
        );
        let secure = if c.secure { "Secure" } else { "no Secure" };
        let _ = writeln!(out, "    {secure:<16} {}", c.secure_reason);
        let _ = writeln!(
            out,
            "    HttpOnly         scripts never read the session ID"
        );
        let scope = c
            .domain
            .as_ref()
            .map_or_else(|| "no Domain".to_owned(), |d| format!("Domain={d}"));
        let _ = writeln!(out, "    {scope:<16} {}", c.scope_reason);
    }
    for relation in &report.relations {
        let _ = writeln!(
            out,
            "relation {} ~ {}: {}",
            relation.a, relation.b, relation.relation
        );
    }
    for pair in &report.pairs {
        let _ = writeln!(out, "{} -> {}: {}", pair.from, pair.to, pair.relation);
        for flow in &pair.flows {
            let name = match flow.flow {
                "shared_cookie" => "shared cookie",
                "redirect" => "flow A redirect",
                "iframe" => "flow B iframe",
                _ => "flow B popup",
            };
            let _ = writeln!(out, "  {name:<16} {:<12} {}", flow.works, flow.note);
        }
        let _ = writeln!(out, "  {:<16} {}", "CORS", pair.cors);
    }
    let _ = writeln!(
        out,
        "handshake script (serve it from each partner's own origin):"
    );
    let _ = writeln!(
        out,
        "  <script src=\"/bridge/session-bridge.js\" integrity=\"{}\"></script>",
        report.handshake.script_sri
    );
    let _ = writeln!(
        out,
        "  session-bridge.mjs integrity {}",
        report.handshake.module_sri
    );
    write_findings(&mut out, "error", &report.errors);
    write_findings(&mut out, "warning", &report.warnings);
    let _ = writeln!(
        out,
        "{} error(s), {} warning(s)",
        report.errors.len(),
        report.warnings.len()
    );
    out
}

fn write_findings(out: &mut String, label: &str, findings: &[Finding]) {
    for finding in findings {
        let _ = writeln!(out, "{label} {finding}");
        let _ = writeln!(out, "  fix: {}", finding.fix);
    }
}

/// The report for programs.
pub fn render_json(report: &Report) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|_| "{}".to_owned())
}
