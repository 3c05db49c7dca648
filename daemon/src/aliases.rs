//! The alias index: the extra keys a session gets when it is handed to
//! another site, each naming the session's own key. In memory for reads,
//! rebuilt at start from the `aliases` table, published by the writer after
//! each commit like the cache and the TTL index.

use std::collections::HashMap;

use parking_lot::RwLock;
use sessiond_protocol::SessionKey;

#[derive(Debug, Default)]
pub struct AliasIndex {
    map: RwLock<HashMap<SessionKey, SessionKey>>,
}

impl AliasIndex {
    /// The session's own key for `key`: itself unless it is an alias.
    pub fn resolve(&self, key: SessionKey) -> SessionKey {
        let map = self.map.read();
        map.get(&key).copied().unwrap_or(key)
    }

    /// Publishes a committed change: `key` now names `primary`, or nothing.
    pub fn publish(&self, alias: SessionKey, primary: Option<SessionKey>) {
        let mut map = self.map.write();
        match primary {
            Some(p) => map.insert(alias, p),
            None => map.remove(&alias),
        };
    }
}
