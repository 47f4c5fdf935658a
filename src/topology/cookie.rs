//! Session cookie attributes chosen from the topology, not from habit.

use super::origin::{Origin, Relation};
use crate::config::{CookieConfig, SameSiteSetting};
use std::fmt;

/// The `SameSite` attribute a cookie is sent with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

impl fmt::Display for SameSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Strict => "Strict",
            Self::Lax => "Lax",
            Self::None => "None",
        })
    }
}

/// The attributes of one site's session cookie, with the reason for each choice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookiePolicy {
    pub name: String,
    pub same_site: SameSite,
    pub secure: bool,
    pub domain: Option<String>,
    /// Why `same_site` is what it is, in a few words.
    pub same_site_reason: &'static str,
    /// Why `secure` is what it is, in a few words.
    pub secure_reason: &'static str,
}

impl CookiePolicy {
    /// Chooses the attributes for a site with `origins`, whose hand-off
    /// counterparts (partners either way) are at `counterparts`.
    ///
    /// `auto` picks `None` only when the site opts into the iframe path, and
    /// otherwise `Lax`: the redirect flow returns to the site from another
    /// origin, and browsers withhold `Strict` cookies on navigations that a
    /// cross-site page started, so `Strict` would make the page the flow
    /// returns to look signed out.
    pub fn choose(
        config: &CookieConfig,
        origins: &[Origin],
        counterparts: &[&Origin],
        allow_iframe: bool,
    ) -> Self {
        let secure = origins.iter().all(Origin::is_potentially_trustworthy);
        let secure_reason = if secure {
            "every origin is HTTPS or localhost"
        } else {
            "an origin is plain HTTP"
        };
        let any_cross_site = origins.iter().any(|own| {
            counterparts
                .iter()
                .any(|other| own.relation(other) == Relation::CrossSite)
        });
        let (same_site, same_site_reason) = match config.same_site {
            SameSiteSetting::Strict => (SameSite::Strict, "set in configuration"),
            SameSiteSetting::Lax => (SameSite::Lax, "set in configuration"),
            SameSiteSetting::None => (SameSite::None, "set in configuration"),
            SameSiteSetting::Auto if allow_iframe => (
                SameSite::None,
                "allow_iframe: partners read it from a cross-site frame",
            ),
            SameSiteSetting::Auto if any_cross_site => (
                SameSite::Lax,
                "cross-site partners reach it by top-level redirect",
            ),
            SameSiteSetting::Auto => (
                SameSite::Lax,
                "the redirect flow returns from another origin; Strict would be withheld",
            ),
        };
        Self {
            name: config.name.clone(),
            same_site,
            secure,
            domain: config.domain.clone(),
            same_site_reason,
            secure_reason,
        }
    }
}
