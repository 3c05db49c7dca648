//! One batch's view of the sessions it touches.
//!
//! Sessions are loaded into slots on first use and written back once at the
//! end, so several writes to one session in a batch cost one insert. The
//! owner and handle indexes get overlays: a user's key set is loaded from
//! the owner index before its first change in the batch, and every later change
//! goes through [`Batch::insert_session`] and [`Batch::remove_session`], so
//! counts and lookups within the batch see the batch's own changes.

use std::collections::{BTreeSet, HashMap};

use sessiond_protocol::{HANDLE_BYTES, SessionKey};

use super::Published;
use super::apply::Failure;
use crate::answer::Refusal;
use crate::pending::Row;
use crate::record::Record;
use crate::store::{StoreError, Tables};

/// What a slot's row held when the batch loaded it: the index entries to
/// remove if they change.
pub(super) struct Stored {
    expires_at: u64,
    user: Option<String>,
    handle: [u8; HANDLE_BYTES],
}

/// A session's state within one batch.
pub(super) struct Slot {
    /// The row as loaded, if there was one.
    stored: Option<Stored>,
    /// The latest state in this batch; `None` if absent or deleted.
    pub record: Option<Record>,
    /// Must be written back at commit.
    pub dirty: bool,
    /// SET_EXPIRY replaced the policy: the index may move the expiry earlier.
    pub expiry_reset: bool,
}

impl Slot {
    fn new(stored: Option<Stored>, record: Option<Record>, dirty: bool) -> Self {
        Self { stored, record, dirty, expiry_reset: false }
    }
}

/// What a committed batch changed, for publishing to the in-memory indexes.
pub(super) struct Changes {
    pub slots: HashMap<SessionKey, Slot>,
    pub refile: Vec<SessionKey>,
    /// alias -> the session it now names, or `None` if it names nothing.
    pub aliases: HashMap<SessionKey, Option<SessionKey>>,
    /// Every row put or removed, for the log.
    pub rows: Vec<Row>,
    /// (session, owner before, owner after) for every session whose owner
    /// changed, for the owner index.
    pub owners: Vec<(SessionKey, Option<String>, Option<String>)>,
}

pub(super) struct Batch<'t> {
    tables: Tables<'t>,
    out: &'t Published,
    pub slots: HashMap<SessionKey, Slot>,
    pub now: u64,
    /// The memory size of every record loaded into a slot: with the jobs'
    /// own costs, an upper bound on what the batch writes to the log.
    pub loaded_bytes: usize,
    /// Sessions a sweep found touched since it was taken: re-filed after commit.
    pub refile: Vec<SessionKey>,
    users: HashMap<String, BTreeSet<SessionKey>>,
    handles: HashMap<[u8; HANDLE_BYTES], Option<SessionKey>>,
    aliases: HashMap<SessionKey, Option<SessionKey>>,
}

impl<'t> Batch<'t> {
    pub fn new(tables: Tables<'t>, out: &'t Published, now: u64) -> Self {
        Self {
            tables,
            out,
            slots: HashMap::new(),
            now,
            loaded_bytes: 0,
            refile: Vec::new(),
            users: HashMap::new(),
            handles: HashMap::new(),
            aliases: HashMap::new(),
        }
    }

    /// The session's own key for `key`: itself unless it is an alias, as of
    /// this point in the batch.
    pub fn resolve(&mut self, key: SessionKey) -> Result<SessionKey, StoreError> {
        if let Some(target) = self.aliases.get(&key) {
            return Ok(target.unwrap_or(key));
        }
        Ok(self.tables.aliases.get(key.as_bytes(), SessionKey::from_bytes)?.unwrap_or(key))
    }

    /// Gives the session `primary` another key.
    pub fn add_alias(&mut self, primary: SessionKey, alias: SessionKey) -> Result<(), StoreError> {
        let slot = self.slot(primary)?;
        let record = slot.record.as_mut().expect("aliases are added to live sessions");
        record.aliases.push(*alias.as_bytes());
        slot.dirty = true;
        self.aliases.insert(alias, Some(primary));
        Ok(())
    }

    /// Takes one alias away from the session `primary`.
    pub fn drop_alias(&mut self, primary: SessionKey, alias: SessionKey) -> Result<(), StoreError> {
        let slot = self.slot(primary)?;
        if let Some(record) = slot.record.as_mut() {
            record.aliases.retain(|a| a != alias.as_bytes());
            slot.dirty = true;
        }
        self.aliases.insert(alias, None);
        Ok(())
    }

    /// Records a transfer token as redeemed; false if it already was.
    pub fn consume(&mut self, exp_ms: u64, nonce: [u8; 24]) -> Result<bool, StoreError> {
        if self.tables.consumed.contains((exp_ms, nonce))? {
            return Ok(false);
        }
        self.tables.consumed.insert((exp_ms, nonce), ());
        Ok(true)
    }

