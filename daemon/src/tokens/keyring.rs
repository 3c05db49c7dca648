//! The key ring: master keys with public ids, in a file only the daemon's
//! user may read.
//!
//! File format, one key per line after the header:
//!
//! ```text
//! sessiond-keyring v1
//! <kid: 8 hex digits> active <added_ms> <key: 43 base64url chars>
//! <kid> verify <retired_ms> <key>
//! ```
//!
//! New tokens use the one `active` key. A `verify` key still opens tokens
//! and cookies made before it was retired, until its grace period ends.
//! Each purpose gets its own subkey (HKDF-SHA256), so a transfer token can
//! never open as a sealed cookie or the reverse.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;
use hkdf::Hkdf;
use rustix::fs::{Mode, OFlags};
use sha2::Sha256;
use zeroize::Zeroizing;

const HEADER: &str = "sessiond-keyring v1";

/// What a token is for: bound into the envelope and into the subkey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Purpose {
    Transfer = 0x01,
    Cookie = 0x02,
}

impl Purpose {
    fn info(self) -> &'static [u8] {
        match self {
            Self::Transfer => b"sessiond/v1/transfer",
            Self::Cookie => b"sessiond/v1/cookie",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Active { added_ms: u64 },
    Verify { retired_ms: u64 },
}

/// One master key and the ciphers of its subkeys.
pub struct Key {
    pub kid: u32,
    pub state: KeyState,
    master: Zeroizing<[u8; 32]>,
    transfer: XChaCha20Poly1305,
    cookie: XChaCha20Poly1305,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("kid", &self.kid).field("state", &self.state).finish_non_exhaustive()
    }
}

impl Key {
    fn new(kid: u32, state: KeyState, master: Zeroizing<[u8; 32]>) -> Self {
        let hkdf = Hkdf::<Sha256>::new(None, master.as_slice());
        let cipher = |purpose: Purpose| {
            let mut sub = Zeroizing::new([0u8; 32]);
            hkdf.expand(purpose.info(), sub.as_mut_slice()).expect("32 bytes is a valid HKDF-SHA256 length");
            XChaCha20Poly1305::new_from_slice(sub.as_slice()).expect("32-byte key")
        };
        Self { kid, state, transfer: cipher(Purpose::Transfer), cookie: cipher(Purpose::Cookie), master }
    }

    pub fn cipher(&self, purpose: Purpose) -> &XChaCha20Poly1305 {
        match purpose {
            Purpose::Transfer => &self.transfer,
            Purpose::Cookie => &self.cookie,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    #[error(
        "key ring {path} is missing; restore it (a restart without it makes a new ring, and every sealed cookie \
         and token in flight stops opening)"
    )]
    Missing { path: PathBuf },
    #[error("key ring {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "key ring {path} is readable by group or others (mode {mode:o}); it must be 0600 or stricter: chmod 600 {path}"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("key ring {path} is a symlink or not a regular file; refusing it")]
    NotAFile { path: PathBuf },
    #[error("key ring {path} belongs to uid {owner}, not to this daemon's user ({uid}) or root")]
    Owner { path: PathBuf, owner: u32, uid: u32 },
    #[error("key ring {path} is malformed at line {line}: {why}")]
    Malformed { path: PathBuf, line: usize, why: &'static str },
    #[error("no randomness for a new key: {0}")]
    Random(getrandom::Error),
}

#[derive(Debug)]
pub struct Keyring {
    path: PathBuf,
    keys: Vec<Key>,
}

impl Keyring {
    /// Loads the key ring at `path`, creating it with one fresh key if it
    /// does not exist. Refuses a file others can read, a symlink, a file of
    /// another user, or a malformed one.
    pub fn open_or_create(path: &Path, now_ms: u64) -> Result<Self, KeyringError> {
        match Self::open(path) {
            Err(KeyringError::Missing { .. }) => {
                let ring =
                    Self { path: path.to_owned(), keys: vec![fresh_key(KeyState::Active { added_ms: now_ms })?] };
                ring.save()?;
                tracing::info!(path = %path.display(), kid = ring.active().kid, "created a new key ring");
                Ok(ring)
            }
            other => other,
        }
    }

