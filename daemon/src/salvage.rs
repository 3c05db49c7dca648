//! Offline tools for a data directory the daemon is not running on:
//! `sessiond check` verifies it, `sessiond salvage` copies every readable
//! session out of it into a fresh one.
//!
//! Neither changes the directory it reads. Salvage works on a copy: it
//! opens the copy as the daemon would (redb repairs it after a crash, the
//! log is replayed), then reads each record on its own, so one damaged
//! record costs that session and no other.
//!
//! redb checks its page checksums only when it repairs a file after a
//! crash, and then refuses the whole file if one page is bad ("all roots
//! are corrupted"). Salvage then reads the copy without redb's repair: as
//! a shared reader of the last commit, through the same trees, where every
//! record still carries its own checksum. Only the last commit is read, so
//! a session deleted before it cannot come back; the log is then replayed
//! on top, as a start would.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use redb::{ConcurrencyMode, Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use crate::record::Record;
use crate::store::{
    ALIASES, BY_USER, CONSUMED, DENIED, EXPIRY, HANDLES, LOG_SEQ, META, SCHEMA_VERSION, SESSIONS, Store, StoreError,
    USER_EPOCH, log_paths, read_logs,
};

const DB_FILE: &str = "sessions.redb";

/// What `check` found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// redb's own check of its pages and trees: `None` if it passed, or
    /// what it found.
    pub integrity: Option<String>,
    pub sessions: u64,
    /// Records that fail their checksum or do not decode.
    pub corrupt_records: u64,
    /// Index rows naming a session that is not there, and sessions missing
    /// from an index.
    pub index_mismatches: u64,
    /// Log frames past the database's last, which a start would replay.
    pub log_frames_to_replay: usize,
    /// The log cannot be replayed without losing acknowledged writes.
    pub log_error: Option<String>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.integrity.is_none() && self.corrupt_records == 0 && self.index_mismatches == 0 && self.log_error.is_none()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.integrity {
            None => writeln!(f, "redb integrity: ok")?,
            Some(e) => writeln!(f, "redb integrity: FAILED ({e})")?,
        }
        writeln!(f, "sessions: {}", self.sessions)?;
        writeln!(f, "corrupt records: {}", self.corrupt_records)?;
        writeln!(f, "index mismatches: {}", self.index_mismatches)?;
        match &self.log_error {
            None => write!(f, "log: ok, {} frames to replay at start", self.log_frames_to_replay),
            Some(e) => write!(f, "log: {e}"),
        }
    }
}

/// Verifies the data directory `dir`: redb's integrity check, every
/// record's checksum, the indexes against the sessions, and the log.
/// redb may repair the file, as a start would; nothing else is written.
pub fn check(dir: &Path) -> Result<Report, StoreError> {
    let path = dir.join(DB_FILE);
    let open = || Database::open(&path).map_err(|e| StoreError::Redb(e.into()));
    let mut db = open()?;
    let integrity = match db.check_integrity() {
        Ok(true) => None,
        Ok(false) => Some("repaired".to_owned()),
        Err(e) => Some(e.to_string()),
    };
    if integrity.is_some() {
        // A failed check leaves redb's handle unusable; the records are
        // read through a fresh one.
        drop(db);
        db = open()?;
    }
    let mut report = Report { integrity, ..Report::default() };
    let txn = db.begin_read()?;
    let mut ids = BTreeSet::new();
    for row in txn.open_table(SESSIONS)?.iter()? {
        let (id, value) = row?;
        report.sessions += 1;
        ids.insert(id.value());
        if Record::decode(value.value()).is_err() {
            report.corrupt_records += 1;
        }
    }
    let mut expiring = BTreeSet::new();
    for row in txn.open_table(EXPIRY)?.iter()? {
        let id = row?.0.value().1;
        report.index_mismatches += u64::from(!ids.contains(&id));
        expiring.insert(id);
    }
    report.index_mismatches += ids.difference(&expiring).count() as u64;
    for row in txn.open_table(BY_USER)?.iter()? {
        report.index_mismatches += u64::from(!ids.contains(&row?.0.value().1));
    }
    let handles = txn.open_table(HANDLES)?;
    report.index_mismatches += ids.len().abs_diff(handles.len()? as usize) as u64;
    for row in handles.iter()? {
        report.index_mismatches += u64::from(!ids.contains(&row?.1.value()));
    }
    for row in txn.open_table(ALIASES)?.iter()? {
        report.index_mismatches += u64::from(!ids.contains(&row?.1.value()));
    }
    let applied = txn.open_table(META)?.get(LOG_SEQ)?.map_or(0, |v| v.value());
    let [a, b] = read_logs(&path)?;
    match crate::wal::replayable_pair([&a, &b], applied) {
        Ok(frames) => report.log_frames_to_replay = frames.len(),
        Err((file, e)) => report.log_error = Some(format!("{}: {e}", log_paths(&path)[file].display())),
    }
    Ok(report)
}

