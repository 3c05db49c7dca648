//! The typed operations: how each call becomes a request, and how its
//! answer becomes a result. Shared by the async and blocking clients.

use std::collections::BTreeMap;

use sessiond_protocol::{
    Create, Cycle, Empty, Expiry, Field, Get, KeyOnly, Meta, Patch, Replace, Request, SessionBody,
};

/// A session as read from the daemon. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub fields: BTreeMap<String, Vec<u8>>,
    /// Incremented by every change of data; use it for compare-and-set.
    pub version: u64,
    pub created_ms: u64,
    pub modified_ms: u64,
    pub last_active_ms: u64,
    pub expires_at_ms: u64,
    /// Milliseconds left at the time of the read, by the daemon's clock
    /// (Django's `get_expiry_age`).
    pub ttl_ms: u64,
    /// The policy. `Expiry::BrowserClose` means the cookie should be set
    /// without max-age (Django's `get_expire_at_browser_close`).
    pub expiry: Expiry,
    pub handle: String,
    pub user: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// `get_from` was given an IP other than the stored one.
    pub ip_changed: bool,
    /// `get_from` was given a user agent other than the stored one.
    pub user_agent_changed: bool,
}

impl From<SessionBody> for Session {
    fn from(b: SessionBody) -> Self {
        Self {
            fields: b.fields.into_iter().map(|f| (f.name, f.value)).collect(),
            version: b.version,
            created_ms: b.created_ms,
            modified_ms: b.modified_ms,
            last_active_ms: b.last_active_ms,
            expires_at_ms: b.expires_at_ms,
            ttl_ms: b.ttl_ms,
            expiry: b.expiry,
            handle: b.handle,
            user: b.user,
            ip: b.ip,
            user_agent: b.user_agent,
            ip_changed: b.ip_changed,
            user_agent_changed: b.user_agent_changed,
        }
    }
}

/// A new session key (from CREATE or CYCLE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The session key: 43 base64url characters, for the cookie.
    pub key: String,
    /// The public handle: safe to show, stable across `cycle`, used to
    /// revoke the session or to keep it when revoking the others.
    pub handle: String,
    pub version: u64,
    pub expires_at_ms: u64,
}

impl From<sessiond_protocol::Created> for Created {
    fn from(c: sessiond_protocol::Created) -> Self {
        Self { key: c.key, handle: c.handle, version: c.version, expires_at_ms: c.expires_at_ms }
    }
}

/// The result of a write to an existing session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub version: u64,
    pub expires_at_ms: u64,
}

impl From<sessiond_protocol::Written> for Written {
    fn from(w: sessiond_protocol::Written) -> Self {
        Self { version: w.version, expires_at_ms: w.expires_at_ms }
    }
}

pub(crate) fn to_fields<K: Into<String>, V: Into<Vec<u8>>>(fields: impl IntoIterator<Item = (K, V)>) -> Vec<Field> {
    fields.into_iter().map(|(k, v)| Field { name: k.into(), value: v.into() }).collect()
}

/// Unpacks the expected answer, or turns an ERROR into a typed error.
macro_rules! answer {
    ($response:expr, $variant:ident($v:ident) => $out:expr) => {
        match $response {
            sessiond_protocol::Response::$variant($v) => Ok($out),
            sessiond_protocol::Response::Error(e) => Err($crate::Error::from_wire(e.code, e.message)),
            other => Err($crate::Error::Protocol(format!("unexpected answer {}", other.name()))),
        }
    };
}
pub(crate) use answer;

pub(crate) fn ping() -> Request {
    Request::Ping(Empty {})
}

pub(crate) fn stats() -> Request {
    Request::Stats(Empty {})
}

pub(crate) fn sweep() -> Request {
    Request::Sweep(Empty {})
}

pub(crate) fn create(fields: Vec<Field>, expiry: Expiry, meta: Meta) -> Request {
    Request::Create(Create { fields, expiry, meta })
}

pub(crate) fn get(key: &str, touch: bool) -> Request {
    Request::Get(Get { key: key.to_owned(), touch, ip: None, user_agent: None })
}

