//! Request and response messages, their opcodes and body layouts.
//!
//! Every body is one bincode-encoded struct (see [`crate::codec`]); the
//! opcode in the frame header says which. A success response has the opcode
//! of its request with the high bit set; ERROR is `0x80`. PROTOCOL.md gives
//! the byte layout of every body.

use crate::codec::{self, Decode, Encode};
use crate::error::DecodeError;
use crate::fields::PackedFields;
use crate::frame::encode_frame;

/// Opcodes. Ranges are reserved so later operations keep related numbers:
/// `0x01..=0x0F` connection and admin, `0x10..=0x1F` sessions,
/// `0x20..=0x2F` users, `0x30..=0x3F` tokens. `0x80` and up are responses.
pub mod op {
    pub const HELLO: u8 = 0x01;
    pub const PING: u8 = 0x02;
    pub const STATS: u8 = 0x03;
    pub const SWEEP: u8 = 0x04;
    pub const ROTATE_KEYS: u8 = 0x05;
    pub const CREATE: u8 = 0x10;
    pub const GET: u8 = 0x11;
    pub const EXISTS: u8 = 0x12;
    pub const REPLACE: u8 = 0x13;
    pub const PATCH: u8 = 0x14;
    pub const TOUCH: u8 = 0x15;
    pub const DELETE: u8 = 0x16;
    pub const CYCLE: u8 = 0x17;
    pub const SET_EXPIRY: u8 = 0x18;
    pub const SET_META: u8 = 0x19;
    pub const CREATE_AS: u8 = 0x1A;
    pub const WRITE: u8 = 0x1B;
    pub const CYCLE_AS: u8 = 0x1C;
    pub const LIST_USER: u8 = 0x20;
    pub const REVOKE: u8 = 0x21;
    pub const REVOKE_USER: u8 = 0x22;
    pub const LIST_USER_PAGE: u8 = 0x23;
    pub const ISSUE_TRANSFER: u8 = 0x30;
    pub const REDEEM_TRANSFER: u8 = 0x31;
    pub const SEAL: u8 = 0x32;
    pub const UNSEAL: u8 = 0x33;
    pub const REVOKE_SEALED: u8 = 0x34;

    /// Set on the opcode of every response.
    pub const REPLY: u8 = 0x80;
    pub const ERROR: u8 = REPLY;
    pub const HELLO_OK: u8 = REPLY | HELLO;
    pub const PONG: u8 = REPLY | PING;
    pub const STATS_OK: u8 = REPLY | STATS;
    pub const SWEPT: u8 = REPLY | SWEEP;
    pub const KEYS_ROTATED: u8 = REPLY | ROTATE_KEYS;
    pub const CREATED: u8 = REPLY | CREATE;
    pub const SESSION: u8 = REPLY | GET;
    pub const EXISTS_OK: u8 = REPLY | EXISTS;
    pub const REPLACED: u8 = REPLY | REPLACE;
    pub const PATCHED: u8 = REPLY | PATCH;
    pub const TOUCHED: u8 = REPLY | TOUCH;
    pub const DELETED: u8 = REPLY | DELETE;
    pub const CYCLED: u8 = REPLY | CYCLE;
    pub const EXPIRY_SET: u8 = REPLY | SET_EXPIRY;
    pub const META_SET: u8 = REPLY | SET_META;
    pub const CREATED_AS: u8 = REPLY | CREATE_AS;
    pub const WRITTEN: u8 = REPLY | WRITE;
    pub const CYCLED_AS: u8 = REPLY | CYCLE_AS;
    pub const USER_SESSIONS: u8 = REPLY | LIST_USER;
    pub const REVOKED: u8 = REPLY | REVOKE;
    pub const USER_REVOKED: u8 = REPLY | REVOKE_USER;
    pub const USER_PAGE: u8 = REPLY | LIST_USER_PAGE;
    pub const TRANSFER_ISSUED: u8 = REPLY | ISSUE_TRANSFER;
    pub const REDEEMED: u8 = REPLY | REDEEM_TRANSFER;
    pub const SEALED: u8 = REPLY | SEAL;
    pub const UNSEALED: u8 = REPLY | UNSEAL;
    pub const SEALED_REVOKED: u8 = REPLY | REVOKE_SEALED;
}

