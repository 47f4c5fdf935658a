use super::*;
use crate::config::demo_config;

#[test]
fn demo_topology_is_valid_and_routes_by_host() {
    let config = demo_config("127.0.0.1:8080", 8080);
    let topology = Topology::build(&config.sites).unwrap();
    assert_eq!(
        topology.site_for_host("shop.localhost:8080").unwrap().id,
        "shop"
    );
    assert_eq!(
        topology.site_for_host("SHOP.localhost.:8080").unwrap().id,
        "shop"
    );
    assert!(topology.site_for_host("shop.localhost:8081").is_none());
    assert!(topology.site_for_host("evil.localhost:8080").is_none());
    let shop = topology.site("shop").unwrap();
    assert_eq!(shop.cookie.same_site, SameSite::Lax);
    assert!(shop.cookie.secure);
    assert_eq!(shop.accepts_from, vec!["account", "checkout"]);
}

#[test]
fn resolves_ids_and_exact_origins() {
    let config = demo_config("127.0.0.1:8080", 8080);
    let topology = Topology::build(&config.sites).unwrap();
    assert_eq!(topology.resolve("account").unwrap().0.id, "account");
    let (site, origin) = topology.resolve("http://account.localhost:8080").unwrap();
    assert_eq!(site.id, "account");
    assert_eq!(origin.unwrap().to_string(), "http://account.localhost:8080");
    assert!(topology.resolve("https://account.localhost:8080").is_none());
    assert!(
        topology
            .resolve("http://account.localhost:8080/x")
            .is_none()
    );
    assert!(topology.resolve("nobody").is_none());
    // The exact lookup answers as parsing does, for every spelling.
    let by_parsing = |text: &str| {
        let origin = Origin::parse(text).ok()?;
        let site = topology.site_for_host(&origin.authority())?;
        site.origin_matching(&origin)?;
        Some((site.id.clone(), origin.to_string()))
    };
    for spelling in [
        "http://account.localhost:8080",
        "HTTP://Account.localhost:8080",
        "http://account.localhost.:8080",
        "http://account.localhost:8080/",
        "https://account.localhost:8080",
        "ftp://account.localhost:8080",
        "http://account.localhost:8080?x",
        "://account.localhost:8080",
        "http://shop.localhost:8080",
    ] {
        let resolved = topology.resolve(spelling).map(|(site, origin)| {
            (
                site.id.clone(),
                origin.map(|o| o.to_string()).unwrap_or_default(),
            )
        });
        assert_eq!(resolved, by_parsing(spelling), "{spelling}");
    }
}

#[test]
fn reports_every_problem() {
    let mut config = demo_config("127.0.0.1:8080", 8080);
    config.sites[0].partners.push("ghost".to_owned());
    config.sites[1].origins = vec!["http://account.localhost:8080".to_owned()];
    config.sites[2].return_paths = vec!["cart".to_owned()];
    let errors = Topology::build(&config.sites).unwrap_err();
    let codes: Vec<_> = errors.iter().map(|e| e.code).collect();
    assert!(codes.contains(&"partner_unknown"), "{codes:?}");
    assert!(codes.contains(&"origin_duplicate"), "{codes:?}");
    assert!(codes.contains(&"return_path_invalid"), "{codes:?}");
}

#[test]
fn host_prefix_needs_a_secure_origin() {
    let mut config = demo_config("127.0.0.1:8080", 8080);
    config.sites[0].origins = vec!["http://account.example.com".to_owned()];
    let errors = Topology::build(&config.sites).unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.code == "cookie_host_prefix_insecure")
    );
}
