"""The operations both clients offer, each as a :class:`Call`: the request
to send and how its answer becomes a result. The blocking and asyncio
clients differ only in how they carry calls, so the protocol knowledge of
every operation lives here once.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping
from operator import attrgetter
from typing import Any, Generic, TypeVar

from . import protocol as p
from .errors import ErrorCode, ProtocolError, ServerError, SessiondError, server_error
from .models import Session, Unsealed

T = TypeVar("T")

#: Per-call limit, from sending to the answer, unless a call gives its own.
DEFAULT_TIMEOUT = 5.0
#: Names this client in the daemon's logs.
CLIENT_NAME = "sessiond-py"
#: The protocol version of CREATE_AS, WRITE and LIST_USER_PAGE.
_V2 = 2
#: ``write``'s default: the session's owner stays as it is.
KEEP_OWNER = p.Owner.keep()

FieldValue = bytes | bytearray | memoryview | str
#: Session data as a mapping or as (name, value) pairs; ``str`` values are sent as UTF-8.
Fields = Mapping[str, FieldValue] | Iterable[tuple[str, FieldValue]]


def default_socket_path() -> str:
    """``$SESSIOND_SOCKET``, else where the daemon listens by default."""
    return os.environ.get("SESSIOND_SOCKET") or "./sessiond-data/sessiond.sock"


@dataclasses.dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request, encoded before any connection is touched (so a bad
    argument never costs one), and the conversion of its answer."""

    opcode: p.Opcode
    payload: bytes
    convert: Callable[[Any], T]
    #: The first protocol version with this operation.
    since: int = 1

    def frame(self, request_id: int) -> bytes:
        return p.encode_frame(request_id, self.opcode, self.payload)

    def result(self, opcode: int, body: Any) -> T:
        """The call's result, or the typed error the daemon answered with."""
        if opcode == p.Opcode.ERROR:
            raise server_error(body.code, body.message)
        if opcode != self.opcode | p.REPLY:
            raise ProtocolError(f"{_name(opcode)} does not answer {self.opcode.name}")
        return self.convert(body)


def unsupported(call: Call[Any], version: int) -> ServerError:
    """The error for ``call`` on a connection of an older protocol version,
    raised before sending: the UNSUPPORTED its daemon would answer, without
    the connection it would close after."""
    message = f"{call.opcode.name} needs protocol version {call.since}; the daemon speaks {version}"
    return ServerError(ErrorCode.UNSUPPORTED, message)


def is_unsupported(error: SessiondError) -> bool:
    """Whether HELLO was refused for its version: the daemon is older, and
    has closed the connection; an older version may be asked on a new one."""
    return isinstance(error, ServerError) and error.code == ErrorCode.UNSUPPORTED


def parting_error(opcode: int, body: Any) -> SessiondError:
    """What a frame with request id 0 means: the daemon's reason for closing
    the connection (BUSY at its connection limit, FORBIDDEN)."""
    if opcode == p.Opcode.ERROR:
        return server_error(body.code, body.message)
    return ProtocolError(f"{_name(opcode)} with request id 0")


def _name(opcode: int) -> str:
    try:
        return p.Opcode(opcode).name
    except ValueError:
        return f"opcode 0x{opcode:02x}"


def _call(opcode: p.Opcode, body: Any, convert: Callable[[Any], T], since: int = 1) -> Call[T]:
    return Call(opcode, p.encode_body(opcode, body), convert, since)


def _fields(fields: Fields) -> list[p.Field]:
    items = fields.items() if isinstance(fields, Mapping) else fields
    return [p.Field(name, _bytes(value)) for name, value in items]


def _bytes(value: FieldValue) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"a field value is bytes or str, not {type(value).__name__}")


def _nothing(_: Any) -> None:
    return None


def _same(body: T) -> T:
    return body


_EMPTY = p.Empty()


def hello(client_name: str, version: int) -> Call[p.HelloOk]:
    """HELLO in ``version``; the answer must carry the same version, since
    its body, and every answer after it, is read as that version's."""

    def check(ok: p.HelloOk) -> p.HelloOk:
        if ok.version != version:
            raise ProtocolError(f"HELLO asked for protocol version {version}; the daemon answered {ok.version}")
        return ok

    return _call(p.Opcode.HELLO, p.Hello(version, client_name), check)


def ping() -> Call[None]:
    return _call(p.Opcode.PING, _EMPTY, _nothing)


def stats() -> Call[dict[str, int]]:
    return _call(p.Opcode.STATS, _EMPTY, lambda s: {c.name: c.value for c in s.counters})


def metrics() -> Call[p.StatsOk]:
    return _call(p.Opcode.STATS, _EMPTY, _same)


def sweep() -> Call[int]:
    return _call(p.Opcode.SWEEP, _EMPTY, attrgetter("removed"))


def rotate_keys() -> Call[int]:
    return _call(p.Opcode.ROTATE_KEYS, _EMPTY, attrgetter("active_kid"))


