//! Sentinel: the master is looked up through the sentinels and looked up
//! again when it stops answering or when they name another one (see the
//! parent module's notes).

use super::*;

/// The master of a Sentinel set: looked up again when it stops answering,
/// and when the sentinels name another one.
pub(super) struct SentinelMaster {
    /// The master's name in the sentinels' configuration.
    name: String,
    /// The sentinels, in configured order, for the watcher's questions.
    sentinels: Vec<redis::Client>,
    /// One lookup at a time; the sentinel client needs `&mut` anyway.
    resolver: tokio::sync::Mutex<Resolver>,
    /// The connection to the master last found, if it has not failed since.
    current: Mutex<Option<Master>>,
}

struct Resolver {
    client: SentinelClient,
    generation: u64,
    last_attempt: Option<Instant>,
}

#[derive(Clone)]
pub(super) struct Master {
    conn: MultiplexedConnection,
    /// Where `conn` leads, as the sentinels named it.
    addr: ConnectionAddr,
    /// Tells this connection from a newer one, so a late failure on an old
    /// connection never throws away a fresh one.
    generation: u64,
}

impl SentinelMaster {
    pub(super) fn new(name: &str, sentinels: Vec<redis::Client>, client: SentinelClient) -> Self {
        Self {
            name: name.to_owned(),
            sentinels,
            resolver: tokio::sync::Mutex::new(Resolver {
                client,
                generation: 0,
                last_attempt: None,
            }),
            current: Mutex::new(None),
        }
    }

    fn current(&self) -> Option<Master> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Drops the connection of `generation` (if it is still the current one),
    /// so the next call asks the sentinels where the master is.
    fn forget(&self, generation: u64) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|m| m.generation == generation) {
            *current = None;
        }
    }

    /// The current master connection, looking the master up through the
    /// sentinels (within [`RESOLVE_TIMEOUT`]) when there is none.
    pub(super) async fn master(&self) -> Result<Master, StoreError> {
        if let Some(master) = self.current() {
            return Ok(master);
        }
        bounded(RESOLVE_TIMEOUT, self.resolve()).await?
    }

    async fn resolve(&self) -> Result<Master, StoreError> {
        let mut resolver = self.resolver.lock().await;
        // Whoever held the lock before may have found it already.
        if let Some(master) = self.current() {
            return Ok(master);
        }
        if resolver
            .last_attempt
            .is_some_and(|at| at.elapsed() < RESOLVE_BACKOFF)
        {
            return Err(StoreError::Unavailable(
                "redis master not known yet".to_owned(),
            ));
        }
        // Recorded before trying, so an attempt cut short by the deadline counts too.
        resolver.last_attempt = Some(Instant::now());
        // Asks the sentinels for the master and checks its ROLE...
        let client = resolver
            .client
            .async_get_client()
            .await
            .map_err(|e| unavailable(&e))?;
        // ...then connects to it.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| unavailable(&e))?;
        resolver.generation += 1;
        let master = Master {
            conn,
            addr: client.get_connection_info().addr().clone(),
            generation: resolver.generation,
        };
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(master.clone());
        tracing::info!(
            generation = master.generation,
            "redis: connected to the master named by the sentinels"
        );
        Ok(master)
    }

    pub(super) async fn run(&self, op: Op<'_>) -> Result<Value, StoreError> {
        let master = self.master().await?;
        let mut conn = master.conn.clone();
        match tokio::time::timeout(CALL_TIMEOUT, op.exec(&mut conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                if master_lost(&e) {
                    tracing::warn!(
                        generation = master.generation,
                        "redis: the master failed; asking the sentinels again"
                    );
                    self.forget(master.generation);
                }
                Err(unavailable(&e))
            }
            Err(_) => {
                self.forget(master.generation);
                Err(StoreError::Unavailable("redis timed out".to_owned()))
            }
        }
    }

    /// Starts the watcher: every [`WATCH_INTERVAL`] it asks the sentinels
    /// which master they name, and moves to it when it is not the one in
    /// use. A failover without a crash (`SENTINEL FAILOVER`, a partition)
    /// leaves the old master up and accepting writes until the sentinels
    /// demote it, and writes it takes then are lost; the watcher bounds that
    /// window for this node to about one interval. It ends when the store is
    /// dropped. Without a Tokio runtime there is no watcher, and the store
    /// only moves on errors.
    pub(super) fn watch(link: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                "redis: no runtime for the sentinel watcher; following failovers on errors only"
            );
            return;
        };
        let link = Arc::downgrade(link);
        runtime.spawn(async move {
            let mut connections: Vec<Option<MultiplexedConnection>> = Vec::new();
            loop {
                tokio::time::sleep(WATCH_INTERVAL).await;
                let Some(link) = link.upgrade() else {
                    return;
                };
                connections.resize(link.sentinels.len(), None);
                // Bounded, so a hung sentinel cannot stall the watcher.
                let _ = bounded(RESOLVE_TIMEOUT, link.check(&mut connections)).await;
            }
        });
    }

    /// One look at the sentinels (see [`Self::watch`]).
    async fn check(&self, connections: &mut [Option<MultiplexedConnection>]) {
        let Some((host, port)) = self.named_master(connections).await else {
            // No sentinel answers: nothing to learn; calls fail on their own
            // if the master is gone too.
            return;
        };
        match self.current() {
            Some(master) if addr_is(&master.addr, &host, port) => {}
            Some(master) => {
                tracing::warn!(
                    generation = master.generation,
                    "redis: the sentinels name a new master; moving to it"
                );
                self.forget(master.generation);
                let _ = self.resolve().await;
            }
            // Lost after an error: find it now rather than on the next call.
            None => {
                let _ = self.resolve().await;
            }
        }
    }

    /// The master address the first answering sentinel (in configured
    /// order, as the resolver asks them) names.
    async fn named_master(
        &self,
        connections: &mut [Option<MultiplexedConnection>],
    ) -> Option<(String, u16)> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        for (sentinel, cached) in self.sentinels.iter().zip(connections.iter_mut()) {
            if cached.is_none() {
                *cached = sentinel
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .ok();
            }
            let Some(conn) = cached.as_mut() else {
                continue;
            };
            let reply: RedisResult<Option<(String, u16)>> = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&self.name)
                .query_async(conn)
                .await;
            match reply {
                Ok(Some(addr)) => return Some(addr),
                Ok(None) => {}
                Err(_) => *cached = None,
            }
        }
        None
    }
}

/// Whether `addr` is `host:port`.
fn addr_is(addr: &ConnectionAddr, host: &str, port: u16) -> bool {
    match addr {
        ConnectionAddr::Tcp(h, p) => h == host && *p == port,
        ConnectionAddr::TcpTls {
            host: h, port: p, ..
        } => h == host && *p == port,
        // Not an address the sentinels hand out.
        _ => true,
    }
}

/// Whether an error says the connection no longer leads to a working master
/// (so the sentinels must be asked again), rather than about the command.
fn master_lost(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_unrecoverable_error()
        || matches!(
            super::errors::kind_of(err),
            redis::ErrorKind::Server(
                redis::ServerErrorKind::ReadOnly
                    | redis::ServerErrorKind::MasterDown
                    | redis::ServerErrorKind::BusyLoading
            )
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_masters_are_told_from_command_errors() {
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(master_lost(&io));
        let readonly = RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly),
            "READONLY",
        ));
        assert!(master_lost(&readonly));
        let wrong_type = RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "WRONGTYPE",
        ));
        assert!(!master_lost(&wrong_type));
    }
}
