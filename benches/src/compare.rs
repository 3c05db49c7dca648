//! `sessiond-load compare`: sessiond and Redis at matched durability, and
//! the echo floor, on the same workloads, interleaved over several rounds,
//! in one table and one plot per case.
//!
//! Each Redis persistence setting is one redis-server holding both mappings
//! of [`crate::target`] (one JSON string per session, `redis …`, and one
//! hash per session, `redis-hash …`) under their own key prefixes; the two
//! are measured one after the other on the same process, like every other
//! pair of targets. The cases ([`CASES`]) run at one request in flight per
//! connection and at 16 (pipelined on the connection); the echo floor runs
//! at depth 1 only, since its client sends its requests in batches and
//! waits for the whole batch, which is no floor for 16 independent
//! requests. `--cases` and `--targets` choose a subset.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plotters::prelude::*;

use crate::report::Report;
use crate::run::{RunConfig, load};
use crate::target::{Error, Target};
use crate::workload::Workload;

/// A case: the workload, its connections, and the requests each connection
/// keeps in flight.
pub type Case = (Workload, usize, usize);

/// The cases the comparison measures, in table order.
pub const CASES: [Case; 7] = [
    (Workload::Get, 50, 1),
    (Workload::Get, 50, 16),
    (Workload::Get, 1, 1),
    (Workload::Patch, 50, 1),
    (Workload::Patch, 50, 16),
    (Workload::Web, 50, 1),
    (Workload::Web, 50, 16),
];

/// A case's name for `--cases`: the workload and the connections, then `x`
/// and the depth when it is more than one (`get1`, `patch50x16`).
pub fn case_name((workload, connections, depth): Case) -> String {
    match depth {
        1 => format!("{}{connections}", workload.name()),
        _ => format!("{}{connections}x{depth}", workload.name()),
    }
}

/// The case's heading in the tables, and its plot's file name.
fn case_title((workload, connections, depth): Case) -> (String, String) {
    match depth {
        1 => (format!("{} x {connections} connections", workload.name()), format!("{}-{connections}", workload.name())),
        _ => (
            format!("{} x {connections} connections x {depth} in flight", workload.name()),
            format!("{}-{connections}x{depth}", workload.name()),
        ),
    }
}

/// The case named `name` (for `--cases`).
pub fn parse_case(name: &str) -> Result<Case, String> {
    CASES.into_iter().find(|c| case_name(*c) == name).ok_or_else(|| {
        let all: Vec<String> = CASES.into_iter().map(case_name).collect();
        format!("no case {name:?}; the cases are {}", all.join(", "))
    })
}

/// The label of `--baseline`'s server.
pub const BASELINE: &str = "baseline strict";

/// sessiond's durabilities: (label, its `[durability]` section).
const SESSIOND: [(&str, &str); 2] =
    [("sessiond strict", "mode = \"strict\""), ("sessiond relaxed 1s", "mode = \"relaxed\"\nflush_interval_ms = 1000")];

/// Redis's persistence settings, in the order of the sessiond durabilities
/// they match, then none: (the labels' suffix, redis-server's arguments).
const REDIS: [(&str, &[&str]); 3] = [
    ("always", &["--appendonly", "yes", "--appendfsync", "always"]),
    ("everysec", &["--appendonly", "yes", "--appendfsync", "everysec"]),
    ("no persistence", &["--appendonly", "no"]),
];

