//! redb: the tables, opening, repair and log replay, and the read path.
//!
//! Writes go only through the writer thread (`writer/`), into [`Tables`],
//! which records every row it puts or removes for the write-ahead log
//! (`wal.rs`). This module opens the database, replays the log into it, and
//! serves reads from read transactions, which see committed data only.

use std::borrow::Borrow;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use parking_lot::{Mutex, MutexGuard};
use redb::{
    Database, Durability, Key, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition, Value,
    WriteTransaction,
};
use sessiond_protocol::SessionKey;

use crate::owners::OwnerIndex;
use crate::record::{CorruptRecord, Record};
use crate::ttl::TtlIndex;
use crate::wal::{self, Redo, Wal};

pub const SESSIONS: TableDefinition<'static, [u8; 32], &'static [u8]> = TableDefinition::new("sessions");
/// (expires_at_ms, session key) -> last_active_ms, for every stored
/// session: the TTL index is rebuilt from it without reading records.
pub const EXPIRY: TableDefinition<'static, (u64, [u8; 32]), u64> = TableDefinition::new("expiry");
pub const META: TableDefinition<'static, &'static str, u64> = TableDefinition::new("meta");
/// (user id, session key) for every session with an owner.
pub const BY_USER: TableDefinition<'static, (&'static str, [u8; 32]), ()> = TableDefinition::new("by_user");
/// Public handle -> session key.
pub const HANDLES: TableDefinition<'static, [u8; 12], [u8; 32]> = TableDefinition::new("handles");
/// Another key of a session (given by a transfer) -> the session's own key.
pub const ALIASES: TableDefinition<'static, [u8; 32], [u8; 32]> = TableDefinition::new("aliases");
/// (expires_at_ms, nonce) of every redeemed transfer token: the replay guard.
pub const CONSUMED: TableDefinition<'static, (u64, [u8; 24]), ()> = TableDefinition::new("consumed_tokens");
/// User id -> epoch; sealed cookies of an older epoch are revoked.
pub const USER_EPOCH: TableDefinition<'static, &'static str, u32> = TableDefinition::new("user_epoch");
/// Revoked sealed-cookie session ids -> when the cookie would have expired.
pub const DENIED: TableDefinition<'static, [u8; 16], u64> = TableDefinition::new("denied_cookies");

/// redb's page cache unless configured. It holds the pages written since
/// the last checkpoint as well as pages read: `patch` at 50 connections on
/// a database grown to ~50,000 sessions ran ~20% slower with 64 MiB than
/// with 256 MiB, and no faster with redb's own default of 1 GiB.
pub const DEFAULT_DB_CACHE_BYTES: usize = 256 << 20;

/// The schema version this build reads and writes. Schema 1 (keys stored
/// as they are, records without a checksum) is migrated at start
/// (`migrate.rs`).
pub const SCHEMA_VERSION: u64 = 2;
/// `meta` key: the sequence number of the last log frame the database holds.
pub const LOG_SEQ: &str = "log_seq";
/// `meta` key: 1 if the daemon that last had the database stopped cleanly
/// (its last checkpoint holds everything), 0 while one runs.
pub const CLEAN: &str = "clean_shutdown";

/// Replay commits durably after about this many bytes of frames, so
/// starting after a crash needs room for one step, not for the whole log
/// at once, and a crash during replay resumes where it stopped.
const REPLAY_STEP_BYTES: usize = 8 << 20;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("the database {0} is held by another process (is another sessiond running?)")]
    Locked(String),
    #[error("the database was written by a newer sessiond (schema {found}, this build reads {SCHEMA_VERSION})")]
    NewerSchema { found: u64 },
    #[error("the database has schema {found}, which only a start from its file migrates")]
    OlderSchema { found: u64 },
    #[error(transparent)]
    Corrupt(#[from] CorruptRecord),
    #[error("write-ahead log: {0}")]
    Log(#[from] std::io::Error),
    #[error(
        "write-ahead log {path}: {error}; a copy is kept at {copy}. To start with only the frames before \
             the damage, losing the writes after it, move the log aside and start again"
    )]
    LogDamaged { path: String, copy: String, error: wal::LogError },
    #[error("write-ahead log: {0}")]
    LogUnusable(#[from] wal::LogError),
    #[error(
        "no space left to replay the write-ahead log: about {needed_mb} MiB must be free beside the database \
             (redb grows a file under 4 GiB by doubling it, and a replay step is written twice)"
    )]
    NoSpace { needed_mb: u64 },
    #[error("write-ahead log: {0}")]
    LogMalformed(#[from] wal::Malformed),
    #[error("storage error: {0}")]
    Redb(#[from] redb::Error),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { Self::Redb(e.into()) }
        }
    )*};
}
from_redb!(redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError, redb::SetDurabilityError);

