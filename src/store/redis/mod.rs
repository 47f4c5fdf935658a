//! The Redis backend: one server by URL, a master found through Sentinel, or
//! a Redis Cluster — all through the `redis` crate's own support.
//!
//! - **One server** (`[store] url`): a reconnecting [`ConnectionManager`],
//!   and one more per server worker ([`RedisStore::for_worker`]; see
//!   `worker.rs` for why and how a link idle through an outage recovers).
//! - **Cluster** (`[store] cluster`): a [`ClusterConnection`] from
//!   [`ClusterClient`]; every command and script names exactly one key, so
//!   the crate routes it (EVALSHA/EVAL by its key) to the node owning the
//!   slot and follows `MOVED`/`ASK` by itself.
//! - **Sentinel** (`[store] sentinel`): the master is looked up through the
//!   sentinels ([`SentinelClient`], which also checks with `ROLE` that the
//!   address it returns really is a master) and reached over a plain
//!   [`MultiplexedConnection`]. A connection manager would keep reconnecting
//!   to the address it started with — after a failover, the old master — so
//!   instead, when a call fails in a way that says "this is not (or no
//!   longer) a reachable master" (i/o error, timeout, dropped connection,
//!   `READONLY`, `MASTERDOWN`, `LOADING`), the connection is forgotten and the
//!   next call asks the sentinels again. The call that saw the failure is not
//!   retried: it fails closed with [`StoreError::Unavailable`] (a consume that
//!   timed out may have run; retrying it elsewhere could not tell). A
//!   watcher task also asks the sentinels twice a second which master they
//!   name, and moves to it when it is not the one in use: a failover off a
//!   live master (`SENTINEL FAILOVER`, a partition) raises no error here, and
//!   the old master keeps taking writes — which are then lost — until the
//!   sentinels demote it. Sentinel disconnects the clients of a master it
//!   demotes (`CLIENT KILL`), so a demoted master is never kept as a stale
//!   read source either. Replication is asynchronous: a write acknowledged
//!   by a master that dies before its replica has it is lost in a failover
//!   (Redis's own limit; `min-replicas-to-write` on the servers narrows it).
//!
//! Files: this one holds the connections for each topology and the way a
//! call is run on them; `commands.rs` the [`super::Store`] operations;
//! `issue.rs` recording a token; `codec.rs` the scripts and the token
//! record's encoding; `cluster.rs` the cluster's health check;
//! `errors.rs` errors as fixed reasons; `worker.rs` and `sentinel.rs` the
//! per-worker and Sentinel links.
//!
//! Security invariants, and why the code is shaped the way it is:
//!
//! - **One key per write.** Every command and every Lua script writes
//!   exactly one key (`sb:s:{id}` or `sb:t:{jti}`). A script is atomic on one
//!   server, and a single-key script is also legal on Redis Cluster (all its
//!   keys hash to one slot), so the same code is correct on one server,
//!   behind Sentinel and on Cluster. No read-then-write across round trips
//!   to decide a token's state: that would let two concurrent redemptions
//!   both see it pending. The one exception reads a second key: recording a
//!   token reads its session in the same `MULTI`/`EXEC` transaction (one
//!   round trip on one server or behind Sentinel) and may then rewrite or
//!   delete the record before its token is handed out (`issue.rs`); on
//!   Cluster, where the two keys live in different slots, it reads the
//!   session, then writes the token (see
//!   [`super::Store::put_token_for_session`]).
//! - **Token consumption is one script on one key.** Check-and-mark happens
//!   inside Redis, so of any number of concurrent `consume_token` calls for a
//!   jti exactly one sees the pending state; the rest see consumed (replay).
//!   The consumed record is kept until its TTL ends (`KEEPTTL`), so a replay
//!   within the token's lifetime is recognised as a replay, not as unknown.
//! - **Creation is `SET … NX`.** Session ids and jtis are random; an existing
//!   key means a collision (a bug) or an attempt to plant a record, and a
//!   plain `SET` would silently overwrite someone else's session or reset a
//!   consumed token back to pending. `NX` makes "create" never overwrite.
//! - **Session updates are a compare-and-set script** on the stored
//!   `version`, so a stale writer can never overwrite a newer session.
//! - **Every record has a TTL** (`PX`, at least 1 ms): nothing lives forever.
//! - **Errors never carry keys, session ids, tokens or URLs**: a Redis error
//!   is reduced to a fixed, short reason before it leaves this module.
//! - **Fail closed, fast.** Every call is bounded: connection and response
//!   timeouts inside the crate, a bounded number of retries, and an outer
//!   deadline per call ([`CALL_TIMEOUT`]) and per master lookup
//!   ([`RESOLVE_TIMEOUT`]). A dead or hung Redis is an
//!   [`StoreError::Unavailable`] within a few seconds, never a hang; the
//!   store recovers by itself once Redis (or a new master) answers.