/// A mapping of a session to Redis: (the labels' prefix, its target on a
/// server's socket).
type Mapping = (&'static str, fn(PathBuf) -> Target);

/// The mappings of [`crate::target`], measured on each Redis server.
const MAPPINGS: [Mapping; 2] = [("redis", Target::Redis), ("redis-hash", Target::RedisHash)];

/// Every target the comparison can measure, by label, in table order.
pub fn targets() -> Vec<String> {
    let sessiond = SESSIOND.iter().map(|(label, _)| (*label).to_owned());
    let redis = REDIS.iter().flat_map(|(p, _)| MAPPINGS.iter().map(move |(m, _)| format!("{m} {p}")));
    sessiond.chain(redis).chain(["echo".to_owned()]).collect()
}

/// A label's name for `--targets`: `-` for its spaces.
pub fn target_name(label: &str) -> String {
    label.replace(' ', "-")
}

/// The label of the target named `name` (for `--targets`).
pub fn parse_target(name: &str) -> Result<String, String> {
    let all = targets();
    all.iter().find(|l| target_name(l) == name).cloned().ok_or_else(|| {
        let names: Vec<String> = all.iter().map(|l| target_name(l)).collect();
        format!("no target {name:?}; the targets are {}", names.join(", "))
    })
}

#[derive(Debug, Clone)]
pub struct CompareConfig {
    /// Every ratio is taken round by round, so there is at least one.
    pub rounds: NonZeroUsize,
    pub warmup: Duration,
    pub duration: Duration,
    pub sessions: usize,
    pub fields: usize,
    pub value_size: usize,
    pub out_dir: PathBuf,
    pub sessiond_bin: PathBuf,
    /// Another sessiond binary, measured in strict mode in the same rounds
    /// as [`BASELINE`]: a before/after of a change, interleaved.
    pub baseline_bin: Option<PathBuf>,
    /// Sessions for the scale step (0: skip it): `get` on one connection
    /// with this many sessions against `sessions`, and memory per session.
    pub scale_sessions: usize,
    /// The cases measured (of [`CASES`]; measured in its order).
    pub cases: Vec<Case>,
    /// The targets measured, by label (of [`targets`]; in its order). The
    /// sessiond binary is needed only for sessiond's.
    pub targets: Vec<String>,
}

/// A server this run started, killed on drop.
struct Server {
    /// For Redis, its JSON mapping.
    target: Target,
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sessiond(bin: &Path, label: &str, durability: &str) -> Result<Server, Error> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("sessiond.toml");
    std::fs::write(&config, format!("[durability]\n{durability}\n[limits]\nmax_connections = 4096\n"))?;
    let mut child = Command::new(bin)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if !line.starts_with("sessiond ready") {
        return Err(format!("{label} did not start: {line:?}").into());
    }
    let target = Target::Sessiond(dir.path().join("data/sessiond.sock"));
    Ok(Server { target, child, dir })
}

fn start_redis(label: &str, persistence: &[&str]) -> Result<Server, Error> {
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("redis.sock");
    let child = Command::new("redis-server")
        .args(["--port", "0", "--unixsocket"])
        .arg(&socket)
        .args(["--unixsocketperm", "700", "--dir"])
        .arg(dir.path())
        .args(["--save", "", "--maxclients", "4096", "--loglevel", "warning"])
        .args(persistence)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start redis-server (install it: apt-get install redis-server): {e}"))?;
    let start = Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if start.elapsed() > Duration::from_secs(10) {
            return Err(format!("{label} did not start").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Server { target: Target::Redis(socket), child, dir })
}

/// A target of the comparison and what its runs need.
struct Contender {
    label: String,
    target: Target,
    /// The server's process, for its CPU time and memory.
    pid: u32,
    keys: Arc<Vec<String>>,
}

/// Whether `label` runs in `case`: the echo floor at depth 1 only.
fn runs_in(label: &str, (_, _, depth): Case) -> bool {
    label != "echo" || depth == 1
}

pub async fn compare(config: &CompareConfig) -> Result<String, Error> {
    let cases: Vec<Case> = CASES.into_iter().filter(|c| config.cases.contains(c)).collect();
    let wanted = |label: &str| config.targets.iter().any(|t| t == label);
    let mut servers = Vec::new();
    let mut contenders = Vec::new();
    let baseline = config.baseline_bin.as_ref().map(|bin| (bin, BASELINE, SESSIOND[0].1));
    let sessionds = SESSIOND.iter().filter(|(label, _)| wanted(label)).map(|(l, d)| (&config.sessiond_bin, *l, *d));
    for (bin, label, durability) in sessionds.chain(baseline) {
        let server = start_sessiond(bin, label, durability)?;
        let (target, pid) = (server.target.clone(), server.child.id());
        contenders.push(Contender { label: label.to_owned(), target, pid, keys: Arc::default() });
        servers.push(server);
    }
    for (persistence, args) in REDIS {
        let mappings: Vec<_> = MAPPINGS
            .iter()
            .map(|(m, target)| (format!("{m} {persistence}"), target))
            .filter(|(label, _)| wanted(label))
            .collect();
        if mappings.is_empty() {
            continue;
        }
        // One server for both mappings: they are measured on the same
        // process, as each sessiond durability is.
        let server = start_redis(&format!("redis {persistence}"), args)?;
        for (label, target) in mappings {
            let (target, pid) = (target(server.target.path().to_owned()), server.child.id());
            contenders.push(Contender { label, target, pid, keys: Arc::default() });
        }
        servers.push(server);
    }
    let echo_dir = tempfile::tempdir()?;
    let mut echo = None;
    if wanted("echo") && cases.iter().any(|c| runs_in("echo", *c)) {
        let path = echo_dir.path().join("echo.sock");
        let child = crate::echo::spawn(&path, crate::echo::response_len(config.fields, config.value_size))?;
        contenders.push(Contender {
            label: "echo".into(),
            target: Target::Echo(path),
            pid: child.id(),
            keys: Arc::default(),
        });
        echo = Some(child);
    }
    if contenders.is_empty() || cases.is_empty() {
        return Err("no target or no case to measure".into());
    }

    let fields =
        crate::sample_fields(config.fields, config.value_size).into_iter().map(|f| (f.name, f.value)).collect();
    for c in &mut contenders {
        if !matches!(c.target, Target::Echo(_)) {
            eprintln!("loading {} sessions into {}", config.sessions, c.label);
            c.keys = Arc::new(load(&c.target, config.sessions, &fields).await?);
        }
    }
    // results[case][target] = one report per round (none where it does not run).
    let mut results: Vec<Vec<Vec<Report>>> = vec![vec![Vec::new(); contenders.len()]; cases.len()];
    for round in 0..config.rounds.get() {
        for (c, &case) in cases.iter().enumerate() {
            let (workload, connections, pipeline) = case;
            let order: Vec<usize> = (0..contenders.len()).filter(|t| runs_in(&contenders[*t].label, case)).collect();
            for i in 0..order.len() {
                // Rotate the order each round so no target always runs first.
                let t = order[(i + round) % order.len()];
                let contender = &contenders[t];
                let run = RunConfig {
                    target: contender.target.clone(),
                    label: contender.label.clone(),
                    workload,
                    connections,
                    pipeline,
                    warmup: config.warmup,
                    duration: config.duration,
                    fields: config.fields,
                    value_size: config.value_size,
                    server_pid: Some(contender.pid),
                    progress: false,
                };
                let report = crate::run::run(&run, contender.keys.clone()).await?;
                eprintln!("round {}/{}: {}", round + 1, config.rounds, report.text().lines().next().unwrap_or(""));
                results[c][t].push(report);
            }
        }
    }
    servers.clear();
    if let Some(mut echo) = echo {
        let _ = echo.kill();
        let _ = echo.wait();
    }
    let labels: Vec<&str> = contenders.iter().map(|c| c.label.as_str()).collect();
    let mut md = write_outputs(config, &cases, &labels, &results)?;
    if config.scale_sessions > 0 {
        md.push_str(&scale(config).await?);
    }
    Ok(md)
}

/// One server of the scale step and what it measured.
struct Scaled {
    label: &'static str,
    sessions: usize,
    server: Server,
    keys: Arc<Vec<String>>,
    /// sessiond: its database and log after loading; Redis: none.
    disk_bytes: Option<u64>,
    /// One report per round.
    reports: Vec<Report>,
}

/// Warm-up before each server's first scale measurement. After loading a
/// million sessions sessiond's session cache and redb's page cache hold what
/// loading wrote last, not what uniform reads need, and they take seconds to
/// settle: in one probe the first 5 s measured p50 82 µs, the next 20 s
/// 64-72 µs. A running server serves from the settled state, so that is
/// what is measured.
const SCALE_WARMUP: Duration = Duration::from_secs(10);

/// `get` on one connection against four servers loaded at once (sessiond
/// strict and Redis without persistence, each with `sessions` and with
/// `scale_sessions`), measured in interleaved rounds like the main table;
/// and each server's resident memory (and sessiond's files) per session.
///
/// All four are loaded before any is measured, so the small and the large
/// server of a pair are measured seconds apart in every round: measured one
/// size after the other, minutes apart, the ratio moved between 0.91x and
/// 1.32x from run to run on this shared machine, for Redis as much as for
/// sessiond.
async fn scale(config: &CompareConfig) -> Result<String, Error> {
    let fields =
        crate::sample_fields(config.fields, config.value_size).into_iter().map(|f| (f.name, f.value)).collect();
    let sizes = [config.sessions, config.scale_sessions];
    let mut servers: Vec<Scaled> = Vec::new();
    for &sessions in &sizes {
        for label in ["sessiond strict", "redis no persistence"] {
            // Checkpoints at least every second, so the last one after
            // loading is over before the measurement starts.
            let server = match label {
                "sessiond strict" => {
                    start_sessiond(&config.sessiond_bin, label, "mode = \"strict\"\ncheckpoint_secs = 1")?
                }
                _ => start_redis(label, &["--appendonly", "no"])?,
            };
            eprintln!("scale: loading {sessions} sessions into {label}");
            let keys = Arc::new(load(&server.target, sessions, &fields).await?);
            servers.push(Scaled { label, sessions, server, keys, disk_bytes: None, reports: Vec::new() });
        }
    }
    // Measure reads, not the write-back of what loading wrote: let the last
    // checkpoint finish, then write every dirty page out.
    tokio::time::sleep(Duration::from_secs(3)).await;
    rustix::fs::sync();
    for s in &mut servers {
        s.disk_bytes = matches!(s.server.target, Target::Sessiond(_) | Target::SessiondTls { .. }).then(|| {
            let data = s.server.dir.path().join("data");
            ["sessions.redb", "sessions.log", "sessions.2.log"]
                .iter()
                .filter_map(|f| std::fs::metadata(data.join(f)).ok())
                .map(|m| m.len())
                .sum()
        });
    }
    for round in 0..config.rounds.get() {
        let n = servers.len();
        for i in 0..n {
            let s = &mut servers[(i + round) % n];
            let run = RunConfig {
                target: s.server.target.clone(),
                label: format!("{}, {} sessions", s.label, s.sessions),
                workload: Workload::Get,
                connections: 1,
                pipeline: 1,
                warmup: if round == 0 { config.warmup.max(SCALE_WARMUP) } else { config.warmup },
                duration: config.duration,
                fields: config.fields,
                value_size: config.value_size,
                server_pid: Some(s.server.child.id()),
                progress: false,
            };
            let report = crate::run::run(&run, s.keys.clone()).await?;
            eprintln!("scale: round {}/{}: {}", round + 1, config.rounds, report.text().lines().next().unwrap_or(""));
            s.reports.push(report);
        }
    }
    let mut md = String::new();
    let _ =
        writeln!(md, "### Scale: get x 1 connection, {} against {} sessions\n", config.scale_sessions, config.sessions);
    let _ =
        writeln!(md, "| target | sessions | p50 µs | p99 µs | ops/s | RSS MiB | RSS per session | files per session |");
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for s in &servers {
        let r = median(&s.reports);
        let rss = r.server.rss_bytes.unwrap_or(0);
        let files = s.disk_bytes.map_or("–".to_owned(), |b| format!("{} B", b / s.sessions as u64));
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} | {:.1} | {:.0} | {:.0} | {} B | {files} |",
            s.label,
            s.sessions,
            r.latency_us.p50,
            r.latency_us.p99,
            r.ops_per_sec,
            rss as f64 / (1 << 20) as f64,
            rss / s.sessions as u64
        );
    }
    let _ = writeln!(md);
    let of = |label: &str, n: usize| {
        servers.iter().find(|s| s.label == label && s.sessions == n).map(|s| s.reports.as_slice())
    };
    for label in ["sessiond strict", "redis no persistence"] {
        if let (Some(small), Some(large)) = (of(label, sizes[0]), of(label, sizes[1])) {
            let p50 = Paired::of(large, small, |r| r.latency_us.p50);
            let _ = writeln!(md, "- {label}: p50 with {} sessions / with {}: {p50}", sizes[1], sizes[0]);
        }
    }
    let _ = writeln!(md);
    let json: Vec<&Report> = servers.iter().flat_map(|s| &s.reports).collect();
    std::fs::write(config.out_dir.join("results/scale.json"), serde_json::to_vec_pretty(&json)?)?;
    Ok(md)
}