fn builder(cache_bytes: usize) -> redb::Builder {
    let mut builder = Database::builder();
    builder.set_cache_size(cache_bytes);
    builder.set_repair_callback(|session| {
        tracing::warn!(progress = session.progress(), "repairing the database after an unclean shutdown");
    });
    builder
}

#[derive(Debug)]
pub struct Store {
    db: Database,
    /// Written by the writer thread only; the lock is never contended.
    wal: Mutex<Wal>,
}

/// A damaged log is kept as it was, beside itself, before the daemon
/// refuses to start, so neither a retry nor an operator's next step can
/// destroy the evidence or the writes past the damage.
fn keep_damaged(log: &Path, error: wal::LogError) -> StoreError {
    let copy = log.with_extension("log.damaged");
    if !copy.exists() {
        let copied = std::fs::copy(log, &copy)
            .and_then(|_| std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o600)));
        if let Err(e) = copied {
            tracing::error!(error = %e, copy = %copy.display(), "cannot copy the damaged log aside");
        }
    }
    StoreError::LogDamaged { path: log.display().to_string(), copy: copy.display().to_string(), error }
}

/// A replay step that ran out of space says how much it needs.
fn no_space(error: StoreError, step_bytes: usize) -> StoreError {
    let full = match &error {
        StoreError::Redb(redb::Error::Io(e)) => e.kind() == std::io::ErrorKind::StorageFull,
        StoreError::Log(e) => e.kind() == std::io::ErrorKind::StorageFull,
        _ => false,
    };
    if !full {
        return error;
    }
    // A step's rows land in redb's copy-on-write pages: twice the bytes,
    // and a margin for the tables' own pages.
    StoreError::NoSpace { needed_mb: ((step_bytes.min(REPLAY_STEP_BYTES * 2) * 2) >> 20) as u64 + 16 }
}

/// redb grows a database file smaller than one region (4 GiB) by doubling
/// it, and a larger one by a region: a replay that must grow the file needs
/// that much free, whatever the size of the step.
fn with_file_growth(error: StoreError, path: &Path) -> StoreError {
    const REGION: u64 = 4 << 30;
    match error {
        StoreError::NoSpace { needed_mb } => {
            let len = std::fs::metadata(path).map_or(0, |m| m.len());
            StoreError::NoSpace { needed_mb: needed_mb.max((len.min(REGION) >> 20) + 16) }
        }
        other => other,
    }
}

/// Makes a new database file at `path` as a whole: under another name,
/// initialised and synced, then renamed. A power loss while redb writes a
/// new file's first pages leaves a file it refuses to open ("not a redb
/// database"); this way it leaves only the other name, which the next start
/// replaces.
fn create_whole(path: &Path, cache_bytes: usize) -> Result<(), StoreError> {
    let staged = path.with_extension("redb.new");
    match std::fs::remove_file(&staged) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(StoreError::Log(e)),
        _ => {}
    }
    let db = builder(cache_bytes).create(&staged).map_err(|e| StoreError::Redb(e.into()))?;
    let txn = db.begin_write()?;
    txn.open_table(META)?.insert("schema_version", SCHEMA_VERSION)?;
    Tables::open(&txn)?;
    txn.commit()?;
    drop(db);
    std::fs::rename(&staged, path).map_err(StoreError::Log)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(StoreError::Log)?;
    }
    Ok(())
}

