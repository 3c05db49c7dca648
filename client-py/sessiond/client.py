"""The blocking client: a pool of connections, each used by one thread at a time."""

from __future__ import annotations

import os
import select
import socket
import time
from collections import deque
from collections.abc import Iterable
from types import TracebackType
from typing import Any, TypeVar

from . import _ops
from ._ops import CLIENT_NAME, DEFAULT_TIMEOUT, KEEP_OWNER, Call, Fields, default_socket_path
from .errors import Disconnected, ProtocolError, ServerError, Timeout
from .models import Session, Unsealed
from .protocol import (
    HEADER_LEN,
    MIN_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
    Created,
    Expiry,
    Header,
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

_RECV_SIZE = 64 * 1024
_MAX_REQUEST_ID = 0xFFFF_FFFF


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise Timeout("no answer from sessiond within the timeout")
    return left


class _Connection:
    """One socket after HELLO in ``version``. Requests go one at a time, so
    the only frame that may arrive is the awaited answer (or the daemon's
    parting error)."""

    def __init__(self, path: str, client_name: str, version: int, deadline: float) -> None:
        #: A connection is never used by another process than its maker: after
        #: a fork, parent and child would read each other's answers.
        self.pid = os.getpid()
        self._buf = bytearray()
        self._next_id = 1
        connect_timeout = _remaining(deadline)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.settimeout(connect_timeout)
            self._sock.connect(path)
        except TimeoutError:
            self._sock.close()
            raise Timeout(f"connecting to sessiond at {path} timed out") from None
        except OSError as e:
            self._sock.close()
            raise Disconnected(f"cannot connect to sessiond at {path}: {e.strerror or e}") from e
        self._poll = select.poll()
        self._poll.register(self._sock, select.POLLIN)
        try:
            hello = _ops.hello(client_name, version)
            self.hello: HelloOk = hello.result(*self.exchange(hello, deadline))
        except BaseException:
            self.close()
            raise

    def exchange(self, call: Call[Any], deadline: float) -> tuple[int, Any]:
        """Sends ``call`` and returns its answer's opcode and decoded body.

        After any exception the connection is out of step or closed, and
        must not be used again.
        """
        request_id = self._next_id
        # Never 0: that id is the daemon's, for connection-level errors.
        self._next_id = request_id % _MAX_REQUEST_ID + 1
        self._send(call.frame(request_id), deadline)
        header, body = self._read_frame(deadline)
        if header.request_id == 0:
            raise _ops.parting_error(header.opcode, body)
        if header.request_id != request_id:
            raise ProtocolError(f"an answer to request {header.request_id} came for request {request_id}")
        return header.opcode, body

    def is_stale(self) -> bool:
        """Whether this idle connection has ended. With nothing pending, any
        input or hang-up means the daemon closed it (a restart, its idle
        timeout) or is about to, having said why."""
        return bool(self._buf or self._poll.poll(0))

    def close(self) -> None:
        # close(), never shutdown(): in a forked child this must end only the
        # child's descriptor, not the parent's connection.
        self._sock.close()

    def _send(self, frame: bytes, deadline: float) -> None:
        try:
            self._sock.settimeout(_remaining(deadline))
            self._sock.sendall(frame)
        except TimeoutError:
            raise Timeout("sending to sessiond timed out") from None
        except (BrokenPipeError, ConnectionResetError):
            # Not an error yet: the daemon may have said why it closed (BUSY,
            # FORBIDDEN, TOO_LARGE), and the read that follows finds that, or
            # the end of the stream.
            pass
        except OSError as e:
            raise Disconnected(f"sending to sessiond failed: {e}") from e

    def _read_frame(self, deadline: float) -> tuple[Header, Any]:
        header = parse_header(self._read(HEADER_LEN, deadline))
        data = self._read(header.body_len, deadline)
        check_crc(header, data)
        return header, decode_body(header.opcode, data)

    def _read(self, n: int, deadline: float) -> bytes:
        buf = self._buf
        while len(buf) < n:
            self._sock.settimeout(_remaining(deadline))
            try:
                chunk = self._sock.recv(max(n - len(buf), _RECV_SIZE))
            except TimeoutError:
                raise Timeout("no answer from sessiond within the timeout") from None
            except OSError as e:
                raise Disconnected(f"the connection to sessiond broke: {e}") from e
            if not chunk:
                raise Disconnected("sessiond closed the connection")
            buf += chunk
        data = bytes(buf[:n])
        del buf[:n]
        return data


class Client:
    """A blocking sessiond client, safe to share between threads and across ``fork``.

    Connections are made on first use, so a client created at import time in
    a pre-fork server makes none before the fork. Each call takes an idle
    connection, or opens one (HELLO first), makes one request, and puts the
    connection back: threads never wait for each other, and the daemon can
    commit their writes together. A connection is used only by the process
    that opened it; after a fork the child opens its own.

    Every call takes ``timeout`` (seconds, from the start of the call to the
    answer; the client's ``timeout`` when ``None``). A call that fails with
    :class:`~sessiond.Timeout` or :class:`~sessiond.Disconnected` may or may
    not have taken effect; its connection is dropped, and the next call
    connects again, so a daemon restart costs at most the calls in flight.
    """

    def __init__(
        self,
        socket_path: str | os.PathLike[str] | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_idle: int = 8,
        client_name: str = CLIENT_NAME,
    ) -> None:
        """``socket_path`` defaults to ``$SESSIOND_SOCKET``, then
        ``./sessiond-data/sessiond.sock``. At most ``max_idle`` idle
        connections are kept open between calls."""
        self.socket_path = os.fspath(socket_path) if socket_path is not None else default_socket_path()
        self.timeout = timeout
        self.max_idle = max_idle
        self.client_name = client_name
        # A deque, not a list under a lock: its appends and pops are atomic,
        # so there is no lock that a fork could copy while another thread
        # holds it.
        self._idle: deque[_Connection] = deque()

    def __repr__(self) -> str:
        return f"Client({self.socket_path!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Closes the idle connections. The client stays usable: later calls connect again."""
        while self._idle:
            try:
                self._idle.pop().close()
            except IndexError:  # another thread took the last one
                return

    def _checkout(self, deadline: float) -> _Connection:
        pid = os.getpid()
        while True:
            try:
                conn = self._idle.pop()
            except IndexError:
                return self._connect(deadline)
            if conn.pid == pid and not conn.is_stale():
                return conn
            conn.close()

    def _connect(self, deadline: float) -> _Connection:
        """A new connection in the newest protocol version the daemon speaks.

        A daemon older than this client answers HELLO with UNSUPPORTED and
        closes the connection, so the older version is asked on a new one.
        Each connection asks afresh: a daemon upgraded by a restart is
        spoken to in its new version from the next connection on.
        """
        try:
            return _Connection(self.socket_path, self.client_name, PROTOCOL_VERSION, deadline)
        except ServerError as e:
            if not _ops.is_unsupported(e):
                raise
        return _Connection(self.socket_path, self.client_name, MIN_PROTOCOL_VERSION, deadline)

    def _checkin(self, conn: _Connection) -> None:
        if len(self._idle) < self.max_idle:
            self._idle.append(conn)
        else:
            conn.close()

    def _run(self, call: Call[T], timeout: float | None) -> T:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        conn = self._checkout(deadline)
        if conn.hello.version < call.since:
            self._checkin(conn)
            raise _ops.unsupported(call, conn.hello.version)
        try:
            opcode, body = conn.exchange(call, deadline)
        except BaseException:
            conn.close()
            raise
        self._checkin(conn)
        return call.result(opcode, body)

    def _hello(self, timeout: float | None) -> HelloOk:
        """The HELLO answer of a connection, made if none is idle."""
        conn = self._checkout(time.monotonic() + (self.timeout if timeout is None else timeout))
        self._checkin(conn)
        return conn.hello

    def limits(self, *, timeout: float | None = None) -> Limits:
        """The daemon's limits, as its HELLO answer announced them."""
        return self._hello(timeout).limits

    def settings(self, *, timeout: float | None = None) -> Settings | None:
        """The daemon's expiry and listing settings, as its HELLO answer
        announced them; ``None`` from a daemon that speaks only version 1."""
        return self._hello(timeout).settings

    def ping(self, *, timeout: float | None = None) -> None:
        """Checks that the daemon answers."""
        return self._run(_ops.ping(), timeout)

    def stats(self, *, timeout: float | None = None) -> dict[str, int]:
        """The daemon's counters, by name."""
        return self._run(_ops.stats(), timeout)

    def metrics(self, *, timeout: float | None = None) -> StatsOk:
        """Counters and histograms (latency by operation, commit batches)."""
        return self._run(_ops.metrics(), timeout)

    def create(self, fields: Fields = (), expiry: Expiry | None = None, *, timeout: float | None = None) -> Created:
        """Creates a session holding ``fields``; the daemon makes the key.
        ``expiry`` defaults to the daemon's default age."""
        return self._run(_ops.create(fields, expiry or Expiry.default(), None, None, None), timeout)

    def create_with_meta(
        self,
        fields: Fields = (),
        expiry: Expiry | None = None,
        *,
        user: str | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
        timeout: float | None = None,
    ) -> Created:
        """Creates a session with an owner (1 to 256 bytes), IP and user agent.
        With an owner, the daemon's per-user limit applies."""
        return self._run(_ops.create(fields, expiry or Expiry.default(), user, ip, user_agent), timeout)

    def create_as(
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
        """Creates a session under ``key``, drawn by the caller (16 to 64
        random bytes as canonical base64url, else ``BAD_KEY``), for
        frameworks that make their own ids. If a session has the key
        already, raises :class:`~sessiond.KeyExists` and changes nothing:
        draw another. Protocol version 2."""
        return self._run(_ops.create_as(key, fields, expiry or Expiry.default(), user, ip, user_agent), timeout)

    def get(self, key: str, *, timeout: float | None = None) -> Session:
        """Reads a session, without counting the read as activity."""
        return self._run(_ops.get(key, False), timeout)

    def get_touch(self, key: str, *, timeout: float | None = None) -> Session:
        """Reads a session and counts the read as activity (sliding expiry)."""
        return self._run(_ops.get(key, True), timeout)

    def get_from(
        self,
        key: str,
        *,
        touch: bool = False,
        ip: str | None = None,
        user_agent: str | None = None,
        timeout: float | None = None,
    ) -> Session:
        """Reads a session as :meth:`get` or :meth:`get_touch` do, and flags
        (``ip_changed``, ``user_agent_changed``) a caller whose IP or user
        agent differs from the stored one. Nothing is enforced."""
        return self._run(_ops.get(key, touch, ip, user_agent), timeout)

    def exists(self, key: str, *, timeout: float | None = None) -> bool:
        """Whether a live session has this key."""
        return self._run(_ops.exists(key), timeout)

    def replace(
        self, key: str, fields: Fields, *, expected_version: int | None = None, timeout: float | None = None
    ) -> Written:
        """Sets the session's data to exactly ``fields``; with
        ``expected_version``, only if the session is at that version
        (else :class:`~sessiond.VersionConflict`, and nothing changes)."""
        return self._run(_ops.replace(key, fields, expected_version), timeout)

    def patch(
        self,
        key: str,
        set: Fields = (),
        remove: Iterable[str] = (),
        *,
        expected_version: int | None = None,
        timeout: float | None = None,
    ) -> Written:
        """Sets the fields of ``set`` and removes those named in ``remove``,
        in one atomic step that leaves every other field alone, so concurrent
        patches of different fields never lose each other's changes."""
        return self._run(_ops.patch(key, set, remove, expected_version), timeout)

    def write(
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
        """A framework's save as one atomic write: :meth:`patch` (or, with
        ``replace``, :meth:`replace` by ``set``; ``remove`` must then be
        empty), then the new ``expiry`` policy if given, as
        :meth:`set_expiry` would, and the change of ``owner``
        (:meth:`Owner.set <sessiond.Owner.set>` with the per-user limit,
        :meth:`Owner.clear <sessiond.Owner.clear>`). A session that has
        ended is :class:`~sessiond.NotFound`: a write never revives one.
        Protocol version 2."""
        return self._run(_ops.write(key, set, remove, replace, expected_version, expiry, owner), timeout)

    def touch(self, key: str, *, timeout: float | None = None) -> Written:
        """Counts activity (sliding the expiry) without reading or changing data."""
        return self._run(_ops.touch(key), timeout)

    def set_expiry(self, key: str, expiry: Expiry, *, timeout: float | None = None) -> Written:
        """Replaces the expiry policy (Django's ``set_expiry``) and computes the
        expiry afresh: unlike activity, this may bring it earlier, or end the
        session."""
        return self._run(_ops.set_expiry(key, expiry), timeout)

    def delete(self, key: str, *, timeout: float | None = None) -> bool:
        """Ends the session (logout); returns whether a live session had this key."""
        return self._run(_ops.delete(key), timeout)

    def cycle(self, key: str, *, timeout: float | None = None) -> Created:
        """Moves the session to a new key in one atomic step (what a login
        does, against session fixation); the old key stops working at once."""
        return self._run(_ops.cycle(key, None), timeout)

    def cycle_bind(self, key: str, user: str, *, timeout: float | None = None) -> Created:
        """Login: a new key and ``user`` as the owner, in one atomic step.
        Data, handle, IP and user agent are kept."""
        return self._run(_ops.cycle(key, user), timeout)

    def set_meta(
        self, key: str, *, ip: str | None = None, user_agent: str | None = None, timeout: float | None = None
    ) -> Written:
        """Records the IP and user agent the session is now used from
        (``None`` keeps a value); counts as activity."""
        return self._run(_ops.set_meta(key, ip, user_agent), timeout)

    def list_user(self, user: str, *, timeout: float | None = None) -> list[SessionInfo]:
        """The user's live sessions, most recently active first: handles, never keys."""
        return self._run(_ops.list_user(user), timeout)

    def list_user_page(
        self, user: str, limit: int = 0, after: str | None = None, *, timeout: float | None = None
    ) -> tuple[list[SessionInfo], str | None]:
        """A page of :meth:`list_user`: at most ``limit`` sessions (0 for the
        daemon's ``max_list_page``) after the cursor ``after``, and the
        cursor of the next page, ``None`` after the last. A session active
        while the listing is paged may appear twice or be missed. Protocol
        version 2."""
        return self._run(_ops.list_user_page(user, limit, after), timeout)

    def revoke(self, handle: str, *, timeout: float | None = None) -> int:
        """Ends the session with this handle; returns 1 if it was live, else 0."""
        return self._run(_ops.revoke(handle), timeout)

    def revoke_user(self, user: str, *, keep: str | None = None, timeout: float | None = None) -> int:
        """Ends all the user's sessions, or all but the one with handle
        ``keep``, atomically, and their sealed cookies; returns how many
        sessions ended."""
        return self._run(_ops.revoke_user(user, keep), timeout)

    def sweep(self, *, timeout: float | None = None) -> int:
        """Removes expired sessions now and returns how many; the daemon also
        does this by itself."""
        return self._run(_ops.sweep(), timeout)

    def rotate_keys(self, *, timeout: float | None = None) -> int:
        """Makes a fresh token key active; returns its id. Tokens and cookies
        made under the old key keep opening for their lifetime."""
        return self._run(_ops.rotate_keys(), timeout)

    def issue_transfer(
        self,
        key: str,
        source_host: str,
        destinations: Iterable[str] = (),
        *,
        state_hash: bytes | None = None,
        timeout: float | None = None,
    ) -> list[HostToken]:
        """Single-use tokens handing the session from ``source_host`` to each
        destination (every other configured site when empty). With
        ``state_hash`` (SHA-256 of the destination's state cookie; one
        destination only), the token is bound to that browser."""
        return self._run(_ops.issue_transfer(key, source_host, destinations, state_hash), timeout)

    def redeem_transfer(
        self,
        token: str,
        host: str,
        *,
        current_key: str | None = None,
        always_replace: bool = False,
        state: bytes | None = None,
        timeout: float | None = None,
    ) -> Redeemed:
        """Redeems a transfer token at ``host``: the key to set as this
        host's cookie, and whether it changed. Any refusal is a
        :class:`~sessiond.ServerError` with code ``TOKEN_REJECTED``."""
        return self._run(_ops.redeem_transfer(token, host, current_key, always_replace, state), timeout)

    def seal(
        self,
        fields: Fields,
        cookie_name: str,
        host: str,
        *,
        expiry: Expiry | None = None,
        user: str | None = None,
        timeout: float | None = None,
    ) -> Sealed:
        """Encrypts session data into a cookie value bound to the cookie's
        name and host; no state is kept on the daemon."""
        return self._run(_ops.seal(fields, expiry or Expiry.default(), user, cookie_name, host), timeout)

    def unseal(self, value: str, cookie_name: str, host: str, *, timeout: float | None = None) -> Unsealed:
        """Opens a sealed cookie; set ``reseal``, when present, as the new value."""
        return self._run(_ops.unseal(value, cookie_name, host), timeout)

    def revoke_sealed(self, value: str, cookie_name: str, host: str, *, timeout: float | None = None) -> int:
        """Stops this cookie session (every value of it) opening, durably: logout."""
        return self._run(_ops.revoke_sealed(value, cookie_name, host), timeout)
