//! The sessiond wire protocol: frame layout, messages, codec and limits.
//!
//! This crate does no I/O. Decoding is total: any byte string yields a
//! message or a typed error, never a panic, and every length is checked
//! against a limit before anything is allocated. `PROTOCOL.md` beside this
//! crate is the specification; the golden vectors in `tests/golden.rs` hold
//! the two together.

pub mod codec;
pub mod error;
pub mod fields;
pub mod frame;
pub mod key;
pub mod message;

pub use error::{DecodeError, ErrorCode, FrameError};
pub use fields::{FieldRef, PackedFields, PackedFieldsBuilder};
pub use frame::{Frame, FrameHeader, HEADER_LEN, decode_frame, encode_frame};
pub use key::{HANDLE_BYTES, HANDLE_CHARS, HandleError, KEY_BYTES, KEY_CHARS, KeyError, SessionHandle, SessionKey};
pub use message::*;

/// The newest protocol version this crate speaks; HELLO carries the one a
/// client wants. Version 2 ("1.1") adds CREATE_AS, WRITE, LIST_USER_PAGE,
/// CYCLE_AS, KEY_EXISTS and the settings in HELLO_OK to version 1, which a daemon
/// still speaks to clients that ask for it.
pub const PROTOCOL_VERSION: u16 = 2;
/// The oldest version a daemon of this crate speaks.
pub const MIN_PROTOCOL_VERSION: u16 = 1;

/// Frame bodies may never exceed this, whatever the configuration says:
/// it bounds every allocation the body decoder can make.
pub const MAX_BODY_HARD_LIMIT: u32 = 16 * 1024 * 1024;
