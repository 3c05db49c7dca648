//! Request to response: the one place where failures become error codes,
//! the writer's refusals included (`respond.rs`).
//!
//! Reads are answered at once from the cache or a read transaction, with
//! expiry taken from the TTL index. Touches (GET with touch, TOUCH) are
//! answered at once too: they move the expiry in the index, and the writer
//! persists it lazily once it has moved by the touch granularity. Other
//! mutations are validated for syntax and static limits here, then queued to
//! the writer, which answers after its commit.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use sessiond_protocol::KeysRotated;
use sessiond_protocol::{
    Create, ErrorCode, ExistsOk, Field, Get, Hello, HelloOk, KeyOnly, Limits, PROTOCOL_VERSION, PackedFields, Patch,
    Replace, Request, Response, SessionBodyRef, SessionHandle, SessionInfo, SessionKey, SetExpiry, StatsOk, Written,
};
use sessiond_protocol::{
    CreateAs, Cycle, CycleAs, ListUser, ListUserPage, MIN_PROTOCOL_VERSION, Owner, Revoke, RevokeUser, SetMeta,
    Settings, UserPage, UserSessions, Write,
};

use crate::aliases::AliasIndex;
use crate::answer::Refusal;
use crate::cache::Cache;
use crate::clock::Clock;
use crate::config;
use crate::geoip::GeoIp;
use crate::owners::OwnerIndex;
use crate::record::{ExpiryRules, Record, data_bytes};
use crate::reply::ReplyTo;
use crate::stats::Stats;
use crate::store::{Store, StoreError};
use crate::sweeper::SweepQueue;
use crate::tokens::Tokens;
use crate::ttl::TtlIndex;
use crate::writer::{Job, Meta, Op, SubmitError, WriteOp, WriterQueue};

pub use respond::respond;

/// What became of a request.
#[derive(Debug)]
pub enum Outcome {
    /// Answered at once.
    Now(Response),
    /// A GET answered at once, still as the cached record it was read from:
    /// the loop encodes it straight into the connection's output.
    Session(SessionAnswer),
    /// Queued to the writer, which will answer through the `ReplyTo`.
    Queued,
}

/// Everything the service works with. Built once, by `Engine::start`.
#[derive(Debug)]
pub struct Service {
    pub(crate) store: Arc<Store>,
    pub(crate) cache: Arc<Cache>,
    pub(crate) ttl: Arc<TtlIndex>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) writer: WriterQueue,
    pub(crate) sweeper: SweepQueue,
    pub(crate) limits: config::Limits,
    pub(crate) rules: ExpiryRules,
    pub(crate) users: config::UsersConfig,
    pub(crate) geoip: Option<GeoIp>,
    pub(crate) tokens: Arc<Tokens>,
    pub(crate) aliases: Arc<AliasIndex>,
    /// Announced in HELLO_OK from protocol version 2.
    pub(crate) settings: Settings,
    pub(crate) owners: Arc<OwnerIndex>,
}

/// A refused request: the code and message the client gets.
#[derive(Debug)]
struct Reject {
    code: ErrorCode,
    message: String,
}

impl From<Reject> for Response {
    fn from(r: Reject) -> Self {
        Response::error(r.code, r.message)
    }
}

fn reject(code: ErrorCode, message: impl Into<String>) -> Reject {
    Reject { code, message: message.into() }
}

impl Service {
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn wire_limits(&self) -> Limits {
        Limits {
            max_frame: self.limits.max_frame,
            max_session_bytes: self.limits.max_session_bytes,
            max_fields: self.limits.max_fields,
            max_field_name: self.limits.max_field_name,
            max_inflight: self.limits.max_inflight,
        }
    }

    /// Serves one request. `reply` is called only if the request is queued.
    pub fn handle(&self, request: Request, reply: impl FnOnce() -> ReplyTo) -> Outcome {
        Stats::add(&self.stats.requests, 1);
        let op = match self.route(request) {
            Ok(Routed::Now(response)) => return Outcome::Now(response),
            Ok(Routed::Session(answer)) => return Outcome::Session(answer),
            Ok(Routed::Write(op)) => op,
            Ok(Routed::Sweep) => {
                return match self.sweeper.request(reply()) {
                    true => Outcome::Queued,
                    false => Outcome::Now(Response::error(ErrorCode::Unavailable, "the daemon is shutting down")),
                };
            }
            Err(rejected) => return Outcome::Now(rejected.into()),
        };
        match self.writer.submit(Job { op, reply: reply() }) {
            Ok(()) => Outcome::Queued,
            Err(SubmitError::Full) => {
                Stats::add(&self.stats.writer_queue_full, 1);
                Outcome::Now(Response::error(ErrorCode::Busy, "the write queue is full; retry shortly"))
            }
            Err(SubmitError::Closed) => {
                Outcome::Now(Response::error(ErrorCode::Unavailable, "the daemon is shutting down"))
            }
        }
    }

