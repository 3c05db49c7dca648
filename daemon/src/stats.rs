//! Counters, kept beside the code that moves them and read by STATS.

use std::sync::atomic::{AtomicU64, Ordering};

use sessiond_protocol::{Counter, ErrorCode, Histogram as WireHistogram, Request};

use crate::tokens::Reject;

macro_rules! counters {
    ($($name:ident: $doc:literal,)*) => {
        #[derive(Debug)]
        pub struct Stats {
            $( #[doc = $doc] pub $name: AtomicU64, )*
            errors: [AtomicU64; ErrorCode::ALL.len()],
            token_rejects: [AtomicU64; Reject::ALL.len()],
            /// Request latency by opcode, from decoding to the answer.
            latency: [Histogram; 64],
            pub commit_batch: Histogram,
            pub commit_us: Histogram,
            pub db_commit_us: Histogram,
        }

        impl Stats {
            pub fn new() -> Self {
                Self {
                    $( $name: AtomicU64::new(0), )*
                    errors: Default::default(),
                    token_rejects: Default::default(),
                    latency: [const { Histogram::new(&LATENCY_BOUNDS_US) }; 64],
                    commit_batch: Histogram::new(&BATCH_BOUNDS),
                    commit_us: Histogram::new(&LATENCY_BOUNDS_US),
                    db_commit_us: Histogram::new(&LATENCY_BOUNDS_US),
                }
            }

            /// Every counter by name, then errors by code.
            pub fn snapshot(&self) -> Vec<Counter> {
                let mut out = vec![
                    $( Counter { name: stringify!($name).into(), value: self.$name.load(Ordering::Relaxed) }, )*
                ];
                for code in ErrorCode::ALL {
                    out.push(Counter {
                        name: format!("errors_{}", code.name().to_ascii_lowercase()),
                        value: self.errors[code.ordinal()].load(Ordering::Relaxed),
                    });
                }
                for (i, reason) in Reject::ALL.into_iter().enumerate() {
                    out.push(Counter {
                        name: format!("token_rejected_{}", reason.name()),
                        value: self.token_rejects[i].load(Ordering::Relaxed),
                    });
                }
                out
            }

            pub fn histograms(&self) -> Vec<WireHistogram> {
                let mut out: Vec<WireHistogram> = self
                    .latency
                    .iter()
                    .enumerate()
                    .filter_map(|(op, h)| {
                        let name = Request::name_of(op as u8)?;
                        (h.count() > 0).then(|| h.snapshot("request_latency_us", name))
                    })
                    .collect();
                out.push(self.commit_batch.snapshot("commit_batch_size", ""));
                out.push(self.commit_us.snapshot("commit_duration_us", ""));
                out.push(self.db_commit_us.snapshot("db_commit_duration_us", ""));
                out
            }
        }
    };
}

/// Microsecond bounds for latencies: 50 µs to 1 s.
pub const LATENCY_BOUNDS_US: [u64; 14] =
    [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000];
/// Bounds for commit batch sizes.
pub const BATCH_BOUNDS: [u64; 13] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096];

/// A fixed-bucket histogram, updated with relaxed atomics.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    counts: [AtomicU64; 16],
    sum: AtomicU64,
}

impl Histogram {
    pub const fn new(bounds: &'static [u64]) -> Self {
        Self { bounds, counts: [const { AtomicU64::new(0) }; 16], sum: AtomicU64::new(0) }
    }

