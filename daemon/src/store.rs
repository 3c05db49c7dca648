//! redb: the tables, opening, repair and log replay, and the read path.
//!
//! Changes start on the writer thread (`writer/`), in [`Tables`], which
//! records every row it puts or removes for the write-ahead log (`wal.rs`);
//! the applier thread writes the same rows into redb with [`RowWriter`].
//! This module opens the database, replays the log into it, and serves
//! reads: from `Pending` for rows redb does not hold yet, else from read
//! transactions, which see committed data only.

use std::borrow::Borrow;
use std::path::{Path, PathBuf};

use parking_lot::{Mutex, MutexGuard};
use std::collections::HashMap;

use redb::{
    Database, Durability, Key, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    Table, TableDefinition, Value, WriteTransaction,
};
use sessiond_protocol::SessionKey;

use crate::owners::OwnerIndex;
use crate::pending::{Bytes, Pending, Row};
use crate::record::{CorruptRecord, Record};
use crate::ttl::TtlIndex;
use crate::wal::{self, Log, Wal};

pub const META: TableDefinition<'static, &'static str, u64> = TableDefinition::new("meta");

/// redb's page cache unless configured. It holds the pages written since
/// the last checkpoint as well as pages read. Since the session cache
/// serves reads and the applier writes redb off the acknowledgement path,
/// a small one costs nothing measurable: `patch` at 50 connections over
/// 300,000 sessions ran at 0.98-0.99x the speed with 32 MiB as with
/// 256 MiB, for the same CPU, and the process held 330 MiB less (redb
/// keeps each 4 KiB page in its own allocation: its cache costs about
/// 1.5x its budget).
pub const DEFAULT_DB_CACHE_BYTES: usize = 32 << 20;

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
    #[error("write-ahead log: {error}")]
    LogUnusable {
        /// Which of the two files (see [`log_paths`]).
        file: usize,
        error: wal::LogError,
    },
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
    log: Mutex<Log>,
    /// Logged rows redb does not hold yet: readers look here first.
    pending: Pending,
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
    RowWriter::open(&txn)?;
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

/// The log beside the database at `db`: same name, extension `log`; and
/// its second file, written in turn with the first (see [`wal::Log`]).
pub fn log_paths(db: &Path) -> [PathBuf; 2] {
    [db.with_extension("log"), db.with_extension("2.log")]
}

