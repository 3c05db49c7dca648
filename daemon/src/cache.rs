//! The write-through session cache: sharded, bounded by a memory budget.
//!
//! Invariants:
//! - Only durable records enter the cache: the writer publishes once their
//!   log frame is written (synced, in strict mode), and readers fill it with
//!   what `Pending` or a read transaction held.
//! - A reader's fill never overwrites what the writer published later. Each
//!   shard has an epoch that every publish bumps; a reader notes the epoch
//!   before its read transaction and its fill is dropped if the epoch moved.
//!   Without this, a reader holding a pre-delete snapshot could put a
//!   deleted session back into the cache.
//! - An entry the writer published is pinned until a redb checkpoint holds
//!   it ([`Cache::applied`], with the frame's sequence number as the
//!   generation): until then redb has an older state, and evicting it would
//!   send readers to `Pending` for it. Every
//!   other entry is clean (identical to redb), so eviction never loses data.
//! - A reader that passed the TTL index just before a delete may still fill
//!   the deleted session's older, committed record after the delete was
//!   published. Such an entry is never served (the TTL index no longer has
//!   the key, and keys are never reused) and is evicted in time; so the
//!   cache is not the authority on what exists.
//! - An entry the writer published (generation above 0) is exactly the
//!   session's latest logged row: the writer is the only
//!   one that changes rows, it publishes every row it changes (a delete
//!   removes the entry), and fills never replace an entry. So the writer may
//!   read those entries ([`Cache::published`]), and only those.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use sessiond_protocol::SessionKey;

use crate::record::Record;

const SHARDS: usize = 64;

/// Session keys are 256 bits from the CSPRNG, and clients cannot choose
/// which keys exist, so their leading bytes are already a good hash.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8).take(1) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }
}

type KeyMap<V> = HashMap<SessionKey, V, BuildHasherDefault<KeyHasher>>;

#[derive(Debug)]
struct Entry {
    record: Arc<Record>,
    /// Set on every hit, cleared by an eviction pass (CLOCK-style second chance).
    referenced: bool,
    /// The writer's transaction generation this entry came from; 0 for a
    /// reader's fill. Not evicted while above `applied`.
    generation: u64,
}

#[derive(Debug, Default)]
struct Shard {
    map: KeyMap<Entry>,
    bytes: usize,
    epoch: u64,
}

#[derive(Debug)]
pub struct Cache {
    shards: Vec<Mutex<Shard>>,
    shard_budget: usize,
    /// The last writer generation committed to redb.
    applied: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Proof of the shard epoch seen before a store read; see the module docs.
#[derive(Debug, Clone, Copy)]
pub struct FillTicket(u64);

impl Cache {
    pub fn new(budget_bytes: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            shard_budget: budget_bytes / SHARDS,
            applied: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &SessionKey) -> &Mutex<Shard> {
        &self.shards[usize::from(key.as_bytes()[8]) % SHARDS]
    }

    /// Looks `key` up; on a miss returns the ticket for a later [`Cache::fill`].
    pub fn get(&self, key: &SessionKey) -> Result<Arc<Record>, FillTicket> {
        let mut shard = self.shard(key).lock();
        match shard.map.get_mut(key) {
            Some(entry) => {
                entry.referenced = true;
                self.hits.fetch_add(1, Ordering::Relaxed);
                Ok(entry.record.clone())
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                Err(FillTicket(shard.epoch))
            }
        }
    }

    /// The record the writer last published for `key`, if the cache still
    /// holds it: the writer's own view of the row, never a reader's fill.
    /// For the writer only; not counted as a hit or a miss.
    pub fn published(&self, key: &SessionKey) -> Option<Arc<Record>> {
        let shard = self.shard(key).lock();
        shard.map.get(key).filter(|entry| entry.generation > 0).map(|entry| entry.record.clone())
    }

    /// Inserts a record read from the store, unless the writer published to
    /// this shard since the ticket was taken.
    pub fn fill(&self, key: SessionKey, record: Arc<Record>, ticket: FillTicket) {
        let mut shard = self.shard(&key).lock();
        if shard.epoch != ticket.0 || shard.map.contains_key(&key) {
            return;
        }
        shard.bytes += record.memory_bytes();
        shard.map.insert(key, Entry { record, referenced: false, generation: 0 });
        self.evict_over_budget(&mut shard);
    }