macro_rules! wire_struct {
    ($(#[$m:meta])* pub struct $name:ident $body:tt) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
        #[bincode(crate = "crate::codec::bincode")]
        #[cfg_attr(test, derive(proptest_derive::Arbitrary))]
        pub struct $name $body
    };
}

wire_struct! {
    /// A body with no content (zero bytes).
    pub struct Empty {}
}

wire_struct! {
    /// One named field of session data. Names are UTF-8, values are bytes.
    pub struct Field {
        pub name: String,
        pub value: Vec<u8>,
    }
}

/// How a session expires: the policies of Django's `set_expiry`.
///
/// Whatever the policy, a daemon-wide lifetime cap, if configured, ends the
/// session at creation plus the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Encode, Decode)]
#[bincode(crate = "crate::codec::bincode")]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Expiry {
    /// The daemon's default idle age (`set_expiry(None)`).
    #[default]
    Default,
    /// Expires this many seconds after the last activity (`set_expiry(int)`).
    IdleSecs(u32),
    /// Expires at this Unix time in milliseconds, whatever the activity
    /// (`set_expiry(datetime)`).
    At(u64),
    /// The cookie should expire when the browser closes (`set_expiry(0)`):
    /// set it without max-age. The daemon still ends the session after its
    /// default idle age.
    BrowserClose,
}

wire_struct! {
    pub struct Hello {
        pub version: u16,
        /// Free text naming the client, for logs.
        pub client: String,
    }
}

wire_struct! {
    /// The daemon's limits, announced in HELLO_OK. A client that stays within
    /// them never gets TOO_LARGE or BUSY for size or pipelining reasons.
    pub struct Limits {
        pub max_frame: u32,
        pub max_session_bytes: u32,
        pub max_fields: u32,
        pub max_field_name: u32,
        pub max_inflight: u32,
    }
}

wire_struct! {
    /// The daemon's expiry settings, announced in HELLO_OK from version 2:
    /// what a client needs to agree with the daemon on a session's life.
    pub struct Settings {
        /// Idle age of the `Default` and `BrowserClose` policies.
        pub default_idle_secs: u32,
        /// Cap on any session's life from its creation; 0 for none.
        pub max_lifetime_secs: u64,
        /// Touches reach disk once they move an expiry this far.
        pub touch_granularity_secs: u32,
        /// User agents are cut to this many bytes.
        pub max_user_agent: u32,
        /// Most live sessions of one user; 0 for no limit.
        pub max_sessions_per_user: u32,
        /// Most sessions in one LIST_USER_PAGE answer.
        pub max_list_page: u32,
    }
}

/// The answer to HELLO. Its body depends on the version it carries (the
/// one the client asked for): version 1 ends after `limits`; from version 2
/// the daemon's `settings` follow. A client reads the version first, so
/// each reads exactly the body of its own version.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[cfg_attr(test, proptest(filter = "|h| (h.version >= 2) == h.settings.is_some()"))]
pub struct HelloOk {
    pub version: u16,
    pub server: String,
    pub limits: Limits,
    /// Present from version 2 on.
    pub settings: Option<Settings>,
}

impl Encode for HelloOk {
    fn encode<E: codec::bincode::enc::Encoder>(&self, e: &mut E) -> Result<(), codec::bincode::error::EncodeError> {
        self.version.encode(e)?;
        self.server.encode(e)?;
        self.limits.encode(e)?;
        if self.version >= 2 {
            self.settings
                .clone()
                .unwrap_or(Settings {
                    default_idle_secs: 0,
                    max_lifetime_secs: 0,
                    touch_granularity_secs: 0,
                    max_user_agent: 0,
                    max_sessions_per_user: 0,
                    max_list_page: 0,
                })
                .encode(e)?;
        }
        Ok(())
    }
}

impl<Context> Decode<Context> for HelloOk {
    fn decode<D: codec::bincode::de::Decoder<Context = Context>>(
        d: &mut D,
    ) -> Result<Self, codec::bincode::error::DecodeError> {
        let version = u16::decode(d)?;
        let server = String::decode(d)?;
        let limits = Limits::decode(d)?;
        let settings = if version >= 2 { Some(Settings::decode(d)?) } else { None };
        Ok(Self { version, server, limits, settings })
    }
}

