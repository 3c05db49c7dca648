//! The applier thread: brings redb up to the log, off the writer's path.
//!
//! The writer hands it every frame's rows once the frame is in the log. It
//! gathers them, keeping only the last value of each row, and writes them
//! into redb in one transaction, sorted, about every [`APPLY_INTERVAL`]:
//! a session written a thousand times between two commits costs one row
//! write. Most commits are not synced (the log has the rows); one that the
//! writer asks for, before it reuses a log file, is (a checkpoint). So the
//! B-tree work and the checkpoint's fsync, which held every acknowledgement
//! back while the writer did them, now run beside it.
//!
//! It publishes how far redb has come ([`Progress`]): the writer then drops
//! the rows redb holds from `Pending` and unpins them in the cache.

use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use redb::Durability;

use crate::pending::{Bytes, Row};
use crate::stats::Stats;
use crate::store::{LOG_SEQ, META, RowWriter, Store, StoreError};

/// How long rows wait before redb takes them, at most (unless a checkpoint
/// is asked for sooner). Long enough to gather many frames per commit,
/// short enough that `Pending` stays small.
pub const APPLY_INTERVAL: Duration = Duration::from_millis(50);
/// Rows gathered past this many bytes are applied at once.
const APPLY_BYTES: usize = 16 << 20;

pub(super) enum ApplyMsg {
    /// The rows of frame `seq`, which is in the log.
    Rows { seq: u64, rows: Vec<Row> },
    /// Make everything up to `through` durable in redb soon.
    Durable { through: u64 },
    /// Make everything so far durable now, then answer.
    Checkpoint(Sender<Result<(), String>>),
}

/// How far redb has come; shared by the writer and the applier.
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// The last frame redb holds, visibly to new read transactions.
    pub applied: AtomicU64,
    /// The last frame redb holds durably.
    pub durable: AtomicU64,
    /// A commit failed: the daemon fails closed.
    pub failed: AtomicBool,
    lock: Mutex<()>,
    changed: Condvar,
}

impl Progress {
    fn advance(&self, seq: u64, durable: bool) {
        self.applied.fetch_max(seq, Ordering::Release);
        if durable {
            self.durable.fetch_max(seq, Ordering::Release);
        }
        let _guard = self.lock.lock();
        self.changed.notify_all();
    }

    /// Waits up to `timeout` for the applier to commit something.
    pub fn wait(&self, timeout: Duration) {
        let mut guard = self.lock.lock();
        self.changed.wait_for(&mut guard, timeout);
    }
}

pub(super) struct Applier {
    pub store: Arc<Store>,
    pub stats: Arc<Stats>,
    pub progress: Arc<Progress>,
    pub rx: Receiver<ApplyMsg>,
    pub on_fatal: Arc<dyn Fn(String) + Send + Sync>,
}

/// Rows gathered for the next commit: the last value of each.
#[derive(Default)]
struct Gathered {
    rows: BTreeMap<(u8, Bytes), Option<Bytes>>,
    bytes: usize,
    /// The last frame among them.
    seq: u64,
    since: Option<Instant>,
}

