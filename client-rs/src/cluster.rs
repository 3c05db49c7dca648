//! Several daemons, one store: [`Cluster`] spreads sessions over a list of
//! daemons by rendezvous (highest-random-weight) hashing of the session key,
//! so adding or removing a daemon moves only that daemon's share.
//!
//! Placement is part of the protocol (PROTOCOL.md, "Several daemons"): every
//! client of one set of daemons, in any language, must compute the same
//! [`weight`], so it never changes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use parking_lot::Mutex;
use sessiond_protocol::{ErrorCode, Expiry, KEY_BYTES, Meta, SessionInfo, SessionKey, Write};
use tokio::sync::OnceCell;

use crate::api::{Created, Session, Written};
use crate::error::DaemonFailure;
use crate::{Client, Error, Options};

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bits. On its own its low bits mix poorly (bit 0 is the parity
/// of the input's bit 0s), hence [`mix64`] after it.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME))
}

/// The finaliser of splitmix64 (Stafford's variant 13): a bijection on u64
/// in which every input bit flips each output bit with probability close
/// to 1/2. Being a bijection, two daemons with different seeds never give a
/// key the same weight, so placement needs no tie-break.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A daemon's seed: its id hashed and mixed, so ids that differ in one
/// character (`sessiond-1`, `sessiond-2`) still get unrelated weights.
pub fn daemon_seed(daemon_id: &str) -> u64 {
    mix64(fnv1a64(daemon_id.as_bytes()))
}

/// The weight of `key` on the daemon `daemon_id`; the key lives on the
/// daemon where it is highest. The key is hashed as its text (UTF-8), as
/// clients send it.
///
/// Why this function: it is two lines in any language (the Python client
/// computes it too) and needs no dependency; FNV-1a takes the key's whole
/// text into 64 bits and the splitmix64 finaliser spreads them, which is
/// what placement needs (an even spread over daemons, and weights of one
/// key on two daemons that are as good as independent: see the spread test
/// in `tests/tests/cluster.rs`). It is not keyed: placement is no secret,
/// and keys are random, so nobody can choose where a session goes.
pub fn weight(daemon_id: &str, key: &str) -> u64 {
    mix64(fnv1a64(key.as_bytes()) ^ daemon_seed(daemon_id))
}

/// The index in `daemon_ids` of the daemon `key` lives on; `None` if there
/// are no daemons. Ids must be distinct.
pub fn route<S: AsRef<str>>(daemon_ids: &[S], key: &str) -> Option<usize> {
    highest(daemon_ids.iter().map(|id| daemon_seed(id.as_ref())), key)
}

fn highest(seeds: impl Iterator<Item = u64>, key: &str) -> Option<usize> {
    let hash = fnv1a64(key.as_bytes());
    seeds.enumerate().max_by_key(|&(_, seed)| mix64(hash ^ seed)).map(|(i, _)| i)
}

/// The id a daemon has when the configuration gives none: where it is
/// reached, as a URL (`unix:/run/sessiond/sessiond.sock`,
/// `tls://host:port`). Renaming a daemon moves its share, so an id, once
/// used, stays: give ids explicitly if addresses may change.
pub fn default_daemon_id(options: &Options) -> String {
    options.endpoint.to_string()
}

/// An async client of several daemons that share the sessions out between
/// them: each session lives on the daemon its key routes to (see
/// [`route`]). Cheap to clone; clones share the connections.
///
/// A daemon is connected to on first use, and reconnected to after it
/// restarts, so a daemon that is down only fails the calls that need it:
/// the sessions it holds, and the operations that ask every daemon, which
/// then return [`Error::Incomplete`] rather than a partial answer.
///
/// Every daemon must speak protocol version 2 (CREATE_AS, CYCLE_AS).
/// Transfer tokens and sealed cookies are not spread: use a plain
/// [`Client`] of one daemon for them (see PROTOCOL.md).
#[derive(Debug, Clone)]
pub struct Cluster {
    members: Arc<[Member<OnceCell<Client>>]>,
}

