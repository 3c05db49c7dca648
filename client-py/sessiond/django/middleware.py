"""``SessionMetaMiddleware``: records the IP and user agent each session is
used from, as django-qsessions does, for "your active sessions" pages.

Put it after Django's ``SessionMiddleware``. The request's IP and user agent
go to the daemon with the session's creation; at each load the daemon
compares them with the stored ones, and only a change costs a write
(SET_META), sent once the view has run. ``REMOTE_ADDR`` is the IP: behind a
proxy, have the proxy's middleware set it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from ..errors import ServerError
from . import conf
from .backend import RequestMeta, SessionStore, gone


def request_meta(request: Any) -> RequestMeta:
    """The request's IP in canonical form (``None`` if it is not an IP, which
    the daemon would refuse) and user agent (``None`` if absent)."""
    try:
        ip: str | None = str(ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")))
    except ValueError:
        ip = None
    return RequestMeta(ip, request.META.get("HTTP_USER_AGENT") or None)


class SessionMetaMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self.is_async:
            return self.__acall__(request)
        session = _attach(request)
        response = self.get_response(request)
        if session is not None and (key := _stale_key(session)):
            meta = session.request_meta
            try:
                conf.client().set_meta(key, ip=meta.ip, user_agent=meta.user_agent)
            except ServerError as e:
                if not gone(e):  # ended meanwhile (logout): nothing to record
                    raise
        return response

    async def __acall__(self, request: Any) -> Any:
        session = _attach(request)
        response = await self.get_response(request)
        if session is not None and (key := _stale_key(session)):
            meta = session.request_meta
            try:
                await conf.aclient().set_meta(key, ip=meta.ip, user_agent=meta.user_agent)
            except ServerError as e:
                if not gone(e):
                    raise
        return response


def _attach(request: Any) -> Any:
    """The request's session, told who uses it, if it is a sessiond one."""
    session = getattr(request, "session", None)
    if not isinstance(session, SessionStore):
        return None
    session.request_meta = request_meta(request)
    return session


def _stale_key(session: SessionStore) -> str | None:
    """The key of a live session whose recorded IP or user agent is out of date."""
    return session.session_key if session.meta_stale else None
