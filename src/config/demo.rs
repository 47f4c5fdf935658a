//! The demo deployment: three sites on `*.localhost`, each a partner of the others.

use super::{Config, MissingSessionPolicy, SiteConfig};

/// The demo configuration for a listener on `port` (the origins follow it).
///
/// `account` sends visitors without a session to its login page and allows
/// the iframe path; `shop` and `checkout` hand out anonymous sessions, so a
/// cart works before signing in.
pub fn demo_config(listen: &str, port: u16) -> Config {
    demo_config_with_scheme(listen, port, "http")
}

/// The demo on `https://` origins (for `serve --tls-self-signed`).
pub fn demo_config_with_scheme(listen: &str, port: u16, scheme: &str) -> Config {
    let ids = ["account", "shop", "checkout"];
    let sites = ids
        .iter()
        .map(|id| SiteConfig {
            id: (*id).to_owned(),
            origins: vec![format!("{scheme}://{id}.localhost:{port}")],
            partners: ids
                .iter()
                .filter(|p| *p != id)
                .map(|p| (*p).to_owned())
                .collect(),
            return_paths: vec!["/".to_owned()],
            on_missing_session: if *id == "account" {
                MissingSessionPolicy::Login
            } else {
                MissingSessionPolicy::Anonymous
            },
            login_url: "/login".to_owned(),
            cors_origins: Vec::new(),
            delivery: Default::default(),
            // account lets partners try the iframe path (its cookie becomes
            // SameSite=None); browsers that block third-party cookies take
            // the popup or the redirect instead.
            allow_iframe: *id == "account",
            backchannel_logout_url: String::new(),
            cookie: Default::default(),
        })
        .collect();
    let mut config = Config {
        sites,
        ..Config::default()
    };
    config.server.listen = listen.to_owned();
    config.api.keys = vec!["env:SESSION_BRIDGE_API_KEY".to_owned()];
    config.admin.tokens = vec!["env:SESSION_BRIDGE_ADMIN_TOKEN".to_owned()];
    config
}