codec::bincode::impl_borrow_decode!(HelloOk);

wire_struct! {
    /// Who a session belongs to and where it comes from.
    #[derive(Default)]
    pub struct Meta {
        /// The owner's user id: opaque, 1 to 256 bytes.
        pub user: Option<String>,
        /// The client's IP address, v4 or v6, in text.
        pub ip: Option<String>,
        /// The client's user agent; the daemon truncates it to its limit.
        pub user_agent: Option<String>,
    }
}

wire_struct! {
    pub struct Create {
        pub fields: Vec<Field>,
        pub expiry: Expiry,
        pub meta: Meta,
    }
}

wire_struct! {
    /// CREATE with a key the caller proposes, for frameworks that draw
    /// their own session ids. The key is base64url without padding, of 16
    /// to 64 bytes (at least 128 bits); it is created only if no session has
    /// it, and a collision is KEY_EXISTS (draw another). Nothing else makes
    /// a session: a key nobody created is never adopted.
    pub struct CreateAs {
        pub key: String,
        pub fields: Vec<Field>,
        pub expiry: Expiry,
        pub meta: Meta,
    }
}

/// What a WRITE does to the session's owner.
#[derive(Debug, Clone, PartialEq, Eq, Default, Encode, Decode)]
#[bincode(crate = "crate::codec::bincode")]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Owner {
    /// Leave it as it is.
    #[default]
    Keep,
    /// Make this user the owner (a login that keeps its key).
    Set(String),
    /// The session belongs to nobody (a logout that keeps the session).
    Clear,
}

wire_struct! {
    /// PATCH or REPLACE, with a new expiry policy and a change of owner,
    /// all in one atomic write: a framework's save in one round trip.
    pub struct Write {
        pub key: String,
        /// Fields to set; with `replace`, the whole new data.
        pub set: Vec<Field>,
        /// Fields to remove; must be empty with `replace`.
        pub remove: Vec<String>,
        pub replace: bool,
        pub expected_version: Option<u64>,
        /// A new policy, applied as SET_EXPIRY would.
        pub expiry: Option<Expiry>,
        pub owner: Owner,
    }
}

wire_struct! {
    pub struct Get {
        pub key: String,
        /// Count this read as activity (sliding expiry).
        pub touch: bool,
        /// The caller's IP and user agent, if it wants them compared with
        /// the stored ones (see `SessionBody::ip_changed`).
        pub ip: Option<String>,
        pub user_agent: Option<String>,
    }
}

wire_struct! {
    /// The body of EXISTS, TOUCH and DELETE.
    pub struct KeyOnly {
        pub key: String,
    }
}

wire_struct! {
    /// Moves a session to a new key; with `bind_user`, also makes that user
    /// its owner, in the same step (what a login does).
    pub struct Cycle {
        pub key: String,
        pub bind_user: Option<String>,
    }
}

wire_struct! {
    /// CYCLE with the new key proposed by the caller (protocol version 2),
    /// so a client that places sessions by key (`Cluster`) keeps the session
    /// on the daemon it lives on. The new key is checked as CREATE_AS checks
    /// its key: base64url of 16 to 64 bytes, KEY_EXISTS if any session has
    /// it (the session's own key included).
    pub struct CycleAs {
        pub key: String,
        pub new_key: String,
        pub bind_user: Option<String>,
    }
}

wire_struct! {
    /// Updates the IP address and user agent a session is used from; `None`
    /// leaves one as it is.
    pub struct SetMeta {
        pub key: String,
        pub ip: Option<String>,
        pub user_agent: Option<String>,
    }
}

wire_struct! {
    pub struct ListUser {
        pub user: String,
    }
}

wire_struct! {
    /// Where an IP address is, from the daemon's GeoIP database.
    pub struct Location {
        /// ISO 3166-1 alpha-2, e.g. "FR".
        pub country_code: Option<String>,
        /// English names.
        pub country: Option<String>,
        pub city: Option<String>,
    }
}

