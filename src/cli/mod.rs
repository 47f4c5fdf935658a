//! The command line: `serve` (default), `check`, `keys generate|rotate`.

mod audit;
mod check;
mod session;

use crate::app::{StartError, prepare};
use crate::clock::Clock;
use crate::config::{Config, ConfigError, TokenAlgorithm, demo_config_with_scheme, process_env};
use crate::topology::check::check as check_topology;
use clap::{Parser, Subcommand};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "session-bridge",
    version,
    about = "Carries a user's session across web origins that cannot share cookies."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the bridge (with no --config: the three-site demo on the memory store).
    Serve {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address; the demo's origins follow its port.
        #[arg(long)]
        listen: Option<String>,
        /// Serve HTTPS with a certificate made at start for every configured
        /// host (local development; the demo's origins become https://).
        #[arg(long)]
        tls_self_signed: bool,
    },
    /// Validate the configuration and print each site's cookie, the relation
    /// of every pair of sites and the flows that work between them. Exit
    /// status: 0 no error, 1 errors, 2 unreadable or unparsable file.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Drive hand-offs (flow A or B) or session reads against running
    /// bridges, or the reference apps of benches/, and report.
    Bench(BenchArgs),
    /// The audit trail: verify, export, tail, fingerprint.
    Audit {
        #[command(subcommand)]
        action: audit::AuditAction,
    },
    /// Manage signing keys in `[tokens] keys_dir`.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Inspect the session store.
    Session {
        #[command(subcommand)]
        action: session::SessionAction,
    },
}

#[derive(clap::Args)]
struct BenchArgs {
    /// What each virtual browser does: flow-a (start, issue, accept),
    /// flow-b (frame, exchange), session-read, floor (against
    /// benches/floor.rs), peer-read (against benches/peer_session.rs).
    #[arg(long, default_value = "flow-a", value_parser = crate::loadgen::Scenario::parse)]
    scenario: crate::loadgen::Scenario,
    /// A server node's address (repeat for several bridge nodes sharing a Redis).
    #[arg(long, required = true)]
    connect: Vec<std::net::SocketAddr>,
    /// The issuing site's origin (sent as `Host`).
    #[arg(long, default_value = "http://account.localhost:8080")]
    from: String,
    /// The issuing site's id.
    #[arg(long, default_value = "account")]
    from_site: String,
    /// The receiving site's origin.
    #[arg(long, default_value = "http://shop.localhost:8080")]
    to: String,
    /// A key of `[api] keys` (to make one session per virtual browser);
    /// not needed for floor and peer-read.
    #[arg(
        long,
        env = "SESSION_BRIDGE_API_KEY",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true
    )]
    api_key: String,
    /// Virtual browsers.
    #[arg(long, short = 'c', default_value_t = 64)]
    concurrency: usize,
    /// Run this long (e.g. 10s).
    #[arg(long, value_parser = crate::config::Seconds::parse)]
    duration: Option<crate::config::Seconds>,
    /// Or this many iterations.
    #[arg(long)]
    count: Option<u64>,
    /// Start this many iterations per second, paced.
    #[arg(long)]
    rate: Option<f64>,
    /// Client threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print the report as one JSON object (latencies in ms).
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Subcommand)]
enum KeysAction {
    /// Make a new key; being the newest, it signs from the next start.
    Generate(KeyArgs),
    /// Same as generate: a new signing key, older keys keep verifying until removed.
    Rotate(KeyArgs),
}

#[derive(clap::Args)]
struct KeyArgs {
    #[arg(long)]
    config: Option<PathBuf>,
    /// EdDSA (default: the configured algorithm) or HS256.
    #[arg(long, value_parser = parse_algorithm)]
    algorithm: Option<TokenAlgorithm>,
    /// Overrides `[tokens] keys_dir`.
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn parse_algorithm(text: &str) -> Result<TokenAlgorithm, String> {
    match text {
        "EdDSA" => Ok(TokenAlgorithm::EdDSA),
        "HS256" => Ok(TokenAlgorithm::HS256),
        _ => Err("use EdDSA or HS256".to_owned()),
    }
}

/// Loads the file, or the demo configuration for `listen` when there is none.
fn load(
    config: Option<&PathBuf>,
    listen: &str,
    port: u16,
    https: bool,
) -> Result<(Config, bool), ConfigError> {
    let env = process_env();
    match config {
        Some(path) => Config::load(path, &env).map(|c| (c, false)),
        None => {
            let scheme = if https { "https" } else { "http" };
            let demo = toml::Value::try_from(demo_config_with_scheme(listen, port, scheme))
                .map_err(|e| ConfigError::Parse(e.to_string()))?;
            Config::from_value(demo, &env).map(|c| (c, true))
        }
    }
}

/// Runs the command line; returns the process exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve {
        config: None,
        listen: None,
        tls_self_signed: false,
    }) {
        Command::Serve {
            config,
            listen,
            tls_self_signed,
        } => serve(config, listen, tls_self_signed),
        Command::Check { config, format } => check(config, format),
        Command::Audit { action } => audit::run(action),
        Command::Bench(args) => bench(args),
        Command::Keys {
            action: KeysAction::Generate(args) | KeysAction::Rotate(args),
        } => generate_key(args),
        Command::Session { action } => session::run(action),
    }
}

