//! The one place that knows bincode: body encoding for the wire and for
//! records stored by the daemon.
//!
//! Bodies use bincode 2's standard configuration (little-endian, variable
//! length integers) with a limit on claimed lengths, so length prefixes
//! inside a body can never make the decoder allocate more than
//! [`crate::MAX_BODY_HARD_LIMIT`] bytes in all. bincode reserves a claimed
//! length before reading it, so a short body with a large prefix costs up
//! to that much for a moment; the limit is what bounds it.

pub use bincode;
pub use bincode::{Decode, Encode};

use bincode::config::{Configuration, Limit, LittleEndian, Varint};

type Config = Configuration<LittleEndian, Varint, Limit<{ crate::MAX_BODY_HARD_LIMIT as usize }>>;

const CONFIG: Config = bincode::config::standard().with_limit::<{ crate::MAX_BODY_HARD_LIMIT as usize }>();

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    #[error("malformed body: {0}")]
    Malformed(String),
    #[error("{0} trailing bytes after the body")]
    Trailing(usize),
}

/// Appends the encoding of `value` to `out`.
pub fn encode_into<T: Encode>(value: &T, out: &mut Vec<u8>) {
    // Encoding into a Vec cannot fail: bincode only fails on writer errors
    // and on limit overruns, and the limit is checked on decode only.
    if let Err(e) = bincode::encode_into_std_write(value, out, CONFIG) {
        unreachable!("encoding into a Vec failed: {e}");
    }
}

/// Encodes `value` into a fresh vector.
pub fn encode<T: Encode>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(value, &mut out);
    out
}

/// Decodes exactly one `T` from the whole of `bytes`.
pub fn decode<T: Decode<()>>(bytes: &[u8]) -> Result<T, BodyError> {
    let (value, used) =
        bincode::decode_from_slice::<T, _>(bytes, CONFIG).map_err(|e| BodyError::Malformed(e.to_string()))?;
    if used != bytes.len() {
        return Err(BodyError::Trailing(bytes.len() - used));
    }
    Ok(value)
}
