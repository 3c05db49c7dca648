"""``SESSION_ENGINE = "sessiond.django.sealed"``: the whole session in the
cookie, as Django's ``signed_cookies``, but sealed by the daemon (SEAL):
encrypted, so the browser cannot read it, bound to the cookie's name and
host (``SESSIOND_COOKIE_HOST``, required), and revocable.

The session key is the cookie value. What differs from ``signed_cookies``:

- ``exists(value)`` says whether the value opens (UNSEAL).
- ``delete`` and ``flush`` (logout) revoke the cookie session, durably, and
  ``cycle_key`` revokes the old one: a copied cookie stops working.
- A save of a session revoked meanwhile raises :class:`UpdateError`.
- When the daemon hands back a fresh value on load (sliding expiry), the
  session is marked modified so that the middleware sets it.

Each save that changes the data seals a new cookie session: an earlier value
keeps opening until it expires unless revoked (``users.revoke_all`` revokes
every sealed cookie of the owner, as the session's ``_auth_user_id`` is
sealed in as its owner).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase, UpdateError
from django.core.exceptions import ImproperlyConfigured

from ..errors import ErrorCode, ServerError
from ..models import Unsealed
from ..protocol import Expiry, Sealed
from . import conf, expiry, fields

#: The fields and policy sealed in a value.
_Snapshot = tuple[dict[str, bytes], Expiry]


def _rejected(error: ServerError) -> bool:
    return error.code == ErrorCode.TOKEN_REJECTED


def _binding() -> tuple[str, str]:
    """The cookie's name and host, which every sealed value is bound to."""
    host = getattr(settings, "SESSIOND_COOKIE_HOST", None)
    if not host:
        raise ImproperlyConfigured("sessiond.django.sealed needs SESSIOND_COOKIE_HOST: the host its cookies are for")
    return settings.SESSION_COOKIE_NAME, host


class SessionStore(SessionBase):
    # Django's internals this store relies on, declared for type checkers.
    _session_key: str | None
    _session_cache: dict[str, Any]
    _get_session: Callable[..., dict[str, Any]]
    _aget_session: Callable[..., Awaitable[dict[str, Any]]]

    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        #: The data and policy sealed in the current value (``None``: unknown).
        self._sealed: _Snapshot | None = None

    def load(self) -> dict[str, Any]:
        if not self.session_key:
            return {}
        try:
            opened = conf.client().unseal(self.session_key, *_binding())
        except ServerError as e:
            return self._refused(e)
        return self._opened(opened)

    async def aload(self) -> dict[str, Any]:
        if not self.session_key:
            return {}
        try:
            opened = await conf.aclient().unseal(self.session_key, *_binding())
        except ServerError as e:
            return self._refused(e)
        return self._opened(opened)

    def _opened(self, opened: Unsealed) -> dict[str, Any]:
        data, kept = fields.decode(opened.fields, self.serializer)
        self._sealed = (kept, self._policy(data))
        if opened.reseal is not None:
            self._session_key = opened.reseal
            self.modified = True  # so that the middleware sets the fresh value
        return data

    def _refused(self, error: ServerError) -> dict[str, Any]:
        """Altered, expired, revoked, or not a sealed value: start afresh."""
        if not _rejected(error):
            raise error
        self._session_key = None
        self._sealed = None
        return {}

    def exists(self, session_key: str | None) -> bool:
        if not session_key:
            return False
        try:
            conf.client().unseal(session_key, *_binding())
        except ServerError as e:
            if _rejected(e):
                return False
            raise
        return True

    async def aexists(self, session_key: str | None) -> bool:
        if not session_key:
            return False
        try:
            await conf.aclient().unseal(session_key, *_binding())
        except ServerError as e:
            if _rejected(e):
                return False
            raise
        return True

    def create(self) -> None:
        """As ``signed_cookies``: the value is made when the session is saved."""
        self.modified = True

    async def acreate(self) -> None:
        self.create()

    def save(self, must_create: bool = False) -> None:
        """Seals the data into a new value, unless it is what the current
        value holds. Checks first that the current value still opens: a
        session revoked meanwhile raises :class:`UpdateError`."""
        snapshot = self._changed(must_create)
        if snapshot is None:
            return
        if self.session_key and not must_create and not self.exists(self.session_key):
            raise UpdateError
        binding = _binding()
        owner = fields.owner(self._session_cache)
        self._adopt(conf.client().seal(snapshot[0], *binding, expiry=snapshot[1], user=owner), snapshot)

    async def asave(self, must_create: bool = False) -> None:
        snapshot = self._changed(must_create)
        if snapshot is None:
            return
        if self.session_key and not must_create and not await self.aexists(self.session_key):
            raise UpdateError
        binding = _binding()
        owner = fields.owner(self._session_cache)
        self._adopt(await conf.aclient().seal(snapshot[0], *binding, expiry=snapshot[1], user=owner), snapshot)

    def _changed(self, must_create: bool) -> _Snapshot | None:
        """What to seal, or ``None`` if the current value already holds it."""
        data = self._get_session(no_load=must_create)
        snapshot = (fields.encode(data, self.serializer), self._policy(data))
        if self.session_key and not must_create and snapshot == self._sealed:
            return None
        return snapshot

    def _adopt(self, sealed: Sealed, snapshot: _Snapshot) -> None:
        self._session_key = sealed.value
        self._sealed = snapshot
        self.modified = True

    def _policy(self, data: dict[str, Any]) -> Expiry:
        return expiry.policy(
            data.get("_session_expiry"), self.get_session_cookie_age(), settings.SESSION_EXPIRE_AT_BROWSER_CLOSE
        )

    def cycle_key(self) -> None:
        """A new value for the same data; the old one is revoked."""
        old = self.session_key
        self._get_session()
        self._sealed = None  # seal even if unchanged
        self.save(must_create=True)
        if old:
            self.delete(old)

    async def acycle_key(self) -> None:
        old = self.session_key
        await self._aget_session()
        self._sealed = None
        await self.asave(must_create=True)
        if old:
            await self.adelete(old)

    def delete(self, session_key: str | None = None) -> None:
        """Revokes the value (every value of its cookie session); without an
        argument, also empties this session, as ``signed_cookies`` does."""
        value = session_key or self.session_key
        if value:
            try:
                conf.client().revoke_sealed(value, *_binding())
            except ServerError as e:
                if not _rejected(e):
                    raise
        if session_key is None:
            self._forget()

    async def adelete(self, session_key: str | None = None) -> None:
        value = session_key or self.session_key
        if value:
            try:
                await conf.aclient().revoke_sealed(value, *_binding())
            except ServerError as e:
                if not _rejected(e):
                    raise
        if session_key is None:
            self._forget()

    def _forget(self) -> None:
        self._session_key = ""
        self._session_cache = {}
        self._sealed = None
        self.modified = True

    @classmethod
    def clear_expired(cls) -> None:
        """Nothing is stored: an expired value no longer opens."""

    @classmethod
    async def aclear_expired(cls) -> None:
        """Nothing is stored: an expired value no longer opens."""
