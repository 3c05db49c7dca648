//! An [actix-session] 0.11 session store backed by sessiond, for actix-web.
//!
//! ```no_run
//! # async fn run() -> Result<(), sessiond_client::Error> {
//! use actix_session::SessionMiddleware;
//! use actix_web::cookie::Key;
//! use sessiond_actix::SessiondStore;
//!
//! let client = sessiond_client::Client::connect(sessiond_client::Options::new("/run/sessiond/sessiond.sock")).await?;
//! let store = SessiondStore::new(client).with_owner_field("user_id");
//! let key = Key::generate(); // load it from your secrets in production
//! // App::new().wrap(SessionMiddleware::new(store.clone(), key.clone()))
//! # let _ = SessionMiddleware::new(store, key);
//! # Ok(()) }
//! ```
//!
//! How a session maps onto the daemon:
//!
//! - **Keys** are the daemon's (32 random bytes; CREATE makes them). The
//!   cookie carries the key, signed or encrypted by actix-session.
//! - **State**: each entry is a field holding the entry's JSON text, as
//!   actix-session hands it over. `update` writes the whole state in one
//!   atomic WRITE, with the expiry.
//! - **Time to live**: the daemon's idle policy of `ttl` seconds. `save` and
//!   `update` start it afresh; `update_ttl` (actix-session's
//!   `TtlExtensionPolicy::OnEveryRequest`) is a TOUCH, which rewrites no
//!   data. Loads do not count as activity, so with the default
//!   `OnStateChanges` policy the session ends `ttl` after its last change,
//!   as its cookie does.
//! - **A session that ended meanwhile stays ended.** When `update` finds the
//!   session gone (logged out elsewhere, revoked, expired), it writes
//!   nothing and makes no new session: the request's changes are dropped,
//!   the log says so, and the next request starts with an empty session.
//!   (Re-creating the state under a new key would bring back a session the
//!   user or an administrator ended, with whatever login it carried.)
//!
//! [actix-session]: https://docs.rs/actix-session/0.11.0

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_web::cookie::time::Duration;
use anyhow::anyhow;
use sessiond_client::{Client, Error, Expiry, Field, Meta, Owner, Write};

/// actix-session's view of a session's state: entry name to JSON text.
type SessionState = HashMap<String, String>;

/// An actix-session store on a sessiond daemon. Cheap to clone; clones
/// share the connection.
#[derive(Clone)]
pub struct SessiondStore {
    client: Client,
    owner_field: Option<Arc<str>>,
}

impl fmt::Debug for SessiondStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessiondStore").field("owner_field", &self.owner_field).finish_non_exhaustive()
    }
}

impl SessiondStore {
    pub fn new(client: Client) -> Self {
        Self { client, owner_field: None }
    }

    /// Makes the entry `name` the session's owner: when it holds a string
    /// or a number, the session becomes that user's in the same write, and
    /// is listed and revoked with the user's other sessions (see
    /// `Client::list_user_page`, `Client::revoke_user`); without it, the
    /// session belongs to nobody.
    pub fn with_owner_field(mut self, name: &str) -> Self {
        self.owner_field = Some(name.into());
        self
    }

    /// The client, for what a session store does not cover: a user's
    /// sessions, revoking them, transfer tokens.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn owner_of(&self, state: &SessionState) -> Option<String> {
        let text = state.get(self.owner_field.as_deref()?)?;
        match serde_json::from_str::<serde_json::Value>(text).ok()? {
            serde_json::Value::String(s) => Some(s),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// The daemon's idle policy for actix-session's time to live. The daemon
/// counts whole seconds, at least one.
fn idle(ttl: &Duration) -> Expiry {
    Expiry::IdleSecs(u32::try_from(ttl.whole_seconds()).unwrap_or(u32::MAX).max(1))
}

fn fields(state: SessionState) -> Vec<Field> {
    state.into_iter().map(|(name, value)| Field { name, value: value.into_bytes() }).collect()
}

fn key_of(key: String) -> anyhow::Result<SessionKey> {
    SessionKey::try_from(key).map_err(|e| anyhow!("the daemon's key is no cookie value: {e}"))
}

impl SessionStore for SessiondStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<SessionState>, LoadError> {
        let session = match self.client.get(key.as_ref()).await {
            Ok(session) => session,
            Err(Error::NotFound) => return Ok(None),
            // A cookie that is no key of ours (a key is checked before any
            // lookup) is an unknown session, not a failure of the store.
            Err(e) if e.code() == Some(sessiond_client::ErrorCode::BadKey) => return Ok(None),
            Err(e) => return Err(LoadError::Other(e.into())),
        };
        let mut state = SessionState::with_capacity(session.fields.len());
        for (name, value) in session.fields {
            let text = String::from_utf8(value)
                .map_err(|_| LoadError::Deserialization(anyhow!("field {name:?} is not UTF-8 JSON text")))?;
            state.insert(name, text);
        }
        Ok(Some(state))
    }

    async fn save(&self, state: SessionState, ttl: &Duration) -> Result<SessionKey, SaveError> {
        let meta = Meta { user: self.owner_of(&state), ..Meta::default() };
        let created = self
            .client
            .create_with_meta(fields(state).into_iter().map(|f| (f.name, f.value)), idle(ttl), meta)
            .await
            .map_err(|e| SaveError::Other(e.into()))?;
        key_of(created.key).map_err(SaveError::Other)
    }

    async fn update(&self, key: SessionKey, state: SessionState, ttl: &Duration) -> Result<SessionKey, UpdateError> {
        let owner = match &self.owner_field {
            Some(_) => self.owner_of(&state).map_or(Owner::Clear, Owner::Set),
            None => Owner::Keep,
        };
        let write = Write {
            key: key.as_ref().to_owned(),
            set: fields(state),
            remove: Vec::new(),
            replace: true,
            expected_version: None,
            expiry: Some(idle(ttl)),
            owner,
        };
        match self.client.write(write).await {
            Ok(_) => Ok(key),
            Err(Error::NotFound) => {
                tracing::warn!(
                    "session ended (logged out, revoked or expired) before this request saved it; \
                     its changes are dropped and it stays ended"
                );
                Ok(key)
            }
            Err(e) => Err(UpdateError::Other(e.into())),
        }
    }

    async fn update_ttl(&self, key: &SessionKey, ttl: &Duration) -> anyhow::Result<()> {
        // The policy is the idle one `save` and `update` set, so a touch
        // moves the expiry `ttl` from now. A changed `ttl` (a redeploy with
        // another max age) takes effect at the session's next change.
        let _ = ttl;
        match self.client.touch(key.as_ref()).await {
            Ok(_) | Err(Error::NotFound) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, key: &SessionKey) -> anyhow::Result<()> {
        match self.client.delete(key.as_ref()).await {
            Ok(_) | Err(Error::NotFound) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
