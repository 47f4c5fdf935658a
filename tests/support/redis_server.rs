//! A throwaway `redis-server` for integration tests.
//!
//! Each [`RedisServer`] is its own process on 127.0.0.1 and a free port, with
//! no persistence, in its own temporary directory. It can be killed and
//! restarted on the same port (fault tests) and is killed when dropped.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a fresh server has to answer PING.
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// Ports tried before giving up (a port can be taken between picking and binding).
const START_ATTEMPTS: usize = 8;

/// A running (or, after [`RedisServer::kill`], stopped) `redis-server`.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts `redis-server` (from `PATH`) on a free port and waits until it
    /// answers. Panics when it cannot.
    pub fn start() -> Self {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let dir = tempfile::tempdir()
                .unwrap_or_else(|e| panic!("cannot make a temporary directory for redis: {e}"));
            let port = free_port();
            match spawn_and_wait(port, dir.path()) {
                Ok(child) => {
                    return Self {
                        child: Some(child),
                        port,
                        dir,
                    };
                }
                Err(why) => failures.push(format!("port {port}: {why}")),
            }
        }
        panic!("redis-server did not start:\n{}", failures.join("\n"));
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the process is up (not killed and not exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the server (SIGKILL, like a crash) and waits for it to exit.
    /// Does nothing when it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing is
    /// answered, like a hung or partitioned Redis. Undo with [`Self::resume`].
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Undoes [`Self::pause`] (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let Some(child) = &self.child else {
            panic!("redis-server is not running");
        };
        let status = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill {signal}: {e}"));
        assert!(status.success(), "kill {signal} failed: {status}");
    }

    /// Kills the server if it runs, then starts a new, empty one on the same
    /// port. Panics when it cannot.
    pub fn restart(&mut self) {
        self.kill();
        // The port was just released; give the OS a few tries to let us rebind.
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match spawn_and_wait(self.port, self.dir.path()) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(why) if Instant::now() >= deadline => {
                    panic!("redis-server did not restart on port {}: {why}", self.port)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port that was free a moment ago: bind port 0, read it, release it.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("cannot bind a local port: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("cannot read a local port: {e}"))
        .port()
}

fn log_path(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!("redis-{port}.log"))
}

/// Starts redis on `port` and waits until THIS process answers (another test's
/// server could hold the port: the reply's `process_id` must be our child's).
fn spawn_and_wait(port: u16, dir: &Path) -> Result<Child, String> {
    let log = log_path(dir, port);
    let mut child = Command::new("redis-server")
        .arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1"])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .args(["--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run redis-server (is it installed and on PATH?): {e}"));

    let url = format!("redis://127.0.0.1:{port}/");
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            return Err(format!(
                "exited with {status}: {}{}",
                stderr.trim(),
                log_tail(&log)
            ));
        }
        match server_pid(&url) {
            Some(pid) if pid == child.id() => return Ok(child),
            Some(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("port is held by another redis-server".to_owned());
            }
            None => {}
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "no answer within {START_TIMEOUT:?}{}",
                log_tail(&log)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `process_id` of the server answering at `url`, once it answers PING.
fn server_pid(url: &str) -> Option<u32> {
    let client = redis::Client::open(url).ok()?;
    let mut con = client
        .get_connection_with_timeout(Duration::from_millis(250))
        .ok()?;
    con.set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    con.set_write_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    let pong: String = redis::cmd("PING").query(&mut con).ok()?;
    if pong != "PONG" {
        return None;
    }
    let info: String = redis::cmd("INFO").arg("server").query(&mut con).ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
}

fn log_tail(log: &Path) -> String {
    match std::fs::read_to_string(log) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(10);
            format!("\n--- {} ---\n{}", log.display(), lines[start..].join("\n"))
        }
        Err(_) => String::new(),
    }
}
