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
    KeyExists,
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
    Owner,
    OwnerKind,
    Redeemed,
    Sealed,
    SessionInfo,
    Settings,
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
    "KeyExists",
    "Limits",
    "Location",
    "NotFound",
    "Owner",
    "OwnerKind",
    "ProtocolError",
    "Redeemed",
    "Sealed",
    "ServerError",
    "Session",
    "SessionInfo",
    "SessiondError",
    "Settings",
    "StatsOk",
    "Timeout",
    "Unsealed",
    "VersionConflict",
    "Written",
    "default_socket_path",
]
