//! Configuration: the embedded defaults, overridden by a TOML file and then
//! by the command line. Unknown keys are rejected, naming the key, so a typo
//! never silently falls back to a default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::record::ExpiryRules;

/// Django's SESSION_COOKIE_AGE: two weeks.
pub const DEFAULT_IDLE_SECS: u32 = 1_209_600;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Holds the database file and, unless `socket` is set, the socket.
    pub data_dir: PathBuf,
    /// The Unix socket path; defaults to `<data_dir>/sessiond.sock`.
    pub socket: Option<PathBuf>,
    /// Permission bits of the socket file, as an octal string.
    pub socket_mode: String,
    /// Permission bits of the socket's directory when the daemon creates it.
    pub socket_dir_mode: String,
    /// Group owning the socket (name or number), e.g. the web servers' group.
    pub socket_group: Option<String>,
    pub access: AccessConfig,
    /// TCP listeners with TLS and client certificates; none by default.
    pub tls: TlsConfig,
    /// A plain TCP listener, without TLS or any check of who connects: for
    /// testing on loopback only (a non-loopback address is refused).
    pub insecure_plaintext_tcp_for_testing: Option<std::net::SocketAddr>,
    /// Network event-loop threads; 0 means half the cores, at least one.
    pub threads: usize,
    /// Memory budget of the session cache, in bytes; 0 means an eighth of
    /// the memory sessiond may use (see [`Config::cache_bytes`]).
    pub cache_bytes: usize,
    /// redb's own page cache, in bytes: B-tree pages for reads that miss the
    /// session cache, and the pages written since the last checkpoint.
    pub db_cache_bytes: usize,
    /// Log filter (tracing's EnvFilter syntax); RUST_LOG overrides it.
    pub log: String,
    pub durability: DurabilityConfig,
    pub limits: Limits,
    pub expiry: ExpiryConfig,
    pub users: UsersConfig,
    pub transfer: TransferConfig,
    pub cookies: CookiesConfig,
    /// The key ring file; defaults to `<data_dir>/keyring`.
    pub keyring: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("sessiond-data"),
            socket: None,
            socket_mode: "0660".into(),
            socket_dir_mode: "0750".into(),
            socket_group: None,
            access: AccessConfig::default(),
            tls: TlsConfig::default(),
            insecure_plaintext_tcp_for_testing: None,
            threads: 0,
            cache_bytes: 0,
            db_cache_bytes: crate::store::DEFAULT_DB_CACHE_BYTES,
            log: "info".into(),
            durability: DurabilityConfig::default(),
            limits: Limits::default(),
            expiry: ExpiryConfig::default(),
            users: UsersConfig::default(),
            transfer: TransferConfig::default(),
            cookies: CookiesConfig::default(),
            keyring: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityMode {
    /// Acknowledge a write only after it is on disk: its write-ahead log
    /// frame synced with fdatasync.
    Strict,
    /// Acknowledge once the log frame is written (to the page cache); sync
    /// the log at least every `flush_interval_ms`. A process crash loses
    /// nothing; a power loss at most that window. Neither corrupts.
    Relaxed,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DurabilityConfig {
    pub mode: DurabilityMode,
    pub flush_interval_ms: u64,
    /// Move to the other log file, and make redb durable up to the end of
    /// the one left (a checkpoint), once the active file holds this many
    /// MiB: bounds the log files and replay at start.
    pub checkpoint_mb: u64,
    /// ...or once the active file's first frame is this old.
    pub checkpoint_secs: u64,
    /// The power-loss test's positive control: answer before the log is
    /// synced. Never read from a file.
    #[serde(skip)]
    pub ack_before_sync_for_testing: bool,
}

impl Default for DurabilityConfig {
    fn default() -> Self {
        Self {
            mode: DurabilityMode::Strict,
            flush_interval_ms: 1000,
            checkpoint_mb: 64,
            checkpoint_secs: 30,
            ack_before_sync_for_testing: false,
        }
    }
}

/// The most clock difference between hosts a token may be allowed.
pub const MAX_SKEW_SECS: u32 = 5;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest frame body accepted, in bytes.
    pub max_frame: u32,
    /// Largest session (sum of field names and values), in bytes.
    pub max_session_bytes: u32,
    pub max_fields: u32,
    pub max_field_name: u32,
    pub max_connections: usize,
    /// Requests a connection may have waiting on the writer before the
    /// daemon stops reading from it.
    pub max_inflight: u32,
    /// Most mutations committed in one write transaction.
    pub max_batch: usize,
    /// A batch takes no further mutation once what it may write to the
    /// log (the records it loaded and the data it was sent) reaches this.
    pub max_batch_bytes: usize,
    /// Bytes of mutations waiting for the writer, across all connections,
    /// past which further writes are answered BUSY.
    pub max_queued_write_bytes: usize,
    /// Answers waiting for one client to read them: past this many bytes
    /// the daemon serves none of its requests until it reads. A client that
    /// reads gets every answer, however large.
    pub max_output_bytes: usize,
    /// The same, across all connections: past it, only connections with
    /// no answer waiting are served. Bounds what slow readers hold together.
    pub max_output_total_bytes: usize,
    /// A connection whose client takes no byte of its pending answers for
    /// this long is closed.
    pub write_timeout_secs: u64,
    /// A connection with nothing received and nothing pending for this long
    /// is closed.
    pub idle_timeout_secs: u64,
    /// A frame must arrive whole within this time of its first byte
    /// (against slow senders).
    pub frame_timeout_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame: 1 << 20,
            max_session_bytes: 512 << 10,
            max_fields: 1024,
            max_field_name: 256,
            max_connections: 1024,
            max_inflight: 256,
            max_batch: 4096,
            max_batch_bytes: 64 << 20,
            max_queued_write_bytes: 128 << 20,
            max_output_bytes: 1 << 20,
            max_output_total_bytes: 128 << 20,
            write_timeout_secs: 30,
            idle_timeout_secs: 300,
            frame_timeout_secs: 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExpiryConfig {
    /// Idle age of sessions with the default or browser-close policy, in seconds.
    pub default_idle_secs: u32,
    /// Absolute cap on any session's life from its creation, in seconds;
    /// 0 for none.
    pub max_lifetime_secs: u64,
    /// Touches are persisted once they move a session's expiry this far past
    /// the stored one. A crash can shorten an idle session's life by at most
    /// this much.
    pub touch_granularity_secs: u32,
    /// How often the sweeper looks for expired sessions.
    pub sweep_interval_ms: u64,
    /// Most expired sessions deleted in one write transaction.
    pub sweep_batch: usize,
    /// After the wall clock jumps (against the monotonic clock, by more
    /// than 2 s), nothing is swept and no used token or revoked cookie is
    /// forgotten until it has run steadily this long.
    pub clock_jump_hold_secs: u64,
}

impl Default for ExpiryConfig {
    fn default() -> Self {
        Self {
            default_idle_secs: DEFAULT_IDLE_SECS,
            max_lifetime_secs: 0,
            touch_granularity_secs: 60,
            sweep_interval_ms: 1000,
            sweep_batch: 1000,
            clock_jump_hold_secs: 600,
        }
    }
}

impl ExpiryConfig {
    pub fn rules(&self) -> ExpiryRules {
        ExpiryRules {
            default_idle_secs: self.default_idle_secs,
            max_lifetime_ms: (self.max_lifetime_secs > 0).then(|| self.max_lifetime_secs.saturating_mul(1000)),
        }
    }
}

/// Who may connect, by the peer credentials of the socket (SO_PEERCRED).
/// The daemon's own user may always connect; with both lists empty, only it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    pub allowed_uids: Vec<u32>,
    /// Checked against the peer's primary group only (the kernel does not
    /// pass supplementary groups).
    pub allowed_gids: Vec<u32>,
}