/// One daemon of a cluster, and its client once connected (`C`: a cell for
/// the async client, a slot for the blocking one).
#[derive(Debug)]
struct Member<C> {
    id: String,
    seed: u64,
    options: Options,
    client: C,
}

impl Member<OnceCell<Client>> {
    async fn client(&self) -> Result<Client, Error> {
        // A failed connect leaves the cell empty: the next call tries again.
        self.client.get_or_try_init(|| Client::connect(self.options.clone())).await.cloned()
    }
}

/// The members of a cluster configuration, checked: at least one, ids
/// non-empty and with distinct seeds (so no key has a tie).
fn members<I, S, C: Default>(daemons: I) -> Result<Vec<Member<C>>, Error>
where
    I: IntoIterator<Item = (S, Options)>,
    S: Into<String>,
{
    let members: Vec<Member<C>> = daemons
        .into_iter()
        .map(|(id, options)| {
            let id = id.into();
            Member { seed: daemon_seed(&id), id, options, client: C::default() }
        })
        .collect();
    if members.is_empty() {
        return Err(Error::Config("a cluster needs at least one daemon".into()));
    }
    for (i, a) in members.iter().enumerate() {
        if a.id.is_empty() {
            return Err(Error::Config("a daemon id is empty".into()));
        }
        if let Some(b) = members[i + 1..].iter().find(|b| b.seed == a.seed) {
            return Err(Error::Config(if a.id == b.id {
                format!("daemon id {:?} is given twice", a.id)
            } else {
                format!("daemon ids {:?} and {:?} hash alike; rename one", a.id, b.id)
            }));
        }
    }
    Ok(members)
}

/// The index of the member `key` lives on.
fn home<C>(members: &[Member<C>], key: &str) -> usize {
    // `members` refuses an empty cluster.
    highest(members.iter().map(|m| m.seed), key).unwrap_or(0)
}

/// A fresh key that routes to member `home`.
fn draw_key_for<C>(members: &[Member<C>], home_index: usize) -> Result<String, Error> {
    for _ in 0..DRAWS_PER_DAEMON * members.len() {
        let key = random_key()?;
        if home(members, &key) == home_index {
            return Ok(key);
        }
    }
    Err(Error::Random(format!("no key routed to daemon {:?}", members[home_index].id)))
}

/// A user's sessions from every daemon, in one daemon's order: most
/// recently active first, then by handle.
fn merge(lists: Vec<Vec<SessionInfo>>) -> Vec<SessionInfo> {
    let mut sessions: Vec<SessionInfo> = lists.into_iter().flatten().collect();
    sessions.sort_by(|a, b| b.last_active_ms.cmp(&a.last_active_ms).then_with(|| a.handle.cmp(&b.handle)));
    sessions
}

/// Draws at most this many keys per daemon when looking for one that
/// routes to a given daemon: each draw succeeds with probability 1/N, so
/// running out means a broken random source, not bad luck (e^-64).
const DRAWS_PER_DAEMON: usize = 64;

impl Cluster {
    /// A cluster of the daemons given as (id, options). Ids are the names
    /// placement hashes: keep them stable, and the same in every client.
    /// Nothing is connected yet.
    pub fn new<I, S>(daemons: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = (S, Options)>,
        S: Into<String>,
    {
        Ok(Self { members: members(daemons)?.into() })
    }

    /// A cluster whose daemons are named by [`default_daemon_id`].
    pub fn from_options(daemons: impl IntoIterator<Item = Options>) -> Result<Self, Error> {
        Self::new(daemons.into_iter().map(|o| (default_daemon_id(&o), o)))
    }

    /// The daemons' ids, in configuration order.
    pub fn daemon_ids(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|m| m.id.as_str())
    }

    /// The id of the daemon `key` lives on.
    pub fn daemon_for(&self, key: &str) -> &str {
        &self.members[self.home(key)].id
    }

    /// The client of the daemon `key` lives on, for what `Cluster` does not
    /// offer itself.
    pub async fn client_for(&self, key: &str) -> Result<Client, Error> {
        self.members[self.home(key)].client().await
    }

