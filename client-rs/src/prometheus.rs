//! STATS in the Prometheus text exposition format (version 0.0.4), for a
//! node exporter textfile collector or a sidecar to scrape.

use std::fmt::Write;

use sessiond_protocol::StatsOk;

/// Counters that are levels, not totals.
const GAUGES: [&str; 5] = ["connections_active", "sessions", "cache_bytes", "ttl_index_bytes", "last_sweep_ms"];

/// Renders `stats` with metric names prefixed `sessiond_`. Errors and token
/// rejections become one labelled metric each; latency histograms are in
/// seconds, by operation.
pub fn render(stats: &StatsOk) -> String {
    let mut out = String::new();
    let mut labelled: Vec<(&str, &str, &str, u64)> = Vec::new();
    for c in &stats.counters {
        if let Some(code) = c.name.strip_prefix("errors_") {
            labelled.push(("errors_total", "code", code, c.value));
        } else if let Some(reason) = c.name.strip_prefix("token_rejected_") {
            labelled.push(("token_rejected_total", "reason", reason, c.value));
        } else if GAUGES.contains(&c.name.as_str()) {
            let _ = writeln!(out, "# TYPE sessiond_{} gauge\nsessiond_{} {}", c.name, c.name, c.value);
        } else {
            let _ = writeln!(out, "# TYPE sessiond_{0}_total counter\nsessiond_{0}_total {1}", c.name, c.value);
        }
    }
    let mut last = "";
    for (name, label, value, n) in labelled {
        if name != last {
            let _ = writeln!(out, "# TYPE sessiond_{name} counter");
            last = name;
        }
        let _ = writeln!(out, "sessiond_{name}{{{label}=\"{value}\"}} {n}");
    }
    let mut last = String::new();
    for h in &stats.histograms {
        // Microseconds become seconds (divided, so 25000 prints as 0.025).
        let (name, divisor) = match h.name.strip_suffix("_us") {
            Some(base) => (format!("sessiond_{base}_seconds"), 1e6),
            None => (format!("sessiond_{}", h.name), 1.0),
        };
        if name != last {
            let _ = writeln!(out, "# TYPE {name} histogram");
            last.clone_from(&name);
        }
        let label = if h.label.is_empty() { String::new() } else { format!("op=\"{}\",", h.label) };
        let mut cumulative = 0;
        for (i, count) in h.counts.iter().enumerate() {
            cumulative += count;
            let le = h.bounds.get(i).map_or("+Inf".to_owned(), |b| format!("{}", *b as f64 / divisor));
            let _ = writeln!(out, "{name}_bucket{{{label}le=\"{le}\"}} {cumulative}");
        }
        let bare = label.trim_end_matches(',');
        let braces = if bare.is_empty() { String::new() } else { format!("{{{bare}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", h.sum as f64 / divisor);
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
    out
}