/// TCP with TLS 1.3, beside the Unix socket. Every client presents a
/// certificate signed by `client_ca` and naming (as a DNS subject
/// alternative name) one of `allow_clients`. Relative paths are taken from
/// the data directory; `sessiond tls init` writes a CA and a server and a
/// client certificate for a first setup.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Addresses to listen on, e.g. `["10.0.0.5:7450"]`; empty: no TCP.
    pub listen: Vec<std::net::SocketAddr>,
    /// The server's certificate chain (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
    /// The CA that signs client certificates (PEM).
    pub client_ca: PathBuf,
    /// Client identities admitted: DNS names, or `"*"` for any certificate
    /// `client_ca` signed. Empty admits none.
    pub allow_clients: Vec<String>,
    /// A connection whose handshake has not finished this long after it
    /// was accepted is closed.
    pub handshake_timeout_secs: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            cert: "tls/server.pem".into(),
            key: "tls/server.key".into(),
            client_ca: "tls/ca.pem".into(),
            allow_clients: Vec::new(),
            handshake_timeout_secs: 10,
        }
    }
}

/// What happens when a user already has `max_sessions_per_user` sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitPolicy {
    /// The new session is refused with TOO_MANY_SESSIONS.
    Refuse,
    /// The user's least recently active session ends to make room.
    EvictOldest,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsersConfig {
    /// Most live sessions one user may have; 0 for no limit.
    pub max_sessions_per_user: usize,
    pub limit_policy: LimitPolicy,
    /// User agents are truncated to this many bytes.
    pub max_user_agent: usize,
    /// A MaxMind-format (GeoIP2/GeoLite2 City or Country) database; when
    /// set, user listings carry each session's country and city.
    pub geoip_db: Option<PathBuf>,
}