    /// The client of one daemon, by id (its counters, a sweep).
    pub async fn client(&self, daemon_id: &str) -> Result<Client, Error> {
        match self.members.iter().find(|m| m.id == daemon_id) {
            Some(m) => m.client().await,
            None => Err(Error::Config(format!("no daemon {daemon_id:?} in this cluster"))),
        }
    }

    fn home(&self, key: &str) -> usize {
        home(&self.members, key)
    }

    fn draw_key_for(&self, home: usize) -> Result<String, Error> {
        draw_key_for(&self.members, home)
    }

    /// Checks that every daemon answers.
    pub async fn ping(&self) -> Result<(), Error> {
        let answers = self.ask_all(|c| async move { c.ping().await }).await;
        let (_, failed) = split(&self.members, answers)?;
        if failed.is_empty() { Ok(()) } else { Err(Error::Incomplete { failed, revoked: None }) }
    }

    /// Creates a session holding `fields`, under a key drawn here: the
    /// daemon it routes to creates it (CREATE_AS).
    pub async fn create<K: Into<String>, V: Into<Vec<u8>>>(
        &self,
        fields: impl IntoIterator<Item = (K, V)>,
        expiry: Expiry,
    ) -> Result<Created, Error> {
        self.create_with_meta(fields, expiry, Meta::default()).await
    }

    /// Creates a session with an owner, IP and user agent.
    pub async fn create_with_meta<K: Into<String>, V: Into<Vec<u8>>>(
        &self,
        fields: impl IntoIterator<Item = (K, V)>,
        expiry: Expiry,
        meta: Meta,
    ) -> Result<Created, Error> {
        // Not retried on KEY_EXISTS: a repeated 256-bit draw means the
        // random source is broken, and that must be seen.
        let key = random_key()?;
        self.create_as(&key, fields, expiry, meta).await
    }

    /// Creates a session under a key the caller drew (see
    /// `Client::create_as`), on the daemon the key routes to.
    pub async fn create_as<K: Into<String>, V: Into<Vec<u8>>>(
        &self,
        key: &str,
        fields: impl IntoIterator<Item = (K, V)>,
        expiry: Expiry,
        meta: Meta,
    ) -> Result<Created, Error> {
        self.client_for(key).await?.create_as(key, fields, expiry, meta).await
    }

    /// Reads a session without counting it as activity.
    pub async fn get(&self, key: &str) -> Result<Session, Error> {
        self.client_for(key).await?.get(key).await
    }

    /// Reads a session and counts the read as activity.
    pub async fn get_touch(&self, key: &str) -> Result<Session, Error> {
        self.client_for(key).await?.get_touch(key).await
    }

    /// Reads a session comparing the caller's IP and user agent (see
    /// `Client::get_from`).
    pub async fn get_from(
        &self,
        key: &str,
        touch: bool,
        ip: Option<&str>,
        user_agent: Option<&str>,
    ) -> Result<Session, Error> {
        self.client_for(key).await?.get_from(key, touch, ip, user_agent).await
    }

    pub async fn exists(&self, key: &str) -> Result<bool, Error> {
        self.client_for(key).await?.exists(key).await
    }

    /// Replaces all of a session's data (see `Client::replace`).
    pub async fn replace<K: Into<String>, V: Into<Vec<u8>>>(
        &self,
        key: &str,
        fields: impl IntoIterator<Item = (K, V)>,
        expected_version: Option<u64>,
    ) -> Result<Written, Error> {
        self.client_for(key).await?.replace(key, fields, expected_version).await
    }

    /// Sets and removes fields atomically (see `Client::patch`).
    pub async fn patch<K: Into<String>, V: Into<Vec<u8>>>(
        &self,
        key: &str,
        set: impl IntoIterator<Item = (K, V)>,
        remove: impl IntoIterator<Item = String>,
        expected_version: Option<u64>,
    ) -> Result<Written, Error> {
        self.client_for(key).await?.patch(key, set, remove, expected_version).await
    }

