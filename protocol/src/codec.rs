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
    #[error("a length inside the body claims more than {} bytes", crate::MAX_BODY_HARD_LIMIT)]
    TooLong,
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

/// bincode's errors in the protocol's words. Its own texts name Rust types
/// (`core::option::Option<alloc::string::String>`), which mean nothing to a
/// client in another language.
fn body_error(e: bincode::error::DecodeError) -> BodyError {
    use bincode::error::DecodeError as E;
    let what = match e {
        E::LimitExceeded => return BodyError::TooLong,
        E::UnexpectedEnd { .. } => "the body ends inside a value".into(),
        E::UnexpectedVariant { found, .. } => format!("unknown variant {found} of an enum or option"),
        E::Utf8 { .. } => "a string is not UTF-8".into(),
        E::InvalidIntegerType { .. } => "an integer has a varint marker too wide for it".into(),
        E::InvalidBooleanValue(v) => format!("{v} is not a boolean"),
        E::OutsideUsizeRange(n) => format!("a length of {n} is out of range"),
        E::Other(text) => text.into(),
        E::OtherString(text) => text,
        _ => "the body does not decode".into(),
    };
    BodyError::Malformed(what)
}

/// Decodes exactly one `T` from the whole of `bytes`.
pub fn decode<T: Decode<()>>(bytes: &[u8]) -> Result<T, BodyError> {
    let (value, used) = bincode::decode_from_slice::<T, _>(bytes, CONFIG).map_err(body_error)?;
    if used != bytes.len() {
        return Err(BodyError::Trailing(bytes.len() - used));
    }
    Ok(value)
}