    /// Revokes every sealed cookie of `user` made so far.
    pub fn bump_epoch(&mut self, user: &str) -> Result<(), StoreError> {
        let epoch = self.tables.user_epoch.get(user, |e| e)?.unwrap_or(0);
        self.tables.user_epoch.insert(user, epoch.wrapping_add(1));
        Ok(())
    }

    /// Revokes one sealed cookie session until it would have expired.
    pub fn deny(&mut self, sid: [u8; 16], until_ms: u64) -> Result<(), StoreError> {
        self.tables.denied.insert(sid, until_ms);
        Ok(())
    }

    /// Forgets redeemed tokens and denied cookies that can no longer be
    /// presented: past their expiry by more than `skew_ms`.
    pub fn purge_tokens(&mut self, skew_ms: u64) -> Result<u64, StoreError> {
        let horizon = self.now.saturating_sub(skew_ms);
        let gone = self.tables.consumed.matching(|(exp, _), ()| exp < horizon)?;
        let denied = self.tables.denied.matching(|_, until| until < horizon)?;
        let n = (gone.len() + denied.len()) as u64;
        gone.into_iter().for_each(|key| self.tables.consumed.remove_bytes(key));
        denied.into_iter().for_each(|key| self.tables.denied.remove_bytes(key));
        Ok(n)
    }

    pub fn slot(&mut self, key: SessionKey) -> Result<&mut Slot, StoreError> {
        if !self.slots.contains_key(&key) {
            // What the writer last published is the latest row (see
            // `Cache::published`): copying it is cheaper than finding and
            // decoding the row.
            let mut record = match self.out.cache.published(&key) {
                Some(published) => Some(Record::clone(&published)),
                None => self.tables.sessions.get(key.as_bytes(), Record::decode)?.transpose()?,
            };
            self.loaded_bytes += record.as_ref().map_or(0, Record::memory_bytes);
            let stored =
                record.as_ref().map(|r| Stored { expires_at: r.expires_at_ms, user: r.user.clone(), handle: r.handle });
            // Touches move the index first: take the later expiry, so no
            // write undoes one.
            if let (Some(r), Some(e)) = (record.as_mut(), self.out.ttl.get(&key)) {
                r.expires_at_ms = r.expires_at_ms.max(e.expires_at);
                r.last_active_ms = r.last_active_ms.max(e.last_active);
            }
            self.slots.insert(key, Slot::new(stored, record, false));
        }
        Ok(self.slots.get_mut(&key).expect("inserted above"))
    }

    /// The slot of `key` if it holds a live session: expired ones do not exist.
    pub fn live(&mut self, key: SessionKey) -> Result<Option<&mut Slot>, StoreError> {
        let now = self.now;
        let slot = self.slot(key)?;
        Ok(slot.record.as_ref().is_some_and(|r| r.is_live(now)).then_some(slot))
    }

    /// True if `key` names any row, live, expired or written in this batch:
    /// such a key is never handed out again.
    pub fn taken(&mut self, key: SessionKey) -> Result<bool, StoreError> {
        if let Some(slot) = self.slots.get(&key) {
            return Ok(slot.stored.is_some() || slot.record.is_some());
        }
        if self.aliases.contains_key(&key) {
            return Ok(true);
        }
        Ok(self.tables.sessions.contains(key.as_bytes())? || self.tables.aliases.contains(key.as_bytes())?)
    }

    /// A new key for a client, and the id it is kept under (see `keys.rs`).
    pub fn fresh_key(&mut self) -> Result<(SessionKey, SessionKey), Failure> {
        for _ in 0..4 {
            let key = crate::keys::generate().map_err(|e| Refusal::NoRandomness(e.to_string()))?;
            let id = crate::keys::id_of(&key);
            if !self.taken(id)? {
                return Ok((key, id));
            }
        }
        Err(Refusal::NoFreeId("key").into())
    }

    pub fn fresh_handle(&mut self) -> Result<[u8; HANDLE_BYTES], Failure> {
        for _ in 0..4 {
            let handle = crate::keys::handle().map_err(|e| Refusal::NoRandomness(e.to_string()))?;
            if self.handle_key(handle)?.is_none() {
                return Ok(handle);
            }
        }
        Err(Refusal::NoFreeId("handle").into())
    }

    /// Sets the state of `key` without touching the owner and handle
    /// overlays: for changes that keep both.
    pub fn put(&mut self, key: SessionKey, record: Option<Record>) {
        match self.slots.get_mut(&key) {
            Some(slot) => {
                slot.record = record;
                slot.dirty = true;
            }
            None => {
                self.slots.insert(key, Slot::new(None, record, true));
            }
        }
    }