    /// Data, expiry policy and owner in one atomic write (see `Client::write`).
    pub async fn write(&self, write: Write) -> Result<Written, Error> {
        self.client_for(&write.key).await?.write(write).await
    }

    /// Counts activity without reading or changing data.
    pub async fn touch(&self, key: &str) -> Result<Written, Error> {
        self.client_for(key).await?.touch(key).await
    }

    /// Deletes a session (logout). Returns whether it existed.
    pub async fn delete(&self, key: &str) -> Result<bool, Error> {
        self.client_for(key).await?.delete(key).await
    }

    /// Replaces the session's expiry policy.
    pub async fn set_expiry(&self, key: &str, expiry: Expiry) -> Result<Written, Error> {
        self.client_for(key).await?.set_expiry(key, expiry).await
    }

    /// Records the IP and user agent a session is used from.
    pub async fn set_meta(&self, key: &str, ip: Option<&str>, user_agent: Option<&str>) -> Result<Written, Error> {
        self.client_for(key).await?.set_meta(key, ip, user_agent).await
    }

    /// Moves the session to a new key in one atomic step (login); the new
    /// key is drawn here so that it routes to the daemon the session is on
    /// (CYCLE_AS), and the old key stops working at once.
    pub async fn cycle(&self, key: &str) -> Result<Created, Error> {
        self.cycle_to(key, None).await
    }

    /// Login: a new key, and `user` as the owner, in one atomic step.
    pub async fn cycle_bind(&self, key: &str, user: &str) -> Result<Created, Error> {
        self.cycle_to(key, Some(user)).await
    }

    async fn cycle_to(&self, key: &str, bind_user: Option<&str>) -> Result<Created, Error> {
        let home = self.home(key);
        let new_key = self.draw_key_for(home)?;
        self.members[home].client().await?.cycle_as(key, &new_key, bind_user).await
    }

    /// A user's live sessions on every daemon, most recently active first
    /// (then by handle, as one daemon orders them). If a daemon does not
    /// answer, the listing is [`Error::Incomplete`], naming it.
    pub async fn list_user(&self, user: &str) -> Result<Vec<SessionInfo>, Error> {
        let answers = self.ask_all(|c| async move { c.list_user(user).await }).await;
        let (lists, failed) = split(&self.members, answers)?;
        if !failed.is_empty() {
            return Err(Error::Incomplete { failed, revoked: None });
        }
        Ok(merge(lists))
    }

    /// Ends the session with this handle, wherever it lives; returns 1 if
    /// it was live, else 0. A handle lives on one daemon, so finding it is
    /// an answer even if another daemon is down; not finding it then is
    /// [`Error::Incomplete`].
    pub async fn revoke(&self, handle: &str) -> Result<u64, Error> {
        let answers = self.ask_all(|c| async move { c.revoke(handle).await }).await;
        let (counts, failed) = split(&self.members, answers)?;
        let count = counts.iter().sum();
        if count > 0 || failed.is_empty() { Ok(count) } else { Err(Error::Incomplete { failed, revoked: Some(0) }) }
    }

    /// Ends all of a user's sessions on every daemon, or all but the one
    /// with handle `keep`; returns how many ended. If a daemon does not
    /// answer, the result is [`Error::Incomplete`] with how many the others
    /// ended: the user may still have sessions there, so call again once
    /// it is back.
    pub async fn revoke_user(&self, user: &str, keep: Option<&str>) -> Result<u64, Error> {
        let answers = self.ask_all(|c| async move { c.revoke_user(user, keep).await }).await;
        let (counts, failed) = split(&self.members, answers)?;
        let count = counts.iter().sum();
        if failed.is_empty() { Ok(count) } else { Err(Error::Incomplete { failed, revoked: Some(count) }) }
    }

    /// Runs `op` against every daemon at once; answers in member order.
    async fn ask_all<T, F, Fut>(&self, op: F) -> Vec<Result<T, Error>>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let op = &op;
        join_all(self.members.iter().map(|m| async move { op(m.client().await?).await }).collect()).await
    }
}