impl Applier {
    /// Runs until the writer drops its sender, then makes everything durable.
    pub fn run(self) {
        let mut gathered = Gathered::default();
        let mut durable_wanted = 0u64;
        let mut waiting: Vec<Sender<Result<(), String>>> = Vec::new();
        loop {
            let msg = match gathered.since {
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(since) => self.rx.recv_timeout((since + APPLY_INTERVAL).saturating_duration_since(Instant::now())),
            };
            let closed = match msg {
                Ok(msg) => {
                    self.take(msg, &mut gathered, &mut durable_wanted, &mut waiting);
                    let mut closed = false;
                    loop {
                        match self.rx.try_recv() {
                            Ok(msg) => self.take(msg, &mut gathered, &mut durable_wanted, &mut waiting),
                            Err(std::sync::mpsc::TryRecvError::Empty) => break,
                            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                                closed = true;
                                break;
                            }
                        }
                    }
                    closed
                }
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => true,
            };
            let durable =
                closed || !waiting.is_empty() || durable_wanted > self.progress.durable.load(Ordering::Acquire);
            let due = gathered.since.is_some_and(|t| t.elapsed() >= APPLY_INTERVAL) || gathered.bytes >= APPLY_BYTES;
            if durable || due {
                let result = if self.progress.failed.load(Ordering::Acquire) {
                    Err("storage has failed".to_owned())
                } else {
                    // A panic inside redb fails closed like a storage error.
                    let gathered = std::mem::take(&mut gathered);
                    let result = panic::catch_unwind(AssertUnwindSafe(|| self.commit(gathered, durable)));
                    match result {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(panic) => Err(format!("the applier panicked: {}", super::panic_text(&*panic))),
                    }
                    .inspect_err(|e| self.fail(e))
                };
                for waiter in waiting.drain(..) {
                    let _ = waiter.send(result.clone());
                }
            }
            if closed {
                return;
            }
        }
    }

    fn take(
        &self,
        msg: ApplyMsg,
        gathered: &mut Gathered,
        durable_wanted: &mut u64,
        waiting: &mut Vec<Sender<Result<(), String>>>,
    ) {
        match msg {
            ApplyMsg::Rows { seq, rows } => {
                for row in rows {
                    gathered.bytes += row.bytes();
                    gathered.rows.insert((row.table, row.key), row.value);
                }
                gathered.seq = seq;
                gathered.since.get_or_insert_with(Instant::now);
            }
            ApplyMsg::Durable { through } => *durable_wanted = (*durable_wanted).max(through),
            ApplyMsg::Checkpoint(answer) => waiting.push(answer),
        }
    }

    /// Writes the gathered rows into redb in one transaction; `durable`: a
    /// checkpoint (synced, even with no rows, so that earlier unsynced
    /// commits become durable).
    fn commit(&self, gathered: Gathered, durable: bool) -> Result<(), StoreError> {
        if gathered.rows.is_empty() && !durable {
            return Ok(());
        }
        let started = Instant::now();
        self.stats.checkpoint_running.store(u64::from(durable), Ordering::Relaxed);
        let result = self.write(gathered, durable);
        self.stats.checkpoint_running.store(0, Ordering::Relaxed);
        let seq = result?;
        self.progress.advance(seq, durable);
        Stats::add(&self.stats.db_commits, 1);
        self.stats.db_commit_us.record(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        if durable {
            Stats::add(&self.stats.checkpoints, 1);
        }
        Ok(())
    }

    /// One redb transaction with the gathered rows; returns the last frame
    /// it holds.
    fn write(&self, gathered: Gathered, durable: bool) -> Result<u64, StoreError> {
        let db = self.store.db();
        let mut txn = db.begin_write()?;
        let seq = if gathered.rows.is_empty() {
            self.progress.applied.load(Ordering::Acquire)
        } else {
            let mut tables = RowWriter::open(&txn)?;
            for ((table, key), value) in &gathered.rows {
                tables.apply(*table, key, value.as_deref())?;
            }
            drop(tables);
            txn.open_table(META)?.insert(LOG_SEQ, gathered.seq)?;
            gathered.seq
        };
        txn.set_durability(if durable { Durability::Immediate } else { Durability::None })?;
        // The data written is chosen by clients; 2PC keeps a torn commit
        // from ever validating (see redb's set_two_phase_commit docs).
        txn.set_two_phase_commit(true);
        txn.commit()?;
        Ok(seq)
    }

    fn fail(&self, error: &str) {
        Stats::add(&self.stats.commit_failures, 1);
        if !self.progress.failed.swap(true, Ordering::AcqRel) {
            tracing::error!(%error, "applying the log to the database failed: refusing all further writes");
            (self.on_fatal)(format!("commit failed: {error}"));
        }
        self.progress.advance(0, false);
    }
}
