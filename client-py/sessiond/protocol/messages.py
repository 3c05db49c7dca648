"""Every body type of PROTOCOL.md ("Types"), field for field.

Class names are the document's type names, so the opcode table of the
document can be checked against :data:`sessiond.protocol.BODY` by name.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from typing import ClassVar

from .codec import BOOL, BYTES, STRING, U16, U32, U64, Enumeration, List, Option, as_codec, field, wire_struct

__all__ = [
    "Counter",
    "Create",
    "CreateAs",
    "Created",
    "Cycle",
    "CycleAs",
    "DeletedOk",
    "Empty",
    "ErrorBody",
    "ExistsOk",
    "Expiry",
    "ExpiryKind",
    "Field",
    "Get",
    "Hello",
    "HelloOk",
    "Histogram",
    "HostToken",
    "IssueTransfer",
    "KeyOnly",
    "KeysRotated",
    "Limits",
    "ListUser",
    "ListUserPage",
    "Location",
    "Meta",
    "Owner",
    "OwnerKind",
    "Patch",
    "RedeemTransfer",
    "Redeemed",
    "Replace",
    "Revoke",
    "RevokeUser",
    "RevokedOk",
    "Seal",
    "Sealed",
    "SealedCookie",
    "SessionBody",
    "SessionInfo",
    "SetExpiry",
    "SetMeta",
    "Settings",
    "StatsOk",
    "SweptOk",
    "TransferIssued",
    "Unsealed",
    "UserPage",
    "UserSessions",
    "Write",
    "Written",
]

_OPT_STRING = Option(STRING)


class ExpiryKind(enum.IntEnum):
    """The policies of Django's ``set_expiry``; values are the wire's variant indexes."""

    DEFAULT = 0
    IDLE = 1
    AT = 2
    BROWSER_CLOSE = 3


@dataclasses.dataclass(frozen=True, slots=True)
class Expiry:
    """How a session expires, in Django's terms.

    Build one with :meth:`default`, :meth:`idle`, :meth:`at`,
    :meth:`browser_close`, or :meth:`from_django` (the argument of Django's
    ``set_expiry``). ``value`` is seconds for ``IDLE``, Unix milliseconds for
    ``AT``, and 0 otherwise.
    """

    kind: ExpiryKind
    value: int = 0

    CODEC: ClassVar[Enumeration]

    def __post_init__(self) -> None:
        limit = {ExpiryKind.IDLE: 1 << 32, ExpiryKind.AT: 1 << 64}.get(self.kind, 1)
        if not isinstance(self.value, int) or not 0 <= self.value < limit:
            raise ValueError(f"{self.value!r} is not a valid value for {self.kind.name}")

    @classmethod
    def default(cls) -> Expiry:
        """The daemon's default idle age (``set_expiry(None)``)."""
        return cls(ExpiryKind.DEFAULT)

    @classmethod
    def idle(cls, seconds: int) -> Expiry:
        """Expires ``seconds`` after the last activity (``set_expiry(seconds)``)."""
        return cls(ExpiryKind.IDLE, seconds)

    @classmethod
    def at(cls, unix_ms: int) -> Expiry:
        """Expires at this Unix time in milliseconds, whatever the activity."""
        return cls(ExpiryKind.AT, unix_ms)

    @classmethod
    def browser_close(cls) -> Expiry:
        """The cookie should end with the browser (``set_expiry(0)``).

        The daemon still ends the session after its default idle age.
        """
        return cls(ExpiryKind.BROWSER_CLOSE)

    @classmethod
    def from_django(cls, value: int | datetime.datetime | datetime.timedelta | None) -> Expiry:
        """The policy Django's ``set_expiry(value)`` means.

        ``None``: default; ``0``: browser close; a positive ``int``: idle
        seconds; a ``datetime``: that instant (a naive one is local time, as
        ``datetime.timestamp`` takes it); a ``timedelta``: now plus it, as
        Django turns it into a date at once.
        """
        if value is None:
            return cls.default()
        if isinstance(value, datetime.timedelta):
            value = datetime.datetime.now(datetime.timezone.utc) + value
        if isinstance(value, datetime.datetime):
            return cls.at(round(value.timestamp() * 1000))
        if isinstance(value, int) and not isinstance(value, bool):
            return cls.browser_close() if value == 0 else cls.idle(value)
        raise TypeError(f"set_expiry takes None, an int, a datetime or a timedelta, not {type(value).__name__}")


