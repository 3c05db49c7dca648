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
//! - the owner index and sealed-cookie revocations, which readers query in
//!   redb: a batch that changes them commits the open transaction (without
//!   fsync: the log has it) before it is acknowledged.
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
    },
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
        source: SessionKey,
        current: Option<SessionKey>,
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
    pub queue_capacity: usize,
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
}

enum Msg {
    Job(Job),
    Shutdown,
}

/// The handle the service holds to submit mutations.
///
/// The channel grows as needed and a counter enforces the capacity: a
/// bounded channel would allocate every slot up front, and the capacity
/// (`max_connections` x `max_inflight`) is sized never to be reached.
#[derive(Debug, Clone)]
pub struct WriterQueue {
    tx: Sender<Msg>,
    /// Jobs queued and not yet taken by the writer.
    depth: Arc<AtomicUsize>,
    capacity: usize,
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
        self.depth.fetch_add(1, Ordering::Relaxed);
        self.tx.send(Msg::Job(job)).map_err(|_| SubmitError::Closed)
    }

    /// Queues a job if there is room.
    pub fn submit(&self, job: Job) -> Result<(), SubmitError> {
        if self.depth.fetch_add(1, Ordering::Relaxed) >= self.capacity {
            self.depth.fetch_sub(1, Ordering::Relaxed);
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
        let depth = Arc::new(AtomicUsize::new(0));
        let queue = WriterQueue { tx, depth: depth.clone(), capacity: config.queue_capacity };
        let state = WriterThread {
            store,
            out,
            stats,
            clock,
            config,
            rx,
            depth,
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
    depth: Arc<AtomicUsize>,
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
        loop {
            let first = match self.next_msg() {
                Some(Msg::Job(job)) => job,
                Some(Msg::Shutdown) | None => break,
            };
            let mut jobs = vec![first];
            let mut stop = false;
            while jobs.len() < self.config.max_batch {
                match self.rx.try_recv() {
                    Ok(Msg::Job(job)) => jobs.push(job),
                    Ok(Msg::Shutdown) => {
                        stop = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.depth.fetch_sub(jobs.len(), Ordering::Relaxed);
            self.commit_batch(jobs);
            if stop {
                break;
            }
        }
        // Answer anything still queued, then make everything durable in
        // redb: the log starts the next run empty.
        let rest: Vec<Job> =
            self.rx.try_iter().filter_map(|m| if let Msg::Job(j) = m { Some(j) } else { None }).collect();
        if !rest.is_empty() {
            self.commit_batch(rest);
        }
        if !self.failed {
            if let Err(e) = self.commit_open(true) {
                self.fail(&e);
            }
        }
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

    fn fail(&mut self, error: &StoreError) {
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

    fn commit_batch(&mut self, jobs: Vec<Job>) {
        if self.failed {
            let unavailable =
                jobs.into_iter().map(|j| (j.reply, Response::error(ErrorCode::Unavailable, "storage has failed")));
            deliver_all(unavailable);
            return;
        }
        let now = self.clock.now_ms();
        let started = Instant::now();
        let result = self.apply_and_log(&jobs, now);
        self.stats.commit_batch.record(jobs.len() as u64);
        self.stats.commit_us.record(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        match result {
            Ok((mut responses, changes)) => {
                for (key, slot) in changes.slots.into_iter().filter(|(_, s)| s.dirty) {
                    let stored = slot.record.as_ref().map(|r| (r.expires_at_ms, r.last_active_ms));
                    self.out.ttl.publish(key, stored, slot.expiry_reset);
                    self.out.cache.publish(key, slot.record.map(Arc::new), self.generation);
                }
                for (alias, primary) in changes.aliases {
                    self.out.aliases.publish(alias, primary);
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
                deliver_all(jobs.into_iter().map(|j| j.reply).zip(responses));
            }
            Err(e) => {
                self.fail(&e);
                let unavailable =
                    jobs.into_iter().map(|j| (j.reply, Response::error(ErrorCode::Unavailable, "commit failed")));
                deliver_all(unavailable);
            }
        }
        self.maintain();
    }

    /// Applies the batch to the open transaction and logs what it changed.
    /// On success the batch is as durable as the mode promises.
    fn apply_and_log(&mut self, jobs: &[Job], now: u64) -> Result<(Vec<Response>, Changes), StoreError> {
        if self.open.is_none() {
            self.open = Some(self.store.db().begin_write()?);
        }
        let txn = self.open.as_ref().expect("opened above");
        let (responses, changes) = {
            let mut batch = Batch::new(Tables::open(txn)?, &self.out.ttl, &self.out.cache, now);
            let applier = Applier { config: &self.config, stats: &self.stats };
            let mut responses = Vec::with_capacity(jobs.len());
            for job in jobs {
                let response = match applier.apply(&mut batch, &job.op) {
                    Ok(r) => r,
                    Err(StoreError::Corrupt(e)) => {
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
