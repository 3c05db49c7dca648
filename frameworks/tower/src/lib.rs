//! A [tower-sessions] 0.15 session store backed by sessiond, for axum and
//! any other tower service.
//!
//! ```no_run
//! # async fn run() -> Result<(), sessiond_client::Error> {
//! use sessiond_tower::SessiondStore;
//! use tower_sessions_core::Expiry;
//! use time::Duration;
//!
//! let client = sessiond_client::Client::connect(sessiond_client::Options::new("/run/sessiond/sessiond.sock")).await?;
//! let store = SessiondStore::new(client).on_inactivity(Duration::hours(12)).with_owner_field("user_id");
//! // tower_sessions::SessionManagerLayer::new(store).with_expiry(Expiry::OnInactivity(Duration::hours(12)))
//! # let _ = (store, Expiry::OnSessionEnd);
//! # Ok(()) }
//! ```
//!
//! How a session maps onto the daemon:
//!
//! - **Ids.** tower-sessions draws the id (128 random bits, 22 characters);
//!   `create` proposes it with CREATE_AS, and draws again if a session
//!   already has it. No other operation can make a session, so a cookie
//!   carrying an id nobody created loads nothing and saves nothing.
//! - **Data.** Each top-level entry of `Record::data` is its own field,
//!   holding the entry's JSON. A save writes only the entries this request
//!   changed and removes only those it removed, against the record its load
//!   returned, in one WRITE: two requests of one session that change
//!   different entries both keep their change, where a store that writes
//!   the whole record keeps only the last. What it costs: the store keeps
//!   what each load returned until that request saves (bounded: see
//!   [`SessiondStore::with_base_limit`]), and two requests that change the
//!   same entry still end with the last one's value. A save whose load is
//!   no longer remembered writes the whole record.
//! - **Saves never resurrect.** A session deleted or expired since it was
//!   loaded stays gone: the save reports the miss in the log, as a
//!   conditional `SET XX` would, and the next request starts afresh.
//! - **Expiry.** A record's expiry date becomes an `At` policy, except that
//!   with [`SessiondStore::on_inactivity`] a date `max_age` from now
//!   becomes the daemon's sliding policy: every load then counts as
//!   activity and moves the expiry without rewriting the record, and a save
//!   that changed nothing writes nothing.
//!
//! [tower-sessions]: https://docs.rs/tower-sessions/0.15.0

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use sessiond_client::{Client, Error, ErrorCode, Expiry, Field, Meta, Owner, Write};
use time::{Duration, OffsetDateTime};
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::session_store::{self, ExpiredDeletion, SessionStore};

/// How many times `create` draws a new id after a collision. 128 random
/// bits collide never in practice; the bound keeps a broken generator from
/// looping forever.
const CREATE_ATTEMPTS: usize = 8;

/// A date within this much of `now + max_age` at a save is taken for
/// tower-sessions' `Expiry::OnInactivity(max_age)`: the session computes it
/// just before calling the store.
const SLIDING_TOLERANCE: Duration = Duration::seconds(5);

/// A tower-sessions store on a sessiond daemon. Cheap to clone; clones
/// share the connection and the remembered loads.
#[derive(Clone)]
pub struct SessiondStore {
    client: Client,
    sliding: Option<Duration>,
    owner_field: Option<Arc<str>>,
    bases: Arc<Mutex<Bases>>,
}

impl fmt::Debug for SessiondStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessiondStore")
            .field("sliding", &self.sliding)
            .field("owner_field", &self.owner_field)
            .finish_non_exhaustive()
    }
}

impl SessiondStore {
    pub fn new(client: Client) -> Self {
        Self { client, sliding: None, owner_field: None, bases: Arc::new(Mutex::new(Bases::new(BaseLimit::default()))) }
    }

    /// Give the `max_age` of the layer's `Expiry::OnInactivity(max_age)`:
    /// sessions saved with that expiry get the daemon's sliding policy, so
    /// each load counts as activity and moves the expiry without a write.
    /// (tower-sessions alone moves it only when it saves the session.) Keep
    /// the cookie in step with `SessionManagerLayer::with_always_save(true)`,
    /// which costs nothing more here: a save that changed nothing is not
    /// sent.
    pub fn on_inactivity(mut self, max_age: Duration) -> Self {
        self.sliding = Some(max_age);
        self
    }

