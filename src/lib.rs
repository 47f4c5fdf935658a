//! session-bridge: carries a user's session across web origins that cannot
//! share cookies, with signed, single-use, browser-bound bridge tokens.

pub mod app;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod flows;
pub mod handshake;
pub mod http;
pub mod loadgen;
pub mod metrics;
pub mod sessions;
pub mod store;
pub mod token;
pub mod topology;
