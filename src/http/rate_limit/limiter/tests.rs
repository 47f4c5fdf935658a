use super::*;
use crate::clock::Clock;
use std::net::Ipv4Addr;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn config(bridge: (u32, u32), api: (u32, u32), rejections: (u32, u32)) -> LimitsConfig {
    LimitsConfig {
        bridge_per_second: bridge.0,
        bridge_burst: bridge.1,
        api_per_second: api.0,
        api_burst: api.1,
        token_rejections_per_minute: rejections.0,
        token_rejections_burst: rejections.1,
        max_tracked_clients: 1000,
    }
}

fn limits(config: &LimitsConfig) -> (RateLimits, Clock) {
    let clock = Clock::manual(time::OffsetDateTime::now_utc());
    (RateLimits::new(config, clock.clone()).unwrap(), clock)
}

#[test]
fn a_burst_then_the_sustained_rate() {
    let (limits, clock) = limits(&config((2, 3), (0, 0), (0, 0)));
    let client = ip("203.0.113.1");
    for _ in 0..3 {
        assert_eq!(limits.check(Limit::Bridge, false, client), Ok(()));
    }
    let refused = limits.check(Limit::Bridge, false, client).unwrap_err();
    assert_eq!(refused.limit, Limit::Bridge);
    // Half a second to the next cell, rounded up to whole seconds.
    assert_eq!(refused.retry_after, 1);
    clock.advance(Duration::from_millis(500));
    assert_eq!(limits.check(Limit::Bridge, false, client), Ok(()));
    assert!(limits.check(Limit::Bridge, false, client).is_err());
    // The API has its own budget, off here.
    for _ in 0..100 {
        assert_eq!(limits.check(Limit::Api, false, client), Ok(()));
    }
}

#[test]
fn retry_after_covers_the_wait() {
    let (limits, clock) = limits(&config((0, 0), (0, 0), (2, 1)));
    let client = ip("203.0.113.1");
    assert_eq!(limits.token_refused(client), None);
    let refused = limits.token_refused(client).unwrap();
    // Two a minute: thirty seconds to the next cell.
    assert_eq!(refused.retry_after, 30);
    clock.advance(Duration::from_millis(29_500));
    assert_eq!(
        limits
            .check(Limit::Bridge, true, client)
            .unwrap_err()
            .retry_after,
        1
    );
}

#[test]
fn each_client_has_its_own_budget() {
    let (limits, _clock) = limits(&config((1, 1), (1, 1), (0, 0)));
    assert!(limits.check(Limit::Api, false, ip("192.0.2.1")).is_ok());
    assert!(limits.check(Limit::Api, false, ip("192.0.2.1")).is_err());
    assert!(limits.check(Limit::Api, false, ip("192.0.2.2")).is_ok());
    assert!(limits.check(Limit::Bridge, false, ip("192.0.2.1")).is_ok());
    // An IPv6 /64 is one client; an IPv4-mapped address is the IPv4 one.
    assert!(limits.check(Limit::Api, false, ip("2001:db8::1")).is_ok());
    assert!(
        limits
            .check(Limit::Api, false, ip("2001:db8::ffff:2"))
            .is_err()
    );
    assert!(
        limits
            .check(Limit::Api, false, ip("2001:db8:0:1::1"))
            .is_ok()
    );
    assert!(
        limits
            .check(Limit::Api, false, ip("::ffff:192.0.2.2"))
            .is_err()
    );
}

#[test]
fn client_keys() {
    assert_eq!(
        ClientKey::of(ip("2001:db8:1:2:3:4:5:6")),
        ClientKey::of(ip("2001:db8:1:2::"))
    );
    assert_eq!(
        ClientKey::of(ip("::ffff:10.0.0.1")),
        ClientKey(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))
    );
    assert_ne!(ClientKey::of(ip("10.0.0.1")), ClientKey::of(ip("10.0.0.2")));
}

