//! The sweeper: deletes expired sessions in bounded batches, so nobody needs
//! a cron job.
//!
//! It takes expired keys from the TTL index and hands them to the writer as
//! one `Sweep` job per batch, waiting for each commit before taking the
//! next, so foreground writes queue between batches rather than behind a
//! whole sweep. Expired sessions are never served whether swept or not:
//! sweeping frees the space.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use sessiond_protocol::SessionKey;

use crate::answer::{Answer, Done};
use crate::clock::{Clock, JumpGuard};
use crate::reply::{ReplyTo, deliver_all};
use crate::stats::Stats;
use crate::ttl::TtlIndex;
use crate::writer::{Job, Op, WriterQueue};

/// How long the sweeper waits for one batch to commit before giving up on
/// the round (the writer has failed or is stopping).
const BATCH_TIMEOUT: Duration = Duration::from_secs(30);

enum Msg {
    /// Sweep now and answer the caller with the number removed.
    Run(ReplyTo),
    Stop,
}

/// The handle the service holds to ask for a sweep.
#[derive(Clone)]
pub struct SweepQueue {
    tx: Sender<Msg>,
}

impl std::fmt::Debug for SweepQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SweepQueue")
    }
}

impl SweepQueue {
    /// Asks for a sweep now; `reply` gets SWEPT when it is done. Returns
    /// false if the sweeper has stopped.
    pub fn request(&self, reply: ReplyTo) -> bool {
        self.tx.send(Msg::Run(reply)).is_ok()
    }
}

#[derive(Debug, Clone)]
pub struct SweepConfig {
    pub interval: Duration,
    pub batch: usize,
    /// Redeemed tokens and denied cookies are forgotten this long after
    /// they expire.
    pub token_skew_ms: u64,
    /// After the wall clock jumps, nothing is swept or purged until it has
    /// run steadily this long (see [`JumpGuard`]).
    pub clock_hold_ms: u64,
}

#[derive(Debug)]
pub struct Sweeper {
    queue: SweepQueue,
    thread: JoinHandle<()>,
}

impl Sweeper {
    /// Starts the sweeper thread. Its first round runs at once, so sessions
    /// that expired while the daemon was down are removed soon after start.
    pub fn spawn(
        ttl: Arc<TtlIndex>,
        writer: WriterQueue,
        stats: Arc<Stats>,
        clock: Arc<dyn Clock>,
        config: SweepConfig,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let round = Round {
            ttl,
            writer,
            stats,
            clock,
            batch: config.batch,
            token_skew_ms: config.token_skew_ms,
            guard: JumpGuard::new(config.clock_hold_ms),
        };
        let thread = std::thread::Builder::new().name("sessiond-sweeper".into()).spawn(move || {
            let mut waiting = None;
            loop {
                let removed = round.run();
                if let Some(reply) = waiting.take() {
                    deliver_all([(reply, Ok(Done::Swept { removed }))]);
                }
                match rx.recv_timeout(config.interval) {
                    Ok(Msg::Run(reply)) => waiting = Some(reply),
                    Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                    Err(RecvTimeoutError::Timeout) => {}
                }
            }
        })?;
        Ok(Self { queue: SweepQueue { tx }, thread })
    }

    pub fn queue(&self) -> SweepQueue {
        self.queue.clone()
    }

    /// Stops after the current round. Call before stopping the writer.
    pub fn shutdown(self) {
        let _ = self.queue.tx.send(Msg::Stop);
        if self.thread.join().is_err() {
            tracing::error!("the sweeper thread panicked");
        }
    }
}

struct Round {
    ttl: Arc<TtlIndex>,
    writer: WriterQueue,
    stats: Arc<Stats>,
    clock: Arc<dyn Clock>,
    batch: usize,
    token_skew_ms: u64,
    guard: JumpGuard,
}

impl Round {
    /// Sweeps until nothing expired is left; returns the number removed.
    /// Does nothing on a wall clock that has just jumped.
    fn run(&self) -> u64 {
        if !self.guard.steady(&*self.clock) {
            Stats::add(&self.stats.sweeps_held, 1);
            return 0;
        }
        let mut removed = 0;
        loop {
            let keys = self.ttl.take_expired(self.clock.now_ms(), self.batch);
            if keys.is_empty() {
                break;
            }
            match self.sweep_batch(keys) {
                Some(n) => removed += n,
                None => break,
            }
        }
        // The replay guard and the cookie deny-list only need entries that
        // could still be presented.
        self.submit(Op::PurgeTokens { skew_ms: self.token_skew_ms });
        Stats::add(&self.stats.expired_swept, removed);
        self.stats.last_sweep_ms.store(self.clock.now_ms(), Ordering::Relaxed);
        if removed > 0 {
            tracing::debug!(removed, "swept expired sessions");
        }
        removed
    }

    /// One batch through the writer; `None` if the writer cannot take it.
    fn sweep_batch(&self, keys: Vec<SessionKey>) -> Option<u64> {
        match self.submit(Op::Sweep { keys }) {
            Some(Ok(Done::Swept { removed })) => Some(removed),
            _ => None,
        }
    }

    /// Runs one job through the writer and waits for its commit. A full
    /// queue means foreground load: wait for room (backpressure).
    fn submit(&self, op: Op) -> Option<Answer> {
        let (tx, rx) = mpsc::channel();
        self.writer.submit_wait(Job { op, reply: ReplyTo::Channel(tx) }).ok()?;
        rx.recv_timeout(BATCH_TIMEOUT).ok()
    }
}
