//! `session-bridge audit verify|export|tail|fingerprint`.

use crate::audit::export::{self, CSV_HEADER, Filter, Format};
use crate::audit::{read_key, sink, verify};
use crate::config::Config;
use crate::store::SessionId;
use ring::hmac;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(clap::Subcommand)]
pub enum AuditAction {
    /// Check every line's MAC chain; exit 0 when intact, 1 naming the first
    /// bad line. Give rotated files oldest first (audit.log.2 audit.log.1 audit.log).
    Verify {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Files to check (default: `[audit] file`).
        files: Vec<PathBuf>,
        /// Also (or only, without files) check the Redis Stream `sb:audit` at this URL.
        #[arg(long)]
        redis: Option<String>,
    },
    /// Print records for a SIEM, filtered.
    Export {
        #[arg(long)]
        config: Option<PathBuf>,
        /// RFC 3339 time, inclusive.
        #[arg(long)]
        since: Option<String>,
        /// RFC 3339 time, exclusive.
        #[arg(long)]
        until: Option<String>,
        /// An event name, or a prefix ending in `.` such as `token.`.
        #[arg(long)]
        event: Option<String>,
        #[arg(long)]
        site: Option<String>,
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
        files: Vec<PathBuf>,
    },
    /// Print new records as they are written (Ctrl-C stops).
    Tail {
        #[arg(long)]
        config: Option<PathBuf>,
        file: Option<PathBuf>,
    },
    /// The fingerprint of a session ID, to find its events.
    Fingerprint {
        #[arg(long)]
        config: Option<PathBuf>,
        /// The session ID. Base64url IDs may begin with `-`, so it is read
        /// as a value even then.
        #[arg(allow_hyphen_values = true)]
        session_id: String,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
    Cef,
}

fn fail(message: &str, code: u8) -> ExitCode {
    eprintln!("session-bridge: {message}");
    ExitCode::from(code)
}

fn load_config(path: Option<&PathBuf>) -> Result<Config, ExitCode> {
    match path {
        Some(path) => {
            Config::load(path, &crate::config::process_env()).map_err(|e| fail(&e.to_string(), 2))
        }
        None => Ok(Config::default()),
    }
}

fn key_of(config: &Config) -> Result<hmac::Key, ExitCode> {
    read_key(config.audit.key.as_deref(), &config.tokens.keys_dir)
        .map(|key| hmac::Key::new(hmac::HMAC_SHA256, &key))
        .map_err(|e| fail(&format!("cannot read the audit key: {e}"), 2))
}

fn files_or_default(files: Vec<PathBuf>, config: &Config) -> Vec<PathBuf> {
    if files.is_empty() {
        config.audit.file.clone().into_iter().collect()
    } else {
        files
    }
}

fn read_lines(files: &[PathBuf]) -> Result<Vec<String>, ExitCode> {
    let mut lines = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| fail(&format!("{}: {e}", file.display()), 2))?;
        lines.extend(text.lines().map(str::to_owned));
    }
    Ok(lines)
}

pub fn run(action: AuditAction) -> ExitCode {
    let outcome = match action {
        AuditAction::Verify {
            config,
            files,
            redis,
        } => verify_command(config.as_ref(), files, redis.as_deref()),
        AuditAction::Export {
            config,
            since,
            until,
            event,
            site,
            format,
            files,
        } => export_command(config.as_ref(), since, until, event, site, format, files),
        AuditAction::Tail { config, file } => tail_command(config.as_ref(), file),
        AuditAction::Fingerprint { config, session_id } => {
            fingerprint_command(config.as_ref(), &session_id)
        }
    };
    outcome.unwrap_or_else(|code| code)
}