/// The schema version recorded in `db`, if any.
fn schema(db: &Database) -> Result<Option<u64>, StoreError> {
    let txn = db.begin_read()?;
    match txn.open_table(META) {
        Ok(meta) => Ok(meta.get("schema_version")?.map(|v| v.value())),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The log beside the database at `db`: same name, extension `log`.
pub fn log_path(db: &Path) -> PathBuf {
    db.with_extension("log")
}

impl Store {
    /// Opens (creating if needed) and, after a crash, repairs the database,
    /// checks the schema version, and replays the write-ahead log beside
    /// it. Returns the store and the number of stored sessions.
    pub fn open(path: &Path) -> Result<(Self, u64), StoreError> {
        Self::open_with_cache(path, DEFAULT_DB_CACHE_BYTES)
    }

    /// [`Store::open`] with `cache_bytes` of redb page cache.
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<(Self, u64), StoreError> {
        let open = || {
            builder(cache_bytes).create(path).map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked(path.display().to_string()),
                other => StoreError::Redb(other.into()),
            })
        };
        if !path.exists() {
            create_whole(path, cache_bytes)?;
        }
        let mut db = open()?;
        let log = log_path(path);
        let existed = log.exists();
        let (wal, bytes) = Wal::open(&log)?;
        if schema(&db)? == Some(1) {
            // Schema 1's log holds schema 1 rows: apply them first, then
            // migrate the whole database; the log is emptied below, as at
            // every start, and with it the last keys it held.
            Self::replay(&db, &bytes).map_err(|e| match e {
                StoreError::LogUnusable(
                    error @ (wal::LogError::Damaged { .. } | wal::LogError::Unscannable { .. }),
                ) => keep_damaged(&log, error),
                other => with_file_growth(other, path),
            })?;
            drop(db);
            let sessions = crate::migrate::v1_to_v2(path, cache_bytes)?;
            tracing::info!(sessions, "migrated the database to schema 2: keys are kept as their SHA-256 only");
            db = open()?;
        }
        Self::init(db, (wal, bytes), existed).map_err(|e| match e {
            StoreError::LogUnusable(error @ (wal::LogError::Damaged { .. } | wal::LogError::Unscannable { .. })) => {
                keep_damaged(&log, error)
            }
            other => with_file_growth(other, path),
        })
    }

    /// Opens a database on any redb storage backend, with the log in `log`:
    /// tests use this to inject I/O failures.
    pub fn open_backend(
        backend: impl redb::StorageBackend,
        log: impl wal::LogDevice + 'static,
    ) -> Result<(Self, u64), StoreError> {
        let db =
            builder(DEFAULT_DB_CACHE_BYTES).create_with_backend(backend).map_err(|e| StoreError::Redb(e.into()))?;
        Self::init(db, Wal::from_file(log)?, true)
    }

    fn init(db: Database, (mut wal, log): (Wal, Vec<u8>), log_existed: bool) -> Result<(Self, u64), StoreError> {
        let txn = db.begin_write()?;
        let was_clean = {
            let mut meta = txn.open_table(META)?;
            let found = meta.get("schema_version")?.map(|v| v.value());
            match found {
                Some(v) if v > SCHEMA_VERSION => return Err(StoreError::NewerSchema { found: v }),
                Some(v) if v < SCHEMA_VERSION => return Err(StoreError::OlderSchema { found: v }),
                Some(_) => {}
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION)?;
                }
            }
            // A database this build never ran on (new, or from a build
            // without the flag) counts as clean: there is nothing to miss.
            let was_clean = meta.get(CLEAN)?.is_none_or(|v| v.value() == 1);
            meta.insert(CLEAN, 0)?;
            // Creates every table a new database lacks.
            Tables::open(&txn)?;
            was_clean
        };
        txn.commit()?;
        if !was_clean && log.is_empty() {
            let why = if log_existed { "empty" } else { "missing" };
            tracing::error!(
                "the write-ahead log is {why} after an unclean shutdown: writes acknowledged since the last \
                 checkpoint, if there were any, are lost"
            );
        }
        let next_seq = Self::replay(&db, &log)?;
        drop(log);
        // Everything the log held is durable in the database now. Frames
        // beyond the replayed ones were never acknowledged in strict mode
        // (in relaxed mode they lie within the window a power loss may
        // take): empty the file so no later pass can run into them. It is
        // left as zeros, not empty, so an empty log always means a lost one.
        wal.reset()?;
        wal.restart(next_seq);
        let stored = db.begin_read()?.open_table(SESSIONS)?.len()?;
        Ok((Self { db, wal: Mutex::new(wal) }, stored))
    }

    /// Applies the log frames the database does not hold yet, in durable
    /// steps of about [`REPLAY_STEP_BYTES`]; returns the next frame's
    /// sequence number.
    fn replay(db: &Database, log: &[u8]) -> Result<u64, StoreError> {
        let applied = db.begin_read()?.open_table(META)?.get(LOG_SEQ)?.map_or(0, |v| v.value());
        let frames = wal::replayable(log, applied)?;
        let Some(last) = frames.last().map(|f| f.seq) else { return Ok(applied + 1) };
        let mut rows = 0usize;
        let mut step_start = 0;
        while step_start < frames.len() {
            let mut bytes = 0;
            let step_end = frames[step_start..]
                .iter()
                .position(|f| {
                    bytes += f.payload.len();
                    bytes > REPLAY_STEP_BYTES
                })
                .map_or(frames.len(), |i| step_start + i + 1);
            let step = &frames[step_start..step_end];
            rows += Self::replay_step(db, step).map_err(|e| no_space(e, bytes))?;
            step_start = step_end;
        }
        tracing::info!(frames = frames.len(), rows, last, "write-ahead log replayed");
        Ok(last + 1)
    }

    /// Applies `frames` and records the last as held, in one durable
    /// transaction; returns the rows changed.
    fn replay_step(db: &Database, frames: &[wal::Frame<'_>]) -> Result<usize, StoreError> {
        let last = frames.last().map_or(0, |f| f.seq);
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        txn.set_two_phase_commit(true);
        let mut rows = 0usize;
        {
            let mut tables = Tables::open(&txn)?;
            for frame in frames {
                for entry in wal::entries(frame.payload)? {
                    tables.replay(&entry)?;
                    rows += 1;
                }
            }
            txn.open_table(META)?.insert(LOG_SEQ, last)?;
        }
        txn.commit()?;
        Ok(rows)
    }

    /// Records that everything is in the database and the log holds nothing
    /// it needs: the last act of a clean shutdown, after the last checkpoint.
    pub fn mark_clean(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(META)?.insert(CLEAN, 1)?;
        txn.commit()?;
        Ok(())
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    /// The write-ahead log: for the writer thread.
    pub fn wal(&self) -> MutexGuard<'_, Wal> {
        self.wal.lock()
    }

    /// Fills `index` from the expiry table; returns the number of entries.
    pub fn load_index(&self, index: &TtlIndex) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(EXPIRY)?;
        let mut n = 0;
        for row in table.iter()? {
            let (key, last_active) = row?;
            let (expires_at, key) = key.value();
            index.load(SessionKey::from_bytes(key), expires_at, last_active.value());
            n += 1;
        }
        Ok(n)
    }

    /// Every alias and the session it names, for the alias index at start.
    pub fn aliases(&self) -> Result<Vec<(SessionKey, SessionKey)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ALIASES)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (alias, primary) = row?;
            out.push((SessionKey::from_bytes(alias.value()), SessionKey::from_bytes(primary.value())));
        }
        Ok(out)
    }

    /// Fills `index` from the `by_user` table; returns the number of rows.
    pub fn load_owners(&self, index: &OwnerIndex) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BY_USER)?;
        let mut n = 0;
        for row in table.iter()? {
            let (row, _) = row?;
            let (user, key) = row.value();
            index.publish(SessionKey::from_bytes(key), None, Some(user));
            n += 1;
        }
        Ok(n)
    }

    /// The user's epoch (0 if never bumped) and whether `sid` is denied:
    /// what opening a sealed cookie needs, from one read transaction.
    pub fn cookie_state(&self, user: Option<&str>, sid: &[u8; 16]) -> Result<(u32, bool), StoreError> {
        let txn = self.db.begin_read()?;
        let epoch = match user {
            Some(user) => txn.open_table(USER_EPOCH)?.get(user)?.map_or(0, |e| e.value()),
            None => 0,
        };
        let denied = txn.open_table(DENIED)?.get(sid)?.is_some();
        Ok((epoch, denied))
    }

    /// The keys of every stored session `user` owns, live or not.
    pub fn user_sessions(&self, user: &str) -> Result<Vec<SessionKey>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BY_USER)?;
        let mut out = Vec::new();
        for row in table.range((user, [0u8; 32])..=(user, [0xFF; 32]))? {
            out.push(SessionKey::from_bytes(row?.0.value().1));
        }
        Ok(out)
    }

    /// Every stored session, live or expired, in key order. For offline
    /// checks and tools; the daemon's request path never scans.
    pub fn scan(&self) -> Result<Vec<(SessionKey, Record)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SESSIONS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            out.push((SessionKey::from_bytes(key.value()), Record::decode(value.value())?));
        }
        Ok(out)
    }

    /// Reads the committed record of `key`, live or not.
    pub fn get(&self, key: &SessionKey) -> Result<Option<Record>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SESSIONS)?;
        match table.get(key.as_bytes())? {
            Some(bytes) => Ok(Some(Record::decode(bytes.value())?)),
            None => Ok(None),
        }
    }
}