Expiry.CODEC = Enumeration(Expiry, ExpiryKind, {ExpiryKind.IDLE: U32, ExpiryKind.AT: U64}, "value")


class OwnerKind(enum.IntEnum):
    """What a WRITE does to the session's owner; values are the wire's variant indexes."""

    KEEP = 0
    SET = 1
    CLEAR = 2


@dataclasses.dataclass(frozen=True, slots=True)
class Owner:
    """What a WRITE does to the session's owner: :meth:`keep` it, :meth:`set`
    it (a login that keeps its key) or :meth:`clear` it (a logout that keeps
    the session). ``user`` is the new owner for ``SET``, else ``None``."""

    kind: OwnerKind
    user: str | None = None

    CODEC: ClassVar[Enumeration]

    def __post_init__(self) -> None:
        if self.kind is OwnerKind.SET:
            if not isinstance(self.user, str):
                raise TypeError(f"Owner.set takes a user id as str, not {type(self.user).__name__}")
        elif self.user is not None:
            raise ValueError(f"{self.kind.name} takes no user")

    @classmethod
    def keep(cls) -> Owner:
        """Leave the owner as it is."""
        return cls(OwnerKind.KEEP)

    @classmethod
    def set(cls, user: str) -> Owner:
        """Make ``user`` (an opaque id of 1 to 256 bytes) the owner; the per-user limit applies."""
        return cls(OwnerKind.SET, user)

    @classmethod
    def clear(cls) -> Owner:
        """The session belongs to nobody."""
        return cls(OwnerKind.CLEAR)


Owner.CODEC = Enumeration(Owner, OwnerKind, {OwnerKind.SET: STRING}, "user")


@wire_struct
class Empty:
    """The body of PING, PONG, STATS, SWEEP and ROTATE_KEYS: zero bytes."""


@wire_struct
class Field:
    name: str = field(STRING)
    value: bytes = field(BYTES)


@wire_struct
class Limits:
    """The daemon's limits, from HELLO_OK."""

    max_frame: int = field(U32)
    max_session_bytes: int = field(U32)
    max_fields: int = field(U32)
    max_field_name: int = field(U32)
    max_inflight: int = field(U32)


@wire_struct
class Counter:
    name: str = field(STRING)
    value: int = field(U64)


@wire_struct
class Meta:
    """A session's owner and origin, given at CREATE."""

    user: str | None = field(_OPT_STRING)
    ip: str | None = field(_OPT_STRING)
    user_agent: str | None = field(_OPT_STRING)


@wire_struct
class Location:
    country_code: str | None = field(_OPT_STRING)
    country: str | None = field(_OPT_STRING)
    city: str | None = field(_OPT_STRING)


@wire_struct
class SessionInfo:
    """One session of a user's listing: a public handle, never the key."""

    handle: str = field(STRING)
    created_ms: int = field(U64)
    last_active_ms: int = field(U64)
    expires_at_ms: int = field(U64)
    ip: str | None = field(_OPT_STRING)
    user_agent: str | None = field(_OPT_STRING)
    location: Location | None = field(Option(Location))


@wire_struct
class Hello:
    version: int = field(U16)
    client: str = field(STRING)


@wire_struct
class Settings:
    """The daemon's expiry and listing settings, from HELLO_OK in version 2:
    what a client needs to agree with the daemon on a session's life."""

    #: Idle age of the ``Default`` and ``BrowserClose`` policies.
    default_idle_secs: int = field(U32)
    #: Cap on any session's life from its creation; 0 for none.
    max_lifetime_secs: int = field(U64)
    #: Touches reach the disk once they move an expiry this far.
    touch_granularity_secs: int = field(U32)
    #: User agents are cut to this many bytes.
    max_user_agent: int = field(U32)
    #: Most live sessions of one user; 0 for no limit.
    max_sessions_per_user: int = field(U32)
    #: Most sessions in one LIST_USER_PAGE answer.
    max_list_page: int = field(U32)


#: The first protocol version whose HELLO_OK carries :class:`Settings`.
SETTINGS_SINCE = 2

_LIMITS = as_codec(Limits)
_SETTINGS = as_codec(Settings)


