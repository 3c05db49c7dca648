//! The session record as stored in redb and cached in memory.
//!
//! Stored form: one format byte ([`RECORD_V1`]) then the bincode body, so a
//! later release can recognise and migrate old records.

use sessiond_protocol::codec::{self, Decode, Encode};
use sessiond_protocol::{Expiry, Field, SessionBody};

pub const RECORD_V1: u8 = 1;

/// Rough per-record overhead, for the cache's memory accounting.
const RECORD_OVERHEAD: usize = 160;

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[bincode(crate = "sessiond_protocol::codec::bincode")]
pub struct Record {
    /// Incremented by every change of data or key; TOUCH leaves it alone.
    pub version: u64,
    pub created_ms: u64,
    pub modified_ms: u64,
    pub last_active_ms: u64,
    pub expires_at_ms: u64,
    pub expiry: Expiry,
    /// Sorted by name, names unique.
    pub fields: Vec<Field>,
}

#[derive(Debug, thiserror::Error)]
#[error("stored record is unreadable: {0}")]
pub struct CorruptRecord(pub String);

impl Record {
    pub fn new(now_ms: u64, expiry: Expiry, fields: Vec<Field>, default_idle_secs: u32) -> Self {
        let mut record = Self {
            version: 1,
            created_ms: now_ms,
            modified_ms: now_ms,
            last_active_ms: now_ms,
            expires_at_ms: 0,
            expiry,
            fields,
        };
        record.mark_active(now_ms, default_idle_secs);
        record
    }

    /// A session is live strictly before its expiry instant.
    pub fn is_live(&self, now_ms: u64) -> bool {
        now_ms < self.expires_at_ms
    }

    /// Records activity at `now_ms`, sliding the idle expiry forward. The
    /// expiry never moves backwards, even if the clock does.
    pub fn mark_active(&mut self, now_ms: u64, default_idle_secs: u32) {
        let idle = match self.expiry {
            Expiry::Default => default_idle_secs,
            Expiry::IdleSecs(secs) => secs,
        };
        self.last_active_ms = self.last_active_ms.max(now_ms);
        let expires = now_ms.saturating_add(u64::from(idle) * 1000);
        self.expires_at_ms = self.expires_at_ms.max(expires);
    }

    /// Records a change of data at `now_ms`.
    pub fn mark_modified(&mut self, now_ms: u64, default_idle_secs: u32) {
        self.version += 1;
        self.modified_ms = self.modified_ms.max(now_ms);
        self.mark_active(now_ms, default_idle_secs);
    }

    /// Bytes of session data, as limited by `max_session_bytes`.
    pub fn data_bytes(&self) -> usize {
        data_bytes(&self.fields)
    }

    /// Approximate memory held by this record, for the cache budget.
    pub fn memory_bytes(&self) -> usize {
        RECORD_OVERHEAD + self.fields.len() * 48 + self.data_bytes()
    }

    pub fn to_body(&self) -> SessionBody {
        SessionBody {
            fields: self.fields.clone(),
            version: self.version,
            created_ms: self.created_ms,
            modified_ms: self.modified_ms,
            last_active_ms: self.last_active_ms,
            expires_at_ms: self.expires_at_ms,
            expiry: self.expiry,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![RECORD_V1];
        codec::encode_into(self, &mut out);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CorruptRecord> {
        match bytes.split_first() {
            Some((&RECORD_V1, body)) => codec::decode(body).map_err(|e| CorruptRecord(e.to_string())),
            Some((v, _)) => Err(CorruptRecord(format!("unknown record format {v}"))),
            None => Err(CorruptRecord("empty record".into())),
        }
    }

    /// Sets and removes fields; `set` and `remove` are sorted and unique.
    pub fn patch(&mut self, set: Vec<Field>, remove: &[String]) {
        self.fields.retain(|f| remove.binary_search(&f.name).is_err());
        for field in set {
            match self.fields.binary_search_by(|f| f.name.cmp(&field.name)) {
                Ok(i) => self.fields[i] = field,
                Err(i) => self.fields.insert(i, field),
            }
        }
    }
}

pub fn data_bytes(fields: &[Field]) -> usize {
    fields.iter().map(|f| f.name.len() + f.value.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, value: &str) -> Field {
        Field { name: name.into(), value: value.as_bytes().to_vec() }
    }

    #[test]
    fn stored_form_round_trips_and_starts_with_the_format_byte() {
        let r = Record::new(1_000, Expiry::IdleSecs(60), vec![field("a", "1")], 100);
        let bytes = r.encode();
        assert_eq!(bytes[0], RECORD_V1);
        assert_eq!(Record::decode(&bytes).unwrap(), r);
        assert!(Record::decode(&[9, 0]).is_err());
        assert!(Record::decode(&[]).is_err());
    }

    #[test]
    fn idle_expiry_slides_with_activity_and_never_moves_back() {
        let mut r = Record::new(10_000, Expiry::IdleSecs(30), vec![], 100);
        assert_eq!(r.expires_at_ms, 40_000);
        assert!(r.is_live(39_999));
        assert!(!r.is_live(40_000));
        r.mark_active(20_000, 100);
        assert_eq!(r.expires_at_ms, 50_000);
        r.mark_active(5_000, 100); // clock stepped back
        assert_eq!((r.expires_at_ms, r.last_active_ms), (50_000, 20_000));
    }

    #[test]
    fn default_policy_uses_the_daemon_default() {
        let r = Record::new(0, Expiry::Default, vec![], 7);
        assert_eq!(r.expires_at_ms, 7_000);
    }

    #[test]
    fn patch_sets_and_removes_keeping_order() {
        let mut r = Record::new(0, Expiry::Default, vec![field("a", "1"), field("c", "3")], 1);
        r.patch(vec![field("b", "2"), field("c", "33")], &["a".to_string()]);
        assert_eq!(r.fields, vec![field("b", "2"), field("c", "33")]);
    }
}
