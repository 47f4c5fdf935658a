//! The suite-wide leak check's collection side. When `SB_TEST_ARTIFACTS`
//! names a directory (scripts/test.sh sets it), every test that uses these
//! helpers appends each token and session ID it sees to `secrets.txt`, keeps
//! its bridges' audit files, error pages and application logs there, and
//! `scripts/check-leaks.sh` greps all of it for every secret at the end.

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The artifacts directory, when the suite-wide check is on.
pub fn dir() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("SB_TEST_ARTIFACTS")?);
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir)
}

fn append(file: &str, text: &str) {
    if let Some(dir) = dir()
        && let Ok(mut out) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(file))
    {
        let _ = out.write_all(text.as_bytes());
    }
}

/// A token or session ID the bridge handed out (kept only when it is long
/// enough to be unambiguous).
pub fn secret(value: &str) {
    if value.len() >= 40 && !value.contains(char::is_whitespace) {
        append("secrets.txt", &format!("{value}\n"));
    }
}

/// An error answer the bridge produced.
pub fn error_page(status: u16, headers: &str, body: &str) {
    append(
        &format!("error-pages-{}.txt", std::process::id()),
        &format!("== {status}\n{headers}\n{body}\n"),
    );
}

/// Sends this test process's application log (every level) to the
/// artifacts directory. Once per process; a no-op when the check is off.
pub fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let Some(dir) = dir() else { return };
        let path = dir.join(format!("app-log-{}.jsonl", std::process::id()));
        let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        else {
            return;
        };
        let file = std::sync::Mutex::new(file);
        let _ = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(file)
            .try_init();
    });
}