/// What `salvage` copied and lost.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Salvaged {
    pub sessions: u64,
    /// Records that could not be read: their sessions are lost.
    pub unreadable: u64,
    /// redb refused the file, so it was read without its repair.
    pub read_unrepaired: bool,
}

/// Copies every readable session of the data directory `from` into a new
/// data directory `to` (which must not exist), with the indexes rebuilt
/// from the records and the token and cookie tables carried over. `from`
/// is not changed: the work is done on a copy of its files, in `to`.
pub fn salvage(from: &Path, to: &Path) -> Result<Salvaged, SalvageError> {
    if to.exists() {
        return Err(SalvageError::Exists(to.to_owned()));
    }
    crate::datadir::prepare(to).map_err(|e| SalvageError::Io(e.to_string()))?;
    let scratch = to.join("salvage-source");
    std::fs::create_dir(&scratch).map_err(|e| SalvageError::Io(e.to_string()))?;
    for file in [DB_FILE, "sessions.log", "sessions.2.log", "keyring"] {
        match std::fs::copy(from.join(file), scratch.join(file)) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && file != DB_FILE => {}
            Err(e) => return Err(SalvageError::Io(format!("{file}: {e}"))),
        }
    }
    // Opening replays the log into the copy; a log damaged in the middle is
    // set aside, so only the frames before the damage are taken.
    let mut opened = Store::open(&scratch.join(DB_FILE));
    while let Err(StoreError::LogDamaged { path, .. }) = &opened {
        std::fs::remove_file(path).map_err(|e| SalvageError::Io(e.to_string()))?;
        opened = Store::open(&scratch.join(DB_FILE));
    }
    let target = || Database::create(to.join(DB_FILE)).map_err(|e| SalvageError::Target(StoreError::Redb(e.into())));
    let salvaged = match opened {
        Ok((source, _)) => copy_readable(source.db(), &target()?).map_err(SalvageError::Target)?,
        Err(StoreError::Redb(redb::Error::Corrupted(why))) => {
            tracing::warn!("redb refuses the database ({why}); reading its last commit without repair");
            let salvaged = salvage_unrepaired(&scratch, to, target()?)?;
            // The log, if any, is replayed onto what was read: it holds
            // every acknowledged write since the last commit's checkpoint.
            let (store, _) = Store::open(&to.join(DB_FILE)).map_err(SalvageError::Target)?;
            store.mark_clean().map_err(SalvageError::Target)?;
            salvaged
        }
        Err(e) => return Err(SalvageError::Unreadable(e)),
    };
    if scratch.join("keyring").exists() {
        std::fs::rename(scratch.join("keyring"), to.join("keyring")).map_err(|e| SalvageError::Io(e.to_string()))?;
    }
    std::fs::remove_dir_all(&scratch).map_err(|e| SalvageError::Io(e.to_string()))?;
    Ok(salvaged)
}