use super::StoreError;
use crate::config::StoreConfig;
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{
    AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, RedisError, RedisResult,
    ScriptInvocation, Value,
};
mod cluster;
mod codec;
mod commands;
mod errors;
mod issue;
mod sentinel;
mod worker;

use errors::unavailable;
use sentinel::SentinelMaster;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use worker::{Health, Outcome, Server, WorkerLink};

/// Each TCP connect (with the handshake) gives up after this long.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);
/// Each command gives up after this long.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Reconnect attempts after the first one, per reconnection.
const RECONNECT_RETRIES: usize = 2;
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
const RECONNECT_MAX_DELAY: Duration = Duration::from_millis(400);
/// Outer deadline of one store operation, whatever the topology: a script
/// may take three round trips (EVALSHA, SCRIPT LOAD after NOSCRIPT, EVALSHA).
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Deadline for finding the master through the sentinels and connecting to it.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);
/// After a failed master lookup, calls fail at once for this long instead of
/// asking the sentinels again (a failover takes seconds; don't hammer them).
const RESOLVE_BACKOFF: Duration = Duration::from_millis(200);
/// How often the sentinels are asked which master they name (see
/// `SentinelMaster::watch`).
const WATCH_INTERVAL: Duration = Duration::from_millis(500);
/// Deadline for the first connection to a cluster (all seed nodes, slot map).
const CLUSTER_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One cluster request including its redirections and retries.
const CLUSTER_OVERALL_TIMEOUT: Duration = Duration::from_secs(2);
const CLUSTER_RETRIES: u32 = 3;
const CLUSTER_MIN_RETRY_WAIT_MS: u64 = 50;
const CLUSTER_MAX_RETRY_WAIT_MS: u64 = 400;
/// Sessions and tokens in Redis: one server, Sentinel or Cluster. Clones
/// share one connection (or, for Sentinel, one master lookup).
#[derive(Clone)]
pub struct RedisStore {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Single(Arc<Server>),
    /// A worker's own connection to the one server.
    Worker(Arc<WorkerLink>),
    Cluster(ClusterConnection),
    Sentinel(Arc<SentinelMaster>),
}

impl fmt::Debug for RedisStore {
    // The connections' own Debug prints the connection info (URL, user): keep it out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.backend {
            Backend::Single(_) | Backend::Worker(_) => "RedisStore(single)",
            Backend::Cluster(_) => "RedisStore(cluster)",
            Backend::Sentinel(_) => "RedisStore(sentinel)",
        })
    }
}