class _HelloOkCodec:
    """HELLO_OK's body depends on the version it carries: ``settings``
    follow the limits from version 2 on, and only then. The version comes
    first, so each side reads exactly the body of that version."""

    def encode(self, out: bytearray, value: HelloOk) -> None:
        if type(value) is not HelloOk:
            raise TypeError(f"expected HelloOk, got {type(value).__name__}")
        if (value.version >= SETTINGS_SINCE) != (value.settings is not None):
            raise ValueError(f"HELLO_OK carries settings from version {SETTINGS_SINCE} on, and only then")
        U16.encode(out, value.version)
        STRING.encode(out, value.server)
        _LIMITS.encode(out, value.limits)
        if value.settings is not None:
            _SETTINGS.encode(out, value.settings)

    def decode(self, data: bytes, pos: int) -> tuple[HelloOk, int]:
        version, pos = U16.decode(data, pos)
        server, pos = STRING.decode(data, pos)
        limits, pos = _LIMITS.decode(data, pos)
        settings = None
        if version >= SETTINGS_SINCE:
            settings, pos = _SETTINGS.decode(data, pos)
        return HelloOk(version, server, limits, settings), pos


@dataclasses.dataclass(slots=True)
class HelloOk:
    """The answer to HELLO: the version asked for, the daemon's version
    string and limits and, from version 2, its settings (``None`` before).

    Not a :func:`wire_struct`, whose fields are always all there; each field
    still names its codec, as the document's type table lists it.
    """

    version: int = field(U16)
    server: str = field(STRING)
    limits: Limits = field(Limits)
    settings: Settings | None = field(Settings, default=None)

    CODEC: ClassVar[_HelloOkCodec] = _HelloOkCodec()


@wire_struct
class Histogram:
    """``counts[i]`` observations at most ``bounds[i]``; the last count is above every bound."""

    name: str = field(STRING)
    label: str = field(STRING)
    bounds: list[int] = field(List(U64))
    counts: list[int] = field(List(U64))
    sum: int = field(U64)


@wire_struct
class StatsOk:
    counters: list[Counter] = field(List(Counter))
    histograms: list[Histogram] = field(List(Histogram))


_FIELDS = List(Field)


@wire_struct
class Create:
    fields: list[Field] = field(_FIELDS)
    expiry: Expiry = field(Expiry)
    meta: Meta = field(Meta)


@wire_struct
class CreateAs:
    """CREATE under a key the caller proposes (version 2), for frameworks
    that draw their own session ids: 16 to 64 bytes of canonical base64url."""

    key: str = field(STRING)
    fields: list[Field] = field(_FIELDS)
    expiry: Expiry = field(Expiry)
    meta: Meta = field(Meta)


@wire_struct
class Created:
    """A new key (CREATE, CYCLE) or the proposed one (CREATE_AS), and the session's public handle."""

    key: str = field(STRING)
    handle: str = field(STRING)
    version: int = field(U64)
    expires_at_ms: int = field(U64)


@wire_struct
class Get:
    key: str = field(STRING)
    touch: bool = field(BOOL)
    ip: str | None = field(_OPT_STRING)
    user_agent: str | None = field(_OPT_STRING)


@wire_struct
class SessionBody:
    fields: list[Field] = field(_FIELDS)
    version: int = field(U64)
    created_ms: int = field(U64)
    modified_ms: int = field(U64)
    last_active_ms: int = field(U64)
    expires_at_ms: int = field(U64)
    ttl_ms: int = field(U64)
    expiry: Expiry = field(Expiry)
    handle: str = field(STRING)
    user: str | None = field(_OPT_STRING)
    ip: str | None = field(_OPT_STRING)
    user_agent: str | None = field(_OPT_STRING)
    ip_changed: bool = field(BOOL)
    user_agent_changed: bool = field(BOOL)


@wire_struct
class KeyOnly:
    key: str = field(STRING)


@wire_struct
class Cycle:
    key: str = field(STRING)
    bind_user: str | None = field(_OPT_STRING)


@wire_struct
class CycleAs:
    key: str = field(STRING)
    new_key: str = field(STRING)
    bind_user: str | None = field(_OPT_STRING)


@wire_struct
class ExistsOk:
    exists: bool = field(BOOL)


@wire_struct
class Replace:
    key: str = field(STRING)
    fields: list[Field] = field(_FIELDS)
    expected_version: int | None = field(Option(U64))


