//! Transfer token claims (purpose 0x01). Plaintext, exact length:
//!
//! ```text
//! iat_ms   u64 BE   issued at (daemon clock)
//! exp_ms   u64 BE   iat_ms + timeout (at most 60 s)
//! src      u8 length, then the source host
//! dst      u8 length, then the destination host (also in the AAD)
//! session  32 bytes: the source session key
//! bind     32 bytes: SHA-256 of the browser-binding state, or zeros
//! ```

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::envelope::Reader;
use super::{Reject, Tokens};

/// Tokens never live longer than this, whatever the configuration.
pub const MAX_TTL_MS: u64 = 60_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferClaims {
    pub iat_ms: u64,
    pub exp_ms: u64,
    pub src: String,
    pub dst: String,
    pub session: [u8; 32],
    /// All zeros: no browser binding.
    pub bind: [u8; 32],
}

pub fn audience(dst: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + dst.len());
    out.push(u8::try_from(dst.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(dst.as_bytes());
    out
}

impl TransferClaims {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 2 + self.src.len() + self.dst.len() + 64);
        out.extend_from_slice(&self.iat_ms.to_be_bytes());
        out.extend_from_slice(&self.exp_ms.to_be_bytes());
        for host in [&self.src, &self.dst] {
            out.push(u8::try_from(host.len()).expect("hosts are at most 253 bytes"));
            out.extend_from_slice(host.as_bytes());
        }
        out.extend_from_slice(&self.session);
        out.extend_from_slice(&self.bind);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, Reject> {
        let mut r = Reader(bytes);
        let iat_ms = r.u64()?;
        let exp_ms = r.u64()?;
        let src_len = usize::from(r.u8()?);
        let src = r.text(src_len)?;
        let dst_len = usize::from(r.u8()?);
        let dst = r.text(dst_len)?;
        let claims = Self { iat_ms, exp_ms, src, dst, session: r.bytes()?, bind: r.bytes()? };
        r.finish()?;
        Ok(claims)
    }

    /// Hosts, time window and browser binding, in that order.
    pub fn check(&self, tokens: &Tokens, host: &str, state: Option<&[u8]>, now_ms: u64) -> Result<(), Reject> {
        // The AEAD already bound the token to `host`; checking again is
        // defence in depth.
        if !tokens.is_site(&self.src) || self.src == self.dst || self.dst != host || !tokens.is_site(host) {
            return Err(Reject::Host);
        }
        let config = tokens.config();
        let skew = config.skew_ms;
        let max_ttl = config.transfer_ttl_ms.min(MAX_TTL_MS);
        if self.iat_ms > now_ms.saturating_add(skew)
            || now_ms > self.exp_ms.saturating_add(skew)
            || self.exp_ms.saturating_sub(self.iat_ms) > max_ttl
            || self.exp_ms < self.iat_ms
        {
            return Err(Reject::Time);
        }
        let unbound = bool::from(self.bind.ct_eq(&[0u8; 32]));
        match state {
            Some(state) if !unbound => {
                let hash: [u8; 32] = Sha256::digest(state).into();
                if !bool::from(hash.ct_eq(&self.bind)) {
                    return Err(Reject::Binding);
                }
            }
            None if unbound && !config.require_binding => {}
            _ => return Err(Reject::Binding),
        }
        Ok(())
    }
}