    /// Loads the key ring at `path`, which must exist: on reload, a missing
    /// ring is an operator's mistake, and a new one would void every sealed
    /// cookie and token in flight. Checks as [`Keyring::open_or_create`].
    pub fn open(path: &Path) -> Result<Self, KeyringError> {
        let io = |source| KeyringError::Io { path: path.to_owned(), source };
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyringError::Missing { path: path.to_owned() });
            }
            Err(e) => return Err(io(e)),
            Ok(_) => {}
        }
        // O_NOFOLLOW, then check the open descriptor, not the path.
        let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()).map_err(
            |e| match e {
                rustix::io::Errno::LOOP => KeyringError::NotAFile { path: path.to_owned() },
                e => io(e.into()),
            },
        )?;
        let mut file = File::from(fd);
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(KeyringError::NotAFile { path: path.to_owned() });
        }
        if meta.mode() & 0o077 != 0 {
            return Err(KeyringError::Permissions { path: path.to_owned(), mode: meta.mode() & 0o777 });
        }
        let uid = rustix::process::geteuid().as_raw();
        if meta.uid() != uid && meta.uid() != 0 {
            return Err(KeyringError::Owner { path: path.to_owned(), owner: meta.uid(), uid });
        }
        let mut text = Zeroizing::new(String::new());
        file.read_to_string(&mut text).map_err(io)?;
        Self::parse(path, &text)
    }

    fn parse(path: &Path, text: &str) -> Result<Self, KeyringError> {
        let bad = |line: usize, why| KeyringError::Malformed { path: path.to_owned(), line, why };
        let mut lines = text.lines().enumerate();
        if lines.next().map(|(_, l)| l) != Some(HEADER) {
            return Err(bad(1, "the first line must be `sessiond-keyring v1`"));
        }
        let mut keys = Vec::new();
        for (i, line) in lines {
            let n = i + 1;
            let parts: Vec<&str> = line.split(' ').collect();
            let [kid, state, when, key] = parts[..] else { return Err(bad(n, "expected 4 fields")) };
            let kid = u32::from_str_radix(kid, 16).map_err(|_| bad(n, "the key id is not 8 hex digits"))?;
            let when: u64 = when.parse().map_err(|_| bad(n, "the time is not a number"))?;
            let state = match state {
                "active" => KeyState::Active { added_ms: when },
                "verify" => KeyState::Verify { retired_ms: when },
                _ => return Err(bad(n, "the state is neither `active` nor `verify`")),
            };
            let mut master = Zeroizing::new([0u8; 32]);
            if key.len() != 43 || URL_SAFE_NO_PAD.decode_slice(key, master.as_mut_slice()).ok() != Some(32) {
                return Err(bad(n, "the key is not 32 bytes of base64url"));
            }
            if keys.iter().any(|k: &Key| k.kid == kid) {
                return Err(bad(n, "a key id appears twice"));
            }
            keys.push(Key::new(kid, state, master));
        }
        if keys.iter().filter(|k| matches!(k.state, KeyState::Active { .. })).count() != 1 {
            return Err(bad(1, "there must be exactly one active key"));
        }
        Ok(Self { path: path.to_owned(), keys })
    }

    /// Writes the ring: a new file, mode 0600 from creation, synced, then
    /// renamed over the old one, so a crash leaves the old or the new ring.
    fn save(&self) -> Result<(), KeyringError> {
        let io = |source| KeyringError::Io { path: self.path.clone(), source };
        let tmp = self.path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut text = Zeroizing::new(format!("{HEADER}\n"));
        for key in &self.keys {
            let (state, when) = match key.state {
                KeyState::Active { added_ms } => ("active", added_ms),
                KeyState::Verify { retired_ms } => ("verify", retired_ms),
            };
            let encoded = Zeroizing::new(URL_SAFE_NO_PAD.encode(key.master.as_slice()));
            text.push_str(&format!("{:08x} {state} {when} {}\n", key.kid, encoded.as_str()));
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nofollow_flag())
            .open(&tmp)
            .map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Ok(())
    }

    pub fn active(&self) -> &Key {
        self.keys.iter().find(|k| matches!(k.state, KeyState::Active { .. })).expect("one active key, checked at load")
    }

    /// The key `kid` if it may still open tokens of a kind whose longest
    /// life is `grace_ms`.
    pub fn verifying(&self, kid: u32, now_ms: u64, grace_ms: u64) -> Option<&Key> {
        self.keys.iter().find(|k| k.kid == kid).filter(|k| match k.state {
            KeyState::Active { .. } => true,
            KeyState::Verify { retired_ms } => now_ms < retired_ms.saturating_add(grace_ms),
        })
    }

    /// Adds a fresh active key; the old one verifies until `keep_ms` after
    /// now, and keys past their grace are dropped. Returns the new kid.
    pub fn rotate(&mut self, now_ms: u64, keep_ms: u64) -> Result<u32, KeyringError> {
        let mut next = fresh_key(KeyState::Active { added_ms: now_ms })?;
        while self.keys.iter().any(|k| k.kid == next.kid) {
            next = fresh_key(KeyState::Active { added_ms: now_ms })?;
        }
        let mut keys = std::mem::take(&mut self.keys);
        for key in &mut keys {
            if let KeyState::Active { .. } = key.state {
                key.state = KeyState::Verify { retired_ms: now_ms };
            }
        }
        keys.retain(
            |k| matches!(k.state, KeyState::Verify { retired_ms } if now_ms < retired_ms.saturating_add(keep_ms)),
        );
        keys.push(next);
        let kid = keys.last().expect("just pushed").kid;
        let old = std::mem::replace(&mut self.keys, keys);
        if let Err(e) = self.save() {
            self.keys = old;
            return Err(e);
        }
        Ok(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn nofollow_flag() -> i32 {
    i32::try_from(OFlags::NOFOLLOW.bits()).unwrap_or(0)
}

fn fresh_key(state: KeyState) -> Result<Key, KeyringError> {
    let mut master = Zeroizing::new([0u8; 32]);
    getrandom::fill(master.as_mut_slice()).map_err(KeyringError::Random)?;
    let mut kid = [0u8; 4];
    getrandom::fill(&mut kid).map_err(KeyringError::Random)?;
    Ok(Key::new(u32::from_be_bytes(kid), state, master))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_new_ring_is_private_and_reloads_to_the_same_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring");
        let ring = Keyring::open_or_create(&path, 1_000).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let again = Keyring::open_or_create(&path, 2_000).unwrap();
        assert_eq!(again.active().kid, ring.active().kid);
        assert_eq!(*again.active().master, *ring.active().master);
    }

    #[test]
    fn unsafe_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring");
        Keyring::open_or_create(&path, 0).unwrap();
        for mode in [0o644, 0o640, 0o604] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = Keyring::open_or_create(&path, 0).unwrap_err().to_string();
            assert!(err.contains("readable by group or others"), "{mode:o}: {err}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(matches!(Keyring::open_or_create(&link, 0), Err(KeyringError::NotAFile { .. })));
        for text in ["", "sessiond-keyring v2\n", "sessiond-keyring v1\n", "sessiond-keyring v1\nzz active 1 abc\n"] {
            std::fs::write(&path, text).unwrap();
            assert!(matches!(Keyring::open_or_create(&path, 0), Err(KeyringError::Malformed { .. })), "{text:?}");
        }
    }

    #[test]
    fn rotation_keeps_old_keys_for_their_grace_then_drops_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut ring = Keyring::open_or_create(&dir.path().join("keyring"), 0).unwrap();
        let old = ring.active().kid;
        let new = ring.rotate(10_000, 60_000).unwrap();
        assert_ne!(old, new);
        assert_eq!(ring.active().kid, new);
        assert!(ring.verifying(old, 69_999, 60_000).is_some());
        assert!(ring.verifying(old, 70_000, 60_000).is_none());
        let unknown = (0u32..).find(|k| *k != old && *k != new).unwrap();
        assert!(ring.verifying(unknown, 0, u64::MAX).is_none());
        ring.rotate(200_000, 60_000).unwrap();
        assert_eq!(ring.len(), 2, "the first key's grace is over");
        let reloaded = Keyring::open_or_create(&dir.path().join("keyring"), 0).unwrap();
        assert_eq!(reloaded.active().kid, ring.active().kid);
    }
}
