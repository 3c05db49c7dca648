//! The session record as stored in redb and cached in memory.
//!
//! Stored form: the format byte [`RECORD_V2`], the CRC-32 of the body (u32,
//! little-endian), then the bincode body. The checksum makes a damaged
//! record an error (and a counter), never data served as if valid: redb
//! checks its own pages only after a crash. Records of schema 1 had no
//! checksum ([`RECORD_V1`]); only the migration reads them.

use sessiond_protocol::codec::{self, Decode, Encode};
use sessiond_protocol::{Expiry, Field, HANDLE_BYTES, PackedFields, PackedFieldsBuilder, SessionBodyRef};

pub const RECORD_V1: u8 = 1;
pub const RECORD_V2: u8 = 2;

/// What a cached record holds besides its data, for the cache's memory
/// accounting: the record itself behind its `Arc` counts, the cache's map
/// slot (key and entry, at hashbrown's 7/8 load), and about 16 bytes for
/// the allocator's rounding of each of its two blocks. At a million 1 KiB
/// sessions this put the cache at 1.41 GB of the daemon's 2.18 GB RSS.
const RECORD_OVERHEAD: usize = std::mem::size_of::<Record>() + 16 + 64 + 2 * 16;

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
    /// Sorted by name, names unique; packed in one block (see
    /// [`PackedFields`]), which is also their stored encoding.
    pub fields: PackedFields,
    /// The public handle; stays the same across CYCLE.
    pub handle: [u8; HANDLE_BYTES],
    pub user: Option<String>,
    /// Canonical text of an IPv4 or IPv6 address.
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Other keys of this session, given to other sites by transfer tokens
    /// (the `aliases` table maps each back here). Ending the session ends
    /// them all.
    pub aliases: Vec<[u8; 32]>,
}

#[derive(Debug, thiserror::Error)]
#[error("stored record is unreadable: {0}")]
pub struct CorruptRecord(pub String);

/// The daemon-wide settings a session's expiry policy is read against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryRules {
    /// Idle age of the `Default` and `BrowserClose` policies.
    pub default_idle_secs: u32,
    /// Absolute cap on a session's life from its creation, if any.
    pub max_lifetime_ms: Option<u64>,
}

impl Record {
    pub fn new(now_ms: u64, expiry: Expiry, fields: PackedFields, rules: ExpiryRules) -> Self {
        let mut record = Self {
            version: 1,
            created_ms: now_ms,
            modified_ms: now_ms,
            last_active_ms: now_ms,
            expires_at_ms: 0,
            expiry,
            fields,
            handle: [0; HANDLE_BYTES],
            user: None,
            ip: None,
            user_agent: None,
            aliases: Vec::new(),
        };
        record.expires_at_ms = record.policy_expiry(now_ms, rules);
        record
    }

    /// A session is live strictly before its expiry instant.
    pub fn is_live(&self, now_ms: u64) -> bool {
        now_ms < self.expires_at_ms
    }

    /// The expiry instant the policy gives for activity at `now_ms`,
    /// within the lifetime cap.
    pub fn policy_expiry(&self, now_ms: u64, rules: ExpiryRules) -> u64 {
        let idle = |secs: u32| now_ms.saturating_add(u64::from(secs) * 1000);
        let by_policy = match self.expiry {
            Expiry::Default | Expiry::BrowserClose => idle(rules.default_idle_secs),
            Expiry::IdleSecs(secs) => idle(secs),
            Expiry::At(at_ms) => at_ms,
        };
        match rules.max_lifetime_ms {
            Some(cap) => by_policy.min(self.created_ms.saturating_add(cap)),
            None => by_policy,
        }
    }

    /// Records activity at `now_ms`, sliding an idle expiry forward. Neither
    /// the expiry nor the last activity ever moves backwards, even if the
    /// clock does.
    pub fn mark_active(&mut self, now_ms: u64, rules: ExpiryRules) {
        self.last_active_ms = self.last_active_ms.max(now_ms);
        self.expires_at_ms = self.expires_at_ms.max(self.policy_expiry(now_ms, rules));
    }

    /// Records a change of data or key at `now_ms`.
    pub fn mark_modified(&mut self, now_ms: u64, rules: ExpiryRules) {
        self.version += 1;
        self.modified_ms = self.modified_ms.max(now_ms);
        self.mark_active(now_ms, rules);
    }

    /// Replaces the expiry policy: the expiry is computed afresh, so unlike
    /// activity this may bring it earlier.
    pub fn set_expiry(&mut self, expiry: Expiry, now_ms: u64, rules: ExpiryRules) {
        self.expiry = expiry;
        self.mark_modified(now_ms, rules);
        self.expires_at_ms = self.policy_expiry(now_ms, rules);
    }

    /// Bytes of session data, as limited by `max_session_bytes`.
    pub fn data_bytes(&self) -> usize {
        self.fields.data_bytes()
    }