def create(
    fields: Fields, expiry: p.Expiry, user: str | None, ip: str | None, user_agent: str | None
) -> Call[p.Created]:
    body = p.Create(_fields(fields), expiry, p.Meta(user, ip, user_agent))
    return _call(p.Opcode.CREATE, body, _same)


def create_as(
    key: str, fields: Fields, expiry: p.Expiry, user: str | None, ip: str | None, user_agent: str | None
) -> Call[p.Created]:
    body = p.CreateAs(key, _fields(fields), expiry, p.Meta(user, ip, user_agent))
    return _call(p.Opcode.CREATE_AS, body, _same, _V2)


def get(key: str, touch: bool, ip: str | None = None, user_agent: str | None = None) -> Call[Session]:
    return _call(p.Opcode.GET, p.Get(key, touch, ip, user_agent), Session.from_body)


def exists(key: str) -> Call[bool]:
    return _call(p.Opcode.EXISTS, p.KeyOnly(key), attrgetter("exists"))


def replace(key: str, fields: Fields, expected_version: int | None) -> Call[p.Written]:
    return _call(p.Opcode.REPLACE, p.Replace(key, _fields(fields), expected_version), _same)


def patch(key: str, set: Fields, remove: Iterable[str], expected_version: int | None) -> Call[p.Written]:
    body = p.Patch(key, _fields(set), _names(remove), expected_version)
    return _call(p.Opcode.PATCH, body, _same)


def write(
    key: str,
    set: Fields,
    remove: Iterable[str],
    replace: bool,
    expected_version: int | None,
    expiry: p.Expiry | None,
    owner: p.Owner,
) -> Call[p.Written]:
    body = p.Write(key, _fields(set), _names(remove), replace, expected_version, expiry, owner)
    return _call(p.Opcode.WRITE, body, _same, _V2)


def _names(remove: Iterable[str]) -> list[str]:
    if isinstance(remove, str):
        raise TypeError("remove takes a list of field names, not one string")
    return list(remove)


def touch(key: str) -> Call[p.Written]:
    return _call(p.Opcode.TOUCH, p.KeyOnly(key), _same)


def set_expiry(key: str, expiry: p.Expiry) -> Call[p.Written]:
    return _call(p.Opcode.SET_EXPIRY, p.SetExpiry(key, expiry), _same)


def delete(key: str) -> Call[bool]:
    return _call(p.Opcode.DELETE, p.KeyOnly(key), attrgetter("existed"))


def cycle(key: str, bind_user: str | None) -> Call[p.Created]:
    return _call(p.Opcode.CYCLE, p.Cycle(key, bind_user), _same)


def set_meta(key: str, ip: str | None, user_agent: str | None) -> Call[p.Written]:
    return _call(p.Opcode.SET_META, p.SetMeta(key, ip, user_agent), _same)


def list_user(user: str) -> Call[list[p.SessionInfo]]:
    return _call(p.Opcode.LIST_USER, p.ListUser(user), attrgetter("sessions"))


def list_user_page(user: str, limit: int, after: str | None) -> Call[tuple[list[p.SessionInfo], str | None]]:
    return _call(p.Opcode.LIST_USER_PAGE, p.ListUserPage(user, limit, after), _page, _V2)


def _page(page: p.UserPage) -> tuple[list[p.SessionInfo], str | None]:
    return page.sessions, page.next


def revoke(handle: str) -> Call[int]:
    return _call(p.Opcode.REVOKE, p.Revoke(handle), attrgetter("count"))


def revoke_user(user: str, keep: str | None) -> Call[int]:
    return _call(p.Opcode.REVOKE_USER, p.RevokeUser(user, keep), attrgetter("count"))


def issue_transfer(
    key: str, source_host: str, destinations: Iterable[str], state_hash: bytes | None
) -> Call[list[p.HostToken]]:
    if isinstance(destinations, str):
        raise TypeError("destinations takes a list of hosts, not one string")
    body = p.IssueTransfer(key, source_host, list(destinations), state_hash)
    return _call(p.Opcode.ISSUE_TRANSFER, body, attrgetter("tokens"))


def redeem_transfer(
    token: str, host: str, current_key: str | None, always_replace: bool, state: bytes | None
) -> Call[p.Redeemed]:
    body = p.RedeemTransfer(token, host, current_key, always_replace, state)
    return _call(p.Opcode.REDEEM_TRANSFER, body, _same)


def seal(fields: Fields, expiry: p.Expiry, user: str | None, cookie_name: str, host: str) -> Call[p.Sealed]:
    body = p.Seal(_fields(fields), expiry, user, cookie_name, host)
    return _call(p.Opcode.SEAL, body, _same)


def unseal(value: str, cookie_name: str, host: str) -> Call[Unsealed]:
    return _call(p.Opcode.UNSEAL, p.SealedCookie(value, cookie_name, host), Unsealed.from_body)


def revoke_sealed(value: str, cookie_name: str, host: str) -> Call[int]:
    return _call(p.Opcode.REVOKE_SEALED, p.SealedCookie(value, cookie_name, host), attrgetter("count"))