wire_struct! {
    /// One session in a user's listing. Listings never carry session keys.
    pub struct SessionInfo {
        pub handle: String,
        pub created_ms: u64,
        pub last_active_ms: u64,
        pub expires_at_ms: u64,
        pub ip: Option<String>,
        pub user_agent: Option<String>,
        /// Present when the daemon has a GeoIP database and the IP is in it.
        pub location: Option<Location>,
    }
}

wire_struct! {
    /// One page of a user's sessions, most recently active first.
    pub struct ListUserPage {
        pub user: String,
        /// Most sessions to return; 0, or more than the daemon's
        /// `max_list_page`, for that many.
        pub limit: u32,
        /// The `next` of the previous page; `None` for the first.
        pub after: Option<String>,
    }
}

wire_struct! {
    pub struct UserPage {
        pub sessions: Vec<SessionInfo>,
        /// Where the next page starts; `None` after the last page.
        pub next: Option<String>,
    }
}

wire_struct! {
    pub struct UserSessions {
        /// Live sessions, most recently active first.
        pub sessions: Vec<SessionInfo>,
    }
}

wire_struct! {
    pub struct Revoke {
        pub handle: String,
    }
}

wire_struct! {
    pub struct RevokeUser {
        pub user: String,
        /// The handle of a session to keep (the caller's own), if any.
        pub keep: Option<String>,
    }
}

wire_struct! {
    pub struct RevokedOk {
        /// Live sessions ended.
        pub count: u64,
    }
}

wire_struct! {
    pub struct Replace {
        pub key: String,
        pub fields: Vec<Field>,
        /// Compare-and-set: fail with VERSION_CONFLICT unless the session is
        /// at this version.
        pub expected_version: Option<u64>,
    }
}

wire_struct! {
    /// Sets and removes fields in one atomic step. Fields not named are left
    /// as they are, so concurrent patches of different fields never lose
    /// each other's writes.
    pub struct Patch {
        pub key: String,
        pub set: Vec<Field>,
        pub remove: Vec<String>,
        pub expected_version: Option<u64>,
    }
}

wire_struct! {
    pub struct SetExpiry {
        pub key: String,
        pub expiry: Expiry,
    }
}

wire_struct! {
    pub struct SweptOk {
        /// Expired sessions removed by this sweep.
        pub removed: u64,
    }
}

wire_struct! {
    pub struct KeysRotated {
        /// The key id new tokens and cookies now use.
        pub active_kid: u32,
    }
}

wire_struct! {
    /// Asks for transfer tokens that hand the session `key` from
    /// `source_host` to other sites.
    pub struct IssueTransfer {
        pub key: String,
        pub source_host: String,
        /// Destination hosts; empty for every configured site but the source.
        pub destinations: Vec<String>,
        /// Browser binding: SHA-256 of the state the destination set in a
        /// cookie. Only with a single destination.
        pub state_hash: Option<Vec<u8>>,
    }
}

wire_struct! {
    pub struct HostToken {
        pub host: String,
        /// base64url, no padding.
        pub token: String,
    }
}

wire_struct! {
    pub struct TransferIssued {
        pub tokens: Vec<HostToken>,
    }
}

wire_struct! {
    pub struct RedeemTransfer {
        pub token: String,
        /// The host redeeming, as configured; must be the token's destination.
        pub host: String,
        /// The destination's current session key, if the browser has one.
        pub current_key: Option<String>,
        /// Replace the current session even if it holds data
        /// (SHARED_SESSION_ALWAYS_REPLACE).
        pub always_replace: bool,
        /// The browser-binding state from the destination's cookie.
        pub state: Option<Vec<u8>>,
    }
}

wire_struct! {
    pub struct Redeemed {
        /// The session key to set as this host's cookie.
        pub key: String,
        /// The cookie changed (the seed's `session_replaced` signal).
        pub replaced: bool,
    }
}

wire_struct! {
    pub struct Seal {
        pub fields: Vec<Field>,
        pub expiry: Expiry,
        pub user: Option<String>,
        pub cookie_name: String,
        pub host: String,
    }
}

wire_struct! {
    pub struct Sealed {
        /// The cookie value.
        pub value: String,
        pub expires_at_ms: u64,
    }
}

