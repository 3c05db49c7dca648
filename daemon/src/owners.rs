//! The owner index: each user's session keys, in memory for LIST_USER, so
//! a listing reads neither the `by_user` table nor anything else on disk
//! from a network thread. Rebuilt at start from `by_user`, and published by
//! the writer after each commit, like the cache and the TTL index; so, like
//! them, it shows only what is logged.

use std::collections::{HashMap, HashSet};

use parking_lot::RwLock;
use sessiond_protocol::SessionKey;

#[derive(Debug, Default)]
pub struct OwnerIndex {
    map: RwLock<HashMap<String, HashSet<SessionKey>>>,
}

impl OwnerIndex {
    /// The sessions `user` owns, live or expired and not yet swept.
    pub fn keys(&self, user: &str) -> Vec<SessionKey> {
        self.map.read().get(user).map(|keys| keys.iter().copied().collect()).unwrap_or_default()
    }

    /// Publishes a committed change of the owner of `key` (`None`: none, or
    /// no session).
    pub fn publish(&self, key: SessionKey, old: Option<&str>, new: Option<&str>) {
        if old == new {
            return;
        }
        let mut map = self.map.write();
        if let Some(old) = old {
            if let Some(keys) = map.get_mut(old) {
                keys.remove(&key);
                if keys.is_empty() {
                    map.remove(old);
                }
            }
        }
        if let Some(new) = new {
            map.entry(new.to_owned()).or_default().insert(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_follow_published_changes_and_empty_users_are_dropped() {
        let index = OwnerIndex::default();
        let (a, b) = (SessionKey::from_bytes([1; 32]), SessionKey::from_bytes([2; 32]));
        index.publish(a, None, Some("alice"));
        index.publish(b, None, Some("alice"));
        let mut keys = index.keys("alice");
        keys.sort_unstable_by_key(|k| *k.as_bytes());
        assert_eq!(keys, vec![a, b]);
        index.publish(a, Some("alice"), Some("bob"));
        assert_eq!((index.keys("alice"), index.keys("bob")), (vec![b], vec![a]));
        index.publish(b, Some("alice"), None);
        assert!(index.keys("alice").is_empty());
        assert!(index.map.read().get("alice").is_none(), "no empty set is kept");
    }
}