    pub fn record(&self, value: u64) {
        let i = self.bounds.iter().position(|b| value <= *b).unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    fn snapshot(&self, name: &str, label: &str) -> WireHistogram {
        WireHistogram {
            name: name.into(),
            label: label.into(),
            bounds: self.bounds.to_vec(),
            counts: self.counts[..=self.bounds.len()].iter().map(|c| c.load(Ordering::Relaxed)).collect(),
            sum: self.sum.load(Ordering::Relaxed),
        }
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new(&LATENCY_BOUNDS_US)
    }
}

counters! {
    requests: "Requests decoded and dispatched.",
    connections_accepted: "Connections accepted.",
    connections_active: "Connections open now.",
    connections_refused: "Connections refused at the connection limit.",
    connections_forbidden: "Connections refused for their peer credentials, or a TLS client certificate naming no allowed identity.",
    tls_handshakes_failed: "TLS connections closed for a failed handshake: no or an untrusted client certificate, or not TLS at all.",
    limit_tls_handshake_closed: "TLS connections closed for a handshake not finished within tls.handshake_timeout_secs.",
    limit_inflight_paused: "Times a connection stopped being read at max_inflight.",
    corrupt_records: "Stored records that failed their checksum or did not decode: answered INTERNAL, never served.",
    db_reads: "Reads on the request path that went to redb: cache misses, and sealed-cookie revocation checks.",
    sweeps_held: "Sweep rounds skipped because the wall clock had just jumped.",
    limit_output_paused: "Times a connection stopped being served with max_output_bytes (or, across all, max_output_total_bytes) of answers unsent.",
    limit_write_timeout_closed: "Connections closed for taking none of their pending answers within write_timeout_secs.",
    output_buffered_bytes: "Bytes of answers encoded and not yet sent, across all connections (a gauge).",
    limit_idle_closed: "Connections closed after idle_timeout_secs of silence.",
    limit_frame_timeout_closed: "Connections closed for a frame not completed within frame_timeout_secs.",
    frames_rejected: "Frames rejected as corrupt, oversized or undecodable.",
    commits: "Write batches committed: applied, logged, and in strict mode synced.",
    committed_ops: "Mutations acknowledged after a commit.",
    log_frames: "Frames appended to the write-ahead log (one per batch that changed anything).",
    log_syncs: "fdatasync calls on the write-ahead log.",
    db_commits: "redb transactions the applier committed (each holds many batches, one row per session).",
    checkpoints: "Durable redb commits, after which a log file may be reused.",
    checkpoint_running: "1 while the applier makes a durable commit (a gauge).",
    applier_waits: "Times the writer waited for the applier because too many logged rows were not yet in redb.",
    commit_failures: "Log writes or commits that failed (the daemon then fails closed).",
    writer_queue_full: "Mutations refused with BUSY because the writer queue was full.",
    sessions: "Stored sessions: live, or expired and not yet swept.",
    expired_swept: "Expired sessions removed by the sweeper.",
    last_sweep_ms: "When the last sweep ended, Unix milliseconds.",
    touches_persisted: "Lazy writes of touched expiries.",
    sessions_evicted: "Sessions ended to keep a user within max_sessions_per_user.",
    tokens_issued: "Transfer tokens issued.",
    tokens_redeemed: "Transfer tokens redeemed into a new key.",
    cookies_sealed: "Sealed cookies made (new or re-sealed).",
    cookies_opened: "Sealed cookies opened and accepted.",
    ttl_index_bytes: "Approximate memory held by the TTL index, in bytes.",
    cache_hits: "Reads served from the cache.",
    cache_misses: "Reads that went to the database.",
    cache_bytes: "Memory held by the cache, in bytes.",
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Records how long a request with this opcode took.
    pub fn latency(&self, opcode: u8, started: std::time::Instant) {
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        if let Some(h) = self.latency.get(usize::from(opcode)) {
            h.record(us);
        }
    }

    pub fn error(&self, code: ErrorCode) {
        self.errors[code.ordinal()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refused token or cookie by reason.
    pub fn token_rejected(&self, reason: Reject) {
        if let Some(i) = Reject::ALL.iter().position(|r| *r == reason) {
            self.token_rejects[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_every_counter_and_error_code() {
        let stats = Stats::default();
        stats.error(ErrorCode::NotFound);
        Stats::add(&stats.requests, 3);
        let snap = stats.snapshot();
        let get = |n: &str| snap.iter().find(|c| c.name == n).map(|c| c.value);
        assert_eq!(get("requests"), Some(3));
        assert_eq!(get("errors_not_found"), Some(1));
        assert_eq!(get("errors_bad_key"), Some(0));
    }
}
