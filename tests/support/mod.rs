//! Helpers shared by the integration tests (`mod support;`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod app;
pub mod artifacts;
pub mod browser;
pub mod redis_server;
pub mod redis_topologies;
pub mod webdriver;
