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
//! - the `expiry` table and the TTL index follow every session row.
//!
//! Expiry: the TTL index is the authority, since touches extend it in
//! memory first. When a batch first loads a session it takes the later of
//! the stored and the indexed expiry, so a write never undoes a touch, and
//! persisting a touch is just writing the loaded record back.
//!
//! If a commit fails, every mutation of the batch, and every later one, is
//! answered UNAVAILABLE and the daemon is told to stop: it fails closed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{Durability, ReadableTable, Table};
use sessiond_protocol::{Created, DeletedOk, ErrorCode, Expiry, Field, Response, SessionKey, Written};

use crate::cache::Cache;
use crate::clock::Clock;
use crate::record::{ExpiryRules, Record};
use crate::reply::{ReplyTo, deliver_all};
use crate::stats::Stats;
use crate::store::{EXPIRY, SESSIONS, Store, StoreError};
use crate::ttl::TtlIndex;

/// A mutation, already validated for syntax and static limits by the service.
#[derive(Debug)]
pub enum Op {
    Create {
        fields: Vec<Field>,
        expiry: Expiry,
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
        cache: Arc<Cache>,
        ttl: Arc<TtlIndex>,
        stats: Arc<Stats>,
        clock: Arc<dyn Clock>,
        config: WriterConfig,
        on_fatal: Box<dyn Fn(String) + Send>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel(config.queue_capacity);
        let state =
            WriterThread { store, cache, ttl, stats, clock, config, rx, on_fatal, failed: false, volatile_since: None };
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
    cache: Arc<Cache>,
    ttl: Arc<TtlIndex>,
    stats: Arc<Stats>,
    clock: Arc<dyn Clock>,
    config: WriterConfig,
    rx: Receiver<Msg>,
    on_fatal: Box<dyn Fn(String) + Send>,
    failed: bool,
    /// Relaxed mode: when the oldest commit not yet made durable happened.
    volatile_since: Option<Instant>,
}

/// A session's state within one batch.
struct Slot {
    /// The expiry of the stored row when the batch first loaded it, if
    /// there was a row: its `expiry` table entry.
    stored_expiry: Option<u64>,
    /// The latest state in this batch; `None` if absent or deleted.
    record: Option<Record>,
    /// Must be written back at commit.
    dirty: bool,
    /// SET_EXPIRY replaced the policy: the index may move the expiry earlier.
    expiry_reset: bool,
}

type SessionTable<'t> = Table<'t, [u8; 32], &'static [u8]>;
type ExpiryTable<'t> = Table<'t, (u64, [u8; 32]), u64>;

struct Batch<'t> {
    table: SessionTable<'t>,
    expiry: ExpiryTable<'t>,
    ttl: &'t TtlIndex,
    slots: HashMap<SessionKey, Slot>,
    now: u64,
    /// Sessions a sweep found touched since it was taken: re-filed after commit.
    refile: Vec<SessionKey>,
}

impl Batch<'_> {
    fn slot(&mut self, key: SessionKey) -> Result<&mut Slot, StoreError> {
        if !self.slots.contains_key(&key) {
            let mut record = match self.table.get(key.as_bytes())? {
                Some(bytes) => Some(Record::decode(bytes.value())?),
                None => None,
            };
            let stored_expiry = record.as_ref().map(|r| r.expires_at_ms);
            if let (Some(r), Some(e)) = (record.as_mut(), self.ttl.get(&key)) {
                r.expires_at_ms = r.expires_at_ms.max(e.expires_at);
                r.last_active_ms = r.last_active_ms.max(e.last_active);
            }
            self.slots.insert(key, Slot { stored_expiry, record, dirty: false, expiry_reset: false });
        }
        Ok(self.slots.get_mut(&key).expect("inserted above"))
    }

    /// The live record of `key`, if any: expired sessions do not exist.
    fn live(&mut self, key: SessionKey) -> Result<Option<&mut Slot>, StoreError> {
        let now = self.now;
        let slot = self.slot(key)?;
        Ok(slot.record.as_ref().is_some_and(|r| r.is_live(now)).then_some(slot))
    }

    /// True if `key` names any row, live, expired or written in this batch:
    /// such a key is never handed out again.
    fn taken(&mut self, key: SessionKey) -> Result<bool, StoreError> {
        if let Some(slot) = self.slots.get(&key) {
            return Ok(slot.stored_expiry.is_some() || slot.record.is_some());
        }
        Ok(self.table.get(key.as_bytes())?.is_some())
    }

    fn fresh_key(&mut self) -> Result<Result<SessionKey, Response>, StoreError> {
        for _ in 0..4 {
            let key = match crate::keys::generate() {
                Ok(k) => k,
                Err(e) => {
                    return Ok(Err(Response::error(ErrorCode::Internal, format!("no randomness: {e}"))));
                }
            };
            if !self.taken(key)? {
                return Ok(Ok(key));
            }
        }
        Ok(Err(Response::error(ErrorCode::Internal, "could not draw an unused key")))
    }

    fn put(&mut self, key: SessionKey, record: Option<Record>) {
        let slot = self.slots.get_mut(&key);
        match slot {
            Some(slot) => {
                slot.record = record;
                slot.dirty = true;
            }
            None => {
                self.slots.insert(key, Slot { stored_expiry: None, record, dirty: true, expiry_reset: false });
            }
        }
    }
}

