//! What each mutation does to a batch: validation against the latest state
//! (existence, expiry, compare-and-set version, merged size, the per-user
//! limit), then the change, and what to answer once the batch is durable.

use sessiond_protocol::{Owner, PackedFields, SessionKey};

use super::batch::Batch;
use super::{Op, WriteOp, WriterConfig};
use crate::answer::{Done, NewKey, Refusal, Version};
use crate::config::LimitPolicy;
use crate::record::{Record, data_bytes};
use crate::stats::Stats;
use crate::store::StoreError;
use crate::tokens::Reject;

/// Why an operation stopped: refused, changing nothing more, or storage
/// failed and the whole batch with it.
#[derive(Debug)]
pub(super) enum Failure {
    Refused(Refusal),
    Store(StoreError),
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Self {
        Self::Refused(r)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

type Applied = Result<Done, Failure>;

fn version(record: &Record) -> Version {
    Version { version: record.version, expires_at_ms: record.expires_at_ms }
}

fn new_key(key: String, record: &Record, proposed: bool) -> NewKey {
    NewKey { key, handle: record.handle, version: version(record), proposed }
}

pub(super) struct Applier<'a> {
    pub config: &'a WriterConfig,
    pub stats: &'a Stats,
}

impl Applier<'_> {
    pub fn apply(&self, batch: &mut Batch<'_>, op: &Op) -> Applied {
        let now = batch.now;
        let rules = self.config.rules;
        match op {
            Op::Create { fields, expiry, meta, proposed } => {
                if let Some((_, id)) = proposed {
                    // Taken by a live or an expired session, or an alias:
                    // never merged, never adopted.
                    if batch.taken(*id)? {
                        return Err(Refusal::KeyExists.into());
                    }
                }
                if let Some(user) = &meta.user {
                    self.make_room(batch, user, None)?;
                }
                let (key, id) = match proposed {
                    Some((text, id)) => (text.clone(), *id),
                    None => {
                        let (key, id) = batch.fresh_key()?;
                        (key.encode(), id)
                    }
                };
                let mut record = Record::new(now, *expiry, fields.clone(), rules);
                record.handle = batch.fresh_handle()?;
                record.user.clone_from(&meta.user);
                record.ip.clone_from(&meta.ip);
                record.user_agent.clone_from(&meta.user_agent);
                let answer = new_key(key, &record, proposed.is_some());
                batch.insert_session(id, record)?;
                Ok(Done::Created(answer))
            }
            Op::Replace { key, fields, expected_version } => {
                let key = batch.resolve(*key)?;
                let size = |_: &Record| (fields.len(), fields.data_bytes());
                self.modify(batch, key, *expected_version, size, |r| r.fields = fields.clone(), Done::Replaced)
            }
            Op::Patch { key, set, remove, expected_version } => {
                let key = batch.resolve(*key)?;
                let size = |r: &Record| r.patched_size(set, remove);
                self.modify(batch, key, *expected_version, size, |r| r.patch(set, remove), Done::Patched)
            }
            Op::Write(w) => {
                let key = batch.resolve(w.key)?;
                self.write(batch, key, w)
            }
            Op::Delete { key } => {
                // Through any of its keys, logout ends the whole session.
                let key = batch.resolve(*key)?;
                let existed = batch.live(key)?.is_some();
                batch.remove_session(key)?;
                Ok(Done::Deleted { existed })
            }
            Op::Cycle { key, bind_user, proposed } => self.cycle(batch, *key, bind_user.as_deref(), proposed.as_ref()),
            Op::SetExpiry { key, expiry } => {
                let key = batch.resolve(*key)?;
                let slot = batch.live(key)?.ok_or(Refusal::NotFound)?;
                let record = slot.record.as_mut().expect("live slot has a record");
                record.set_expiry(*expiry, now, rules);
                slot.dirty = true;
                slot.expiry_reset = true;
                Ok(Done::ExpirySet(version(record)))
            }
            Op::SetMeta { key, ip, user_agent } => {
                let key = batch.resolve(*key)?;
                let slot = batch.live(key)?.ok_or(Refusal::NotFound)?;
                let record = slot.record.as_mut().expect("live slot has a record");
                if ip.is_some() {
                    record.ip.clone_from(ip);
                }
                if user_agent.is_some() {
                    record.user_agent.clone_from(user_agent);
                }
                record.mark_active(now, rules);
                slot.dirty = true;
                Ok(Done::MetaSet(version(record)))
            }
            // The writer checkpoints once the batch is logged.
            Op::Checkpoint => Ok(Done::Checkpointed),
            Op::PersistTouch { key } => {
                // Loading merged the index's expiry into the record: writing
                // it back is all there is to do.
                if let Some(slot) = batch.live(*key)? {
                    slot.dirty = true;
                    Stats::add(&self.stats.touches_persisted, 1);
                }
                Ok(Done::TouchPersisted)
            }
            Op::Sweep { keys } => {
                let mut removed = 0;
                for key in keys {
                    match batch.slot(*key)?.record.as_ref().map(|r| r.is_live(now)) {
                        Some(false) => {
                            batch.remove_session(*key)?;
                            removed += 1;
                        }
                        Some(true) => batch.refile.push(*key),
                        None => {}
                    }
                }
                Ok(Done::Swept { removed })
            }
            Op::Revoke { handle } => {
                let count = match batch.handle_key(*handle.as_bytes())? {
                    Some(key) => self.end(batch, key)?,
                    None => 0,
                };
                Ok(Done::Revoked { count })
            }
            Op::RevokeUser { user, keep } => {
                let keep = match keep {
                    Some(h) => batch.handle_key(*h.as_bytes())?,
                    None => None,
                };
                let keys: Vec<SessionKey> = batch.owner_keys(user)?.iter().copied().collect();
                let mut count = 0;
                for key in keys.into_iter().filter(|k| Some(*k) != keep) {
                    count += self.end(batch, key)?;
                }
                // Sealed cookies are not in the store: a new epoch revokes
                // every one the user has. (With `keep`, the caller re-seals.)
                batch.bump_epoch(user)?;
                Ok(Done::UserRevoked { count })
            }
            Op::Redeem { nonce, exp_ms, valid_until_ms, source, current, always_replace } => {
                if batch.now > *valid_until_ms {
                    self.stats.token_rejected(Reject::Time);
                    return Err(Refusal::TokenRejected.into());
                }
                self.redeem(batch, *nonce, *exp_ms, *source, current.clone(), *always_replace)
            }
            Op::RevokeSealed { sid, until_ms } => {
                batch.deny(*sid, *until_ms)?;
                Ok(Done::SealedRevoked)
            }
            Op::PurgeTokens { skew_ms } => {
                let removed = batch.purge_tokens(*skew_ms)?;
                Ok(Done::Purged { removed })
            }
        }
    }

