//! The token envelope shared by transfer tokens and sealed cookies:
//!
//! ```text
//! offset size
//! 0      1    version  0x01
//! 1      1    purpose  0x01 transfer, 0x02 sealed cookie
//! 2      4    kid      u32 big-endian: which master key
//! 6      24   nonce    from the OS CSPRNG; also the token's id
//! 30     n    ciphertext
//! 30+n   16   Poly1305 tag
//! ```
//!
//! XChaCha20-Poly1305 under the purpose's subkey of key `kid`, with
//! associated data = the 30-byte header followed by the audience (the
//! destination host for a transfer token; cookie name, 0x00, host for a
//! cookie). The audience is authenticated but not carried, so a token
//! opens only where it was meant to. Carried as base64url without padding.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::XNonce;
use chacha20poly1305::aead::{Aead, Payload};

use super::Reject;
use super::keyring::{Keyring, Purpose};

pub const VERSION: u8 = 0x01;
pub const HEADER_LEN: usize = 30;
pub const TAG_LEN: usize = 16;
pub const NONCE_LEN: usize = 24;

/// A token opened and authenticated, before its claims are checked.
#[derive(Debug)]
pub struct Opened {
    pub nonce: [u8; NONCE_LEN],
    pub plaintext: Vec<u8>,
}

/// Seals `plaintext` under the active key. Returns the base64url text.
pub fn seal(ring: &Keyring, purpose: Purpose, audience: &[u8], plaintext: &[u8]) -> Result<String, getrandom::Error> {
    let key = ring.active();
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce)?;
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&[VERSION, purpose as u8]);
    out.extend_from_slice(&key.kid.to_be_bytes());
    out.extend_from_slice(&nonce);
    let aad = [&out[..HEADER_LEN], audience].concat();
    let sealed = key
        .cipher(purpose)
        .encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: &aad })
        .expect("encryption of a bounded message cannot fail");
    out.extend_from_slice(&sealed);
    Ok(URL_SAFE_NO_PAD.encode(out))
}

/// Opens a token of `purpose` meant for `audience`, in this order, each
/// failure a typed reason for logs and counters only: length, version and
/// purpose, key id (active, or retired less than `grace_ms` ago), then the
/// authenticity check (constant-time, inside the AEAD).
pub fn open(
    ring: &Keyring,
    purpose: Purpose,
    audience: &[u8],
    text: &str,
    max_chars: usize,
    now_ms: u64,
    grace_ms: u64,
) -> Result<Opened, Reject> {
    if text.len() > max_chars {
        return Err(Reject::Length);
    }
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| Reject::Length)?;
    if bytes.len() < HEADER_LEN + TAG_LEN {
        return Err(Reject::Length);
    }
    if bytes[0] != VERSION || bytes[1] != purpose as u8 {
        return Err(Reject::Version);
    }
    let kid = u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
    let key = ring.verifying(kid, now_ms, grace_ms).ok_or(Reject::Key)?;
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&bytes[6..HEADER_LEN]);
    let aad = [&bytes[..HEADER_LEN], audience].concat();
    let plaintext = key
        .cipher(purpose)
        .decrypt(&XNonce::from(nonce), Payload { msg: &bytes[HEADER_LEN..], aad: &aad })
        .map_err(|_| Reject::Auth)?;
    Ok(Opened { nonce, plaintext })
}

/// Encoded length (base64url, no padding) of a token with `plaintext_len`
/// bytes of claims.
pub fn encoded_len(plaintext_len: usize) -> usize {
    ((HEADER_LEN + plaintext_len + TAG_LEN) * 4).div_ceil(3)
}

/// A strict reader for claims: exact lengths, no trailing bytes.
pub struct Reader<'a>(pub &'a [u8]);

impl Reader<'_> {
    pub fn bytes<const N: usize>(&mut self) -> Result<[u8; N], Reject> {
        let (head, rest) = self.0.split_first_chunk::<N>().ok_or(Reject::Claims)?;
        self.0 = rest;
        Ok(*head)
    }

    pub fn u8(&mut self) -> Result<u8, Reject> {
        Ok(self.bytes::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16, Reject> {
        Ok(u16::from_be_bytes(self.bytes()?))
    }

    pub fn u32(&mut self) -> Result<u32, Reject> {
        Ok(u32::from_be_bytes(self.bytes()?))
    }

    pub fn u64(&mut self) -> Result<u64, Reject> {
        Ok(u64::from_be_bytes(self.bytes()?))
    }

    pub fn slice(&mut self, len: usize) -> Result<&[u8], Reject> {
        if self.0.len() < len {
            return Err(Reject::Claims);
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    pub fn text(&mut self, len: usize) -> Result<String, Reject> {
        String::from_utf8(self.slice(len)?.to_vec()).map_err(|_| Reject::Claims)
    }

    pub fn finish(self) -> Result<(), Reject> {
        if self.0.is_empty() { Ok(()) } else { Err(Reject::Claims) }
    }
}
