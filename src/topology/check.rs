//! The topology report: what the deployment looks like to a browser, which
//! hand-off flows can work between each pair of sites, and what is wrong.
//! `session-bridge check` prints it; the server runs it at start and
//! refuses to start on an error.

use super::{Finding, Origin, Relation, SameSite, Severity, Site, Topology};
use crate::config::{Config, TokenAlgorithm};
use serde::Serialize;

/// Everything `check` found.
#[derive(Debug, Serialize)]
pub struct Report {
    pub sites: Vec<SiteReport>,
    /// Every unordered pair of sites, partners or not.
    pub relations: Vec<RelationReport>,
    /// Every direction in which one site may hand sessions to another.
    pub pairs: Vec<PairReport>,
    pub errors: Vec<Finding>,
    pub warnings: Vec<Finding>,
    /// What partners put in their `<script integrity=…>`.
    pub handshake: HandshakeReport,
}

#[derive(Debug, Serialize)]
pub struct HandshakeReport {
    /// SRI of `/bridge/session-bridge.js`.
    pub script_sri: String,
    /// SRI of `/bridge/session-bridge.mjs`.
    pub module_sri: String,
}

#[derive(Debug, Serialize)]
pub struct SiteReport {
    pub id: String,
    pub origins: Vec<String>,
    pub cookie: CookieReport,
}

#[derive(Debug, Serialize)]
pub struct CookieReport {
    pub name: String,
    pub same_site: String,
    pub same_site_reason: String,
    pub secure: bool,
    pub secure_reason: String,
    pub http_only: bool,
    /// `Domain` value, or `None` for a host-only cookie.
    pub domain: Option<String>,
    pub scope_reason: String,
}

#[derive(Debug, Serialize)]
pub struct RelationReport {
    pub a: String,
    pub b: String,
    pub relation: String,
}

/// One site that may hand sessions to another (each direction is its own entry).
#[derive(Debug, Serialize)]
pub struct PairReport {
    /// The issuing site (its cookie is read by `/bridge/issue` or the frame).
    pub from: String,
    /// The receiving site.
    pub to: String,
    pub relation: String,
    pub flows: Vec<FlowReport>,
    pub cors: String,
}

#[derive(Debug, Serialize)]
pub struct FlowReport {
    /// `shared_cookie`, `redirect`, `iframe`, `popup`.
    pub flow: &'static str,
    /// `yes`, `no`, or `conditional`.
    pub works: &'static str,
    pub note: String,
}

impl Report {
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }
}

/// Checks settings that are not about one site.
fn check_settings(config: &Config, findings: &mut Vec<Finding>) {
    let tokens = &config.tokens;
    if tokens.ttl.get() == 0 || tokens.ttl.get() > 120 {
        let message = format!(
            "[tokens] ttl is {}; a bridge token lives 1s to 120s",
            tokens.ttl
        );
        findings.push(Finding::error("token_ttl_invalid", None, message));
    }
    if tokens.leeway.get() > 5 {
        let message = format!(
            "[tokens] leeway is {}; clock-skew leeway is 0s to 5s",
            tokens.leeway
        );
        findings.push(Finding::error("token_leeway_invalid", None, message));
    }
    let sessions = &config.sessions;
    if sessions.idle_timeout.get() == 0
        || sessions.absolute_timeout.get() < sessions.idle_timeout.get()
    {
        let message = format!(
            "idle_timeout is {} and absolute_timeout {}",
            sessions.idle_timeout, sessions.absolute_timeout
        );
        findings.push(Finding::error("session_timeouts_invalid", None, message));
    }
    if tokens.algorithm == TokenAlgorithm::HS256 {
        let message =
            "HS256 shares one secret between every node that verifies and every node that signs";
        findings.push(Finding::warning("hs256_shared_secret", None, message));
    }
}