    /// Ends a session, live or expired; returns 1 if it was live.
    fn end(&self, batch: &mut Batch<'_>, key: SessionKey) -> Result<u64, StoreError> {
        let live = batch.live(key)?.is_some();
        batch.remove_session(key)?;
        Ok(u64::from(live))
    }

    /// Moves a live session to a fresh key, keeping its data, handle and
    /// metadata; with `bind_user`, makes that user its owner in the same step.
    /// Cycling one of a session's other keys (an alias) replaces just that key.
    /// CYCLE_AS brings the new key (`proposed`), refused as CREATE_AS refuses
    /// one if any session has it.
    fn cycle(
        &self,
        batch: &mut Batch<'_>,
        key: SessionKey,
        bind_user: Option<&str>,
        proposed: Option<&(String, SessionKey)>,
    ) -> Applied {
        let primary = batch.resolve(key)?;
        if primary != key {
            return self.cycle_alias(batch, key, primary, bind_user, proposed);
        }
        let slot = batch.live(key)?.ok_or(Refusal::NotFound)?;
        let owner = slot.record.as_ref().and_then(|r| r.user.clone());
        // Before making room: a refused key must change nothing, and the
        // evict-oldest policy would end other sessions.
        if let Some((_, id)) = proposed {
            if batch.taken(*id)? {
                return Err(Refusal::KeyExists.into());
            }
        }
        if let Some(user) = bind_user {
            // The session being rotated is not counted: it is about to move.
            self.make_room(batch, user, Some(key))?;
        }
        let (key_text, new_id) = match proposed {
            Some((text, id)) => (text.clone(), *id),
            None => {
                let (key, id) = batch.fresh_key()?;
                (key.encode(), id)
            }
        };
        let mut record = batch.remove_session(key)?.expect("live session");
        record.user = bind_user.map(str::to_owned).or(owner);
        record.mark_modified(batch.now, self.config.rules);
        let answer = new_key(key_text, &record, proposed.is_some());
        batch.insert_session(new_id, record)?;
        Ok(Done::Cycled(answer))
    }

