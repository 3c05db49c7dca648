//! Request to response: the one place where failures become error codes.
//!
//! Reads are answered at once from the cache or a read transaction, with
//! expiry taken from the TTL index. Touches (GET with touch, TOUCH) are
//! answered at once too: they move the expiry in the index, and the writer
//! persists it lazily once it has moved by the touch granularity. Other
//! mutations are validated for syntax and static limits here, then queued to
//! the writer, which answers after its commit.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use sessiond_protocol::{
    Create, ErrorCode, ExistsOk, Field, Get, Hello, HelloOk, KeyOnly, Limits, PROTOCOL_VERSION, Patch, Replace,
    Request, Response, SessionBody, SessionHandle, SessionInfo, SessionKey, SetExpiry, StatsOk, Written,
};
use sessiond_protocol::{Cycle, ListUser, Revoke, RevokeUser, SetMeta, UserSessions};
use sessiond_protocol::{
    Expiry, HostToken, IssueTransfer, KeysRotated, RedeemTransfer, Seal, Sealed, SealedCookie, TransferIssued, Unsealed,
};

use crate::aliases::AliasIndex;
use crate::cache::Cache;
use crate::clock::Clock;
use crate::config;
use crate::geoip::GeoIp;
use crate::record::{ExpiryRules, Record, data_bytes};
use crate::reply::ReplyTo;
use crate::stats::Stats;
use crate::store::Store;
use crate::sweeper::SweepQueue;
use crate::tokens::{CookieClaims, Reject as TokenReject, SealError, Tokens, TransferClaims, canonical_host};
use crate::ttl::TtlIndex;
use crate::writer::{Job, Meta, Op, SubmitError, WriterQueue};

/// What became of a request.
#[derive(Debug)]
pub enum Outcome {
    /// Answered at once.
    Now(Response),
    /// Queued to the writer, which will answer through the `ReplyTo`.
    Queued,
}

/// Everything the service works with.
#[derive(Debug)]
pub struct Parts {
    pub store: Arc<Store>,
    pub cache: Arc<Cache>,
    pub ttl: Arc<TtlIndex>,
    pub stats: Arc<Stats>,
    pub clock: Arc<dyn Clock>,
    pub writer: WriterQueue,
    pub sweeper: SweepQueue,
    pub limits: config::Limits,
    pub rules: ExpiryRules,
    pub users: config::UsersConfig,
    pub geoip: Option<GeoIp>,
    pub tokens: Arc<Tokens>,
    pub aliases: Arc<AliasIndex>,
}

