//! What each mutation does to a batch: validation against the latest state
//! (existence, expiry, compare-and-set version, merged size, the per-user
//! limit), then the change. Answers are built here and sent after commit.

use sessiond_protocol::{
    Created, DeletedOk, ErrorCode, Field, Response, RevokedOk, SessionHandle, SessionKey, SweptOk, Written,
};

use super::batch::Batch;
use super::{Op, WriterConfig};
use crate::config::LimitPolicy;
use crate::record::Record;
use crate::stats::Stats;
use crate::store::StoreError;

type Applied = Result<Response, StoreError>;

fn not_found() -> Response {
    Response::error(ErrorCode::NotFound, "no such session")
}

fn conflict(expected: u64, found: u64) -> Response {
    Response::error(ErrorCode::VersionConflict, format!("expected version {expected}, found {found}"))
}

fn created(key: SessionKey, record: &Record) -> sessiond_protocol::Created {
    Created {
        key: key.encode(),
        handle: SessionHandle::from_bytes(record.handle).encode(),
        version: record.version,
        expires_at_ms: record.expires_at_ms,
    }
}

fn written(record: &Record) -> Written {
    Written { version: record.version, expires_at_ms: record.expires_at_ms }
}

/// Unwraps an inner `Result<T, Response>`: an answer that ends the operation.
macro_rules! or_answer {
    ($e:expr) => {
        match $e? {
            Ok(v) => v,
            Err(answer) => return Ok(answer),
        }
    };
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
            Op::Create { fields, expiry, meta } => {
                if let Some(user) = &meta.user {
                    or_answer!(self.make_room(batch, user, None));
                }
                let key = or_answer!(batch.fresh_key());
                let mut record = Record::new(now, *expiry, fields.clone(), rules);
                record.handle = or_answer!(batch.fresh_handle());
                record.user.clone_from(&meta.user);
                record.ip.clone_from(&meta.ip);
                record.user_agent.clone_from(&meta.user_agent);
                let answer = created(key, &record);
                batch.insert_session(key, record)?;
                Ok(Response::Created(answer))
            }
            Op::Replace { key, fields, expected_version } => {
                self.modify(batch, *key, *expected_version, |r| r.fields = fields.clone(), Response::Replaced)
            }
            Op::Patch { key, set, remove, expected_version } => {
                self.modify(batch, *key, *expected_version, |r| r.patch(set.clone(), remove), Response::Patched)
            }
            Op::Delete { key } => {
                let existed = batch.live(*key)?.is_some();
                batch.remove_session(*key)?;
                Ok(Response::Deleted(DeletedOk { existed }))
            }
            Op::Cycle { key, bind_user } => self.cycle(batch, *key, bind_user.as_deref()),
            Op::SetExpiry { key, expiry } => {
                let Some(slot) = batch.live(*key)? else { return Ok(not_found()) };
                let record = slot.record.as_mut().expect("live slot has a record");
                record.set_expiry(*expiry, now, rules);
                slot.dirty = true;
                slot.expiry_reset = true;
                Ok(Response::ExpirySet(written(record)))
            }
            Op::SetMeta { key, ip, user_agent } => {
                let Some(slot) = batch.live(*key)? else { return Ok(not_found()) };
                let record = slot.record.as_mut().expect("live slot has a record");
                if ip.is_some() {
                    record.ip.clone_from(ip);
                }
                if user_agent.is_some() {
                    record.user_agent.clone_from(user_agent);
                }
                record.mark_active(now, rules);
                slot.dirty = true;
                Ok(Response::MetaSet(written(record)))
            }
            Op::PersistTouch { key } => {
                // Loading merged the index's expiry into the record: writing
                // it back is all there is to do.
                if let Some(slot) = batch.live(*key)? {
                    slot.dirty = true;
                    Stats::add(&self.stats.touches_persisted, 1);
                }
                Ok(Response::Pong(sessiond_protocol::Empty {}))
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
                Ok(Response::Swept(SweptOk { removed }))
            }
            Op::Revoke { handle } => {
                let count = match batch.handle_key(*handle.as_bytes())? {
                    Some(key) => self.end(batch, key)?,
                    None => 0,
                };
                Ok(Response::Revoked(RevokedOk { count }))
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
                Ok(Response::UserRevoked(RevokedOk { count }))
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
    fn cycle(&self, batch: &mut Batch<'_>, key: SessionKey, bind_user: Option<&str>) -> Applied {
        let Some(slot) = batch.live(key)? else { return Ok(not_found()) };
        let owner = slot.record.as_ref().and_then(|r| r.user.clone());
        if let Some(user) = bind_user {
            // The session being rotated is not counted: it is about to move.
            or_answer!(self.make_room(batch, user, Some(key)));
        }
        let new_key = or_answer!(batch.fresh_key());
        let mut record = batch.remove_session(key)?.expect("live session");
        record.user = bind_user.map(str::to_owned).or(owner);
        record.mark_modified(batch.now, self.config.rules);
        let answer = created(new_key, &record);
        batch.insert_session(new_key, record)?;
        Ok(Response::Cycled(answer))
    }

    /// Makes room for one more live session of `user`, as the limit policy
    /// says: refuse, or end the least recently active ones.
    fn make_room(
        &self,
        batch: &mut Batch<'_>,
        user: &str,
        not_counting: Option<SessionKey>,
    ) -> Result<Result<(), Response>, StoreError> {
        let Some(max) = self.config.max_sessions_per_user else { return Ok(Ok(())) };
        let keys: Vec<SessionKey> =
            batch.owner_keys(user)?.iter().copied().filter(|k| Some(*k) != not_counting).collect();
        let mut live = Vec::new();
        for key in keys {
            if let Some(last_active) = batch.live_activity(key)? {
                live.push((last_active, key));
            }
        }
        if live.len() < max {
            return Ok(Ok(()));
        }
        match self.config.limit_policy {
            LimitPolicy::Refuse => Ok(Err(Response::error(
                ErrorCode::TooManySessions,
                format!("the user already has {} live sessions; the limit is {max}", live.len()),
            ))),
            LimitPolicy::EvictOldest => {
                live.sort_unstable();
                for (_, key) in live.iter().take(live.len() + 1 - max) {
                    batch.remove_session(*key)?;
                    Stats::add(&self.stats.sessions_evicted, 1);
                }
                Ok(Ok(()))
            }
        }
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
    ) -> Applied {
        let now = batch.now;
        let Some(slot) = batch.live(key)? else { return Ok(not_found()) };
        let current = slot.record.as_ref().expect("live slot has a record");
        if let Some(expected) = expected_version {
            if expected != current.version {
                return Ok(conflict(expected, current.version));
            }
        }
        let mut next = current.clone();
        change(&mut next);
        if let Some(too_large) = self.check_size(&next.fields) {
            return Ok(too_large);
        }
        next.mark_modified(now, self.config.rules);
        let answer = wrap(written(&next));
        slot.record = Some(next);
        slot.dirty = true;
        Ok(answer)
    }

    fn check_size(&self, fields: &[Field]) -> Option<Response> {
        if fields.len() > self.config.max_fields {
            return Some(Response::error(
                ErrorCode::TooLarge,
                format!("session would have {} fields; the limit is {}", fields.len(), self.config.max_fields),
            ));
        }
        let bytes = crate::record::data_bytes(fields);
        (bytes > self.config.max_session_bytes).then(|| {
            Response::error(
                ErrorCode::TooLarge,
                format!("session would hold {bytes} bytes; the limit is {}", self.config.max_session_bytes),
            )
        })
    }
}