wire_struct! {
    /// The body of UNSEAL and REVOKE_SEALED.
    pub struct SealedCookie {
        pub value: String,
        pub cookie_name: String,
        pub host: String,
    }
}

wire_struct! {
    pub struct Unsealed {
        pub fields: Vec<Field>,
        pub user: Option<String>,
        /// The cookie session's id (hex): for logs and REVOKE_SEALED.
        pub sid: String,
        pub expires_at_ms: u64,
        /// A fresh value to set (new nonce, idle time restarted), when the
        /// cookie was last sealed long enough ago.
        pub reseal: Option<String>,
    }
}

wire_struct! {
    pub struct Counter {
        pub name: String,
        pub value: u64,
    }
}

wire_struct! {
    /// A histogram: `counts[i]` observations at most `bounds[i]`, above the
    /// previous bound; the last count is for values above every bound.
    pub struct Histogram {
        pub name: String,
        /// What the histogram is of within `name` (an operation), or empty.
        pub label: String,
        pub bounds: Vec<u64>,
        pub counts: Vec<u64>,
        pub sum: u64,
    }
}

wire_struct! {
    pub struct StatsOk {
        pub counters: Vec<Counter>,
        pub histograms: Vec<Histogram>,
    }
}

wire_struct! {
    pub struct Created {
        pub key: String,
        /// The session's public handle: stable across CYCLE, safe to show.
        pub handle: String,
        pub version: u64,
        pub expires_at_ms: u64,
    }
}

wire_struct! {
    /// A session as GET returns it. Times are Unix milliseconds.
    pub struct SessionBody {
        pub fields: Vec<Field>,
        pub version: u64,
        pub created_ms: u64,
        pub modified_ms: u64,
        pub last_active_ms: u64,
        pub expires_at_ms: u64,
        /// Milliseconds left before expiry, by the daemon's clock: Django's
        /// `get_expiry_age`.
        pub ttl_ms: u64,
        pub expiry: Expiry,
        pub handle: String,
        pub user: Option<String>,
        pub ip: Option<String>,
        pub user_agent: Option<String>,
        /// GET was given an IP that differs from the stored one. Reported,
        /// never enforced: the application decides.
        pub ip_changed: bool,
        /// Likewise for the user agent.
        pub user_agent_changed: bool,
    }
}

/// [`SessionBody`] borrowed from where its values already are, such as the
/// daemon's cached record. It encodes to exactly the bytes of the
/// `SessionBody` with the same values ([`PackedFields`] holds the `Vec`'s
/// encoding, and bincode writes a `&str` as a `String`), so a GET is
/// answered without first copying every field. Keep the two in the same
/// field order.
#[derive(Debug, Clone, Copy, Encode)]
#[bincode(crate = "crate::codec::bincode")]
pub struct SessionBodyRef<'a> {
    pub fields: &'a PackedFields,
    pub version: u64,
    pub created_ms: u64,
    pub modified_ms: u64,
    pub last_active_ms: u64,
    pub expires_at_ms: u64,
    pub ttl_ms: u64,
    pub expiry: Expiry,
    pub handle: &'a str,
    pub user: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub ip_changed: bool,
    pub user_agent_changed: bool,
}

impl SessionBodyRef<'_> {
    /// Appends a SESSION answer frame, as `Response::Session` would. Room
    /// for it is reserved exactly first: a buffer left to double would hold
    /// up to twice a large session for as long as the answer waits.
    pub fn encode_frame(&self, request_id: u32, out: &mut Vec<u8>) {
        let text =
            [Some(self.handle), self.user, self.ip, self.user_agent].iter().flatten().map(|s| s.len()).sum::<usize>();
        // Six u64s, the expiry and four length prefixes at their widest.
        out.reserve_exact(crate::HEADER_LEN + self.fields.encoded_len() + text + 6 * 9 + 9 + 4 * 9);
        encode_frame(out, request_id, op::SESSION, |o| codec::encode_into(self, o));
    }

    pub fn to_owned_body(&self) -> SessionBody {
        SessionBody {
            fields: self.fields.to_vec(),
            version: self.version,
            created_ms: self.created_ms,
            modified_ms: self.modified_ms,
            last_active_ms: self.last_active_ms,
            expires_at_ms: self.expires_at_ms,
            ttl_ms: self.ttl_ms,
            expiry: self.expiry,
            handle: self.handle.to_owned(),
            user: self.user.map(str::to_owned),
            ip: self.ip.map(str::to_owned),
            user_agent: self.user_agent.map(str::to_owned),
            ip_changed: self.ip_changed,
            user_agent_changed: self.user_agent_changed,
        }
    }
}

