//! Redis round trips per flow-A hand-off and per session read, counted by
//! Redis itself: a regression that adds a store call to the login path
//! fails here.
//!
//! `INFO stats` `total_reads_processed` counts the requests Redis read (one
//! per round trip, as the hand-off's calls are sequential) and `INFO
//! commandstats` the commands they carried.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::StatusCode;
use std::collections::BTreeMap;
use support::app::{Backend, TestApp};
use support::browser::Browser;

/// Counters read from one `INFO` reply.
struct Counters {
    reads: u64,
    /// Command name → calls.
    calls: BTreeMap<String, u64>,
}

fn counters(conn: &mut redis::Connection) -> Counters {
    let info: String = redis::cmd("INFO").arg("everything").query(conn).unwrap();
    let mut reads = None;
    let mut calls = BTreeMap::new();
    for line in info.lines() {
        if let Some(value) = line.strip_prefix("total_reads_processed:") {
            reads = Some(value.trim().parse().unwrap());
        }
        // cmdstat_evalsha:calls=3,usec=...
        if let Some(rest) = line.strip_prefix("cmdstat_")
            && let Some((name, stats)) = rest.split_once(':')
        {
            let count = stats
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))
                .unwrap()
                .parse()
                .unwrap();
            calls.insert(name.to_owned(), count);
        }
    }
    Counters {
        reads: reads.expect("INFO has total_reads_processed"),
        calls,
    }
}

/// Round trips and commands (other than our own `INFO`; commands that
/// scripts run included) between two readings.
fn delta(before: &Counters, after: &Counters) -> (u64, BTreeMap<String, u64>) {
    let mut commands = BTreeMap::new();
    for (name, count) in &after.calls {
        let diff = count - before.calls.get(name).copied().unwrap_or(0);
        if name != "info" && diff > 0 {
            commands.insert(name.clone(), diff);
        }
    }
    // The second INFO's own read is counted in its reply.
    (after.reads - before.reads - 1, commands)
}

async fn hand_off(app: &TestApp, browser: &mut Browser) {
    let start = format!(
        "{}/bridge/start?from=account&return_to=%2F",
        app.origin("shop")
    );
    let started = browser.get(&start).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    let issued = browser.get(started.location().unwrap().as_str()).await;
    assert_eq!(issued.status, StatusCode::SEE_OTHER, "{}", issued.body);
    let accepted = browser.get(issued.location().unwrap().as_str()).await;
    assert_eq!(accepted.status, StatusCode::SEE_OTHER, "{}", accepted.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_off_costs_two_round_trips_once_joined() {
    let app = TestApp::spawn(Backend::Redis).await;
    let client = redis::Client::open(app.redis.as_ref().unwrap().url()).unwrap();
    let mut conn = client.get_connection().unwrap();

    // Warm up: the scripts get loaded (NOSCRIPT, SCRIPT LOAD) once per server.
    let mut warm = Browser::new(app.port);
    app.sign_in(&mut warm, "warm", None).await;
    hand_off(&app, &mut warm).await;
    hand_off(&app, &mut warm).await;

    // A first join: record the token in a transaction that reads the
    // session (1), rewrite its record as "not joined yet" (1), consume (1),
    // then read the session and add the site to it (2).
    let mut browser = Browser::new(app.port);
    app.sign_in(&mut browser, "ada", None).await;
    let before = counters(&mut conn);
    hand_off(&app, &mut browser).await;
    let (round_trips, commands) = delta(&before, &counters(&mut conn));
    assert_eq!(round_trips, 5, "first join: {commands:?}");
    assert_eq!(
        commands,
        // Commands run by scripts and transactions count too: the consume
        // and update scripts each do a GET and a SET.
        BTreeMap::from([
            ("evalsha".to_owned(), 2),
            ("multi".to_owned(), 1),
            ("exec".to_owned(), 1),
            ("get".to_owned(), 4),
            ("set".to_owned(), 4)
        ]),
        "first join"
    );

    // The site has joined: each further hand-off is the issue transaction
    // and the consume script, nothing else.
    const HAND_OFFS: u64 = 20;
    let before = counters(&mut conn);
    for _ in 0..HAND_OFFS {
        hand_off(&app, &mut browser).await;
    }
    let (round_trips, commands) = delta(&before, &counters(&mut conn));
    assert_eq!(round_trips, 2 * HAND_OFFS, "{commands:?}");
    assert_eq!(
        commands,
        BTreeMap::from([
            ("evalsha".to_owned(), HAND_OFFS),
            ("multi".to_owned(), HAND_OFFS),
            ("exec".to_owned(), HAND_OFFS),
            ("get".to_owned(), 2 * HAND_OFFS),
            ("set".to_owned(), 2 * HAND_OFFS)
        ]),
    );

    // A session read that slides the idle timeout: one GETEX.
    let before = counters(&mut conn);
    let read = browser
        .get(&format!("{}/bridge/session", app.origin("shop")))
        .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    let (round_trips, commands) = delta(&before, &counters(&mut conn));
    assert_eq!(round_trips, 1, "{commands:?}");
    assert_eq!(commands, BTreeMap::from([("getex".to_owned(), 1)]));
}
