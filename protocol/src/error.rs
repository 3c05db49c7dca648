//! Error codes on the wire and the decoder's typed errors.

use crate::codec::BodyError;

/// The typed error code carried by an ERROR response.
///
/// Codes are stable wire values; new ones may be added, so a client must
/// treat an unknown code as [`ErrorCode::Internal`]-like and show the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The session does not exist, has expired, or was deleted.
    NotFound = 1,
    /// A compare-and-set found a different version.
    VersionConflict = 2,
    /// The request is well framed but its content is invalid.
    BadRequest = 3,
    /// A frame, session, field or value exceeds a limit.
    TooLarge = 4,
    /// The daemon is at a limit (connections, queue) and refuses work for now.
    Busy = 5,
    /// The daemon cannot serve the request now (shutting down, storage failed).
    Unavailable = 6,
    /// An unexpected failure inside the daemon.
    Internal = 7,
    /// The session key is not 43 base64url characters.
    BadKey = 8,
    /// The frame is corrupt (CRC mismatch, reserved bits set, bad body).
    BadFrame = 9,
    /// The opcode or protocol version is not supported.
    Unsupported = 10,
    /// The first request on a connection was not HELLO.
    HelloRequired = 11,
    /// The user is at `max_sessions_per_user` and the policy is to refuse.
    TooManySessions = 12,
    /// A transfer token or sealed cookie was refused. Deliberately says
    /// nothing of which check failed; the daemon logs and counts the reason.
    TokenRejected = 13,
    /// The peer's credentials are not allowed to use this daemon.
    Forbidden = 14,
    /// CREATE_AS or CYCLE_AS proposed a key a session already has: draw another.
    KeyExists = 15,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 15] = [
        Self::NotFound,
        Self::VersionConflict,
        Self::BadRequest,
        Self::TooLarge,
        Self::Busy,
        Self::Unavailable,
        Self::Internal,
        Self::BadKey,
        Self::BadFrame,
        Self::Unsupported,
        Self::HelloRequired,
        Self::TooManySessions,
        Self::TokenRejected,
        Self::Forbidden,
        Self::KeyExists,
    ];

    pub fn from_u16(v: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|c| *c as u16 == v)
    }

    /// This code's place in [`ErrorCode::ALL`]: codes are numbered from 1
    /// without gaps (a test holds them to it), so tables sized by `ALL`
    /// can be indexed by it.
    pub const fn ordinal(self) -> usize {
        self as usize - 1
    }

    /// The upper-case name used in PROTOCOL.md, logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::NotFound => "NOT_FOUND",
            Self::VersionConflict => "VERSION_CONFLICT",
            Self::BadRequest => "BAD_REQUEST",
            Self::TooLarge => "TOO_LARGE",
            Self::Busy => "BUSY",
            Self::Unavailable => "UNAVAILABLE",
            Self::Internal => "INTERNAL",
            Self::BadKey => "BAD_KEY",
            Self::BadFrame => "BAD_FRAME",
            Self::Unsupported => "UNSUPPORTED",
            Self::HelloRequired => "HELLO_REQUIRED",
            Self::TooManySessions => "TOO_MANY_SESSIONS",
            Self::TokenRejected => "TOKEN_REJECTED",
            Self::Forbidden => "FORBIDDEN",
            Self::KeyExists => "KEY_EXISTS",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A frame header that cannot be accepted. After any of these the byte
/// stream cannot be trusted to resynchronise, so the connection closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("frame body of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: u32, max: u32 },
    #[error("frame body CRC mismatch")]
    BadCrc,
    #[error("reserved header bits are set")]
    Reserved,
}

impl FrameError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::TooLarge { .. } => ErrorCode::TooLarge,
            Self::BadCrc | Self::Reserved => ErrorCode::BadFrame,
        }
    }
}

/// A well-framed message whose opcode or body cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("unknown opcode 0x{0:02x}")]
    UnknownOpcode(u8),
    #[error("opcode 0x{opcode:02x}: {source}")]
    Body {
        opcode: u8,
        #[source]
        source: BodyError,
    },
}

impl DecodeError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::UnknownOpcode(_) => ErrorCode::Unsupported,
            Self::Body { .. } => ErrorCode::BadFrame,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_numbered_from_one_without_gaps_so_ordinals_index_all() {
        for (i, code) in ErrorCode::ALL.into_iter().enumerate() {
            assert_eq!(code as usize, i + 1, "{}", code.name());
            assert_eq!(code.ordinal(), i);
            assert_eq!(ErrorCode::from_u16(code as u16), Some(code));
        }
    }
}
