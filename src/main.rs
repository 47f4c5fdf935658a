use std::process::ExitCode;

// A hand-off allocates and frees many small buffers (headers, URLs, JSON)
// across threads; mimalloc does that with a fraction of glibc malloc's CPU
// (BENCHMARKS.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Structured JSON logs by default; SESSION_BRIDGE_LOG_FORMAT=text for people.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("SESSION_BRIDGE_LOG_FORMAT").is_ok_and(|f| f == "text") {
        builder.init();
    } else {
        builder.json().flatten_event(true).init();
    }
    session_bridge::cli::run()
}