impl SessionBody {
    /// Calls `f` with this body borrowed, its fields packed: the form the
    /// daemon encodes GET answers from.
    pub fn with_borrowed<R>(&self, f: impl FnOnce(&SessionBodyRef<'_>) -> R) -> R {
        let fields = PackedFields::new(&self.fields);
        f(&SessionBodyRef {
            fields: &fields,
            version: self.version,
            created_ms: self.created_ms,
            modified_ms: self.modified_ms,
            last_active_ms: self.last_active_ms,
            expires_at_ms: self.expires_at_ms,
            ttl_ms: self.ttl_ms,
            expiry: self.expiry,
            handle: &self.handle,
            user: self.user.as_deref(),
            ip: self.ip.as_deref(),
            user_agent: self.user_agent.as_deref(),
            ip_changed: self.ip_changed,
            user_agent_changed: self.user_agent_changed,
        })
    }
}

wire_struct! {
    pub struct ExistsOk {
        pub exists: bool,
    }
}

wire_struct! {
    /// The result of REPLACE, PATCH, TOUCH and SET_EXPIRY.
    pub struct Written {
        pub version: u64,
        pub expires_at_ms: u64,
    }
}

wire_struct! {
    pub struct DeletedOk {
        pub existed: bool,
    }
}

wire_struct! {
    pub struct ErrorBody {
        /// An [`crate::ErrorCode`] value.
        pub code: u16,
        pub message: String,
    }
}

macro_rules! message_enum {
    ($(#[$m:meta])* $name:ident { $( $variant:ident($body:ty) = $op:path, $label:literal; )* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[cfg_attr(test, derive(proptest_derive::Arbitrary))]
        pub enum $name {
            $( $variant($body), )*
        }

        impl $name {
            pub fn opcode(&self) -> u8 {
                match self { $( Self::$variant(_) => $op, )* }
            }

            /// The operation's name as PROTOCOL.md, logs and metrics spell it.
            pub fn name(&self) -> &'static str {
                match self { $( Self::$variant(_) => $label, )* }
            }

            /// The name of the message with this opcode, if there is one.
            pub fn name_of(opcode: u8) -> Option<&'static str> {
                match opcode { $( $op => Some($label), )* _ => None }
            }

            /// The name of the body type of this opcode, as PROTOCOL.md's
            /// opcode table gives it (its golden test compares the two).
            pub fn body_name_of(opcode: u8) -> Option<&'static str> {
                match opcode { $( $op => Some(stringify!($body)), )* _ => None }
            }

            /// Every opcode of this kind of message.
            pub const OPCODES: &'static [u8] = &[$( $op, )*];

            /// Decodes the body of a frame with this opcode.
            pub fn decode(opcode: u8, body: &[u8]) -> Result<Self, DecodeError> {
                let decoded = match opcode {
                    $( $op => codec::decode::<$body>(body).map(Self::$variant), )*
                    other => return Err(DecodeError::UnknownOpcode(other)),
                };
                decoded.map_err(|source| DecodeError::Body { opcode, source })
            }

            pub fn encode_body(&self, out: &mut Vec<u8>) {
                match self { $( Self::$variant(body) => codec::encode_into(body, out), )* }
            }

            /// Appends this message as a whole frame.
            pub fn encode_frame(&self, request_id: u32, out: &mut Vec<u8>) {
                encode_frame(out, request_id, self.opcode(), |o| self.encode_body(o));
            }
        }
    };
}