fn verify_command(
    config: Option<&PathBuf>,
    files: Vec<PathBuf>,
    redis: Option<&str>,
) -> Result<ExitCode, ExitCode> {
    let config = load_config(config)?;
    let key = key_of(&config)?;
    let files = if files.is_empty() && redis.is_some() {
        files
    } else {
        files_or_default(files, &config)
    };
    if !files.is_empty() {
        let lines = read_lines(&files)?;
        match verify::verify_lines(&key, lines.iter().map(String::as_str), false) {
            Ok(summary) => println!(
                "intact: {} line(s), {} node(s) in {}",
                summary.lines,
                summary.nodes.len(),
                describe(&files)
            ),
            Err(problem) => return Err(fail(&format!("{}: {problem}", describe(&files)), 1)),
        }
    }
    if let Some(url) = redis {
        let lines = sink::read_stream(url).map_err(|e| fail(&format!("stream: {e}"), 2))?;
        // A stream is trimmed to an approximate length: its oldest chain
        // links are gone, so each node's first entry is taken as the start.
        match verify::verify_lines(&key, lines.iter().map(String::as_str), true) {
            Ok(summary) => println!(
                "intact: {} line(s), {} node(s) in stream {}",
                summary.lines,
                summary.nodes.len(),
                sink::STREAM_KEY
            ),
            Err(problem) => {
                return Err(fail(&format!("stream {}: {problem}", sink::STREAM_KEY), 1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(" + ")
}

fn parse_time(text: Option<String>, flag: &str) -> Result<Option<OffsetDateTime>, ExitCode> {
    text.map(|t| {
        OffsetDateTime::parse(&t, &Rfc3339)
            .map_err(|_| fail(&format!("--{flag} must be an RFC 3339 time"), 2))
    })
    .transpose()
}

#[allow(clippy::too_many_arguments)]
fn export_command(
    config: Option<&PathBuf>,
    since: Option<String>,
    until: Option<String>,
    event: Option<String>,
    site: Option<String>,
    format: ExportFormat,
    files: Vec<PathBuf>,
) -> Result<ExitCode, ExitCode> {
    let config = load_config(config)?;
    let files = files_or_default(files, &config);
    let lines = read_lines(&files)?;
    let filter = Filter {
        since: parse_time(since, "since")?,
        until: parse_time(until, "until")?,
        event,
        site,
        ..Filter::default()
    };
    let format = match format {
        ExportFormat::Jsonl => Format::Jsonl,
        ExportFormat::Csv => Format::Csv,
        ExportFormat::Cef => Format::Cef,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if format == Format::Csv {
        let _ = writeln!(out, "{CSV_HEADER}");
    }
    for record in export::select(lines.iter().map(String::as_str), &filter) {
        let _ = writeln!(out, "{}", export::render(&record, format));
    }
    Ok(ExitCode::SUCCESS)
}

fn tail_command(config: Option<&PathBuf>, file: Option<PathBuf>) -> Result<ExitCode, ExitCode> {
    let config = load_config(config)?;
    let path = file
        .or(config.audit.file)
        .ok_or_else(|| fail("no audit file configured", 2))?;
    follow(&path).map_err(|e| fail(&format!("{}: {e}", path.display()), 2))?;
    Ok(ExitCode::SUCCESS)
}

/// Prints the last lines, then new ones; reopens after a rotation.
fn follow(path: &Path) -> std::io::Result<()> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    for line in &lines[lines.len().saturating_sub(10)..] {
        println!("{line}");
    }
    let mut position = text.len() as u64;
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let Ok(mut file) = std::fs::File::open(path) else {
            continue;
        };
        let size = file.metadata()?.len();
        if size < position {
            position = 0; // rotated: the new file starts over
        }
        if size == position {
            continue;
        }
        file.seek(SeekFrom::Start(position))?;
        let mut reader = BufReader::new(file);
        let mut line = String::new();
        while reader.read_line(&mut line)? > 0 {
            if !line.ends_with('\n') {
                break; // half-written: read it whole next time
            }
            position += line.len() as u64;
            print!("{line}");
            line.clear();
        }
        let _ = std::io::stdout().flush();
    }
}

fn fingerprint_command(config: Option<&PathBuf>, session_id: &str) -> Result<ExitCode, ExitCode> {
    let config = load_config(config)?;
    let key = key_of(&config)?;
    let id = SessionId::parse(session_id)
        .ok_or_else(|| fail("not a session ID (43 base64url characters)", 2))?;
    println!("{}", crate::audit::fingerprint(&key, &id));
    Ok(ExitCode::SUCCESS)
}
