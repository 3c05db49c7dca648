//! The writer thread: the single point that orders mutations.
//!
//! It drains every queued mutation into one batch (group commit), validates
//! each against the latest state (existence, expiry, compare-and-set
//! version, limits), appends the rows it changed to the write-ahead log as
//! one frame (synced in strict mode), then publishes the new records to the
//! cache, the TTL index and `Pending`, and only then answers. So:
//! - in strict mode nothing is acknowledged before it is durable in the log;
//! - no reader ever sees a state that a crash could take back (in strict
//!   mode), nor a session after its delete or cycle was acknowledged;
//! - repeated writes to one session within a batch cost one row;
//! - the `expiry`, `by_user` and `handles` tables, and the TTL index, follow
//!   every session row.
//!
//! redb is not on this path. The writer reads it through a snapshot under
//! the rows still pending, and hands each frame's rows to the applier
//! thread (`applier.rs`), which writes them into redb a little later and
//! makes them durable when the log needs a file back. Until redb holds a
//! row, readers find it elsewhere:
//! - session rows: the cache pins what the writer publishes until redb
//!   holds it (see `cache.rs`), and `Pending` has them besides;
//! - owners: the owner index in memory, published like the cache;
//! - sealed-cookie revocations and everything else: `Pending`.
//!
//! The log is two files written in turn (`wal::Log`): when the active one
//! reaches `checkpoint_bytes` or its first frame `checkpoint_age`, the
//! writer moves to the other, once redb holds all of that one durably, and
//! asks the applier to make the file it left durable. A checkpoint thus
//! never stops the writer, and replay after a crash is bounded by the two
//! files.
//!
//! `batch.rs` holds a batch's view of the sessions it touches; `apply.rs`
//! what each operation does to it.
//!
//! Expiry: the TTL index is the authority, since touches extend it in
//! memory first. When a batch first loads a session it takes the later of
//! the stored and the indexed expiry, so a write never undoes a touch, and
//! persisting a touch is just writing the loaded record back.
//!
//! If a log write or a redb commit fails, every mutation of the batch, and
//! every later one, is answered UNAVAILABLE and the daemon is told to
//! stop: it fails closed. The log holds every acknowledged write, so the
//! next start replays them.

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod applier;
mod apply;
mod batch;

use parking_lot::Mutex;
use redb::{ReadTransaction, ReadableDatabase};
use sessiond_protocol::{Expiry, Field, PackedFields, SessionHandle, SessionKey};

use self::applier::{ApplyMsg, Progress};
use self::apply::{Applier, Failure};
use self::batch::{Batch, Changes};
use crate::aliases::AliasIndex;
use crate::answer::{Answer, Refusal};
use crate::cache::Cache;
use crate::clock::Clock;
use crate::config::LimitPolicy;
use crate::owners::OwnerIndex;
use crate::record::ExpiryRules;
use crate::reply::{ReplyTo, deliver_all};
use crate::stats::Stats;
use crate::store::{Store, StoreError, Tables};
use crate::ttl::TtlIndex;
use crate::wal::Redo;