    fn route(&self, request: Request) -> Result<Routed, Reject> {
        Ok(match request {
            Request::Hello(hello) => Routed::Now(self.hello(&hello)?),
            Request::Ping(_) => Routed::Now(Response::Pong(sessiond_protocol::Empty {})),
            Request::Stats(_) => Routed::Now(Response::Stats(self.stats_snapshot())),
            Request::Sweep(_) => Routed::Sweep,
            Request::Get(Get { key, touch, ip, user_agent }) => {
                let live = self.live(&self.key(&key)?, touch)?;
                // Reported, not enforced: a changed IP is common (mobile
                // networks), so the application decides what it means.
                let ip_changed = match ip {
                    Some(ip) => {
                        let ip = parse_ip(&ip)?;
                        live.record.ip.as_ref().is_some_and(|stored| *stored != ip)
                    }
                    None => false,
                };
                let user_agent_changed = user_agent.is_some_and(|ua| {
                    live.record.user_agent.as_ref().is_some_and(|stored| stored.as_str() != self.truncate_ua(&ua))
                });
                Routed::Session(SessionAnswer {
                    handle: SessionHandle::from_bytes(live.record.handle).encode(),
                    record: live.record,
                    now: live.now,
                    expires_at: live.expires_at,
                    last_active: live.last_active,
                    ip_changed,
                    user_agent_changed,
                })
            }
            Request::Exists(KeyOnly { key }) => {
                let exists = self.ttl.live(&self.key(&key)?, self.clock.now_ms()).is_some();
                Routed::Now(Response::Exists(ExistsOk { exists }))
            }
            Request::Touch(KeyOnly { key }) => {
                let live = self.live(&self.key(&key)?, true)?;
                Routed::Now(Response::Touched(Written { version: live.record.version, expires_at_ms: live.expires_at }))
            }
            Request::SetExpiry(SetExpiry { key, expiry }) => {
                Routed::Write(Op::SetExpiry { key: parse_key(&key)?, expiry })
            }
            Request::Create(Create { fields, expiry, meta }) => Routed::Write(Op::Create {
                fields: PackedFields::new(&self.check_fields(fields)?),
                expiry,
                meta: self.check_meta(meta)?,
                proposed: None,
            }),
            Request::CreateAs(CreateAs { key, fields, expiry, meta }) => Routed::Write(Op::Create {
                fields: PackedFields::new(&self.check_fields(fields)?),
                expiry,
                meta: self.check_meta(meta)?,
                proposed: Some((key.clone(), parse_key(&key)?)),
            }),
            Request::Write(write) => Routed::Write(self.check_write(write)?),
            Request::Replace(Replace { key, fields, expected_version }) => Routed::Write(Op::Replace {
                key: parse_key(&key)?,
                fields: PackedFields::new(&self.check_fields(fields)?),
                expected_version,
            }),
            Request::Patch(patch) => Routed::Write(self.check_patch(patch)?),
            Request::Delete(KeyOnly { key }) => Routed::Write(Op::Delete { key: parse_key(&key)? }),
            Request::Cycle(Cycle { key, bind_user }) => Routed::Write(Op::Cycle {
                key: parse_key(&key)?,
                bind_user: bind_user.map(|u| check_user(&u).map(|()| u)).transpose()?,
                proposed: None,
            }),
            Request::CycleAs(CycleAs { key, new_key, bind_user }) => Routed::Write(Op::Cycle {
                key: parse_key(&key)?,
                bind_user: bind_user.map(|u| check_user(&u).map(|()| u)).transpose()?,
                proposed: Some((new_key.clone(), parse_key(&new_key)?)),
            }),
            Request::SetMeta(SetMeta { key, ip, user_agent }) => Routed::Write(Op::SetMeta {
                key: parse_key(&key)?,
                ip: ip.as_deref().map(parse_ip).transpose()?,
                user_agent: user_agent.as_deref().map(|ua| self.truncate_ua(ua).to_owned()),
            }),
            Request::ListUser(ListUser { user }) => {
                check_user(&user)?;
                Routed::Now(Response::UserSessions(UserSessions { sessions: self.list_user(&user)? }))
            }
            Request::ListUserPage(ListUserPage { user, limit, after }) => {
                check_user(&user)?;
                Routed::Now(Response::UserPage(self.list_user_page(&user, limit, after.as_deref())?))
            }
            Request::Revoke(Revoke { handle }) => Routed::Write(Op::Revoke { handle: parse_handle(&handle)? }),
            Request::RevokeUser(RevokeUser { user, keep }) => {
                check_user(&user)?;
                Routed::Write(Op::RevokeUser { keep: keep.as_deref().map(parse_handle).transpose()?, user })
            }
            Request::RotateKeys(_) => {
                let kid = self.tokens.rotate(self.clock.now_ms()).map_err(|e| {
                    tracing::error!(error = %e, "key rotation failed");
                    reject(ErrorCode::Internal, "key rotation failed; the old keys stay in use")
                })?;
                tracing::info!(kid, "rotated the key ring");
                Routed::Now(Response::KeysRotated(KeysRotated { active_kid: kid }))
            }
            Request::IssueTransfer(issue) => Routed::Now(Response::TransferIssued(self.issue_transfer(issue)?)),
            Request::RedeemTransfer(redeem) => Routed::Write(self.redeem(redeem)?),
            Request::Seal(seal) => Routed::Now(Response::Sealed(self.seal(seal)?)),
            Request::Unseal(cookie) => Routed::Now(Response::Unsealed(self.unseal(&cookie)?)),
            Request::RevokeSealed(cookie) => {
                let claims = self.open_cookie(&cookie)?;
                Routed::Write(Op::RevokeSealed { sid: claims.sid, until_ms: claims.abs_exp_ms })
            }
        })
    }

