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

use super::{
    ConsumeOutcome, IssueOutcome, Session, SessionId, Store, StoreError, TokenRecord, TokenStatus,
    UpdateOutcome,
};
use crate::config::StoreConfig;
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{
    AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, RedisError, RedisResult,
    ScriptInvocation, Value,
};
mod codec;
mod issue;
mod sentinel;
mod worker;

use codec::*;
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

/// A PING reply.
fn pong(reply: Value) -> Result<(), StoreError> {
    match reply {
        Value::SimpleString(s) if s == "PONG" => Ok(()),
        Value::BulkString(b) if b == b"PONG" => Ok(()),
        Value::Okay => Ok(()),
        _ => Err(StoreError::Unavailable("unexpected redis reply".to_owned())),
    }
}

/// Slots in a Redis Cluster.
const CLUSTER_SLOTS: u32 = 16384;

/// Whether every slot of the cluster is served by a master that answers and
/// the cluster is up.
///
/// A plain PING fanned out by the crate only reaches the nodes it is still
/// connected to (a dead master drops out silently), a PING routed by slot
/// falls back to any connected node, and a PING is answered even while the
/// cluster refuses keyed commands (`CLUSTERDOWN`). So instead: ask for the
/// slot map (`CLUSTER SLOTS`), insist every slot is assigned, and ask the
/// master of each slot range, by its address (which fails when the crate
/// holds no live connection to it), for `CLUSTER INFO`: it must say
/// `cluster_state:ok`.
async fn cluster_ping(mut conn: ClusterConnection) -> Result<(), StoreError> {
    let slots: Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut conn)
        .await
        .map_err(|e| unavailable(&e))?;
    let ranges = slot_ranges(&slots)
        .ok_or_else(|| StoreError::Unavailable("unexpected redis reply".to_owned()))?;
    let covered: u32 = ranges.iter().map(|r| r.count).sum();
    if covered != CLUSTER_SLOTS {
        return Err(StoreError::Unavailable(
            "redis cluster has unserved slots".to_owned(),
        ));
    }
    let mut pinged: Vec<(&str, u16)> = Vec::new();
    for range in &ranges {
        let master = (range.host.as_str(), range.port);
        if pinged.contains(&master) {
            continue;
        }
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: range.host.clone(),
            port: range.port,
        });
        let reply = conn
            .route_command(redis::cmd("CLUSTER").arg("INFO").clone(), routing)
            .await
            .map_err(|e| unavailable(&e))?;
        let info = bytes_reply(reply)?
            .ok_or_else(|| StoreError::Unavailable("unexpected redis reply".to_owned()))?;
        let state_ok = String::from_utf8_lossy(&info)
            .lines()
            .any(|line| line.trim() == "cluster_state:ok");
        if !state_ok {
            return Err(StoreError::Unavailable("redis cluster down".to_owned()));
        }
        pinged.push(master);
    }
    Ok(())
}

/// One entry of `CLUSTER SLOTS`: how many slots, and their master's address.
#[derive(Debug, PartialEq)]
struct SlotRange {
    count: u32,
    host: String,
    port: u16,
}

/// Parses `CLUSTER SLOTS`: `[[start, end, [host, port, id, ...], replicas...], ...]`.
fn slot_ranges(reply: &Value) -> Option<Vec<SlotRange>> {
    let Value::Array(entries) = reply else {
        return None;
    };
    entries
        .iter()
        .map(|entry| {
            let Value::Array(fields) = entry else {
                return None;
            };
            let start = u16::try_from(int_reply(fields.first()?)?).ok()?;
            let end = u16::try_from(int_reply(fields.get(1)?)?).ok()?;
            let Value::Array(node) = fields.get(2)? else {
                return None;
            };
            let host = bytes_reply(node.first()?.clone()).ok()??;
            let port = u16::try_from(int_reply(node.get(1)?)?).ok()?;
            Some(SlotRange {
                count: u32::from(end.checked_sub(start)?) + 1,
                host: String::from_utf8(host).ok()?,
                port,
            })
        })
        .collect()
}

/// A Redis error as a short, fixed reason: never the server's text (it may
/// quote a key) and never the URL.
/// The kind of `err`, looking through an aborted transaction: Redis refuses
/// a command while queueing it (`READONLY` on a demoted master, `LOADING`,
/// `MASTERDOWN`) and then answers the `EXEC` with `EXECABORT`; the first
/// refusal says what went wrong.
pub(super) fn kind_of(err: &RedisError) -> redis::ErrorKind {
    let kind = err.kind();
    if kind != redis::ErrorKind::Server(redis::ServerErrorKind::ExecAbort) {
        return kind;
    }
    err.clone()
        .into_server_errors()
        .and_then(|errors| errors.iter().find_map(|(_, error)| error.kind()))
        .map_or(kind, redis::ErrorKind::Server)
}