pub(crate) fn sealed_cookie(value: &str, cookie_name: &str, host: &str) -> sessiond_protocol::SealedCookie {
    sessiond_protocol::SealedCookie {
        value: value.to_owned(),
        cookie_name: cookie_name.to_owned(),
        host: host.to_owned(),
    }
}

pub(crate) fn cycle(key: &str, bind_user: Option<&str>) -> Request {
    Request::Cycle(Cycle { key: key.to_owned(), bind_user: bind_user.map(str::to_owned) })
}

pub(crate) fn key_only(key: &str) -> KeyOnly {
    KeyOnly { key: key.to_owned() }
}

pub(crate) fn replace(key: &str, fields: Vec<Field>, expected_version: Option<u64>) -> Request {
    Request::Replace(Replace { key: key.to_owned(), fields, expected_version })
}

pub(crate) fn patch(key: &str, set: Vec<Field>, remove: Vec<String>, expected_version: Option<u64>) -> Request {
    Request::Patch(Patch { key: key.to_owned(), set, remove, expected_version })
}

/// Whether a request may be sent again after the connection broke: true
/// for reads, which change nothing.
pub(crate) fn is_idempotent(request: &Request) -> bool {
    matches!(
        request,
        Request::Ping(_) | Request::Stats(_) | Request::Exists(_) | Request::Get(Get { touch: false, .. })
    )
}

