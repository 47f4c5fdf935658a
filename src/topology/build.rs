//! Validating `[[sites]]` into a [`Topology`]: every problem is reported,
//! not just the first.

use super::{CookiePolicy, Finding, Origin, Relation, SameSite, Site, Topology};
use crate::config::SiteConfig;
use std::collections::HashMap;
use std::sync::Arc;

/// Site ids appear in URLs and audit lines: keep them to a safe alphabet.
fn valid_site_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

/// One site's parsed parts, before the cross-site checks.
struct Parsed<'a> {
    config: &'a SiteConfig,
    origins: Vec<Origin>,
    cors: Vec<Origin>,
    backchannel: Option<url::Url>,
}

/// A back-channel logout URL: absolute `https://`, or `http://` to a
/// loopback or `localhost` host (development); no user info, no fragment.
fn parse_backchannel_url(text: &str) -> Result<Option<url::Url>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let url = url::Url::parse(text)
        .map_err(|e| format!("backchannel_logout_url is not an absolute URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err("backchannel_logout_url must not carry user info or a fragment".to_owned());
    }
    let local = match url.host() {
        Some(url::Host::Domain(name)) => {
            let name = name.to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(Some(url)),
        "http" if local => Ok(Some(url)),
        "http" => Err(
            "backchannel_logout_url must be https:// (plain http only to localhost or a loopback address)"
                .to_owned(),
        ),
        _ => Err("backchannel_logout_url must be an https:// URL".to_owned()),
    }
}

impl Topology {
    /// Validates the configured sites.
    pub fn build(configs: &[SiteConfig]) -> Result<Self, Vec<Finding>> {
        let mut errors = Vec::new();
        if configs.is_empty() {
            errors.push(Finding::error(
                "no_sites",
                None,
                "no [[sites]] are configured",
            ));
        }
        let mut by_id = HashMap::new();
        let mut by_authority: HashMap<String, (usize, usize)> = HashMap::new();
        let mut parsed = Vec::new();
        for (index, config) in configs.iter().enumerate() {
            let id = Some(config.id.as_str());
            if !valid_site_id(&config.id) {
                errors.push(Finding::error(
                    "site_id_invalid",
                    id,
                    "ids use a-z, 0-9, `-`, `_` and `.` only",
                ));
            }
            if by_id.insert(config.id.clone(), index).is_some() {
                errors.push(Finding::error(
                    "site_id_duplicate",
                    id,
                    "the same id is configured twice",
                ));
            }
            if config.origins.is_empty() {
                errors.push(Finding::error(
                    "site_no_origins",
                    id,
                    "a site needs at least one origin",
                ));
            }
            let mut origins = Vec::new();
            for text in &config.origins {
                match Origin::parse(text) {
                    Ok(origin) => {
                        let slot = (index, origins.len());
                        if let Some((other, _)) = by_authority.insert(origin.authority(), slot) {
                            let message = format!(
                                "{origin} is also an origin of site `{}`",
                                configs[other].id
                            );
                            errors.push(Finding::error("origin_duplicate", id, message));
                        }
                        origins.push(origin);
                    }
                    Err(e) => errors.push(Finding::error(e.code, id, e.message)),
                }
            }
            for origin in origins.iter().filter(|o| !o.is_potentially_trustworthy()) {
                let message = format!(
                    "{origin} is plain HTTP, but the bridge's cookies are Secure (the state cookie is __Host-), which browsers drop there"
                );
                errors.push(Finding::error("secure_on_plain_http", id, message));
            }
            let mut cors = Vec::new();
            for text in &config.cors_origins {
                match Origin::parse(text) {
                    Ok(origin) => cors.push(origin),
                    Err(e) => {
                        let code = match e.code {
                            "origin_wildcard" => "cors_origin_wildcard",
                            "origin_null" => "cors_origin_null",
                            _ => "cors_origin_invalid",
                        };
                        errors.push(Finding::error(code, id, e.message));
                    }
                }
            }
            for path in &config.return_paths {
                if !path.starts_with('/')
                    || path.starts_with("//")
                    || path.contains(['\\', '?', '#', '%'])
                {
                    let message = format!("`{path}` is not an absolute path");
                    errors.push(Finding::error("return_path_invalid", id, message));
                }
            }
            if crate::flows::return_to::validate_local_target(&config.login_url).is_err() {
                errors.push(Finding::error(
                    "login_url_invalid",
                    id,
                    "login_url must be a plain path on the site",
                ));
            }
            let backchannel = match parse_backchannel_url(&config.backchannel_logout_url) {
                Ok(url) => url,
                Err(message) => {
                    errors.push(Finding::error("backchannel_url_invalid", id, message));
                    None
                }
            };
            parsed.push(Parsed {
                config,
                origins,
                cors,
                backchannel,
            });
        }
        for site in &parsed {
            for partner in &site.config.partners {
                let id = Some(site.config.id.as_str());
                if !by_id.contains_key(partner) {
                    let message = format!("partner `{partner}` is not a configured site");
                    errors.push(Finding::error("partner_unknown", id, message));
                } else if *partner == site.config.id {
                    errors.push(Finding::error(
                        "partner_self",
                        id,
                        "a site cannot be its own partner",
                    ));
                }
            }
        }
        let sites: Vec<Arc<Site>> = parsed
            .iter()
            .map(|site| build_site(site, &parsed, &mut errors))
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
}

fn build_site(site: &Parsed<'_>, all: &[Parsed<'_>], errors: &mut Vec<Finding>) -> Arc<Site> {
    let config = site.config;
    let accepts_from: Vec<String> = all
        .iter()
        .filter(|other| other.config.partners.contains(&config.id))
        .map(|other| other.config.id.clone())
        .collect();
    let counterparts: Vec<&Origin> = all
        .iter()
        .filter(|other| {
            config.partners.contains(&other.config.id) || accepts_from.contains(&other.config.id)
        })
        .flat_map(|other| other.origins.iter())
        .collect();
    let cookie = CookiePolicy::choose(
        &config.cookie,
        &site.origins,
        &counterparts,
        config.allow_iframe,
    );
    check_cookie(&config.id, &cookie, &site.origins, errors);
    check_strict(config, &cookie, &site.origins, all, errors);
    Arc::new(Site {
        id: config.id.clone(),
        origins: site.origins.clone(),
        partners: config.partners.clone(),
        accepts_from,
        return_paths: config.return_paths.clone(),
        on_missing_session: config.on_missing_session,
        login_url: config.login_url.clone(),
        cors_origins: site.cors.clone(),
        delivery: config.delivery,
        allow_iframe: config.allow_iframe,
        cookie,
        backchannel_logout_url: site.backchannel.clone(),
    })
}

fn check_cookie(site: &str, cookie: &CookiePolicy, origins: &[Origin], errors: &mut Vec<Finding>) {
    let id = Some(site);
    let name = &cookie.name;
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        errors.push(Finding::error(
            "cookie_name_invalid",
            id,
            format!("`{name}` is not a valid cookie name"),
        ));
    }
    if cookie.same_site == SameSite::None && !cookie.secure {
        errors.push(Finding::error(
            "cookie_none_without_secure",
            id,
            "SameSite=None needs Secure, and an origin is plain HTTP",
        ));
    }
    if name.starts_with("__Host-") {
        if !cookie.secure {
            errors.push(Finding::error(
                "cookie_host_prefix_insecure",
                id,
                "a __Host- cookie must be Secure",
            ));
        }
        if cookie.domain.is_some() {
            errors.push(Finding::error(
                "cookie_host_prefix_domain",
                id,
                "a __Host- cookie cannot have a Domain (and its Path is always /)",
            ));
        }
    }
    if name.starts_with("__Secure-") && !cookie.secure {
        errors.push(Finding::error(
            "cookie_secure_prefix_insecure",
            id,
            "a __Secure- cookie must be Secure",
        ));
    }
    let Some(domain) = &cookie.domain else { return };
    let domain = domain
        .trim_start_matches('.')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if domain.parse::<std::net::IpAddr>().is_ok()
        || origins
            .iter()
            .any(|o| o.host().starts_with('[') || o.host().parse::<std::net::Ipv4Addr>().is_ok())
    {
        errors.push(Finding::error(
            "cookie_domain_ip",
            id,
            "a cookie Domain cannot be used with IP-address hosts",
        ));
        return;
    }
    if psl::suffix_str(&domain) == Some(domain.as_str()) {
        let message = format!(
            "`{domain}` is a public suffix: browsers refuse such cookies, and it would be shared with every site under it"
        );
        errors.push(Finding::error("cookie_domain_public_suffix", id, message));
    }
    for origin in origins {
        let host = origin.host();
        if host != domain && !host.ends_with(&format!(".{domain}")) {
            let message = format!("`{domain}` is not {host} or a parent of it");
            errors.push(Finding::error("cookie_domain_not_parent", id, message));
        }
    }
}