@wire_struct
class Patch:
    key: str = field(STRING)
    set: list[Field] = field(_FIELDS)
    remove: list[str] = field(List(STRING))
    expected_version: int | None = field(Option(U64))


@wire_struct
class Write:
    """PATCH, or REPLACE with ``replace``, then a new expiry policy and a
    change of owner, in one atomic write (version 2): a framework's save in
    one round trip."""

    key: str = field(STRING)
    #: Fields to set; with ``replace``, the whole new data.
    set: list[Field] = field(_FIELDS)
    #: Fields to remove; must be empty with ``replace``.
    remove: list[str] = field(List(STRING))
    replace: bool = field(BOOL)
    expected_version: int | None = field(Option(U64))
    #: A new policy, applied as SET_EXPIRY would; ``None`` keeps the policy.
    expiry: Expiry | None = field(Option(Expiry))
    owner: Owner = field(Owner)


@wire_struct
class Written:
    """The session's version and expiry after a write."""

    version: int = field(U64)
    expires_at_ms: int = field(U64)


@wire_struct
class DeletedOk:
    existed: bool = field(BOOL)


@wire_struct
class SetExpiry:
    key: str = field(STRING)
    expiry: Expiry = field(Expiry)


@wire_struct
class SweptOk:
    removed: int = field(U64)


@wire_struct
class SetMeta:
    key: str = field(STRING)
    ip: str | None = field(_OPT_STRING)
    user_agent: str | None = field(_OPT_STRING)


@wire_struct
class ListUser:
    user: str = field(STRING)


@wire_struct
class UserSessions:
    sessions: list[SessionInfo] = field(List(SessionInfo))


@wire_struct
class ListUserPage:
    """One page of a user's sessions (version 2)."""

    user: str = field(STRING)
    #: Most sessions to return; 0, or more than ``Settings.max_list_page``, for that many.
    limit: int = field(U32)
    #: The ``next`` of the page before; ``None`` for the first page.
    after: str | None = field(_OPT_STRING)


@wire_struct
class UserPage:
    """A page of a user's sessions, most recently active first."""

    sessions: list[SessionInfo] = field(List(SessionInfo))
    #: The cursor of the next page; ``None`` after the last one.
    next: str | None = field(_OPT_STRING)


@wire_struct
class Revoke:
    handle: str = field(STRING)


@wire_struct
class RevokeUser:
    user: str = field(STRING)
    keep: str | None = field(_OPT_STRING)


@wire_struct
class RevokedOk:
    count: int = field(U64)


@wire_struct
class KeysRotated:
    active_kid: int = field(U32)


@wire_struct
class IssueTransfer:
    key: str = field(STRING)
    source_host: str = field(STRING)
    destinations: list[str] = field(List(STRING))
    state_hash: bytes | None = field(Option(BYTES))


@wire_struct
class HostToken:
    """A transfer token and the host it is for."""

    host: str = field(STRING)
    token: str = field(STRING)


@wire_struct
class TransferIssued:
    tokens: list[HostToken] = field(List(HostToken))


@wire_struct
class RedeemTransfer:
    token: str = field(STRING)
    host: str = field(STRING)
    current_key: str | None = field(_OPT_STRING)
    always_replace: bool = field(BOOL)
    state: bytes | None = field(Option(BYTES))


@wire_struct
class Redeemed:
    """The key to set as this host's cookie, and whether it changed."""

    key: str = field(STRING)
    replaced: bool = field(BOOL)


@wire_struct
class Seal:
    fields: list[Field] = field(_FIELDS)
    expiry: Expiry = field(Expiry)
    user: str | None = field(_OPT_STRING)
    cookie_name: str = field(STRING)
    host: str = field(STRING)


@wire_struct
class Sealed:
    """A sealed cookie value and when its session expires."""

    value: str = field(STRING)
    expires_at_ms: int = field(U64)


@wire_struct
class SealedCookie:
    value: str = field(STRING)
    cookie_name: str = field(STRING)
    host: str = field(STRING)


@wire_struct
class Unsealed:
    fields: list[Field] = field(_FIELDS)
    user: str | None = field(_OPT_STRING)
    sid: str = field(STRING)
    expires_at_ms: int = field(U64)
    reseal: str | None = field(_OPT_STRING)


@wire_struct
class ErrorBody:
    code: int = field(U16)
    message: str = field(STRING)
