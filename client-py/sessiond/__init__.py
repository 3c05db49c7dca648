"""A Python client for sessiond, the session-store daemon.

:class:`Client` is the blocking client; :class:`sessiond.aio.Client` is the
asyncio one, with the same operations. Both speak the protocol of
:mod:`sessiond.protocol` and raise the errors of :mod:`sessiond.errors`.
"""

from ._ops import default_socket_path
from .client import Client
from .errors import (
    Busy,
    Disconnected,
    ErrorCode,
    Forbidden,
    NotFound,
    ProtocolError,
    ServerError,
    SessiondError,
    Timeout,
    VersionConflict,
)
from .models import Session, Unsealed
from .protocol import (
    Counter,
    Created,
    Expiry,
    ExpiryKind,
    Histogram,
    HostToken,
    Limits,
    Location,
    Redeemed,
    Sealed,
    SessionInfo,
    StatsOk,
    Written,
)

__version__ = "0.1.0"

__all__ = [
    "Busy",
    "Client",
    "Counter",
    "Created",
    "Disconnected",
    "ErrorCode",
    "Expiry",
    "ExpiryKind",
    "Forbidden",
    "Histogram",
    "HostToken",
    "Limits",
    "Location",
    "NotFound",
    "ProtocolError",
    "Redeemed",
    "Sealed",
    "ServerError",
    "Session",
    "SessionInfo",
    "SessiondError",
    "StatsOk",
    "Timeout",
    "Unsealed",
    "VersionConflict",
    "Written",
    "default_socket_path",
]
