//! The writer thread: the single point that orders mutations.
//!
//! It drains every queued mutation into one batch (group commit), validates
//! each against the latest state (existence, expiry, compare-and-set
//! version, limits), writes the changed rows into the open redb write
//! transaction, appends them to the write-ahead log as one frame (synced in
//! strict mode), then publishes the new records to the cache and the TTL
//! index, and only then answers. So:
//! - in strict mode nothing is acknowledged before it is durable in the log;
//! - no reader ever sees a state that a crash could take back (in strict
//!   mode), nor a session after its delete or cycle was acknowledged;
//! - repeated writes to one session within a batch cost one insert;
//! - the `expiry`, `by_user` and `handles` tables, and the TTL index, follow
//!   every session row.
//!
//! The open transaction spans many batches and is committed to redb rarely:
//! durably (a checkpoint, after which the log starts over) when the log
//! reaches `checkpoint_bytes` or its first frame `checkpoint_age`, and at
//! shutdown. Within one transaction redb changes a page in place once it has
//! copied it, so a session written a thousand times between checkpoints
//! costs one page copy, not a thousand. Until a batch reaches redb, readers
//! must not need redb for it:
//! - session rows: the cache pins what the writer publishes until the
//!   transaction holding it commits (see `cache.rs`); that memory is bounded
//!   by the log's size at a checkpoint;
//! - owners: the owner index in memory, published like the cache;
//! - sealed-cookie revocations, which readers query in redb: a batch that
//!   changes them commits the open transaction (without fsync: the log has
//!   it) before it is acknowledged.
//!
//! `batch.rs` holds a batch's view of the sessions it touches; `apply.rs`
//! what each operation does to it.
//!
//! Expiry: the TTL index is the authority, since touches extend it in
//! memory first. When a batch first loads a session it takes the later of
//! the stored and the indexed expiry, so a write never undoes a touch, and
//! persisting a touch is just writing the loaded record back.
//!
//! If a log write or a commit fails, every mutation of the batch, and every
//! later one, is answered UNAVAILABLE and the daemon is told to stop: it
//! fails closed. The log holds every acknowledged write, so the next start
//! replays them.

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod apply;
mod batch;

use redb::{Durability, WriteTransaction};
use sessiond_protocol::{ErrorCode, Expiry, Field, PackedFields, Response, SessionHandle, SessionKey};