fn unavailable(err: &RedisError) -> StoreError {
    let why = if err.is_timeout() {
        "redis timed out"
    } else if err.is_connection_refusal() {
        "redis refused the connection"
    } else if err.is_connection_dropped() {
        "redis connection lost"
    } else if err.is_io_error() {
        "redis i/o error"
    } else {
        match kind_of(err) {
            redis::ErrorKind::AuthenticationFailed => "redis authentication failed",
            redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading) => "redis is loading",
            redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly) => "redis is read-only",
            redis::ErrorKind::Server(redis::ServerErrorKind::MasterDown) => "redis master down",
            redis::ErrorKind::Server(redis::ServerErrorKind::ClusterDown) => "redis cluster down",
            redis::ErrorKind::Server(redis::ServerErrorKind::TryAgain) => {
                "redis asked to try again"
            }
            redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm) => "redis denied permission",
            redis::ErrorKind::Server(_) | redis::ErrorKind::Extension => "redis command failed",
            redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType => {
                "redis reply unreadable"
            }
            redis::ErrorKind::MasterNameNotFoundBySentinel => "redis sentinel knows no master",
            redis::ErrorKind::EmptySentinelList => "redis sentinel list empty",
            redis::ErrorKind::ClusterConnectionNotFound => "redis cluster node unreachable",
            _ => "redis error",
        }
    };
    StoreError::Unavailable(why.to_owned())
}

impl Store for RedisStore {
    async fn create_session(&self, session: &Session, ttl: Duration) -> Result<(), StoreError> {
        let json = super::encoding::encode_session(session)?;
        // NX: never overwrite an existing session (see the module notes).
        let reply = self
            .query(
                redis::cmd("SET")
                    .arg(super::session_key(&session.id))
                    .arg(json)
                    .arg("PX")
                    .arg(px(ttl))
                    .arg("NX"),
            )
            .await?;
        set_nx_result(reply)
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        let reply = self
            .query(redis::cmd("GET").arg(super::session_key(id)))
            .await?;
        match bytes_reply(reply)? {
            None => Ok(None),
            Some(bytes) => super::encoding::decode_session(&bytes, id).map(Some),
        }
    }

    async fn update_session(
        &self,
        session: &Session,
        expected_version: u64,
        ttl: Duration,
    ) -> Result<UpdateOutcome, StoreError> {
        let json = super::encoding::encode_session(session)?;
        // One script on one key: the version check and the write are atomic.
        let mut script = UPDATE_SESSION.key(super::session_key(&session.id));
        script
            .arg(expected_version.to_string())
            .arg(json)
            .arg(px(ttl));
        let reply = self.invoke(&script).await?;
        let Value::Array(items) = reply else {
            return Err(StoreError::Unavailable("unexpected redis reply".to_owned()));
        };
        match items.first().and_then(int_reply) {
            Some(0) => Ok(UpdateOutcome::Missing),
            Some(1) => Ok(UpdateOutcome::Saved),
            Some(2) => items
                .get(1)
                .and_then(int_reply)
                .and_then(|v| u64::try_from(v).ok())
                .map(|current_version| UpdateOutcome::Conflict { current_version })
                .ok_or_else(|| StoreError::Unavailable("unexpected redis reply".to_owned())),
            Some(3) => Err(corrupt("stored session has no valid version")),
            _ => Err(StoreError::Unavailable("unexpected redis reply".to_owned())),
        }
    }

