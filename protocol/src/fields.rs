//! A field list held in its encoded form.
//!
//! A session's fields as `Vec<Field>` take two heap blocks per field,
//! scattered across the heap. [`PackedFields`] keeps the whole list in one
//! block holding exactly the bytes bincode writes for the `Vec<Field>`: the
//! count, then each name and value with its length. So a cached session
//! costs one allocation for its data, a reader walks one contiguous block,
//! and encoding the list (into a SESSION answer or a stored record) is one
//! copy.

use bincode::de::{Decoder, read::Reader};
use bincode::enc::{Encoder, write::Writer};
use bincode::error::{DecodeError, EncodeError};

use crate::codec::{Decode, Encode};
use crate::message::Field;

/// A field list in bincode's encoding of `Vec<Field>`.
///
/// Invariant: `bytes` is a well-formed encoding of `len` fields whose names
/// are UTF-8. Every constructor establishes it (decoding validates), and
/// nothing else can change the bytes, so readers need not check again.
/// The order is the builder's: the daemon keeps fields sorted by name.
#[derive(Clone, PartialEq, Eq)]
pub struct PackedFields {
    bytes: Box<[u8]>,
    len: u32,
    /// Sum of the names' and values' lengths: what session size limits count.
    data_bytes: u32,
}

/// One field of a [`PackedFields`], borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldRef<'a> {
    pub name: &'a str,
    pub value: &'a [u8],
}

impl FieldRef<'_> {
    pub fn to_owned_field(&self) -> Field {
        Field { name: self.name.to_owned(), value: self.value.to_vec() }
    }
}

impl PackedFields {
    pub fn new(fields: &[Field]) -> Self {
        let mut builder =
            PackedFieldsBuilder::with_capacity(fields.iter().map(|f| f.name.len() + f.value.len() + 4).sum());
        for f in fields {
            builder.push(&f.name, &f.value);
        }
        builder.finish()
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of names and values together.
    pub fn data_bytes(&self) -> usize {
        self.data_bytes as usize
    }

    /// Length of the encoding, which is also the heap this list holds.
    pub fn encoded_len(&self) -> usize {
        self.bytes.len()
    }

    pub fn iter(&self) -> Iter<'_> {
        let (_, at) = read_len(&self.bytes, 0);
        Iter { bytes: &self.bytes, at, left: self.len }
    }

    pub fn to_vec(&self) -> Vec<Field> {
        self.iter().map(|f| f.to_owned_field()).collect()
    }
}

impl Default for PackedFields {
    fn default() -> Self {
        PackedFieldsBuilder::with_capacity(0).finish()
    }
}

impl std::fmt::Debug for PackedFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a PackedFields {
    type Item = FieldRef<'a>;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// The fields of a [`PackedFields`], in order.
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    bytes: &'a [u8],
    at: usize,
    left: u32,
}

impl<'a> Iterator for Iter<'a> {
    type Item = FieldRef<'a>;

    fn next(&mut self) -> Option<FieldRef<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let (name, at) = read_part(self.bytes, self.at);
        let (value, at) = read_part(self.bytes, at);
        self.at = at;
        // Names were checked when the list was built or decoded.
        let name = std::str::from_utf8(name).unwrap_or_default();
        Some(FieldRef { name, value })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

impl ExactSizeIterator for Iter<'_> {}

/// Builds a [`PackedFields`] one field at a time, with no copy per field.
#[derive(Debug)]
pub struct PackedFieldsBuilder {
    /// Starts with one byte kept for the count, which is not known yet.
    bytes: Vec<u8>,
    len: u32,
    data_bytes: u32,
}

impl PackedFieldsBuilder {
    /// `capacity`: the expected bytes of names and values plus a few per field.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut bytes = Vec::with_capacity(capacity + 1);
        bytes.push(0);
        Self { bytes, len: 0, data_bytes: 0 }
    }

    pub fn push(&mut self, name: &str, value: &[u8]) {
        push_len(&mut self.bytes, name.len());
        self.bytes.extend_from_slice(name.as_bytes());
        push_len(&mut self.bytes, value.len());
        self.bytes.extend_from_slice(value);
        self.len += 1;
        self.data_bytes = self.data_bytes.saturating_add((name.len() + value.len()) as u32);
    }

    pub fn finish(mut self) -> PackedFields {
        let mut count = Vec::with_capacity(9);
        push_len(&mut count, self.len as usize);
        // Nearly always one byte (under 251 fields): the byte kept for it.
        self.bytes.splice(0..1, count);
        PackedFields { bytes: self.bytes.into_boxed_slice(), len: self.len, data_bytes: self.data_bytes }
    }
}

// bincode's variable-length integer, as its standard configuration writes
// lengths: one byte below 251, else a marker byte (251, 252, 253) and the
// value as a little-endian u16, u32 or u64. The tests hold these to
// bincode's own encoding.
const U16_MARKER: u8 = 251;
const U32_MARKER: u8 = 252;
const U64_MARKER: u8 = 253;

fn push_len(out: &mut Vec<u8>, len: usize) {
    let len = len as u64;
    if len < u64::from(U16_MARKER) {
        out.push(len as u8);
    } else if let Ok(v) = u16::try_from(len) {
        out.push(U16_MARKER);
        out.extend_from_slice(&v.to_le_bytes());
    } else if let Ok(v) = u32::try_from(len) {
        out.push(U32_MARKER);
        out.extend_from_slice(&v.to_le_bytes());
    } else {
        out.push(U64_MARKER);
        out.extend_from_slice(&len.to_le_bytes());
    }
}

