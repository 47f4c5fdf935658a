//! Exact web origins (`scheme://host[:port]`): parsing, normalisation, and
//! the same-site relation between two of them.

use std::fmt;
use url::{Host, Url};

/// `http` or `https`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// The port a URL of this scheme uses when none is written.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

/// A normalised origin: lower-case ASCII host (IDN as punycode, no trailing
/// dot) and the port only when it is not the scheme's default.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    scheme: Scheme,
    host: String,
    port: Option<u16>,
    is_ip: bool,
}

/// Why an origin was refused; `code` is stable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginError {
    pub code: &'static str,
    pub message: String,
}

impl fmt::Display for OriginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn refuse(code: &'static str, text: &str, why: &str) -> OriginError {
    OriginError {
        code,
        message: format!("`{text}` is not an exact origin: {why}"),
    }
}

/// A host name as DNS writes it, after IDNA: non-empty labels of ASCII
/// letters, digits, `-` and `_`. The URL standard lets more through (`'`,
/// `;`, `..`); none of it names a real host, and a name such as
/// `a.1..`, trimmed, would turn into something else (`a.1`, an invalid
/// IPv4 address) the next time it is parsed.
fn is_dns_name(host: &str) -> bool {
    host.split('.').all(|label| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

impl Origin {
    /// Parses an exact origin. Refuses paths, queries, fragments, user info,
    /// wildcards, non-HTTP schemes and default ports written out.
    pub fn parse(text: &str) -> Result<Self, OriginError> {
        if text.contains('*') {
            return Err(refuse("origin_wildcard", text, "wildcards are not allowed"));
        }
        if text.eq_ignore_ascii_case("null") {
            return Err(refuse("origin_null", text, "`null` is not an origin"));
        }
        let url = Url::parse(text).map_err(|e| refuse("origin_invalid", text, &e.to_string()))?;
        let scheme = match url.scheme() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => {
                return Err(refuse(
                    "origin_scheme",
                    text,
                    &format!("scheme `{other}` is not http or https"),
                ));
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refuse("origin_userinfo", text, "user info is not allowed"));
        }
        // `Url` accepts "http:a" and turns "https://a" into "https://a/": so
        // demand the literal `scheme://` and refuse anything after the authority.
        let after_scheme = text
            .get(scheme.as_str().len()..)
            .and_then(|rest| rest.strip_prefix("://"))
            .ok_or_else(|| {
                refuse(
                    "origin_invalid",
                    text,
                    "an origin is written scheme://host[:port]",
                )
            })?;
        if after_scheme.contains(['/', '?', '#', '\\'])
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(refuse(
                "origin_path",
                text,
                "an origin has no path, query or fragment",
            ));
        }
        let (host, is_ip) = match url.host() {
            // One trailing dot is the DNS root ("example.com." is example.com).
            Some(Host::Domain(domain)) => {
                (domain.strip_suffix('.').unwrap_or(domain).to_owned(), false)
            }
            Some(Host::Ipv4(ip)) => (ip.to_string(), true),
            Some(Host::Ipv6(ip)) => (format!("[{ip}]"), true),
            None => return Err(refuse("origin_invalid", text, "no host")),
        };
        if host.is_empty() {
            return Err(refuse("origin_invalid", text, "empty host"));
        }
        if !is_ip && !is_dns_name(&host) {
            return Err(refuse(
                "origin_invalid",
                text,
                "the host is not a DNS name (letters, digits, `-` and `_` in non-empty labels)",
            ));
        }
        let written_port = after_scheme
            .rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()) && !port.is_empty());
        if written_port.is_some() && url.port().is_none() {
            return Err(refuse(
                "origin_default_port",
                text,
                "leave out the default port",
            ));
        }
        Ok(Self {
            scheme,
            host,
            port: url.port(),
            is_ip,
        })
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The lower-case ASCII host, without port.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port in effect (the default one when none is written).
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(self.scheme.default_port())
    }

    /// `host` or `host:port` as a browser writes it in the `Host` header.
    pub fn authority(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        }
    }

    /// `localhost` or a name under `.localhost`: a secure context over plain HTTP.
    pub fn is_localhost(&self) -> bool {
        self.host == "localhost" || self.host.ends_with(".localhost")
    }

    /// Whether the bridge may set `Secure` cookies here: HTTPS, or plain HTTP
    /// on `localhost` and `*.localhost` only (DESIGN: no other exception).
    pub fn is_potentially_trustworthy(&self) -> bool {
        self.scheme == Scheme::Https || self.is_localhost()
    }

    /// The browser's "site" of this origin's host: its registrable domain
    /// (eTLD+1, Public Suffix List, private section included); an IP address
    /// or a host that is itself a public suffix is its own site.
    pub fn registrable_domain(&self) -> &str {
        if self.is_ip {
            return &self.host;
        }
        psl::domain_str(&self.host).unwrap_or(&self.host)
    }

    /// How a browser relates two origins.
    pub fn relation(&self, other: &Origin) -> Relation {
        if self == other {
            Relation::SameOrigin
        } else if self.scheme == other.scheme
            && self.registrable_domain() == other.registrable_domain()
        {
            Relation::SameSite
        } else {
            Relation::CrossSite
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.authority())
    }
}

