//! What the writer and the sweeper answer, in the store's own terms.
//!
//! The writer decides; it does not speak the wire. A queued request's
//! answer travels back as an [`Answer`], and the service turns it into a
//! response (`service::respond`), on the event loop's thread: the service
//! is the one place that chooses error codes. Internal jobs (the sweeper's
//! batches, persisting a touch, a checkpoint) have answers of their own,
//! which no client ever receives.

use sessiond_protocol::HANDLE_BYTES;

/// The outcome of a queued job.
pub type Answer = Result<Done, Refusal>;

/// A session's version and expiry after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub version: u64,
    pub expires_at_ms: u64,
}

/// A key handed out for a session: by CREATE, CYCLE or their `_AS` forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    /// As the client will send it back.
    pub key: String,
    pub handle: [u8; HANDLE_BYTES],
    pub version: Version,
    /// The caller proposed the key (CREATE_AS, CYCLE_AS).
    pub proposed: bool,
}

/// What a job did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    Created(NewKey),
    Cycled(NewKey),
    Replaced(Version),
    Patched(Version),
    Written(Version),
    ExpirySet(Version),
    MetaSet(Version),
    Deleted {
        existed: bool,
    },
    /// One session, by its handle.
    Revoked {
        count: u64,
    },
    /// Every session of a user.
    UserRevoked {
        count: u64,
    },
    SealedRevoked,
    Redeemed {
        key: String,
        replaced: bool,
    },
    /// Expired sessions removed: a sweep batch, or a whole SWEEP.
    Swept {
        removed: u64,
    },
    // Internal jobs only.
    /// Redeemed tokens and denied cookies forgotten.
    Purged {
        removed: u64,
    },
    TouchPersisted,
    /// redb holds everything logged before the job, durably.
    Checkpointed,
}

/// Why a job changed nothing (or, for the storage failures, why its
/// outcome is unknown).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no such session")]
    NotFound,
    #[error("a session has this key; propose another")]
    KeyExists,
    #[error("expected version {expected}, found {found}")]
    VersionConflict { expected: u64, found: u64 },
    #[error("session would have {count} fields; the limit is {limit}")]
    TooManyFields { count: usize, limit: usize },
    #[error("session would hold {bytes} bytes; the limit is {limit}")]
    TooLarge { bytes: usize, limit: usize },
    #[error("the user already has {live} live sessions; the limit is {limit}")]
    TooManySessions { live: usize, limit: usize },
    /// CYCLE of another site's key with a different user.
    #[error("this key's session belongs to another user")]
    OtherOwner,
    /// Replayed, expired or for a session that has ended; which one is
    /// counted in the statistics, never told.
    #[error("token rejected")]
    TokenRejected,
    #[error("no randomness: {0}")]
    NoRandomness(String),
    #[error("could not draw an unused {0}")]
    NoFreeId(&'static str),
    /// The stored record does not decode.
    #[error("stored session is unreadable")]
    Unreadable,
    /// Storage failed: the write may or may not be durable, and every
    /// later one is refused.
    #[error("{0}")]
    Unavailable(String),
}
