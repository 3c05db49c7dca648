"""The settings, and the clients built from them: one blocking client per
process, and one asyncio client per event loop, each made on first use.

A client is rebuilt only when the settings it was made from change (as
``override_settings`` does in tests). No lock guards the first creation: a
lock held by another thread at ``fork`` would stay held in the child, and
the worst a race costs is one extra client, dropped at once.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import NamedTuple

from django.conf import settings

from .. import Client, aio
from .._ops import DEFAULT_TIMEOUT


class Options(NamedTuple):
    socket: str | None
    timeout: float


def options() -> Options:
    return Options(getattr(settings, "SESSIOND_SOCKET", None), getattr(settings, "SESSIOND_TIMEOUT", DEFAULT_TIMEOUT))


def touch_on_read() -> bool:
    return bool(getattr(settings, "SESSIOND_TOUCH_ON_READ", False))


_client: tuple[Options, Client] | None = None
_aio_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Options, aio.Client]] = (
    weakref.WeakKeyDictionary()
)


def client() -> Client:
    """The process's blocking client (safe across threads and ``fork``)."""
    global _client
    wanted = options()
    if _client is None or _client[0] != wanted:
        if _client is not None:
            _client[1].close()
        _client = (wanted, Client(wanted.socket, timeout=wanted.timeout, client_name="sessiond-django"))
    return _client[1]


def aclient() -> aio.Client:
    """The running event loop's asyncio client.

    One per loop because an asyncio connection belongs to the loop that made
    it: under ASGI that is one client per worker; under WSGI, where each
    async view runs on a loop of its own, one per request.
    """
    loop = asyncio.get_running_loop()
    wanted = options()
    held = _aio_clients.get(loop)
    if held is None or held[0] != wanted:
        held = (wanted, aio.Client(wanted.socket, timeout=wanted.timeout, client_name="sessiond-django"))
        _aio_clients[loop] = held
    return held[1]