    /// Publishes the committed state of `key`: the new record, or `None` if
    /// it was deleted. Called by the writer only, after logging it in
    /// transaction `generation`.
    pub fn publish(&self, key: SessionKey, record: Option<Arc<Record>>, generation: u64) {
        let mut shard = self.shard(&key).lock();
        shard.epoch += 1;
        if let Some(old) = shard.map.remove(&key) {
            shard.bytes -= old.record.memory_bytes();
        }
        if let Some(record) = record {
            shard.bytes += record.memory_bytes();
            shard.map.insert(key, Entry { record, referenced: true, generation });
            self.evict_over_budget(&mut shard);
        }
    }

    /// The writer's transaction `generation` (and every earlier one) is in
    /// redb: its entries may be evicted now.
    pub fn applied(&self, generation: u64) {
        self.applied.fetch_max(generation, Ordering::Release);
    }

    fn evict_over_budget(&self, shard: &mut Shard) {
        if shard.bytes <= self.shard_budget {
            return;
        }
        // Evict down to 7/8 of the budget so passes are amortised; entries
        // hit since the last pass get a second chance.
        let target = self.shard_budget / 8 * 7;
        let applied = self.applied.load(Ordering::Acquire);
        for _pass in 0..2 {
            let mut bytes = shard.bytes;
            shard.map.retain(|_, entry| {
                if bytes <= target {
                    return true;
                }
                if entry.generation > applied || std::mem::take(&mut entry.referenced) {
                    return true;
                }
                bytes -= entry.record.memory_bytes();
                false
            });
            shard.bytes = bytes;
            if bytes <= target {
                break;
            }
        }
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    pub fn memory_bytes(&self) -> usize {
        self.shards.iter().map(|s| s.lock().bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sessiond_protocol::{Expiry, Field, PackedFields};

    fn key(n: u8) -> SessionKey {
        SessionKey::from_bytes([n; 32])
    }

    fn record(size: usize) -> Arc<Record> {
        let fields = vec![Field { name: "f".into(), value: vec![0; size] }];
        Arc::new(Record::new(
            0,
            Expiry::Default,
            PackedFields::new(&fields),
            crate::config::ExpiryConfig::default().rules(),
        ))
    }

    #[test]
    fn a_fill_after_a_publish_is_dropped() {
        let cache = Cache::new(1 << 20);
        let Err(ticket) = cache.get(&key(1)) else { panic!("empty cache hit") };
        // The writer deletes the session after the reader's snapshot...
        cache.publish(key(1), None, 0);
        // ...so the reader's stale copy must not enter the cache.
        cache.fill(key(1), record(10), ticket);
        assert!(cache.get(&key(1)).is_err());
    }

    #[test]
    fn the_writer_sees_what_it_published_and_never_a_fill() {
        let cache = Cache::new(1 << 20);
        // The writer deletes a session; a reader that passed the TTL index
        // before the delete then fills the old record with a fresh ticket.
        cache.publish(key(4), None, 3);
        let Err(ticket) = cache.get(&key(4)) else { panic!("deleted entry hit") };
        cache.fill(key(4), record(10), ticket);
        assert!(cache.get(&key(4)).is_ok(), "the stale fill is in the cache");
        assert!(cache.published(&key(4)).is_none(), "but the writer must not take it for the row");
        cache.publish(key(5), Some(record(7)), 3);
        assert_eq!(cache.published(&key(5)).unwrap().data_bytes(), 8);
    }

    #[test]
    fn a_fill_with_a_current_ticket_is_kept() {
        let cache = Cache::new(1 << 20);
        let Err(ticket) = cache.get(&key(2)) else { panic!() };
        cache.fill(key(2), record(10), ticket);
        assert!(cache.get(&key(2)).is_ok());
    }

    #[test]
    fn publish_replaces_and_removes() {
        let cache = Cache::new(1 << 20);
        cache.publish(key(3), Some(record(1)), 0);
        cache.publish(key(3), Some(record(2)), 0);
        assert_eq!(cache.get(&key(3)).unwrap().data_bytes(), 3);
        cache.publish(key(3), None, 0);
        assert!(cache.get(&key(3)).is_err());
        assert_eq!(cache.memory_bytes(), 0);
    }

    #[test]
    fn memory_stays_within_budget() {
        let budget = 64 * 4096;
        let cache = Cache::new(budget);
        for i in 0..10_000u32 {
            let mut bytes = [0u8; 32];
            bytes[..4].copy_from_slice(&i.to_le_bytes());
            bytes[8] = (i % 251) as u8;
            cache.publish(SessionKey::from_bytes(bytes), Some(record(100)), 0);
        }
        assert!(cache.memory_bytes() <= budget, "{} > {budget}", cache.memory_bytes());
        assert!(cache.memory_bytes() > budget / 2);
    }
}