/// A table that records every row it puts or removes in a [`Redo`], so the
/// writer can log exactly what it changed. Reads go through `Deref`; writes
/// only through these methods, so none escapes the log.
pub(crate) struct Logged<'t, K: Key + 'static, V: Value + 'static> {
    table: Table<'t, K, V>,
    id: u8,
    redo: Redo,
    changed: bool,
}

impl<'t, K: Key + 'static, V: Value + 'static> Logged<'t, K, V> {
    fn open(txn: &'t WriteTransaction, def: TableDefinition<'_, K, V>, id: u8) -> Result<Self, StoreError> {
        Ok(Self { table: txn.open_table(def)?, id, redo: Redo::default(), changed: false })
    }

    /// Puts a row; true if it replaced one.
    pub fn insert<'k, 'v>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
        value: impl Borrow<V::SelfType<'v>>,
    ) -> Result<bool, StoreError> {
        let (key, value) = (key.borrow(), value.borrow());
        self.redo.put(self.id, K::as_bytes(key).as_ref(), Some(V::as_bytes(value).as_ref()));
        self.changed = true;
        Ok(self.table.insert(key, value)?.is_some())
    }

    /// Removes a row; true if there was one.
    pub fn remove<'k>(&mut self, key: impl Borrow<K::SelfType<'k>>) -> Result<bool, StoreError> {
        let key = key.borrow();
        let removed = self.table.remove(key)?.is_some();
        if removed {
            self.redo.put(self.id, K::as_bytes(key).as_ref(), None);
            self.changed = true;
        }
        Ok(removed)
    }

    /// Applies a logged row change without logging it again.
    fn replay(&mut self, entry: &wal::Entry<'_>) -> Result<(), StoreError> {
        // redb's fixed-width decoders assume the width; check it first.
        let fits = |width: Option<usize>, bytes: &[u8]| width.is_none_or(|w| w == bytes.len());
        if !fits(K::fixed_width(), entry.key) || entry.value.is_some_and(|v| !fits(V::fixed_width(), v)) {
            return Err(wal::Malformed(0).into());
        }
        let key = K::from_bytes(entry.key);
        match entry.value {
            Some(value) => {
                self.table.insert(&key, V::from_bytes(value))?;
            }
            None => {
                self.table.remove(&key)?;
            }
        }
        Ok(())
    }
}

