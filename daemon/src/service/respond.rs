//! The writer's answers as wire responses: which error code each refusal
//! gets is decided here and nowhere else.

use sessiond_protocol::{
    Created, DeletedOk, ErrorCode, Redeemed, Response, RevokedOk, SessionHandle, SweptOk, Written,
};

use super::Reject;
use crate::answer::{Answer, Done, NewKey, Refusal, Version};

/// The response to a queued request.
pub fn respond(answer: Answer) -> Response {
    match answer {
        Ok(done) => done_response(done),
        Err(refusal) => Reject::from(refusal).into(),
    }
}

impl From<Refusal> for Reject {
    fn from(refusal: Refusal) -> Self {
        let code = match &refusal {
            Refusal::NotFound => ErrorCode::NotFound,
            Refusal::KeyExists => ErrorCode::KeyExists,
            Refusal::VersionConflict { .. } => ErrorCode::VersionConflict,
            Refusal::TooManyFields { .. } | Refusal::TooLarge { .. } => ErrorCode::TooLarge,
            Refusal::TooManySessions { .. } => ErrorCode::TooManySessions,
            Refusal::OtherOwner => ErrorCode::BadRequest,
            Refusal::TokenRejected => ErrorCode::TokenRejected,
            Refusal::NoRandomness(_) | Refusal::NoFreeId(_) | Refusal::Unreadable => ErrorCode::Internal,
            Refusal::Unavailable(_) => ErrorCode::Unavailable,
        };
        Reject { code, message: refusal.to_string() }
    }
}

fn done_response(done: Done) -> Response {
    match done {
        Done::Created(new) if new.proposed => Response::CreatedAs(created(new)),
        Done::Created(new) => Response::Created(created(new)),
        Done::Cycled(new) if new.proposed => Response::CycledAs(created(new)),
        Done::Cycled(new) => Response::Cycled(created(new)),
        Done::Replaced(v) => Response::Replaced(written(v)),
        Done::Patched(v) => Response::Patched(written(v)),
        Done::Written(v) => Response::Written(written(v)),
        Done::ExpirySet(v) => Response::ExpirySet(written(v)),
        Done::MetaSet(v) => Response::MetaSet(written(v)),
        Done::Deleted { existed } => Response::Deleted(DeletedOk { existed }),
        Done::Revoked { count } => Response::Revoked(RevokedOk { count }),
        Done::UserRevoked { count } => Response::UserRevoked(RevokedOk { count }),
        Done::SealedRevoked => Response::SealedRevoked(RevokedOk { count: 1 }),
        Done::Redeemed { key, replaced } => Response::Redeemed(Redeemed { key, replaced }),
        Done::Swept { removed } => Response::Swept(SweptOk { removed }),
        // No request is answered with an internal job's outcome: reaching
        // here is a routing bug, and the client is told so.
        Done::Purged { .. } | Done::TouchPersisted | Done::Checkpointed => {
            Response::error(ErrorCode::Internal, "an internal job's answer reached a client")
        }
    }
}

fn created(new: NewKey) -> Created {
    Created {
        key: new.key,
        handle: SessionHandle::from_bytes(new.handle).encode(),
        version: new.version.version,
        expires_at_ms: new.version.expires_at_ms,
    }
}

fn written(v: Version) -> Written {
    Written { version: v.version, expires_at_ms: v.expires_at_ms }
}
