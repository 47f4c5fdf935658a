//! The sites the bridge serves, how they relate, and how a request's `Host`
//! picks one.

mod build;
pub mod check;
mod cookie;
mod finding;
mod origin;

pub use cookie::{CookiePolicy, SameSite};
pub use finding::{Finding, Severity, fix_for};
pub use origin::{Origin, OriginError, Relation, Scheme};

use crate::config::{Delivery, MissingSessionPolicy};
use std::collections::HashMap;
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
    /// Where a logout everywhere POSTs a signed logout token (OpenID
    /// Back-Channel Logout 1.0), if anywhere.
    pub backchannel_logout_url: Option<url::Url>,
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

/// All sites, indexed by id and by `Host` authority.
#[derive(Debug)]
pub struct Topology {
    pub(crate) sites: Vec<Arc<Site>>,
    pub(crate) by_id: HashMap<String, usize>,
    /// `host[:port]` to (site index, origin index).
    pub(crate) by_authority: HashMap<String, (usize, usize)>,
}

impl Topology {
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
        // Browsers send the authority as configured: found as it is, with no
        // copy. Anything else (case, a trailing dot, a default port) below.
        if let Some(&(site, origin)) = self.by_authority.get(host) {
            let site = &self.sites[site];
            return Some((site, &site.origins[origin]));
        }
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
            // An origin exactly as the bridge writes it (its own redirects
            // do) is found without parsing; a canonical origin parses to
            // itself, so the answer is the one parsing would give.
            if let Some((scheme, authority)) = reference.split_once("://")
                && let Some(&(site, origin)) = self.by_authority.get(authority)
                && self.sites[site].origins[origin].scheme().as_str() == scheme
            {
                let site = &self.sites[site];
                return Some((site, Some(site.origins[origin].clone())));
            }
            let origin = Origin::parse(reference).ok()?;
            let site = self.site_for_host(&origin.authority())?;
            site.origin_matching(&origin)?;
            Some((site, Some(origin)))
        } else {
            self.site(reference).map(|site| (site, None))
        }
    }
}

#[cfg(test)]
mod tests;