/// The two log files' bytes; a file that does not exist holds none.
pub fn read_logs(db: &Path) -> Result<[Vec<u8>; 2], StoreError> {
    let read = |path: &Path| match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        other => other.map_err(StoreError::Log),
    };
    let [a, b] = log_paths(db);
    Ok([read(&a)?, read(&b)?])
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
        let paths = log_paths(path);
        let existed = paths.each_ref().map(|p| p.exists());
        let (a, a_bytes) = Wal::open(&paths[0])?;
        let (b, b_bytes) = Wal::open(&paths[1])?;
        let damaged = |e| match e {
            StoreError::LogUnusable {
                file,
                error: error @ (wal::LogError::Damaged { .. } | wal::LogError::Unscannable { .. }),
            } => keep_damaged(&paths[file], error),
            other => with_file_growth(other, path),
        };
        if schema(&db)? == Some(1) {
            // Schema 1's log holds schema 1 rows: apply them first, then
            // migrate the whole database; the log is emptied below, as at
            // every start, and with it the last keys it held.
            Self::replay(&db, [&a_bytes, &b_bytes]).map_err(damaged)?;
            drop(db);
            let sessions = crate::migrate::v1_to_v2(path, cache_bytes)?;
            tracing::info!(sessions, "migrated the database to schema 2: keys are kept as their SHA-256 only");
            db = open()?;
        }
        Self::init(db, Log::new([a, b]), [a_bytes, b_bytes], existed).map_err(damaged)
    }

    /// Opens a database on any redb storage backend, with the log's two
    /// files in `logs`: tests use this to inject I/O failures.
    pub fn open_backend(
        backend: impl redb::StorageBackend,
        logs: [Box<dyn wal::LogDevice>; 2],
    ) -> Result<(Self, u64), StoreError> {
        let db =
            builder(DEFAULT_DB_CACHE_BYTES).create_with_backend(backend).map_err(|e| StoreError::Redb(e.into()))?;
        let [a, b] = logs;
        let (a, a_bytes) = Wal::from_file(a)?;
        let (b, b_bytes) = Wal::from_file(b)?;
        Self::init(db, Log::new([a, b]), [a_bytes, b_bytes], [true, true])
    }

    /// `existed`: whether each log file was there before it was opened.
    fn init(db: Database, mut log: Log, bytes: [Vec<u8>; 2], existed: [bool; 2]) -> Result<(Self, u64), StoreError> {
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
            RowWriter::open(&txn)?;
            was_clean
        };
        txn.commit()?;
        // Each file is left holding at least a zeroed chunk: one found with
        // no bytes at all was emptied, and a missing first file was lost (a
        // data directory from before the second file has only the first).
        let why = match (existed, bytes.each_ref().map(Vec::is_empty)) {
            ([false, _], _) => Some("missing"),
            (_, [true, _]) | ([_, true], [_, true]) => Some("empty"),
            _ => None,
        };
        if let (false, Some(why)) = (was_clean, why) {
            tracing::error!(
                "the write-ahead log is {why} after an unclean shutdown: writes acknowledged since the last \
                 checkpoint, if there were any, are lost"
            );
        }
        let next_seq = Self::replay(&db, [&bytes[0], &bytes[1]])?;
        drop(bytes);
        // Everything the log held is durable in the database now. Frames
        // beyond the replayed ones were never acknowledged in strict mode
        // (in relaxed mode they lie within the window a power loss may
        // take): empty the files so no later pass can run into them. They
        // are left as zeros, not empty, so an empty log always means a lost one.
        log.reset(next_seq)?;
        let stored = db.begin_read()?.open_table(SESSIONS)?.len()?;
        Ok((Self { db, log: Mutex::new(log), pending: Pending::new(&PENDING_TABLES) }, stored))
    }

    /// Applies the log frames the database does not hold yet, in durable
    /// steps of about [`REPLAY_STEP_BYTES`]; returns the next frame's
    /// sequence number.
    fn replay(db: &Database, logs: [&[u8]; 2]) -> Result<u64, StoreError> {
        let applied = db.begin_read()?.open_table(META)?.get(LOG_SEQ)?.map_or(0, |v| v.value());
        let frames =
            wal::replayable_pair(logs, applied).map_err(|(file, error)| StoreError::LogUnusable { file, error })?;
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
            let mut tables = RowWriter::open(&txn)?;
            for frame in frames {
                for entry in wal::entries(frame.payload)? {
                    tables.apply(entry.table, entry.key, entry.value)?;
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
    pub fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock()
    }

    /// Logged rows redb does not hold yet.
    pub fn pending(&self) -> &Pending {
        &self.pending
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
        // Pending rows first, then a read transaction begun after looking
        // (see `pending.rs`).
        let epoch = user.map(|u| self.pending.get(table_id::USER_EPOCH, u.as_bytes()));
        let denied = self.pending.get(table_id::DENIED, sid);
        let txn = self.db.begin_read()?;
        let epoch = match (user, epoch) {
            (Some(_), Some(Some(pending))) => pending.map_or(0, |bytes| <u32 as Value>::from_bytes(&bytes)),
            (Some(user), Some(None)) => txn.open_table(USER_EPOCH)?.get(user)?.map_or(0, |e| e.value()),
            _ => 0,
        };
        let denied = match denied {
            Some(pending) => pending.is_some(),
            None => txn.open_table(DENIED)?.get(sid)?.is_some(),
        };
        Ok((epoch, denied))
    }

    /// The keys of every session `user` owns in redb, live or not, as of
    /// redb's last commit: for tools and tests; the daemon asks its owner
    /// index.
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

    /// Reads the stored record of `key`, live or not: pending, else from
    /// a read transaction begun after looking.
    pub fn get(&self, key: &SessionKey) -> Result<Option<Record>, StoreError> {
        if let Some(pending) = self.pending.get(table_id::SESSIONS, key.as_bytes()) {
            return Ok(pending.map(|bytes| Record::decode(&bytes)).transpose()?);
        }
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SESSIONS)?;
        match table.get(key.as_bytes())? {
            Some(bytes) => Ok(Some(Record::decode(bytes.value())?)),
            None => Ok(None),
        }
    }
}

/// A table as the writer sees it: redb as of its last snapshot, under the
/// rows still pending (`pending.rs`), under this batch's own changes, which
/// it records for the log. Writes go only through `insert` and `remove`, so
/// none escapes the log.
pub(crate) struct Logged<'t, K: Key + 'static, V: Value + 'static> {
    table: ReadOnlyTable<K, V>,
    pending: &'t Pending,
    changes: WriteOnly<'t, K, V>,
}

impl<'t, K: Key + 'static, V: Value + 'static> Logged<'t, K, V> {
    /// Its rows are read while the daemon runs, so `Pending` holds them.
    const PENDING: bool = true;

    fn open(
        snapshot: &ReadTransaction,
        def: TableDefinition<'_, K, V>,
        id: u8,
        pending: &'t Pending,
    ) -> Result<Self, StoreError> {
        Ok(Self { table: snapshot.open_table(def)?, pending, changes: WriteOnly::open(snapshot, def, id, pending)? })
    }

