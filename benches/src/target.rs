//! The stores under test, and how each does a session operation.
//!
//! Redis is measured with two mappings of a session:
//!
//! - `redis:PATH`, the way most of its session stores use it (tower-sessions'
//!   and actix-session's Redis stores, django-redis): one string key per
//!   session holding the encoded record (a JSON object of the session's
//!   fields, as django-redis's JSON serializer stores it), with an expiry.
//! - `redis-hash:PATH`, Redis at its best for sessions: one hash per session,
//!   one hash field per session field, so a change to one field is one
//!   `HSET` and no read-modify-write. Each expiry is refreshed in the same
//!   round trip as the command it goes with (a pipeline); only create is a
//!   `MULTI`/`EXEC` transaction, so no reader sees a session without its
//!   expiry. (A patch of a missing session would make a one-field hash; the
//!   load generator patches only sessions that exist.)
//!
//! | operation | sessiond | Redis (`redis:`) | Redis hash (`redis-hash:`) |
//! |---|---|---|---|
//! | get       | GET | `GET` | `HGETALL` |
//! | touch-get | GET with touch | `GET` and `EXPIRE` in one pipeline | `HGETALL` and `EXPIRE` in one pipeline |
//! | patch     | PATCH (one field, atomic) | `GET`, decode, change, encode, `SET … EX` (read-modify-write) | `HSET key field value` and `EXPIRE` in one pipeline |
//! | create    | CREATE (the daemon draws the key) | `SET key value EX ttl NX` (the client draws the key) | `MULTI`, `HSET key f1 v1 f2 v2 …`, `EXPIRE`, `EXEC` in one pipeline (the client draws the key) |
//! | delete    | DELETE | `DEL` | `DEL` |
//!
//! The two Redis mappings keep their sessions under different key prefixes
//! (`session:` and `session-hash:`), so both can be loaded into one server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use redis::AsyncCommands;
use sessiond_client::{Client, Expiry, Options, TlsFiles};

use crate::workload::Op;

/// Django's SESSION_COOKIE_AGE, for Redis expiries.
const TTL_SECS: u64 = 1_209_600;

/// Where to send load: `sessiond:PATH`, `sessiond:tls://HOST:PORT`,
/// `redis:PATH`, `redis-hash:PATH` or `echo:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Sessiond(PathBuf),
    /// sessiond over TLS, with the client files `sessiond tls init` writes
    /// in `dir` (by default `sessiond-data/tls`; `--tls-dir` sets it).
    SessiondTls {
        url: String,
        dir: PathBuf,
    },
    /// Redis, one JSON string per session.
    Redis(PathBuf),
    /// Redis, one hash per session.
    RedisHash(PathBuf),
    Echo(PathBuf),
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some(("sessiond", url)) if url.starts_with("tls://") => {
                Ok(Self::SessiondTls { url: url.to_owned(), dir: PathBuf::from("sessiond-data/tls") })
            }
            Some(("sessiond", p)) => Ok(Self::Sessiond(p.into())),
            Some(("redis", p)) => Ok(Self::Redis(p.into())),
            Some(("redis-hash", p)) => Ok(Self::RedisHash(p.into())),
            Some(("echo", p)) => Ok(Self::Echo(p.into())),
            _ => Err(format!(
                "{s:?}: expected sessiond:PATH, sessiond:tls://HOST:PORT, redis:PATH, redis-hash:PATH or echo:PATH"
            )),
        }
    }
}

impl Target {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Sessiond(_) => "sessiond",
            Self::SessiondTls { .. } => "sessiond-tls",
            Self::Redis(_) => "redis",
            Self::RedisHash(_) => "redis-hash",
            Self::Echo(_) => "echo",
        }
    }

    /// The socket path, or for TLS the directory of the client's files.
    pub fn path(&self) -> &Path {
        match self {
            Self::Sessiond(p) | Self::Redis(p) | Self::RedisHash(p) | Self::Echo(p) => p,
            Self::SessiondTls { dir, .. } => dir,
        }
    }

    /// Takes the TLS client files from `dir` (a TLS target only).
    pub fn with_tls_dir(self, dir: Option<PathBuf>) -> Self {
        match (self, dir) {
            (Self::SessiondTls { url, .. }, Some(dir)) => Self::SessiondTls { url, dir },
            (other, _) => other,
        }
    }
}

/// A session's fields, as the load generator writes them.
pub type Fields = Vec<(String, Vec<u8>)>;

/// One connection to a store; clones share it (requests are pipelined).
#[derive(Clone)]
pub enum Store {
    Sessiond(Client),
    /// One JSON string per session.
    Redis(redis::aio::MultiplexedConnection),
    /// One hash per session.
    RedisHash(redis::aio::MultiplexedConnection),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sessiond(_) => "Store::Sessiond",
            Self::Redis(_) => "Store::Redis",
            Self::RedisHash(_) => "Store::RedisHash",
        })
    }
}

pub type Error = Box<dyn std::error::Error + Send + Sync>;