/// Which Redis deployment a `[store]` section names.
enum Target<'a> {
    Single(&'a str),
    Sentinel {
        master: &'a str,
        nodes: &'a [String],
    },
    Cluster(&'a [String]),
}

/// Reads `[store]` for Redis: exactly one of `url`, `sentinel`, `cluster`,
/// each URL well-formed. Messages never quote a URL (it may hold a password).
fn target(config: &StoreConfig) -> Result<Target<'_>, String> {
    let chosen = [
        config.url.is_some(),
        config.sentinel.is_some(),
        config.cluster.is_some(),
    ]
    .iter()
    .filter(|set| **set)
    .count();
    if chosen != 1 {
        return Err(
            "[store] kind = \"redis\" needs exactly one of url, sentinel, cluster".to_owned(),
        );
    }
    let check_urls = |what: &str, urls: &[String]| -> Result<(), String> {
        if urls.is_empty() {
            return Err(format!("[store] {what} lists no redis URL"));
        }
        for (i, url) in urls.iter().enumerate() {
            if url.as_str().into_connection_info().is_err() {
                return Err(format!(
                    "[store] {what}: entry {} is not a valid redis URL",
                    i + 1
                ));
            }
        }
        Ok(())
    };
    if let Some(url) = &config.url {
        if url.as_str().into_connection_info().is_err() {
            return Err("[store] url is not a valid redis URL".to_owned());
        }
        return Ok(Target::Single(url));
    }
    if let Some(sentinel) = &config.sentinel {
        if sentinel.master.trim().is_empty() {
            return Err("[store] sentinel.master is empty".to_owned());
        }
        check_urls("sentinel.nodes", &sentinel.nodes)?;
        return Ok(Target::Sentinel {
            master: &sentinel.master,
            nodes: &sentinel.nodes,
        });
    }
    match &config.cluster {
        Some(urls) => {
            check_urls("cluster", urls)?;
            Ok(Target::Cluster(urls))
        }
        None => Err("[store] kind = \"redis\" needs url, sentinel or cluster".to_owned()),
    }
}

impl RedisStore {
    /// Checks a `[store]` section for Redis without connecting: exactly one of
    /// `url`, `sentinel`, `cluster`, with well-formed URLs.
    ///
    /// # Errors
    ///
    /// A message for the operator (it never quotes a URL).
    pub fn check_config(config: &StoreConfig) -> Result<(), String> {
        target(config).map(|_| ())
    }

    /// Connects to the Redis deployment `[store]` names: `url` (one server),
    /// `sentinel` (the master of a Sentinel set, followed across failovers)
    /// or `cluster` (Redis Cluster, from its seed nodes).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the section is invalid (see
    /// [`Self::check_config`] for a readable reason) or Redis does not answer
    /// within a few seconds.
    pub async fn from_config(config: &StoreConfig) -> Result<Self, StoreError> {
        match target(config)
            .map_err(|_| StoreError::Unavailable("invalid [store] section".to_owned()))?
        {
            Target::Single(url) => Self::connect(url).await,
            Target::Sentinel { master, nodes } => Self::connect_sentinel(master, nodes).await,
            Target::Cluster(urls) => Self::connect_cluster(urls).await,
        }
    }

