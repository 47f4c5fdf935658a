//! Problems found in a configuration: each with a stable code, the site it
//! concerns, what is wrong, and a fix in one line.

use serde::Serialize;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The bridge refuses to start.
    Error,
    /// Logged at start; works, but probably not as intended.
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    pub message: String,
    pub fix: &'static str,
}

impl Finding {
    pub fn error(code: &'static str, site: Option<&str>, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, code, site, message)
    }

    pub fn warning(code: &'static str, site: Option<&str>, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, code, site, message)
    }

    fn new(
        severity: Severity,
        code: &'static str,
        site: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity,
            code,
            site: site.map(str::to_owned),
            message: message.into(),
            fix: fix_for(code),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.site {
            Some(site) => write!(f, "[{}] site `{site}`: {}", self.code, self.message),
            None => write!(f, "[{}] {}", self.code, self.message),
        }
    }
}

/// The one-line fix for each code.
pub fn fix_for(code: &str) -> &'static str {
    match code {
        "no_sites" => "add at least one [[sites]] table with an id and origins",
        "site_id_invalid" => {
            "use lower-case letters, digits, `-`, `_` and `.` in site ids (at most 64)"
        }
        "site_id_duplicate" => "give every site its own id",
        "site_no_origins" => {
            "list the site's exact origins, e.g. origins = [\"https://app.example.com\"]"
        }
        "origin_invalid" => "write an origin as scheme://host[:port], nothing else",
        "origin_scheme" => "use http or https origins",
        "origin_path" => "remove the path, query or fragment: an origin is scheme://host[:port]",
        "origin_userinfo" => "remove the user name and password from the origin",
        "origin_wildcard" => "list every origin exactly; wildcards are never matched",
        "origin_null" => "remove `null`: it is not an origin",
        "origin_default_port" => "leave out :443 for https and :80 for http",
        "origin_duplicate" => "give each origin to one site only",
        "secure_on_plain_http" => {
            "serve the site over HTTPS (plain HTTP is only trusted for localhost and *.localhost)"
        }
        "cors_origin_invalid" => "write CORS origins as exact scheme://host[:port]",
        "cors_origin_wildcard" => {
            "list each allowed origin exactly: a wildcard would hand credentials to anyone"
        }
        "cors_origin_null" => "remove `null`: sandboxed frames and file: pages all send it",
        "return_path_invalid" => {
            "write return_paths as absolute paths such as \"/\" or \"/account\""
        }
        "login_url_invalid" => "write login_url as a path on the site, such as \"/login\"",
        "partner_unknown" => "add the partner as a [[sites]] entry or remove it from partners",
        "partner_self" => "remove the site from its own partners",
        "cookie_name_invalid" => "use letters, digits, `-`, `_` and `.` in the cookie name",
        "cookie_none_without_secure" => "serve the site over HTTPS, or use same_site = \"lax\"",
        "cookie_host_prefix_insecure" => "serve the site over HTTPS, or drop the __Host- prefix",
        "cookie_host_prefix_domain" => {
            "remove `domain`, or rename the cookie without the __Host- prefix"
        }
        "cookie_secure_prefix_insecure" => {
            "serve the site over HTTPS, or drop the __Secure- prefix"
        }
        "cookie_domain_public_suffix" => {
            "remove `domain`, or set it to your registrable domain (e.g. example.co.uk)"
        }
        "cookie_domain_not_parent" => {
            "set `domain` to the site's host or a parent of it, or remove it"
        }
        "cookie_domain_ip" => "remove `domain`: cookies on IP hosts are host-only",
        "cookie_strict_cross_site" => {
            "use same_site = \"auto\" or \"lax\": cross-site redirects never carry Strict cookies"
        }
        "cookie_strict_some_cross_site" => {
            "use same_site = \"auto\" or \"lax\" unless only same-site partners use this site"
        }
        "cookie_none_without_iframe" => {
            "use same_site = \"auto\" (Lax) unless partners read the cookie in a frame"
        }
        "iframe_needs_third_party_cookies" => {
            "expect flow B to fall back to the popup or redirect in most browsers"
        }
        "iframe_not_needed" => "set allow_iframe = false: same-site frames receive Lax cookies",
        "site_isolated" => "add partners, or remove the site",
        "token_ttl_invalid" => "set [tokens] ttl between 1s and 120s (30s is the default)",
        "token_leeway_invalid" => "set [tokens] leeway between 0s and 5s",
        "session_timeouts_invalid" => {
            "make idle_timeout positive and no longer than absolute_timeout"
        }
        "backchannel_url_invalid" => {
            "give an absolute https:// URL of the site's back-channel logout endpoint (http:// only for localhost), or leave it empty"
        }
        "setting_not_yet_supported" => {
            "remove the key until the feature ships, or expect it to have no effect"
        }
        "hs256_shared_secret" => {
            "prefer algorithm = \"EdDSA\": with HS256 anyone who can verify can also sign"
        }
        _ => "see the README's error table",
    }
}
