//! Counters, kept beside the code that moves them and read by STATS.

use std::sync::atomic::{AtomicU64, Ordering};

use sessiond_protocol::{Counter, ErrorCode};

use crate::tokens::Reject;

macro_rules! counters {
    ($($name:ident: $doc:literal,)*) => {
        #[derive(Debug, Default)]
        pub struct Stats {
            $( #[doc = $doc] pub $name: AtomicU64, )*
            errors: [AtomicU64; 16],
            token_rejects: [AtomicU64; 16],
        }

        impl Stats {
            /// Every counter by name, then errors by code.
            pub fn snapshot(&self) -> Vec<Counter> {
                let mut out = vec![
                    $( Counter { name: stringify!($name).into(), value: self.$name.load(Ordering::Relaxed) }, )*
                ];
                for code in ErrorCode::ALL {
                    out.push(Counter {
                        name: format!("errors_{}", code.name().to_ascii_lowercase()),
                        value: self.errors[code as usize].load(Ordering::Relaxed),
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
        }
    };
}

counters! {
    requests: "Requests decoded and dispatched.",
    connections_accepted: "Connections accepted.",
    connections_active: "Connections open now.",
    connections_refused: "Connections refused at the connection limit.",
    frames_rejected: "Frames rejected as corrupt, oversized or undecodable.",
    commits: "Write transactions committed.",
    committed_ops: "Mutations acknowledged after a commit.",
    durable_commits: "Commits made with fsync.",
    commit_failures: "Commits that failed (the daemon then fails closed).",
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

impl Stats {
    pub fn error(&self, code: ErrorCode) {
        self.errors[code as usize].fetch_add(1, Ordering::Relaxed);
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