#[test]
fn spent_rejections_refuse_redemptions_up_front() {
    let (limits, clock) = limits(&config((1000, 1000), (0, 0), (6, 3)));
    let client = ip("198.51.100.7");
    for _ in 0..3 {
        assert_eq!(limits.token_refused(client), None);
        assert_eq!(limits.check(Limit::Bridge, true, client), Ok(()));
    }
    let spent = limits.token_refused(client).unwrap();
    assert_eq!(spent.limit, Limit::TokenRejections);
    assert_eq!(spent.retry_after, 10);
    // Redemptions are refused before any token is looked at; other
    // requests and other clients are not.
    let refused = limits.check(Limit::Bridge, true, client).unwrap_err();
    assert_eq!(refused.limit, Limit::TokenRejections);
    assert_eq!(limits.check(Limit::Bridge, false, client), Ok(()));
    assert_eq!(
        limits.check(Limit::Bridge, true, ip("198.51.100.8")),
        Ok(())
    );
    clock.advance(Duration::from_secs(10));
    assert_eq!(limits.check(Limit::Bridge, true, client), Ok(()));
    // One refill: the next refused token spends it again.
    assert_eq!(limits.token_refused(client), None);
    assert!(limits.token_refused(client).is_some());
}

#[test]
fn the_first_refusal_of_a_window_is_audited() {
    let (limits, clock) = limits(&config((1, 1), (1, 1), (1, 1)));
    let client = ip("203.0.113.9");
    let audited = |limit| {
        (0..20)
            .filter_map(|_| limits.check(limit, false, client).err())
            .filter(|refusal| refusal.audit)
            .count()
    };
    assert_eq!(audited(Limit::Bridge), 1);
    // Each limit has its own window.
    assert_eq!(audited(Limit::Api), 1);
    assert_eq!(audited(Limit::Bridge), 0);
    clock.advance(AUDIT_WINDOW);
    assert_eq!(audited(Limit::Bridge), 1);
    assert_eq!(limits.token_refused(client), None);
    assert!(limits.token_refused(client).unwrap().audit);
    assert!(!limits.check(Limit::Bridge, true, client).unwrap_err().audit);
}

#[test]
fn zero_turns_a_limit_off() {
    let (limits, _clock) = limits(&config((0, 5), (5, 0), (0, 0)));
    assert!(limits.is_off());
    let client = ip("192.0.2.1");
    for _ in 0..1000 {
        assert!(limits.check(Limit::Bridge, true, client).is_ok());
        assert!(limits.check(Limit::Api, false, client).is_ok());
        assert_eq!(limits.token_refused(client), None);
    }
    assert_eq!(limits.tracked(), 0);
    assert!(
        !RateLimits::new(&LimitsConfig::default(), Clock::system())
            .unwrap()
            .is_off()
    );
    assert!(
        RateLimits::new(&LimitsConfig::off(), Clock::system())
            .unwrap()
            .is_off()
    );
}

#[test]
fn configured_values_are_checked() {
    let mut config = LimitsConfig {
        max_tracked_clients: 0,
        ..LimitsConfig::default()
    };
    let err = RateLimits::new(&config, Clock::system()).err().unwrap();
    assert!(err.contains("max_tracked_clients"), "{err}");
    config.max_tracked_clients = 10;
    config.bridge_per_second = u32::MAX;
    let err = RateLimits::new(&config, Clock::system()).err().unwrap();
    assert!(err.contains("bridge_per_second"), "{err}");
}

#[test]
fn idle_clients_are_forgotten() {
    let (limits, clock) = limits(&config((10, 20), (0, 0), (60, 2)));
    for n in 0..50u8 {
        let client = IpAddr::V4(Ipv4Addr::new(10, 0, 0, n));
        let _ = limits.check(Limit::Bridge, true, client);
        let _ = limits.token_refused(client);
        let _ = limits.token_refused(client);
        let _ = limits.token_refused(client);
    }
    assert!(limits.tracked() >= 150, "{}", limits.tracked());
    // Not yet: the audit window is still open for all of them.
    clock.advance(Duration::from_secs(5));
    limits.sweep();
    assert_eq!(limits.tracked(), 50);
    // `governor` keeps a key one emission interval past its refill.
    clock.advance(2 * AUDIT_WINDOW);
    limits.sweep();
    assert_eq!(limits.tracked(), 0);
}

#[test]
fn an_address_spraying_client_cannot_grow_memory_past_the_cap() {
    let max = 100;
    let config = LimitsConfig {
        max_tracked_clients: max,
        ..config((1, 1), (0, 0), (1, 1))
    };
    let (limits, _clock) = limits(&config);
    for n in 0..20_000u32 {
        let client = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n));
        // Every address spends its whole budget, so none is idle.
        let _ = limits.check(Limit::Bridge, true, client);
        let _ = limits.check(Limit::Bridge, true, client);
        let _ = limits.token_refused(client);
        let _ = limits.token_refused(client);
    }
    // Bridge, rejections, audit gate and penalties: each at most twice the cap.
    assert!(limits.tracked() <= 4 * 2 * max, "{}", limits.tracked());
}