/// Runs every check. The topology is given back when it has no error.
pub fn check(config: &Config) -> (Report, Option<Topology>) {
    let mut findings = Vec::new();
    check_settings(config, &mut findings);
    let topology = match Topology::build(&config.sites) {
        Ok(topology) => Some(topology),
        Err(errors) => {
            findings.extend(errors);
            None
        }
    };
    let (sites, relations, pairs) = match &topology {
        Some(topology) => {
            site_warnings(topology, &mut findings);
            let sites = topology.sites().iter().map(|s| site_report(s)).collect();
            (sites, relation_reports(topology), pair_reports(topology))
        }
        None => (Vec::new(), Vec::new(), Vec::new()),
    };
    let (errors, warnings) = findings
        .into_iter()
        .partition(|f| f.severity == Severity::Error);
    let handshake = HandshakeReport {
        script_sri: crate::handshake::sri(crate::handshake::CLASSIC),
        module_sri: crate::handshake::sri(crate::handshake::MODULE),
    };
    let report = Report {
        sites,
        relations,
        pairs,
        errors,
        warnings,
        handshake,
    };
    let topology = if report.has_errors() { None } else { topology };
    (report, topology)
}

fn site_report(site: &Site) -> SiteReport {
    let c = &site.cookie;
    let scope_reason = match &c.domain {
        None if c.name.starts_with("__Host-") => {
            "__Host- prefix: host-only, Path=/, no Domain; no other host can set or read it"
        }
        None => "host-only (no Domain); consider the __Host- prefix",
        Some(_) => "shared with every host under Domain",
    };
    SiteReport {
        id: site.id.clone(),
        origins: site.origins.iter().map(Origin::to_string).collect(),
        cookie: CookieReport {
            name: c.name.clone(),
            same_site: c.same_site.to_string(),
            same_site_reason: c.same_site_reason.to_owned(),
            secure: c.secure,
            secure_reason: c.secure_reason.to_owned(),
            http_only: true,
            domain: c.domain.clone(),
            scope_reason: scope_reason.to_owned(),
        },
    }
}

/// The closest relation between any origin of `a` and any origin of `b`.
fn relation(a: &Site, b: &Site) -> Relation {
    a.origins
        .iter()
        .flat_map(|x| b.origins.iter().map(move |y| x.relation(y)))
        .min()
        .unwrap_or(Relation::CrossSite)
}

fn site_warnings(topology: &Topology, findings: &mut Vec<Finding>) {
    for site in topology.sites() {
        let id = Some(site.id.as_str());
        let counterparts: Vec<&Site> = topology
            .sites()
            .iter()
            .filter(|o| site.partners.contains(&o.id) || site.accepts_from.contains(&o.id))
            .map(AsRef::as_ref)
            .collect();
        if counterparts.is_empty() && topology.sites().len() > 1 {
            findings.push(Finding::warning(
                "site_isolated",
                id,
                "no site hands sessions to or from this one",
            ));
        }
        let partner_relations: Vec<Relation> = topology
            .sites()
            .iter()
            .filter(|o| site.partners.contains(&o.id))
            .map(|o| relation(site, o))
            .collect();
        let any_cross = counterparts
            .iter()
            .any(|o| relation(site, o) == Relation::CrossSite);
        if site.cookie.same_site == SameSite::Strict
            && partner_relations.contains(&Relation::CrossSite)
            && !partner_relations.iter().all(|r| *r == Relation::CrossSite)
        {
            let message = "SameSite=Strict, but some partners reach this site cross-site: hand-offs to them find no session";
            findings.push(Finding::warning(
                "cookie_strict_some_cross_site",
                id,
                message,
            ));
        }
        if site.allow_iframe && any_cross {
            let message = "the iframe path reads this site's cookie in a cross-site frame, which works only where third-party cookies are allowed";
            findings.push(Finding::warning(
                "iframe_needs_third_party_cookies",
                id,
                message,
            ));
        }
        if site.allow_iframe && !any_cross && !counterparts.is_empty() {
            let message = "every partner is same-site: frames already receive Lax cookies, so SameSite=None is not needed";
            findings.push(Finding::warning("iframe_not_needed", id, message));
        }
        if site.cookie.same_site == SameSite::None && !site.allow_iframe {
            let message = "SameSite=None sends the session cookie with cross-site subrequests, and only the iframe path needs that";
            findings.push(Finding::warning("cookie_none_without_iframe", id, message));
        }
    }
}