/// A mutation, already validated for syntax and static limits by the service.
#[derive(Debug)]
pub enum Op {
    Create {
        fields: PackedFields,
        expiry: Expiry,
        meta: Meta,
        /// CREATE_AS: the key the caller proposed, as sent, and its id.
        proposed: Option<(String, SessionKey)>,
    },
    /// PATCH or REPLACE with a new policy and owner, in one write (boxed:
    /// it is the largest operation, and every queued job is as large as it).
    Write(Box<WriteOp>),
    Replace {
        key: SessionKey,
        fields: PackedFields,
        expected_version: Option<u64>,
    },
    /// `set` and `remove` are sorted and unique.
    Patch {
        key: SessionKey,
        set: Vec<Field>,
        remove: Vec<String>,
        expected_version: Option<u64>,
    },
    Delete {
        key: SessionKey,
    },
    Cycle {
        key: SessionKey,
        bind_user: Option<String>,
        /// CYCLE_AS: the new key the caller proposed, as sent, and its id.
        proposed: Option<(String, SessionKey)>,
    },
    /// `None` leaves a value as it is.
    SetMeta {
        key: SessionKey,
        ip: Option<String>,
        user_agent: Option<String>,
    },
    Revoke {
        handle: SessionHandle,
    },
    RevokeUser {
        user: String,
        keep: Option<SessionHandle>,
    },
    /// The single-use half of redeeming a transfer token, checked and done
    /// in one transaction: record the token as used, then give `host` its
    /// own key to the source session.
    Redeem {
        nonce: [u8; 24],
        exp_ms: u64,
        /// The last instant the token may be redeemed (its expiry plus the
        /// allowed skew), checked again against the batch's clock: the
        /// service's check came earlier, and a purge of the replay guard
        /// in between must not let a used token through.
        valid_until_ms: u64,
        source: SessionKey,
        /// The destination's current session: its id, and the key as the
        /// client sent it (answered back if the session is kept).
        current: Option<(SessionKey, String)>,
        always_replace: bool,
    },
    /// Revokes one sealed cookie session until it would have expired.
    RevokeSealed {
        sid: [u8; 16],
        until_ms: u64,
    },
    /// Forgets redeemed tokens and denied cookies past their expiry.
    PurgeTokens {
        skew_ms: u64,
    },
    SetExpiry {
        key: SessionKey,
        expiry: Expiry,
    },
    /// Store the expiry that touches moved in the TTL index.
    PersistTouch {
        key: SessionKey,
    },
    /// Delete these sessions if they are still expired.
    Sweep {
        keys: Vec<SessionKey>,
    },
    /// Make everything so far durable in redb and start the log over: for
    /// tools and tests that read the database file itself.
    Checkpoint,
}

/// What one job may add to its batch's log frame and hold in the queue
/// besides the bytes it carries: index rows, its answer.
const JOB_OVERHEAD: usize = 1024;

impl Op {
    /// An upper bound on the bytes this operation brings into the writer:
    /// what it carries, plus its index rows and answer. With the records a
    /// batch loads (see `Batch::loaded_bytes`), this bounds the batch's
    /// log frame.
    pub fn cost(&self) -> usize {
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        JOB_OVERHEAD
            + match self {
                Op::Create { fields, meta, .. } => {
                    fields.encoded_len() + text(&meta.user) + text(&meta.ip) + text(&meta.user_agent)
                }
                Op::Write(w) => {
                    w.set.iter().map(|f| f.name.len() + f.value.len() + 8).sum::<usize>()
                        + w.remove.iter().map(|r| r.len() + 8).sum::<usize>()
                        + match &w.owner {
                            sessiond_protocol::Owner::Set(user) => user.len(),
                            _ => 0,
                        }
                }
                Op::Replace { fields, .. } => fields.encoded_len(),
                Op::Patch { set, remove, .. } => {
                    set.iter().map(|f| f.name.len() + f.value.len() + 8).sum::<usize>()
                        + remove.iter().map(|r| r.len() + 8).sum::<usize>()
                }
                // A proposed key (CYCLE_AS) is at most 86 bytes: overhead.
                Op::Cycle { bind_user, .. } => text(bind_user),
                Op::SetMeta { ip, user_agent, .. } => text(ip) + text(user_agent),
                Op::RevokeUser { user, .. } => user.len(),
                Op::Sweep { keys } => keys.len() * 64,
                Op::Delete { .. }
                | Op::Revoke { .. }
                | Op::Redeem { .. }
                | Op::RevokeSealed { .. }
                | Op::PurgeTokens { .. }
                | Op::SetExpiry { .. }
                | Op::PersistTouch { .. }
                | Op::Checkpoint => 0,
            }
    }
}

/// WRITE's changes; `set` and `remove` are sorted and unique.
#[derive(Debug)]
pub struct WriteOp {
    pub key: SessionKey,
    pub set: Vec<Field>,
    pub remove: Vec<String>,
    pub replace: bool,
    pub expected_version: Option<u64>,
    pub expiry: Option<Expiry>,
    pub owner: sessiond_protocol::Owner,
}

/// Owner and origin of a new session, already validated (IP canonical, user
/// agent truncated).
#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub user: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug)]
pub struct Job {
    pub op: Op,
    pub reply: ReplyTo,
}