/// The round with the median throughput stands for the target.
fn median(reports: &[Report]) -> &Report {
    let mut sorted: Vec<&Report> = reports.iter().collect();
    sorted.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
    sorted[sorted.len() / 2]
}

/// A ratio between two targets taken round by round: within a round the two
/// ran seconds apart, so a machine that drifts between rounds (it is shared)
/// moves both sides alike. The median of the per-round ratios stands for the
/// pair; the spread across rounds is printed beside it so the noise shows.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Paired {
    median: f64,
    min: f64,
    max: f64,
}

impl Paired {
    /// `a[i]` and `b[i]` are the same round's reports.
    fn of(a: &[Report], b: &[Report], metric: impl Fn(&Report) -> f64) -> Self {
        Self::from_ratios(a.iter().zip(b).map(|(a, b)| metric(a) / metric(b)).collect())
    }

    fn from_ratios(mut ratios: Vec<f64>) -> Self {
        ratios.sort_by(f64::total_cmp);
        let n = ratios.len();
        let median = match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => ratios[n / 2],
            _ => (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0,
        };
        Self {
            median,
            min: ratios.first().copied().unwrap_or(f64::NAN),
            max: ratios.last().copied().unwrap_or(f64::NAN),
        }
    }
}

impl std::fmt::Display for Paired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2}x (rounds {:.2}-{:.2}x)", self.median, self.min, self.max)
    }
}

