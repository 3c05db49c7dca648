//! The applier thread: brings redb up to the log, off the writer's path.
//!
//! The writer hands it every frame's rows once the frame is in the log. It
//! gathers them for up to [`APPLY_INTERVAL`], keeping only the last value
//! of each row, and writes them, sorted, into one write transaction that
//! stays open until a checkpoint: within it redb changes a page in place
//! once it has copied it, so a session written a thousand times between
//! checkpoints costs one page copy. (Committing every 50 ms without fsync,
//! as tried first, copied every hot page at each commit: ~40% more CPU per
//! `patch` than writing the rows on the writer thread, on 2 cores.) The
//! transaction is committed, durably, when the writer needs a log file
//! back, at a Checkpoint request and at shutdown. So the B-tree work and
//! the checkpoint's fsync, which held every acknowledgement back while the
//! writer did them, now run beside it.
//!
//! It publishes how far redb has come ([`Progress`]) after each checkpoint:
//! the writer then drops the rows redb holds from `Pending` and unpins them
//! in the cache.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use redb::{Durability, WriteTransaction};

use crate::pending::Row;
use crate::stats::Stats;
use crate::store::{LOG_SEQ, META, RowWriter, Store, StoreError};

/// How long rows wait before they go into the open transaction, at most
/// (unless a checkpoint is asked for sooner): long enough to gather many
/// frames, and to sort and coalesce them.
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
    /// The last frame redb holds: durably, and visibly to read
    /// transactions begun after it moved (only checkpoints commit).
    pub durable: AtomicU64,
    /// A commit failed: the daemon fails closed.
    pub failed: AtomicBool,
    lock: Mutex<()>,
    changed: Condvar,
}

impl Progress {
    fn advance(&self, seq: u64) {
        self.durable.fetch_max(seq, Ordering::Release);
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

/// Rows gathered for the next commit, in the order they were logged.
#[derive(Default)]
struct Gathered {
    rows: Vec<Row>,
    bytes: usize,
    /// The last frame among them.
    seq: u64,
    since: Option<Instant>,
}

/// The open write transaction rows go into, between checkpoints.
#[derive(Default)]
struct Open {
    txn: Option<WriteTransaction>,
    /// The last frame whose rows are in it (0: none since the start).
    seq: u64,
}

impl Applier {
    /// Runs until the writer drops its sender, then makes everything durable.
    pub fn run(self) {
        let mut gathered = Gathered::default();
        let mut open = Open::default();
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
                    let result = panic::catch_unwind(AssertUnwindSafe(|| {
                        self.apply(&mut open, gathered)?;
                        if durable { self.checkpoint(&mut open) } else { Ok(()) }
                    }));
                    match result {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(panic) => Err(format!("the applier panicked: {}", super::panic_text(&*panic))),
                    }
                    .inspect_err(|e| {
                        // What the open transaction holds past a failure is
                        // unknown: dropped, never committed.
                        open.txn = None;
                        self.fail(e);
                    })
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
                gathered.bytes += rows.iter().map(Row::bytes).sum::<usize>();
                gathered.rows.extend(rows);
                gathered.seq = seq;
                gathered.since.get_or_insert_with(Instant::now);
            }
            ApplyMsg::Durable { through } => *durable_wanted = (*durable_wanted).max(through),
            ApplyMsg::Checkpoint(answer) => waiting.push(answer),
        }
    }

    /// Writes the gathered rows into the open transaction, beginning one if
    /// none is open. Sorted (stably, so the last write of a row stays
    /// last), and only that last write of each row: redb's inserts then
    /// walk the trees in order, and a row written many times since the last
    /// gathering costs one.
    fn apply(&self, open: &mut Open, mut gathered: Gathered) -> Result<(), StoreError> {
        if gathered.rows.is_empty() {
            return Ok(());
        }
        let txn = match &mut open.txn {
            Some(txn) => txn,
            None => open.txn.insert(self.store.db().begin_write()?),
        };
        gathered.rows.sort_by(|a, b| (a.table, &a.key).cmp(&(b.table, &b.key)));
        let mut tables = RowWriter::open(txn)?;
        let rows = &gathered.rows;
        for (i, row) in rows.iter().enumerate() {
            let superseded = rows.get(i + 1).is_some_and(|next| next.table == row.table && next.key == row.key);
            if !superseded {
                tables.apply(row.table, &row.key, row.value.as_deref())?;
            }
        }
        open.seq = gathered.seq;
        Ok(())
    }

    /// Commits the open transaction durably (even with none open, to make
    /// earlier commits durable), recording the last frame it holds.
    fn checkpoint(&self, open: &mut Open) -> Result<(), StoreError> {
        let started = Instant::now();
        self.stats.checkpoint_running.store(1, Ordering::Relaxed);
        let result = (|| {
            let mut txn = match open.txn.take() {
                Some(txn) => txn,
                None => self.store.db().begin_write()?,
            };
            if open.seq > 0 {
                txn.open_table(META)?.insert(LOG_SEQ, open.seq)?;
            }
            txn.set_durability(Durability::Immediate)?;
            // The data written is chosen by clients; 2PC keeps a torn commit
            // from ever validating (see redb's set_two_phase_commit docs).
            txn.set_two_phase_commit(true);
            txn.commit()?;
            Ok::<_, StoreError>(())
        })();
        self.stats.checkpoint_running.store(0, Ordering::Relaxed);
        result?;
        self.progress.advance(open.seq);
        Stats::add(&self.stats.db_commits, 1);
        Stats::add(&self.stats.checkpoints, 1);
        self.stats.db_commit_us.record(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        Ok(())
    }

    fn fail(&self, error: &str) {
        Stats::add(&self.stats.commit_failures, 1);
        if !self.progress.failed.swap(true, Ordering::AcqRel) {
            tracing::error!(%error, "applying the log to the database failed: refusing all further writes");
            (self.on_fatal)(format!("commit failed: {error}"));
        }
        self.progress.advance(0);
    }
}