    /// Connects to one Redis server (`redis://…` or `rediss://…`, when built
    /// with TLS support) and keeps reconnecting by itself after it is lost.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the URL is invalid or the server does
    /// not answer within a few seconds.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        // The URL may hold a password: never echo it.
        let client = redis::Client::open(url)
            .map_err(|_| StoreError::Unavailable("invalid redis url".to_owned()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(RECONNECT_RETRIES)
            .set_min_delay(RECONNECT_MIN_DELAY)
            .set_max_delay(RECONNECT_MAX_DELAY)
            .set_exponent_base(2.0);
        let conn = ConnectionManager::new_with_config(client.clone(), config.clone())
            .await
            .map_err(|e| unavailable(&e))?;
        let server = Arc::new(Server::new(conn, client, config));
        worker::watch(&server);
        Ok(Self {
            backend: Backend::Single(server),
        })
    }

    /// Connects to a Redis Cluster through any of its nodes (`redis://…`);
    /// the crate learns the slot map from them and follows it as it changes.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when a URL is invalid or the cluster does
    /// not answer within a few seconds.
    pub async fn connect_cluster(urls: &[String]) -> Result<Self, StoreError> {
        if urls.is_empty() {
            return Err(StoreError::Unavailable(
                "no redis cluster node given".to_owned(),
            ));
        }
        let client = ClusterClient::builder(urls.iter().map(String::as_str))
            .connection_timeout(CONNECTION_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .overall_response_timeout(Some(CLUSTER_OVERALL_TIMEOUT))
            .retries(CLUSTER_RETRIES)
            .min_retry_wait(CLUSTER_MIN_RETRY_WAIT_MS)
            .max_retry_wait(CLUSTER_MAX_RETRY_WAIT_MS)
            .build()
            .map_err(|_| StoreError::Unavailable("invalid redis cluster urls".to_owned()))?;
        let conn = bounded(CLUSTER_CONNECT_TIMEOUT, client.get_async_connection())
            .await?
            .map_err(|e| unavailable(&e))?;
        Ok(Self {
            backend: Backend::Cluster(conn),
        })
    }

    /// Connects to the master named `master` as the sentinels at `nodes`
    /// (`redis://…` of the sentinels themselves) report it, and follows it
    /// across failovers (see the module notes).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when a URL is invalid or no master can be
    /// found and reached within a few seconds.
    pub async fn connect_sentinel(master: &str, nodes: &[String]) -> Result<Self, StoreError> {
        if nodes.is_empty() {
            return Err(StoreError::Unavailable(
                "no redis sentinel given".to_owned(),
            ));
        }
        let client = SentinelClient::build(
            nodes.iter().map(String::as_str).collect(),
            master.to_owned(),
            None,
            SentinelServerType::Master,
        )
        .map_err(|_| StoreError::Unavailable("invalid redis sentinel urls".to_owned()))?;
        let sentinels = nodes
            .iter()
            .map(|url| redis::Client::open(url.as_str()))
            .collect::<RedisResult<Vec<_>>>()
            .map_err(|_| StoreError::Unavailable("invalid redis sentinel urls".to_owned()))?;
        let link = Arc::new(SentinelMaster::new(master, sentinels, client));
        link.master().await?;
        SentinelMaster::watch(&link);
        Ok(Self {
            backend: Backend::Sentinel(link),
        })
    }

    /// A handle for one server worker: on one server, its own connection,
    /// opened on the runtime of its first call (so one worker's commands
    /// never wait on another thread); on Cluster and Sentinel, this store.
    /// The handle shares everything else with this store.
    #[must_use]
    pub fn for_worker(&self) -> Self {
        let server = match &self.backend {
            Backend::Single(server) => Arc::clone(server),
            Backend::Worker(link) => Arc::clone(&link.server),
            Backend::Cluster(_) | Backend::Sentinel(_) => return self.clone(),
        };
        Self {
            backend: Backend::Worker(Arc::new(WorkerLink::new(server))),
        }
    }

    async fn query(&self, cmd: &redis::Cmd) -> Result<Value, StoreError> {
        self.run(Op::Cmd(cmd)).await
    }

    async fn invoke(&self, script: &ScriptInvocation<'_>) -> Result<Value, StoreError> {
        self.run(Op::Script(script)).await
    }

    /// Runs one operation on whatever connection the topology uses, within
    /// [`CALL_TIMEOUT`].
    async fn run(&self, op: Op<'_>) -> Result<Value, StoreError> {
        match &self.backend {
            Backend::Single(server) => {
                let mut conn = server.shared.clone();
                exec_noting_health(&server.health, &mut conn, op).await
            }
            Backend::Worker(link) => {
                let mut conn = link.connection()?;
                exec_noting_health(&link.server.health, &mut conn, op).await
            }
            Backend::Cluster(conn) => {
                let mut conn = conn.clone();
                bounded(CALL_TIMEOUT, op.exec(&mut conn))
                    .await?
                    .map_err(|e| unavailable(&e))
            }
            Backend::Sentinel(link) => link.run(op).await,
        }
    }
}

/// One store operation: a plain command or a script invocation, both on
/// one key, or a transaction (`MULTI`/`EXEC`, never on Cluster).
enum Op<'a> {
    Cmd(&'a redis::Cmd),
    Script(&'a ScriptInvocation<'a>),
    Pipeline(&'a redis::Pipeline),
}

impl Op<'_> {
    async fn exec<C: ConnectionLike + Send>(&self, conn: &mut C) -> RedisResult<Value> {
        match self {
            Self::Cmd(cmd) => cmd.query_async(conn).await,
            // EVALSHA, and on NOSCRIPT (a new master, a restarted node)
            // SCRIPT LOAD and EVALSHA again.
            Self::Script(script) => script.invoke_async(conn).await,
            Self::Pipeline(pipeline) => pipeline.query_async(conn).await,
        }
    }
}

/// Runs `op` within [`CALL_TIMEOUT`] and tells `health` what it said about
/// the connection.
async fn exec_noting_health(
    health: &Health,
    conn: &mut ConnectionManager,
    op: Op<'_>,
) -> Result<Value, StoreError> {
    let result = tokio::time::timeout(CALL_TIMEOUT, op.exec(conn)).await.ok();
    health.record(Outcome::of(result.as_ref()));
    match result {
        Some(reply) => reply.map_err(|e| unavailable(&e)),
        None => Err(StoreError::Unavailable("redis timed out".to_owned())),
    }
}

/// `fut`, or [`StoreError::Unavailable`] once `limit` has passed. The
/// connections are cancellation-safe: an abandoned request's late reply is
/// discarded, never handed to a later one.
async fn bounded<T>(limit: Duration, fut: impl Future<Output = T>) -> Result<T, StoreError> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| StoreError::Unavailable("redis timed out".to_owned()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn store_sections_name_exactly_one_deployment() {
        use crate::config::SentinelConfig;
        let base = StoreConfig {
            kind: crate::config::StoreKind::Redis,
            ..StoreConfig::default()
        };
        let url = StoreConfig {
            url: Some("redis://:secret@127.0.0.1:6379/".to_owned()),
            ..base.clone()
        };
        let sentinel = StoreConfig {
            sentinel: Some(SentinelConfig {
                master: "mymaster".to_owned(),
                nodes: vec!["redis://127.0.0.1:26379".to_owned()],
            }),
            ..base.clone()
        };
        let cluster = StoreConfig {
            cluster: Some(vec![
                "redis://127.0.0.1:7000".to_owned(),
                "redis://127.0.0.1:7001".to_owned(),
            ]),
            ..base.clone()
        };
        for ok in [&url, &sentinel, &cluster] {
            RedisStore::check_config(ok).unwrap();
        }
        assert!(matches!(target(&url), Ok(Target::Single(_))));
        assert!(matches!(
            target(&sentinel),
            Ok(Target::Sentinel {
                master: "mymaster",
                ..
            })
        ));
        assert!(matches!(target(&cluster), Ok(Target::Cluster(urls)) if urls.len() == 2));

        let both = StoreConfig {
            cluster: cluster.cluster.clone(),
            ..url.clone()
        };
        let no_nodes = StoreConfig {
            cluster: Some(Vec::new()),
            ..base.clone()
        };
        let bad_url = StoreConfig {
            cluster: Some(vec![
                "redis://127.0.0.1:7000".to_owned(),
                "http://:secret@nope".to_owned(),
            ]),
            ..base.clone()
        };
        let no_master = StoreConfig {
            sentinel: Some(SentinelConfig {
                master: " ".to_owned(),
                nodes: vec!["redis://127.0.0.1:26379".to_owned()],
            }),
            ..base.clone()
        };
        for bad in [&base, &both, &no_nodes, &bad_url, &no_master] {
            let why = RedisStore::check_config(bad).unwrap_err();
            assert!(why.starts_with("[store]"), "{why}");
            assert!(!why.contains("secret"), "a URL leaked: {why}");
        }
        assert!(
            RedisStore::check_config(&bad_url)
                .unwrap_err()
                .contains("entry 2")
        );
    }
}