    /// The row under `key`, as of this point in the batch, passed to `f`.
    pub fn get<'k, R>(
        &self,
        key: impl Borrow<K::SelfType<'k>>,
        f: impl FnOnce(V::SelfType<'_>) -> R,
    ) -> Result<Option<R>, StoreError> {
        let key = key.borrow();
        let bytes = K::as_bytes(key);
        if let Some(value) = self.changes.local.get(bytes.as_ref()) {
            return Ok(value.as_deref().map(|v| f(V::from_bytes(v))));
        }
        if let Some(value) = self.pending.get(self.changes.id, bytes.as_ref()) {
            return Ok(value.as_deref().map(|v| f(V::from_bytes(v))));
        }
        Ok(self.table.get(key)?.map(|guard| f(guard.value())))
    }

    pub fn contains<'k>(&self, key: impl Borrow<K::SelfType<'k>>) -> Result<bool, StoreError> {
        Ok(self.get(key, |_| ())?.is_some())
    }

    pub fn insert<'k, 'v>(&mut self, key: impl Borrow<K::SelfType<'k>>, value: impl Borrow<V::SelfType<'v>>) {
        self.changes.insert(key, value);
    }

    pub fn remove<'k>(&mut self, key: impl Borrow<K::SelfType<'k>>) {
        self.changes.remove(key);
    }

    /// The keys (as bytes, for [`Logged::remove_bytes`]) of every row for
    /// which `keep` holds, as of this point in the batch. It reads the whole
    /// table: for periodic purges, never for a request.
    pub fn matching(
        &self,
        mut keep: impl FnMut(K::SelfType<'_>, V::SelfType<'_>) -> bool,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let pending: HashMap<Bytes, Option<Bytes>> = self.pending.rows(self.changes.id).into_iter().collect();
        let local = &self.changes.local;
        let mut out = Vec::new();
        for row in self.table.iter()? {
            let (key, value) = row?;
            let bytes = K::as_bytes(&key.value()).as_ref().to_vec();
            if !local.contains_key(&bytes[..]) && !pending.contains_key(&bytes[..]) && keep(key.value(), value.value())
            {
                out.push(bytes);
            }
        }
        for (key, value) in &pending {
            if let (false, Some(value)) = (local.contains_key(&key[..]), value) {
                if keep(K::from_bytes(key), V::from_bytes(value)) {
                    out.push(key.to_vec());
                }
            }
        }
        for (key, value) in local {
            if value.as_deref().is_some_and(|v| keep(K::from_bytes(key), V::from_bytes(v))) {
                out.push(key.to_vec());
            }
        }
        Ok(out)
    }

    pub fn remove_bytes(&mut self, key: Vec<u8>) {
        self.changes.local.insert(key.into(), None);
    }

    fn take_rows(&mut self, rows: &mut Vec<Row>) {
        self.changes.take_rows(rows);
    }
}

/// A table the writer changes but never reads while the daemon runs: read
/// at start, to rebuild an index in memory, and by the offline tools. A
/// batch cannot read it, so `Pending` need not hold its rows; they go to
/// the log and redb only.
pub(crate) struct WriteOnly<'t, K: Key + 'static, V: Value + 'static> {
    id: u8,
    /// This batch's changes, by key bytes.
    local: foldhash::HashMap<Bytes, Option<Bytes>>,
    _rows: std::marker::PhantomData<(&'t Pending, K, V)>,
}

impl<'t, K: Key + 'static, V: Value + 'static> WriteOnly<'t, K, V> {
    const PENDING: bool = false;

    /// Takes what `Logged::open` takes, so `writer_tables!` opens every
    /// table alike; it needs none of it but the id.
    fn open(
        _snapshot: &ReadTransaction,
        _def: TableDefinition<'_, K, V>,
        id: u8,
        _pending: &'t Pending,
    ) -> Result<Self, StoreError> {
        Ok(Self { id, local: foldhash::HashMap::default(), _rows: std::marker::PhantomData })
    }

    pub fn insert<'k, 'v>(&mut self, key: impl Borrow<K::SelfType<'k>>, value: impl Borrow<V::SelfType<'v>>) {
        let key = K::as_bytes(key.borrow()).as_ref().into();
        self.local.insert(key, Some(V::as_bytes(value.borrow()).as_ref().into()));
    }

    /// Removes the row, if there is one: removing a missing row is logged
    /// too, and replays as nothing.
    pub fn remove<'k>(&mut self, key: impl Borrow<K::SelfType<'k>>) {
        self.local.insert(K::as_bytes(key.borrow()).as_ref().into(), None);
    }

    fn take_rows(&mut self, rows: &mut Vec<Row>) {
        rows.extend(self.local.drain().map(|(key, value)| Row { table: self.id, key, value }));
    }
}

