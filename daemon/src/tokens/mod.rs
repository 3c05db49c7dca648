//! Transfer tokens (a session handed to another site) and sealed cookies
//! (a whole session, encrypted, in the cookie), made and checked by the
//! daemon, which alone holds the keys.
//!
//! Every rejection answers the caller with the same TOKEN_REJECTED; the
//! reason ([`Reject`]) goes to the log and to a counter, never the token.

mod cookie;
mod envelope;
pub mod keyring;
mod transfer;

#[cfg(test)]
mod tests;

pub use cookie::{CookieClaims, SealError};
pub use keyring::{Keyring, KeyringError};
pub use transfer::TransferClaims;

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;

use self::keyring::Purpose;

/// Why a token or cookie was refused. For logs and counters only: the
/// caller always gets the same answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Too long, not base64url, or too short to hold an envelope.
    Length,
    /// Unknown version, or a token of another purpose.
    Version,
    /// Unknown key id, or a retired key past its grace.
    Key,
    /// The AEAD check failed: forged, altered, or meant for another audience.
    Auth,
    /// Claims that do not parse exactly.
    Claims,
    /// Source or destination host not allowed.
    Host,
    /// Issued in the future, expired, or with too long a life.
    Time,
    /// The browser-binding state is missing or wrong.
    Binding,
    /// A transfer token presented a second time.
    Replay,
    /// The session behind a transfer token is gone.
    Session,
    /// A sealed cookie revoked by REVOKE_SEALED or REVOKE_USER.
    Revoked,
}

impl Reject {
    pub const ALL: [Reject; 11] = [
        Self::Length,
        Self::Version,
        Self::Key,
        Self::Auth,
        Self::Claims,
        Self::Host,
        Self::Time,
        Self::Binding,
        Self::Replay,
        Self::Session,
        Self::Revoked,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Length => "length",
            Self::Version => "version",
            Self::Key => "key",
            Self::Auth => "auth",
            Self::Claims => "claims",
            Self::Host => "host",
            Self::Time => "time",
            Self::Binding => "binding",
            Self::Replay => "replay",
            Self::Session => "session",
            Self::Revoked => "revoked",
        }
    }
}

/// Tokens are at most this long in text; checked before decoding.
pub const MAX_TOKEN_CHARS: usize = 512;
/// A cookie, name and `=` included, must fit browsers' 4 KiB (RFC 6265 §6.1).
pub const MAX_COOKIE_BYTES: usize = 4096;

#[derive(Debug, Clone)]
pub struct TokenConfig {
    pub keyring: PathBuf,
    /// Canonical hosts that share sessions (SHARED_SESSION_SITES).
    pub sites: Vec<String>,
    pub transfer_ttl_ms: u64,
    /// Allowed clock difference between hosts.
    pub skew_ms: u64,
    /// Refuse transfer tokens without browser binding.
    pub require_binding: bool,
    /// Absolute lifetime of a sealed cookie session.
    pub cookie_max_age_ms: u64,
    /// Idle lifetime of a sealed cookie with the default policy.
    pub cookie_idle_ms: u64,
    /// Re-seal a cookie once it was last sealed this long ago.
    pub reseal_after_ms: u64,
}

impl TokenConfig {
    /// How long after retirement a key still opens transfer tokens.
    fn transfer_grace_ms(&self) -> u64 {
        self.transfer_ttl_ms + 2 * self.skew_ms
    }
}

/// The key ring and the rules: everything that makes and opens tokens.
#[derive(Debug)]
pub struct Tokens {
    ring: RwLock<Keyring>,
    config: RwLock<Arc<TokenConfig>>,
}

impl Tokens {
    pub fn new(ring: Keyring, config: TokenConfig) -> Self {
        Self { ring: RwLock::new(ring), config: RwLock::new(Arc::new(config)) }
    }

    /// The rules in force; a reload may replace them between requests.
    pub fn config(&self) -> Arc<TokenConfig> {
        self.config.read().clone()
    }

    /// SIGHUP: re-reads the key ring and takes the new rules. On any error,
    /// a missing key ring included, the old keys and rules stay in force.
    pub fn reload(&self, config: TokenConfig) -> Result<(), KeyringError> {
        let ring = Keyring::open(&config.keyring)?;
        *self.ring.write() = ring;
        *self.config.write() = Arc::new(config);
        Ok(())
    }

    /// Rotates in place: new tokens use a fresh key at once, tokens in
    /// flight keep opening under the old one for their longest life.
    pub fn rotate(&self, now_ms: u64) -> Result<u32, KeyringError> {
        let config = self.config();
        let keep = config.cookie_max_age_ms.max(config.transfer_grace_ms());
        self.ring.write().rotate(now_ms, keep)
    }

    /// Whether `host` is one of the configured sites.
    pub fn is_site(&self, host: &str) -> bool {
        self.config.read().sites.iter().any(|s| s == host)
    }

    pub fn issue_transfer(&self, claims: &TransferClaims) -> Result<String, getrandom::Error> {
        envelope::seal(&self.ring.read(), Purpose::Transfer, &transfer::audience(&claims.dst), &claims.encode())
    }

    /// Opens and checks a transfer token at `host` (all but single use and
    /// the session, which the writer checks in the redeeming transaction).
    pub fn open_transfer(
        &self,
        token: &str,
        host: &str,
        state: Option<&[u8]>,
        now_ms: u64,
    ) -> Result<(TransferClaims, [u8; envelope::NONCE_LEN]), Reject> {
        let ring = self.ring.read();
        let grace = self.config().transfer_grace_ms();
        let opened =
            envelope::open(&ring, Purpose::Transfer, &transfer::audience(host), token, MAX_TOKEN_CHARS, now_ms, grace)?;
        let claims = TransferClaims::decode(&opened.plaintext)?;
        claims.check(self, host, state, now_ms)?;
        Ok((claims, opened.nonce))
    }

    pub fn seal_cookie(&self, claims: &CookieClaims, name: &str, host: &str) -> Result<String, SealError> {
        let plaintext = claims.encode();
        let size = name.len() + 1 + envelope::encoded_len(plaintext.len());
        if size > MAX_COOKIE_BYTES {
            return Err(SealError::TooLarge { size });
        }
        envelope::seal(&self.ring.read(), Purpose::Cookie, &cookie::audience(name, host), &plaintext)
            .map_err(SealError::Random)
    }

    /// Opens a sealed cookie and checks its times; epoch and deny-list checks
    /// need the store and are the caller's.
    pub fn open_cookie(&self, value: &str, name: &str, host: &str, now_ms: u64) -> Result<CookieClaims, Reject> {
        let config = self.config();
        let ring = self.ring.read();
        let opened = envelope::open(
            &ring,
            Purpose::Cookie,
            &cookie::audience(name, host),
            value,
            MAX_COOKIE_BYTES,
            now_ms,
            config.cookie_max_age_ms,
        )?;
        let claims = CookieClaims::decode(&opened.plaintext)?;
        claims.check_times(now_ms, config.skew_ms)?;
        Ok(claims)
    }
}

/// Hosts are compared in canonical form: lowercase ASCII letters, digits,
/// dots, hyphens and an optional port; at most 253 bytes.
pub fn canonical_host(host: &str) -> Option<String> {
    let host = host.trim().to_ascii_lowercase();
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.:".contains(&b));
    ok.then_some(host)
}
