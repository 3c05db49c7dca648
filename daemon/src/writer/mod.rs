//! The writer thread: the single point that orders mutations.
//!
//! It drains every queued mutation into one redb write transaction (group
//! commit), validates each against the latest state (existence, expiry,
//! compare-and-set version, limits), commits, then publishes the new
//! records to the cache, and only then answers. So:
//! - in strict mode nothing is acknowledged before a durable commit;
//! - no reader ever sees a state that a crash could take back (in strict
//!   mode), nor a session after its delete or cycle was acknowledged;
//! - repeated writes to one session within a batch cost one insert;
//! - the `expiry`, `by_user` and `handles` tables, and the TTL index, follow
//!   every session row.
//!
//! `batch.rs` holds a batch's view of the sessions it touches; `apply.rs`
//! what each operation does to it.
//!
//! Expiry: the TTL index is the authority, since touches extend it in
//! memory first. When a batch first loads a session it takes the later of
//! the stored and the indexed expiry, so a write never undoes a touch, and
//! persisting a touch is just writing the loaded record back.
//!
//! If a commit fails, every mutation of the batch, and every later one, is
//! answered UNAVAILABLE and the daemon is told to stop: it fails closed.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod apply;
mod batch;

use redb::Durability;
use sessiond_protocol::{ErrorCode, Expiry, Field, Response, SessionHandle, SessionKey};

use self::apply::Applier;
use self::batch::{Batch, Changes, Tables};
use crate::aliases::AliasIndex;
use crate::cache::Cache;
use crate::clock::Clock;
use crate::config::LimitPolicy;
use crate::record::ExpiryRules;
use crate::reply::{ReplyTo, deliver_all};
use crate::stats::Stats;
use crate::store::{ALIASES, BY_USER, CONSUMED, DENIED, EXPIRY, HANDLES, SESSIONS, Store, StoreError, USER_EPOCH};
use crate::ttl::TtlIndex;

/// A mutation, already validated for syntax and static limits by the service.
#[derive(Debug)]
pub enum Op {
    Create {
        fields: Vec<Field>,
        expiry: Expiry,
        meta: Meta,
    },
    Replace {
        key: SessionKey,
        fields: Vec<Field>,
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
#[derive(Debug, Clone)]
pub struct WriterQueue {
    tx: SyncSender<Msg>,
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
    /// Queues a job, waiting for room; for background work only, never for
    /// a network thread.
    pub fn submit_wait(&self, job: Job) -> Result<(), SubmitError> {
        self.tx.send(Msg::Job(job)).map_err(|_| SubmitError::Closed)
    }

    /// Queues a job if there is room.
    pub fn submit(&self, job: Job) -> Result<(), SubmitError> {
        self.tx.try_send(Msg::Job(job)).map_err(|e| match e {
            TrySendError::Full(_) => SubmitError::Full,
            TrySendError::Disconnected(_) => SubmitError::Closed,
        })
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
        let (tx, rx) = sync_channel(config.queue_capacity);
        let state =
            WriterThread { store, out, stats, clock, config, rx, on_fatal, failed: false, volatile_since: None };
        let thread = std::thread::Builder::new().name("sessiond-writer".into()).spawn(move || state.run())?;
        Ok(Self { queue: WriterQueue { tx }, thread })
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
    on_fatal: Box<dyn Fn(String) + Send>,
    failed: bool,
    /// Relaxed mode: when the oldest commit not yet made durable happened.
    volatile_since: Option<Instant>,
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
            self.commit_batch(jobs);
            if stop {
                break;
            }
        }
        // Answer anything still queued, then make every commit durable.
        let rest: Vec<Job> =
            self.rx.try_iter().filter_map(|m| if let Msg::Job(j) = m { Some(j) } else { None }).collect();
        if !rest.is_empty() {
            self.commit_batch(rest);
        }
        if self.volatile_since.is_some() && !self.failed {
            self.flush_durable();
        }
    }

    /// Waits for the next message; in relaxed mode, wakes up to make
    /// volatile commits durable in time.
    fn next_msg(&mut self) -> Option<Msg> {
        loop {
            let deadline = match (self.volatile_since, self.config.flush_interval) {
                (Some(since), Some(interval)) => since + interval,
                _ => return self.rx.recv().ok(),
            };
            match self.rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(msg) => return Some(msg),
                Err(RecvTimeoutError::Timeout) => self.flush_durable(),
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    fn flush_durable(&mut self) {
        let result = (|| -> Result<(), StoreError> {
            let mut txn = self.store.db().begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            txn.set_two_phase_commit(true);
            txn.commit()?;
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.volatile_since = None;
                Stats::add(&self.stats.durable_commits, 1);
            }
            Err(e) => self.fail(&e),
        }
    }

    fn fail(&mut self, error: &StoreError) {
        Stats::add(&self.stats.commit_failures, 1);
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
        let result = self.apply_and_commit(&jobs, now);
        self.stats.commit_batch.record(jobs.len() as u64);
        self.stats.commit_us.record(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        match result {
            Ok((responses, changes)) => {
                for (key, slot) in changes.slots.into_iter().filter(|(_, s)| s.dirty) {
                    let stored = slot.record.as_ref().map(|r| (r.expires_at_ms, r.last_active_ms));
                    self.out.ttl.publish(key, stored, slot.expiry_reset);
                    self.out.cache.publish(key, slot.record.map(Arc::new));
                }
                for (alias, primary) in changes.aliases {
                    self.out.aliases.publish(alias, primary);
                }
                for key in changes.refile {
                    self.out.ttl.refile(key);
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
    }

    fn apply_and_commit(&mut self, jobs: &[Job], now: u64) -> Result<(Vec<Response>, Changes), StoreError> {
        let mut txn = self.store.db().begin_write()?;
        let durable = self.config.flush_interval.is_none();
        txn.set_durability(if durable { Durability::Immediate } else { Durability::None })?;
        // The data written is chosen by clients; 2PC keeps a torn commit
        // from ever validating (see redb's set_two_phase_commit docs).
        txn.set_two_phase_commit(true);
        let (responses, changes) = {
            let tables = Tables {
                sessions: txn.open_table(SESSIONS)?,
                expiry: txn.open_table(EXPIRY)?,
                by_user: txn.open_table(BY_USER)?,
                handles: txn.open_table(HANDLES)?,
                aliases: txn.open_table(ALIASES)?,
                consumed: txn.open_table(CONSUMED)?,
                user_epoch: txn.open_table(USER_EPOCH)?,
                denied: txn.open_table(DENIED)?,
            };
            let mut batch = Batch::new(tables, &self.out.ttl, now);
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
        txn.commit()?;
        if durable {
            Stats::add(&self.stats.durable_commits, 1);
        } else if self.volatile_since.is_none() {
            self.volatile_since = Some(Instant::now());
        }
        Ok((responses, changes))
    }
}