#[derive(Debug)]
pub struct Service {
    store: Arc<Store>,
    cache: Arc<Cache>,
    ttl: Arc<TtlIndex>,
    stats: Arc<Stats>,
    clock: Arc<dyn Clock>,
    writer: WriterQueue,
    sweeper: SweepQueue,
    limits: config::Limits,
    rules: ExpiryRules,
    users: config::UsersConfig,
    geoip: Option<GeoIp>,
    tokens: Arc<Tokens>,
    aliases: Arc<AliasIndex>,
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
    pub fn new(p: Parts) -> Self {
        Self {
            store: p.store,
            cache: p.cache,
            ttl: p.ttl,
            stats: p.stats,
            clock: p.clock,
            writer: p.writer,
            sweeper: p.sweeper,
            limits: p.limits,
            rules: p.rules,
            users: p.users,
            geoip: p.geoip,
            tokens: p.tokens,
            aliases: p.aliases,
        }
    }

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
                let mut body = self.read(&self.key(&key)?, touch)?;
                // Reported, not enforced: a changed IP is common (mobile
                // networks), so the application decides what it means.
                if let Some(ip) = ip {
                    let ip = parse_ip(&ip)?;
                    body.ip_changed = body.ip.as_ref().is_some_and(|stored| *stored != ip);
                }
                if let Some(ua) = user_agent {
                    body.user_agent_changed =
                        body.user_agent.as_ref().is_some_and(|stored| stored.as_str() != self.truncate_ua(&ua));
                }
                Routed::Now(Response::Session(body))
            }
            Request::Exists(KeyOnly { key }) => {
                let exists = self.ttl.live(&self.key(&key)?, self.clock.now_ms()).is_some();
                Routed::Now(Response::Exists(ExistsOk { exists }))
            }
            Request::Touch(KeyOnly { key }) => {
                let body = self.read(&self.key(&key)?, true)?;
                Routed::Now(Response::Touched(Written { version: body.version, expires_at_ms: body.expires_at_ms }))
            }
            Request::SetExpiry(SetExpiry { key, expiry }) => {
                Routed::Write(Op::SetExpiry { key: parse_key(&key)?, expiry })
            }
            Request::Create(Create { fields, expiry, meta }) => Routed::Write(Op::Create {
                fields: self.check_fields(fields)?,
                expiry,
                meta: Meta {
                    user: meta.user.map(|u| check_user(&u).map(|()| u)).transpose()?,
                    ip: meta.ip.as_deref().map(parse_ip).transpose()?,
                    user_agent: meta.user_agent.as_deref().map(|ua| self.truncate_ua(ua).to_owned()),
                },
            }),
            Request::Replace(Replace { key, fields, expected_version }) => Routed::Write(Op::Replace {
                key: parse_key(&key)?,
                fields: self.check_fields(fields)?,
                expected_version,
            }),
            Request::Patch(patch) => Routed::Write(self.check_patch(patch)?),
            Request::Delete(KeyOnly { key }) => Routed::Write(Op::Delete { key: parse_key(&key)? }),
            Request::Cycle(Cycle { key, bind_user }) => Routed::Write(Op::Cycle {
                key: parse_key(&key)?,
                bind_user: bind_user.map(|u| check_user(&u).map(|()| u)).transpose()?,
            }),
            Request::SetMeta(SetMeta { key, ip, user_agent }) => Routed::Write(Op::SetMeta {
                key: parse_key(&key)?,
                ip: ip.as_deref().map(parse_ip).transpose()?,
                user_agent: user_agent.as_deref().map(|ua| self.truncate_ua(ua).to_owned()),
            }),
            Request::ListUser(ListUser { user }) => {
                check_user(&user)?;
                Routed::Now(Response::UserSessions(self.list_user(&user)?))
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
        if hello.version != PROTOCOL_VERSION {
            return Err(reject(
                ErrorCode::Unsupported,
                format!("protocol version {} is not supported; this daemon speaks {PROTOCOL_VERSION}", hello.version),
            ));
        }
        Ok(Response::Hello(HelloOk {
            version: PROTOCOL_VERSION,
            server: format!("sessiond {}", env!("CARGO_PKG_VERSION")),
            limits: self.wire_limits(),
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

    /// A live session as GET returns it; with `touch`, the read counts as
    /// activity. The index decides liveness first, so unknown and expired
    /// keys never reach the cache or the database.
    fn read(&self, key: &SessionKey, touch: bool) -> Result<SessionBody, Reject> {
        let now = self.clock.now_ms();
        let entry = self.ttl.live(key, now).ok_or_else(not_found)?;
        let record = self.committed(key)?.ok_or_else(not_found)?;
        // The index is the authority on expiry and last activity; the record
        // holds what was last persisted.
        let (expires_at, last_active) = if touch {
            let t = self.ttl.touch(key, now, record.policy_expiry(now, self.rules)).ok_or_else(not_found)?;
            if t.persist {
                // Best effort: if the queue is full, a later touch asks again.
                let _ = self.writer.submit(Job { op: Op::PersistTouch { key: *key }, reply: ReplyTo::Nobody });
            }
            (t.expires_at, t.last_active)
        } else {
            (entry.expires_at, entry.last_active)
        };
        let mut body = record.to_body(now);
        body.expires_at_ms = expires_at;
        body.last_active_ms = last_active;
        body.ttl_ms = expires_at.saturating_sub(now);
        Ok(body)
    }

    /// The committed record of `key`, live or not: cache first, then redb.
    fn committed(&self, key: &SessionKey) -> Result<Option<Arc<Record>>, Reject> {
        match self.cache.get(key) {
            Ok(record) => Ok(Some(record)),
            Err(ticket) => match self.store.get(key) {
                Ok(Some(record)) => {
                    let record = Arc::new(record);
                    self.cache.fill(*key, record.clone(), ticket);
                    Ok(Some(record))
                }
                Ok(None) => Ok(None),
                Err(e) => {
                    tracing::error!(error = %e, "read failed");
                    Err(reject(ErrorCode::Internal, "read failed"))
                }
            },
        }
    }

    /// The session a key names: its own key, or the one an alias stands for.
    fn key(&self, text: &str) -> Result<SessionKey, Reject> {
        Ok(self.aliases.resolve(parse_key(text)?))
    }

    /// Refuses a token or cookie: one answer for every reason, the reason
    /// to the log and the counters.
    fn token_rejected(&self, reason: TokenReject, what: &str) -> Reject {
        self.stats.token_rejected(reason);
        tracing::info!(reason = reason.name(), "{what} rejected");
        reject(ErrorCode::TokenRejected, "token rejected")
    }

    fn issue_transfer(&self, issue: IssueTransfer) -> Result<TransferIssued, Reject> {
        let now = self.clock.now_ms();
        let session = self.key(&issue.key)?;
        self.ttl.live(&session, now).ok_or_else(not_found)?;
        let site = |host: &str| match canonical_host(host) {
            Some(h) if self.tokens.is_site(&h) => Ok(h),
            _ => Err(reject(ErrorCode::BadRequest, format!("{host:?} is not one of transfer.sites"))),
        };
        let src = site(&issue.source_host)?;
        let destinations = match issue.destinations.is_empty() {
            true => self.tokens.config().sites.iter().filter(|s| **s != src).cloned().collect(),
            false => issue.destinations.iter().map(|d| site(d)).collect::<Result<Vec<_>, _>>()?,
        };
        if destinations.contains(&src) {
            return Err(reject(ErrorCode::BadRequest, "the source cannot be a destination"));
        }
        let bind = match issue.state_hash {
            None => [0u8; 32],
            Some(hash) if destinations.len() == 1 => hash
                .try_into()
                .map_err(|_| reject(ErrorCode::BadRequest, "state_hash is the 32-byte SHA-256 of the state"))?,
            Some(_) => return Err(reject(ErrorCode::BadRequest, "browser binding needs a single destination")),
        };
        let mut tokens = Vec::with_capacity(destinations.len());
        for dst in destinations {
            let claims = TransferClaims {
                iat_ms: now,
                exp_ms: now + self.tokens.config().transfer_ttl_ms,
                src: src.clone(),
                dst,
                session: *session.as_bytes(),
                bind,
            };
            let token = self.tokens.issue_transfer(&claims).map_err(|e| reject(ErrorCode::Internal, e.to_string()))?;
            tokens.push(HostToken { host: claims.dst, token });
        }
        Stats::add(&self.stats.tokens_issued, tokens.len() as u64);
        Ok(TransferIssued { tokens })
    }

    /// Checks everything a transfer token says; single use and the source
    /// session are checked by the writer, in the redeeming transaction.
    fn redeem(&self, r: RedeemTransfer) -> Result<Op, Reject> {
        let now = self.clock.now_ms();
        let host = canonical_host(&r.host).ok_or_else(|| self.token_rejected(TokenReject::Host, "transfer token"))?;
        let (claims, nonce) = self
            .tokens
            .open_transfer(&r.token, &host, r.state.as_deref(), now)
            .map_err(|reason| self.token_rejected(reason, "transfer token"))?;
        // An unreadable current cookie is no session at all.
        let current = r.current_key.as_deref().and_then(|k| SessionKey::parse(k).ok());
        Ok(Op::Redeem {
            nonce,
            exp_ms: claims.exp_ms,
            source: SessionKey::from_bytes(claims.session),
            current,
            always_replace: r.always_replace,
        })
    }

    fn seal(&self, s: Seal) -> Result<Sealed, Reject> {
        let now = self.clock.now_ms();
        let fields = self.check_fields(s.fields)?;
        check_cookie_name(&s.cookie_name)?;
        let host = canonical_host(&s.host).ok_or_else(|| reject(ErrorCode::BadRequest, "host is not a host name"))?;
        if let Some(user) = &s.user {
            check_user(user)?;
        }
        let c = self.tokens.config();
        let max_abs = now.saturating_add(c.cookie_max_age_ms);
        let (idle_ms, abs_exp_ms) = match s.expiry {
            Expiry::Default | Expiry::BrowserClose => (c.cookie_idle_ms, max_abs),
            Expiry::IdleSecs(secs) => (u64::from(secs) * 1000, max_abs),
            Expiry::At(at) => (0, at.min(max_abs)),
        };
        let mut sid = [0u8; 16];
        getrandom::fill(&mut sid).map_err(|e| reject(ErrorCode::Internal, e.to_string()))?;
        let epoch = self.cookie_state(s.user.as_deref(), &sid)?.0;
        let claims = CookieClaims {
            sid,
            iat_ms: now,
            seen_ms: now,
            abs_exp_ms,
            idle_secs: u32::try_from(idle_ms / 1000).unwrap_or(u32::MAX),
            epoch,
            user: s.user,
            fields,
        };
        let value = self.seal_claims(&claims, &s.cookie_name, &host)?;
        Ok(Sealed { value, expires_at_ms: claims.expires_at_ms() })
    }

    fn seal_claims(&self, claims: &CookieClaims, name: &str, host: &str) -> Result<String, Reject> {
        let value = self.tokens.seal_cookie(claims, name, host).map_err(|e| match e {
            SealError::TooLarge { .. } => reject(ErrorCode::TooLarge, e.to_string()),
            SealError::Random(_) => reject(ErrorCode::Internal, e.to_string()),
        })?;
        Stats::add(&self.stats.cookies_sealed, 1);
        Ok(value)
    }

    /// Opens a sealed cookie and checks it has not been revoked.
    fn open_cookie(&self, c: &SealedCookie) -> Result<CookieClaims, Reject> {
        let now = self.clock.now_ms();
        let host = canonical_host(&c.host).ok_or_else(|| self.token_rejected(TokenReject::Host, "sealed cookie"))?;
        let claims = self
            .tokens
            .open_cookie(&c.value, &c.cookie_name, &host, now)
            .map_err(|reason| self.token_rejected(reason, "sealed cookie"))?;
        let (epoch, denied) = self.cookie_state(claims.user.as_deref(), &claims.sid)?;
        if denied || claims.epoch < epoch {
            return Err(self.token_rejected(TokenReject::Revoked, "sealed cookie"));
        }
        Ok(claims)
    }

    fn unseal(&self, c: &SealedCookie) -> Result<Unsealed, Reject> {
        let mut claims = self.open_cookie(c)?;
        Stats::add(&self.stats.cookies_opened, 1);
        let now = self.clock.now_ms();
        let host = canonical_host(&c.host).expect("checked when opening");
        let reseal = if now.saturating_sub(claims.seen_ms) >= self.tokens.config().reseal_after_ms {
            claims.seen_ms = now;
            Some(self.seal_claims(&claims, &c.cookie_name, &host)?)
        } else {
            None
        };
        Ok(Unsealed {
            expires_at_ms: claims.expires_at_ms(),
            sid: claims.sid.iter().map(|b| format!("{b:02x}")).collect(),
            fields: claims.fields,
            user: claims.user,
            reseal,
        })
    }

    fn cookie_state(&self, user: Option<&str>, sid: &[u8; 16]) -> Result<(u32, bool), Reject> {
        self.store.cookie_state(user, sid).map_err(|e| {
            tracing::error!(error = %e, "reading cookie revocations failed");
            reject(ErrorCode::Internal, "read failed")
        })
    }

    /// A user's live sessions, most recently active first. Reads committed
    /// state only: the by-user table in a read transaction, then each record.
    fn list_user(&self, user: &str) -> Result<UserSessions, Reject> {
        let keys = self.store.user_sessions(user).map_err(|e| {
            tracing::error!(error = %e, "listing failed");
            reject(ErrorCode::Internal, "listing failed")
        })?;
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
        sessions.sort_by_key(|s| std::cmp::Reverse(s.last_active_ms));
        Ok(UserSessions { sessions })
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
        let Patch { key, set, mut remove, expected_version } = patch;
        let key = parse_key(&key)?;
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
        Ok(Op::Patch { key, set, remove, expected_version })
    }
}

enum Routed {
    Now(Response),
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

/// Cookie names are RFC 6265 tokens: visible ASCII but separators.
fn check_cookie_name(name: &str) -> Result<(), Reject> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && name.bytes().all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
    if ok { Ok(()) } else { Err(reject(ErrorCode::BadRequest, format!("{name:?} is not a cookie name"))) }
}

fn parse_handle(text: &str) -> Result<SessionHandle, Reject> {
    SessionHandle::parse(text).map_err(|e| reject(ErrorCode::BadRequest, e.to_string()))
}

fn parse_key(text: &str) -> Result<SessionKey, Reject> {
    SessionKey::parse(text).map_err(|e| reject(ErrorCode::BadKey, e.to_string()))
}

fn not_found() -> Reject {
    reject(ErrorCode::NotFound, "no such session")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use sessiond_protocol::{ErrorCode, Expiry, Field, Replace, Request, Response};

    use crate::config::Config;
    use crate::store::Store;
    use crate::testkit::{Kit, T0, code};

    const NOT_FOUND: Option<u16> = Some(ErrorCode::NotFound as u16);

    fn session(r: Response) -> sessiond_protocol::SessionBody {
        match r {
            Response::Session(s) => s,
            other => panic!("expected a session, got {other:?}"),
        }
    }

    #[test]
    fn idle_expiry_is_exact_on_every_operation() {
        let kit = Kit::new();
        let key = kit.create(&[("a", "1")], Expiry::IdleSecs(1800));
        kit.clock.set(T0 + 1_799_999);
        assert_eq!(session(kit.get(&key, false)).fields.len(), 1, "alive one millisecond before");
        kit.clock.set(T0 + 1_800_000);
        assert_eq!(code(&kit.get(&key, false)), NOT_FOUND, "expired at the instant");
        assert_eq!(code(&kit.get(&key, true)), NOT_FOUND);
        assert_eq!(code(&kit.key_op(Request::Touch, &key)), NOT_FOUND);
        assert_eq!(code(&kit.cycle(&key, None)), NOT_FOUND);
        assert_eq!(code(&kit.patch(&key, "b", "2")), NOT_FOUND);
        let replace = Request::Replace(Replace { key: key.clone(), fields: vec![], expected_version: None });
        assert_eq!(code(&kit.call(replace)), NOT_FOUND);
        assert!(matches!(kit.key_op(Request::Exists, &key), Response::Exists(e) if !e.exists));
        assert!(matches!(kit.key_op(Request::Delete, &key), Response::Deleted(d) if !d.existed));
    }

    #[test]
    fn touching_slides_idle_expiry_without_changing_data_or_version() {
        let kit = Kit::new();
        let key = kit.create(&[("a", "1")], Expiry::IdleSecs(60));
        kit.clock.set(T0 + 59_000);
        assert!(
            matches!(kit.key_op(Request::Touch, &key), Response::Touched(w) if w.version == 1 && w.expires_at_ms == T0 + 119_000)
        );
        kit.clock.set(T0 + 118_999);
        let s = session(kit.get(&key, false));
        assert_eq!((s.version, s.last_active_ms, s.modified_ms), (1, T0 + 59_000, T0));
        kit.clock.set(T0 + 119_000);
        assert_eq!(code(&kit.get(&key, false)), NOT_FOUND);
    }

    #[test]
    fn a_clock_stepping_backwards_never_shortens_or_breaks_a_session() {
        let kit = Kit::new();
        let key = kit.create(&[("a", "1")], Expiry::IdleSecs(60));
        kit.clock.set(T0 - 3_600_000);
        assert!(matches!(kit.key_op(Request::Touch, &key), Response::Touched(w) if w.expires_at_ms == T0 + 60_000));
        assert!(matches!(kit.patch(&key, "b", "2"), Response::Patched(_)));
        let s = session(kit.get(&key, false));
        assert_eq!((s.expires_at_ms, s.last_active_ms, s.modified_ms), (T0 + 60_000, T0, T0));
    }

    #[test]
    fn the_default_policy_uses_the_configured_age() {
        let kit = Kit::new();
        let key = kit.create(&[], Expiry::Default);
        assert_eq!(session(kit.get(&key, false)).expires_at_ms, T0 + 1_209_600_000);
    }

    #[test]
    fn delete_and_cycle_end_the_old_key_at_once_even_when_cached() {
        let kit = Kit::new();
        let key = kit.create(&[("a", "1")], Expiry::Default);
        session(kit.get(&key, false)); // now cached
        assert!(matches!(kit.key_op(Request::Delete, &key), Response::Deleted(d) if d.existed));
        assert_eq!(code(&kit.get(&key, false)), NOT_FOUND);

        let key = kit.create(&[("a", "1")], Expiry::Default);
        session(kit.get(&key, false));
        let Response::Cycled(new) = kit.cycle(&key, None) else { panic!("cycle failed") };
        assert_eq!(code(&kit.get(&key, false)), NOT_FOUND);
        let s = session(kit.get(&new.key, false));
        assert_eq!((s.version, s.fields.len()), (2, 1));
    }

    #[test]
    fn field_names_are_checked_before_anything_is_queued() {
        let kit = Kit::new();
        let empty = vec![Field { name: String::new(), value: vec![] }];
        let r = kit.call(Request::Create(sessiond_protocol::Create {
            fields: empty,
            expiry: Expiry::Default,
            meta: Default::default(),
        }));
        assert_eq!(code(&r), Some(ErrorCode::BadRequest as u16));
        let key = kit.create(&[("a", "1")], Expiry::Default);
        let both = Request::Patch(sessiond_protocol::Patch {
            key,
            set: vec![Field { name: "a".into(), value: vec![] }],
            remove: vec!["a".into()],
            expected_version: None,
        });
        assert_eq!(code(&kit.call(both)), Some(ErrorCode::BadRequest as u16));
    }

    #[test]
    fn browser_close_is_reported_and_the_default_age_applies() {
        let kit = Kit::new();
        let key = kit.create(&[], Expiry::BrowserClose);
        let s = session(kit.get(&key, false));
        assert_eq!((s.expiry, s.expires_at_ms, s.ttl_ms), (Expiry::BrowserClose, T0 + 1_209_600_000, 1_209_600_000));
    }

    #[test]
    fn an_absolute_expiry_ends_the_session_at_its_instant_whatever_the_activity() {
        let kit = Kit::new();
        let key = kit.create(&[("a", "1")], Expiry::At(T0 + 60_000));
        for t in (0..60_000).step_by(10_000) {
            kit.clock.set(T0 + t);
            assert!(matches!(kit.patch(&key, "a", "2"), Response::Patched(w) if w.expires_at_ms == T0 + 60_000));
            assert_eq!(session(kit.get(&key, true)).ttl_ms, 60_000 - t);
        }
        kit.clock.set(T0 + 59_999);
        assert!(matches!(kit.get(&key, false), Response::Session(_)));
        kit.clock.set(T0 + 60_000);
        assert_eq!(code(&kit.get(&key, true)), NOT_FOUND);
    }

    #[test]
    fn the_lifetime_cap_ends_a_session_touched_every_ten_minutes_at_twelve_hours() {
        let mut config = Config::default();
        config.expiry.default_idle_secs = 30 * 60;
        config.expiry.max_lifetime_secs = 12 * 3600;
        let kit = Kit::with_config(&config);
        let key = kit.create(&[("a", "1")], Expiry::Default);
        for minute in (10..12 * 60).step_by(10) {
            kit.clock.set(T0 + minute * 60_000);
            assert!(matches!(kit.key_op(Request::Touch, &key), Response::Touched(_)), "minute {minute}");
        }
        kit.clock.set(T0 + 12 * 3_600_000 - 1);
        assert_eq!(session(kit.get(&key, false)).expires_at_ms, T0 + 12 * 3_600_000);
        kit.clock.set(T0 + 12 * 3_600_000);
        assert_eq!(code(&kit.get(&key, true)), NOT_FOUND);
    }

    #[test]
    fn set_expiry_replaces_the_policy_and_may_shorten_it() {
        let kit = Kit::new();
        let key = kit.create(&[("a", "1")], Expiry::IdleSecs(3600));
        kit.clock.set(T0 + 1_000);
        let set = |expiry| kit.call(Request::SetExpiry(sessiond_protocol::SetExpiry { key: key.clone(), expiry }));
        assert!(
            matches!(set(Expiry::IdleSecs(10)), Response::ExpirySet(w) if w.version == 2 && w.expires_at_ms == T0 + 11_000)
        );
        let s = session(kit.get(&key, false));
        assert_eq!((s.expiry, s.expires_at_ms), (Expiry::IdleSecs(10), T0 + 11_000));
        kit.clock.set(T0 + 11_000);
        assert_eq!(code(&kit.get(&key, false)), NOT_FOUND, "the shorter expiry holds");
        assert_eq!(code(&set(Expiry::Default)), NOT_FOUND, "an expired session cannot be revived");
    }

    fn stored_expiry(kit: &Kit, key: &str) -> u64 {
        let key = sessiond_protocol::SessionKey::parse(key).unwrap();
        kit.store.get(&key).unwrap().unwrap().expires_at_ms
    }

    #[test]
    fn touches_are_written_lazily_once_past_the_granularity() {
        let kit = Kit::new();
        let key = kit.create(&[("a", "1")], Expiry::IdleSecs(3600));
        kit.clock.set(T0 + 30_000);
        assert_eq!(session(kit.get(&key, true)).expires_at_ms, T0 + 3_630_000);
        assert_eq!(stored_expiry(&kit, &key), T0 + 3_600_000, "30 s of lag is within the granularity");
        kit.clock.set(T0 + 61_000);
        kit.key_op(Request::Touch, &key);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while stored_expiry(&kit, &key) != T0 + 3_661_000 {
            assert!(std::time::Instant::now() < deadline, "the touch was never persisted");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let s = session(kit.get(&key, false));
        assert_eq!((s.version, s.fields.len(), s.last_active_ms), (1, 1, T0 + 61_000), "data and version untouched");
    }

    #[test]
    fn a_crash_shortens_an_idle_life_by_at_most_the_granularity_and_never_lengthens_it() {
        let kit = Kit::new();
        let key = kit.create(&[("a", "1")], Expiry::IdleSecs(3600));
        for s in 1..=100 {
            kit.clock.set(T0 + s * 7_000);
            kit.key_op(Request::Touch, &key);
        }
        let truth = T0 + 700_000 + 3_600_000;
        assert_eq!(session(kit.get(&key, false)).expires_at_ms, truth);
        let kit = kit.restart(T0 + 700_000);
        let after = session(kit.get(&key, false)).expires_at_ms;
        assert!(after <= truth && truth - after < 60_000, "expiry after restart {after}, before {truth}");
    }

    #[test]
    fn expired_sessions_are_never_served_after_a_restart_and_are_swept() {
        let kit = Kit::new();
        let short = kit.create(&[("a", "1")], Expiry::IdleSecs(10));
        let long = kit.create(&[("a", "1")], Expiry::Default);
        // It expires while the daemon is down.
        let kit = kit.restart(T0 + 10_000);
        assert_eq!(code(&kit.get(&short, false)), NOT_FOUND);
        assert!(matches!(kit.key_op(Request::Exists, &short), Response::Exists(e) if !e.exists));
        // The start-up round removed it without being asked.
        let Response::Stats(stats) = kit.call(Request::Stats(sessiond_protocol::Empty {})) else { panic!() };
        assert_eq!(stats.counters.iter().find(|c| c.name == "expired_swept").unwrap().value, 1);
        assert_eq!(kit.store.scan().unwrap().len(), 1);
        assert!(matches!(kit.get(&long, false), Response::Session(_)));
    }

    #[test]
    fn a_sweep_removes_every_expired_session_in_batches_with_its_expiry_row() {
        let kit = Kit::new();
        let keep: Vec<String> = (0..10).map(|_| kit.create(&[("k", "1")], Expiry::Default)).collect();
        for _ in 0..2_500 {
            kit.create(&[("e", "1")], Expiry::IdleSecs(10));
        }
        assert_eq!(kit.ttl.len(), 2_510);
        kit.clock.set(T0 + 11_000);
        // Nothing expired is served even before the sweep.
        let swept = kit.call(Request::Sweep(sessiond_protocol::Empty {}));
        assert!(matches!(&swept, Response::Swept(s) if s.removed == 2_500), "{swept:?}");
        assert_eq!(kit.store.scan().unwrap().len(), 10);
        let rebuilt = crate::ttl::TtlIndex::new(60_000);
        assert_eq!(kit.store.load_index(&rebuilt).unwrap(), 10, "expiry rows follow the sessions");
        assert_eq!(kit.ttl.len(), 10);
        for key in &keep {
            assert!(matches!(kit.get(key, false), Response::Session(_)));
        }
        let Response::Stats(stats) = kit.call(Request::Stats(sessiond_protocol::Empty {})) else { panic!() };
        let get = |n: &str| stats.counters.iter().find(|c| c.name == n).unwrap().value;
        assert_eq!((get("expired_swept"), get("sessions"), get("last_sweep_ms")), (2_500, 10, T0 + 11_000));
    }

    #[test]
    fn sweeps_and_deletes_keep_the_owner_and_handle_tables_exact() {
        let kit = Kit::new();
        let meta = |user: &str| sessiond_protocol::Meta { user: Some(user.into()), ip: None, user_agent: None };
        let mut handles = Vec::new();
        for _ in 0..3 {
            let key = kit.create_with(vec![], Expiry::IdleSecs(10), meta("u"));
            handles.push(session(kit.get(&key, false)).handle);
        }
        let kept = kit.create_with(vec![], Expiry::Default, meta("u"));
        let deleted = kit.create_with(vec![], Expiry::Default, meta("u"));
        kit.key_op(Request::Delete, &deleted);
        kit.clock.set(T0 + 11_000);
        assert!(matches!(kit.call(Request::Sweep(sessiond_protocol::Empty {})), Response::Swept(s) if s.removed == 3));
        let owned = kit.store.user_sessions("u").unwrap();
        assert_eq!(owned, vec![sessiond_protocol::SessionKey::parse(&kept).unwrap()], "only the live one is indexed");
        for handle in handles {
            let revoke = Request::Revoke(sessiond_protocol::Revoke { handle });
            assert!(matches!(kit.call(revoke), Response::Revoked(r) if r.count == 0), "swept handles are gone");
        }
    }

    /// A storage backend whose writes and syncs fail while `fail` is set.
    #[derive(Debug)]
    struct Flaky {
        inner: redb::backends::InMemoryBackend,
        fail: Arc<AtomicBool>,
    }

    impl redb::StorageBackend for Flaky {
        fn len(&self) -> Result<u64, std::io::Error> {
            self.inner.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
            self.inner.read(offset, out)
        }
        fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
            self.inner.set_len(len)
        }
        fn sync_data(&self) -> Result<(), std::io::Error> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("injected sync failure"));
            }
            self.inner.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("injected write failure"));
            }
            self.inner.write(offset, data)
        }
    }

    #[test]
    fn after_a_failed_commit_no_write_is_ever_acknowledged() {
        let fail = Arc::new(AtomicBool::new(false));
        let backend = Flaky { inner: redb::backends::InMemoryBackend::new(), fail: fail.clone() };
        let (store, _) = Store::open_backend(backend).unwrap();
        let kit = Kit::with_store(store, &Config::default());
        let key = kit.create(&[("a", "1")], Expiry::Default);

        fail.store(true, Ordering::SeqCst);
        let unavailable = Some(ErrorCode::Unavailable as u16);
        assert_eq!(code(&kit.patch(&key, "a", "2")), unavailable);
        assert!(kit.fatal.recv_timeout(std::time::Duration::from_secs(5)).is_ok(), "the daemon is told to stop");

        // Even once the disk recovers, the writer stays closed: the state of
        // the failed commit is unknown, so only a restart may write again.
        fail.store(false, Ordering::SeqCst);
        assert_eq!(code(&kit.patch(&key, "a", "3")), unavailable);
        assert_eq!(
            code(&kit.call(Request::Create(sessiond_protocol::Create {
                fields: vec![],
                expiry: Expiry::Default,
                meta: Default::default()
            }))),
            unavailable
        );
        // The acknowledged state is still what readers see.
        assert_eq!(session(kit.get(&key, false)).fields[0].value, b"1");
    }
}