message_enum! {
    /// A request from a client.
    Request {
        Hello(Hello) = op::HELLO, "HELLO";
        Ping(Empty) = op::PING, "PING";
        Stats(Empty) = op::STATS, "STATS";
        Sweep(Empty) = op::SWEEP, "SWEEP";
        RotateKeys(Empty) = op::ROTATE_KEYS, "ROTATE_KEYS";
        Create(Create) = op::CREATE, "CREATE";
        Get(Get) = op::GET, "GET";
        Exists(KeyOnly) = op::EXISTS, "EXISTS";
        Replace(Replace) = op::REPLACE, "REPLACE";
        Patch(Patch) = op::PATCH, "PATCH";
        Touch(KeyOnly) = op::TOUCH, "TOUCH";
        Delete(KeyOnly) = op::DELETE, "DELETE";
        Cycle(Cycle) = op::CYCLE, "CYCLE";
        SetExpiry(SetExpiry) = op::SET_EXPIRY, "SET_EXPIRY";
        SetMeta(SetMeta) = op::SET_META, "SET_META";
        CreateAs(CreateAs) = op::CREATE_AS, "CREATE_AS";
        Write(Write) = op::WRITE, "WRITE";
        CycleAs(CycleAs) = op::CYCLE_AS, "CYCLE_AS";
        ListUser(ListUser) = op::LIST_USER, "LIST_USER";
        ListUserPage(ListUserPage) = op::LIST_USER_PAGE, "LIST_USER_PAGE";
        Revoke(Revoke) = op::REVOKE, "REVOKE";
        RevokeUser(RevokeUser) = op::REVOKE_USER, "REVOKE_USER";
        IssueTransfer(IssueTransfer) = op::ISSUE_TRANSFER, "ISSUE_TRANSFER";
        RedeemTransfer(RedeemTransfer) = op::REDEEM_TRANSFER, "REDEEM_TRANSFER";
        Seal(Seal) = op::SEAL, "SEAL";
        Unseal(SealedCookie) = op::UNSEAL, "UNSEAL";
        RevokeSealed(SealedCookie) = op::REVOKE_SEALED, "REVOKE_SEALED";
    }
}

message_enum! {
    /// A response from the daemon: one per request, matched by request id.
    Response {
        Error(ErrorBody) = op::ERROR, "ERROR";
        Hello(HelloOk) = op::HELLO_OK, "HELLO_OK";
        Pong(Empty) = op::PONG, "PONG";
        Stats(StatsOk) = op::STATS_OK, "STATS_OK";
        Swept(SweptOk) = op::SWEPT, "SWEPT";
        KeysRotated(KeysRotated) = op::KEYS_ROTATED, "KEYS_ROTATED";
        Created(Created) = op::CREATED, "CREATED";
        Session(SessionBody) = op::SESSION, "SESSION";
        Exists(ExistsOk) = op::EXISTS_OK, "EXISTS_OK";
        Replaced(Written) = op::REPLACED, "REPLACED";
        Patched(Written) = op::PATCHED, "PATCHED";
        Touched(Written) = op::TOUCHED, "TOUCHED";
        Deleted(DeletedOk) = op::DELETED, "DELETED";
        Cycled(Created) = op::CYCLED, "CYCLED";
        ExpirySet(Written) = op::EXPIRY_SET, "EXPIRY_SET";
        MetaSet(Written) = op::META_SET, "META_SET";
        CreatedAs(Created) = op::CREATED_AS, "CREATED_AS";
        Written(Written) = op::WRITTEN, "WRITTEN";
        CycledAs(Created) = op::CYCLED_AS, "CYCLED_AS";
        UserSessions(UserSessions) = op::USER_SESSIONS, "USER_SESSIONS";
        UserPage(UserPage) = op::USER_PAGE, "USER_PAGE";
        Revoked(RevokedOk) = op::REVOKED, "REVOKED";
        UserRevoked(RevokedOk) = op::USER_REVOKED, "USER_REVOKED";
        TransferIssued(TransferIssued) = op::TRANSFER_ISSUED, "TRANSFER_ISSUED";
        Redeemed(Redeemed) = op::REDEEMED, "REDEEMED";
        Sealed(Sealed) = op::SEALED, "SEALED";
        Unsealed(Unsealed) = op::UNSEALED, "UNSEALED";
        SealedRevoked(RevokedOk) = op::SEALED_REVOKED, "SEALED_REVOKED";
    }
}