fn write_outputs(
    config: &CompareConfig,
    cases: &[Case],
    labels: &[&str],
    results: &[Vec<Vec<Report>>],
) -> Result<String, Error> {
    std::fs::create_dir_all(config.out_dir.join("results"))?;
    let mut md = String::from(
        "Each row is the target's round with the median throughput. Each ratio is the median of the \
         ratios taken round by round, with their range across the rounds in brackets. `redis` keeps a \
         session as one JSON string, `redis-hash` as one hash (see `benches/src/target.rs`); \
         \"x 16 in flight\" cases pipeline 16 requests on each connection, and the echo floor runs \
         only at one.\n\n",
    );
    for (c, &case) in cases.iter().enumerate() {
        let (title, file) = case_title(case);
        let _ = writeln!(md, "### {title}\n");
        let _ =
            writeln!(md, "| target | ops/s | p50 µs | p99 µs | p99.9 µs | max µs | server CPU s/100k ops | errors |");
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
        let measured: Vec<(&str, &[Report])> = labels
            .iter()
            .zip(&results[c])
            .filter(|(_, r)| !r.is_empty())
            .map(|(label, r)| (*label, r.as_slice()))
            .collect();
        for (label, reports) in &measured {
            let r = median(reports);
            let cpu = r.server.cpu_secs.map_or("–".to_owned(), |s| format!("{:.2}", s / r.ops as f64 * 100_000.0));
            let l = r.latency_us;
            let _ = writeln!(
                md,
                "| {label} | {:.0} | {:.1} | {:.1} | {:.1} | {:.0} | {cpu} | {} |",
                r.ops_per_sec, l.p50, l.p99, l.p999, l.max, r.errors
            );
        }
        let of = |label: &str| measured.iter().find(|(l, _)| *l == label).map(|(_, r)| *r);
        let mut ratios = Vec::new();
        let mut ratio = |a: &str, b: &str, what: &str, metric: fn(&Report) -> f64| {
            if let (Some(x), Some(y)) = (of(a), of(b)) {
                ratios.push(format!("{a} / {b}: {what} {}", Paired::of(x, y, metric)));
            }
        };
        let throughput: fn(&Report) -> f64 = |r| r.ops_per_sec;
        for (sessiond, redis) in
            [("sessiond strict", "always"), ("sessiond relaxed 1s", "everysec"), ("sessiond strict", "no persistence")]
        {
            for (mapping, _) in MAPPINGS {
                ratio(sessiond, &format!("{mapping} {redis}"), "throughput", throughput);
            }
        }
        for (mapping, _) in MAPPINGS {
            ratio("sessiond strict", &format!("{mapping} no persistence"), "p99", |r| r.latency_us.p99);
        }
        ratio("sessiond strict", "redis-hash always", "p99.9", |r| r.latency_us.p999);
        ratio("sessiond strict", BASELINE, "throughput", throughput);
        ratio("sessiond strict", BASELINE, "p99.9", |r| r.latency_us.p999);
        ratio("sessiond strict", BASELINE, "max", |r| r.latency_us.max);
        ratio("sessiond strict", "echo", "throughput", throughput);
        ratio("sessiond strict", "echo", "p50", |r| r.latency_us.p50);
        if !ratios.is_empty() {
            let _ = writeln!(md, "\n{}", ratios.iter().map(|r| format!("- {r}")).collect::<Vec<_>>().join("\n"));
        }
        let svg = format!("results/{file}.svg");
        plot(&config.out_dir.join(&svg), &title, &measured)?;
        let _ = writeln!(md, "\n![{title}]({svg})\n");
    }
    let json: Vec<&Report> = results.iter().flatten().flatten().collect();
    std::fs::write(config.out_dir.join("results/compare.json"), serde_json::to_vec_pretty(&json)?)?;
    Ok(md)
}