    /// Approximate memory held by this record, for the cache budget.
    pub fn memory_bytes(&self) -> usize {
        let meta =
            [&self.user, &self.ip, &self.user_agent].iter().map(|s| s.as_ref().map_or(0, String::len)).sum::<usize>();
        RECORD_OVERHEAD + self.fields.encoded_len() + meta + self.aliases.len() * 32
    }

    /// The session as GET returns it at `now_ms`, borrowed from this record
    /// so it is encoded without copying the fields. Expiry and last activity
    /// come from the TTL index, which is ahead of the record after touches;
    /// `handle` is this record's handle in text.
    pub fn body_ref<'a>(
        &'a self,
        handle: &'a str,
        now_ms: u64,
        expires_at_ms: u64,
        last_active_ms: u64,
    ) -> SessionBodyRef<'a> {
        SessionBodyRef {
            fields: &self.fields,
            version: self.version,
            created_ms: self.created_ms,
            modified_ms: self.modified_ms,
            last_active_ms,
            expires_at_ms,
            ttl_ms: expires_at_ms.saturating_sub(now_ms),
            expiry: self.expiry,
            handle,
            user: self.user.as_deref(),
            ip: self.ip.as_deref(),
            user_agent: self.user_agent.as_deref(),
            ip_changed: false,
            user_agent_changed: false,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![RECORD_V2, 0, 0, 0, 0];
        codec::encode_into(self, &mut out);
        let sum = crc32fast::hash(&out[5..]);
        out[1..5].copy_from_slice(&sum.to_le_bytes());
        out
    }

    /// Decodes a stored record, refusing one whose checksum does not match.
    pub fn decode(bytes: &[u8]) -> Result<Self, CorruptRecord> {
        match bytes.split_first() {
            Some((&RECORD_V2, rest)) if rest.len() >= 4 => {
                let (sum, body) = rest.split_at(4);
                if crc32fast::hash(body).to_le_bytes() != sum {
                    return Err(CorruptRecord("checksum mismatch".into()));
                }
                codec::decode(body).map_err(|e| CorruptRecord(e.to_string()))
            }
            Some((v, _)) => Err(CorruptRecord(format!("unknown record format {v}"))),
            None => Err(CorruptRecord("empty record".into())),
        }
    }

    /// Decodes a record of schema 1 (no checksum): for the migration only.
    pub fn decode_v1(bytes: &[u8]) -> Result<Self, CorruptRecord> {
        match bytes.split_first() {
            Some((&RECORD_V1, body)) => codec::decode(body).map_err(|e| CorruptRecord(e.to_string())),
            Some((v, _)) => Err(CorruptRecord(format!("not a schema 1 record (format {v})"))),
            None => Err(CorruptRecord("empty record".into())),
        }
    }

    /// The field count and data bytes [`Record::patch`] would leave, so a
    /// patch over the limits is refused before it changes anything.
    pub fn patched_size(&self, set: &[Field], remove: &[String]) -> (usize, usize) {
        let (mut count, mut bytes) = (self.fields.len() + set.len(), self.data_bytes() + data_bytes(set));
        for f in &self.fields {
            if set.binary_search_by(|s| s.name.as_str().cmp(f.name)).is_ok() || is_named(remove, f.name) {
                count -= 1;
                bytes -= f.name.len() + f.value.len();
            }
        }
        (count, bytes)
    }

    /// Sets and removes fields; `set` and `remove` are sorted and unique. A
    /// field both set and removed is set. The list is rebuilt in one pass,
    /// merging `set` into the kept fields in name order.
    pub fn patch(&mut self, set: &[Field], remove: &[String]) {
        let mut out = PackedFieldsBuilder::with_capacity(self.fields.encoded_len() + data_bytes(set) + 4 * set.len());
        let mut set = set.iter().peekable();
        for f in &self.fields {
            let mut replaced = false;
            while let Some(s) = set.next_if(|s| s.name.as_str() <= f.name) {
                out.push(&s.name, &s.value);
                replaced = s.name == f.name;
            }
            if !replaced && !is_named(remove, f.name) {
                out.push(f.name, f.value);
            }
        }
        for s in set {
            out.push(&s.name, &s.value);
        }
        self.fields = out.finish();
    }
}

