//! The TTL index: when every live session expires, in memory.
//!
//! It covers every stored session, cached or not, and is the authority on
//! expiry: reads check it, touches update it at once, and the writer
//! persists touches lazily (see `Touch::persist`). It is rebuilt at start
//! from the `expiry` table, without reading session records.
//!
//! Invariants:
//! - An entry's `expires_at` only moves later, except through
//!   [`TtlIndex::publish`] with `allow_earlier` (SET_EXPIRY).
//! - `persisted <= expires_at`: the stored expiry lags the index by less
//!   than the touch granularity, so a crash can shorten a session's idle life
//!   by at most that, never lengthen it.
//! - Each entry has exactly one *official* place in the wheel, `wheel_at`,
//!   a one-second bucket at or before its expiry. Touches move expiry later
//!   without moving the wheel entry; the sweeper re-files it when it finds it
//!   early. Other copies in the wheel are stale and skipped.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;

use parking_lot::Mutex;
use sessiond_protocol::SessionKey;

use crate::cache::KeyHasher;

const SHARDS: usize = 64;
const BUCKET_MS: u64 = 1000;
/// `wheel_at` of an entry handed to the sweeper and not yet re-filed.
const UNFILED: u64 = u64::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub expires_at: u64,
    pub last_active: u64,
    /// The expiry stored in the database.
    persisted: u64,
    wheel_at: u64,
}

/// The outcome of a touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Touch {
    pub expires_at: u64,
    pub last_active: u64,
    /// The stored expiry now lags by at least the granularity: ask the writer
    /// to persist it.
    pub persist: bool,
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<SessionKey, Entry, BuildHasherDefault<KeyHasher>>,
    wheel: BTreeMap<u64, Vec<SessionKey>>,
}

impl Shard {
    fn file(&mut self, key: SessionKey, entry: &mut Entry) {
        let bucket = entry.expires_at / BUCKET_MS;
        if entry.wheel_at != bucket {
            entry.wheel_at = bucket;
            self.wheel.entry(bucket).or_default().push(key);
        }
    }
}

#[derive(Debug)]
pub struct TtlIndex {
    shards: Vec<Mutex<Shard>>,
    granularity_ms: u64,
}

impl TtlIndex {
    pub fn new(granularity_ms: u64) -> Self {
        Self { shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(), granularity_ms }
    }

    fn shard(&self, key: &SessionKey) -> &Mutex<Shard> {
        &self.shards[usize::from(key.as_bytes()[9]) % SHARDS]
    }

    /// Adds an entry read from the expiry table at start-up.
    pub fn load(&self, key: SessionKey, expires_at: u64, last_active: u64) {
        let mut shard = self.shard(&key).lock();
        let mut entry = Entry { expires_at, last_active, persisted: expires_at, wheel_at: UNFILED };
        shard.file(key, &mut entry);
        shard.map.insert(key, entry);
    }

    /// The entry of `key` if it is live at `now`.
    pub fn live(&self, key: &SessionKey, now: u64) -> Option<Entry> {
        self.shard(key).lock().map.get(key).filter(|e| now < e.expires_at).copied()
    }

    /// The entry of `key`, live or not.
    pub fn get(&self, key: &SessionKey) -> Option<Entry> {
        self.shard(key).lock().map.get(key).copied()
    }

    /// Records activity on a live session: the expiry moves to `expires_at`
    /// if that is later. `None` if the session is not live.
    pub fn touch(&self, key: &SessionKey, now: u64, expires_at: u64) -> Option<Touch> {
        let mut shard = self.shard(key).lock();
        let entry = shard.map.get_mut(key).filter(|e| now < e.expires_at)?;
        entry.expires_at = entry.expires_at.max(expires_at);
        entry.last_active = entry.last_active.max(now);
        Some(Touch {
            expires_at: entry.expires_at,
            last_active: entry.last_active,
            persist: entry.expires_at - entry.persisted >= self.granularity_ms,
        })
    }

    /// Publishes what the writer committed for `key`: its stored expiry and
    /// last activity, or `None` if it was deleted. The index keeps a later
    /// in-memory expiry from a concurrent touch unless `allow_earlier`.
    pub fn publish(&self, key: SessionKey, stored: Option<(u64, u64)>, allow_earlier: bool) {
        let mut shard = self.shard(&key).lock();
        let Some((expires_at, last_active)) = stored else {
            shard.map.remove(&key);
            return;
        };
        let mut entry = match shard.map.get(&key) {
            Some(old) if !allow_earlier => Entry {
                expires_at: old.expires_at.max(expires_at),
                last_active: old.last_active.max(last_active),
                persisted: expires_at,
                wheel_at: old.wheel_at,
            },
            Some(old) => Entry { expires_at, last_active, persisted: expires_at, wheel_at: old.wheel_at },
            None => Entry { expires_at, last_active, persisted: expires_at, wheel_at: UNFILED },
        };
        // Only an earlier expiry, or no place at all, needs a new place in
        // the wheel: a later one is found early and re-filed by the sweeper.
        if entry.wheel_at == UNFILED || entry.expires_at / BUCKET_MS < entry.wheel_at {
            shard.file(key, &mut entry);
        }
        shard.map.insert(key, entry);
    }

    /// Files again an entry the sweeper took but did not remove (it was
    /// touched meanwhile).
    pub fn refile(&self, key: SessionKey) {
        let mut shard = self.shard(&key).lock();
        if let Some(mut entry) = shard.map.get(&key).copied() {
            if entry.wheel_at == UNFILED {
                shard.file(key, &mut entry);
                shard.map.insert(key, entry);
            }
        }
    }