#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// `None`: strict. `Some(i)`: relaxed, durable at least every `i`.
    pub flush_interval: Option<Duration>,
    /// Checkpoint when the log holds this many bytes...
    pub checkpoint_bytes: u64,
    /// ...or its first frame is this old.
    pub checkpoint_age: Duration,
    pub max_batch: usize,
    /// A batch takes no further job once what it may log reaches this.
    pub max_batch_bytes: usize,
    pub queue_capacity: usize,
    /// Bytes of queued jobs (by [`Op::cost`]) past which the network is
    /// answered BUSY.
    pub max_queued_bytes: usize,
    pub max_session_bytes: usize,
    pub max_fields: usize,
    pub rules: ExpiryRules,
    pub max_sessions_per_user: Option<usize>,
    pub limit_policy: LimitPolicy,
    /// For the power-loss test's positive control only: answer a batch
    /// before its frame is synced, which strict mode must never do.
    pub ack_before_sync: bool,
}

/// The shared state the writer publishes to after each commit.
#[derive(Debug, Clone)]
pub struct Published {
    pub cache: Arc<Cache>,
    pub ttl: Arc<TtlIndex>,
    pub aliases: Arc<AliasIndex>,
    pub owners: Arc<OwnerIndex>,
}

// Shutdown is sent once; every other message is a job, so boxing them
// would cost an allocation per write for nothing.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Job(Job),
    Shutdown,
}

/// The handle the service holds to submit mutations.
///
/// The channel grows as needed and counters enforce the capacity, in jobs
/// and in bytes: a bounded channel would allocate every slot up front. The
/// job capacity (`max_connections` x `max_inflight`) is sized never to be
/// reached; the byte capacity is what keeps a few clients sending large
/// sessions from queueing gigabytes.
#[derive(Debug, Clone)]
pub struct WriterQueue {
    tx: Sender<Msg>,
    depth: Arc<Depth>,
    capacity: usize,
    max_bytes: usize,
}

/// Jobs queued and not yet taken by the writer, and their [`Op::cost`].
#[derive(Debug, Default)]
struct Depth {
    jobs: AtomicUsize,
    bytes: AtomicUsize,
}

impl Depth {
    fn add(&self, cost: usize) -> (usize, usize) {
        (self.jobs.fetch_add(1, Ordering::Relaxed), self.bytes.fetch_add(cost, Ordering::Relaxed))
    }

    fn sub(&self, jobs: usize, bytes: usize) {
        self.jobs.fetch_sub(jobs, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Job(_) => "Job",
            Msg::Shutdown => "Shutdown",
        })
    }
}

/// Why a job was not queued; the caller answers the request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue is at capacity: the writer is behind.
    Full,
    /// The writer has stopped.
    Closed,
}

impl WriterQueue {
    /// Queues a job even past the capacity: for background work that is
    /// bounded by itself (one sweep batch at a time), never for a network
    /// thread.
    pub fn submit_wait(&self, job: Job) -> Result<(), SubmitError> {
        self.depth.add(job.op.cost());
        self.tx.send(Msg::Job(job)).map_err(|_| SubmitError::Closed)
    }

    /// Queues a job if there is room, in jobs and in bytes. A job larger
    /// than the whole byte capacity still goes into an empty queue.
    pub fn submit(&self, job: Job) -> Result<(), SubmitError> {
        let cost = job.op.cost();
        let (jobs, bytes) = self.depth.add(cost);
        if jobs >= self.capacity || (bytes > 0 && bytes + cost > self.max_bytes) {
            self.depth.sub(1, cost);
            return Err(SubmitError::Full);
        }
        self.tx.send(Msg::Job(job)).map_err(|_| SubmitError::Closed)
    }
}

#[derive(Debug)]
pub struct Writer {
    queue: WriterQueue,
    thread: JoinHandle<()>,
}