use self::apply::Applier;
use self::batch::{Batch, Changes};
use crate::aliases::AliasIndex;
use crate::cache::Cache;
use crate::clock::Clock;
use crate::config::LimitPolicy;
use crate::owners::OwnerIndex;
use crate::record::ExpiryRules;
use crate::reply::{ReplyTo, deliver_all};
use crate::stats::Stats;
use crate::store::{LOG_SEQ, META, Store, StoreError, Tables};
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
            open: None,
            generation: 1,
            unsynced_since: None,
            log_since: None,
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
    on_fatal: Box<dyn Fn(String) + Send>,
    failed: bool,
    /// The write transaction batches go into until it is committed.
    open: Option<WriteTransaction>,
    /// Counts the open transactions; the cache pins what is published from
    /// this one until [`Cache::applied`] is told it committed.
    generation: u64,
    /// Relaxed mode: when the oldest log frame not yet synced was appended.
    unsynced_since: Option<Instant>,
    /// When the first frame since the log last started over was appended.
    log_since: Option<Instant>,
}

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
        // Answer anything still queued, then make everything durable in
        // redb: the log starts the next run empty.
        let mut rest: Vec<Job> = self.carried.drain(..).collect();
        rest.extend(self.rx.try_iter().filter_map(|m| if let Msg::Job(j) = m { Some(j) } else { None }));
        while !rest.is_empty() {
            self.commit_batch(rest);
            rest = self.carried.drain(..).collect();
        }
        if !self.failed {
            if let Err(e) = self.commit_open(true).and_then(|()| self.store.mark_clean()) {
                self.fail(&e);
            }
        }
    }

    /// A job leaves the queue's count when the writer takes it.
    fn taken(&self, job: Job) -> Job {
        self.depth.sub(1, job.op.cost());
        job
    }

    /// Waits for the next message, waking to sync the log or checkpoint
    /// when one is due.
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
        let sync = self.unsynced_since.zip(self.config.flush_interval).map(|(since, interval)| since + interval);
        let checkpoint = self.log_since.map(|since| since + self.config.checkpoint_age);
        [sync, checkpoint].into_iter().flatten().min()
    }

    /// Does whatever is due: a relaxed-mode log sync, a checkpoint.
    fn maintain(&mut self) {
        if self.failed {
            return;
        }
        let now = Instant::now();
        let result = (|| -> Result<(), StoreError> {
            if let (Some(since), Some(interval)) = (self.unsynced_since, self.config.flush_interval) {
                if now >= since + interval {
                    self.store.wal().sync()?;
                    self.unsynced_since = None;
                    Stats::add(&self.stats.log_syncs, 1);
                }
            }
            let checkpoint = self.store.wal().written() >= self.config.checkpoint_bytes
                || self.log_since.is_some_and(|since| now >= since + self.config.checkpoint_age);
            if checkpoint { self.commit_open(true) } else { Ok(()) }
        })();
        if let Err(e) = result {
            self.fail(&e);
        }
    }

    /// Commits the open transaction to redb, recording the last log frame
    /// it holds. `durable`: a checkpoint, made with fsync (even with nothing
    /// open, to make earlier commits durable), after which the log starts
    /// over.
    fn commit_open(&mut self, durable: bool) -> Result<(), StoreError> {
        let mut txn = match self.open.take() {
            Some(txn) => txn,
            None if durable => self.store.db().begin_write()?,
            None => return Ok(()),
        };
        let started = Instant::now();
        let seq = self.store.wal().last_seq();
        txn.set_durability(if durable { Durability::Immediate } else { Durability::None })?;
        // The data written is chosen by clients; 2PC keeps a torn commit
        // from ever validating (see redb's set_two_phase_commit docs).
        txn.set_two_phase_commit(true);
        txn.open_table(META)?.insert(LOG_SEQ, seq)?;
        txn.commit()?;
        self.out.cache.applied(self.generation);
        self.generation += 1;
        Stats::add(&self.stats.db_commits, 1);
        self.stats.db_commit_us.record(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        if durable {
            self.store.wal().restart(seq + 1);
            self.unsynced_since = None;
            self.log_since = None;
            Stats::add(&self.stats.checkpoints, 1);
        }
        Ok(())
    }

    fn fail(&mut self, error: &dyn std::fmt::Display) {
        Stats::add(&self.stats.commit_failures, 1);
        // Whatever the open transaction holds past the failure is unknown:
        // it is dropped, never committed. The log has every acknowledged write.
        self.open = None;
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
        let answers = if self.failed {
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
        if let Err(panic) = panic::catch_unwind(AssertUnwindSafe(|| self.maintain())) {
            self.fail(&format!("the writer panicked: {}", panic_text(&*panic)));
        }
    }

    /// Applies, logs and publishes as much of `jobs` as fits one batch
    /// (the rest are carried to the next); returns their answers.
    fn run_batch(&mut self, jobs: &mut Vec<Job>) -> Vec<Response> {
        let now = self.clock.now_ms();
        let started = Instant::now();
        let result = self.apply_and_log(jobs, now);
        if let Ok((responses, _)) = &result {
            // The batch was full: the rest lead the next one.
            self.carried.extend(jobs.drain(responses.len()..));
        }
        self.stats.commit_batch.record(jobs.len() as u64);
        self.stats.commit_us.record(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        let (mut responses, changes) = match result {
            Ok(done) => done,
            Err(e) => {
                self.fail(&e);
                return unavailable(jobs.len(), "commit failed");
            }
        };
        for (key, slot) in changes.slots.into_iter().filter(|(_, s)| s.dirty) {
            let stored = slot.record.as_ref().map(|r| (r.expires_at_ms, r.last_active_ms));
            self.out.ttl.publish(key, stored, slot.expiry_reset);
            self.out.cache.publish(key, slot.record.map(Arc::new), self.generation);
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
        // The batch is in the log now, so it holds even if this
        // commit fails: its answers stand, and the restart replays it.
        let checkpoint = jobs.iter().any(|j| matches!(j.op, Op::Checkpoint));
        if changes.for_readers || checkpoint {
            if let Err(e) = self.commit_open(checkpoint) {
                self.fail(&e);
                for (job, response) in jobs.iter().zip(responses.iter_mut()) {
                    if matches!(job.op, Op::Checkpoint) {
                        *response = Response::error(ErrorCode::Unavailable, "checkpoint failed");
                    }
                }
            }
        }
        Stats::add(&self.stats.commits, 1);
        Stats::add(&self.stats.committed_ops, jobs.len() as u64);
        responses
    }

    /// Applies the batch to the open transaction and logs what it changed.
    /// On success the batch is as durable as the mode promises. Jobs are
    /// applied in order until what the frame may hold reaches
    /// `max_batch_bytes` (at least one is); the answers returned are for
    /// that many, and the caller keeps the rest for the next batch.
    fn apply_and_log(&mut self, jobs: &[Job], now: u64) -> Result<(Vec<Response>, Changes), StoreError> {
        if self.open.is_none() {
            self.open = Some(self.store.db().begin_write()?);
        }
        let txn = self.open.as_ref().expect("opened above");
        let (responses, changes) = {
            let mut batch = Batch::new(Tables::open(txn)?, &self.out.ttl, &self.out.cache, now);
            let applier = Applier { config: &self.config, stats: &self.stats };
            let mut responses = Vec::with_capacity(jobs.len());
            let mut cost = 0;
            for job in jobs {
                if cost + batch.loaded_bytes >= self.config.max_batch_bytes && !responses.is_empty() {
                    break;
                }
                cost += job.op.cost();
                let response = match applier.apply(&mut batch, &job.op) {
                    Ok(r) => r,
                    Err(StoreError::Corrupt(e)) => {
                        Stats::add(&self.stats.corrupt_records, 1);
                        tracing::error!(error = %e, "unreadable session record");
                        Response::error(ErrorCode::Internal, "stored session is unreadable")
                    }
                    Err(e) => return Err(e),
                };
                responses.push(response);
            }
            (responses, batch.write_back()?)
        };
        if changes.redo.iter().any(|r| !r.is_empty()) {
            let parts = changes.redo.each_ref().map(Redo::as_bytes);
            let mut wal = self.store.wal();
            wal.append(&parts)?;
            Stats::add(&self.stats.log_frames, 1);
            if self.config.flush_interval.is_none() {
                wal.sync()?;
                Stats::add(&self.stats.log_syncs, 1);
            } else if self.unsynced_since.is_none() {
                self.unsynced_since = Some(Instant::now());
            }
            self.log_since.get_or_insert_with(Instant::now);
        }
        Ok((responses, changes))
    }
}

fn unavailable(n: usize, why: &str) -> Vec<Response> {
    (0..n).map(|_| Response::error(ErrorCode::Unavailable, why)).collect()
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