/// A `Strict` cookie is never sent on the cross-site redirect that brings a
/// partner's browser to this site's `/bridge/issue`.
fn check_strict(
    config: &SiteConfig,
    cookie: &CookiePolicy,
    origins: &[Origin],
    all: &[Parsed<'_>],
    errors: &mut Vec<Finding>,
) {
    if cookie.same_site != SameSite::Strict || config.partners.is_empty() {
        return;
    }
    let partner_relations: Vec<Relation> = all
        .iter()
        .filter(|other| config.partners.contains(&other.config.id))
        .map(|other| {
            origins
                .iter()
                .flat_map(|own| other.origins.iter().map(move |theirs| own.relation(theirs)))
                .min()
                .unwrap_or(Relation::CrossSite)
        })
        .collect();
    let id = Some(config.id.as_str());
    if !partner_relations.is_empty() && partner_relations.iter().all(|r| *r == Relation::CrossSite)
    {
        errors.push(Finding::error(
            "cookie_strict_cross_site",
            id,
            "SameSite=Strict, but every partner reaches this site cross-site: /bridge/issue would never see the session",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::parse_backchannel_url;

    #[test]
    fn backchannel_urls_are_https_or_local() {
        for good in [
            "https://shop.example.com/logout",
            "https://shop.example.com:8443/bc?x=1",
            "http://localhost:9000/bc",
            "http://shop.localhost/bc",
            "http://127.0.0.1:9000/bc",
            "http://[::1]:9000/bc",
        ] {
            assert!(matches!(parse_backchannel_url(good), Ok(Some(_))), "{good}");
        }
        assert!(matches!(parse_backchannel_url(""), Ok(None)));
        assert!(matches!(parse_backchannel_url("  "), Ok(None)));
        for bad in [
            "http://shop.example.com/bc",
            "http://10.0.0.1/bc",
            "ftp://shop.example.com/bc",
            "/bc",
            "shop.example.com/bc",
            "https://user:secret@shop.example.com/bc",
            "https://shop.example.com/bc#x",
            "javascript:alert(1)",
        ] {
            assert!(parse_backchannel_url(bad).is_err(), "{bad}");
        }
    }
}
