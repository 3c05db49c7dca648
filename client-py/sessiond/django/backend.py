"""``SESSION_ENGINE = "sessiond.django.backend"``: Django sessions kept by sessiond.

How it differs from Django's ``db`` backend, and why:

- A save sends only what changed, in one atomic WRITE: the keys whose
  serialized value changed, the keys removed, the expiry policy if it
  changed, and the owner if the session's user changed (login). Two
  requests that change different keys of one session both keep their
  change; the ``db`` backend writes the whole session and the last request
  wins.
- Only the daemon makes keys (CREATE, CYCLE): a key it does not know is
  never adopted, and ``cycle_key`` is one atomic CYCLE. A login is that
  CYCLE, then the save that binds the owner with the data.
- A save of a session that ended meanwhile (logout elsewhere, expiry)
  raises :class:`UpdateError` rather than bringing it back.
- The daemon expires sessions exactly and sweeps them itself:
  ``clearsessions`` only asks it to sweep now.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase, UpdateError

from ..errors import ErrorCode, NotFound, ServerError
from ..models import Session
from ..protocol import Created, Expiry
from . import agreement, conf, expiry, fields, writes


def gone(error: ServerError) -> bool:
    """Whether an error means "no such session": unknown, ended, or not even
    shaped like a key (a forged or stale cookie)."""
    return isinstance(error, NotFound) or error.code == ErrorCode.BAD_KEY


class RequestMeta(NamedTuple):
    """Who is using the session: a canonical IP, and a user agent."""

    ip: str | None
    user_agent: str | None


class SessionStore(SessionBase):
    """A Django session in sessiond. Sync methods use the process's blocking
    client, the ``a``-methods the event loop's asyncio client."""

    # Django's internals this store relies on, declared for type checkers
    # (django-stubs leaves them out).
    _session_key: str | None
    _session_cache: dict[str, Any]
    _get_session: Callable[..., dict[str, Any]]
    _aget_session: Callable[..., Awaitable[dict[str, Any]]]

    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        #: What the daemon holds since the last load or save (``None``:
        #: unknown); a save sends the difference.
        self._held: writes.State | None = None
        #: The session's public handle (safe to show; see :mod:`sessiond.django.users`).
        self.handle: str | None = None
        #: The request's IP and user agent, set by
        #: :class:`~sessiond.django.middleware.SessionMetaMiddleware`:
        #: given at creation, compared by the daemon at each load.
        self.request_meta = RequestMeta(None, None)
        #: Whether the daemon's IP or user agent differ from the request's,
        #: as found by the last load; the middleware then records them.
        self.meta_stale = False

    # Reading.

    def load(self) -> dict[str, Any]:
        if self.session_key is None:
            return {}
        meta = self.request_meta
        try:
            session = conf.client().get_from(
                self.session_key, touch=conf.touch_on_read(), ip=meta.ip, user_agent=meta.user_agent
            )
        except ServerError as e:
            return self._lost(e)
        return self._loaded(session)

    async def aload(self) -> dict[str, Any]:
        if self.session_key is None:
            return {}
        meta = self.request_meta
        try:
            session = await conf.aclient().get_from(
                self.session_key, touch=conf.touch_on_read(), ip=meta.ip, user_agent=meta.user_agent
            )
        except ServerError as e:
            return self._lost(e)
        return self._loaded(session)

    def _loaded(self, session: Session) -> dict[str, Any]:
        data, stored = fields.decode(session.fields, self.serializer)
        self._held = writes.State(stored, session.expiry, session.user)
        self.handle = session.handle
        meta = self.request_meta
        self.meta_stale = (
            session.ip_changed
            or session.user_agent_changed
            or (meta.ip is not None and session.ip is None)
            or (meta.user_agent is not None and session.user_agent is None)
        )
        return data

    def _lost(self, error: ServerError) -> dict[str, Any]:
        """As Django's backends do for an unknown key: forget it (a save then
        creates a new session) and start empty."""
        if not gone(error):
            raise error
        self._session_key = None
        self._held = None
        return {}

    def exists(self, session_key: str | None) -> bool:
        if not session_key:
            return False
        try:
            return conf.client().exists(session_key)
        except ServerError as e:
            if gone(e):
                return False
            raise

    async def aexists(self, session_key: str | None) -> bool:
        if not session_key:
            return False
        try:
            return await conf.aclient().exists(session_key)
        except ServerError as e:
            if gone(e):
                return False
            raise

    # Writing.

    def create(self) -> None:
        """A new session holding the current data; the daemon makes its key."""
        data = self._get_session(no_load=True)
        state = self._state(data)
        meta = self.request_meta
        created = conf.client().create_with_meta(
            state.fields, state.policy, user=state.owner, ip=meta.ip, user_agent=meta.user_agent
        )
        self._created(created, state)
        agreement.check(conf.client(), state.policy, self.get_session_cookie_age())

    async def acreate(self) -> None:
        data = await self._aget_session(no_load=True)
        state = self._state(data)
        meta = self.request_meta
        created = await conf.aclient().create_with_meta(
            state.fields, state.policy, user=state.owner, ip=meta.ip, user_agent=meta.user_agent
        )
        self._created(created, state)
        await agreement.acheck(conf.aclient(), state.policy, self.get_session_cookie_age())

    def _created(self, created: Created, state: writes.State) -> None:
        self._session_key = created.key
        self._held = state
        self.handle = created.handle
        self.modified = True  # so the middleware sets the new cookie

    def save(self, must_create: bool = False) -> None:
        """Sends what changed since the last load or save.

        ``must_create`` makes a new session (with a new key: the daemon
        chooses keys). A session that ended meanwhile raises
        :class:`UpdateError` and stays ended.
        """
        if must_create or self.session_key is None:
            return self.create()
        write, state = self._pending()
        client = conf.client()
        try:
            writes.send(client, self.session_key, write)
        except ServerError as e:
            raise self._update_error(e) from e
        if state is not None:
            self._held = state
            agreement.check(client, state.policy, self.get_session_cookie_age())

    async def asave(self, must_create: bool = False) -> None:
        if must_create or self.session_key is None:
            return await self.acreate()
        write, state = self._pending()
        client = conf.aclient()
        try:
            await writes.asend(client, self.session_key, write)
        except ServerError as e:
            raise self._update_error(e) from e
        if state is not None:
            self._held = state
            await agreement.acheck(client, state.policy, self.get_session_cookie_age())

    def _pending(self) -> tuple[writes.Write, writes.State | None]:
        """The write a save sends, and what the daemon holds once it is done."""
        try:
            data = self._session_cache
        except AttributeError:  # never read, so unchanged: the save is only activity
            return writes.TOUCH, None
        state = self._state(data)
        return writes.plan(self._held, state), state

    def _state(self, data: dict[str, Any]) -> writes.State:
        """What the daemon is to hold for ``data``; its owner is the logged-in user's id."""
        return writes.State(fields.encode(data, self.serializer), self._policy(data), fields.owner(data))

    @staticmethod
    def _update_error(error: ServerError) -> Exception:
        return UpdateError() if gone(error) else error

    def _policy(self, data: dict[str, Any]) -> Expiry:
        return expiry.policy(
            data.get("_session_expiry"), self.get_session_cookie_age(), settings.SESSION_EXPIRE_AT_BROWSER_CLOSE
        )

    def cycle_key(self) -> None:
        """A new key for the same session, in one atomic CYCLE (the old key
        stops working at once); a new session if there was none."""
        key = self.session_key
        if key is not None:
            try:
                created = conf.client().cycle(key)
            except ServerError as e:
                self._lost(e)
            else:
                return self._cycled(created)
        self.create()

    async def acycle_key(self) -> None:
        key = self.session_key
        if key is not None:
            try:
                created = await conf.aclient().cycle(key)
            except ServerError as e:
                self._lost(e)
            else:
                return self._cycled(created)
        await self.acreate()

    def current_handle(self) -> str | None:
        """This session's handle (read from the daemon if need be); ``None``
        if it has not been created or has ended."""
        if self.handle is None and self.session_key is not None:
            try:
                self.handle = conf.client().get(self.session_key).handle
            except ServerError as e:
                if not gone(e):
                    raise
        return self.handle

    async def acurrent_handle(self) -> str | None:
        if self.handle is None and self.session_key is not None:
            try:
                self.handle = (await conf.aclient().get(self.session_key)).handle
            except ServerError as e:
                if not gone(e):
                    raise
        return self.handle

    def adopt(self, key: str) -> None:
        """Makes this store the daemon's session under ``key``, in place:
        what was loaded or changed is dropped, and the session is loaded
        from ``key`` when next read. For a key the daemon has just handed
        out (a redeemed transfer), never one from a request. The session is
        marked modified, so that SessionMiddleware saves it (a touch) and
        sets its cookie; the request's IP and user agent stay."""
        self._session_key = key
        self.__dict__.pop("_session_cache", None)
        self._held = None
        self.handle = None
        self.meta_stale = False
        self.modified = True

    def _cycled(self, created: Created) -> None:
        # The data moved with the key: what is stored, and unsaved changes
        # in memory, both stay as they are.
        self._session_key = created.key
        self.modified = True

    def delete(self, session_key: str | None = None) -> None:
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        try:
            conf.client().delete(session_key)
        except ServerError as e:
            if not gone(e):
                raise

    async def adelete(self, session_key: str | None = None) -> None:
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        try:
            await conf.aclient().delete(session_key)
        except ServerError as e:
            if not gone(e):
                raise

    @classmethod
    def clear_expired(cls) -> None:
        """Asks the daemon to sweep now; it also sweeps by itself, so
        ``clearsessions`` need not be scheduled."""
        conf.client().sweep()

    @classmethod
    async def aclear_expired(cls) -> None:
        await conf.aclient().sweep()