/// Reads the copy in `scratch` that redb refused: its header is marked
/// clean so that a shared reader, which walks the last commit's trees and
/// neither repairs nor allocates, will open it. The log moves to `to`, and
/// the log position the commit had reached goes with the records, so the
/// next open replays exactly the frames past it.
fn salvage_unrepaired(scratch: &Path, to: &Path, target: Database) -> Result<Salvaged, SalvageError> {
    let path = scratch.join(DB_FILE);
    mark_clean_for_reading(&path).map_err(|e| SalvageError::Io(format!("{}: {e}", path.display())))?;
    let unreadable = |e: redb::DatabaseError| SalvageError::Unreadable(StoreError::Redb(e.into()));
    let source = Database::builder()
        .set_concurrency_mode(ConcurrencyMode::SingleWriter)
        .open_read_only(&path)
        .map_err(unreadable)?;
    let mut salvaged = copy_readable(&source, &target).map_err(SalvageError::Target)?;
    salvaged.read_unrepaired = true;
    let applied = source.begin_read().ok().and_then(|t| t.open_table(META).ok()?.get(LOG_SEQ).ok()?.map(|v| v.value()));
    let txn = target.begin_write().map_err(|e| SalvageError::Target(e.into()))?;
    match applied {
        Some(seq) => {
            (|| -> Result<(), StoreError> {
                txn.open_table(META)?.insert(LOG_SEQ, seq)?;
                txn.commit()?;
                Ok(())
            })()
            .map_err(SalvageError::Target)?;
            for (from, into) in log_paths(&path).into_iter().zip(log_paths(&to.join(DB_FILE))) {
                match std::fs::rename(from, into) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(SalvageError::Io(e.to_string()));
                    }
                    _ => {}
                }
            }
        }
        // Without the position, which frames are new is unknown: the log
        // stays beside the salvaged database for the operator, not replayed.
        None => {
            for from in log_paths(&path) {
                let kept = to.join(format!("{}.unreplayed", from.file_name().unwrap_or_default().to_string_lossy()));
                tracing::warn!(
                    "the log position is unreadable: the log is kept at {} and not replayed",
                    kept.display()
                );
                let _ = std::fs::rename(from, kept);
            }
        }
    }
    Ok(salvaged)
}

/// Clears redb's "repair required" flag in the header of the file at
/// `path` (a copy: this is never done to a data directory in use). The
/// flag is the low bits of the byte after redb's 9-byte magic number; the
/// salvage test of a refused file holds this to the redb in use.
fn mark_clean_for_reading(path: &Path) -> std::io::Result<()> {
    const MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];
    const RECOVERY_REQUIRED: u8 = 2;
    let mut header = [0u8; 10];
    let mut file = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
    std::io::Read::read_exact(&mut file, &mut header)?;
    if header[..9] != MAGIC {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "not a redb file"));
    }
    header[9] &= !RECOVERY_REQUIRED;
    std::os::unix::fs::FileExt::write_all_at(&file, &header[9..], 9)?;
    file.sync_all()
}

/// Every readable session of `source`, and its index rows rebuilt from the
/// record, into `target`, in one durable transaction.
fn copy_readable(source: &impl ReadableDatabase, target: &Database) -> Result<Salvaged, StoreError> {
    let from = source.begin_read()?;
    let mut txn = target.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    let mut out = Salvaged::default();
    {
        let mut sessions = txn.open_table(SESSIONS)?;
        let mut expiry = txn.open_table(EXPIRY)?;
        let mut by_user = txn.open_table(BY_USER)?;
        let mut handles = txn.open_table(HANDLES)?;
        let mut aliases = txn.open_table(ALIASES)?;
        for row in from.open_table(SESSIONS)?.iter()? {
            let Ok((id, value)) = row else {
                out.unreadable += 1;
                continue;
            };
            let id = id.value();
            let Ok(record) = Record::decode(value.value()) else {
                out.unreadable += 1;
                continue;
            };
            sessions.insert(id, record.encode().as_slice())?;
            expiry.insert((record.expires_at_ms, id), record.last_active_ms)?;
            if let Some(user) = &record.user {
                by_user.insert((user.as_str(), id), ())?;
            }
            handles.insert(record.handle, id)?;
            for alias in &record.aliases {
                aliases.insert(*alias, id)?;
            }
            out.sessions += 1;
        }
        let mut consumed = txn.open_table(CONSUMED)?;
        for row in from.open_table(CONSUMED)?.iter()?.flatten() {
            consumed.insert(row.0.value(), ())?;
        }
        let mut epochs = txn.open_table(USER_EPOCH)?;
        for row in from.open_table(USER_EPOCH)?.iter()?.flatten() {
            epochs.insert(row.0.value(), row.1.value())?;
        }
        let mut denied = txn.open_table(DENIED)?;
        for row in from.open_table(DENIED)?.iter()?.flatten() {
            denied.insert(row.0.value(), row.1.value())?;
        }
        txn.open_table(META)?.insert("schema_version", SCHEMA_VERSION)?;
    }
    txn.commit()?;
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum SalvageError {
    #[error("{0} exists: salvage writes into a new directory")]
    Exists(PathBuf),
    #[error("{0}")]
    Io(String),
    #[error("the source database cannot be opened at all, so no session in it can be read: {0}")]
    Unreadable(StoreError),
    #[error("writing the salvaged database: {0}")]
    Target(StoreError),
}