/// Reads a length written by [`push_len`] at `at`; returns it and where the
/// next item starts. Only called on bytes the invariant holds for; on
/// anything else it returns a length that ends the walk, never panics.
fn read_len(bytes: &[u8], at: usize) -> (usize, usize) {
    let word = |n: usize| {
        let mut le = [0u8; 8];
        if let Some(src) = bytes.get(at + 1..at + 1 + n) {
            le[..n].copy_from_slice(src);
        }
        (u64::from_le_bytes(le) as usize, at + 1 + n)
    };
    match bytes.get(at) {
        Some(&U16_MARKER) => word(2),
        Some(&U32_MARKER) => word(4),
        Some(&U64_MARKER) => word(8),
        Some(&b) => (usize::from(b), at + 1),
        None => (0, at),
    }
}

fn read_part(bytes: &[u8], at: usize) -> (&[u8], usize) {
    let (len, start) = read_len(bytes, at);
    let end = start.saturating_add(len).min(bytes.len());
    (bytes.get(start..end).unwrap_or_default(), end)
}

impl Encode for PackedFields {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        encoder.writer().write(&self.bytes)
    }
}

impl<Context> Decode<Context> for PackedFields {
    /// Decodes a `Vec<Field>`'s encoding straight into one block, checking
    /// every length against the decoder's limit and every name's UTF-8.
    fn decode<D: Decoder<Context = Context>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let count = u64::decode(decoder)?;
        let count = u32::try_from(count).map_err(|_| DecodeError::OutsideUsizeRange(count))?;
        let mut builder = PackedFieldsBuilder::with_capacity(0);
        for _ in 0..count {
            let name = decode_part(decoder, &mut builder.bytes)?;
            if let Err(inner) = std::str::from_utf8(&builder.bytes[name..]) {
                return Err(DecodeError::Utf8 { inner });
            }
            let name_len = builder.bytes.len() - name;
            let value = decode_part(decoder, &mut builder.bytes)?;
            let value_len = builder.bytes.len() - value;
            builder.len += 1;
            builder.data_bytes = builder.data_bytes.saturating_add((name_len + value_len) as u32);
        }
        Ok(builder.finish())
    }
}

/// Appends one length-prefixed part to `out`; returns where its bytes start.
fn decode_part<D: Decoder>(decoder: &mut D, out: &mut Vec<u8>) -> Result<usize, DecodeError> {
    let len = u64::decode(decoder)?;
    let len = usize::try_from(len).map_err(|_| DecodeError::OutsideUsizeRange(len))?;
    decoder.claim_container_read::<u8>(len)?;
    push_len(out, len);
    let start = out.len();
    out.resize(start + len, 0);
    decoder.reader().read(&mut out[start..])?;
    Ok(start)
}

bincode::impl_borrow_decode!(PackedFields);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;
    use proptest::prelude::*;

    fn field(name: &str, value: &[u8]) -> Field {
        Field { name: name.into(), value: value.to_vec() }
    }

    fn fields() -> impl Strategy<Value = Vec<Field>> {
        // Lengths around every width of bincode's length prefix.
        let value = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..260),
            proptest::collection::vec(any::<u8>(), 65_530..65_540),
        ];
        proptest::collection::vec((".{0,300}", value).prop_map(|(name, value)| Field { name, value }), 0..8)
    }

    proptest! {
        #[test]
        fn encodes_exactly_as_the_vec_and_decodes_back(list in fields()) {
            let packed = PackedFields::new(&list);
            let encoded = codec::encode(&packed);
            prop_assert_eq!(&encoded, &codec::encode(&list));
            prop_assert_eq!(packed.encoded_len(), encoded.len());
            prop_assert_eq!(packed.to_vec(), list.clone());
            prop_assert_eq!(packed.data_bytes(), list.iter().map(|f| f.name.len() + f.value.len()).sum::<usize>());
            let decoded: PackedFields = codec::decode(&encoded).unwrap();
            prop_assert_eq!(decoded, packed);
        }

        #[test]
        fn decoding_any_bytes_never_panics_and_agrees_with_the_vec(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let packed = codec::decode::<PackedFields>(&bytes);
            let list = codec::decode::<Vec<Field>>(&bytes);
            prop_assert_eq!(packed.is_ok(), list.is_ok());
            if let (Ok(packed), Ok(list)) = (packed, list) {
                prop_assert_eq!(packed.to_vec(), list);
            }
        }
    }

    #[test]
    fn many_fields_take_a_wider_count() {
        let list: Vec<Field> = (0..300).map(|i| field(&format!("f{i}"), b"v")).collect();
        let packed = PackedFields::new(&list);
        assert_eq!(codec::encode(&packed), codec::encode(&list));
        assert_eq!(packed.iter().len(), 300);
        assert_eq!(packed.iter().last().map(|f| f.name), Some("f299"));
    }

    #[test]
    fn a_name_that_is_not_utf8_is_refused() {
        // One field: name [0xff], empty value.
        assert!(matches!(codec::decode::<PackedFields>(&[1, 1, 0xff, 0]), Err(codec::BodyError::Malformed(_))));
        assert!(codec::decode::<PackedFields>(&[1, 1, b'a', 0]).is_ok());
    }

    #[test]
    fn an_empty_list_is_one_byte() {
        assert_eq!(codec::encode(&PackedFields::default()), vec![0]);
        assert!(PackedFields::default().is_empty());
    }
}
