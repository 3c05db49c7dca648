//! One measured run: load the sessions, warm up, measure, report.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};

use crate::echo::EchoConn;
use crate::report::{Report, Server};
use crate::target::{Error, Fields, Store, Target};
use crate::workload::{Op, Workload, Zipf};

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub target: Target,
    /// A name for reports (e.g. "sessiond strict"); the target kind if empty.
    pub label: String,
    pub workload: Workload,
    pub connections: usize,
    /// Requests each connection keeps in flight.
    pub pipeline: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub fields: usize,
    pub value_size: usize,
    /// The server's process, for its CPU time and memory.
    pub server_pid: Option<u32>,
    pub progress: bool,
}

impl RunConfig {
    pub fn session_fields(&self) -> Fields {
        crate::sample_fields(self.fields, self.value_size).into_iter().map(|f| (f.name, f.value)).collect()
    }
}

/// Creates `count` sessions with 32 concurrent requests; returns their keys.
pub async fn load(target: &Target, count: usize, fields: &Fields) -> Result<Vec<String>, Error> {
    if matches!(target, Target::Echo(_)) {
        return Ok(Vec::new());
    }
    let store = Store::connect(target).await?;
    let mut tasks = Vec::new();
    for t in 0..32 {
        let (mut store, fields) = (store.clone(), fields.clone());
        let n = count / 32 + usize::from(t < count % 32);
        tasks.push(tokio::spawn(async move {
            let mut keys = Vec::with_capacity(n);
            for _ in 0..n {
                keys.push(store.create(&fields).await?);
            }
            Ok::<_, Error>(keys)
        }));
    }
    let mut keys = Vec::with_capacity(count);
    for t in tasks {
        keys.extend(t.await??);
    }
    Ok(keys)
}

struct Shared {
    phase: AtomicU8,
    measured: AtomicU64,
}

#[derive(Default)]
struct Tally {
    latency: BTreeMap<Op, Histogram<u64>>,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn record(&mut self, op: Op, started: Instant, result: Result<(), Error>) {
        let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let h = self
            .latency
            .entry(op)
            .or_insert_with(|| Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds"));
        h.saturating_record(ns);
        if let Err(e) = result {
            self.errors += 1;
            self.first_error.get_or_insert_with(|| e.to_string());
        }
    }

    fn merge(&mut self, other: Tally) {
        for (op, h) in other.latency {
            match self.latency.get_mut(&op) {
                Some(mine) => mine.add(&h).expect("same bounds"),
                None => {
                    self.latency.insert(op, h);
                }
            }
        }
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Runs `config` against sessions `keys` (from [`load`]).
pub async fn run(config: &RunConfig, keys: Arc<Vec<String>>) -> Result<Report, Error> {
    let shared = Arc::new(Shared { phase: AtomicU8::new(WARMUP), measured: AtomicU64::new(0) });
    let mut workers = Vec::new();
    for c in 0..config.connections {
        match &config.target {
            Target::Echo(path) => {
                let conn = EchoConn::connect(path, 64).await?;
                workers.push(tokio::spawn(echo_worker(conn, config.pipeline, shared.clone())));
            }
            target => {
                let store = Store::connect(target).await?;
                for p in 0..config.pipeline {
                    let seed = (c * 1000 + p) as u64;
                    let args = (store.clone(), config.workload, keys.clone(), config.session_fields(), seed);
                    workers.push(tokio::spawn(store_worker(args, shared.clone())));
                }
            }
        }
    }
    tokio::time::sleep(config.warmup).await;
    let cpu_before = config.server_pid.and_then(cpu_seconds);
    shared.phase.store(MEASURE, Ordering::Release);
    let started = Instant::now();
    while started.elapsed() < config.duration {
        tokio::time::sleep(Duration::from_secs(1).min(config.duration.saturating_sub(started.elapsed()))).await;
        if config.progress {
            let ops = shared.measured.load(Ordering::Relaxed);
            eprint!(
                "\r  {}: {:>4.0}s {:>10.0} ops/s ",
                config.label,
                started.elapsed().as_secs_f64(),
                ops as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    shared.phase.store(STOP, Ordering::Release);
    let elapsed = started.elapsed();
    let cpu_after = config.server_pid.and_then(cpu_seconds);
    let rss = config.server_pid.and_then(rss_bytes);
    if config.progress {
        eprintln!();
    }
    let mut tally = Tally::default();
    for w in workers {
        tally.merge(w.await?);
    }
    let server = Server { cpu_secs: cpu_before.zip(cpu_after).map(|(a, b)| b - a), rss_bytes: rss };
    Ok(Report::new(config, elapsed, tally.latency, tally.errors, tally.first_error, server))
}

async fn store_worker(args: (Store, Workload, Arc<Vec<String>>, Fields, u64), shared: Arc<Shared>) -> Tally {
    let (mut store, workload, keys, fields, seed) = args;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let zipf = workload.skewed().then(|| Zipf::new(keys.len(), 0.99));
    let value = vec![b'v'; fields.first().map_or(16, |f| f.1.len())];
    // Sessions this worker created; deletes take from these, so the shared
    // pool of keys stays whole.
    let mut own: Vec<String> = Vec::new();
    let mut tally = Tally::default();
    loop {
        let phase = shared.phase.load(Ordering::Acquire);
        if phase == STOP {
            return tally;
        }
        let op = workload.pick(&mut rng);
        let started = Instant::now();
        let result = match (op, own.pop()) {
            (Op::Create, back) => {
                own.extend(back);
                store.create(&fields).await.map(|k| own.push(k))
            }
            (Op::Delete, Some(key)) => store.op(Op::Delete, &key, "", &[]).await,
            (Op::Delete, None) => store.create(&fields).await.map(|k| own.push(k)),
            (op, back) => {
                own.extend(back);
                let i = match &zipf {
                    Some(z) => z.sample(&mut rng),
                    None => rng.random_range(0..keys.len()),
                };
                store.op(op, &keys[i], "field_00", &value).await
            }
        };
        if phase == MEASURE {
            tally.record(op, started, result);
            shared.measured.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn echo_worker(mut conn: EchoConn, pipeline: usize, shared: Arc<Shared>) -> Tally {
    let mut tally = Tally::default();
    loop {
        let phase = shared.phase.load(Ordering::Acquire);
        if phase == STOP {
            return tally;
        }
        let started = Instant::now();
        let result = conn.round_trips(pipeline).await.map_err(Error::from);
        if phase == MEASURE {
            let failed = result.is_err();
            tally.record(Op::Get, started, result);
            for _ in 1..pipeline {
                tally.record(Op::Get, started, if failed { Err("echo failed".into()) } else { Ok(()) });
            }
            shared.measured.fetch_add(pipeline as u64, Ordering::Relaxed);
        }
    }
}

/// User plus system CPU time of a process, from /proc.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / rustix::param::clock_ticks_per_second() as f64)
}

/// Resident memory of a process, from /proc.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