impl Default for UsersConfig {
    fn default() -> Self {
        Self { max_sessions_per_user: 0, limit_policy: LimitPolicy::Refuse, max_user_agent: 512, geoip_db: None }
    }
}

/// Cross-site session transfer (django-shared-session).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransferConfig {
    /// The sites that share sessions (SHARED_SESSION_SITES), as hosts.
    pub sites: Vec<String>,
    /// How long a token may take to reach its destination, 1 to 60 s.
    pub timeout_secs: u32,
    /// Clock difference allowed between hosts, at most 5 s.
    pub skew_secs: u32,
    /// Refuse tokens without browser binding (the stronger flow).
    pub require_binding: bool,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self { sites: Vec::new(), timeout_secs: 30, skew_secs: 5, require_binding: false }
    }
}

/// Sealed cookie sessions (django-cookie-sessions, signed_cookies).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CookiesConfig {
    /// Absolute lifetime of a sealed cookie session.
    pub max_age_secs: u64,
    /// Idle lifetime with the default policy.
    pub idle_secs: u32,
    /// UNSEAL returns a fresh value once a cookie was sealed this long ago.
    pub reseal_after_secs: u32,
}

impl Default for CookiesConfig {
    fn default() -> Self {
        Self { max_age_secs: u64::from(DEFAULT_IDLE_SECS), idle_secs: DEFAULT_IDLE_SECS, reseal_after_secs: 60 }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path: path.to_owned(), message },
            other => other,
        })
    }

    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Self =
            toml::from_str(text).map_err(|e| ConfigError::Parse { path: PathBuf::new(), message: e.to_string() })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.socket_mode()?;
        self.socket_dir_mode()?;
        if self.limits.idle_timeout_secs == 0
            || self.limits.frame_timeout_secs == 0
            || self.limits.write_timeout_secs == 0
            || self.limits.max_output_bytes == 0
            || self.limits.max_output_total_bytes < self.limits.max_output_bytes
        {
            return Err(ConfigError::Invalid(
                "limits.idle_timeout_secs, frame_timeout_secs, write_timeout_secs and max_output_bytes must be \
                 positive, and max_output_total_bytes at least max_output_bytes"
                    .into(),
            ));
        }
        let l = &self.limits;
        if l.max_frame == 0 || l.max_frame > sessiond_protocol::MAX_BODY_HARD_LIMIT {
            return Err(ConfigError::Invalid(format!(
                "limits.max_frame must be 1..={}",
                sessiond_protocol::MAX_BODY_HARD_LIMIT
            )));
        }
        if l.max_session_bytes >= l.max_frame {
            return Err(ConfigError::Invalid("limits.max_session_bytes must be below limits.max_frame".into()));
        }
        if l.max_batch_bytes == 0 || l.max_batch_bytes > crate::wal::MAX_FRAME / 4 {
            return Err(ConfigError::Invalid(format!(
                "limits.max_batch_bytes must be 1..={} (a quarter of the log's frame cap)",
                crate::wal::MAX_FRAME / 4
            )));
        }
        if l.max_queued_write_bytes < l.max_frame as usize {
            return Err(ConfigError::Invalid("limits.max_queued_write_bytes must be at least limits.max_frame".into()));
        }
        if l.max_inflight == 0 || l.max_batch == 0 || l.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "limits.max_inflight, max_batch and max_connections must be positive".into(),
            ));
        }
        if self.tls.handshake_timeout_secs == 0 {
            return Err(ConfigError::Invalid("tls.handshake_timeout_secs must be positive".into()));
        }
        if !self.tls.listen.is_empty() && self.tls.allow_clients.is_empty() {
            return Err(ConfigError::Invalid(
                "tls.listen is set but tls.allow_clients is empty: no client could connect".into(),
            ));
        }
        if let Some(addr) = self.insecure_plaintext_tcp_for_testing {
            if !addr.ip().is_loopback() {
                return Err(ConfigError::Invalid(format!(
                    "insecure_plaintext_tcp_for_testing = {addr}: plain TCP is for loopback testing only"
                )));
            }
        }
        let e = &self.expiry;
        if e.default_idle_secs == 0 || e.sweep_interval_ms == 0 || e.sweep_batch == 0 {
            return Err(ConfigError::Invalid(
                "expiry.default_idle_secs, sweep_interval_ms and sweep_batch must be positive".into(),
            ));
        }
        let t = &self.transfer;
        if !(1..=60).contains(&t.timeout_secs) || t.skew_secs > MAX_SKEW_SECS {
            return Err(ConfigError::Invalid(
                "transfer.timeout_secs must be 1..=60 and transfer.skew_secs 0..=5".into(),
            ));
        }
        for site in &t.sites {
            if crate::tokens::canonical_host(site).as_deref() != Some(site.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "transfer.sites: {site:?} is not a lowercase host name (like \"www.example.com\")"
                )));
            }
        }
        if self.cookies.max_age_secs == 0 {
            return Err(ConfigError::Invalid("cookies.max_age_secs must be positive".into()));
        }
        if self.durability.mode == DurabilityMode::Relaxed && self.durability.flush_interval_ms == 0 {
            return Err(ConfigError::Invalid("durability.flush_interval_ms must be positive".into()));
        }
        if !(1..=4096).contains(&self.durability.checkpoint_mb) || self.durability.checkpoint_secs == 0 {
            return Err(ConfigError::Invalid(
                "durability.checkpoint_mb must be 1 to 4096 and durability.checkpoint_secs positive".into(),
            ));
        }
        Ok(())
    }

    pub fn socket_path(&self) -> PathBuf {
        self.socket.clone().unwrap_or_else(|| self.data_dir.join("sessiond.sock"))
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("sessions.redb")
    }

    pub fn keyring_path(&self) -> PathBuf {
        self.keyring.clone().unwrap_or_else(|| self.data_dir.join("keyring"))
    }

    pub fn token_config(&self) -> crate::tokens::TokenConfig {
        crate::tokens::TokenConfig {
            keyring: self.keyring_path(),
            sites: self.transfer.sites.clone(),
            transfer_ttl_ms: u64::from(self.transfer.timeout_secs) * 1000,
            skew_ms: u64::from(self.transfer.skew_secs) * 1000,
            require_binding: self.transfer.require_binding,
            cookie_max_age_ms: self.cookies.max_age_secs.saturating_mul(1000),
            cookie_idle_ms: u64::from(self.cookies.idle_secs) * 1000,
            reseal_after_ms: u64::from(self.cookies.reseal_after_secs) * 1000,
        }
    }

    pub fn socket_mode(&self) -> Result<u32, ConfigError> {
        octal_mode("socket_mode", &self.socket_mode)
    }

    pub fn socket_dir_mode(&self) -> Result<u32, ConfigError> {
        octal_mode("socket_dir_mode", &self.socket_dir_mode)
    }

    /// sessiond shares its host with the web servers it serves, so by
    /// default it leaves half the cores to them. Measured on two cores
    /// shared with the load generator (`get`, 50 connections): two loops
    /// served ~30% more GETs than one, but their p99 was ~2.3x worse, the
    /// cost of more busy threads than cores.
    pub fn threads(&self) -> usize {
        if self.threads > 0 {
            return self.threads;
        }
        std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
    }

    /// The session cache's budget. By default an eighth of the memory this
    /// process may use: the machine's, or its cgroup's limit if lower (a
    /// service unit's `MemoryMax`). A session store serves from memory
    /// what fits; a fixed default would send most reads of a large session
    /// set to redb on a machine that has room for all of it (at a million
    /// sessions, a read that misses costs ~10 µs more). An eighth leaves
    /// the rest to the web servers sharing the host, as [`Config::threads`]
    /// leaves them half the cores. The budget caps the cache, it is not
    /// taken up front.
    pub fn cache_bytes(&self) -> usize {
        if self.cache_bytes > 0 {
            return self.cache_bytes;
        }
        usable_memory().map_or(FALLBACK_CACHE_BYTES, |m| (m / 8).max(MIN_AUTO_CACHE_BYTES))
    }

    /// `None` in strict mode; the longest a relaxed write may stay unsynced in the log.
    pub fn flush_interval(&self) -> Option<Duration> {
        match self.durability.mode {
            DurabilityMode::Strict => None,
            DurabilityMode::Relaxed => Some(Duration::from_millis(self.durability.flush_interval_ms)),
        }
    }
}