impl<'t, K: Key + 'static, V: Value + 'static> Deref for Logged<'t, K, V> {
    type Target = Table<'t, K, V>;

    fn deref(&self) -> &Self::Target {
        &self.table
    }
}

/// The tables the writer changes, opened in one write transaction.
pub(crate) struct Tables<'t> {
    pub sessions: Logged<'t, [u8; 32], &'static [u8]>,
    pub expiry: Logged<'t, (u64, [u8; 32]), u64>,
    pub by_user: Logged<'t, (&'static str, [u8; 32]), ()>,
    pub handles: Logged<'t, [u8; 12], [u8; 32]>,
    pub aliases: Logged<'t, [u8; 32], [u8; 32]>,
    pub consumed: Logged<'t, (u64, [u8; 24]), ()>,
    pub user_epoch: Logged<'t, &'static str, u32>,
    pub denied: Logged<'t, [u8; 16], u64>,
}

/// Table ids in log entries: part of the log format, never renumbered.
mod table_id {
    pub const SESSIONS: u8 = 1;
    pub const EXPIRY: u8 = 2;
    pub const BY_USER: u8 = 3;
    pub const HANDLES: u8 = 4;
    pub const ALIASES: u8 = 5;
    pub const CONSUMED: u8 = 6;
    pub const USER_EPOCH: u8 = 7;
    pub const DENIED: u8 = 8;
}

