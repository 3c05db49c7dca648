"""A user's sessions: list them (handles, never keys), end one, all, or all
but the current one. A user is any model instance; its owner id in the
daemon is its primary key as Django stores it in the session
(``_auth_user_id``)."""

from __future__ import annotations

from typing import Any

from ..protocol import SessionInfo
from . import conf
from .backend import SessionStore


def owner_id(user: Any) -> str:
    return str(user._meta.pk.value_to_string(user))


def sessions(user: Any) -> list[SessionInfo]:
    """The user's live sessions, most recently active first."""
    return conf.client().list_user(owner_id(user))


async def asessions(user: Any) -> list[SessionInfo]:
    return await conf.aclient().list_user(owner_id(user))


def revoke(user: Any, handle: str) -> bool:
    """Ends the user's session with this handle; ``False`` if the user has
    none such. A handle of another user's session is refused, not revoked:
    handles are shown to their owner only, but a page must not trust one it
    is posted."""
    if handle not in {s.handle for s in sessions(user)}:
        return False
    return conf.client().revoke(handle) == 1


async def arevoke(user: Any, handle: str) -> bool:
    if handle not in {s.handle for s in await asessions(user)}:
        return False
    return await conf.aclient().revoke(handle) == 1


def revoke_all(user: Any, *, keep: SessionStore | None = None) -> int:
    """Ends all the user's sessions but ``keep`` (the current one, say), in
    one atomic step, with their sealed cookies; returns how many ended.
    A ``keep`` not yet created (or ended) keeps nothing."""
    handle = keep.current_handle() if keep is not None else None
    return conf.client().revoke_user(owner_id(user), keep=handle)


async def arevoke_all(user: Any, *, keep: SessionStore | None = None) -> int:
    handle = await keep.acurrent_handle() if keep is not None else None
    return await conf.aclient().revoke_user(owner_id(user), keep=handle)
