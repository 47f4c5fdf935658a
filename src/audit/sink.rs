//! Where audit lines go: an append-only file (rotated by size without
//! breaking the chain) and a Redis Stream.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Name of the Redis Stream.
pub const STREAM_KEY: &str = "sb:audit";
/// Approximate length the stream is trimmed to.
pub const STREAM_MAXLEN: usize = 1_000_000;
/// Rotated files kept: `audit.log.1` (newest) … `audit.log.N`.
pub const ROTATED_FILES_KEPT: usize = 10;

/// An audit file, appended to and flushed per batch.
pub struct FileSink {
    path: PathBuf,
    file: File,
    size: u64,
    rotate_bytes: u64,
}

fn open_append(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

impl FileSink {
    pub fn open(path: &Path, rotate_bytes: u64) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_owned(),
            file,
            size,
            rotate_bytes: rotate_bytes.max(1024),
        })
    }

    /// Appends lines (each without newline) and flushes.
    pub fn write(&mut self, lines: &[String]) -> std::io::Result<()> {
        let mut buffer = String::new();
        for line in lines {
            buffer.push_str(line);
            buffer.push('\n');
        }
        self.file.write_all(buffer.as_bytes())?;
        self.file.flush()?;
        self.size += buffer.len() as u64;
        if self.size >= self.rotate_bytes {
            self.rotate()?;
        }
        Ok(())
    }

    /// `audit.log` becomes `audit.log.1` and a new `audit.log` starts; the
    /// chain simply continues in it (verify the files oldest first).
    fn rotate(&mut self) -> std::io::Result<()> {
        let numbered = |n: usize| PathBuf::from(format!("{}.{n}", self.path.display()));
        let _ = std::fs::remove_file(numbered(ROTATED_FILES_KEPT));
        for n in (1..ROTATED_FILES_KEPT).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        std::fs::rename(&self.path, numbered(1))?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// The last line written by `node` in the files at `path` (current first,
/// then rotated ones), to continue its chain after a restart.
pub fn last_line_of(path: &Path, node: &str) -> Option<String> {
    let candidates = std::iter::once(path.to_owned())
        .chain((1..=ROTATED_FILES_KEPT).map(|n| PathBuf::from(format!("{}.{n}", path.display()))));
    for candidate in candidates {
        let Ok(file) = File::open(&candidate) else {
            continue;
        };
        let marker = format!("\"node\":{}", serde_json::Value::String(node.to_owned()));
        let last = BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter(|line| line.contains(&marker))
            .last();
        if last.is_some() {
            return last;
        }
    }
    None
}

/// XADD to the audit stream (a plain synchronous connection: this runs on
/// the audit writer thread, never on a request).
pub struct StreamSink {
    client: redis::Client,
    connection: Option<redis::Connection>,
}

impl StreamSink {
    pub fn new(url: &str) -> Result<Self, String> {
        let client = redis::Client::open(url)
            .map_err(|_| "the [store] url is not a Redis URL".to_owned())?;
        Ok(Self {
            client,
            connection: None,
        })
    }

    /// Adds lines; on failure drops the connection so the next batch
    /// reconnects. The file remains the record of truth.
    pub fn write(&mut self, lines: &[String]) -> Result<(), String> {
        if self.connection.is_none() {
            let timeout = std::time::Duration::from_secs(1);
            let connection = self
                .client
                .get_connection_with_timeout(timeout)
                .map_err(|_| "redis unreachable".to_owned())?;
            let _ = connection.set_read_timeout(Some(timeout));
            let _ = connection.set_write_timeout(Some(timeout));
            self.connection = Some(connection);
        }
        let Some(connection) = self.connection.as_mut() else {
            return Err("redis unreachable".to_owned());
        };
        let mut pipe = redis::pipe();
        for line in lines {
            pipe.cmd("XADD")
                .arg(STREAM_KEY)
                .arg("MAXLEN")
                .arg("~")
                .arg(STREAM_MAXLEN)
                .arg("*")
                .arg("line")
                .arg(line)
                .ignore();
        }
        let result: redis::RedisResult<()> = pipe.query(connection);
        result.map_err(|_| {
            self.connection = None;
            "redis write failed".to_owned()
        })
    }
}

/// Reads every line of the audit stream, oldest first.
pub fn read_stream(url: &str) -> Result<Vec<String>, String> {
    let client = redis::Client::open(url).map_err(|_| "not a Redis URL".to_owned())?;
    let mut connection = client
        .get_connection_with_timeout(std::time::Duration::from_secs(2))
        .map_err(|_| "redis unreachable".to_owned())?;
    let mut lines = Vec::new();
    let mut start = "-".to_owned();
    loop {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(STREAM_KEY)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(1000)
            .query(&mut connection)
            .map_err(|_| "XRANGE failed".to_owned())?;
        let count = reply.ids.len();
        for entry in &reply.ids {
            if let Some(line) = entry.get::<String>("line") {
                lines.push(line);
            }
        }
        match reply.ids.last() {
            Some(last) if count == 1000 => start = format!("({}", last.id),
            _ => break,
        }
    }
    Ok(lines)
}
