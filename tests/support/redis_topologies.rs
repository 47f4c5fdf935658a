//! Throwaway Redis deployments beyond one server, for integration tests: a
//! Redis Cluster of three masters, and a Sentinel set (a master, a replica
//! and a sentinel).
//!
//! Every process runs on 127.0.0.1 on free ports, without persistence, in a
//! temporary directory, and is killed (SIGKILL) when its owner is dropped.
//! Starting panics with the processes' log tails when it cannot.

use super::redis_server::free_port;
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a fresh process has to answer PING.
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// Whole-deployment attempts (a port can be taken between picking and binding).
const START_ATTEMPTS: usize = 4;

// ------------------------------------------------------------- processes

/// One `redis-server` (or sentinel) process; killed when dropped.
pub struct RedisProcess {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl RedisProcess {
    /// Runs `redis-server` with `args` (which must make it listen on
    /// 127.0.0.1:`port` and log to `log`) and waits until THIS process
    /// answers PING (its `process_id` is our child's).
    fn spawn(port: u16, args: Vec<OsString>, log: PathBuf) -> Result<Self, String> {
        let mut child = Command::new("redis-server")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server (is it installed and on PATH?): {e}")
            });
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                return Err(format!(
                    "port {port}: exited with {status}: {}{}",
                    stderr.trim(),
                    log_tail(&log)
                ));
            }
            match server_pid(port) {
                Some(pid) if pid == child.id() => {
                    return Ok(Self {
                        child: Some(child),
                        port,
                        log,
                    });
                }
                Some(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("port {port} is held by another redis-server"));
                }
                None => {}
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "port {port}: no answer within {START_TIMEOUT:?}{}",
                    log_tail(&log)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the process (SIGKILL, like a crash) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the process (SIGSTOP): connections stay open but nothing is
    /// answered, like a hung or partitioned server. Undo with [`Self::resume`].
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Undoes [`Self::pause`] (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the process is running");
        let status = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill {signal}: {e}"));
        assert!(status.success(), "kill {signal} failed: {status}");
    }

    /// The last lines of the process's log, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// Runs one command on this process; `None` when it does not answer.
    pub fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Option<T> {
        query(self.port, cmd)
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `cmd` on 127.0.0.1:`port` with short timeouts; `None` on any failure.
pub fn query<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> Option<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let mut con = client
        .get_connection_with_timeout(Duration::from_millis(250))
        .ok()?;
    con.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    con.set_write_timeout(Some(Duration::from_secs(1))).ok()?;
    cmd.query(&mut con).ok()
}

/// The `process_id` of the server on `port`, once it answers PING.
fn server_pid(port: u16) -> Option<u32> {
    let pong: String = query(port, &redis::cmd("PING"))?;
    if pong != "PONG" {
        return None;
    }
    let info: String = query(port, redis::cmd("INFO").arg("server"))?;
    info_field(&info, "process_id").and_then(|pid| pid.parse().ok())
}

/// `field` of an `INFO` reply.
pub fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
}

fn log_tail(log: &Path) -> String {
    match std::fs::read_to_string(log) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(15);
            format!("\n--- {} ---\n{}", log.display(), lines[start..].join("\n"))
        }
        Err(_) => String::new(),
    }
}

/// The arguments every test server gets: loopback, `port`, no persistence,
/// files in `dir`, a log file.
fn base_args(port: u16, dir: &Path, log: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    for a in [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
    ] {
        args.push(a.into());
    }
    args.push("--dir".into());
    args.push(dir.as_os_str().to_owned());
    args.push("--logfile".into());
    args.push(log.as_os_str().to_owned());
    args
}

/// Runs `command` and waits at most `limit` for it; kills it past that.
fn run_bounded(command: &mut Command, limit: Duration) -> Result<String, String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    // Read the output on threads so a chatty child cannot block on a full pipe.
    let mut stdout = child.stdout.take().expect("stdout piped");
    let mut stderr = child.stderr.take().expect("stderr piped");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    match status {
        Some(s) if s.success() => Ok(text),
        Some(s) => Err(format!("{command:?} exited with {s}:\n{text}")),
        None => Err(format!("{command:?} ran longer than {limit:?}:\n{text}")),
    }
}

// --------------------------------------------------------------- cluster

