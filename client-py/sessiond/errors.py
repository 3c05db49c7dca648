"""The exceptions a sessiond call can raise.

Every failure is a :class:`SessiondError`. The daemon's own answers are
:class:`ServerError` (with the wire code), and the common ones have their
own subclasses so that callers can write ``except NotFound`` rather than
compare codes. Failures of the link itself (:class:`Timeout`,
:class:`Disconnected`, :class:`ProtocolError`) are not server errors: the
daemon never answered.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.IntEnum):
    """The codes of an ERROR answer (PROTOCOL.md, "Errors")."""

    NOT_FOUND = 1
    VERSION_CONFLICT = 2
    BAD_REQUEST = 3
    TOO_LARGE = 4
    BUSY = 5
    UNAVAILABLE = 6
    INTERNAL = 7
    BAD_KEY = 8
    BAD_FRAME = 9
    UNSUPPORTED = 10
    HELLO_REQUIRED = 11
    TOO_MANY_SESSIONS = 12
    TOKEN_REJECTED = 13
    FORBIDDEN = 14
    KEY_EXISTS = 15


class SessiondError(Exception):
    """Base class of every error this package raises."""


class ProtocolError(SessiondError):
    """Bytes that do not follow PROTOCOL.md: a bad frame, body or answer.

    The connection they came on is closed, since the stream can no longer
    be trusted to be in step.
    """


class Timeout(SessiondError):
    """No answer within the call's timeout. Whether a write took effect is unknown."""


class Disconnected(SessiondError):
    """The daemon could not be reached, or the connection broke before the answer.

    Whether a write in flight took effect is unknown; the next call connects
    again.
    """


class ServerError(SessiondError):
    """The daemon answered with an error.

    ``code`` is an :class:`ErrorCode`, or a plain ``int`` for a code this
    client does not know (which PROTOCOL.md says to treat like INTERNAL).
    """

    def __init__(self, code: int, message: str) -> None:
        try:
            known: ErrorCode | int = ErrorCode(code)
        except ValueError:
            known = code
        name = known.name if isinstance(known, ErrorCode) else f"error code {code}"
        super().__init__(f"{name}: {message}")
        self.code = known
        self.message = message


class NotFound(ServerError):
    """No live session has this key (or handle): never existed, expired or ended."""


class VersionConflict(ServerError):
    """A compare-and-set (``expected_version``) found another version; nothing changed."""


class Busy(ServerError):
    """The daemon is at a limit (write queue, or connections: then the link closes)."""


class Forbidden(ServerError):
    """This process's user may not use the daemon (SO_PEERCRED check)."""


class KeyExists(ServerError):
    """``create_as`` proposed a key a session already has (live, or expired
    and not yet swept); nothing changed. Draw another key."""


_BY_CODE: dict[int, type[ServerError]] = {
    ErrorCode.NOT_FOUND: NotFound,
    ErrorCode.VERSION_CONFLICT: VersionConflict,
    ErrorCode.BUSY: Busy,
    ErrorCode.FORBIDDEN: Forbidden,
    ErrorCode.KEY_EXISTS: KeyExists,
}


def server_error(code: int, message: str) -> ServerError:
    """The typed exception for an ERROR answer."""
    return _BY_CODE.get(code, ServerError)(code, message)