    /// Makes the top-level entry `name` the session's owner: when a save
    /// sets it to a string or a number, the session becomes that user's,
    /// in the same write, and is listed and revoked with the user's other
    /// sessions (see `Client::list_user_page`, `Client::revoke_user`);
    /// removing it (or flushing the session) clears the owner.
    pub fn with_owner_field(mut self, name: &str) -> Self {
        self.owner_field = Some(name.into());
        self
    }

    /// Bounds the loads remembered for field-wise saves: `per_session`
    /// requests of one session at once, `total` in all, each for at most
    /// `max_age`. A save whose load was forgotten writes the whole record.
    pub fn with_base_limit(self, per_session: usize, total: usize, max_age: StdDuration) -> Self {
        *self.bases.lock() = Bases::new(BaseLimit { per_session, total, max_age });
        self
    }

    /// The client, for what a session store does not cover: a user's
    /// sessions, revoking them, transfer tokens.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The daemon's policy for an expiry date computed by tower-sessions.
    fn policy(&self, date: OffsetDateTime) -> Expiry {
        if let Some(max_age) = self.sliding {
            let offset = date - (OffsetDateTime::now_utc() + max_age);
            if offset.abs() <= SLIDING_TOLERANCE {
                return Expiry::IdleSecs(u32::try_from(max_age.whole_seconds()).unwrap_or(u32::MAX).max(1));
            }
        }
        let ms = date.unix_timestamp_nanos() / 1_000_000;
        Expiry::At(u64::try_from(ms).unwrap_or(0))
    }