impl Response {
    pub fn error(code: crate::ErrorCode, message: impl Into<String>) -> Self {
        Self::Error(ErrorBody { code: code as u16, message: message.into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::decode_frame;
    use proptest::prelude::*;

    fn round_trip_request(req: &Request) -> Request {
        let mut out = Vec::new();
        req.encode_frame(42, &mut out);
        let frame = decode_frame(&out, u32::MAX).unwrap().unwrap();
        assert_eq!((frame.header.request_id, frame.len), (42, out.len()));
        Request::decode(frame.header.opcode, frame.body).unwrap()
    }

    fn round_trip_response(resp: &Response) -> Response {
        let mut out = Vec::new();
        resp.encode_frame(u32::MAX, &mut out);
        let frame = decode_frame(&out, u32::MAX).unwrap().unwrap();
        Response::decode(frame.header.opcode, frame.body).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn every_request_round_trips(req in any::<Request>()) {
            prop_assert_eq!(round_trip_request(&req), req);
        }

        #[test]
        fn every_response_round_trips(resp in any::<Response>()) {
            prop_assert_eq!(round_trip_response(&resp), resp);
        }

        #[test]
        fn a_borrowed_session_body_encodes_like_the_owned_one(body in any::<SessionBody>()) {
            let (borrowed, copied) = body.with_borrowed(|view| {
                let mut out = Vec::new();
                view.encode_frame(7, &mut out);
                (out, view.to_owned_body())
            });
            let mut owned = Vec::new();
            Response::Session(body.clone()).encode_frame(7, &mut owned);
            prop_assert_eq!(borrowed, owned);
            prop_assert_eq!(copied, body);
        }

        #[test]
        fn decoding_arbitrary_bodies_never_panics(opcode in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Request::decode(opcode, &body);
            let _ = Response::decode(opcode, &body);
        }
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut body = Vec::new();
        Request::Ping(Empty {}).encode_body(&mut body);
        body.push(0);
        assert!(matches!(Request::decode(op::PING, &body), Err(DecodeError::Body { .. })));
    }

    #[test]
    fn a_huge_length_prefix_inside_a_body_is_refused_by_the_limit() {
        // CREATE with one field "a" whose value claims 64 MiB: field count
        // 1, name length 1, "a", then the u64 marker 0xFD and the length.
        // Without the decoder's limit this allocates the 64 MiB and only
        // then fails for want of bytes.
        let mut body = vec![0x01, 0x01, b'a', 0xFD];
        body.extend_from_slice(&(64u64 << 20).to_le_bytes());
        let err = Request::decode(op::CREATE, &body).unwrap_err();
        assert_eq!(err, DecodeError::Body { opcode: op::CREATE, source: crate::codec::BodyError::TooLong });
        // The same for a plain string (a user id) and a list (LIST_USER's
        // answer), which bincode decodes itself.
        let mut list_user = vec![0xFD];
        list_user.extend_from_slice(&(64u64 << 20).to_le_bytes());
        let err = Request::decode(op::LIST_USER, &list_user).unwrap_err();
        assert_eq!(err, DecodeError::Body { opcode: op::LIST_USER, source: crate::codec::BodyError::TooLong });
        let err = Response::decode(op::USER_SESSIONS, &list_user).unwrap_err();
        assert_eq!(err, DecodeError::Body { opcode: op::USER_SESSIONS, source: crate::codec::BodyError::TooLong });
    }

    #[test]
    fn decode_errors_name_no_rust_types() {
        // An option whose tag is 7: bincode's own message names the type.
        let body = [0x01, 0x01, b'a', 0x00, 0x00, 0x07];
        let err = Request::decode(op::CREATE, &body).unwrap_err().to_string();
        assert!(!err.contains("::") && !err.contains('<'), "{err}");
    }

    #[test]
    fn unknown_opcodes_are_typed_errors() {
        assert_eq!(Request::decode(0x7F, &[]), Err(DecodeError::UnknownOpcode(0x7F)));
        assert_eq!(Response::decode(0xFF, &[]), Err(DecodeError::UnknownOpcode(0xFF)));
    }
}
