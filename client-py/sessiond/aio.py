"""The asyncio client: one connection, multiplexed by request id.

Calls from many tasks are pipelined on the connection; a reader task hands
each answer to its caller by request id, in whatever order the daemon
answers (it answers reads at once and writes after their commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
from collections.abc import Callable, Iterable
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

from . import _ops
from ._ops import CLIENT_NAME, DEFAULT_TIMEOUT, KEEP_OWNER, Call, Fields, default_socket_path
from .errors import Disconnected, ProtocolError, ServerError, SessiondError, Timeout
from .models import Session, Unsealed
from .protocol import (
    HEADER_LEN,
    MIN_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
    Created,
    Expiry,
    HelloOk,
    HostToken,
    Limits,
    Owner,
    Redeemed,
    Sealed,
    SessionInfo,
    Settings,
    StatsOk,
    Written,
    check_crc,
    decode_body,
    parse_header,
)

T = TypeVar("T")

_MAX_REQUEST_ID = 0xFFFF_FFFF
_HUNG_UP = select.POLLHUP | select.POLLERR


class _Link:
    """A live connection: its streams, reader task and waiting callers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.get_running_loop()
        #: The HELLO answer; set before the link is shared.
        self.hello: HelloOk | None = None
        self._reader = reader
        self._writer = writer
        self._pending: dict[int, asyncio.Future[tuple[int, Any]]] = {}
        self._next_id = 1
        self._poll = select.poll()
        self._poll.register(writer.get_extra_info("socket").fileno(), select.POLLIN)
        # Once set, the link is over: it makes the error each caller gets.
        self._failure: Callable[[], SessiondError] | None = None
        self._task = self.loop.create_task(self._read_loop())

    def owned(self) -> bool:
        """Made by this process, on the running loop. After a fork, or on
        another loop, the link is left alone and a new one is made."""
        return self.pid == os.getpid() and self.loop is asyncio.get_running_loop()

    def usable(self) -> bool:
        """Whether new calls may use this link: owned, open, and not hung up
        by the daemon.

        The hang-up is checked on the socket itself, at once, because the
        read loop learns of it only when the event loop next polls: a call
        made before then (the first after a daemon restart, say) would be
        sent into a closed connection. Callers still waiting on a hung-up
        link get their answers, if the daemon sent them, then Disconnected.
        """
        return self._failure is None and self.owned() and not any(events & _HUNG_UP for _, events in self._poll.poll(0))

    async def exchange(self, call: Call[Any]) -> tuple[int, Any]:
        """Sends ``call`` and waits for its answer's opcode and body.

        Cancelling (as a timeout does) abandons the answer but not the link:
        frames are written whole, so the stream stays in step, and a late
        answer is dropped.
        """
        if self._failure is not None:
            raise self._failure()
        request_id = self._next_id
        # Never 0: that id is the daemon's, for connection-level errors.
        self._next_id = request_id % _MAX_REQUEST_ID + 1
        answer: asyncio.Future[tuple[int, Any]] = self.loop.create_future()
        self._pending[request_id] = answer
        try:
            self._writer.write(call.frame(request_id))
            # A broken connection is not reported here: the daemon may have
            # said why it closed (BUSY, TOO_LARGE), and the read loop
            # delivers that, or Disconnected, to ``answer``.
            with contextlib.suppress(ConnectionError):
                await self._writer.drain()
            return await answer
        finally:
            self._pending.pop(request_id, None)

    async def close(self) -> None:
        self._fail(partial(Disconnected, "the client was closed"))
        self._task.cancel()
        self._writer.close()
        with contextlib.suppress(OSError):  # closed already: that is what was asked
            await self._writer.wait_closed()

    async def _read_loop(self) -> None:
        failure: Callable[[], SessiondError] = partial(Disconnected, "sessiond closed the connection")
        try:
            while True:
                header = parse_header(await self._reader.readexactly(HEADER_LEN))
                data = await self._reader.readexactly(header.body_len)
                check_crc(header, data)
                body = decode_body(header.opcode, data)
                if header.request_id == 0:
                    failure = partial(_ops.parting_error, header.opcode, body)
                    return
                answer = self._pending.pop(header.request_id, None)
                if answer is not None and not answer.done():
                    answer.set_result((header.opcode, body))
        except asyncio.IncompleteReadError:
            pass  # the daemon closed the connection: the failure as set above
        except ConnectionError as e:
            failure = partial(Disconnected, f"the connection to sessiond broke: {e}")
        except ProtocolError as e:  # the stream cannot be trusted any more
            failure = partial(ProtocolError, str(e))
        finally:
            self._fail(failure)
            self._writer.close()

    def _fail(self, failure: Callable[[], SessiondError]) -> None:
        """Ends the link. Each waiting caller gets its own exception object,
        so that their tracebacks do not pile up on one."""
        if self._failure is None:
            self._failure = failure
        for answer in self._pending.values():
            if not answer.done():
                answer.set_exception(failure())
        self._pending.clear()