fn serve(config_path: Option<PathBuf>, listen: Option<String>, tls_self_signed: bool) -> ExitCode {
    let default_listen = match &config_path {
        Some(path) => match Config::load(path, &process_env()) {
            Ok(config) => config.server.listen,
            Err(e) => return fail(&e.to_string(), 2),
        },
        None => "127.0.0.1:8080".to_owned(),
    };
    let listen = listen.unwrap_or(default_listen);
    let listener = match TcpListener::bind(&listen) {
        Ok(l) => l,
        Err(e) => return fail(&format!("cannot listen on {listen}: {e}"), 1),
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(8080);
    let (mut config, demo) = match load(config_path.as_ref(), &listen, port, tls_self_signed) {
        Ok(loaded) => loaded,
        Err(e) => return fail(&e.to_string(), 2),
    };
    config.server.listen = listen;
    // The site is picked by scheme and host: over the TLS listener an
    // http:// origin would answer nothing.
    if tls_self_signed
        && let Some(origin) = config
            .sites
            .iter()
            .flat_map(|site| &site.origins)
            .find(|origin| !origin.trim().to_ascii_lowercase().starts_with("https://"))
    {
        return fail(
            &format!(
                "--tls-self-signed serves HTTPS, but `{origin}` is not an https:// origin and \
                 would answer nothing over it: configure its https:// origin, or serve without \
                 --tls-self-signed (behind a proxy that terminates TLS, see [server] trusted_proxies)"
            ),
            1,
        );
    }
    let result = actix_web::rt::System::new().block_on(async move {
        let prepared = prepare(&config, Clock::system(), demo).await?;
        announce(&config, &prepared, demo);
        let tls = if tls_self_signed {
            let made = crate::http::tls::self_signed(&prepared.state.bridge.topology)
                .map_err(|e| StartError::Settings(e.to_string()))?;
            println!(
                "HTTPS with a self-signed certificate for: {}",
                made.hosts.join(", ")
            );
            println!("{}", made.certificate_pem.trim_end());
            Some(made.config)
        } else {
            None
        };
        let server = crate::http::serve(prepared.state, listener, config.server.workers, tls)
            .map_err(|e| StartError::Settings(e.to_string()))?;
        server
            .await
            .map_err(|e| StartError::Settings(e.to_string()))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string(), 1),
    }
}

fn announce(config: &Config, prepared: &crate::app::Prepared, demo: bool) {
    let bridge = &prepared.state.bridge;
    println!(
        "session-bridge listening on {} ({} store)",
        config.server.listen,
        bridge.store.kind()
    );
    for site in bridge.topology.sites() {
        println!("  {:<10} {}", site.id, site.primary_origin());
    }
    if demo {
        println!(
            "Demo: open {}/ to sign in, then follow the links.",
            bridge
                .topology
                .site("account")
                .map(|s| s.primary_origin().to_string())
                .unwrap_or_default()
        );
    }
    if let Some(token) = &prepared.generated_admin_token {
        println!(
            "Demo admin token for /admin/audit (set SESSION_BRIDGE_ADMIN_TOKEN to choose one): {token}"
        );
    }
    if let Some(key) = &prepared.generated_api_key {
        println!("Demo API key (set SESSION_BRIDGE_API_KEY to choose one): {key}");
    }
}

fn fail(message: &str, code: u8) -> ExitCode {
    eprintln!("session-bridge: {message}");
    ExitCode::from(code)
}

fn check(config_path: Option<PathBuf>, format: Format) -> ExitCode {
    let (config, _) = match load(config_path.as_ref(), "127.0.0.1:8080", 8080, false) {
        Ok(loaded) => loaded,
        Err(e) => return fail(&e.to_string(), 2),
    };
    let (report, _) = check_topology(&config);
    let text = match format {
        Format::Text => check::render_text(&report),
        Format::Json => check::render_json(&report),
    };
    println!("{text}");
    if report.has_errors() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn generate_key(args: KeyArgs) -> ExitCode {
    let config = match &args.config {
        Some(path) => match Config::load(path, &process_env()) {
            Ok(c) => c,
            Err(e) => return fail(&e.to_string(), 2),
        },
        None => Config::default(),
    };
    let dir = args.dir.unwrap_or(config.tokens.keys_dir);
    let algorithm = args.algorithm.unwrap_or(config.tokens.algorithm);
    match crate::token::generate_key_file(&dir, algorithm, Clock::system().unix()) {
        Ok(kid) => {
            println!("{kid}");
            eprintln!(
                "made {algorithm} key {kid} in {}; it signs from the next start (unless [tokens] signing_kid pins another)",
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&format!("[{}] {e}", e.code()), 1),
    }
}

fn bench(args: BenchArgs) -> ExitCode {
    let options = crate::loadgen::LoadOptions {
        scenario: args.scenario,
        connect: args.connect,
        from: args.from,
        from_site: args.from_site,
        to: args.to,
        api_key: args.api_key,
        concurrency: args.concurrency.max(1),
        duration: args.duration.map(crate::config::Seconds::as_duration),
        count: args.count,
        rate: args.rate.filter(|r| *r > 0.0),
        threads: args.threads.max(1),
        progress: true,
    };
    match crate::loadgen::run(options) {
        Ok(report) => {
            if args.json {
                // Notes also go to stderr, where a person running a script sees them.
                for note in &report.notes {
                    eprintln!("note: {note}");
                }
                println!("{}", report.to_json());
            } else {
                print!("{}", report.render());
            }
            if report.failed() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => fail(&e, 2),
    }
}