/// Defines the typed operations on a client type, given its `call` method;
/// used for the async client and, through `block_on`, the blocking one.
macro_rules! operations {
    ($($async_:ident)?; $($await_:tt)*) => {
        /// Checks that the daemon answers.
        pub $($async_)? fn ping(&self) -> Result<(), Error> {
            let r = self.call(api::ping())$($await_)*?;
            api::answer!(r, Pong(_b) => ())
        }

        /// The daemon's counters by name.
        pub $($async_)? fn stats(&self) -> Result<Vec<sessiond_protocol::Counter>, Error> {
            let r = self.call(api::stats())$($await_)*?;
            api::answer!(r, Stats(s) => s.counters)
        }

        /// Counters and histograms (latency by operation, commit batches):
        /// see `prometheus::render`.
        pub $($async_)? fn metrics(&self) -> Result<sessiond_protocol::StatsOk, Error> {
            let r = self.call(api::stats())$($await_)*?;
            api::answer!(r, Stats(s) => s)
        }

        /// Creates a session holding `fields`; the daemon chooses the key.
        pub $($async_)? fn create<K: Into<String>, V: Into<Vec<u8>>>(
            &self,
            fields: impl IntoIterator<Item = (K, V)>,
            expiry: Expiry,
        ) -> Result<Created, Error> {
            let r = self.call(api::create(api::to_fields(fields), expiry, sessiond_protocol::Meta::default()))$($await_)*?;
            api::answer!(r, Created(c) => c.into())
        }

        /// Creates a session with an owner, IP and user agent.
        pub $($async_)? fn create_with_meta<K: Into<String>, V: Into<Vec<u8>>>(
            &self,
            fields: impl IntoIterator<Item = (K, V)>,
            expiry: Expiry,
            meta: sessiond_protocol::Meta,
        ) -> Result<Created, Error> {
            let r = self.call(api::create(api::to_fields(fields), expiry, meta))$($await_)*?;
            api::answer!(r, Created(c) => c.into())
        }

        /// Reads a session as `get` or `get_touch` do, and compares the
        /// caller's IP and user agent with the stored ones: see
        /// `Session::ip_changed`. Nothing is enforced.
        pub $($async_)? fn get_from(
            &self,
            key: &str,
            touch: bool,
            ip: Option<&str>,
            user_agent: Option<&str>,
        ) -> Result<Session, Error> {
            let request = Request::Get(sessiond_protocol::Get {
                key: key.to_owned(),
                touch,
                ip: ip.map(str::to_owned),
                user_agent: user_agent.map(str::to_owned),
            });
            let r = self.call(request)$($await_)*?;
            api::answer!(r, Session(s) => s.into())
        }

        /// Updates the IP and user agent a session is used from; `None`
        /// keeps the stored value.
        pub $($async_)? fn set_meta(&self, key: &str, ip: Option<&str>, user_agent: Option<&str>) -> Result<Written, Error> {
            let request = Request::SetMeta(sessiond_protocol::SetMeta {
                key: key.to_owned(),
                ip: ip.map(str::to_owned),
                user_agent: user_agent.map(str::to_owned),
            });
            let r = self.call(request)$($await_)*?;
            api::answer!(r, MetaSet(w) => w.into())
        }

        /// A user's live sessions, most recently active first. Listings
        /// carry handles, never keys.
        pub $($async_)? fn list_user(&self, user: &str) -> Result<Vec<sessiond_protocol::SessionInfo>, Error> {
            let request = Request::ListUser(sessiond_protocol::ListUser { user: user.to_owned() });
            let r = self.call(request)$($await_)*?;
            api::answer!(r, UserSessions(u) => u.sessions)
        }

        /// One page of a user's sessions (protocol version 2): at most
        /// `limit` (0: the daemon's page size), after the cursor `after`, the
        /// `next` of the page before. `next` is `None` on the last page.
        pub $($async_)? fn list_user_page(
            &self,
            user: &str,
            limit: u32,
            after: Option<&str>,
        ) -> Result<sessiond_protocol::UserPage, Error> {
            let request = Request::ListUserPage(sessiond_protocol::ListUserPage {
                user: user.to_owned(),
                limit,
                after: after.map(str::to_owned),
            });
            let r = self.call(request)$($await_)*?;
            api::answer!(r, UserPage(p) => p)
        }

        /// Creates a session under a key the caller proposes (protocol
        /// version 2), for frameworks that draw their own session ids: 16
        /// to 64 bytes of base64url. A key some session already has is
        /// `Error::Server` with `ErrorCode::KeyExists`: draw another.
        pub $($async_)? fn create_as<K: Into<String>, V: Into<Vec<u8>>>(
            &self,
            key: &str,
            fields: impl IntoIterator<Item = (K, V)>,
            expiry: Expiry,
            meta: sessiond_protocol::Meta,
        ) -> Result<Created, Error> {
            let request = Request::CreateAs(sessiond_protocol::CreateAs {
                key: key.to_owned(),
                fields: api::to_fields(fields),
                expiry,
                meta,
            });
            let r = self.call(request)$($await_)*?;
            api::answer!(r, CreatedAs(c) => c.into())
        }

        /// Changes data, expiry policy and owner in one atomic write
        /// (protocol version 2): a framework's save in one round trip. A
        /// session deleted or expired meanwhile is `Error::NotFound`, never
        /// brought back.
        pub $($async_)? fn write(&self, write: sessiond_protocol::Write) -> Result<Written, Error> {
            let r = self.call(Request::Write(write))$($await_)*?;
            api::answer!(r, Written(w) => w.into())
        }

        /// Ends the session with this handle; returns 1 if it was live, else 0.
        pub $($async_)? fn revoke(&self, handle: &str) -> Result<u64, Error> {
            let request = Request::Revoke(sessiond_protocol::Revoke { handle: handle.to_owned() });
            let r = self.call(request)$($await_)*?;
            api::answer!(r, Revoked(n) => n.count)
        }

        /// Ends all of a user's sessions, or all but the one with handle
        /// `keep` (the caller's own), atomically; returns how many ended.
        pub $($async_)? fn revoke_user(&self, user: &str, keep: Option<&str>) -> Result<u64, Error> {
            let request = Request::RevokeUser(sessiond_protocol::RevokeUser {
                user: user.to_owned(),
                keep: keep.map(str::to_owned),
            });
            let r = self.call(request)$($await_)*?;
            api::answer!(r, UserRevoked(n) => n.count)
        }

        /// Reads a session without counting it as activity.
        pub $($async_)? fn get(&self, key: &str) -> Result<Session, Error> {
            let r = self.call(api::get(key, false))$($await_)*?;
            api::answer!(r, Session(s) => s.into())
        }

        /// Reads a session and counts the read as activity (sliding expiry).
        pub $($async_)? fn get_touch(&self, key: &str) -> Result<Session, Error> {
            let r = self.call(api::get(key, true))$($await_)*?;
            api::answer!(r, Session(s) => s.into())
        }

        pub $($async_)? fn exists(&self, key: &str) -> Result<bool, Error> {
            let r = self.call(Request::Exists(api::key_only(key)))$($await_)*?;
            api::answer!(r, Exists(e) => e.exists)
        }

        /// Replaces all of a session's data; with `expected_version`, only
        /// if the session is still at that version.
        pub $($async_)? fn replace<K: Into<String>, V: Into<Vec<u8>>>(
            &self,
            key: &str,
            fields: impl IntoIterator<Item = (K, V)>,
            expected_version: Option<u64>,
        ) -> Result<Written, Error> {
            let r = self.call(api::replace(key, api::to_fields(fields), expected_version))$($await_)*?;
            api::answer!(r, Replaced(w) => w.into())
        }

        /// Sets and removes fields atomically, leaving the others alone.
        pub $($async_)? fn patch<K: Into<String>, V: Into<Vec<u8>>>(
            &self,
            key: &str,
            set: impl IntoIterator<Item = (K, V)>,
            remove: impl IntoIterator<Item = String>,
            expected_version: Option<u64>,
        ) -> Result<Written, Error> {
            let request = api::patch(key, api::to_fields(set), remove.into_iter().collect(), expected_version);
            let r = self.call(request)$($await_)*?;
            api::answer!(r, Patched(w) => w.into())
        }

        /// Counts activity without reading or changing data.
        pub $($async_)? fn touch(&self, key: &str) -> Result<Written, Error> {
            let r = self.call(Request::Touch(api::key_only(key)))$($await_)*?;
            api::answer!(r, Touched(w) => w.into())
        }

        /// Deletes a session (logout). Returns whether it existed.
        pub $($async_)? fn delete(&self, key: &str) -> Result<bool, Error> {
            let r = self.call(Request::Delete(api::key_only(key)))$($await_)*?;
            api::answer!(r, Deleted(d) => d.existed)
        }

        /// Moves the session to a new key in one atomic step (what login
        /// does); the old key stops working at once.
        pub $($async_)? fn cycle(&self, key: &str) -> Result<Created, Error> {
            let r = self.call(api::cycle(key, None))$($await_)*?;
            api::answer!(r, Cycled(c) => c.into())
        }

        /// Moves the session to `new_key`, a key the caller drew (protocol
        /// version 2), in one atomic step; with `bind_user`, that user
        /// becomes the owner in the same step. The new key is checked as
        /// `create_as` checks its key: a key some session has is
        /// `Error::Server` with `ErrorCode::KeyExists`, and nothing changes.
        /// `Cluster::cycle` uses it to keep a session on its daemon.
        pub $($async_)? fn cycle_as(&self, key: &str, new_key: &str, bind_user: Option<&str>) -> Result<Created, Error> {
            let request = Request::CycleAs(sessiond_protocol::CycleAs {
                key: key.to_owned(),
                new_key: new_key.to_owned(),
                bind_user: bind_user.map(str::to_owned),
            });
            let r = self.call(request)$($await_)*?;
            api::answer!(r, CycledAs(c) => c.into())
        }

        /// Transfer tokens handing the session `key` from `source_host` to
        /// each destination (all other configured sites if empty). With
        /// `state_hash` (SHA-256 of the destination's state cookie), the
        /// token is bound to that browser; one destination only.
        pub $($async_)? fn issue_transfer(
            &self,
            key: &str,
            source_host: &str,
            destinations: &[&str],
            state_hash: Option<[u8; 32]>,
        ) -> Result<Vec<sessiond_protocol::HostToken>, Error> {
            let request = Request::IssueTransfer(sessiond_protocol::IssueTransfer {
                key: key.to_owned(),
                source_host: source_host.to_owned(),
                destinations: destinations.iter().map(|d| (*d).to_owned()).collect(),
                state_hash: state_hash.map(|h| h.to_vec()),
            });
            let r = self.call(request)$($await_)*?;
            api::answer!(r, TransferIssued(t) => t.tokens)
        }

        /// Redeems a transfer token at `host`: at most once, within its
        /// time window. Returns the key to set as this host's cookie and
        /// whether it changed. Any refusal is `Error::Server` with
        /// `ErrorCode::TokenRejected`, whatever the reason.
        pub $($async_)? fn redeem_transfer(
            &self,
            token: &str,
            host: &str,
            current_key: Option<&str>,
            always_replace: bool,
            state: Option<&[u8]>,
        ) -> Result<sessiond_protocol::Redeemed, Error> {
            let request = Request::RedeemTransfer(sessiond_protocol::RedeemTransfer {
                token: token.to_owned(),
                host: host.to_owned(),
                current_key: current_key.map(str::to_owned),
                always_replace,
                state: state.map(<[u8]>::to_vec),
            });
            let r = self.call(request)$($await_)*?;
            api::answer!(r, Redeemed(r) => r)
        }

        /// Seals session data into an encrypted cookie value bound to the
        /// cookie's name and host.
        pub $($async_)? fn seal<K: Into<String>, V: Into<Vec<u8>>>(
            &self,
            fields: impl IntoIterator<Item = (K, V)>,
            expiry: Expiry,
            user: Option<&str>,
            cookie_name: &str,
            host: &str,
        ) -> Result<sessiond_protocol::Sealed, Error> {
            let request = Request::Seal(sessiond_protocol::Seal {
                fields: api::to_fields(fields),
                expiry,
                user: user.map(str::to_owned),
                cookie_name: cookie_name.to_owned(),
                host: host.to_owned(),
            });
            let r = self.call(request)$($await_)*?;
            api::answer!(r, Sealed(s) => s)
        }

        /// Opens a sealed cookie; `reseal`, when present, is the value to set now.
        pub $($async_)? fn unseal(&self, value: &str, cookie_name: &str, host: &str) -> Result<sessiond_protocol::Unsealed, Error> {
            let r = self.call(Request::Unseal(api::sealed_cookie(value, cookie_name, host)))$($await_)*?;
            api::answer!(r, Unsealed(u) => u)
        }

        /// Revokes a sealed cookie's session: this value and every re-seal
        /// of it stop opening, durably.
        pub $($async_)? fn revoke_sealed(&self, value: &str, cookie_name: &str, host: &str) -> Result<(), Error> {
            let r = self.call(Request::RevokeSealed(api::sealed_cookie(value, cookie_name, host)))$($await_)*?;
            api::answer!(r, SealedRevoked(_n) => ())
        }

        /// Makes a fresh key the active one; tokens and cookies in flight
        /// keep opening under the old key for their lifetime.
        pub $($async_)? fn rotate_keys(&self) -> Result<u32, Error> {
            let r = self.call(Request::RotateKeys(sessiond_protocol::Empty {}))$($await_)*?;
            api::answer!(r, KeysRotated(k) => k.active_kid)
        }

        /// Login: moves the session to a new key and makes `user` its owner,
        /// in one atomic step. Data, handle, IP and user agent are kept.
        pub $($async_)? fn cycle_bind(&self, key: &str, user: &str) -> Result<Created, Error> {
            let r = self.call(api::cycle(key, Some(user)))$($await_)*?;
            api::answer!(r, Cycled(c) => c.into())
        }

        /// Replaces the session's expiry policy (Django's `set_expiry`).
        /// Unlike activity, this may bring the expiry earlier.
        pub $($async_)? fn set_expiry(&self, key: &str, expiry: Expiry) -> Result<Written, Error> {
            let request = Request::SetExpiry(sessiond_protocol::SetExpiry { key: key.to_owned(), expiry });
            let r = self.call(request)$($await_)*?;
            api::answer!(r, ExpirySet(w) => w.into())
        }

        /// Removes expired sessions now; returns how many. (The daemon also
        /// does this by itself, every `sweep_interval_ms`.)
        pub $($async_)? fn sweep(&self) -> Result<u64, Error> {
            let r = self.call(api::sweep())$($await_)*?;
            api::answer!(r, Swept(s) => s.removed)
        }
    };
}
pub(crate) use operations;