/// [`Cluster`] for code that is not async: the same placement, keys and
/// errors, over blocking clients. Operations that ask every daemon ask
/// them at once, one thread each, so a listing takes as long as the
/// slowest daemon, not the sum.
#[derive(Debug, Clone)]
pub struct BlockingCluster {
    members: Arc<[Member<BlockingSlot>]>,
}

/// The blocking client of one daemon once connected. Not kept while
/// connecting fails, so the next call tries again.
type BlockingSlot = Mutex<Option<Arc<crate::blocking::Client>>>;

impl Member<BlockingSlot> {
    fn blocking_client(&self) -> Result<Arc<crate::blocking::Client>, Error> {
        let mut slot = self.client.lock();
        if let Some(client) = slot.as_ref() {
            return Ok(Arc::clone(client));
        }
        let client = Arc::new(crate::blocking::Client::connect(self.options.clone())?);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }
}

impl BlockingCluster {
    /// As [`Cluster::new`]; nothing is connected yet.
    pub fn new<I, S>(daemons: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = (S, Options)>,
        S: Into<String>,
    {
        Ok(Self { members: members(daemons)?.into() })
    }

    /// The daemons' ids, in configuration order.
    pub fn daemon_ids(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|m| m.id.as_str())
    }

    /// The id of the daemon `key` lives on.
    pub fn daemon_for(&self, key: &str) -> &str {
        &self.members[home(&self.members, key)].id
    }

    /// The client of the daemon `key` lives on.
    pub fn client_for(&self, key: &str) -> Result<Arc<crate::blocking::Client>, Error> {
        self.members[home(&self.members, key)].blocking_client()
    }

    /// As [`Cluster::create`].
    pub fn create<K: Into<String>, V: Into<Vec<u8>>>(
        &self,
        fields: impl IntoIterator<Item = (K, V)>,
        expiry: Expiry,
    ) -> Result<Created, Error> {
        self.create_with_meta(fields, expiry, Meta::default())
    }

    /// As [`Cluster::create_with_meta`].
    pub fn create_with_meta<K: Into<String>, V: Into<Vec<u8>>>(
        &self,
        fields: impl IntoIterator<Item = (K, V)>,
        expiry: Expiry,
        meta: Meta,
    ) -> Result<Created, Error> {
        let key = random_key()?;
        self.client_for(&key)?.create_as(&key, fields, expiry, meta)
    }

    pub fn get(&self, key: &str) -> Result<Session, Error> {
        self.client_for(key)?.get(key)
    }

    pub fn get_touch(&self, key: &str) -> Result<Session, Error> {
        self.client_for(key)?.get_touch(key)
    }

    pub fn exists(&self, key: &str) -> Result<bool, Error> {
        self.client_for(key)?.exists(key)
    }

    pub fn replace<K: Into<String>, V: Into<Vec<u8>>>(
        &self,
        key: &str,
        fields: impl IntoIterator<Item = (K, V)>,
        expected_version: Option<u64>,
    ) -> Result<Written, Error> {
        self.client_for(key)?.replace(key, fields, expected_version)
    }

    pub fn patch<K: Into<String>, V: Into<Vec<u8>>>(
        &self,
        key: &str,
        set: impl IntoIterator<Item = (K, V)>,
        remove: impl IntoIterator<Item = String>,
        expected_version: Option<u64>,
    ) -> Result<Written, Error> {
        self.client_for(key)?.patch(key, set, remove, expected_version)
    }

    pub fn write(&self, write: Write) -> Result<Written, Error> {
        self.client_for(&write.key)?.write(write)
    }

    pub fn touch(&self, key: &str) -> Result<Written, Error> {
        self.client_for(key)?.touch(key)
    }

    pub fn delete(&self, key: &str) -> Result<bool, Error> {
        self.client_for(key)?.delete(key)
    }

    pub fn set_expiry(&self, key: &str, expiry: Expiry) -> Result<Written, Error> {
        self.client_for(key)?.set_expiry(key, expiry)
    }