/// Same-origin, same-site (cross-origin) or cross-site, as browsers decide it
/// (schemeful same-site).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Relation {
    SameOrigin,
    SameSite,
    CrossSite,
}

impl Relation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SameOrigin => "same-origin",
            Self::SameSite => "same-site",
            Self::CrossSite => "cross-site",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(text: &str) -> Origin {
        Origin::parse(text).unwrap()
    }

    #[test]
    fn normalises_case_idn_and_trailing_dot() {
        assert_eq!(
            origin("HTTPS://Shop.Example.COM.").to_string(),
            "https://shop.example.com"
        );
        assert_eq!(
            origin("https://bücher.example").host(),
            "xn--bcher-kva.example"
        );
        assert_eq!(
            origin("http://shop.localhost:8080").authority(),
            "shop.localhost:8080"
        );
    }

    #[test]
    fn refuses_anything_but_an_exact_origin() {
        for (bad, code) in [
            ("https://a.example.com/", "origin_path"),
            ("https://a.example.com/x", "origin_path"),
            ("https://a.example.com?q", "origin_path"),
            ("https://user@a.example.com", "origin_userinfo"),
            ("https://*.example.com", "origin_wildcard"),
            ("https://a.example.com:443", "origin_default_port"),
            ("http://a.example.com:80", "origin_default_port"),
            ("ftp://a.example.com", "origin_scheme"),
            ("null", "origin_null"),
            ("a.example.com", "origin_invalid"),
            ("http:a", "origin_invalid"),
            ("https:", "origin_invalid"),
            ("http:\\\\evil.example\\x", "origin_invalid"),
            ("https://a.example.com\\x", "origin_path"),
            ("h", "origin_invalid"),
            (" https://a.example.com", "origin_invalid"),
            // Found by fuzzing: trimmed, `x.6..` became `x.6`, which does
            // not parse again (a name ending in a number is an IPv4 address).
            ("https://'.............5...........6..", "origin_invalid"),
            ("https://a.1..", "origin_invalid"),
            ("https://a..b.example", "origin_invalid"),
            ("https://a;b.example", "origin_invalid"),
            ("https://a'b.example", "origin_invalid"),
        ] {
            assert_eq!(Origin::parse(bad).unwrap_err().code, code, "{bad}");
        }
    }

    #[test]
    fn relation_follows_the_public_suffix_list() {
        let rel = |a: &str, b: &str| origin(a).relation(&origin(b));
        assert_eq!(
            rel("https://a.example.com", "https://a.example.com"),
            Relation::SameOrigin
        );
        assert_eq!(
            rel("https://a.example.com", "https://b.example.com"),
            Relation::SameSite
        );
        assert_eq!(
            rel("https://a.example.com", "http://b.example.com"),
            Relation::CrossSite
        );
        assert_eq!(
            rel("https://a.github.io", "https://b.github.io"),
            Relation::CrossSite
        );
        assert_eq!(
            rel("https://a.example.co.uk", "https://b.example.co.uk"),
            Relation::SameSite
        );
        assert_eq!(
            rel("http://a.localhost:1", "http://b.localhost:1"),
            Relation::CrossSite
        );
        assert_eq!(
            rel("http://127.0.0.1:1", "http://127.0.0.1:2"),
            Relation::SameSite
        );
    }
}