    fn cycle_alias(
        &self,
        batch: &mut Batch<'_>,
        alias: SessionKey,
        primary: SessionKey,
        bind: Option<&str>,
        proposed: Option<&(String, SessionKey)>,
    ) -> Applied {
        let slot = batch.live(primary)?.ok_or(Refusal::NotFound)?;
        let owner = slot.record.as_ref().and_then(|r| r.user.clone());
        if bind.is_some_and(|b| Some(b) != owner.as_deref()) {
            // A login as someone else must not change whose session the
            // other sites see: a session has one owner.
            return Err(Refusal::OtherOwner.into());
        }
        let (key_text, new_id) = match proposed {
            Some((_, id)) if batch.taken(*id)? => return Err(Refusal::KeyExists.into()),
            Some((text, id)) => (text.clone(), *id),
            None => {
                let (key, id) = batch.fresh_key()?;
                (key.encode(), id)
            }
        };
        batch.drop_alias(primary, alias)?;
        batch.add_alias(primary, new_id)?;
        let now = batch.now;
        let slot = batch.slot(primary)?;
        let record = slot.record.as_mut().expect("live above");
        record.mark_modified(now, self.config.rules);
        Ok(Done::Cycled(new_key(key_text, record, proposed.is_some())))
    }

    /// Redeems a transfer token whose envelope and claims the service has
    /// checked: single use, a live source, then the destination's key.
    fn redeem(
        &self,
        batch: &mut Batch<'_>,
        nonce: [u8; 24],
        exp_ms: u64,
        source: SessionKey,
        current: Option<(SessionKey, String)>,
        always_replace: bool,
    ) -> Applied {
        let rejected = |reason: Reject| -> Applied {
            self.stats.token_rejected(reason);
            Err(Refusal::TokenRejected.into())
        };
        if !batch.consume(exp_ms, nonce)? {
            tracing::warn!("replayed transfer token refused");
            return rejected(Reject::Replay);
        }
        let source = batch.resolve(source)?;
        let Some(slot) = batch.live(source)? else { return rejected(Reject::Session) };
        let source_user = slot.record.as_ref().and_then(|r| r.user.clone());
        if let Some((current_key, current_raw)) = current {
            let current_primary = batch.resolve(current_key)?;
            if let Some(slot) = batch.live(current_primary)? {
                let record = slot.record.as_ref().expect("live slot has a record");
                let keep = current_primary == source
                    || (!always_replace && !record.fields.is_empty())
                    || record.user.as_ref().is_some_and(|u| source_user.as_ref() != Some(u));
                if keep {
                    if record.user.is_some() && current_primary != source {
                        tracing::info!("kept an authenticated destination session over a transfer");
                    }
                    return Ok(Done::Redeemed { key: current_raw, replaced: false });
                }
                // Replaced: this site's old key ends. If it was an alias,
                // only the key goes; the session lives on at its own site.
                if current_primary == current_key {
                    batch.remove_session(current_key)?;
                } else {
                    batch.drop_alias(current_primary, current_key)?;
                }
            }
        }
        let (key, id) = batch.fresh_key()?;
        batch.add_alias(source, id)?;
        Stats::add(&self.stats.tokens_redeemed, 1);
        Ok(Done::Redeemed { key: key.encode(), replaced: true })
    }