fn relation_reports(topology: &Topology) -> Vec<RelationReport> {
    let sites = topology.sites();
    let mut relations = Vec::new();
    for (i, a) in sites.iter().enumerate() {
        for b in &sites[i + 1..] {
            relations.push(RelationReport {
                a: a.id.clone(),
                b: b.id.clone(),
                relation: relation(a, b).as_str().to_owned(),
            });
        }
    }
    relations
}

fn pair_reports(topology: &Topology) -> Vec<PairReport> {
    let sites = topology.sites();
    let mut pairs = Vec::new();
    for from in sites {
        for to in sites.iter().filter(|to| from.may_hand_to(&to.id)) {
            let relation = relation(from, to);
            pairs.push(PairReport {
                from: from.id.clone(),
                to: to.id.clone(),
                relation: relation.as_str().to_owned(),
                flows: flows(relation, from),
                cors: cors(from, to, relation),
            });
        }
    }
    pairs
}

fn flow(flow: &'static str, works: &'static str, note: impl Into<String>) -> FlowReport {
    FlowReport {
        flow,
        works,
        note: note.into(),
    }
}

/// What can carry a session from `issuer` to a site at `relation` from it.
fn flows(relation: Relation, issuer: &Site) -> Vec<FlowReport> {
    let strict = issuer.cookie.same_site == SameSite::Strict;
    let none = issuer.cookie.same_site == SameSite::None;
    let shared = match relation {
        Relation::SameOrigin => flow(
            "shared_cookie",
            "yes",
            "same origin: one cookie already covers both",
        ),
        Relation::SameSite => flow(
            "shared_cookie",
            "yes",
            "same site: a cookie with Domain set to the shared parent domain would also work",
        ),
        Relation::CrossSite => flow(
            "shared_cookie",
            "no",
            "different sites (scheme or registrable domain): no cookie can be shared",
        ),
    };
    let cross = relation == Relation::CrossSite;
    let redirect = if cross && strict {
        flow(
            "redirect",
            "no",
            "the issuer's cookie is Strict, and the redirect arrives cross-site",
        )
    } else {
        flow(
            "redirect",
            "yes",
            "top-level navigations carry Lax cookies; works with third-party cookies blocked",
        )
    };
    let iframe = match (cross, none) {
        (false, _) => flow(
            "iframe",
            "yes",
            "a same-site frame receives the issuer's Lax cookie",
        ),
        (true, true) => flow(
            "iframe",
            "conditional",
            "only where the browser allows third-party cookies (SameSite=None; Secure)",
        ),
        (true, false) => flow(
            "iframe",
            "no",
            "cross-site frames get no Lax cookie: set allow_iframe = true on the issuer to try it",
        ),
    };
    let popup = if cross && strict {
        flow(
            "popup",
            "no",
            "a popup opened from another site does not carry Strict cookies",
        )
    } else {
        flow(
            "popup",
            "yes",
            "a first-party popup carries Lax cookies; needs a user gesture",
        )
    };
    vec![shared, redirect, iframe, popup]
}

/// Whether pages of `to` may call `from`'s browser session API with credentials.
fn cors(from: &Site, to: &Site, relation: Relation) -> String {
    if relation == Relation::SameOrigin {
        return "not needed: same origin".to_owned();
    }
    let allowed = to.origins.iter().any(|o| from.cors_origins.contains(o));
    let calls = if allowed {
        format!(
            "{}'s pages may call {}'s session API with credentials (exact origin, Vary: Origin)",
            to.id, from.id
        )
    } else {
        format!(
            "{}'s pages may not call {}'s session API from the browser (add its origin to {}'s cors_origins to allow it)",
            to.id, from.id, from.id
        )
    };
    format!("not needed for hand-offs; {calls}")
}