fn not_found() -> Response {
    Response::error(ErrorCode::NotFound, "no such session")
}

fn conflict(expected: u64, found: u64) -> Response {
    Response::error(ErrorCode::VersionConflict, format!("expected version {expected}, found {found}"))
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
        match self.apply_and_commit(&jobs, now) {
            Ok((responses, slots, refile)) => {
                for (key, slot) in slots.into_iter().filter(|(_, s)| s.dirty) {
                    let stored = slot.record.as_ref().map(|r| (r.expires_at_ms, r.last_active_ms));
                    self.ttl.publish(key, stored, slot.expiry_reset);
                    self.cache.publish(key, slot.record.map(Arc::new));
                }
                for key in refile {
                    self.ttl.refile(key);
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

    #[allow(clippy::type_complexity)]
    fn apply_and_commit(
        &mut self,
        jobs: &[Job],
        now: u64,
    ) -> Result<(Vec<Response>, HashMap<SessionKey, Slot>, Vec<SessionKey>), StoreError> {
        let mut txn = self.store.db().begin_write()?;
        let durable = self.config.flush_interval.is_none();
        txn.set_durability(if durable { Durability::Immediate } else { Durability::None })?;
        // The data written is chosen by clients; 2PC keeps a torn commit
        // from ever validating (see redb's set_two_phase_commit docs).
        txn.set_two_phase_commit(true);
        let (responses, slots, refile) = {
            let mut batch = Batch {
                table: txn.open_table(SESSIONS)?,
                expiry: txn.open_table(EXPIRY)?,
                ttl: &self.ttl,
                slots: HashMap::new(),
                now,
                refile: Vec::new(),
            };
            let mut responses = Vec::with_capacity(jobs.len());
            for job in jobs {
                let response = match self.apply(&mut batch, &job.op) {
                    Ok(r) => r,
                    Err(StoreError::Corrupt(e)) => {
                        tracing::error!(error = %e, "unreadable session record");
                        Response::error(ErrorCode::Internal, "stored session is unreadable")
                    }
                    Err(e) => return Err(e),
                };
                responses.push(response);
            }
            for (key, slot) in batch.slots.iter().filter(|(_, s)| s.dirty) {
                if let Some(old) = slot.stored_expiry {
                    batch.expiry.remove((old, *key.as_bytes()))?;
                }
                match &slot.record {
                    Some(record) => {
                        batch.table.insert(key.as_bytes(), record.encode().as_slice())?;
                        batch.expiry.insert((record.expires_at_ms, *key.as_bytes()), record.last_active_ms)?;
                    }
                    None if slot.stored_expiry.is_some() => {
                        batch.table.remove(key.as_bytes())?;
                    }
                    None => {}
                }
            }
            (responses, batch.slots, batch.refile)
        };
        txn.commit()?;
        if durable {
            Stats::add(&self.stats.durable_commits, 1);
        } else if self.volatile_since.is_none() {
            self.volatile_since = Some(Instant::now());
        }
        Ok((responses, slots, refile))
    }

    fn check_size(&self, record: &Record) -> Option<Response> {
        if record.fields.len() > self.config.max_fields {
            return Some(Response::error(
                ErrorCode::TooLarge,
                format!("session would have {} fields; the limit is {}", record.fields.len(), self.config.max_fields),
            ));
        }
        let bytes = record.data_bytes();
        (bytes > self.config.max_session_bytes).then(|| {
            Response::error(
                ErrorCode::TooLarge,
                format!("session would hold {bytes} bytes; the limit is {}", self.config.max_session_bytes),
            )
        })
    }

    fn apply(&self, batch: &mut Batch<'_>, op: &Op) -> Result<Response, StoreError> {
        let now = batch.now;
        let rules = self.config.rules;
        Ok(match op {
            Op::Create { fields, expiry } => {
                let key = match batch.fresh_key()? {
                    Ok(k) => k,
                    Err(resp) => return Ok(resp),
                };
                let record = Record::new(now, *expiry, fields.clone(), rules);
                let created =
                    Created { key: key.encode(), version: record.version, expires_at_ms: record.expires_at_ms };
                batch.put(key, Some(record));
                Response::Created(created)
            }
            Op::Replace { key, fields, expected_version } => {
                self.modify(batch, *key, *expected_version, |r| r.fields = fields.clone(), Response::Replaced)?
            }
            Op::Patch { key, set, remove, expected_version } => {
                self.modify(batch, *key, *expected_version, |r| r.patch(set.clone(), remove), Response::Patched)?
            }
            Op::Delete { key } => {
                let existed = batch.live(*key)?.is_some();
                if batch.slot(*key)?.record.is_some() {
                    batch.put(*key, None);
                }
                Response::Deleted(DeletedOk { existed })
            }
            Op::Cycle { key } => {
                let Some(slot) = batch.live(*key)? else { return Ok(not_found()) };
                let mut record = slot.record.take().expect("live slot has a record");
                slot.dirty = true;
                let new_key = match batch.fresh_key()? {
                    Ok(k) => k,
                    Err(resp) => {
                        batch.put(*key, Some(record));
                        return Ok(resp);
                    }
                };
                record.mark_modified(now, rules);
                let created =
                    Created { key: new_key.encode(), version: record.version, expires_at_ms: record.expires_at_ms };
                batch.put(new_key, Some(record));
                Response::Cycled(created)
            }
            Op::SetExpiry { key, expiry } => {
                let Some(slot) = batch.live(*key)? else { return Ok(not_found()) };
                let record = slot.record.as_mut().expect("live slot has a record");
                record.set_expiry(*expiry, now, rules);
                slot.dirty = true;
                slot.expiry_reset = true;
                Response::ExpirySet(Written { version: record.version, expires_at_ms: record.expires_at_ms })
            }
            Op::PersistTouch { key } => {
                // Loading merged the index's expiry into the record: writing
                // it back is all there is to do.
                if let Some(slot) = batch.live(*key)? {
                    slot.dirty = true;
                    Stats::add(&self.stats.touches_persisted, 1);
                }
                Response::Pong(sessiond_protocol::Empty {})
            }
            Op::Sweep { keys } => {
                let mut removed = 0;
                for key in keys {
                    match batch.slot(*key)?.record.as_ref().map(|r| r.is_live(now)) {
                        Some(false) => {
                            batch.put(*key, None);
                            removed += 1;
                        }
                        Some(true) => batch.refile.push(*key),
                        None => {}
                    }
                }
                Response::Swept(sessiond_protocol::SweptOk { removed })
            }
        })
    }

    /// Applies a data change to a live session, checking the expected
    /// version and the size limits against the latest state.
    fn modify(
        &self,
        batch: &mut Batch<'_>,
        key: SessionKey,
        expected_version: Option<u64>,
        change: impl FnOnce(&mut Record),
        wrap: fn(Written) -> Response,
    ) -> Result<Response, StoreError> {
        let now = batch.now;
        let Some(slot) = batch.live(key)? else {
            return Ok(not_found());
        };
        let current = slot.record.as_ref().expect("live slot has a record");
        if let Some(expected) = expected_version {
            if expected != current.version {
                return Ok(conflict(expected, current.version));
            }
        }
        let mut next = current.clone();
        change(&mut next);
        if let Some(too_large) = self.check_size(&next) {
            return Ok(too_large);
        }
        next.mark_modified(now, self.config.rules);
        let written = Written { version: next.version, expires_at_ms: next.expires_at_ms };
        slot.record = Some(next);
        slot.dirty = true;
        Ok(wrap(written))
    }
}