class Client:
    """An asyncio sessiond client; share one per event loop among tasks.

    It connects on first use (HELLO first) and again after the connection
    breaks: calls in flight then raise :class:`~sessiond.Disconnected`
    (whether a write took effect is unknown) and the next call reconnects.
    A connection is used only by the process and event loop that made it.
    Operations and their arguments are those of :class:`sessiond.Client`;
    each also takes ``timeout`` (seconds, the client's ``timeout`` if
    ``None``).
    """

    def __init__(
        self,
        socket_path: str | os.PathLike[str] | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        client_name: str = CLIENT_NAME,
    ) -> None:
        self.socket_path = os.fspath(socket_path) if socket_path is not None else default_socket_path()
        self.timeout = timeout
        self.client_name = client_name
        self._link: _Link | None = None
        self._opening: asyncio.Task[_Link] | None = None

    def __repr__(self) -> str:
        return f"aio.Client({self.socket_path!r})"

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the connection; calls in flight raise Disconnected. Later calls connect again."""
        link, self._link = self._link, None
        if link is not None and link.owned():
            await link.close()

    async def _live_link(self) -> _Link:
        link = self._link
        if link is not None and link.usable():
            return link
        loop = asyncio.get_running_loop()
        opening = self._opening
        if opening is None or opening.done() or opening.get_loop() is not loop:
            opening = self._opening = loop.create_task(self._open())
            # Its callers may all have timed out: its failure is theirs, not
            # an unretrieved exception to log.
            opening.add_done_callback(lambda task: task.cancelled() or task.exception())
        # Shielded: a caller that times out must not cancel the connection
        # other callers are waiting for.
        return await asyncio.shield(opening)

    async def _open(self) -> _Link:
        """A new link in the newest protocol version the daemon speaks.

        A daemon older than this client answers HELLO with UNSUPPORTED and
        closes the connection, so the older version is asked on a new one.
        """
        try:
            link = await self._connect(PROTOCOL_VERSION)
        except ServerError as e:
            if not _ops.is_unsupported(e):
                raise
            link = await self._connect(MIN_PROTOCOL_VERSION)
        self._link = link
        return link

    async def _connect(self, version: int) -> _Link:
        """A new link after HELLO in ``version``; closed again if HELLO fails."""
        try:
            reader, writer = await asyncio.open_unix_connection(self.socket_path)
        except OSError as e:
            raise Disconnected(f"cannot connect to sessiond at {self.socket_path}: {e.strerror or e}") from e
        link = _Link(reader, writer)
        try:
            hello = _ops.hello(self.client_name, version)
            link.hello = hello.result(*await link.exchange(hello))
        except BaseException:
            await link.close()
            raise
        return link

    async def _round_trip(self, call: Call[Any]) -> tuple[int, Any]:
        link = await self._live_link()
        assert link.hello is not None  # set by _open before the link is shared
        if link.hello.version < call.since:
            raise _ops.unsupported(call, link.hello.version)
        return await link.exchange(call)

    async def _run(self, call: Call[T], timeout: float | None) -> T:
        try:
            opcode, body = await asyncio.wait_for(self._round_trip(call), self.timeout if timeout is None else timeout)
        except asyncio.TimeoutError:
            raise Timeout("no answer from sessiond within the timeout") from None
        return call.result(opcode, body)

    async def _hello(self, timeout: float | None) -> HelloOk:
        """The HELLO answer of the connection, made if there is none."""
        try:
            link = await asyncio.wait_for(self._live_link(), self.timeout if timeout is None else timeout)
        except asyncio.TimeoutError:
            raise Timeout("connecting to sessiond timed out") from None
        assert link.hello is not None  # set by _open before the link is shared
        return link.hello

    async def limits(self, *, timeout: float | None = None) -> Limits:
        """The daemon's limits, as its HELLO answer announced them."""
        return (await self._hello(timeout)).limits

    async def settings(self, *, timeout: float | None = None) -> Settings | None:
        """The daemon's settings, as its HELLO answer announced them; ``None``
        from a daemon that speaks only version 1."""
        return (await self._hello(timeout)).settings

    async def ping(self, *, timeout: float | None = None) -> None:
        return await self._run(_ops.ping(), timeout)

    async def stats(self, *, timeout: float | None = None) -> dict[str, int]:
        return await self._run(_ops.stats(), timeout)

    async def metrics(self, *, timeout: float | None = None) -> StatsOk:
        return await self._run(_ops.metrics(), timeout)

    async def create(
        self, fields: Fields = (), expiry: Expiry | None = None, *, timeout: float | None = None
    ) -> Created:
        return await self._run(_ops.create(fields, expiry or Expiry.default(), None, None, None), timeout)

    async def create_with_meta(
        self,
        fields: Fields = (),
        expiry: Expiry | None = None,
        *,
        user: str | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
        timeout: float | None = None,
    ) -> Created:
        return await self._run(_ops.create(fields, expiry or Expiry.default(), user, ip, user_agent), timeout)

    async def create_as(
        self,
        key: str,
        fields: Fields = (),
        expiry: Expiry | None = None,
        *,
        user: str | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
        timeout: float | None = None,
    ) -> Created:
        return await self._run(_ops.create_as(key, fields, expiry or Expiry.default(), user, ip, user_agent), timeout)

    async def get(self, key: str, *, timeout: float | None = None) -> Session:
        return await self._run(_ops.get(key, False), timeout)

    async def get_touch(self, key: str, *, timeout: float | None = None) -> Session:
        return await self._run(_ops.get(key, True), timeout)

    async def get_from(
        self,
        key: str,
        *,
        touch: bool = False,
        ip: str | None = None,
        user_agent: str | None = None,
        timeout: float | None = None,
    ) -> Session:
        return await self._run(_ops.get(key, touch, ip, user_agent), timeout)

    async def exists(self, key: str, *, timeout: float | None = None) -> bool:
        return await self._run(_ops.exists(key), timeout)

    async def replace(
        self, key: str, fields: Fields, *, expected_version: int | None = None, timeout: float | None = None
    ) -> Written:
        return await self._run(_ops.replace(key, fields, expected_version), timeout)

    async def patch(
        self,
        key: str,
        set: Fields = (),
        remove: Iterable[str] = (),
        *,
        expected_version: int | None = None,
        timeout: float | None = None,
    ) -> Written:
        return await self._run(_ops.patch(key, set, remove, expected_version), timeout)

    async def write(
        self,
        key: str,
        set: Fields = (),
        remove: Iterable[str] = (),
        *,
        replace: bool = False,
        expected_version: int | None = None,
        expiry: Expiry | None = None,
        owner: Owner = KEEP_OWNER,
        timeout: float | None = None,
    ) -> Written:
        return await self._run(_ops.write(key, set, remove, replace, expected_version, expiry, owner), timeout)

    async def touch(self, key: str, *, timeout: float | None = None) -> Written:
        return await self._run(_ops.touch(key), timeout)

    async def set_expiry(self, key: str, expiry: Expiry, *, timeout: float | None = None) -> Written:
        return await self._run(_ops.set_expiry(key, expiry), timeout)

    async def delete(self, key: str, *, timeout: float | None = None) -> bool:
        return await self._run(_ops.delete(key), timeout)

    async def cycle(self, key: str, *, timeout: float | None = None) -> Created:
        return await self._run(_ops.cycle(key, None), timeout)

    async def cycle_bind(self, key: str, user: str, *, timeout: float | None = None) -> Created:
        return await self._run(_ops.cycle(key, user), timeout)

    async def set_meta(
        self, key: str, *, ip: str | None = None, user_agent: str | None = None, timeout: float | None = None
    ) -> Written:
        return await self._run(_ops.set_meta(key, ip, user_agent), timeout)

    async def list_user(self, user: str, *, timeout: float | None = None) -> list[SessionInfo]:
        return await self._run(_ops.list_user(user), timeout)

    async def list_user_page(
        self, user: str, limit: int = 0, after: str | None = None, *, timeout: float | None = None
    ) -> tuple[list[SessionInfo], str | None]:
        return await self._run(_ops.list_user_page(user, limit, after), timeout)

    async def revoke(self, handle: str, *, timeout: float | None = None) -> int:
        return await self._run(_ops.revoke(handle), timeout)

    async def revoke_user(self, user: str, *, keep: str | None = None, timeout: float | None = None) -> int:
        return await self._run(_ops.revoke_user(user, keep), timeout)

    async def sweep(self, *, timeout: float | None = None) -> int:
        return await self._run(_ops.sweep(), timeout)

    async def rotate_keys(self, *, timeout: float | None = None) -> int:
        return await self._run(_ops.rotate_keys(), timeout)

    async def issue_transfer(
        self,
        key: str,
        source_host: str,
        destinations: Iterable[str] = (),
        *,
        state_hash: bytes | None = None,
        timeout: float | None = None,
    ) -> list[HostToken]:
        return await self._run(_ops.issue_transfer(key, source_host, destinations, state_hash), timeout)

    async def redeem_transfer(
        self,
        token: str,
        host: str,
        *,
        current_key: str | None = None,
        always_replace: bool = False,
        state: bytes | None = None,
        timeout: float | None = None,
    ) -> Redeemed:
        return await self._run(_ops.redeem_transfer(token, host, current_key, always_replace, state), timeout)

    async def seal(
        self,
        fields: Fields,
        cookie_name: str,
        host: str,
        *,
        expiry: Expiry | None = None,
        user: str | None = None,
        timeout: float | None = None,
    ) -> Sealed:
        return await self._run(_ops.seal(fields, expiry or Expiry.default(), user, cookie_name, host), timeout)

    async def unseal(self, value: str, cookie_name: str, host: str, *, timeout: float | None = None) -> Unsealed:
        return await self._run(_ops.unseal(value, cookie_name, host), timeout)

    async def revoke_sealed(self, value: str, cookie_name: str, host: str, *, timeout: float | None = None) -> int:
        return await self._run(_ops.revoke_sealed(value, cookie_name, host), timeout)