    fn hello(&self, hello: &Hello) -> Result<Response, Reject> {
        if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&hello.version) {
            return Err(reject(
                ErrorCode::Unsupported,
                format!(
                    "protocol version {} is not supported; this daemon speaks {MIN_PROTOCOL_VERSION} to \
                     {PROTOCOL_VERSION}",
                    hello.version
                ),
            ));
        }
        Ok(Response::Hello(HelloOk {
            version: hello.version,
            server: format!("sessiond {}", env!("CARGO_PKG_VERSION")),
            limits: self.wire_limits(),
            settings: (hello.version >= 2).then(|| self.settings.clone()),
        }))
    }

    fn stats_snapshot(&self) -> StatsOk {
        self.stats.sessions.store(self.ttl.len() as u64, Ordering::Relaxed);
        self.stats.ttl_index_bytes.store(self.ttl.memory_bytes() as u64, Ordering::Relaxed);
        self.stats.cache_hits.store(self.cache.hits(), Ordering::Relaxed);
        self.stats.cache_misses.store(self.cache.misses(), Ordering::Relaxed);
        self.stats.cache_bytes.store(self.cache.memory_bytes() as u64, Ordering::Relaxed);
        StatsOk { counters: self.stats.snapshot(), histograms: self.stats.histograms() }
    }

    /// A live session, with its expiry and last activity as the TTL index
    /// has them; with `touch`, after recording the read as activity. The
    /// index decides liveness first, so unknown and expired keys never reach
    /// the cache or the database.
    fn live(&self, key: &SessionKey, touch: bool) -> Result<Live, Reject> {
        let now = self.clock.now_ms();
        let entry = self.ttl.live(key, now).ok_or_else(not_found)?;
        let record = self.committed(key)?.ok_or_else(not_found)?;
        if !touch {
            return Ok(Live { record, expires_at: entry.expires_at, last_active: entry.last_active, now });
        }
        let t = self.ttl.touch(key, now, record.policy_expiry(now, self.rules)).ok_or_else(not_found)?;
        if t.persist {
            // Best effort: if the queue is full, a later touch asks again.
            let _ = self.writer.submit(Job { op: Op::PersistTouch { key: *key }, reply: ReplyTo::Nobody });
        }
        Ok(Live { record, expires_at: t.expires_at, last_active: t.last_active, now })
    }

    /// The committed record of `key`, live or not: cache first, then redb.
    fn committed(&self, key: &SessionKey) -> Result<Option<Arc<Record>>, Reject> {
        let ticket = match self.cache.get(key) {
            Ok(record) => return Ok(Some(record)),
            Err(ticket) => ticket,
        };
        Stats::add(&self.stats.db_reads, 1);
        match self.store.get(key) {
            Ok(Some(record)) => {
                let record = Arc::new(record);
                self.cache.fill(*key, record.clone(), ticket);
                Ok(Some(record))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                if matches!(e, StoreError::Corrupt(_)) {
                    Stats::add(&self.stats.corrupt_records, 1);
                }
                tracing::error!(error = %e, "read failed");
                Err(reject(ErrorCode::Internal, "read failed"))
            }
        }
    }

    /// The session a key names: its own key, or the one an alias stands for.
    fn key(&self, text: &str) -> Result<SessionKey, Reject> {
        Ok(self.aliases.resolve(parse_key(text)?))
    }

    /// A user's live sessions, most recently active first. Reads what the
    /// writer published (the owner index, the TTL index, the cache), so a
    /// listing of cached sessions touches no disk on the network thread.
    fn list_user(&self, user: &str) -> Result<Vec<SessionInfo>, Reject> {
        let keys = self.owners.keys(user);
        let now = self.clock.now_ms();
        let mut sessions = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(entry) = self.ttl.live(&key, now) else { continue };
            let Some(record) = self.committed(&key)? else { continue };
            sessions.push(SessionInfo {
                handle: SessionHandle::from_bytes(record.handle).encode(),
                created_ms: record.created_ms,
                last_active_ms: entry.last_active,
                expires_at_ms: entry.expires_at,
                location: record.ip.as_deref().zip(self.geoip.as_ref()).and_then(|(ip, geo)| geo.locate(ip)),
                ip: record.ip.clone(),
                user_agent: record.user_agent.clone(),
            });
        }
        sessions.sort_by(|a, b| b.last_active_ms.cmp(&a.last_active_ms).then_with(|| a.handle.cmp(&b.handle)));
        Ok(sessions)
    }

    /// One page of [`Service::list_user`]'s order. The cursor is the last
    /// activity and handle of the page's last session, so a page starts
    /// right after it whatever was added or removed before it.
    fn list_user_page(&self, user: &str, limit: u32, after: Option<&str>) -> Result<UserPage, Reject> {
        let max = self.settings.max_list_page;
        let limit = if limit == 0 || limit > max { max } else { limit } as usize;
        let after = after
            .map(|cursor| {
                let (active, handle) = cursor.split_once('.')?;
                Some((active.parse::<u64>().ok()?, handle.to_owned()))
            })
            .map(|parsed| parsed.ok_or_else(|| reject(ErrorCode::BadRequest, "not a cursor this daemon gave")))
            .transpose()?;
        let mut sessions = self.list_user(user)?;
        if let Some((active, handle)) = after {
            // Sessions sort by activity, latest first, then by handle.
            let start = sessions.partition_point(|s| {
                (std::cmp::Reverse(s.last_active_ms), s.handle.as_str()) <= (std::cmp::Reverse(active), handle.as_str())
            });
            sessions.drain(..start);
        }
        let next = (sessions.len() > limit)
            .then(|| format!("{}.{}", sessions[limit - 1].last_active_ms, sessions[limit - 1].handle));
        sessions.truncate(limit);
        Ok(UserPage { sessions, next })
    }

    /// The user agent as stored: at most `max_user_agent` bytes, cut at a
    /// character boundary.
    fn truncate_ua<'a>(&self, ua: &'a str) -> &'a str {
        let mut end = ua.len().min(self.users.max_user_agent);
        while !ua.is_char_boundary(end) {
            end -= 1;
        }
        &ua[..end]
    }

    /// Sorts fields by name and checks names and sizes against the limits.
    fn check_fields(&self, mut fields: Vec<Field>) -> Result<Vec<Field>, Reject> {
        let l = &self.limits;
        if fields.len() > l.max_fields as usize {
            return Err(reject(ErrorCode::TooLarge, format!("{} fields; the limit is {}", fields.len(), l.max_fields)));
        }
        fields.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        for pair in fields.windows(2) {
            if pair[0].name == pair[1].name {
                return Err(reject(ErrorCode::BadRequest, format!("field {:?} is given twice", pair[0].name)));
            }
        }
        for f in &fields {
            self.check_name(&f.name)?;
        }
        let bytes = data_bytes(&fields);
        if bytes > l.max_session_bytes as usize {
            return Err(reject(
                ErrorCode::TooLarge,
                format!("{bytes} bytes of data; the limit is {}", l.max_session_bytes),
            ));
        }
        Ok(fields)
    }

    fn check_name(&self, name: &str) -> Result<(), Reject> {
        if name.is_empty() {
            return Err(reject(ErrorCode::BadRequest, "field names must not be empty"));
        }
        if name.len() > self.limits.max_field_name as usize {
            return Err(reject(
                ErrorCode::TooLarge,
                format!("field name of {} bytes; the limit is {}", name.len(), self.limits.max_field_name),
            ));
        }
        Ok(())
    }

    fn check_patch(&self, patch: Patch) -> Result<Op, Reject> {
        let Patch { key, set, remove, expected_version } = patch;
        let (set, remove) = self.check_changes(set, remove)?;
        Ok(Op::Patch { key: parse_key(&key)?, set, remove, expected_version })
    }

    fn check_write(&self, write: Write) -> Result<Op, Reject> {
        let Write { key, set, remove, replace, expected_version, expiry, owner } = write;
        if replace && !remove.is_empty() {
            return Err(reject(ErrorCode::BadRequest, "a WRITE that replaces the data removes nothing"));
        }
        if let Owner::Set(user) = &owner {
            check_user(user)?;
        }
        let (set, remove) = self.check_changes(set, remove)?;
        Ok(Op::Write(Box::new(WriteOp {
            key: parse_key(&key)?,
            set,
            remove,
            replace,
            expected_version,
            expiry,
            owner,
        })))
    }

    /// Fields to set, sorted and checked, and names to remove, sorted,
    /// unique and not among those set.
    fn check_changes(&self, set: Vec<Field>, mut remove: Vec<String>) -> Result<(Vec<Field>, Vec<String>), Reject> {
        let set = self.check_fields(set)?;
        if remove.len() > self.limits.max_fields as usize {
            return Err(reject(ErrorCode::TooLarge, "too many fields to remove"));
        }
        remove.sort_unstable();
        remove.dedup();
        for name in &remove {
            self.check_name(name)?;
            if set.binary_search_by(|f| f.name.cmp(name)).is_ok() {
                return Err(reject(ErrorCode::BadRequest, format!("field {name:?} is both set and removed")));
            }
        }
        Ok((set, remove))
    }

    fn check_meta(&self, meta: sessiond_protocol::Meta) -> Result<Meta, Reject> {
        Ok(Meta {
            user: meta.user.map(|u| check_user(&u).map(|()| u)).transpose()?,
            ip: meta.ip.as_deref().map(parse_ip).transpose()?,
            user_agent: meta.user_agent.as_deref().map(|ua| self.truncate_ua(ua).to_owned()),
        })
    }
}