impl<'t> Tables<'t> {
    pub fn open(txn: &'t WriteTransaction) -> Result<Self, StoreError> {
        Ok(Self {
            sessions: Logged::open(txn, SESSIONS, table_id::SESSIONS)?,
            expiry: Logged::open(txn, EXPIRY, table_id::EXPIRY)?,
            by_user: Logged::open(txn, BY_USER, table_id::BY_USER)?,
            handles: Logged::open(txn, HANDLES, table_id::HANDLES)?,
            aliases: Logged::open(txn, ALIASES, table_id::ALIASES)?,
            consumed: Logged::open(txn, CONSUMED, table_id::CONSUMED)?,
            user_epoch: Logged::open(txn, USER_EPOCH, table_id::USER_EPOCH)?,
            denied: Logged::open(txn, DENIED, table_id::DENIED)?,
        })
    }

    /// True if a table that readers query in redb itself changed: the
    /// sealed-cookie revocations. A batch that changed one must reach redb
    /// before it is acknowledged; session rows and owners need not, since
    /// readers find them in the cache and the owner index until they do.
    pub fn changed_for_readers(&self) -> bool {
        self.user_epoch.changed || self.denied.changed
    }

    /// Everything written through these tables, table by table: together,
    /// the payload of one log frame.
    pub fn take_redo(&mut self) -> [Redo; 8] {
        [
            std::mem::take(&mut self.sessions.redo),
            std::mem::take(&mut self.expiry.redo),
            std::mem::take(&mut self.by_user.redo),
            std::mem::take(&mut self.handles.redo),
            std::mem::take(&mut self.aliases.redo),
            std::mem::take(&mut self.consumed.redo),
            std::mem::take(&mut self.user_epoch.redo),
            std::mem::take(&mut self.denied.redo),
        ]
    }

    fn replay(&mut self, entry: &wal::Entry<'_>) -> Result<(), StoreError> {
        match entry.table {
            table_id::SESSIONS => self.sessions.replay(entry),
            table_id::EXPIRY => self.expiry.replay(entry),
            table_id::BY_USER => self.by_user.replay(entry),
            table_id::HANDLES => self.handles.replay(entry),
            table_id::ALIASES => self.aliases.replay(entry),
            table_id::CONSUMED => self.consumed.replay(entry),
            table_id::USER_EPOCH => self.user_epoch.replay(entry),
            table_id::DENIED => self.denied.replay(entry),
            _ => Err(wal::Malformed(0).into()),
        }
    }
}