    async fn get_and_touch_session(
        &self,
        id: &SessionId,
        idle: Duration,
        now: i64,
    ) -> Result<Option<Session>, StoreError> {
        // One command reads the session and sets its TTL to the idle
        // timeout; only in the last idle period before the absolute expiry
        // does a second one cut the TTL short.
        let reply = self
            .query(
                redis::cmd("GETEX")
                    .arg(super::session_key(id))
                    .arg("PX")
                    .arg(px(idle)),
            )
            .await?;
        let Some(bytes) = bytes_reply(reply)? else {
            return Ok(None);
        };
        let session = super::encoding::decode_session(&bytes, id)?;
        let Some(ttl) = super::sliding_ttl(&session, idle, now) else {
            return Ok(None);
        };
        if ttl < idle {
            match self.touch_session(id, ttl).await {
                Ok(_) | Err(StoreError::Unavailable(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Some(session))
    }

    async fn touch_session(&self, id: &SessionId, ttl: Duration) -> Result<bool, StoreError> {
        let reply = self
            .query(
                redis::cmd("PEXPIRE")
                    .arg(super::session_key(id))
                    .arg(px(ttl)),
            )
            .await?;
        match int_reply(&reply) {
            Some(n) => Ok(n > 0),
            None => Err(StoreError::Unavailable("unexpected redis reply".to_owned())),
        }
    }

    async fn delete_session(&self, id: &SessionId) -> Result<bool, StoreError> {
        let reply = self
            .query(redis::cmd("DEL").arg(super::session_key(id)))
            .await?;
        match int_reply(&reply) {
            Some(n) => Ok(n > 0),
            None => Err(StoreError::Unavailable("unexpected redis reply".to_owned())),
        }
    }

    async fn put_token(
        &self,
        jti: &str,
        record: &TokenRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let value = encode_token(record)?;
        // NX: a jti is written once; overwriting could turn a consumed token
        // back into a pending one.
        let reply = self
            .query(
                redis::cmd("SET")
                    .arg(super::token_key(jti))
                    .arg(value)
                    .arg("PX")
                    .arg(px(ttl))
                    .arg("NX"),
            )
            .await?;
        set_nx_result(reply)
    }

    async fn put_token_for_session(
        &self,
        jti: &str,
        record: &TokenRecord,
        issuer: &str,
        now: i64,
        ttl: Duration,
    ) -> Result<IssueOutcome, StoreError> {
        if let Backend::Cluster(_) = self.backend {
            // The session and the token hash to different slots.
            return super::read_then_put_token(self, jti, record, issuer, now, ttl).await;
        }
        self.put_token_in_transaction(jti, record, issuer, now, ttl)
            .await
    }

    async fn peek_token(&self, jti: &str) -> Result<TokenStatus, StoreError> {
        let reply = self
            .query(redis::cmd("GET").arg(super::token_key(jti)))
            .await?;
        let Some(bytes) = bytes_reply(reply)? else {
            return Ok(TokenStatus::Unknown);
        };
        Ok(match decode_token(&bytes)? {
            (TokenState::Pending, record) => TokenStatus::Pending(record),
            (TokenState::Consumed, record) => TokenStatus::Consumed(record),
        })
    }

    async fn consume_token(&self, jti: &str) -> Result<ConsumeOutcome, StoreError> {
        // One script on one key (see the module notes). Note: if this times
        // out, the script may still have run; a retry then sees a replay.
        let script = CONSUME_TOKEN.key(super::token_key(jti));
        let reply = self.invoke(&script).await?;
        let Some(bytes) = bytes_reply(reply)? else {
            return Ok(ConsumeOutcome::Unknown);
        };
        match decode_token(&bytes)? {
            (TokenState::Pending, record) => Ok(ConsumeOutcome::Redeemed(record)),
            (TokenState::Consumed, record) => Ok(ConsumeOutcome::Replayed(record)),
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if let Backend::Cluster(conn) = &self.backend {
            return bounded(CALL_TIMEOUT, cluster_ping(conn.clone())).await?;
        }
        pong(self.query(&redis::cmd("PING")).await?)
    }

    async fn session_ttl(&self, id: &SessionId) -> Result<Option<Duration>, StoreError> {
        let reply = self
            .query(redis::cmd("PTTL").arg(super::session_key(id)))
            .await?;
        // -2: no such key; -1: a key without TTL (never written by us).
        match int_reply(&reply) {
            Some(ms) if ms >= 0 => Ok(Some(Duration::from_millis(ms.unsigned_abs()))),
            Some(_) => Ok(None),
            None => Err(StoreError::Unavailable("unexpected redis reply".to_owned())),
        }
    }

    async fn publish(&self, channel: &str, message: &str) -> Result<(), StoreError> {
        // PUBLISH reaches every subscriber of the deployment (on a cluster it
        // is propagated over the bus), so any node will do.
        self.query(redis::cmd("PUBLISH").arg(channel).arg(message))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn cluster_slots_are_read_per_range() {
        let node = |host: &str, port: i64| {
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("127.0.0.1", 7000),
                node("127.0.0.1", 7003),
            ]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(16383),
                node("10.0.0.2", 7001),
            ]),
        ]);
        let ranges = slot_ranges(&reply).unwrap();
        assert_eq!(
            ranges,
            [
                SlotRange {
                    count: 5461,
                    host: "127.0.0.1".to_owned(),
                    port: 7000
                },
                SlotRange {
                    count: 10923,
                    host: "10.0.0.2".to_owned(),
                    port: 7001
                },
            ]
        );
        assert_eq!(ranges.iter().map(|r| r.count).sum::<u32>(), CLUSTER_SLOTS);
        // Reversed or malformed ranges are refused, not guessed at.
        let reversed = Value::Array(vec![Value::Array(vec![
            Value::Int(10),
            Value::Int(5),
            node("127.0.0.1", 7000),
        ])]);
        assert!(slot_ranges(&reversed).is_none());
        assert!(slot_ranges(&Value::Nil).is_none());
        assert!(slot_ranges(&Value::Array(vec![Value::Int(1)])).is_none());
    }

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