/// A live session as a read found it.
struct Live {
    record: Arc<Record>,
    expires_at: u64,
    last_active: u64,
    now: u64,
}

/// A GET's answer: the record as cached, and what the TTL index and the
/// request add to it.
#[derive(Debug)]
pub struct SessionAnswer {
    record: Arc<Record>,
    handle: String,
    now: u64,
    expires_at: u64,
    last_active: u64,
    ip_changed: bool,
    user_agent_changed: bool,
}

impl SessionAnswer {
    /// The SESSION body, borrowed from the record.
    pub fn body(&self) -> SessionBodyRef<'_> {
        SessionBodyRef {
            ip_changed: self.ip_changed,
            user_agent_changed: self.user_agent_changed,
            ..self.record.body_ref(&self.handle, self.now, self.expires_at, self.last_active)
        }
    }
}

enum Routed {
    Now(Response),
    Session(SessionAnswer),
    Write(Op),
    Sweep,
}

/// The longest user id accepted: room for integer, UUID and string keys.
pub const MAX_USER_ID: usize = 256;

fn check_user(user: &str) -> Result<(), Reject> {
    if user.is_empty() || user.len() > MAX_USER_ID {
        return Err(reject(ErrorCode::BadRequest, format!("a user id is 1 to {MAX_USER_ID} bytes")));
    }
    Ok(())
}

/// The canonical text of an IP address, so equal addresses compare equal.
fn parse_ip(text: &str) -> Result<String, Reject> {
    text.parse::<std::net::IpAddr>()
        .map(|ip| ip.to_string())
        .map_err(|_| reject(ErrorCode::BadRequest, format!("{text:?} is not an IP address")))
}

fn parse_handle(text: &str) -> Result<SessionHandle, Reject> {
    SessionHandle::parse(text).map_err(|e| reject(ErrorCode::BadRequest, e.to_string()))
}

/// The id of the session key a client sent: the only form of it the rest
/// of the daemon sees (see `keys.rs`).
fn parse_key(text: &str) -> Result<SessionKey, Reject> {
    crate::keys::id_of_text(text).map_err(|e| reject(ErrorCode::BadKey, e))
}

fn not_found() -> Reject {
    Refusal::NotFound.into()
}

mod respond;
mod tokens;

#[cfg(test)]
mod tests;
