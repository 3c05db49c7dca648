"""Test harness: the real daemon on a temporary directory (as
tests/src/lib.rs starts it), a scripted fake daemon for what the real one
cannot be made to do on cue, and a blocking face for the asyncio client."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import tempfile
import threading
import time
import unittest
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sessiond import ErrorCode
from sessiond import protocol as p

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 20.0
#: What the fake daemon announces in HELLO_OK.
FAKE_LIMITS = p.Limits(1 << 20, 1 << 19, 1024, 256, 256)
FAKE_SETTINGS = p.Settings(7200, 86_400, 30, 100, 5, 50)


def daemon_binary() -> Path:
    """``$SESSIOND_BIN``, else the workspace's debug build. Skips the test if absent."""
    path = Path(os.environ.get("SESSIOND_BIN") or REPO / "target" / "debug" / "sessiond")
    if not path.is_file():
        raise unittest.SkipTest(f"no sessiond binary at {path} (build it, or set SESSIOND_BIN)")
    return path


class Daemon:
    """The real sessiond on its own temporary directory. Call :meth:`close`
    (tests register it with ``addCleanup``) to kill it and remove the directory."""

    def __init__(self, config: str | None = None) -> None:
        self.binary = daemon_binary()
        self._tmp = tempfile.TemporaryDirectory(prefix="sessiond-py-")
        root = Path(self._tmp.name)
        self.data_dir = root / "d"
        self.socket = str(self.data_dir / "sessiond.sock")
        self._config = root / "sessiond.toml" if config is not None else None
        if self._config is not None:
            self._config.write_text(config or "", encoding="utf-8")
        self._log = root / "sessiond.log"
        self._stdout = root / "stdout.txt"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        """Starts the daemon and waits for its readiness line (never a fixed sleep).

        Its stdout goes to a file that is polled, not to a pipe read by a
        thread: the fork tests need a process without extra threads.
        """
        args = [str(self.binary), "--data-dir", str(self.data_dir), "--threads", "2"]
        if self._config is not None:
            args += ["--config", str(self._config)]
        env = dict(os.environ, RUST_LOG=os.environ.get("SESSIOND_TEST_LOG", "info"))
        with open(self._stdout, "w", encoding="utf-8") as out, open(self._log, "a", encoding="utf-8") as log:
            self.proc = subprocess.Popen(args, stdout=out, stderr=log, env=env)
        deadline = time.monotonic() + READY_TIMEOUT
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"sessiond did not become ready; its log:\n{self.log()}")
            time.sleep(0.005)

    def _ready(self) -> bool:
        lines = self._stdout.read_text(encoding="utf-8").splitlines()
        return any(line.startswith("sessiond ready") for line in lines)

    def kill(self) -> None:
        """SIGKILL, then reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def restart(self) -> None:
        """Kills the daemon and starts another on the same directory."""
        self.kill()
        self.start()

    def log(self) -> str:
        return self._log.read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        self.kill()
        self._tmp.cleanup()


class FakeConnection:
    """The daemon's end of one connection to :class:`FakeDaemon`; also a
    test's raw client end, to play HELLO by hand against the real daemon."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(10)

    def read(self) -> tuple[int, int, Any] | None:
        """The next frame as (request id, opcode, body), or None at its end."""
        head = self._exactly(p.HEADER_LEN)
        if head is None:
            return None
        header = p.parse_header(head)
        data = self._exactly(header.body_len) or b""
        return header.request_id, header.opcode, p.decode_body(header.opcode, data)

    def send(self, request_id: int, opcode: p.Opcode, body: Any) -> None:
        self.sock.sendall(p.encode_frame(request_id, opcode, p.encode_body(opcode, body)))

    def answer_hello(self, versions: tuple[int, ...] = (1, 2)) -> bool:
        """Answers HELLO as a daemon speaking ``versions`` does: in the version
        asked, or with UNSUPPORTED (then the script should end, closing the
        connection, as the daemon does). Returns whether HELLO succeeded."""
        request = self.read()
        assert request is not None and request[1] == p.Opcode.HELLO, request
        request_id, version = request[0], request[2].version
        if version not in versions:
            self.send(request_id, p.Opcode.ERROR, p.ErrorBody(ErrorCode.UNSUPPORTED, f"version {version}"))
            return False
        settings = FAKE_SETTINGS if version >= 2 else None
        self.send(request_id, p.Opcode.HELLO_OK, p.HelloOk(version, "fake", FAKE_LIMITS, settings))
        return True

    def serve_pings(self) -> None:
        """Answers every PING until the client leaves."""
        while (request := self.read()) is not None:
            self.send(request[0], p.Opcode.PONG, p.Empty())

    def _exactly(self, n: int) -> bytes | None:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data


class FakeDaemon:
    """A Unix socket server whose ``script(connection, index)`` plays the
    daemon's part on each connection, in a thread of its own."""

    def __init__(self, script: Callable[[FakeConnection, int], None]) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="sessiond-fake-")
        self.socket = os.path.join(self._tmp.name, "fake.sock")
        self._script = script
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.socket)
        self._listener.listen()
        self._listener.settimeout(0.1)
        self._stop = threading.Event()
        self.accepted = 0
        self.errors: list[BaseException] = []
        self._threads = [threading.Thread(target=self._accept_loop, daemon=True)]
        self._threads[0].start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            index, self.accepted = self.accepted, self.accepted + 1
            thread = threading.Thread(target=self._run, args=(sock, index), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _run(self, sock: socket.socket, index: int) -> None:
        with sock:
            try:
                self._script(FakeConnection(sock), index)
            except (ConnectionError, TimeoutError):
                pass  # the client left, as some tests make it
            except BaseException as e:  # reported by close(), so a broken script fails its test
                self.errors.append(e)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)
        self._listener.close()
        self._tmp.cleanup()
        if self.errors:
            raise self.errors[0]


class Synced:
    """The asyncio client's operations as blocking calls on one event loop,
    so that one scenario exercises both clients."""

    def __init__(self, client: Any) -> None:
        self.aio = client
        self.loop = asyncio.new_event_loop()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        operation = getattr(self.aio, name)
        return lambda *args, **kwargs: self.loop.run_until_complete(operation(*args, **kwargs))

    def close(self) -> None:
        self.loop.run_until_complete(self.aio.close())
        self.loop.close()