impl Writer {
    /// Starts the writer thread. `on_fatal` is called once if the storage
    /// fails; the daemon should then exit non-zero.
    pub fn spawn(
        store: Arc<Store>,
        out: Published,
        stats: Arc<Stats>,
        clock: Arc<dyn Clock>,
        config: WriterConfig,
        on_fatal: Box<dyn Fn(String) + Send>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = channel();
        let depth = Arc::new(Depth::default());
        let queue = WriterQueue {
            tx,
            depth: depth.clone(),
            capacity: config.queue_capacity,
            max_bytes: config.max_queued_bytes,
        };
        let on_fatal: Arc<dyn Fn(String) + Send + Sync> = {
            let once = Mutex::new(on_fatal);
            Arc::new(move |why| (once.lock())(why))
        };
        let progress = Arc::new(Progress::default());
        let (applier_tx, applier_rx) = channel();
        let applier = applier::Applier {
            store: store.clone(),
            stats: stats.clone(),
            progress: progress.clone(),
            rx: applier_rx,
            on_fatal: on_fatal.clone(),
        };
        let applier = std::thread::Builder::new().name("sessiond-applier".into()).spawn(move || applier.run())?;
        let snapshot = store.db().begin_read().map_err(std::io::Error::other)?;
        let state = WriterThread {
            store,
            out,
            stats,
            clock,
            config,
            rx,
            depth,
            carried: VecDeque::new(),
            on_fatal,
            failed: false,
            snapshot,
            applier_tx: Some(applier_tx),
            applier: Some(applier),
            progress,
            seen_applied: 0,
            unapplied: VecDeque::new(),
            pending_bytes: 0,
            redo: Redo::default(),
            sync_after_answer: false,
            unsynced_since: None,
        };
        let thread = std::thread::Builder::new().name("sessiond-writer".into()).spawn(move || state.run())?;
        Ok(Self { queue, thread })
    }

    pub fn queue(&self) -> WriterQueue {
        self.queue.clone()
    }

    /// Commits everything queued so far durably, then stops the thread.
    pub fn shutdown(self) {
        let _ = self.queue.tx.send(Msg::Shutdown);
        if self.thread.join().is_err() {
            tracing::error!("the writer thread panicked");
        }
    }
}

struct WriterThread {
    store: Arc<Store>,
    out: Published,
    stats: Arc<Stats>,
    clock: Arc<dyn Clock>,
    config: WriterConfig,
    rx: Receiver<Msg>,
    depth: Arc<Depth>,
    /// Jobs taken from the queue that the last batch had no room for: they
    /// lead the next one, in order.
    carried: VecDeque<Job>,
    on_fatal: Arc<dyn Fn(String) + Send + Sync>,
    failed: bool,
    /// redb as of the applier's last commit the writer has seen; batches
    /// read it under `Pending`.
    snapshot: ReadTransaction,
    /// `None` once the writer has stopped.
    applier_tx: Option<Sender<ApplyMsg>>,
    applier: Option<JoinHandle<()>>,
    progress: Arc<Progress>,
    /// The last frame redb held when the snapshot was taken.
    seen_applied: u64,
    /// Frames redb may not hold yet, oldest first.
    unapplied: VecDeque<Unapplied>,
    pending_bytes: usize,
    /// The frame being built, kept to reuse its allocation.
    redo: Redo,
    /// The positive control's broken order: sync after answering.
    sync_after_answer: bool,
    /// Relaxed mode: when the oldest log frame not yet synced was appended.
    unsynced_since: Option<Instant>,
}

/// A frame redb may not hold yet: its rows, to forget from `Pending` once
/// it does, and the memory they hold there.
struct Unapplied {
    seq: u64,
    rows: Vec<(u8, crate::pending::Bytes)>,
    bytes: usize,
}

/// How long the writer waits at a time for the applier, when `Pending`
/// holds more than it may or a log file is not yet free.
const WAIT_FOR_APPLIER: Duration = Duration::from_millis(20);