/// The cache budget when the machine's memory cannot be read.
const FALLBACK_CACHE_BYTES: usize = 256 << 20;
/// The least an automatic cache budget is, however small the limit.
const MIN_AUTO_CACHE_BYTES: usize = 32 << 20;

/// The memory this process may use: the machine's (`MemTotal`), or less if
/// a cgroup limit on its group or an ancestor's is lower (v2 `memory.max`,
/// or v1 `memory.limit_in_bytes`).
fn usable_memory() -> Option<usize> {
    let total = mem_total(&std::fs::read_to_string("/proc/meminfo").ok()?)?;
    let groups = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut files = Vec::new();
    // Lines are "id:controllers:/path"; v2's is "0::/path".
    for line in groups.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let (root, file) = match (id, controllers) {
            ("0", "") => ("/sys/fs/cgroup", "memory.max"),
            (_, c) if c.split(',').any(|c| c == "memory") => ("/sys/fs/cgroup/memory", "memory.limit_in_bytes"),
            _ => continue,
        };
        for dir in Path::new(path.trim().trim_start_matches('/')).ancestors() {
            files.push(Path::new(root).join(dir).join(file));
        }
    }
    Some(lowest_limit(total, files.iter().filter_map(|f| std::fs::read_to_string(f).ok())))
}