/// Latency by percentile, one line per target (`(label, its rounds)`, each
/// with at least one), log scale.
fn plot(path: &Path, case: &str, targets: &[(&str, &[Report])]) -> Result<(), Error> {
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let points: Vec<Vec<(f64, f64)>> = targets
        .iter()
        .map(|(_, r)| median(r).distribution.iter().enumerate().map(|(i, (_, us))| (i as f64, us.max(1.0))).collect())
        .collect();
    let top = points.iter().flatten().map(|p| p.1).fold(10.0, f64::max) * 1.5;
    let ticks: Vec<String> = targets
        .first()
        .map(|(_, r)| median(r).distribution.iter().map(|(p, _)| format!("p{p}")).collect())
        .unwrap_or_default();
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("latency by percentile: {case}"), ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..ticks.len().saturating_sub(1).max(1) as f64, (1f64..top).log_scale())?;
    chart
        .configure_mesh()
        .x_labels(ticks.len())
        .x_label_formatter(&|x| ticks.get(x.round() as usize).cloned().unwrap_or_default())
        .y_desc("microseconds")
        .draw()?;
    // Matplotlib's "tab10": nine targets, nine colours.
    let colors = [
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0xff, 0x7f, 0x0e),
        RGBColor(0x2c, 0xa0, 0x2c),
        RGBColor(0xd6, 0x27, 0x28),
        RGBColor(0x94, 0x67, 0xbd),
        RGBColor(0x8c, 0x56, 0x4b),
        RGBColor(0xe3, 0x77, 0xc2),
        RGBColor(0xbc, 0xbd, 0x22),
        RGBColor(0x17, 0xbe, 0xcf),
        RGBColor(0x7f, 0x7f, 0x7f),
    ];
    for (i, ((label, _), pts)) in targets.iter().zip(points).enumerate() {
        let color = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))?
            .label(*label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_and_targets_have_names_for_the_command_line() {
        let names: Vec<String> = CASES.into_iter().map(case_name).collect();
        assert_eq!(names, ["get50", "get50x16", "get1", "patch50", "patch50x16", "web50", "web50x16"]);
        for case in CASES {
            assert_eq!(parse_case(&case_name(case)), Ok(case));
        }
        assert!(parse_case("get16").unwrap_err().contains("patch50x16"));
        let labels = targets();
        assert_eq!(
            labels,
            [
                "sessiond strict",
                "sessiond relaxed 1s",
                "redis always",
                "redis-hash always",
                "redis everysec",
                "redis-hash everysec",
                "redis no persistence",
                "redis-hash no persistence",
                "echo"
            ]
        );
        assert_eq!(parse_target("redis-hash-no-persistence").as_deref(), Ok("redis-hash no persistence"));
        assert!(parse_target("redis-hash").unwrap_err().contains("redis-hash-always"));
    }

    #[test]
    fn a_paired_ratio_is_the_median_of_the_rounds_with_their_range() {
        let p = Paired::from_ratios(vec![1.32, 1.05, 1.24, 1.09, 1.31]);
        assert_eq!(p, Paired { median: 1.24, min: 1.05, max: 1.32 });
        assert_eq!(p.to_string(), "1.24x (rounds 1.05-1.32x)");
        let even = Paired::from_ratios(vec![2.0, 1.0, 4.0, 3.0]);
        assert_eq!(even.median, 2.5);
    }
}