impl WriterThread {
    fn run(mut self) {
        let mut stop = false;
        while !stop {
            let mut jobs: Vec<Job> = self.carried.drain(..).collect();
            if jobs.is_empty() {
                match self.next_msg() {
                    Some(Msg::Job(job)) => jobs.push(self.taken(job)),
                    Some(Msg::Shutdown) | None => break,
                }
            }
            while jobs.len() < self.config.max_batch {
                match self.rx.try_recv() {
                    Ok(Msg::Job(job)) => jobs.push(self.taken(job)),
                    Ok(Msg::Shutdown) => {
                        stop = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit_batch(jobs);
        }
        // Answer anything still queued, then let the applier make
        // everything durable in redb: the log starts the next run empty.
        let mut rest: Vec<Job> = self.carried.drain(..).collect();
        rest.extend(self.rx.try_iter().filter_map(|m| if let Msg::Job(j) = m { Some(j) } else { None }));
        while !rest.is_empty() {
            self.commit_batch(rest);
            rest = self.carried.drain(..).collect();
        }
        drop(self.applier_tx.take());
        if let Some(applier) = self.applier.take() {
            if applier.join().is_err() {
                self.fail(&"the applier thread panicked");
            }
        }
        if !self.failed && !self.progress.failed.load(Ordering::Acquire) {
            if let Err(e) = self.store.mark_clean() {
                self.fail(&e);
            }
        }
    }

    /// A job leaves the queue's count when the writer takes it.
    fn taken(&self, job: Job) -> Job {
        self.depth.sub(1, job.op.cost());
        job
    }

    /// Waits for the next message, waking to sync the log or switch its
    /// files when one is due.
    fn next_msg(&mut self) -> Option<Msg> {
        loop {
            let Some(deadline) = self.next_deadline() else { return self.rx.recv().ok() };
            match self.rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(msg) => return Some(msg),
                Err(RecvTimeoutError::Timeout) => self.maintain(),
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        if self.failed {
            return None;
        }
        let now = Instant::now();
        let sync = self.unsynced_since.zip(self.config.flush_interval).map(|(since, interval)| since + interval);
        // A switch that is due but waits for the applier is tried again
        // shortly, not in a busy loop.
        let switch = self
            .store
            .log()
            .age()
            .map(|age| (now + self.config.checkpoint_age.saturating_sub(age)).max(now + WAIT_FOR_APPLIER));
        [sync, switch].into_iter().flatten().min()
    }

    /// Does whatever is due: a relaxed-mode log sync, a switch of log files.
    fn maintain(&mut self) {
        if self.failed {
            return;
        }
        let now = Instant::now();
        let result = (|| -> Result<Option<u64>, StoreError> {
            let mut log = self.store.log();
            if let (Some(since), Some(interval)) = (self.unsynced_since, self.config.flush_interval) {
                if now >= since + interval {
                    log.sync()?;
                    self.unsynced_since = None;
                    Stats::add(&self.stats.log_syncs, 1);
                }
            }
            let due = log.written() >= self.config.checkpoint_bytes
                || log.age().is_some_and(|age| age >= self.config.checkpoint_age);
            if !due {
                return Ok(None);
            }
            let left = log.switch(self.progress.durable.load(Ordering::Acquire))?;
            if left.is_some() {
                // Switching synced the file left.
                self.unsynced_since = None;
            }
            Ok(left)
        })();
        match result {
            Ok(Some(left)) => self.send_applier(ApplyMsg::Durable { through: left }),
            Ok(None) => {}
            Err(e) => self.fail(&e),
        }
    }

    fn send_applier(&mut self, msg: ApplyMsg) {
        if let Some(tx) = &self.applier_tx {
            if tx.send(msg).is_err() {
                self.fail(&"the applier thread has stopped");
            }
        }
    }

    /// Takes in what the applier has committed since the last batch: a new
    /// snapshot that holds it, and the rows it holds are forgotten from
    /// `Pending` and unpinned in the cache. While `Pending` holds more than
    /// its bound, waits for the applier.
    fn catch_up(&mut self) -> Result<(), String> {
        let bound = usize::try_from(self.config.checkpoint_bytes).unwrap_or(usize::MAX).saturating_mul(4);
        let mut asked = false;
        loop {
            if self.failed || self.progress.failed.load(Ordering::Acquire) {
                return Err("applying the log to the database failed".into());
            }
            let applied = self.progress.durable.load(Ordering::Acquire);
            if applied > self.seen_applied {
                // Begun after the commit of `applied`, so it holds every
                // row forgotten below.
                self.snapshot = self.store.db().begin_read().map_err(|e| e.to_string())?;
                while self.unapplied.front().is_some_and(|u| u.seq <= applied) {
                    let done = self.unapplied.pop_front().expect("checked above");
                    self.store.pending().applied(done.seq, &done.rows);
                    self.pending_bytes -= done.bytes;
                }
                self.out.cache.applied(applied);
                self.seen_applied = applied;
            }
            if self.pending_bytes <= bound {
                return Ok(());
            }
            if !asked {
                // Only a checkpoint lowers `Pending`, and the log may not be
                // due to switch files (one switch may be waiting for the
                // last checkpoint): ask for one through everything logged.
                let through = self.store.log().last_seq();
                self.send_applier(ApplyMsg::Durable { through });
                asked = true;
                Stats::add(&self.stats.applier_waits, 1);
            }
            self.progress.wait(WAIT_FOR_APPLIER);
        }
    }

    fn fail(&mut self, error: &dyn std::fmt::Display) {
        Stats::add(&self.stats.commit_failures, 1);
        if !self.failed {
            self.failed = true;
            tracing::error!(%error, "commit failed: refusing all further writes");
            (self.on_fatal)(format!("commit failed: {error}"));
        }
    }

    /// Commits a batch and answers it. A panic anywhere in it fails the
    /// writer closed, like a storage error: the batch is answered
    /// UNAVAILABLE (a write may be durable and still be refused, never the
    /// reverse), every later write is refused, and main is told to exit so
    /// the service manager restarts the daemon.
    fn commit_batch(&mut self, mut jobs: Vec<Job>) {
        let answers: Vec<Answer> = if self.failed {
            unavailable(jobs.len(), "storage has failed")
        } else {
            match panic::catch_unwind(AssertUnwindSafe(|| self.run_batch(&mut jobs))) {
                Ok(answers) => answers,
                Err(panic) => {
                    self.fail(&format!("the writer panicked: {}", panic_text(&*panic)));
                    unavailable(jobs.len(), "internal error; writes are refused")
                }
            }
        };
        deliver_all(jobs.into_iter().map(|j| j.reply).zip(answers));
        if std::mem::take(&mut self.sync_after_answer) {
            // As on a slow disk: the client has its answer well before the
            // sync, so the power-loss test sees the gap every time.
            std::thread::sleep(Duration::from_millis(2));
            let synced = self.store.log().sync();
            if let Err(e) = synced {
                self.fail(&e);
            }
        }
        if let Err(panic) = panic::catch_unwind(AssertUnwindSafe(|| self.maintain())) {
            self.fail(&format!("the writer panicked: {}", panic_text(&*panic)));
        }
    }

    /// Applies, logs and publishes as much of `jobs` as fits one batch
    /// (the rest are carried to the next); returns their answers.
    fn run_batch(&mut self, jobs: &mut Vec<Job>) -> Vec<Answer> {
        if let Err(e) = self.catch_up() {
            self.fail(&e);
            return unavailable(jobs.len(), "storage has failed");
        }
        let now = self.clock.now_ms();
        let started = Instant::now();
        let result = self.apply_and_log(jobs, now);
        if let Ok((answers, _, _)) = &result {
            // The batch was full: the rest lead the next one.
            self.carried.extend(jobs.drain(answers.len()..));
        }
        self.stats.commit_batch.record(jobs.len() as u64);
        self.stats.commit_us.record(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        let (mut answers, changes, seq) = match result {
            Ok(done) => done,
            Err(e) => {
                self.fail(&e);
                return unavailable(jobs.len(), "commit failed");
            }
        };
        // The cache pins what it is given until redb holds frame `seq`;
        // a batch that logged nothing pins nothing.
        let generation = seq.unwrap_or(self.seen_applied).max(1);
        if let Some(seq) = seq {
            let pending = self.store.pending();
            pending.publish(seq, &changes.rows);
            let held = || changes.rows.iter().filter(|r| pending.holds(r.table));
            let bytes = held().map(crate::pending::Row::bytes).sum();
            let keys = held().map(|r| (r.table, r.key.clone())).collect();
            self.unapplied.push_back(Unapplied { seq, rows: keys, bytes });
            self.pending_bytes += bytes;
            self.send_applier(ApplyMsg::Rows { seq, rows: changes.rows });
        }
        for (key, slot) in changes.slots.into_iter().filter(|(_, s)| s.dirty) {
            let stored = slot.record.as_ref().map(|r| (r.expires_at_ms, r.last_active_ms));
            self.out.ttl.publish(key, stored, slot.expiry_reset);
            self.out.cache.publish(key, slot.record.map(Arc::new), generation);
        }
        for (alias, primary) in changes.aliases {
            self.out.aliases.publish(alias, primary);
        }
        for (key, old, new) in changes.owners {
            self.out.owners.publish(key, old.as_deref(), new.as_deref());
        }
        for key in changes.refile {
            self.out.ttl.refile(key);
        }
        for (job, answer) in jobs.iter().zip(answers.iter_mut()) {
            if matches!(job.op, Op::Checkpoint) {
                if let Err(e) = self.checkpoint() {
                    *answer = Err(Refusal::Unavailable(format!("checkpoint failed: {e}")));
                }
            }
        }
        Stats::add(&self.stats.commits, 1);
        Stats::add(&self.stats.committed_ops, jobs.len() as u64);
        answers
    }

    /// Waits until redb holds everything logged so far, durably.
    fn checkpoint(&mut self) -> Result<(), String> {
        let (tx, rx) = channel();
        self.send_applier(ApplyMsg::Checkpoint(tx));
        rx.recv().map_err(|_| "the applier thread has stopped".to_owned())?
    }

    /// Applies the batch and logs what it changed. On success the batch is
    /// as durable as the mode promises. Jobs are applied in order until
    /// what the frame may hold reaches `max_batch_bytes` (at least one is);
    /// the answers returned are for that many, and the caller keeps the
    /// rest for the next batch. Returns the frame's number, if the batch
    /// changed anything.
    fn apply_and_log(&mut self, jobs: &[Job], now: u64) -> Result<(Vec<Answer>, Changes, Option<u64>), StoreError> {
        let (answers, changes) = {
            let tables = Tables::open(&self.snapshot, self.store.pending())?;
            let mut batch = Batch::new(tables, &self.out, now);
            let applier = Applier { config: &self.config, stats: &self.stats };
            let mut answers = Vec::with_capacity(jobs.len());
            let mut cost = 0;
            for job in jobs {
                if cost + batch.loaded_bytes >= self.config.max_batch_bytes && !answers.is_empty() {
                    break;
                }
                cost += job.op.cost();
                let answer = match applier.apply(&mut batch, &job.op) {
                    Ok(done) => Ok(done),
                    Err(Failure::Refused(refusal)) => Err(refusal),
                    Err(Failure::Store(StoreError::Corrupt(e))) => {
                        Stats::add(&self.stats.corrupt_records, 1);
                        tracing::error!(error = %e, "unreadable session record");
                        Err(Refusal::Unreadable)
                    }
                    Err(Failure::Store(e)) => return Err(e),
                };
                answers.push(answer);
            }
            (answers, batch.write_back()?)
        };
        if changes.rows.is_empty() {
            return Ok((answers, changes, None));
        }
        self.redo.clear();
        for row in &changes.rows {
            self.redo.put(row.table, &row.key, row.value.as_deref());
        }
        let mut log = self.store.log();
        let seq = log.append(&[self.redo.as_bytes()])?;
        Stats::add(&self.stats.log_frames, 1);
        if self.config.flush_interval.is_some() {
            self.unsynced_since.get_or_insert_with(Instant::now);
        } else if self.config.ack_before_sync {
            self.sync_after_answer = true;
        } else {
            log.sync()?;
            Stats::add(&self.stats.log_syncs, 1);
        }
        Ok((answers, changes, Some(seq)))
    }
}

fn unavailable(n: usize, why: &str) -> Vec<Answer> {
    (0..n).map(|_| Err(Refusal::Unavailable(why.to_owned()))).collect()
}

/// The message a panic was raised with, if it was text.
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replace(bytes: usize) -> Job {
        let fields = PackedFields::new(&[Field { name: "v".into(), value: vec![0; bytes] }]);
        Job {
            op: Op::Replace { key: SessionKey::from_bytes([7; 32]), fields, expected_version: None },
            reply: ReplyTo::Nobody,
        }
    }

    #[test]
    fn the_queue_refuses_a_write_past_its_byte_bound_and_takes_one_again_once_the_writer_drains() {
        let (tx, rx) = channel();
        let queue = WriterQueue { tx, depth: Arc::default(), capacity: 1000, max_bytes: 1 << 20 };
        let cost = replace(100_000).op.cost();
        let mut queued = 0;
        while queue.submit(replace(100_000)) == Ok(()) {
            queued += 1;
            assert!(queued <= 1000, "the byte bound never refused");
        }
        assert_eq!(queued, (1 << 20) / cost, "as many as fit in the bound, no more");
        assert!(queue.depth.bytes.load(Ordering::Relaxed) <= 1 << 20);
        // The writer takes the jobs (and subtracts them): room again.
        let taken: Vec<_> = rx.try_iter().collect();
        queue.depth.sub(taken.len(), taken.len() * cost);
        assert_eq!(queue.submit(replace(100_000)), Ok(()));
        // One job larger than the whole bound still goes into an empty queue.
        rx.try_iter().for_each(drop);
        queue.depth.sub(1, cost);
        assert_eq!(queue.submit(replace(2 << 20)), Ok(()));
        assert_eq!(queue.submit(replace(10)), Err(SubmitError::Full));
    }
}
