//! The sites the bridge serves, how they relate, and how a request's `Host`
//! picks one.

mod cookie;
mod origin;

pub use cookie::{CookiePolicy, SameSite};
pub use origin::{Origin, OriginError, Relation, Scheme};

use crate::config::{Delivery, MissingSessionPolicy, SiteConfig};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// One web property the bridge serves, validated.
#[derive(Debug)]
pub struct Site {
    pub id: String,
    pub origins: Vec<Origin>,
    /// Sites this one may hand sessions to.
    pub partners: Vec<String>,
    /// Sites that may hand sessions to this one.
    pub accepts_from: Vec<String>,
    pub return_paths: Vec<String>,
    pub on_missing_session: MissingSessionPolicy,
    pub login_url: String,
    pub cors_origins: Vec<Origin>,
    pub delivery: Delivery,
    pub allow_iframe: bool,
    pub cookie: CookiePolicy,
}

impl Site {
    /// Whether this site may hand sessions to `other`.
    pub fn may_hand_to(&self, other: &str) -> bool {
        self.partners.iter().any(|p| p == other)
    }

    /// The origin of this site equal to `origin`, if any.
    pub fn origin_matching(&self, origin: &Origin) -> Option<&Origin> {
        self.origins.iter().find(|o| *o == origin)
    }

    /// The site's first (canonical) origin.
    pub fn primary_origin(&self) -> &Origin {
        // `Topology::build` refuses sites without origins.
        &self.origins[0]
    }
}

/// A configuration problem that stops the bridge from starting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopologyError {
    pub code: &'static str,
    pub site: Option<String>,
    pub message: String,
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.site {
            Some(site) => write!(f, "[{}] site `{site}`: {}", self.code, self.message),
            None => write!(f, "[{}] {}", self.code, self.message),
        }
    }
}

/// All sites, indexed by id and by `Host` authority.
#[derive(Debug)]
pub struct Topology {
    sites: Vec<Arc<Site>>,
    by_id: HashMap<String, usize>,
    /// `host[:port]` to (site index, origin index).
    by_authority: HashMap<String, (usize, usize)>,
}

fn problem(code: &'static str, site: &str, message: String) -> TopologyError {
    TopologyError {
        code,
        site: Some(site.to_owned()),
        message,
    }
}

/// Site ids appear in URLs and audit lines: keep them to a safe alphabet.
fn valid_site_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
        })
}

impl Topology {
    /// Validates the configured sites. Returns every problem found, not just the first.
    pub fn build(configs: &[SiteConfig]) -> Result<Self, Vec<TopologyError>> {
        let mut errors = Vec::new();
        let mut parsed: Vec<(&SiteConfig, Vec<Origin>, Vec<Origin>)> = Vec::new();
        let mut by_id = HashMap::new();
        let mut by_authority: HashMap<String, (usize, usize)> = HashMap::new();
        if configs.is_empty() {
            errors.push(TopologyError {
                code: "no_sites",
                site: None,
                message: "no [[sites]] are configured".to_owned(),
            });
        }
        for (index, config) in configs.iter().enumerate() {
            let id = config.id.as_str();
            if !valid_site_id(id) {
                errors.push(problem(
                    "site_id_invalid",
                    id,
                    "ids use a-z, 0-9, `-`, `_` and `.` only".to_owned(),
                ));
            }
            if by_id.insert(config.id.clone(), index).is_some() {
                errors.push(problem(
                    "site_id_duplicate",
                    id,
                    "the same id is configured twice".to_owned(),
                ));
            }
            if config.origins.is_empty() {
                errors.push(problem(
                    "site_no_origins",
                    id,
                    "a site needs at least one origin".to_owned(),
                ));
            }
            let mut origins = Vec::new();
            for text in &config.origins {
                match Origin::parse(text) {
                    Ok(origin) => {
                        if let Some((other, _)) =
                            by_authority.insert(origin.authority(), (index, origins.len()))
                        {
                            errors.push(problem(
                                "origin_duplicate",
                                id,
                                format!(
                                    "{origin} is also an origin of site `{}`",
                                    configs[other].id
                                ),
                            ));
                        }
                        origins.push(origin);
                    }
                    Err(e) => errors.push(problem(e.code, id, e.message)),
                }
            }
            if let Some(insecure) = origins.iter().find(|o| !o.is_potentially_trustworthy()) {
                errors.push(problem(
                    "origin_not_secure",
                    id,
                    format!(
                        "{insecure} is plain HTTP: the bridge's cookies need HTTPS (or localhost)"
                    ),
                ));
            }
            let mut cors = Vec::new();
            for text in &config.cors_origins {
                match Origin::parse(text) {
                    Ok(origin) => cors.push(origin),
                    Err(e) => errors.push(problem("cors_origin_invalid", id, e.message)),
                }
            }
            for path in &config.return_paths {
                if !path.starts_with('/')
                    || path.starts_with("//")
                    || path.contains(['\\', '?', '#', '%'])
                {
                    errors.push(problem(
                        "return_path_invalid",
                        id,
                        format!("`{path}` is not an absolute path"),
                    ));
                }
            }
            if !config.login_url.starts_with('/') || config.login_url.starts_with("//") {
                errors.push(problem(
                    "login_url_invalid",
                    id,
                    "login_url must be a path on the site".to_owned(),
                ));
            }
            parsed.push((config, origins, cors));
        }
        for (config, _, _) in &parsed {
            for partner in &config.partners {
                if !by_id.contains_key(partner) {
                    errors.push(problem(
                        "partner_unknown",
                        &config.id,
                        format!("partner `{partner}` is not a configured site"),
                    ));
                } else if partner == &config.id {
                    errors.push(problem(
                        "partner_self",
                        &config.id,
                        "a site cannot be its own partner".to_owned(),
                    ));
                }
            }
        }
        let sites = parsed
            .iter()
            .map(|(config, origins, cors)| {
                let accepts_from: Vec<String> = parsed
                    .iter()
                    .filter(|(other, _, _)| other.partners.contains(&config.id))
                    .map(|(other, _, _)| other.id.clone())
                    .collect();
                let counterparts: Vec<&Origin> = parsed
                    .iter()
                    .filter(|(other, _, _)| {
                        config.partners.contains(&other.id) || accepts_from.contains(&other.id)
                    })
                    .flat_map(|(_, other_origins, _)| other_origins.iter())
                    .collect();
                let cookie = CookiePolicy::choose(
                    &config.cookie,
                    origins,
                    &counterparts,
                    config.allow_iframe,
                );
                check_cookie(&config.id, &cookie, &mut errors);
                Arc::new(Site {
                    id: config.id.clone(),
                    origins: origins.clone(),
                    partners: config.partners.clone(),
                    accepts_from,
                    return_paths: config.return_paths.clone(),
                    on_missing_session: config.on_missing_session,
                    login_url: config.login_url.clone(),
                    cors_origins: cors.clone(),
                    delivery: config.delivery,
                    allow_iframe: config.allow_iframe,
                    cookie,
                })
            })
            .collect();
        if errors.is_empty() {
            Ok(Self {
                sites,
                by_id,
                by_authority,
            })
        } else {
            Err(errors)
        }
    }