fn is_named(names: &[String], name: &str) -> bool {
    names.binary_search_by(|n| n.as_str().cmp(name)).is_ok()
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

    fn packed(fields: &[Field]) -> PackedFields {
        PackedFields::new(fields)
    }

    const RULES: ExpiryRules = ExpiryRules { default_idle_secs: 100, max_lifetime_ms: None };

    fn rules(default_idle_secs: u32) -> ExpiryRules {
        ExpiryRules { default_idle_secs, max_lifetime_ms: None }
    }

    #[test]
    fn stored_form_round_trips_and_starts_with_the_format_byte() {
        let r = Record::new(1_000, Expiry::IdleSecs(60), packed(&[field("a", "1")]), RULES);
        let bytes = r.encode();
        assert_eq!(bytes[0], RECORD_V2);
        assert_eq!(Record::decode(&bytes).unwrap(), r);
        assert!(Record::decode(&[9, 0]).is_err());
        assert!(Record::decode(&[]).is_err());
        assert!(Record::decode(&[RECORD_V2, 0, 0]).is_err());
        // Schema 1's form is read by the migration only.
        let mut v1 = vec![RECORD_V1];
        v1.extend_from_slice(&bytes[5..]);
        assert_eq!(Record::decode_v1(&v1).unwrap(), r);
        assert!(Record::decode(&v1).is_err());
    }

    #[test]
    fn every_flipped_bit_of_a_stored_record_is_an_error_not_data() {
        let mut r = Record::new(1_000, Expiry::IdleSecs(60), packed(&[field("user_id", "42")]), RULES);
        r.user = Some("alice".into());
        let bytes = r.encode();
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(Record::decode(&flipped).is_err(), "bit {bit} flipped was read as a record");
        }
    }

    #[test]
    fn idle_expiry_slides_with_activity_and_never_moves_back() {
        let mut r = Record::new(10_000, Expiry::IdleSecs(30), PackedFields::default(), RULES);
        assert_eq!(r.expires_at_ms, 40_000);
        assert!(r.is_live(39_999));
        assert!(!r.is_live(40_000));
        r.mark_active(20_000, RULES);
        assert_eq!(r.expires_at_ms, 50_000);
        r.mark_active(5_000, RULES); // clock stepped back
        assert_eq!((r.expires_at_ms, r.last_active_ms), (50_000, 20_000));
    }

    #[test]
    fn default_and_browser_close_use_the_daemon_default() {
        assert_eq!(Record::new(0, Expiry::Default, PackedFields::default(), rules(7)).expires_at_ms, 7_000);
        assert_eq!(Record::new(0, Expiry::BrowserClose, PackedFields::default(), rules(7)).expires_at_ms, 7_000);
    }

    #[test]
    fn an_absolute_expiry_ignores_activity() {
        let mut r = Record::new(0, Expiry::At(50_000), PackedFields::default(), RULES);
        r.mark_active(40_000, RULES);
        r.mark_modified(45_000, RULES);
        assert_eq!(r.expires_at_ms, 50_000);
    }

    #[test]
    fn the_lifetime_cap_ends_even_a_constantly_active_session() {
        let capped = ExpiryRules { default_idle_secs: 600, max_lifetime_ms: Some(12 * 3_600_000) };
        let mut r = Record::new(0, Expiry::Default, PackedFields::default(), capped);
        for minute in (10..=12 * 60).step_by(10) {
            r.mark_active(minute * 60_000, capped);
        }
        assert_eq!(r.expires_at_ms, 12 * 3_600_000);
        assert!(!r.is_live(12 * 3_600_000));
    }

    #[test]
    fn setting_a_policy_may_shorten_the_expiry() {
        let mut r = Record::new(0, Expiry::IdleSecs(3600), PackedFields::default(), RULES);
        r.set_expiry(Expiry::IdleSecs(10), 1_000, RULES);
        assert_eq!((r.expires_at_ms, r.version, r.expiry), (11_000, 2, Expiry::IdleSecs(10)));
    }

    #[test]
    fn patch_sets_and_removes_keeping_order() {
        let mut r = Record::new(0, Expiry::Default, packed(&[field("a", "1"), field("c", "3")]), RULES);
        r.patch(&[field("b", "2"), field("c", "33")], &["a".to_string()]);
        assert_eq!(r.fields.to_vec(), vec![field("b", "2"), field("c", "33")]);
        // Set before, between and after the kept fields; one set and removed.
        r.patch(&[field("a", "0"), field("bb", "x"), field("c", "4"), field("d", "5")], &["b".into(), "c".into()]);
        let names: Vec<_> = r.fields.iter().map(|f| (f.name, f.value)).collect();
        assert_eq!(names, [("a", &b"0"[..]), ("bb", b"x"), ("c", b"4"), ("d", b"5")]);
    }

    #[test]
    fn patched_size_is_the_size_patch_leaves() {
        let base = vec![field("a", "1"), field("c", "333"), field("e", "55555")];
        let cases: [(Vec<Field>, Vec<String>); 5] = [
            (vec![], vec![]),
            (vec![field("b", "22")], vec![]),
            (vec![field("c", "3")], vec!["a".into()]),
            // Removed and set in one patch: the set value stays.
            (vec![field("a", "1111")], vec!["a".into(), "e".into()]),
            (vec![], vec!["x".into(), "c".into()]),
        ];
        for (set, remove) in cases {
            let mut r = Record::new(0, Expiry::Default, packed(&base), RULES);
            let projected = r.patched_size(&set, &remove);
            r.patch(&set, &remove);
            assert_eq!(projected, (r.fields.len(), r.data_bytes()), "set {set:?} remove {remove:?}");
        }
    }
}