/// A Redis Cluster of masters without replicas, all slots assigned.
pub struct RedisCluster {
    pub nodes: Vec<RedisProcess>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts `masters` cluster-enabled servers, joins them with
    /// `redis-cli --cluster create`, and waits until every node reports
    /// `cluster_state:ok` with all nodes known. Panics when it cannot.
    pub fn start(masters: usize) -> Self {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(masters) {
                Ok(cluster) => return cluster,
                Err(why) => failures.push(why),
            }
        }
        panic!("redis cluster did not start:\n{}", failures.join("\n"));
    }

    fn try_start(masters: usize) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut nodes = Vec::new();
        for _ in 0..masters {
            let port = free_port();
            // The cluster bus gets its own free port (port + 10000 may be past 65535).
            let bus = free_port();
            let log = dir.path().join(format!("node-{port}.log"));
            let mut args = base_args(port, dir.path(), &log);
            for a in [
                "--cluster-enabled".to_owned(),
                "yes".to_owned(),
                "--cluster-config-file".to_owned(),
                format!("nodes-{port}.conf"),
                "--cluster-port".to_owned(),
                bus.to_string(),
                // Long enough that a node frozen for a few seconds (fault
                // tests) is not marked failed, which takes 2 × this to undo.
                "--cluster-node-timeout".to_owned(),
                "15000".to_owned(),
            ] {
                args.push(a.into());
            }
            nodes.push(RedisProcess::spawn(port, args, log)?);
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port()));
        }
        create.args(["--cluster-replicas", "0", "--cluster-yes"]);
        run_bounded(&mut create, Duration::from_secs(20))
            .map_err(|e| format!("redis-cli --cluster create failed: {e}"))?;
        let cluster = Self { nodes, _dir: dir };
        cluster.wait_until_ok(Duration::from_secs(20))?;
        Ok(cluster)
    }

    /// Waits until every node says the cluster is ok, knows every node and
    /// sees all 16384 slots served.
    fn wait_until_ok(&self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let want_nodes = self.nodes.len().to_string();
        loop {
            let infos: Vec<Option<String>> = self
                .nodes
                .iter()
                .map(|n| n.query::<String>(redis::cmd("CLUSTER").arg("INFO")))
                .collect();
            let ready = infos.iter().all(|info| {
                info.as_deref().is_some_and(|i| {
                    info_field(i, "cluster_state").as_deref() == Some("ok")
                        && info_field(i, "cluster_slots_ok").as_deref() == Some("16384")
                        && info_field(i, "cluster_known_nodes").as_deref()
                            == Some(want_nodes.as_str())
                })
            });
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let logs: String = self.nodes.iter().map(RedisProcess::log_tail).collect();
                return Err(format!("cluster not ok within {limit:?}: {infos:?}{logs}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `redis://127.0.0.1:PORT/` of every node, for `[store] cluster`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisProcess::url).collect()
    }

    /// Number of keys on each node, in node order.
    pub fn key_counts(&self) -> Vec<i64> {
        self.nodes
            .iter()
            .map(|n| n.query(&redis::cmd("DBSIZE")).unwrap_or(-1))
            .collect()
    }
}

// -------------------------------------------------------------- sentinel

/// A master, one replica of it and one sentinel watching it (quorum 1,
/// `down-after-milliseconds` 1000, `failover-timeout` 3000).
pub struct SentinelSet {
    pub name: String,
    pub master: RedisProcess,
    pub replica: RedisProcess,
    pub sentinel: RedisProcess,
    _dir: tempfile::TempDir,
}

impl SentinelSet {
    /// Starts the three processes and waits until the replica is in sync and
    /// the sentinel knows both. Panics when it cannot.
    pub fn start(name: &str) -> Self {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(name) {
                Ok(set) => return set,
                Err(why) => failures.push(why),
            }
        }
        panic!("redis sentinel set did not start:\n{}", failures.join("\n"));
    }

    fn try_start(name: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let master_port = free_port();
        let log = dir.path().join(format!("master-{master_port}.log"));
        let master =
            RedisProcess::spawn(master_port, base_args(master_port, dir.path(), &log), log)?;

        let replica_port = free_port();
        let log = dir.path().join(format!("replica-{replica_port}.log"));
        let mut args = base_args(replica_port, dir.path(), &log);
        for a in ["--replicaof", "127.0.0.1", &master_port.to_string()] {
            args.push(a.into());
        }
        let replica = RedisProcess::spawn(replica_port, args, log)?;

        // Sentinel rewrites its configuration file: it must be its own and writable.
        let sentinel_port = free_port();
        let log = dir.path().join(format!("sentinel-{sentinel_port}.log"));
        let conf = dir.path().join(format!("sentinel-{sentinel_port}.conf"));
        let text = format!(
            "port {sentinel_port}\n\
             bind 127.0.0.1\n\
             daemonize no\n\
             dir {dir}\n\
             logfile {log}\n\
             sentinel monitor {name} 127.0.0.1 {master_port} 1\n\
             sentinel down-after-milliseconds {name} 1000\n\
             sentinel failover-timeout {name} 3000\n\
             sentinel parallel-syncs {name} 1\n",
            dir = dir.path().display(),
            log = log.display(),
        );
        std::fs::write(&conf, text).map_err(|e| e.to_string())?;
        let sentinel = RedisProcess::spawn(
            sentinel_port,
            vec![conf.into_os_string(), "--sentinel".into()],
            log,
        )?;

        let set = Self {
            name: name.to_owned(),
            master,
            replica,
            sentinel,
            _dir: dir,
        };
        set.wait_until_watched(Duration::from_secs(20))?;
        Ok(set)
    }

    /// Waits until the replica's link to the master is up and the sentinel
    /// names the master and lists the replica as a healthy replica.
    fn wait_until_watched(&self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            let link_up = self
                .replica
                .query::<String>(redis::cmd("INFO").arg("replication"))
                .and_then(|i| info_field(&i, "master_link_status"))
                .as_deref()
                == Some("up");
            let master_known =
                self.master_addr() == Some(("127.0.0.1".to_owned(), self.master.port()));
            let replica_known = self.sentinel_replicas().iter().any(|r| {
                r.get("port").map(String::as_str) == Some(self.replica.port().to_string().as_str())
                    && r.get("flags").is_some_and(|f| {
                        f.contains("slave") && !f.contains("down") && !f.contains("disconnected")
                    })
            });
            if link_up && master_known && replica_known {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "sentinel set not ready within {limit:?} (replica link up: {link_up}, \
                     master known: {master_known}, replica known: {replica_known}){}{}{}",
                    self.master.log_tail(),
                    self.replica.log_tail(),
                    self.sentinel.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `redis://127.0.0.1:PORT/` of the sentinel, for `[store] sentinel.nodes`.
    pub fn sentinel_urls(&self) -> Vec<String> {
        vec![self.sentinel.url()]
    }

    /// The master's address as the sentinel reports it now.
    pub fn master_addr(&self) -> Option<(String, u16)> {
        let reply: Vec<String> = self.sentinel.query(
            redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&self.name),
        )?;
        match reply.as_slice() {
            [ip, port] => Some((ip.clone(), port.parse().ok()?)),
            _ => None,
        }
    }

    fn sentinel_replicas(&self) -> Vec<HashMap<String, String>> {
        self.sentinel
            .query(redis::cmd("SENTINEL").arg("replicas").arg(&self.name))
            .unwrap_or_default()
    }

    /// Waits until the replica has every write the master has acknowledged.
    pub fn wait_replica_caught_up(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let offset = |p: &RedisProcess, field: &str| -> Option<i64> {
            p.query::<String>(redis::cmd("INFO").arg("replication"))
                .and_then(|i| info_field(&i, field))
                .and_then(|v| v.parse().ok())
        };
        let target = offset(&self.master, "master_repl_offset").expect("master offset");
        loop {
            if offset(&self.replica, "slave_repl_offset").is_some_and(|o| o >= target) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replica did not catch up within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (at most `limit`) until the sentinel names another master than
    /// `old_port` and that server says it is a master; returns its port.
    pub fn wait_for_failover(&self, old_port: u16, limit: Duration) -> u16 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some((_, port)) = self.master_addr()
                && port != old_port
            {
                let role: Option<redis::Value> = query(port, &redis::cmd("ROLE"));
                let is_master = matches!(
                    role.as_ref(),
                    Some(redis::Value::Array(items))
                        if matches!(items.first(), Some(redis::Value::BulkString(b)) if b == b"master")
                );
                if is_master {
                    return port;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no failover within {limit:?}{}",
                self.sentinel.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
