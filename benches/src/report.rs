//! What a run measured, for people (a table) and for tools (JSON).

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::run::RunConfig;
use crate::workload::Op;

/// Latency in microseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Self {
        let us = |ns: u64| ns as f64 / 1000.0;
        Self {
            p50: us(h.value_at_quantile(0.50)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct OpReport {
    pub count: u64,
    pub latency_us: Latency,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Server {
    /// CPU time (user + system) the server used while measured.
    pub cpu_secs: Option<f64>,
    pub rss_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: String,
    pub label: String,
    pub workload: String,
    pub connections: usize,
    pub pipeline: usize,
    pub duration_secs: f64,
    pub ops: u64,
    pub ops_per_sec: f64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub latency_us: Latency,
    pub by_op: BTreeMap<String, OpReport>,
    pub server: Server,
    /// (percentile, µs) points of the latency distribution, for plots.
    pub distribution: Vec<(f64, f64)>,
}

impl Report {
    pub fn new(
        config: &RunConfig,
        elapsed: Duration,
        latency: BTreeMap<Op, Histogram<u64>>,
        errors: u64,
        first_error: Option<String>,
        server: Server,
    ) -> Self {
        let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds");
        for h in latency.values() {
            all.add(h).expect("same bounds");
        }
        let ops = all.len();
        let distribution = [0.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99]
            .into_iter()
            .map(|p| (p, all.value_at_percentile(p) as f64 / 1000.0))
            .collect();
        Self {
            target: config.target.kind().into(),
            label: if config.label.is_empty() { config.target.kind().into() } else { config.label.clone() },
            workload: config.workload.name().into(),
            connections: config.connections,
            pipeline: config.pipeline,
            duration_secs: elapsed.as_secs_f64(),
            ops,
            ops_per_sec: ops as f64 / elapsed.as_secs_f64(),
            errors,
            first_error,
            latency_us: Latency::of(&all),
            by_op: latency
                .iter()
                .map(|(op, h)| (op.name().to_owned(), OpReport { count: h.len(), latency_us: Latency::of(h) }))
                .collect(),
            server,
            distribution,
        }
    }

    /// A few lines for people.
    pub fn text(&self) -> String {
        let mut out = format!(
            "{} {} ({} conn x {}): {:.0} ops/s, {} errors, latency us p50 {:.1} p99 {:.1} p99.9 {:.1} max {:.1}",
            self.label,
            self.workload,
            self.connections,
            self.pipeline,
            self.ops_per_sec,
            self.errors,
            self.latency_us.p50,
            self.latency_us.p99,
            self.latency_us.p999,
            self.latency_us.max
        );
        if let Some(cpu) = self.server.cpu_secs {
            out.push_str(&format!(", server CPU {:.2} s", cpu));
        }
        if let Some(rss) = self.server.rss_bytes {
            out.push_str(&format!(", RSS {:.1} MiB", rss as f64 / (1 << 20) as f64));
        }
        for (op, r) in &self.by_op {
            out.push_str(&format!(
                "\n  {op:<10} {:>9} ops  p50 {:>8.1}  p99 {:>8.1}  p99.9 {:>8.1}  max {:>9.1} us",
                r.count, r.latency_us.p50, r.latency_us.p99, r.latency_us.p999, r.latency_us.max
            ));
        }
        if let Some(e) = &self.first_error {
            out.push_str(&format!("\n  first error: {e}"));
        }
        out
    }
}
