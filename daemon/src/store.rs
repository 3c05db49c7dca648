//! redb: the tables, opening and repair, and the read path.
//!
//! Writes go only through the writer thread (`writer.rs`); this module
//! opens the database and serves reads from read transactions, which see
//! committed data only.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use sessiond_protocol::SessionKey;

use crate::record::{CorruptRecord, Record};
use crate::ttl::TtlIndex;

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

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u64 = 1;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("the database {0} is held by another process (is another sessiond running?)")]
    Locked(String),
    #[error("the database was written by a newer sessiond (schema {found}, this build reads {SCHEMA_VERSION})")]
    NewerSchema { found: u64 },
    #[error(transparent)]
    Corrupt(#[from] CorruptRecord),
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

fn builder() -> redb::Builder {
    let mut builder = Database::builder();
    builder.set_repair_callback(|session| {
        tracing::warn!(progress = session.progress(), "repairing the database after an unclean shutdown");
    });
    builder
}

#[derive(Debug)]
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (creating if needed) and, after a crash, repairs the database,
    /// then checks the schema version. Returns the store and the number of
    /// stored sessions.
    pub fn open(path: &Path) -> Result<(Self, u64), StoreError> {
        let db = builder().create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked(path.display().to_string()),
            other => StoreError::Redb(other.into()),
        })?;
        Self::init(db)
    }

    /// Opens a database on any redb storage backend: tests use this to
    /// inject I/O failures.
    pub fn open_backend(backend: impl redb::StorageBackend) -> Result<(Self, u64), StoreError> {
        let db = builder().create_with_backend(backend).map_err(|e| StoreError::Redb(e.into()))?;
        Self::init(db)
    }

    fn init(db: Database) -> Result<(Self, u64), StoreError> {
        let txn = db.begin_write()?;
        let stored = {
            let mut meta = txn.open_table(META)?;
            let found = meta.get("schema_version")?.map(|v| v.value());
            match found {
                Some(v) if v > SCHEMA_VERSION => return Err(StoreError::NewerSchema { found: v }),
                Some(_) => {}
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION)?;
                }
            }
            txn.open_table(EXPIRY)?;
            txn.open_table(BY_USER)?;
            txn.open_table(HANDLES)?;
            txn.open_table(ALIASES)?;
            txn.open_table(CONSUMED)?;
            txn.open_table(USER_EPOCH)?;
            txn.open_table(DENIED)?;
            txn.open_table(SESSIONS)?.len()?
        };
        txn.commit()?;
        Ok((Self { db }, stored))
    }

    pub fn db(&self) -> &Database {
        &self.db
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
