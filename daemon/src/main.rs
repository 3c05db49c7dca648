//! The `sessiond` binary: command line, configuration, logging, signals and
//! the service manager's readiness protocol.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sd_notify::NotifyState;
use sessiond::{Config, Server, ServerEvent};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// Sessions are many small allocations made on one thread and freed on
/// another; glibc's allocator spent a third of the writer's time on them
/// (perf, `patch` at 50 connections), mimalloc a small part of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// sessiond: a session-store daemon for web applications.
///
/// With no arguments it serves on its embedded default: data directory
/// ./sessiond-data (created if missing), socket ./sessiond-data/sessiond.sock,
/// strict durability (every acknowledged write is on disk).
///
/// Signals: SIGTERM or SIGINT stop it cleanly; SIGHUP reloads the key ring
/// and the [transfer], [cookies] and log settings.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// TOML configuration file; unknown keys are rejected.
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (database, key ring, and the socket unless --socket is given).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Unix socket path.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Network event-loop threads (0: half the cores, at least one).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    #[command(subcommand)]
    tool: Option<Tool>,
}

/// Offline tools, for a data directory no daemon is running on.
#[derive(Debug, clap::Subcommand)]
enum Tool {
    /// TLS set-up for the TCP listeners.
    #[command(subcommand)]
    Tls(TlsTool),
    /// Verifies the data directory (--data-dir, or the configured one):
    /// redb's integrity check, every record's checksum, the indexes, and
    /// the write-ahead log. Exits 0 if all is well, 1 if not.
    Check,
    /// Copies every readable session of the data directory into a new one,
    /// with the indexes rebuilt; the source is not changed.
    Salvage {
        /// The new data directory; it must not exist.
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
    },
}

#[derive(Debug, clap::Subcommand)]
enum TlsTool {
    /// Writes a CA, a server certificate and a client certificate signed by
    /// it, and their keys (0600), into DIR (default: <data dir>/tls, where
    /// the [tls] settings look for them by default). Refuses to overwrite.
    Init {
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// A name the server is reached by (DNS name or IP address); repeat
        /// for several.
        #[arg(long = "server-name", value_name = "NAME", default_values = ["localhost", "127.0.0.1", "::1"])]
        server_names: Vec<String>,
        /// The client certificate's identity, for tls.allow_clients.
        #[arg(long, value_name = "NAME", default_value = "sessiond-client")]
        client_name: String,
    },
}

type LogHandle = reload::Handle<EnvFilter, Registry>;

fn main() -> ExitCode {
    // Whatever this process creates (database, log, key ring, copies) is
    // its own alone, whatever umask it was started with.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let args = Args::parse();
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sessiond: {e}");
            return ExitCode::from(2);
        }
    };
    let log = init_logging(&config.log);
    if let Some(tool) = &args.tool {
        return run_tool(tool, &config.data_dir);
    }
    let mut server = match Server::start(&config) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("sessiond: {e}");
            return ExitCode::FAILURE;
        }
    };
    let events = server.events();
    fail_closed_on_panic(events.clone());
    match signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                for sig in signals.forever() {
                    let event = if sig == SIGHUP { ServerEvent::Reload } else { ServerEvent::Stop };
                    if events.send(event).is_err() {
                        return;
                    }
                }
            });
        }
        Err(e) => {
            eprintln!("sessiond: cannot install signal handlers: {e}");
            server.shutdown();
            return ExitCode::FAILURE;
        }
    }
    // Ready: the database is open and repaired, the indexes are built and
    // the socket accepts. Tests and scripts wait for the line; systemd for
    // READY=1 (Type=notify).
    let mut listening = vec![server.socket_path().display().to_string()];
    listening.extend(server.tcp_urls().iter().cloned());
    println!("sessiond ready: listening on {}", listening.join(" and "));
    notify(&[NotifyState::Ready]);
    let event = loop {
        match server.wait() {
            ServerEvent::Reload => reload(&args, &mut server, &log),
            other => break other,
        }
    };
    notify(&[NotifyState::Stopping]);
    server.shutdown();
    match event {
        ServerEvent::Fatal(reason) => {
            tracing::error!(%reason, "stopped after a fatal error");
            ExitCode::FAILURE
        }
        _ => {
            tracing::info!("stopped cleanly");
            ExitCode::SUCCESS
        }
    }
}

fn run_tool(tool: &Tool, data_dir: &std::path::Path) -> ExitCode {
    match tool {
        Tool::Tls(TlsTool::Init { dir, server_names, client_name }) => {
            let dir = dir.clone().unwrap_or_else(|| data_dir.join("tls"));
            match sessiond::tls::init(&dir, server_names, client_name) {
                Ok(()) => {
                    println!("wrote {} in {}", sessiond::tls::INIT_FILES.join(", "), dir.display());
                    println!(
                        "serve with:\n[tls]\nlisten = [\"127.0.0.1:7450\"]\nallow_clients = [{client_name:?}]\n\
                         and connect with: sessionctl --socket tls://localhost:7450 --tls-dir {}",
                        dir.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sessiond tls init: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Tool::Check => match sessiond::salvage::check(data_dir) {
            Ok(report) => {
                println!("{report}");
                if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
            }
            Err(e) => {
                eprintln!("sessiond check: {e}");
                ExitCode::FAILURE
            }
        },
        Tool::Salvage { to } => match sessiond::salvage::salvage(data_dir, to) {
            Ok(done) => {
                if done.read_unrepaired {
                    println!("redb refused the database: its last commit was read without repair");
                }
                println!("salvaged {} sessions into {}; {} unreadable", done.sessions, to.display(), done.unreadable);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sessiond salvage: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// A panic on any thread stops the daemon with a non-zero exit, so the
/// service manager restarts it, rather than leaving a thread dead and its
/// clients waiting. The writer also catches its own panics, to answer the
/// requests waiting on it and refuse further writes first; the log holds
/// every acknowledged write either way.
fn fail_closed_on_panic(events: std::sync::mpsc::Sender<ServerEvent>) {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        tracing::error!(%info, "a thread panicked; stopping");
        let _ = events.send(ServerEvent::Fatal(format!("a thread panicked: {info}")));
    }));
}

fn reload(args: &Args, server: &mut Server, log: &LogHandle) {
    let config = match load_config(args) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "reload refused: the configuration is invalid; nothing changed");
            return;
        }
    };
    if std::env::var_os("RUST_LOG").is_none() {
        match EnvFilter::try_new(&config.log) {
            Ok(filter) => {
                let _ = log.reload(filter);
            }
            Err(e) => tracing::error!(error = %e, "log filter not reloaded"),
        }
    }
    if let Err(e) = server.reload(&config) {
        tracing::error!(error = %e, "reload failed; the old keys and settings stay in force");
    }
}

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

fn load_config(args: &Args) -> Result<Config, sessiond::config::ConfigError> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(socket) = &args.socket {
        config.socket = Some(socket.clone());
    }
    if let Some(threads) = args.threads {
        config.threads = threads;
    }
    config.validate()?;
    Ok(config)
}

/// Logs go to stderr (the journal under systemd). RUST_LOG, if set, wins
/// over the configured filter, then and on reload. Colour only on a
/// terminal: escapes would land verbatim in a file or the journal.
fn init_logging(default_filter: &str) -> LogHandle {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let (filter, handle) = reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal()))
        .init();
    handle
}
