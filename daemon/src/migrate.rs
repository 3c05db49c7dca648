//! Schema 1 to schema 2, once, at the first start of a build that reads 2.
//!
//! Schema 2 keeps every session under its key's id (`keys.rs`), never the
//! key, and gives each record a checksum (`record.rs`). The migration
//! writes a new database file beside the old one, with every row of schema
//! 1 carried over (keys turned into ids, records re-encoded), commits it
//! durably and renames it over the old file. Copy-on-write leaves the old
//! bytes in a database's free pages; a new file holds none of them, and the
//! old file's blocks leave with its name. A crash before the rename leaves
//! schema 1 and its log as they were, and the next start migrates again.

use std::path::{Path, PathBuf};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use sessiond_protocol::SessionKey;

use crate::keys::id_of;
use crate::record::Record;
use crate::store::{
    ALIASES, BY_USER, CONSUMED, DENIED, EXPIRY, HANDLES, LOG_SEQ, META, SCHEMA_VERSION, SESSIONS, StoreError,
    USER_EPOCH,
};

fn id(key: [u8; 32]) -> [u8; 32] {
    *id_of(&SessionKey::from_bytes(key)).as_bytes()
}

/// Where the new file is written before it replaces the old one.
fn staging(path: &Path) -> PathBuf {
    path.with_extension("redb.migrating")
}

/// Migrates the schema 1 database at `path` (closed) to schema 2 in place;
/// returns the number of sessions carried over.
pub fn v1_to_v2(path: &Path, cache_bytes: usize) -> Result<u64, StoreError> {
    let staged = staging(path);
    // A file left by a migration that crashed holds nothing yet in use.
    match std::fs::remove_file(&staged) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(StoreError::Log(e)),
        _ => {}
    }
    let old = Database::builder().set_cache_size(cache_bytes).create(path).map_err(|e| StoreError::Redb(e.into()))?;
    let new =
        Database::builder().set_cache_size(cache_bytes).create(&staged).map_err(|e| StoreError::Redb(e.into()))?;
    let sessions = copy(&old, &new)?;
    drop((old, new));
    std::fs::rename(&staged, path).map_err(StoreError::Log)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(StoreError::Log)?;
    }
    Ok(sessions)
}

/// Every row of `old`, in schema 2's form, into `new`, in one durable
/// transaction.
fn copy(old: &Database, new: &Database) -> Result<u64, StoreError> {
    let from = old.begin_read()?;
    let mut txn = new.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    txn.set_two_phase_commit(true);
    let mut sessions = 0;
    {
        let mut to = txn.open_table(SESSIONS)?;
        for row in from.open_table(SESSIONS)?.iter()? {
            let (key, value) = row?;
            let mut record = Record::decode_v1(value.value())?;
            for alias in &mut record.aliases {
                *alias = id(*alias);
            }
            to.insert(id(key.value()), record.encode().as_slice())?;
            sessions += 1;
        }
        let mut to = txn.open_table(EXPIRY)?;
        for row in from.open_table(EXPIRY)?.iter()? {
            let (key, last) = row?;
            let (expires_at, key) = key.value();
            to.insert((expires_at, id(key)), last.value())?;
        }
        let mut to = txn.open_table(BY_USER)?;
        for row in from.open_table(BY_USER)?.iter()? {
            let (key, _) = row?;
            let (user, key) = key.value();
            to.insert((user, id(key)), ())?;
        }
        let mut to = txn.open_table(HANDLES)?;
        for row in from.open_table(HANDLES)?.iter()? {
            let (handle, key) = row?;
            to.insert(handle.value(), id(key.value()))?;
        }
        let mut to = txn.open_table(ALIASES)?;
        for row in from.open_table(ALIASES)?.iter()? {
            let (alias, primary) = row?;
            to.insert(id(alias.value()), id(primary.value()))?;
        }
        copy_as_is(&from, &txn, CONSUMED)?;
        copy_as_is(&from, &txn, USER_EPOCH)?;
        copy_as_is(&from, &txn, DENIED)?;
        let mut meta = txn.open_table(META)?;
        let log_seq = from.open_table(META)?.get(LOG_SEQ)?.map_or(0, |v| v.value());
        meta.insert(LOG_SEQ, log_seq)?;
        meta.insert("schema_version", SCHEMA_VERSION)?;
    }
    txn.commit()?;
    Ok(sessions)
}

fn copy_as_is<K: redb::Key + 'static, V: redb::Value + 'static>(
    from: &redb::ReadTransaction,
    to: &redb::WriteTransaction,
    def: TableDefinition<'_, K, V>,
) -> Result<(), StoreError> {
    let mut out = to.open_table(def)?;
    for row in from.open_table(def)?.iter()? {
        let (key, value) = row?;
        out.insert(key.value(), value.value())?;
    }
    Ok(())
}