    /// Every site, in configuration order.
    pub fn sites(&self) -> &[Arc<Site>] {
        &self.sites
    }

    /// The site with this id.
    pub fn site(&self, id: &str) -> Option<&Arc<Site>> {
        self.by_id.get(id).map(|&i| &self.sites[i])
    }

    /// The site a request is for, from its `Host` header. A `Host` with port
    /// 80 or 443 also matches an origin that leaves its default port out.
    pub fn site_for_host(&self, host: &str) -> Option<&Arc<Site>> {
        self.site_and_origin_for_host(host).map(|(site, _)| site)
    }

    /// Like [`Topology::site_for_host`], with the matching origin.
    pub fn site_and_origin_for_host(&self, host: &str) -> Option<(&Arc<Site>, &Origin)> {
        let host = host.trim().to_ascii_lowercase();
        let (name, port) = match host.rsplit_once(':') {
            Some((name, port)) if !port.contains(']') => (name, Some(port)),
            _ => (host.as_str(), None),
        };
        let name = name.trim_end_matches('.');
        let exact = match port {
            Some(port) => format!("{name}:{port}"),
            None => name.to_owned(),
        };
        let (site, origin) = self.by_authority.get(&exact).or_else(|| match port {
            Some("80" | "443") => self.by_authority.get(name),
            _ => None,
        })?;
        let site = &self.sites[*site];
        Some((site, &site.origins[*origin]))
    }

    /// A site named by its id or by one of its exact origins (ids never
    /// contain `:` or `/`). Gives the origin too when one was named.
    pub fn resolve(&self, reference: &str) -> Option<(&Arc<Site>, Option<Origin>)> {
        if reference.contains(':') || reference.contains('/') {
            let origin = Origin::parse(reference).ok()?;
            let site = self.site_for_host(&origin.authority())?;
            site.origin_matching(&origin)?;
            Some((site, Some(origin)))
        } else {
            self.site(reference).map(|site| (site, None))
        }
    }
}

fn check_cookie(site: &str, cookie: &CookiePolicy, errors: &mut Vec<TopologyError>) {
    if cookie.same_site == SameSite::None && !cookie.secure {
        errors.push(problem(
            "cookie_none_without_secure",
            site,
            "SameSite=None needs Secure, which needs HTTPS or localhost origins".to_owned(),
        ));
    }
    if cookie.name.starts_with("__Host-") {
        if !cookie.secure {
            errors.push(problem(
                "cookie_host_prefix_insecure",
                site,
                "a __Host- cookie needs Secure (HTTPS or localhost origins)".to_owned(),
            ));
        }
        if cookie.domain.is_some() {
            errors.push(problem(
                "cookie_host_prefix_domain",
                site,
                "a __Host- cookie cannot have a Domain".to_owned(),
            ));
        }
    }
    if cookie.name.is_empty()
        || !cookie
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        errors.push(problem(
            "cookie_name_invalid",
            site,
            format!("`{}` is not a valid cookie name", cookie.name),
        ));
    }
}

#[cfg(test)]
mod tests;