fn mem_total(meminfo: &str) -> Option<usize> {
    let kib = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:"))?.trim().strip_suffix("kB")?.trim();
    kib.parse::<usize>().ok().map(|k| k.saturating_mul(1024))
}

/// `total`, or the lowest of the limit files' contents ("max" is no limit).
fn lowest_limit(total: usize, limits: impl IntoIterator<Item = String>) -> usize {
    limits.into_iter().filter_map(|m| m.trim().parse::<usize>().ok()).fold(total, usize::min)
}

/// The top-level settings that differ between two configurations.
pub fn changed_sections(a: &Config, b: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    macro_rules! compare {
        ($($field:ident),*) => {$(
            if a.$field != b.$field {
                out.push(stringify!($field));
            }
        )*};
    }
    compare!(
        data_dir,
        socket,
        socket_mode,
        socket_dir_mode,
        socket_group,
        access,
        threads,
        cache_bytes,
        db_cache_bytes,
        log,
        durability,
        limits,
        expiry,
        users,
        transfer,
        cookies,
        keyring
    );
    out
}

fn octal_mode(name: &str, text: &str) -> Result<u32, ConfigError> {
    match u32::from_str_radix(text.trim_start_matches("0o"), 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(ConfigError::Invalid(format!("{name} {text:?} is not an octal mode"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_the_embedded_default() {
        assert_eq!(Config::from_toml("").unwrap(), Config::default());
    }

    #[test]
    fn plain_tcp_is_for_loopback_only_and_tls_must_admit_someone() {
        let plain = |addr: &str| Config::from_toml(&format!("insecure_plaintext_tcp_for_testing = {addr:?}\n"));
        assert!(plain("127.0.0.1:7451").is_ok());
        assert!(plain("[::1]:7451").is_ok());
        for open in ["0.0.0.0:7451", "10.0.0.5:7451", "[::]:7451"] {
            let err = plain(open).unwrap_err().to_string();
            assert!(err.contains("loopback"), "{open}: {err}");
        }
        let err = Config::from_toml("[tls]\nlisten = [\"127.0.0.1:7450\"]\n").unwrap_err().to_string();
        assert!(err.contains("allow_clients"), "{err}");
        let tls = Config::from_toml("[tls]\nlisten = [\"127.0.0.1:7450\"]\nallow_clients = [\"web-1\"]\n").unwrap();
        assert_eq!(tls.tls.client_ca, PathBuf::from("tls/ca.pem"));
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let err = Config::from_toml("[limits]\nmax_frmae = 10\n").unwrap_err().to_string();
        assert!(err.contains("max_frmae"), "{err}");
        let err = Config::from_toml("colour = 1\n").unwrap_err().to_string();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn relaxed_durability_and_mode_parse() {
        let c =
            Config::from_toml("socket_mode = \"0600\"\n[durability]\nmode = \"relaxed\"\nflush_interval_ms = 250\n")
                .unwrap();
        assert_eq!(c.socket_mode().unwrap(), 0o600);
        assert_eq!(c.flush_interval(), Some(Duration::from_millis(250)));
    }

    #[test]
    fn the_cache_budget_is_an_eighth_of_usable_memory_unless_set() {
        let meminfo = "MemTotal:       24576000 kB\nMemFree:         1000 kB\n";
        assert_eq!(mem_total(meminfo), Some(24_576_000 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
        // A service's MemoryMax, under a slice without a limit.
        let limits = ["max\n".to_owned(), "2147483648\n".to_owned()];
        assert_eq!(lowest_limit(24_576_000 * 1024, limits), 2 << 30);
        assert_eq!(lowest_limit(1 << 30, ["max".to_owned()]), 1 << 30);

        let memory = usable_memory().expect("/proc/meminfo is readable on Linux");
        assert_eq!(Config::default().cache_bytes(), (memory / 8).max(MIN_AUTO_CACHE_BYTES));
        assert_eq!(Config::from_toml("cache_bytes = 1000000").unwrap().cache_bytes(), 1_000_000);
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(Config::from_toml("socket_mode = \"0999\"").is_err());
        assert!(Config::from_toml("[limits]\nmax_frame = 0").is_err());
        assert!(Config::from_toml("[limits]\nmax_frame = 100\nmax_session_bytes = 200").is_err());
    }
}
