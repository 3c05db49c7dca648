//! The `sessiond` binary: command line, configuration, logging, signals.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sessiond::{Config, Server, ServerEvent};
use signal_hook::consts::{SIGINT, SIGTERM};

/// sessiond: a session-store daemon for web applications.
///
/// With no arguments it serves on its embedded default: data directory
/// ./sessiond-data (created if missing), socket ./sessiond-data/sessiond.sock,
/// strict durability (every acknowledged write is on disk).
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// TOML configuration file; unknown keys are rejected.
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (database, and the socket unless --socket is given).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Unix socket path.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Network event-loop threads (0: one per core).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sessiond: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config.log);
    let server = match Server::start(&config) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("sessiond: {e}");
            return ExitCode::FAILURE;
        }
    };
    let events = server.events();
    let signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT]);
    match signals {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    tracing::info!(signal = sig, "stopping");
                    let _ = events.send(ServerEvent::Stop);
                }
            });
        }
        Err(e) => {
            eprintln!("sessiond: cannot install signal handlers: {e}");
            server.shutdown();
            return ExitCode::FAILURE;
        }
    }
    // The readiness line: tests and scripts wait for it.
    println!("sessiond ready: listening on {}", server.socket_path().display());
    let event = server.wait();
    server.shutdown();
    match event {
        ServerEvent::Stop => {
            tracing::info!("stopped cleanly");
            ExitCode::SUCCESS
        }
        ServerEvent::Fatal(reason) => {
            tracing::error!(%reason, "stopped after a fatal error");
            ExitCode::FAILURE
        }
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

fn init_logging(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