    /// As [`Cluster::cycle`]: the new key routes to the session's daemon.
    pub fn cycle(&self, key: &str) -> Result<Created, Error> {
        self.cycle_to(key, None)
    }

    /// As [`Cluster::cycle_bind`].
    pub fn cycle_bind(&self, key: &str, user: &str) -> Result<Created, Error> {
        self.cycle_to(key, Some(user))
    }

    fn cycle_to(&self, key: &str, bind_user: Option<&str>) -> Result<Created, Error> {
        let home = home(&self.members, key);
        let new_key = draw_key_for(&self.members, home)?;
        self.members[home].blocking_client()?.cycle_as(key, &new_key, bind_user)
    }

    /// As [`Cluster::list_user`].
    pub fn list_user(&self, user: &str) -> Result<Vec<SessionInfo>, Error> {
        let (lists, failed) = split(&self.members, self.ask_all(|c| c.list_user(user)))?;
        if !failed.is_empty() {
            return Err(Error::Incomplete { failed, revoked: None });
        }
        Ok(merge(lists))
    }

    /// As [`Cluster::revoke`].
    pub fn revoke(&self, handle: &str) -> Result<u64, Error> {
        let (counts, failed) = split(&self.members, self.ask_all(|c| c.revoke(handle)))?;
        let count = counts.iter().sum();
        if count > 0 || failed.is_empty() { Ok(count) } else { Err(Error::Incomplete { failed, revoked: Some(0) }) }
    }

    /// As [`Cluster::revoke_user`].
    pub fn revoke_user(&self, user: &str, keep: Option<&str>) -> Result<u64, Error> {
        let (counts, failed) = split(&self.members, self.ask_all(|c| c.revoke_user(user, keep)))?;
        let count = counts.iter().sum();
        if failed.is_empty() { Ok(count) } else { Err(Error::Incomplete { failed, revoked: Some(count) }) }
    }

    /// Runs `op` against every daemon, one scoped thread each; answers in
    /// member order.
    fn ask_all<T: Send>(
        &self,
        op: impl Fn(&crate::blocking::Client) -> Result<T, Error> + Sync,
    ) -> Vec<Result<T, Error>> {
        let op = &op;
        std::thread::scope(|scope| {
            let threads: Vec<_> =
                self.members.iter().map(|m| scope.spawn(move || m.blocking_client().and_then(|c| op(&c)))).collect();
            threads
                .into_iter()
                .map(|t| t.join().unwrap_or_else(|_| Err(Error::Protocol("a fan-out thread panicked".into()))))
                .collect()
        })
    }
}

/// Splits a fan-out's answers into the values and the daemons that failed.
/// An error the request itself caused (a malformed user id or handle)
/// every daemon would give alike: it is returned as it is.
fn split<T, C>(members: &[Member<C>], answers: Vec<Result<T, Error>>) -> Result<(Vec<T>, Vec<DaemonFailure>), Error> {
    let mut values = Vec::with_capacity(answers.len());
    let mut failed = Vec::new();
    for (member, answer) in members.iter().zip(answers) {
        match answer {
            Ok(v) => values.push(v),
            Err(e) if matches!(e.code(), Some(ErrorCode::BadRequest | ErrorCode::TooLarge | ErrorCode::BadKey)) => {
                return Err(e);
            }
            Err(error) => failed.push(DaemonFailure { daemon: member.id.clone(), error }),
        }
    }
    Ok((values, failed))
}