/// Applies a logged row change to a table of a write transaction: replay at
/// start, and the applier thread.
fn apply_row<K: Key + 'static, V: Value + 'static>(
    table: &mut Table<'_, K, V>,
    key: &[u8],
    value: Option<&[u8]>,
) -> Result<(), StoreError> {
    // redb's fixed-width decoders assume the width; check it first.
    let fits = |width: Option<usize>, bytes: &[u8]| width.is_none_or(|w| w == bytes.len());
    if !fits(K::fixed_width(), key) || value.is_some_and(|v| !fits(V::fixed_width(), v)) {
        return Err(wal::Malformed(0).into());
    }
    let key = K::from_bytes(key);
    match value {
        Some(value) => {
            table.insert(&key, V::from_bytes(value))?;
        }
        None => {
            table.remove(&key)?;
        }
    }
    Ok(())
}

/// Every table the writer changes, each once: its definition, its field in
/// [`Tables`] and [`RowWriter`], its id in log entries (part of the log
/// format: never renumbered or reused), and how a batch sees it: [`Logged`]
/// if anything reads it while the daemon runs, else [`WriteOnly`]. A new
/// table is one line here.
macro_rules! writer_tables {
    ($($(#[$doc:meta])* $field:ident: $def:ident = $id:literal, $name:literal, $kind:ident<$k:ty => $v:ty>;)*) => {
        $($(#[$doc])* pub const $def: TableDefinition<'static, $k, $v> = TableDefinition::new($name);)*

        /// Table ids in log entries.
        pub mod table_id {
            $(pub const $def: u8 = $id;)*
        }

        /// How many tables the writer changes; their ids run from 1.
        pub const TABLES: usize = [$($id),*].len();

        /// By table id, from 1: whether `Pending` holds its rows.
        pub const PENDING_TABLES: [bool; TABLES] = [$(<$kind<'static, $k, $v>>::PENDING),*];

        /// The tables the writer changes, as one batch sees them.
        pub(crate) struct Tables<'t> {
            $(pub $field: $kind<'t, $k, $v>,)*
        }

        impl<'t> Tables<'t> {
            pub fn open(snapshot: &ReadTransaction, pending: &'t Pending) -> Result<Self, StoreError> {
                Ok(Self { $($field: $kind::open(snapshot, $def, $id, pending)?,)* })
            }

            /// Every row this batch put or removed: the payload of one log
            /// frame, and what becomes pending once it is logged.
            pub fn take_rows(&mut self) -> Vec<Row> {
                let mut rows = Vec::new();
                $(self.$field.take_rows(&mut rows);)*
                rows
            }
        }

        /// The same tables in a write transaction, taking logged rows.
        pub(crate) struct RowWriter<'t> {
            $($field: Table<'t, $k, $v>,)*
        }

        impl<'t> RowWriter<'t> {
            /// Opens every table, creating those a new database lacks.
            pub fn open(txn: &'t WriteTransaction) -> Result<Self, StoreError> {
                Ok(Self { $($field: txn.open_table($def)?,)* })
            }

            pub fn apply(&mut self, table: u8, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
                match table {
                    $($id => apply_row(&mut self.$field, key, value),)*
                    _ => Err(wal::Malformed(0).into()),
                }
            }
        }
    };
}

writer_tables! {
    sessions: SESSIONS = 1, "sessions", Logged<[u8; 32] => &'static [u8]>;
    /// (expires_at_ms, session key) -> last_active_ms, for every stored
    /// session: the TTL index is rebuilt from it without reading records.
    expiry: EXPIRY = 2, "expiry", WriteOnly<(u64, [u8; 32]) => u64>;
    /// (user id, session key) for every session with an owner.
    by_user: BY_USER = 3, "by_user", WriteOnly<(&'static str, [u8; 32]) => ()>;
    /// Public handle -> session key.
    handles: HANDLES = 4, "handles", Logged<[u8; 12] => [u8; 32]>;
    /// Another key of a session (given by a transfer) -> the session's own key.
    aliases: ALIASES = 5, "aliases", Logged<[u8; 32] => [u8; 32]>;
    /// (expires_at_ms, nonce) of every redeemed transfer token: the replay guard.
    consumed: CONSUMED = 6, "consumed_tokens", Logged<(u64, [u8; 24]) => ()>;
    /// User id -> epoch; sealed cookies of an older epoch are revoked.
    user_epoch: USER_EPOCH = 7, "user_epoch", Logged<&'static str => u32>;
    /// Revoked sealed-cookie session ids -> when the cookie would have expired.
    denied: DENIED = 8, "denied_cookies", Logged<[u8; 16] => u64>;
}
