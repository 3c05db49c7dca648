//! Sealed cookie claims (purpose 0x02). Plaintext, exact length:
//!
//! ```text
//! sid        16 bytes, random per cookie session: deny-list key, log id
//! iat_ms     u64 BE  creation (base of the absolute lifetime)
//! seen_ms    u64 BE  last sealing (base of the idle lifetime)
//! abs_exp_ms u64 BE  absolute expiry
//! idle_secs  u32 BE  idle lifetime; 0 for none
//! epoch      u32 BE  the user's epoch at sealing (REVOKE_USER bumps it)
//! user       u16 length, then the user id (empty: anonymous)
//! fields     u16 count, then per field: u16 name length, name,
//!            u32 value length, value
//! ```

use sessiond_protocol::Field;

use super::envelope::Reader;
use super::{MAX_COOKIE_BYTES, Reject};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieClaims {
    pub sid: [u8; 16],
    pub iat_ms: u64,
    pub seen_ms: u64,
    pub abs_exp_ms: u64,
    pub idle_secs: u32,
    pub epoch: u32,
    pub user: Option<String>,
    pub fields: Vec<Field>,
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the sealed cookie would be {size} bytes with its name; the limit is {MAX_COOKIE_BYTES}")]
    TooLarge { size: usize },
    #[error("no randomness: {0}")]
    Random(getrandom::Error),
}

pub fn audience(name: &str, host: &str) -> Vec<u8> {
    [name.as_bytes(), &[0], host.as_bytes()].concat()
}

impl CookieClaims {
    /// When the cookie session ends, if it is not used again.
    pub fn expires_at_ms(&self) -> u64 {
        match self.idle_secs {
            0 => self.abs_exp_ms,
            idle => self.abs_exp_ms.min(self.seen_ms.saturating_add(u64::from(idle) * 1000)),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&self.sid);
        for v in [self.iat_ms, self.seen_ms, self.abs_exp_ms] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&self.idle_secs.to_be_bytes());
        out.extend_from_slice(&self.epoch.to_be_bytes());
        let user = self.user.as_deref().unwrap_or("");
        out.extend_from_slice(&(user.len() as u16).to_be_bytes());
        out.extend_from_slice(user.as_bytes());
        out.extend_from_slice(&(self.fields.len() as u16).to_be_bytes());
        for f in &self.fields {
            out.extend_from_slice(&(f.name.len() as u16).to_be_bytes());
            out.extend_from_slice(f.name.as_bytes());
            out.extend_from_slice(&(f.value.len() as u32).to_be_bytes());
            out.extend_from_slice(&f.value);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, Reject> {
        let mut r = Reader(bytes);
        let sid = r.bytes()?;
        let (iat_ms, seen_ms, abs_exp_ms) = (r.u64()?, r.u64()?, r.u64()?);
        let (idle_secs, epoch) = (r.u32()?, r.u32()?);
        let user_len = usize::from(r.u16()?);
        let user = Some(r.text(user_len)?).filter(|u| !u.is_empty());
        let count = r.u16()?;
        let mut fields = Vec::new();
        for _ in 0..count {
            let name_len = usize::from(r.u16()?);
            let name = r.text(name_len)?;
            let value_len = usize::try_from(r.u32()?).map_err(|_| Reject::Claims)?;
            fields.push(Field { name, value: r.slice(value_len)?.to_vec() });
        }
        r.finish()?;
        Ok(Self { sid, iat_ms, seen_ms, abs_exp_ms, idle_secs, epoch, user, fields })
    }

    /// Not issued in the future (beyond the skew), not past its absolute or
    /// idle expiry.
    pub fn check_times(&self, now_ms: u64, skew_ms: u64) -> Result<(), Reject> {
        if self.iat_ms > now_ms.saturating_add(skew_ms) || now_ms >= self.expires_at_ms() {
            return Err(Reject::Time);
        }
        Ok(())
    }
}
