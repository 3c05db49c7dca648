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
    /// The configuration cannot be used (for a `Cluster`: no daemons, or
    /// ids that are not distinct).
    #[error("configuration: {0}")]
    Config(String),
    /// The operating system's random source failed, so no session key
    /// could be drawn.
    #[error("cannot draw a session key: {0}")]
    Random(String),
    /// A `Cluster` operation that asks every daemon (a user's listing, a
    /// revocation) got no answer from some of them. What they hold is
    /// unknown, so no result is given as if it were whole.
    #[error("{}", incomplete(.failed, *.revoked))]
    Incomplete {
        /// The daemons that did not answer, and why.
        failed: Vec<DaemonFailure>,
        /// For revocations: how many sessions the daemons that answered
        /// ended. `None` for listings.
        revoked: Option<u64>,
    },
}

/// One daemon's failure in a `Cluster` operation that asks every daemon.
#[derive(Debug)]
pub struct DaemonFailure {
    /// The daemon's id in the cluster's configuration.
    pub daemon: String,
    pub error: Error,
}

fn incomplete(failed: &[DaemonFailure], revoked: Option<u64>) -> String {
    let each: Vec<String> = failed.iter().map(|f| format!("{} ({})", f.daemon, f.error)).collect();
    let mut text = format!("incomplete: no answer from {}", each.join(", "));
    if let Some(n) = revoked {
        text.push_str(&format!("; {n} revoked on the daemons that answered"));
    }
    text
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