    fn owner_of(&self, fields: &BTreeMap<String, Vec<u8>>) -> Option<String> {
        let value = fields.get(self.owner_field.as_deref()?)?;
        match serde_json::from_slice::<serde_json::Value>(value).ok()? {
            serde_json::Value::String(s) => Some(s),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// A record's data as the daemon stores it: each entry's JSON.
fn encode(record: &Record) -> session_store::Result<BTreeMap<String, Vec<u8>>> {
    record
        .data
        .iter()
        .map(|(name, value)| {
            let json = serde_json::to_vec(value).map_err(|e| session_store::Error::Encode(e.to_string()))?;
            Ok((name.clone(), json))
        })
        .collect()
}

fn backend(e: Error) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

/// Whether a save's policy is the loaded one, so the save need not send it.
fn same_policy(a: &Expiry, b: &Expiry) -> bool {
    match (a, b) {
        // An `At` date computed afresh on each save (`OnSessionEnd`: two
        // weeks from now) moves by the time between saves; a second is
        // not worth a write.
        (Expiry::At(x), Expiry::At(y)) => x.abs_diff(*y) < 1000,
        _ => a == b,
    }
}

#[async_trait]
impl SessionStore for SessiondStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let fields = encode(record)?;
        let expiry = self.policy(record.expiry_date);
        let meta = Meta { user: self.owner_of(&fields), ..Meta::default() };
        for _ in 0..CREATE_ATTEMPTS {
            let key = record.id.to_string();
            let attempt = self.client.create_as(&key, fields.clone(), expiry, meta.clone()).await;
            match attempt {
                Ok(_) => return Ok(()),
                Err(e) if e.code() == Some(ErrorCode::KeyExists) => record.id = Id::default(),
                Err(e) => return Err(backend(e)),
            }
        }
        Err(session_store::Error::Backend(format!("no free session id in {CREATE_ATTEMPTS} draws")))
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let fields = encode(record)?;
        let expiry = self.policy(record.expiry_date);
        let base = self.bases.lock().take_closest(record.id, &fields);
        let owner_now = self.owner_of(&fields);
        let mut write = Write {
            key: record.id.to_string(),
            set: Vec::new(),
            remove: Vec::new(),
            replace: false,
            expected_version: None,
            expiry: Some(expiry),
            owner: Owner::Keep,
        };
        match &base {
            Some(base) => {
                for (name, value) in &fields {
                    if base.fields.get(name) != Some(value) {
                        write.set.push(Field { name: name.clone(), value: value.clone() });
                    }
                }
                write.remove = base.fields.keys().filter(|name| !fields.contains_key(*name)).cloned().collect();
                if same_policy(&base.expiry, &expiry) {
                    write.expiry = None;
                }
                let owner_before = self.owner_of(&base.fields);
                if owner_now != owner_before {
                    write.owner = owner_now.map_or(Owner::Clear, Owner::Set);
                }
            }
            None => {
                write.replace = true;
                write.set = fields.iter().map(|(n, v)| Field { name: n.clone(), value: v.clone() }).collect();
                if self.owner_field.is_some() {
                    write.owner = owner_now.map_or(Owner::Clear, Owner::Set);
                }
            }
        }
        let unchanged = base.is_some()
            && write.set.is_empty()
            && write.remove.is_empty()
            && write.expiry.is_none()
            && write.owner == Owner::Keep;
        let result = if unchanged { Ok(()) } else { self.client.write(write).await.map(drop) };
        // Only loads are remembered: what a load saw is the stored state,
        // while after a field-wise write the stored state is the merge,
        // which this request never saw. (A request that saves twice writes
        // the whole record the second time.)
        match result {
            Ok(()) => Ok(()),
            Err(Error::NotFound) => {
                tracing::warn!(
                    "session ended (deleted, revoked or expired) before this request saved it; \
                     the save is dropped, and the session stays ended"
                );
                Ok(())
            }
            Err(e) => Err(backend(e)),
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let key = id.to_string();
        let session = match self.client.get_touch(&key).await {
            Ok(session) => session,
            Err(Error::NotFound) => return Ok(None),
            Err(e) => return Err(backend(e)),
        };
        let mut data = HashMap::with_capacity(session.fields.len());
        for (name, value) in &session.fields {
            let value = serde_json::from_slice(value)
                .map_err(|e| session_store::Error::Decode(format!("field {name:?} is not JSON: {e}")))?;
            data.insert(name.clone(), value);
        }
        let expires_ns = i128::from(session.expires_at_ms) * 1_000_000;
        let expiry_date = OffsetDateTime::from_unix_timestamp_nanos(expires_ns)
            .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        let base = Base { fields: session.fields, expiry: session.expiry, taken: Instant::now() };
        self.bases.lock().remember(*id, base);
        Ok(Some(Record { id: *id, data, expiry_date }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.bases.lock().forget(*id);
        self.client.delete(&id.to_string()).await.map(drop).map_err(backend)
    }
}

#[async_trait]
impl ExpiredDeletion for SessiondStore {
    /// Asks the daemon to sweep now. Not needed: the daemon sweeps by itself
    /// (every `sweep_interval_ms`), and an expired session is never loaded
    /// even before it is swept.
    async fn delete_expired(&self) -> session_store::Result<()> {
        self.client.sweep().await.map(drop).map_err(backend)
    }
}

/// What one load of a session saw: the base a later save of the same
/// request is compared with.
#[derive(Debug)]
struct Base {
    fields: BTreeMap<String, Vec<u8>>,
    expiry: Expiry,
    taken: Instant,
}

#[derive(Debug, Clone, Copy)]
struct BaseLimit {
    per_session: usize,
    total: usize,
    max_age: StdDuration,
}

impl Default for BaseLimit {
    fn default() -> Self {
        Self { per_session: 8, total: 16_384, max_age: StdDuration::from_secs(120) }
    }
}

/// The remembered loads, by session id, oldest first. A save cannot say
/// which load its record came from (tower-sessions gives the store only the
/// record), so it takes the remembered one its record differs from least:
/// the load of the same request, unless two requests made the same change.
#[derive(Debug)]
struct Bases {
    limit: BaseLimit,
    by_id: HashMap<Id, VecDeque<Base>>,
    count: usize,
}

impl Bases {
    fn new(limit: BaseLimit) -> Self {
        Self { limit, by_id: HashMap::new(), count: 0 }
    }

    fn remember(&mut self, id: Id, base: Base) {
        if self.limit.per_session == 0 || self.limit.total == 0 {
            return;
        }
        if self.count >= self.limit.total {
            self.prune();
        }
        let list = self.by_id.entry(id).or_default();
        if list.len() >= self.limit.per_session {
            list.pop_front();
            self.count -= 1;
        }
        list.push_back(base);
        self.count += 1;
    }

    fn take_closest(&mut self, id: Id, fields: &BTreeMap<String, Vec<u8>>) -> Option<Base> {
        let list = self.by_id.get_mut(&id)?;
        let now = Instant::now();
        let before = list.len();
        list.retain(|b| now.duration_since(b.taken) <= self.limit.max_age);
        let distance = |b: &Base| {
            let changed = fields.iter().filter(|(n, v)| b.fields.get(*n) != Some(*v)).count();
            let removed = b.fields.keys().filter(|n| !fields.contains_key(*n)).count();
            changed + removed
        };
        // The newest among equals: its values are the freshest.
        let best = (0..list.len()).rev().min_by_key(|&i| distance(&list[i]));
        let base = best.and_then(|i| list.remove(i));
        let after = list.len();
        if list.is_empty() {
            self.by_id.remove(&id);
        }
        self.count -= before - after;
        base
    }

    fn forget(&mut self, id: Id) {
        if let Some(list) = self.by_id.remove(&id) {
            self.count -= list.len();
        }
    }

    /// Drops what is too old; if that is not enough, the oldest half.
    fn prune(&mut self) {
        let now = Instant::now();
        let max_age = self.limit.max_age;
        self.by_id.retain(|_, list| {
            list.retain(|b| now.duration_since(b.taken) <= max_age);
            !list.is_empty()
        });
        self.count = self.by_id.values().map(VecDeque::len).sum();
        if self.count >= self.limit.total {
            let mut taken: Vec<Instant> = self.by_id.values().flatten().map(|b| b.taken).collect();
            taken.sort_unstable();
            let cut = taken[taken.len() / 2];
            self.by_id.retain(|_, list| {
                list.retain(|b| b.taken > cut);
                !list.is_empty()
            });
            self.count = self.by_id.values().map(VecDeque::len).sum();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(pairs: &[(&str, &str)], age: StdDuration) -> Base {
        Base {
            fields: pairs.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect(),
            expiry: Expiry::Default,
            taken: Instant::now() - age,
        }
    }

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect()
    }

    #[test]
    fn a_save_takes_the_load_it_differs_from_least() {
        let mut bases = Bases::new(BaseLimit::default());
        let id = Id(7);
        bases.remember(id, base(&[("a", "1")], StdDuration::ZERO));
        bases.remember(id, base(&[("a", "1"), ("x", "1")], StdDuration::ZERO));
        // A request that loaded {a} and added y: one change from the first
        // load, two from the second.
        let taken = bases.take_closest(id, &fields(&[("a", "1"), ("y", "1")])).expect("a base");
        assert_eq!(taken.fields, fields(&[("a", "1")]));
        assert_eq!(bases.count, 1);
        let taken = bases.take_closest(id, &fields(&[("a", "1"), ("x", "1")])).expect("a base");
        assert_eq!(taken.fields, fields(&[("a", "1"), ("x", "1")]));
        assert_eq!(bases.count, 0);
        assert!(bases.by_id.is_empty());
        assert!(bases.take_closest(id, &fields(&[])).is_none());
    }

    #[test]
    fn remembered_loads_are_bounded_per_session_in_all_and_in_age() {
        let limit = BaseLimit { per_session: 2, total: 4, max_age: StdDuration::from_secs(60) };
        let mut bases = Bases::new(limit);
        for i in 0..3 {
            bases.remember(Id(1), base(&[("n", &i.to_string())], StdDuration::ZERO));
        }
        assert_eq!(bases.by_id[&Id(1)].len(), 2, "per session");
        for id in 2..10 {
            bases.remember(Id(id), base(&[], StdDuration::ZERO));
            assert!(bases.count <= 4, "in all: {}", bases.count);
        }
        assert_eq!(bases.count, bases.by_id.values().map(VecDeque::len).sum::<usize>());
        bases.remember(Id(20), base(&[], StdDuration::from_secs(61)));
        assert!(bases.take_closest(Id(20), &fields(&[])).is_none(), "too old to be a base");
        assert_eq!(bases.count, bases.by_id.values().map(VecDeque::len).sum::<usize>());
    }
}
