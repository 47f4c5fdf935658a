//! One Redis connection per server worker, for the one-server topology.
//!
//! Why: a multiplexed connection does its socket I/O in a task on the
//! runtime that opened it. The connection opened at start lives on the main
//! thread, so every command from a worker crossed threads twice — hand the
//! command over, then wake the worker with the reply — which costs two
//! context switches a round trip and, on a small machine, about a tenth of
//! the hand-offs a second (BENCHMARKS.md). A [`WorkerLink`] opens its own
//! connection lazily, on first use, so its I/O runs on the runtime of the
//! worker that uses it.
//!
//! Recovery: every link is a reconnecting [`ConnectionManager`], but a link
//! that sat idle through an outage (or whose last reconnect attempt failed
//! while Redis was still down) would fail its first call after Redis is back,
//! even though another worker already reported the store ready. So the links
//! of one server share a [`Health`] with an epoch that moves when an outage
//! starts (the first lost connection) and when it ends (the first success
//! after one); a link made in an older epoch is replaced by a fresh one
//! before its next call. A watcher pings through the shared connection every
//! [`WATCH_EVERY`], so an outage no request saw (Redis restarted while the
//! bridge was idle, or closed idle clients) moves the epoch too, within a
//! second. A timeout does not: a slow server still holds working
//! connections, and replacing them all would only add reconnects to its
//! load. Nothing is retried: a call that fails still fails closed, exactly
//! as on the shared connection.

use super::StoreError;
use super::errors::unavailable;
use redis::RedisError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

/// How often the watcher pings through the shared connection.
pub(super) const WATCH_EVERY: Duration = Duration::from_millis(500);

/// Outage bookkeeping shared by every connection to one server.
#[derive(Debug, Default)]
pub(super) struct Health {
    epoch: AtomicU64,
    failing: AtomicBool,
}

impl Health {
    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Notes how a call went: the first connection-level failure starts an
    /// outage, the first success after one ends it; each moves the epoch.
    pub(super) fn record(&self, outcome: Outcome) {
        match outcome {
            Outcome::Answered => {
                if self.failing.load(Ordering::Relaxed)
                    && self.failing.swap(false, Ordering::AcqRel)
                {
                    self.epoch.fetch_add(1, Ordering::AcqRel);
                }
            }
            Outcome::ConnectionLost => {
                if !self.failing.load(Ordering::Relaxed)
                    && !self.failing.swap(true, Ordering::AcqRel)
                {
                    self.epoch.fetch_add(1, Ordering::AcqRel);
                }
            }
            // A server error (a script's, READONLY…) says the link works; a
            // timeout says nothing about it.
            Outcome::ServerError | Outcome::Slow => {}
        }
    }
}

/// What one call said about the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    Answered,
    ServerError,
    /// No answer in time (the response timeout or the outer deadline).
    Slow,
    ConnectionLost,
}

impl Outcome {
    /// Classifies a call's result; `None` is the outer deadline passing.
    pub(super) fn of<T>(result: Option<&Result<T, RedisError>>) -> Self {
        match result {
            None => Self::Slow,
            Some(Ok(_)) => Self::Answered,
            Some(Err(e)) if e.is_timeout() => Self::Slow,
            Some(Err(e)) if e.is_io_error() || e.is_connection_dropped() => Self::ConnectionLost,
            Some(Err(_)) => Self::ServerError,
        }
    }
}

/// One Redis server: what a worker needs to open its own connection.
pub(super) struct Server {
    /// The connection opened at start, for callers outside the workers
    /// (background tasks, command-line tools, tests).
    pub(super) shared: ConnectionManager,
    client: redis::Client,
    config: ConnectionManagerConfig,
    pub(super) health: Health,
}

impl Server {
    pub(super) fn new(
        shared: ConnectionManager,
        client: redis::Client,
        config: ConnectionManagerConfig,
    ) -> Self {
        Self {
            shared,
            client,
            config,
            health: Health::default(),
        }
    }
}

/// Pings through `server`'s shared connection every [`WATCH_EVERY`] and
/// notes the outcome, until the store is dropped. Runs on the current
/// runtime.
pub(super) fn watch(server: &Arc<Server>) {
    let server: Weak<Server> = Arc::downgrade(server);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(WATCH_EVERY).await;
            let Some(server) = server.upgrade() else {
                return;
            };
            let mut conn = server.shared.clone();
            let reply = tokio::time::timeout(
                WATCH_EVERY,
                redis::cmd("PING").query_async::<redis::Value>(&mut conn),
            )
            .await
            .ok();
            server.health.record(Outcome::of(reply.as_ref()));
        }
    });
}

/// A worker's own connection to a [`Server`], opened on first use.
pub(super) struct WorkerLink {
    pub(super) server: Arc<Server>,
    /// The connection and the epoch it was made in.
    slot: Mutex<Option<(u64, ConnectionManager)>>,
}

impl WorkerLink {
    pub(super) fn new(server: Arc<Server>) -> Self {
        Self {
            server,
            slot: Mutex::new(None),
        }
    }

    /// This link's connection, replaced first when it predates the last
    /// outage's start or end. Must be called on the runtime that is to run
    /// the connection's I/O (it is opened there).
    pub(super) fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let epoch = self.server.health.epoch();
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((made_in, conn)) = slot.as_ref()
            && *made_in == epoch
        {
            return Ok(conn.clone());
        }
        let conn = ConnectionManager::new_lazy_with_config(
            self.server.client.clone(),
            self.server.config.clone(),
        )
        .map_err(|e| unavailable(&e))?;
        *slot = Some((epoch, conn.clone()));
        Ok(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_epoch_moves_once_when_an_outage_starts_and_once_when_it_ends() {
        let health = Health::default();
        health.record(Outcome::Answered);
        health.record(Outcome::ServerError);
        assert_eq!(health.epoch(), 0, "no outage, no move");
        health.record(Outcome::ConnectionLost);
        health.record(Outcome::ConnectionLost);
        assert_eq!(health.epoch(), 1, "an outage starts once");
        health.record(Outcome::ServerError);
        health.record(Outcome::Slow);
        assert_eq!(health.epoch(), 1);
        health.record(Outcome::Answered);
        health.record(Outcome::Answered);
        assert_eq!(health.epoch(), 2, "and ends once");
    }

    #[test]
    fn a_slow_answer_is_not_a_lost_connection() {
        let health = Health::default();
        health.record(Outcome::Slow);
        assert_eq!(health.epoch(), 0, "a timeout keeps the connections");
        assert_eq!(Outcome::of::<()>(None), Outcome::Slow);
        let timed_out: RedisError = std::io::Error::from(std::io::ErrorKind::TimedOut).into();
        assert_eq!(Outcome::of::<()>(Some(&Err(timed_out))), Outcome::Slow);
        assert_eq!(Outcome::of::<()>(Some(&Ok(()))), Outcome::Answered);
        let io: RedisError = std::io::Error::from(std::io::ErrorKind::ConnectionReset).into();
        assert_eq!(Outcome::of::<()>(Some(&Err(io))), Outcome::ConnectionLost);
        let server = RedisError::from((redis::ErrorKind::Client, "script said no"));
        assert_eq!(Outcome::of::<()>(Some(&Err(server))), Outcome::ServerError);
    }
}