impl Store {
    pub async fn connect(target: &Target) -> Result<Self, Error> {
        match target {
            Target::Sessiond(path) => {
                let options = Options::new(path).timeout(Duration::from_secs(30));
                Ok(Self::Sessiond(Client::connect(options).await?))
            }
            Target::SessiondTls { url, dir } => {
                let options = Options::parse(url, Some(&TlsFiles::in_dir(dir)))?.timeout(Duration::from_secs(30));
                Ok(Self::Sessiond(Client::connect(options).await?))
            }
            Target::Redis(path) => Ok(Self::Redis(redis_connect(path).await?)),
            Target::RedisHash(path) => Ok(Self::RedisHash(redis_connect(path).await?)),
            Target::Echo(_) => Err("echo is not a store".into()),
        }
    }

    /// Creates a session; returns its key.
    pub async fn create(&mut self, fields: &Fields) -> Result<String, Error> {
        match self {
            Self::Sessiond(c) => Ok(c.create(fields.iter().cloned(), Expiry::Default).await?.key),
            Self::Redis(c) => {
                let key = new_key()?;
                let opts = redis::SetOptions::default()
                    .conditional_set(redis::ExistenceCheck::NX)
                    .with_expiration(redis::SetExpiry::EX(TTL_SECS));
                let _: () = c.set_options(redis_key(&key), encode(fields), opts).await?;
                Ok(key)
            }
            Self::RedisHash(c) => {
                let key = new_key()?;
                let hkey = hash_key(&key);
                let mut pipe = redis::pipe();
                pipe.atomic().cmd("HSET").arg(&hkey).arg(fields.as_slice());
                pipe.expire(&hkey, TTL_SECS as i64);
                let (_, expiring): (u64, bool) = pipe.query_async(c).await?;
                if !expiring {
                    return Err("EXPIRE found no session".into());
                }
                Ok(key)
            }
        }
    }

    /// Performs `op` on the session `key` (create and delete have their own).
    pub async fn op(&mut self, op: Op, key: &str, field: &str, value: &[u8]) -> Result<(), Error> {
        match self {
            Self::Sessiond(c) => match op {
                Op::Get => c.get(key).await.map(drop)?,
                Op::TouchGet => c.get_touch(key).await.map(drop)?,
                Op::Patch => c.patch(key, [(field, value.to_vec())], Vec::new(), None).await.map(drop)?,
                Op::Delete => c.delete(key).await.map(drop)?,
                Op::Create => unreachable!("create has its own call"),
            },
            Self::Redis(c) => match op {
                Op::Get => {
                    let raw: Option<Vec<u8>> = c.get(redis_key(key)).await?;
                    decode(&raw.ok_or("missing")?)?;
                }
                Op::TouchGet => {
                    let (raw, _): (Option<Vec<u8>>, bool) = redis::pipe()
                        .get(redis_key(key))
                        .expire(redis_key(key), TTL_SECS as i64)
                        .query_async(c)
                        .await?;
                    decode(&raw.ok_or("missing")?)?;
                }
                Op::Patch => {
                    let raw: Option<Vec<u8>> = c.get(redis_key(key)).await?;
                    let mut record = decode(&raw.ok_or("missing")?)?;
                    record.insert(field.to_owned(), String::from_utf8_lossy(value).into_owned());
                    let bytes = serde_json::to_vec(&record)?;
                    let _: () = c.set_ex(redis_key(key), bytes, TTL_SECS).await?;
                }
                Op::Delete => {
                    let _: i64 = c.del(redis_key(key)).await?;
                }
                Op::Create => unreachable!("create has its own call"),
            },
            Self::RedisHash(c) => {
                let hkey = hash_key(key);
                match op {
                    Op::Get => {
                        let record: Fields = c.hgetall(&hkey).await?;
                        present(&record)?;
                    }
                    Op::TouchGet => {
                        let (record, _): (Fields, bool) =
                            redis::pipe().hgetall(&hkey).expire(&hkey, TTL_SECS as i64).query_async(c).await?;
                        present(&record)?;
                    }
                    Op::Patch => {
                        let _: (u64, bool) = redis::pipe()
                            .hset(&hkey, field, value)
                            .expire(&hkey, TTL_SECS as i64)
                            .query_async(c)
                            .await?;
                    }
                    Op::Delete => {
                        let _: i64 = c.del(&hkey).await?;
                    }
                    Op::Create => unreachable!("create has its own call"),
                }
            }
        }
        Ok(())
    }
}

async fn redis_connect(path: &Path) -> Result<redis::aio::MultiplexedConnection, Error> {
    let client = redis::Client::open(format!("unix://{}", path.display()))?;
    Ok(client.get_multiplexed_async_connection().await?)
}

/// A session key drawn by the client: 32 random bytes, URL-safe base64.
fn new_key() -> Result<String, Error> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key))
}

fn redis_key(key: &str) -> String {
    format!("session:{key}")
}

fn hash_key(key: &str) -> String {
    format!("session-hash:{key}")
}

/// `HGETALL` answers a missing key with an empty hash.
fn present(record: &Fields) -> Result<(), Error> {
    if record.is_empty() { Err("missing".into()) } else { Ok(()) }
}

fn encode(fields: &Fields) -> Vec<u8> {
    let map: BTreeMap<&str, String> =
        fields.iter().map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v).into_owned())).collect();
    serde_json::to_vec(&map).expect("a map of strings encodes")
}

fn decode(raw: &[u8]) -> Result<BTreeMap<String, String>, Error> {
    Ok(serde_json::from_slice(raw)?)
}