    /// Adds a session under `key`, with its owner, handle and aliases.
    pub fn insert_session(&mut self, key: SessionKey, record: Record) -> Result<(), StoreError> {
        if let Some(user) = &record.user {
            self.owner_keys(user)?.insert(key);
        }
        self.handles.insert(record.handle, Some(key));
        for alias in &record.aliases {
            self.aliases.insert(SessionKey::from_bytes(*alias), Some(key));
        }
        self.put(key, Some(record));
        Ok(())
    }

    /// Removes the session under `key`, if there is one (live or expired),
    /// with its owner and handle entries. Returns the removed record.
    pub fn remove_session(&mut self, key: SessionKey) -> Result<Option<Record>, StoreError> {
        let Some(record) = self.slot(key)?.record.take() else { return Ok(None) };
        if let Some(user) = &record.user {
            self.owner_keys(user)?.remove(&key);
        }
        if self.handle_key(record.handle)? == Some(key) {
            self.handles.insert(record.handle, None);
        }
        for alias in &record.aliases {
            let alias = SessionKey::from_bytes(*alias);
            // After a CYCLE the alias already names the new key.
            if self.resolve(alias)? == key {
                self.aliases.insert(alias, None);
            }
        }
        self.put(key, None);
        Ok(Some(record))
    }

    /// The keys `user` owns, as of this point in the batch.
    pub fn owner_keys(&mut self, user: &str) -> Result<&mut BTreeSet<SessionKey>, StoreError> {
        if !self.users.contains_key(user) {
            // The owner index holds what every batch so far published.
            let keys = self.out.owners.keys(user).into_iter().collect();
            self.users.insert(user.to_owned(), keys);
        }
        Ok(self.users.get_mut(user).expect("inserted above"))
    }

    /// The session a handle names, as of this point in the batch.
    pub fn handle_key(&mut self, handle: [u8; HANDLE_BYTES]) -> Result<Option<SessionKey>, StoreError> {
        if let Some(key) = self.handles.get(&handle) {
            return Ok(*key);
        }
        self.tables.handles.get(handle, SessionKey::from_bytes)
    }

    /// The last activity of `key` if it is live. Sessions not loaded in this
    /// batch are judged by the TTL index, without reading their records.
    pub fn live_activity(&mut self, key: SessionKey) -> Result<Option<u64>, StoreError> {
        let now = self.now;
        if let Some(slot) = self.slots.get(&key) {
            return Ok(slot.record.as_ref().filter(|r| r.is_live(now)).map(|r| r.last_active_ms));
        }
        Ok(self.out.ttl.live(&key, now).map(|e| e.last_active))
    }

    /// Writes every changed slot back, with its expiry, owner and handle
    /// rows; rows that did not change are left alone.
    pub fn write_back(mut self) -> Result<Changes, StoreError> {
        let t = &mut self.tables;
        let mut owners = Vec::new();
        for (alias, target) in &self.aliases {
            match target {
                Some(primary) => t.aliases.insert(alias.as_bytes(), primary.as_bytes()),
                None => t.aliases.remove(alias.as_bytes()),
            }
        }
        for (key, slot) in self.slots.iter().filter(|(_, s)| s.dirty) {
            let k = *key.as_bytes();
            let (old, new) = (slot.stored.as_ref(), slot.record.as_ref());
            if old.map(|o| o.expires_at) != new.map(|r| r.expires_at_ms) {
                if let Some(o) = old {
                    t.expiry.remove((o.expires_at, k));
                }
            }
            let old_owner = old.map(|o| (o.user.as_deref(), o.handle));
            let new_owner = new.map(|r| (r.user.as_deref(), r.handle));
            let (old_user, new_user) = (old.and_then(|o| o.user.clone()), new.and_then(|r| r.user.clone()));
            if old_user != new_user {
                owners.push((*key, old_user, new_user));
            }
            if old_owner != new_owner {
                if let Some((user, handle)) = old_owner {
                    if let Some(user) = user {
                        t.by_user.remove((user, k));
                    }
                    // After a CYCLE the handle may already name the new key.
                    if t.handles.get(handle, |v| v)? == Some(k) {
                        t.handles.remove(handle);
                    }
                }
                if let Some((user, handle)) = new_owner {
                    if let Some(user) = user {
                        t.by_user.insert((user, k), ());
                    }
                    t.handles.insert(handle, k);
                }
            }
            match new {
                Some(record) => {
                    t.sessions.insert(&k, record.encode().as_slice());
                    t.expiry.insert((record.expires_at_ms, k), record.last_active_ms);
                }
                None if old.is_some() => {
                    t.sessions.remove(&k);
                }
                None => {}
            }
        }
        let rows = self.tables.take_rows();
        Ok(Changes { slots: self.slots, refile: self.refile, aliases: self.aliases, rows, owners })
    }
}