    /// Makes room for one more live session of `user`, as the limit policy
    /// says: refuse, or end the least recently active ones.
    fn make_room(&self, batch: &mut Batch<'_>, user: &str, not_counting: Option<SessionKey>) -> Result<(), Failure> {
        let Some(max) = self.config.max_sessions_per_user else { return Ok(()) };
        let keys: Vec<SessionKey> =
            batch.owner_keys(user)?.iter().copied().filter(|k| Some(*k) != not_counting).collect();
        let mut live = Vec::new();
        for key in keys {
            if let Some(last_active) = batch.live_activity(key)? {
                live.push((last_active, key));
            }
        }
        if live.len() < max {
            return Ok(());
        }
        match self.config.limit_policy {
            LimitPolicy::Refuse => Err(Refusal::TooManySessions { live: live.len(), limit: max }.into()),
            LimitPolicy::EvictOldest => {
                live.sort_unstable();
                for (_, key) in live.iter().take(live.len() + 1 - max) {
                    batch.remove_session(*key)?;
                    Stats::add(&self.stats.sessions_evicted, 1);
                }
                Ok(())
            }
        }
    }

    /// Applies a data change to a live session, checking the expected
    /// version and the size limits against the latest state. `size` says
    /// what `change` would leave (field count, data bytes), so a refused
    /// change never touches the record and an accepted one is made in place.
    fn modify(
        &self,
        batch: &mut Batch<'_>,
        key: SessionKey,
        expected_version: Option<u64>,
        size: impl FnOnce(&Record) -> (usize, usize),
        change: impl FnOnce(&mut Record),
        wrap: fn(Version) -> Done,
    ) -> Applied {
        let now = batch.now;
        let slot = batch.live(key)?.ok_or(Refusal::NotFound)?;
        let record = slot.record.as_mut().expect("live slot has a record");
        if let Some(expected) = expected_version {
            if expected != record.version {
                return Err(Refusal::VersionConflict { expected, found: record.version }.into());
            }
        }
        let (count, bytes) = size(record);
        self.check_size(count, bytes)?;
        change(record);
        debug_assert_eq!((count, bytes), (record.fields.len(), record.data_bytes()), "size() must predict change()");
        record.mark_modified(now, self.config.rules);
        let answer = wrap(version(record));
        slot.dirty = true;
        Ok(answer)
    }

    /// WRITE: data, then policy, then owner, in one step; answered with the
    /// state after all three.
    fn write(&self, batch: &mut Batch<'_>, key: SessionKey, w: &WriteOp) -> Applied {
        let WriteOp { set, remove, replace, expected_version, expiry, owner, .. } = w;
        let (replace, expected_version, expiry) = (*replace, *expected_version, *expiry);
        let (now, rules) = (batch.now, self.config.rules);
        let slot = batch.live(key)?.ok_or(Refusal::NotFound)?;
        let record = slot.record.as_ref().expect("live slot has a record");
        if let Some(expected) = expected_version.filter(|v| *v != record.version) {
            return Err(Refusal::VersionConflict { expected, found: record.version }.into());
        }
        let (count, bytes) = if replace { (set.len(), data_bytes(set)) } else { record.patched_size(set, remove) };
        self.check_size(count, bytes)?;
        let new_owner = match owner {
            Owner::Keep => None,
            Owner::Set(user) => Some(Some(user.clone())),
            Owner::Clear => Some(None),
        }
        .filter(|new| *new != record.user);
        if let Some(Some(user)) = &new_owner {
            self.make_room(batch, user, Some(key))?;
        }
        let mut record = batch.remove_session(key)?.expect("live above");
        if replace {
            record.fields = PackedFields::new(set);
        } else {
            record.patch(set, remove);
        }
        if let Some(user) = new_owner {
            record.user = user;
        }
        record.mark_modified(now, rules);
        if let Some(expiry) = expiry {
            // As SET_EXPIRY: computed afresh, so it may come earlier.
            record.expiry = expiry;
            record.expires_at_ms = record.policy_expiry(now, rules);
        }
        let answer = Done::Written(version(&record));
        batch.insert_session(key, record)?;
        if expiry.is_some() {
            batch.slot(key)?.expiry_reset = true;
        }
        Ok(answer)
    }

    fn check_size(&self, count: usize, bytes: usize) -> Result<(), Refusal> {
        let (max_fields, max_bytes) = (self.config.max_fields, self.config.max_session_bytes);
        if count > max_fields {
            return Err(Refusal::TooManyFields { count, limit: max_fields });
        }
        if bytes > max_bytes {
            return Err(Refusal::TooLarge { bytes, limit: max_bytes });
        }
        Ok(())
    }
}
