//! sessiond-load: drives sessiond, Redis or an echo floor with a session
//! workload and reports throughput, latency percentiles and server cost.
//!
//! `sessiond-load run --target sessiond:PATH --workload web --connections 50 --duration 10`
//! `sessiond-load run --target redis-hash:PATH --workload patch --connections 50 --pipeline 16`
//! `sessiond-load compare --rounds 5 --duration 5 --scale-sessions 1000000 --out benches`
//! `sessiond-load compare --cases patch50,patch50x16 --targets sessiond-strict,redis-always,redis-hash-always`

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sessiond_bench::compare::{self, Case, CompareConfig};
use sessiond_bench::run::{RunConfig, load, run};
use sessiond_bench::target::Target;
use sessiond_bench::workload::Workload;

#[derive(Debug, Parser)]
#[command(name = "sessiond-load", version, about = "Load generator for sessiond, Redis and an echo floor")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure one target.
    Run {
        /// sessiond:PATH, sessiond:tls://HOST:PORT, redis:PATH (one JSON
        /// string per session), redis-hash:PATH (one hash per session) or
        /// echo:PATH (an echo server this tool starts on PATH).
        #[arg(long)]
        target: Target,
        /// For a TLS target: the directory with ca.pem, client.pem and
        /// client.key (default: sessiond-data/tls).
        #[arg(long)]
        tls_dir: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "get")]
        workload: Workload,
        #[arg(long, default_value_t = 50)]
        connections: usize,
        /// Requests each connection keeps in flight.
        #[arg(long, default_value_t = 1)]
        pipeline: usize,
        /// Seconds measured, after the warm-up.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        #[command(flatten)]
        shape: Shape,
        /// The server's pid, to report its CPU time and memory.
        #[arg(long)]
        server_pid: Option<u32>,
        /// Also write the report as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Serve echo on a socket (what `--target echo:PATH` starts).
    EchoServe {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long)]
        response_len: usize,
    },
    /// Start sessiond and redis-server at matched durability, run the same
    /// workloads on each (Redis with both session mappings) and on echo,
    /// interleaved; print the tables and write them, the raw reports and the
    /// plots under OUT/results/.
    Compare {
        #[arg(long, default_value_t = NonZeroUsize::new(3).unwrap())]
        rounds: NonZeroUsize,
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        #[command(flatten)]
        shape: Shape,
        /// The directory results/ goes in (benches/RESULTS.md embeds it).
        #[arg(long, default_value = "benches")]
        out: PathBuf,
        /// The sessiond binary (default: next to this one).
        #[arg(long)]
        sessiond: Option<PathBuf>,
        /// Also measure this sessiond binary, in strict mode, in the same
        /// rounds (labelled "baseline strict"): a before/after of a change.
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// Also measure `get` with this many sessions against --sessions,
        /// and memory per session (0: skip).
        #[arg(long, default_value_t = 0)]
        scale_sessions: usize,
        /// The cases to measure, comma-separated (default: all): the
        /// workload and the connections, then `x` and the requests in flight
        /// per connection when more than one: get50, get50x16, get1, patch50,
        /// patch50x16, web50, web50x16.
        #[arg(long, value_delimiter = ',', value_parser = compare::parse_case)]
        cases: Vec<Case>,
        /// The targets to measure, comma-separated (default: all):
        /// sessiond-strict, sessiond-relaxed-1s, redis-always,
        /// redis-hash-always, redis-everysec, redis-hash-everysec,
        /// redis-no-persistence, redis-hash-no-persistence, echo. `redis` keeps
        /// a session as one JSON string, `redis-hash` as one hash; each Redis
        /// persistence setting is one server holding both.
        #[arg(long, value_delimiter = ',', value_parser = compare::parse_target)]
        targets: Vec<String>,
    },
}

/// The sessions measured: how many, and their size.
#[derive(Debug, clap::Args)]
struct Shape {
    /// Sessions created before measuring.
    #[arg(long, default_value_t = 10_000)]
    sessions: usize,
    /// Fields per session.
    #[arg(long, default_value_t = 10)]
    fields: usize,
    /// Bytes per field value (10 x 100: ~1 KiB sessions).
    #[arg(long, default_value_t = 100)]
    value_size: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sessiond-load: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sessiond-load: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: Command) -> Result<(), sessiond_bench::target::Error> {
    match command {
        Command::Run {
            target,
            tls_dir,
            workload,
            connections,
            pipeline,
            duration,
            warmup,
            shape: Shape { sessions, fields, value_size },
            server_pid,
            json,
        } => {
            let target = target.with_tls_dir(tls_dir);
            let echo = match &target {
                Target::Echo(path) => {
                    Some(sessiond_bench::echo::spawn(path, sessiond_bench::echo::response_len(fields, value_size))?)
                }
                _ => None,
            };
            let server_pid = server_pid.or(echo.as_ref().map(std::process::Child::id));
            let config = RunConfig {
                label: target.kind().to_owned(),
                target,
                workload,
                connections,
                pipeline,
                warmup: Duration::from_secs_f64(warmup),
                duration: Duration::from_secs_f64(duration),
                fields,
                value_size,
                server_pid,
                progress: true,
            };
            let keys = Arc::new(load(&config.target, sessions, &config.session_fields()).await?);
            let report = run(&config, keys).await?;
            println!("{}", report.text());
            if let Some(path) = json {
                std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
            }
            if let Some(mut child) = echo {
                let _ = child.kill();
                let _ = child.wait();
            }
            if report.ops == 0 {
                return Err("no operation completed".into());
            }
        }
        Command::EchoServe { socket, response_len } => {
            // Die with the load generator, however it ends.
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            sessiond_bench::echo::serve(&socket, response_len)?;
            std::future::pending::<()>().await;
        }
        Command::Compare {
            rounds,
            duration,
            warmup,
            shape: Shape { sessions, fields, value_size },
            out,
            sessiond,
            baseline,
            scale_sessions,
            cases,
            targets,
        } => {
            let sessiond_bin = match sessiond {
                Some(p) => p,
                None => std::env::current_exe()?.with_file_name("sessiond"),
            };
            let config = CompareConfig {
                rounds,
                warmup: Duration::from_secs_f64(warmup),
                duration: Duration::from_secs_f64(duration),
                sessions,
                fields,
                value_size,
                out_dir: out,
                sessiond_bin,
                baseline_bin: baseline,
                scale_sessions,
                cases: if cases.is_empty() { compare::CASES.to_vec() } else { cases },
                targets: if targets.is_empty() { compare::targets() } else { targets },
            };
            let table = compare::compare(&config).await?;
            std::fs::write(config.out_dir.join("results/table.md"), &table)?;
            println!("{table}");
        }
    }
    Ok(())
}
