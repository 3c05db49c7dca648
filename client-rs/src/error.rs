use sessiond_protocol::ErrorCode;

/// What a client call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The session does not exist, has expired, or was deleted.
    #[error("session not found")]
    NotFound,
    /// A compare-and-set found another version.
    #[error("version conflict: {0}")]
    VersionConflict(String),
    /// Any other error the daemon answered with.
    #[error("{code}: {message}")]
    Server { code: ErrorCode, message: String },
    /// The daemon answered with an error code this client does not know.
    #[error("error code {code}: {message}")]
    UnknownCode { code: u16, message: String },
    /// No answer within the configured timeout.
    #[error("timed out waiting for sessiond")]
    Timeout,
    /// The connection broke before the answer arrived; whether a write took
    /// effect is unknown.
    #[error("connection to sessiond lost")]
    Disconnected,
    #[error("cannot reach sessiond: {0}")]
    Io(#[from] std::io::Error),
    /// The daemon sent something this client cannot understand.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl Error {
    /// The daemon's error code, if the daemon answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::NotFound => Some(ErrorCode::NotFound),
            Self::VersionConflict(_) => Some(ErrorCode::VersionConflict),
            Self::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub(crate) fn from_wire(code: u16, message: String) -> Self {
        match ErrorCode::from_u16(code) {
            Some(ErrorCode::NotFound) => Self::NotFound,
            Some(ErrorCode::VersionConflict) => Self::VersionConflict(message),
            Some(code) => Self::Server { code, message },
            None => Self::UnknownCode { code, message },
        }
    }
}