/// Polls every future until all are done, in the caller's task: the
/// requests go out together without spawning (so nothing needs to be
/// `'static`), and dropping the call drops them all.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(v) => *output = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending { Poll::Pending } else { Poll::Ready(()) }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// A new session key as the daemon makes them: 32 bytes from the OS
/// CSPRNG, 43 characters of base64url.
fn random_key() -> Result<String, Error> {
    let mut bytes = [0u8; KEY_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
    Ok(SessionKey::from_bytes(bytes).encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector of PROTOCOL.md, "Several daemons".
    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

    #[test]
    fn the_documented_vector_holds() {
        assert_eq!(fnv1a64(KEY.as_bytes()), 0x5707_4e4b_165e_2052);
        assert_eq!(daemon_seed("daemon-a"), 0xe6d8_c5a7_e9c9_9066);
        assert_eq!(weight("daemon-a", KEY), 0x8313_3163_8158_547e);
        assert_eq!(weight("daemon-b", KEY), 0xfd41_1ccb_10e1_8954);
        assert_eq!(weight("daemon-c", KEY), 0xac54_984d_3a5f_63f6);
        assert_eq!(route(&["daemon-a", "daemon-b", "daemon-c"], KEY), Some(1));
        assert_eq!(route::<&str>(&[], KEY), None);
    }

    #[test]
    fn ids_must_be_distinct_and_a_cluster_not_empty() {
        let o = || Options::new("/nonexistent/sessiond.sock");
        assert!(matches!(Cluster::new(Vec::<(String, Options)>::new()), Err(Error::Config(_))));
        assert!(matches!(Cluster::new([("a", o()), ("a", o())]), Err(Error::Config(_))));
        assert!(matches!(Cluster::new([("", o())]), Err(Error::Config(_))));
        let cluster = Cluster::new([("a", o()), ("b", o())]).unwrap();
        assert_eq!(cluster.daemon_ids().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn keys_drawn_for_a_daemon_route_to_it() {
        let o = || Options::new("/nonexistent/sessiond.sock");
        let cluster = Cluster::new([("a", o()), ("b", o()), ("c", o())]).unwrap();
        for home in 0..3 {
            for _ in 0..50 {
                let key = cluster.draw_key_for(home).unwrap();
                assert_eq!(key.len(), 43);
                assert_eq!(cluster.home(&key), home);
                assert_eq!(route(&["a", "b", "c"], &key), Some(home));
            }
        }
    }

    #[test]
    fn the_blocking_cluster_places_keys_as_the_async_one_and_names_daemons_down() {
        let o = |p: &str| Options::new(format!("/nonexistent/{p}.sock"));
        let blocking = BlockingCluster::new([("a", o("a")), ("b", o("b")), ("c", o("c"))]).unwrap();
        let cluster = Cluster::new([("a", o("a")), ("b", o("b")), ("c", o("c"))]).unwrap();
        for _ in 0..100 {
            let key = random_key().unwrap();
            assert_eq!(blocking.daemon_for(&key), cluster.daemon_for(&key));
        }
        match blocking.list_user("alice") {
            Err(Error::Incomplete { failed, revoked: None }) => {
                assert_eq!(failed.iter().map(|f| f.daemon.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
            }
            other => panic!("expected Incomplete, got {other:?}"),
        }
        assert!(matches!(blocking.revoke_user("alice", None), Err(Error::Incomplete { revoked: Some(0), .. })));
    }

    #[tokio::test]
    async fn a_fan_out_to_daemons_that_are_down_names_them() {
        let cluster =
            Cluster::new([("a", Options::new("/nonexistent/a.sock")), ("b", Options::new("/nonexistent/b.sock"))])
                .unwrap();
        match cluster.list_user("alice").await {
            Err(Error::Incomplete { failed, revoked: None }) => {
                let names: Vec<&str> = failed.iter().map(|f| f.daemon.as_str()).collect();
                assert_eq!(names, ["a", "b"]);
                assert!(failed.iter().all(|f| matches!(f.error, Error::Io(_))));
            }
            other => panic!("expected Incomplete, got {other:?}"),
        }
        match cluster.revoke_user("alice", None).await {
            Err(e @ Error::Incomplete { revoked: Some(0), .. }) => {
                let text = e.to_string();
                assert!(text.contains("a (") && text.contains("b (") && text.contains("0 revoked"), "{text}");
            }
            other => panic!("expected Incomplete, got {other:?}"),
        }
        assert!(matches!(cluster.get("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8").await, Err(Error::Io(_))));
    }
}
