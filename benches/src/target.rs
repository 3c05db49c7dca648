//! The stores under test, and how each does a session operation.
//!
//! Redis is used the way its session stores use it (tower-sessions' and
//! actix-session's Redis stores, django-redis): one key per session holding
//! the encoded record, with an expiry.
//!
//! | operation | sessiond | Redis |
//! |---|---|---|
//! | get       | GET | `GET` |
//! | touch-get | GET with touch | `GET` and `EXPIRE` in one pipeline |
//! | patch     | PATCH (one field, atomic) | `GET`, decode, change, encode, `SET … EX` (read-modify-write) |
//! | create    | CREATE (the daemon draws the key) | `SET key value EX ttl NX` (the client draws the key) |
//! | delete    | DELETE | `DEL` |
//!
//! Records in Redis are JSON objects of the session's fields, as
//! django-redis's JSON serializer stores them.

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
/// `redis:PATH` or `echo:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Sessiond(PathBuf),
    /// sessiond over TLS, with the client files `sessiond tls init` writes
    /// in `dir` (by default `sessiond-data/tls`; `--tls-dir` sets it).
    SessiondTls {
        url: String,
        dir: PathBuf,
    },
    Redis(PathBuf),
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
            Some(("echo", p)) => Ok(Self::Echo(p.into())),
            _ => Err(format!("{s:?}: expected sessiond:PATH, sessiond:tls://HOST:PORT, redis:PATH or echo:PATH")),
        }
    }
}

impl Target {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Sessiond(_) => "sessiond",
            Self::SessiondTls { .. } => "sessiond-tls",
            Self::Redis(_) => "redis",
            Self::Echo(_) => "echo",
        }
    }

    /// The socket path, or for TLS the directory of the client's files.
    pub fn path(&self) -> &Path {
        match self {
            Self::Sessiond(p) | Self::Redis(p) | Self::Echo(p) => p,
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
    Redis(redis::aio::MultiplexedConnection),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sessiond(_) => "Store::Sessiond",
            Self::Redis(_) => "Store::Redis",
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
            Target::Redis(path) => {
                let url = format!("unix://{}", path.display());
                let client = redis::Client::open(url)?;
                Ok(Self::Redis(client.get_multiplexed_async_connection().await?))
            }
            Target::Echo(_) => Err("echo is not a store".into()),
        }
    }

    /// Creates a session; returns its key.
    pub async fn create(&mut self, fields: &Fields) -> Result<String, Error> {
        match self {
            Self::Sessiond(c) => Ok(c.create(fields.iter().cloned(), Expiry::Default).await?.key),
            Self::Redis(c) => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key)?;
                let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key);
                let opts = redis::SetOptions::default()
                    .conditional_set(redis::ExistenceCheck::NX)
                    .with_expiration(redis::SetExpiry::EX(TTL_SECS));
                let _: () = c.set_options(redis_key(&key), encode(fields), opts).await?;
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
        }
        Ok(())
    }
}

fn redis_key(key: &str) -> String {
    format!("session:{key}")
}

fn encode(fields: &Fields) -> Vec<u8> {
    let map: BTreeMap<&str, String> =
        fields.iter().map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v).into_owned())).collect();
    serde_json::to_vec(&map).expect("a map of strings encodes")
}

fn decode(raw: &[u8]) -> Result<BTreeMap<String, String>, Error> {
    Ok(serde_json::from_slice(raw)?)
}