    /// Takes up to `limit` sessions that have expired by `now`, out of the
    /// wheel. They stay in the index (and stay unservable) until the writer
    /// deletes them, or re-files them if a touch got there first.
    pub fn take_expired(&self, now: u64, limit: usize) -> Vec<SessionKey> {
        let mut out = Vec::new();
        let current = now / BUCKET_MS;
        for shard in &self.shards {
            if out.len() >= limit {
                break;
            }
            let mut shard = shard.lock();
            while out.len() < limit {
                let Some((&bucket, _)) = shard.wheel.first_key_value() else { break };
                if bucket > current {
                    break;
                }
                let keys = shard.wheel.remove(&bucket).unwrap_or_default();
                let mut keep = Vec::new();
                for key in keys {
                    let Some(entry) = shard.map.get_mut(&key) else { continue };
                    if entry.wheel_at != bucket {
                        continue; // a stale copy
                    }
                    if entry.expires_at <= now && out.len() < limit {
                        entry.wheel_at = UNFILED;
                        out.push(key);
                    } else if entry.expires_at <= now || bucket == current {
                        // Over the limit, or in the current second and not
                        // expired yet: stays where it is.
                        keep.push(key);
                    } else {
                        // Touched since it was filed: file it again, later.
                        let mut e = *entry;
                        shard.file(key, &mut e);
                        shard.map.insert(key, e);
                    }
                }
                if !keep.is_empty() {
                    shard.wheel.entry(bucket).or_default().extend(keep);
                }
                if bucket == current {
                    break;
                }
            }
        }
        out
    }

    /// Entries in the index: stored sessions, live or awaiting the sweeper.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate heap bytes held, for STATS and capacity planning.
    pub fn memory_bytes(&self) -> usize {
        let per_map = std::mem::size_of::<(SessionKey, Entry)>() + 1;
        let per_wheel = std::mem::size_of::<SessionKey>();
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock();
                s.map.capacity() * per_map + s.wheel.values().map(|v| v.capacity() * per_wheel + 48).sum::<usize>()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> SessionKey {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&n.to_le_bytes());
        b[9] = (n % 251) as u8;
        SessionKey::from_bytes(b)
    }

    #[test]
    fn entries_expire_exactly_at_their_instant() {
        let ttl = TtlIndex::new(60_000);
        ttl.publish(key(1), Some((10_000, 0)), false);
        assert!(ttl.live(&key(1), 9_999).is_some());
        assert!(ttl.live(&key(1), 10_000).is_none());
        assert!(ttl.touch(&key(1), 10_000, 99_000).is_none(), "an expired session is not revived");
    }

    #[test]
    fn touches_extend_and_ask_for_persistence_past_the_granularity() {
        let ttl = TtlIndex::new(60_000);
        ttl.publish(key(1), Some((100_000, 0)), false);
        let t = ttl.touch(&key(1), 1_000, 130_000).unwrap();
        assert_eq!((t.expires_at, t.last_active, t.persist), (130_000, 1_000, false));
        let t = ttl.touch(&key(1), 2_000, 160_000).unwrap();
        assert!(t.persist, "60 s ahead of the stored expiry");
        let t = ttl.touch(&key(1), 500, 50_000).unwrap();
        assert_eq!((t.expires_at, t.last_active), (160_000, 2_000), "never moves back");
        // The writer persisted it: the lag starts again.
        ttl.publish(key(1), Some((160_000, 2_000)), false);
        assert!(!ttl.touch(&key(1), 3_000, 161_000).unwrap().persist);
    }

    #[test]
    fn publish_keeps_a_later_touch_unless_told_to_shorten() {
        let ttl = TtlIndex::new(60_000);
        ttl.publish(key(1), Some((100_000, 0)), false);
        ttl.touch(&key(1), 5_000, 200_000).unwrap();
        ttl.publish(key(1), Some((150_000, 4_000)), false);
        assert_eq!(ttl.get(&key(1)).unwrap().expires_at, 200_000);
        ttl.publish(key(1), Some((20_000, 6_000)), true);
        assert_eq!(ttl.get(&key(1)).unwrap().expires_at, 20_000);
        // The earlier expiry is found by the sweeper at its time.
        assert_eq!(ttl.take_expired(21_000, 10), vec![key(1)]);
    }

    #[test]
    fn the_sweeper_takes_only_expired_entries_and_refiles_touched_ones() {
        let ttl = TtlIndex::new(60_000);
        for n in 0..1000 {
            ttl.publish(key(n), Some((10_000 + u64::from(n) * 10, 0)), false);
        }
        ttl.touch(&key(5), 5_000, 90_000).unwrap();
        let now = 12_500;
        let mut taken = ttl.take_expired(now, 100);
        assert_eq!(taken.len(), 100, "bounded batches");
        taken.extend(ttl.take_expired(now, usize::MAX));
        taken.sort();
        let mut expected: Vec<_> =
            (0..1000u32).filter(|&n| n != 5 && 10_000 + u64::from(n) * 10 <= now).map(key).collect();
        expected.sort();
        assert_eq!(taken, expected, "every expired entry, the current second's too, but not the touched one");
        assert!(ttl.take_expired(now, 100).is_empty());
        assert_eq!(ttl.take_expired(12_999, usize::MAX).len(), 49, "the rest of the current second, as it passes");
        assert_eq!(ttl.take_expired(91_000, usize::MAX).len(), 700 + 1, "the rest, and the re-filed touched one");
    }

    #[test]
    fn deleted_entries_leave_no_trace_for_the_sweeper() {
        let ttl = TtlIndex::new(60_000);
        ttl.publish(key(1), Some((1_000, 0)), false);
        ttl.publish(key(1), None, false);
        assert!(ttl.take_expired(10_000, 10).is_empty());
        assert!(ttl.is_empty());
    }
}
