"""The clients against the real daemon (skipped without its binary), and
against a scripted fake one for what the real daemon cannot be made to do
on cue: drop a call in flight, stall, or send bad bytes.

The operations scenario runs twice: through the blocking client and
through the asyncio client (made blocking by ``Synced``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import select
import socket
import threading
import time
import unittest
from typing import TYPE_CHECKING, Any
from unittest import mock

import sessiond
from sessiond import ErrorCode, Expiry, Owner, ServerError, Settings, aio
from sessiond import protocol as p

from .support import FAKE_LIMITS, FAKE_SETTINGS, Daemon, FakeConnection, FakeDaemon, Synced

COM, ORG, NET = "www.example.com", "www.example.org", "www.example.net"
CONFIG = f"""
[transfer]
sites = ["{COM}", "{ORG}", "{NET}"]
[expiry]
sweep_interval_ms = 3600000   # sweeps only when asked, so SWEEP's count is exact
"""
UNKNOWN_KEY = "A" * 43  # well formed (43 base64url characters, canonical), never issued
TIMEOUT = 10.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def draw_key(n_bytes: int = 16) -> str:
    """A key as a framework would draw one for CREATE_AS: random bytes as base64url without padding."""
    return base64.urlsafe_b64encode(os.urandom(n_bytes)).rstrip(b"=").decode()


# The scenario is a mixin, so that unittest does not run it on its own;
# type checkers see it as the TestCase it is mixed into.
if TYPE_CHECKING:
    _Mixin = unittest.TestCase
else:
    _Mixin = object


class Operations(_Mixin):
    """Every operation, through ``self.client``; mixed into a TestCase per client."""

    client: Any
    daemon: Daemon

    def make_client(self, socket_path: str) -> Any:
        raise NotImplementedError

    def setUp(self) -> None:
        self.daemon = Daemon(CONFIG)
        self.addCleanup(self.daemon.close)
        self.client = self.make_client(self.daemon.socket)
        self.addCleanup(self.client.close)

    def test_ping_stats_metrics_and_limits(self) -> None:
        self.assertIsNone(self.client.ping())
        self.assertEqual(self.client.limits().max_frame, 1 << 20)
        stats = self.client.stats()
        self.assertEqual(stats["connections_accepted"], 1)
        metrics = self.client.metrics()
        self.assertIn("commits", {c.name for c in metrics.counters})
        for h in metrics.histograms:
            self.assertEqual(len(h.counts), len(h.bounds) + 1, h.name)

    def test_create_and_get_return_every_field(self) -> None:
        before = now_ms()
        created = self.client.create({"cart": "3 items", "raw": b"\x00\xff"}, Expiry.idle(1800))
        self.assertEqual((len(created.key), len(created.handle), created.version), (43, 16, 1))
        s = self.client.get(created.key)
        self.assertEqual(s.fields, {"cart": b"3 items", "raw": b"\x00\xff"})
        self.assertEqual((s.version, s.handle, s.expiry), (1, created.handle, Expiry.idle(1800)))
        self.assertEqual(s.created_ms, s.modified_ms)
        self.assertGreaterEqual(s.created_ms, before - 1000)
        self.assertEqual(s.expires_at_ms, created.expires_at_ms)
        self.assertTrue(1_700_000 <= s.ttl_ms <= 1_800_000, s.ttl_ms)
        self.assertEqual((s.user, s.ip, s.user_agent, s.ip_changed, s.user_agent_changed), (None,) * 3 + (False,) * 2)
        self.assertEqual(self.client.create().version, 1)

    def test_reads_that_touch_slide_the_expiry_without_a_new_version(self) -> None:
        key = self.client.create({"a": "1"}, Expiry.idle(600)).key
        first = self.client.get(key)
        time.sleep(0.01)
        self.assertEqual(self.client.get(key).last_active_ms, first.last_active_ms, "a plain GET is not activity")
        touched = self.client.get_touch(key)
        self.assertGreater(touched.last_active_ms, first.last_active_ms)
        self.assertEqual(touched.version, 1)
        time.sleep(0.01)
        written = self.client.touch(key)
        self.assertEqual(written.version, 1)
        self.assertGreater(written.expires_at_ms, first.expires_at_ms)

    def test_patch_and_replace_with_compare_and_set(self) -> None:
        key = self.client.create({"a": "1", "b": "2"}).key
        self.assertEqual(self.client.patch(key, set={"c": "3"}, remove=["a", "absent"]).version, 2)
        self.assertEqual(self.client.get(key).fields, {"b": b"2", "c": b"3"})
        with self.assertRaises(sessiond.VersionConflict) as caught:
            self.client.patch(key, set={"d": "4"}, expected_version=1)
        self.assertEqual(caught.exception.code, ErrorCode.VERSION_CONFLICT)
        self.assertEqual(self.client.patch(key, set=[("d", "4")], expected_version=2).version, 3)
        with self.assertRaises(sessiond.VersionConflict):
            self.client.replace(key, {"x": "1"}, expected_version=2)
        self.assertEqual(self.client.replace(key, {"x": "1"}, expected_version=3).version, 4)
        self.assertEqual(self.client.replace(key, {"y": "2"}).version, 5)
        self.assertEqual(self.client.get(key).fields, {"y": b"2"})

    def wait_for_the_startup_sweep(self) -> None:
        """The daemon's first sweep runs on its own at start-up: once it is
        over, expired sessions stay until a SWEEP (CONFIG's interval is an hour)."""
        deadline = time.monotonic() + 10
        while not self.client.stats()["last_sweep_ms"]:
            self.assertLess(time.monotonic(), deadline, "the start-up sweep did not run")
            time.sleep(0.005)

    def test_expiry_policies_as_django_sets_them(self) -> None:
        self.wait_for_the_startup_sweep()  # so that the SWEEP below is the one to find the expired session
        key = self.client.create({"a": "1"}, Expiry.browser_close()).key
        self.assertEqual(self.client.get(key).expiry, Expiry.browser_close())
        self.assertEqual(self.client.set_expiry(key, Expiry.idle(600)).version, 2)
        s = self.client.get(key)
        self.assertEqual(s.expiry, Expiry.idle(600))
        self.assertTrue(590_000 <= s.ttl_ms <= 600_000, s.ttl_ms)
        at = now_ms() + 3_600_000
        self.assertEqual(self.client.set_expiry(key, Expiry.at(at)).expires_at_ms, at)
        self.assertEqual(self.client.get(key).expiry, Expiry.at(at))
        self.client.set_expiry(key, Expiry.from_django(None))
        self.assertEqual(self.client.get(key).expiry, Expiry.default())
        self.client.set_expiry(key, Expiry.at(1))  # in the past: the session ends
        self.assertFalse(self.client.exists(key))
        with self.assertRaises(sessiond.NotFound):
            self.client.get(key)
        self.assertEqual(self.client.sweep(), 1)
        self.assertEqual(self.client.sweep(), 0)

    def test_delete_and_exists(self) -> None:
        key = self.client.create({"a": "1"}).key
        self.assertTrue(self.client.exists(key))
        self.assertTrue(self.client.delete(key))
        self.assertFalse(self.client.exists(key))
        self.assertFalse(self.client.delete(key), "deleting twice is not an error")

    def test_cycle_moves_the_session_to_a_new_key(self) -> None:
        created = self.client.create({"cart": "3"})
        cycled = self.client.cycle(created.key)
        self.assertNotEqual(cycled.key, created.key)
        self.assertEqual((cycled.handle, cycled.version), (created.handle, 2))
        with self.assertRaises(sessiond.NotFound):
            self.client.get(created.key)
        bound = self.client.cycle_bind(cycled.key, "alice")
        s = self.client.get(bound.key)
        self.assertEqual((s.user, s.fields, s.handle), ("alice", {"cart": b"3"}, created.handle))
        self.assertEqual([i.handle for i in self.client.list_user("alice")], [created.handle])

    def test_user_sessions_metadata_listing_and_revocation(self) -> None:
        laptop = self.client.create_with_meta({"a": "1"}, user="alice", ip="192.0.2.1", user_agent="Firefox")
        phone = self.client.create_with_meta(user="alice", ip="2001:db8:0:0::7", user_agent="Safari")
        time.sleep(0.01)
        self.client.touch(laptop.key)
        listing = self.client.list_user("alice")
        self.assertEqual([i.handle for i in listing], [laptop.handle, phone.handle], "most recently active first")
        self.assertEqual((listing[1].ip, listing[1].user_agent, listing[1].location), ("2001:db8::7", "Safari", None))
        self.assertEqual(self.client.list_user("nobody"), [])

        self.client.set_meta(laptop.key, ip="198.51.100.4")
        s = self.client.get_from(laptop.key, ip="198.51.100.4", user_agent="Chrome")
        self.assertEqual((s.ip, s.user_agent), ("198.51.100.4", "Firefox"))
        self.assertEqual((s.ip_changed, s.user_agent_changed), (False, True))
        self.assertTrue(self.client.get_from(laptop.key, touch=True, ip="192.0.2.99").ip_changed)

        self.assertEqual(self.client.revoke(phone.handle), 1)
        self.assertEqual(self.client.revoke(phone.handle), 0)
        tablet = self.client.create_with_meta(user="alice")
        self.assertEqual(self.client.revoke_user("alice", keep=laptop.handle), 1)
        self.assertFalse(self.client.exists(tablet.key))
        self.assertEqual(self.client.revoke_user("alice"), 1)
        self.assertEqual(self.client.list_user("alice"), [])

    def test_transfer_tokens_hand_the_session_to_another_site(self) -> None:
        key = self.client.create({"cart": "3"}).key
        tokens = self.client.issue_transfer(key, COM)
        self.assertEqual([t.host for t in tokens], [ORG, NET])
        redeemed = self.client.redeem_transfer(tokens[0].token, ORG)
        self.assertTrue(redeemed.replaced)
        self.assertNotEqual(redeemed.key, key)
        self.assertEqual(self.client.get(redeemed.key).fields, {"cart": b"3"})
        with self.assertRaises(ServerError) as caught:
            self.client.redeem_transfer(tokens[0].token, ORG)
        self.assertEqual(caught.exception.code, ErrorCode.TOKEN_REJECTED)

        state = os.urandom(32)
        [bound] = self.client.issue_transfer(key, COM, [NET], state_hash=hashlib.sha256(state).digest())
        current = self.client.create({"mine": "1"}).key
        kept = self.client.redeem_transfer(bound.token, NET, current_key=current, state=state)
        self.assertEqual((kept.key, kept.replaced), (current, False), "a session holding data is kept")

    def test_sealed_cookies_open_reseal_and_revoke(self) -> None:
        sealed = self.client.seal({"cart": "3"}, "__Host-s", COM, expiry=Expiry.idle(1800), user="42")
        opened = self.client.unseal(sealed.value, "__Host-s", COM)
        self.assertEqual((opened.fields, opened.user, opened.reseal), ({"cart": b"3"}, "42", None))
        self.assertEqual(len(bytes.fromhex(opened.sid)), 16)
        with self.assertRaises(ServerError) as caught:
            self.client.unseal(sealed.value, "__Host-s", ORG)
        self.assertEqual(caught.exception.code, ErrorCode.TOKEN_REJECTED)
        self.assertIsInstance(self.client.rotate_keys(), int)
        self.assertEqual(self.client.unseal(sealed.value, "__Host-s", COM).sid, opened.sid, "old keys keep opening")
        self.assertEqual(self.client.revoke_sealed(sealed.value, "__Host-s", COM), 1)
        with self.assertRaises(ServerError):
            self.client.unseal(sealed.value, "__Host-s", COM)

    def test_errors_are_typed_and_leave_the_client_usable(self) -> None:
        for operation in (self.client.get, self.client.touch, self.client.cycle):
            with self.assertRaises(sessiond.NotFound) as not_found:
                operation(UNKNOWN_KEY)
            self.assertEqual(not_found.exception.code, ErrorCode.NOT_FOUND)
        with self.assertRaises(ServerError) as caught:
            self.client.get("not-a-key")
        self.assertEqual(caught.exception.code, ErrorCode.BAD_KEY)
        key = self.client.create({"a": "1"}).key
        with self.assertRaises(ServerError) as caught:
            self.client.patch(key, set={"a": "2"}, remove=["a"])
        self.assertEqual(caught.exception.code, ErrorCode.BAD_REQUEST)
        with self.assertRaises(ServerError) as caught:
            self.client.patch(key, set={"big": bytes(600_000)})
        self.assertEqual(caught.exception.code, ErrorCode.TOO_LARGE)
        # A frame over max_frame: the daemon answers TOO_LARGE and closes the
        # connection; the next call connects again.
        with self.assertRaises(ServerError) as caught:
            self.client.patch(key, set={"huge": bytes(2 << 20)})
        self.assertEqual(caught.exception.code, ErrorCode.TOO_LARGE)
        self.assertEqual(self.client.get(key).fields, {"a": b"1"})
        with self.assertRaises(TypeError):
            self.client.create({"a": 1})

    def test_settings_are_announced_in_hello(self) -> None:
        self.assertEqual(self.client.settings(), Settings(1_209_600, 0, 60, 512, 0, 1000), "the defaults")
        configured = Daemon(
            "[expiry]\ndefault_idle_secs = 7200\nmax_lifetime_secs = 86400\ntouch_granularity_secs = 30\n"
            "[users]\nmax_sessions_per_user = 5\nmax_user_agent = 100\n"
        )
        self.addCleanup(configured.close)
        client = self.make_client(configured.socket)
        self.addCleanup(client.close)
        self.assertEqual(client.settings(), Settings(7200, 86_400, 30, 100, 5, 1000))
        self.assertEqual(client.limits().max_frame, 1 << 20)

    def test_create_as_takes_the_callers_key_once(self) -> None:
        key = draw_key()
        created = self.client.create_as(key, {"cart": "3"}, Expiry.idle(1800), user="alice", ip="192.0.2.1")
        self.assertEqual((created.key, created.version, len(created.handle)), (key, 1, 16))
        s = self.client.get(key)
        self.assertEqual((s.fields, s.expiry, s.user, s.ip), ({"cart": b"3"}, Expiry.idle(1800), "alice", "192.0.2.1"))
        self.assertEqual(s.expires_at_ms, created.expires_at_ms)
        with self.assertRaises(sessiond.KeyExists) as caught:
            self.client.create_as(key, {"other": "1"})
        self.assertEqual(caught.exception.code, ErrorCode.KEY_EXISTS)
        self.assertEqual(self.client.get(key).fields, {"cart": b"3"}, "a collision changes nothing")
        self.assertEqual(self.client.create_as(draw_key(64)).version, 1, "64 bytes: the longest key")

        # An expired session not yet swept still holds its key.
        self.wait_for_the_startup_sweep()
        ended = draw_key(32)
        self.client.create_as(ended, expiry=Expiry.at(1))
        self.assertFalse(self.client.exists(ended))
        with self.assertRaises(sessiond.KeyExists):
            self.client.create_as(ended)

        too_short = draw_key(15)  # 120 bits: under the 128 a proposed key needs
        not_canonical = key[:-1] + "B"  # 16 bytes leave 4 unused low bits in the last character: "B" sets one
        for bad in (too_short, draw_key(65), not_canonical, "not a key!" * 3):
            with self.subTest(key=bad), self.assertRaises(ServerError) as refused:
                self.client.create_as(bad)
            self.assertEqual(refused.exception.code, ErrorCode.BAD_KEY)

    def test_write_changes_data_expiry_and_owner_in_one_step(self) -> None:
        created = self.client.create({"cart": "3", "a": "1"}, Expiry.browser_close())
        key = created.key
        written = self.client.write(
            key, set={"_auth_user_id": "42"}, remove=["cart"], expiry=Expiry.idle(600), owner=Owner.set("42")
        )
        self.assertEqual(written.version, 2, "one write")
        s = self.client.get(key)
        self.assertEqual((s.fields, s.expiry, s.user), ({"a": b"1", "_auth_user_id": b"42"}, Expiry.idle(600), "42"))
        self.assertEqual(s.expires_at_ms, written.expires_at_ms)
        self.assertTrue(590_000 <= s.ttl_ms <= 600_000, s.ttl_ms)
        self.assertEqual([i.handle for i in self.client.list_user("42")], [created.handle])

        # Replace, with compare-and-set; the policy and the owner are kept.
        self.assertEqual(self.client.write(key, {"x": "1"}, replace=True, expected_version=2).version, 3)
        s = self.client.get(key)
        self.assertEqual((s.fields, s.expiry, s.user), ({"x": b"1"}, Expiry.idle(600), "42"))
        with self.assertRaises(sessiond.VersionConflict):
            self.client.write(key, {"y": "1"}, expected_version=2)
        with self.assertRaises(ServerError) as caught:
            self.client.write(key, {"y": "1"}, ["x"], replace=True)
        self.assertEqual(caught.exception.code, ErrorCode.BAD_REQUEST, "replace with fields to remove")

        # Logout that keeps the session: the owner goes, the data stays.
        self.assertEqual(self.client.write(key, owner=Owner.clear()).version, 4)
        self.assertEqual((self.client.get(key).user, self.client.list_user("42")), (None, []))

        # A write never revives a session that has ended.
        self.client.write(key, expiry=Expiry.at(1))
        self.assertFalse(self.client.exists(key))
        with self.assertRaises(sessiond.NotFound):
            self.client.write(key, {"z": "1"})
        with self.assertRaises(sessiond.NotFound):
            self.client.write(UNKNOWN_KEY, {"z": "1"})

    def test_list_user_page_pages_through_a_users_sessions(self) -> None:
        handles = {self.client.create_with_meta(user="bob", ip="192.0.2.1").handle for _ in range(25)}
        pages: list[list[str]] = []
        after = None
        while True:
            sessions, after = self.client.list_user_page("bob", 10, after)
            pages.append([s.handle for s in sessions])
            if after is None:
                break
        self.assertEqual([len(page) for page in pages], [10, 10, 5])
        whole = self.client.list_user("bob")
        self.assertEqual([h for page in pages for h in page], [s.handle for s in whole], "LIST_USER's order")
        self.assertEqual(set(pages[0] + pages[1] + pages[2]), handles)
        sessions, after = self.client.list_user_page("bob")  # limit 0: the daemon's max_list_page (1000)
        self.assertEqual((sessions, after), (whole, None))
        self.assertEqual(self.client.list_user_page("nobody", 10), ([], None))
        with self.assertRaises(ServerError) as caught:
            self.client.list_user_page("bob", 10, "not a cursor")
        self.assertEqual(caught.exception.code, ErrorCode.BAD_REQUEST)

    def test_the_next_call_after_a_daemon_restart_reconnects(self) -> None:
        key = self.client.create({"a": "1"}).key
        self.daemon.restart()  # SIGKILL, then a new daemon on the same directory
        self.assertEqual(self.client.patch(key, set={"b": "2"}).version, 2, "a write, first after the restart")
        self.assertEqual(self.client.get(key).fields, {"a": b"1", "b": b"2"})
        self.daemon.kill()
        with self.assertRaises(sessiond.Disconnected):
            self.client.ping()
        self.daemon.start()
        self.client.ping()


class BlockingOperations(Operations, unittest.TestCase):
    def make_client(self, socket_path: str) -> sessiond.Client:
        return sessiond.Client(socket_path, timeout=TIMEOUT)


class AsyncOperations(Operations, unittest.TestCase):
    def make_client(self, socket_path: str) -> Synced:
        return Synced(aio.Client(socket_path, timeout=TIMEOUT))


class VersionOneHello(unittest.TestCase):
    """A version-1 client, played frame by frame, still works with the daemon."""

    def setUp(self) -> None:
        self.daemon = Daemon(CONFIG)
        self.addCleanup(self.daemon.close)

    def connect(self) -> FakeConnection:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        sock.connect(self.daemon.socket)
        return FakeConnection(sock)

    def exchange(self, conn: FakeConnection, request_id: int, opcode: p.Opcode, body: Any) -> tuple[int, Any]:
        """Sends a request and reads its answer's opcode and body."""
        conn.send(request_id, opcode, body)
        answer = conn.read()
        assert answer is not None, "the daemon closed the connection"
        self.assertEqual(answer[0], request_id)
        return answer[1], answer[2]

    def test_a_version_1_hello_is_answered_without_settings_and_serves_requests(self) -> None:
        conn = self.connect()
        opcode, hello = self.exchange(conn, 1, p.Opcode.HELLO, p.Hello(1, "py-v1"))
        self.assertEqual((opcode, hello.version, hello.settings), (p.Opcode.HELLO_OK, 1, None))
        self.assertEqual(hello.limits.max_frame, 1 << 20)
        create = p.Create([p.Field("a", b"1")], Expiry.default(), p.Meta(None, None, None))
        opcode, created = self.exchange(conn, 2, p.Opcode.CREATE, create)
        self.assertEqual(opcode, p.Opcode.CREATED)
        opcode, session = self.exchange(conn, 3, p.Opcode.GET, p.Get(created.key, False, None, None))
        self.assertEqual((opcode, session.fields), (p.Opcode.SESSION, [p.Field("a", b"1")]))

    def test_an_unknown_version_is_unsupported_and_closes_the_connection(self) -> None:
        conn = self.connect()
        opcode, error = self.exchange(conn, 1, p.Opcode.HELLO, p.Hello(3, "py-v3"))
        self.assertEqual((opcode, error.code), (p.Opcode.ERROR, ErrorCode.UNSUPPORTED))
        self.assertIsNone(conn.read(), "the daemon closed the connection")


def wait_child(pid: int, limit: float = 30.0) -> int:
    """The exit status of a forked child, killing it if it overstays."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError("the child did not finish")


def run_in_child(work: Any) -> bytes:
    """Runs ``work()`` in a forked child and returns the bytes it returned
    (an ``ERROR ...`` line if it raised). The child never returns into the
    test runner."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is its report
        try:
            os.close(read_end)
            try:
                report = work()
            except BaseException as e:
                report = f"ERROR {e!r}".encode()
            os.write(write_end, report)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        ready, _, _ = select.select([reader], [], [], 30)
        report = reader.read() if ready else b"ERROR no report"
    if wait_child(pid) != 0:
        raise AssertionError("the child failed")
    return report


class BlockingConnections(unittest.TestCase):
    """Threads, fork, and the daemon's connection limit."""

    def start(self, config: str = CONFIG) -> sessiond.Client:
        self.daemon = Daemon(config)
        self.addCleanup(self.daemon.close)
        client = sessiond.Client(self.daemon.socket, timeout=TIMEOUT)
        self.addCleanup(client.close)
        return client

    def test_eight_threads_share_one_client(self) -> None:
        client = self.start('[durability]\nmode = "relaxed"\n')
        shared = client.create().key
        rounds, errors = 40, []

        def worker(i: int) -> None:
            try:
                for n in range(rounds):
                    client.patch(shared, set={f"t{i}": str(n)})
                    own = client.create({"owner": str(i)}).key
                    if client.get(own).fields != {"owner": str(i).encode()}:
                        raise AssertionError(f"thread {i} read another session")
                    client.delete(own)
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        self.assertFalse(any(t.is_alive() for t in threads), "a thread is stuck")
        self.assertEqual(errors, [])
        s = client.get(shared)
        self.assertEqual(s.fields, {f"t{i}": str(rounds - 1).encode() for i in range(8)})
        self.assertEqual(s.version, 1 + 8 * rounds, "no patch was lost")
        self.assertLessEqual(client.stats()["connections_accepted"], 8)

    def test_a_forked_child_makes_its_own_connection(self) -> None:
        client = self.start()
        accepted = client.stats()["connections_accepted"]

        def child() -> bytes:
            key = client.create({"from": "child"}).key
            return key.encode() if client.get(key).fields == {"from": b"child"} else b"ERROR bad read"

        report = run_in_child(child)
        self.assertFalse(report.startswith(b"ERROR"), report)
        # The parent's call goes over its own, older connection: had the
        # child used it, the stream would be out of step or the count unchanged.
        self.assertEqual(client.stats()["connections_accepted"], accepted + 1)
        self.assertEqual(client.get(report.decode()).fields, {"from": b"child"})

    def test_busy_at_the_connection_limit_then_connects_when_there_is_room(self) -> None:
        first = self.start(CONFIG + "[limits]\nmax_connections = 1\n")
        first.ping()
        second = sessiond.Client(self.daemon.socket, timeout=TIMEOUT)
        self.addCleanup(second.close)
        with self.assertRaises(sessiond.Busy) as caught:
            second.ping()
        self.assertEqual(caught.exception.code, ErrorCode.BUSY)
        first.close()
        deadline = time.monotonic() + 5
        while True:  # the daemon notices the closed connection a moment later
            try:
                second.ping()
                break
            except sessiond.Busy:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)


def serve(conn: FakeConnection, index: int) -> None:
    conn.answer_hello()
    conn.serve_pings()


def older_daemon(conn: FakeConnection, index: int) -> None:
    """A daemon that speaks only version 1: it refuses HELLO 2 and closes."""
    if conn.answer_hello(versions=(1,)):
        conn.serve_pings()


class BlockingAgainstAFake(unittest.TestCase):
    """What the real daemon does only by accident, played by a fake one."""

    def fake(self, script: Any) -> sessiond.Client:
        self.server = FakeDaemon(script)
        self.addCleanup(self.server.close)
        client = sessiond.Client(self.server.socket, timeout=TIMEOUT)
        self.addCleanup(client.close)
        return client

    def test_a_call_in_flight_when_the_connection_drops_raises_disconnected(self) -> None:
        def script(conn: FakeConnection, index: int) -> None:
            conn.answer_hello()
            if index == 0:
                conn.read()  # and leave without answering
            else:
                conn.serve_pings()

        client = self.fake(script)
        with self.assertRaises(sessiond.Disconnected):
            client.ping()
        client.ping()
        self.assertEqual(self.server.accepted, 2)

    def test_a_timeout_drops_the_connection_and_the_next_call_reconnects(self) -> None:
        def script(conn: FakeConnection, index: int) -> None:
            conn.answer_hello()
            if index == 0:
                while conn.read() is not None:
                    pass  # never answers
            else:
                conn.serve_pings()

        client = self.fake(script)
        started = time.monotonic()
        with self.assertRaises(sessiond.Timeout):
            client.ping(timeout=0.2)
        self.assertLess(time.monotonic() - started, 2)
        client.ping()
        self.assertEqual(self.server.accepted, 2)

    def test_a_parting_error_with_request_id_0_is_raised_typed(self) -> None:
        def script(conn: FakeConnection, index: int) -> None:
            conn.send(0, p.Opcode.ERROR, p.ErrorBody(ErrorCode.FORBIDDEN, "not allowed"))

        with self.assertRaises(sessiond.Forbidden):
            self.fake(script).ping()

    def test_a_corrupt_frame_raises_protocol_error_and_the_connection_is_dropped(self) -> None:
        def script(conn: FakeConnection, index: int) -> None:
            conn.answer_hello()
            if index == 0:
                request_id = conn.read()[0]  # type: ignore[index]
                frame = bytearray(p.encode_frame(request_id, p.Opcode.PONG, b"x"))
                frame[4] ^= 1  # the CRC
                conn.sock.sendall(frame)
            conn.serve_pings()

        client = self.fake(script)
        with self.assertRaises(sessiond.ProtocolError):
            client.ping()
        client.ping()
        self.assertEqual(self.server.accepted, 2)

    def test_an_answer_of_the_wrong_kind_is_a_protocol_error(self) -> None:
        def script(conn: FakeConnection, index: int) -> None:
            conn.answer_hello()
            request_id = conn.read()[0]  # type: ignore[index]
            conn.send(request_id, p.Opcode.SWEPT, p.SweptOk(1))
            conn.serve_pings()

        with self.assertRaises(sessiond.ProtocolError):
            self.fake(script).ping()

    def test_a_version_2_daemon_announces_its_settings(self) -> None:
        client = self.fake(serve)
        self.assertEqual((client.settings(), client.limits()), (FAKE_SETTINGS, FAKE_LIMITS))
        self.assertEqual(self.server.accepted, 1)

    def test_an_older_daemon_is_spoken_to_in_version_1(self) -> None:
        client = self.fake(older_daemon)
        client.ping()
        self.assertEqual(self.server.accepted, 2, "HELLO 2 refused, then HELLO 1 on a new connection")
        self.assertEqual((client.settings(), client.limits()), (None, FAKE_LIMITS))
        # Version 2's operations are refused before sending (the fake would
        # answer them with PONG), and the connection is kept.
        for operation in (
            lambda: client.create_as(UNKNOWN_KEY),
            lambda: client.write(UNKNOWN_KEY, {"a": "1"}),
            lambda: client.list_user_page("alice"),
        ):
            with self.assertRaises(ServerError) as caught:
                operation()
            self.assertEqual(caught.exception.code, ErrorCode.UNSUPPORTED)
        client.ping()
        self.assertEqual(self.server.accepted, 2)

    def test_no_daemon_is_disconnected(self) -> None:
        client = sessiond.Client("/nonexistent/sessiond.sock")
        with self.assertRaises(sessiond.Disconnected):
            client.ping()

    def test_the_socket_path_defaults_to_the_environment_then_the_data_dir(self) -> None:
        with mock.patch.dict(os.environ, {"SESSIOND_SOCKET": "/run/x.sock"}):
            self.assertEqual(sessiond.Client().socket_path, "/run/x.sock")
            self.assertEqual(aio.Client().socket_path, "/run/x.sock")
        with mock.patch.dict(os.environ, clear=True):
            self.assertEqual(sessiond.Client().socket_path, "./sessiond-data/sessiond.sock")


class AsyncClient(unittest.IsolatedAsyncioTestCase):
    """What only the asyncio client does: one connection for many tasks."""

    async def asyncSetUp(self) -> None:
        self.daemon = Daemon(CONFIG + '[durability]\nmode = "relaxed"\n')
        self.addCleanup(self.daemon.close)
        self.client = aio.Client(self.daemon.socket, timeout=TIMEOUT)
        self.addAsyncCleanup(self.client.close)

    async def test_eight_tasks_are_pipelined_on_one_connection(self) -> None:
        shared = (await self.client.create()).key
        rounds = 40

        async def worker(i: int) -> None:
            for n in range(rounds):
                await self.client.patch(shared, set={f"t{i}": str(n)})
                own = (await self.client.create({"owner": str(i)})).key
                self.assertEqual((await self.client.get(own)).fields, {"owner": str(i).encode()})
                await self.client.delete(own)

        await asyncio.wait_for(asyncio.gather(*(worker(i) for i in range(8))), 120)
        s = await self.client.get(shared)
        self.assertEqual(s.version, 1 + 8 * rounds)
        self.assertEqual((await self.client.stats())["connections_accepted"], 1)

    async def test_the_next_call_after_a_restart_reconnects(self) -> None:
        key = (await self.client.create({"a": "1"})).key
        await asyncio.to_thread(self.daemon.restart)
        self.assertEqual((await self.client.get(key)).fields, {"a": b"1"})


class AsyncAgainstAFake(unittest.IsolatedAsyncioTestCase):
    def fake(self, script: Any) -> aio.Client:
        self.server = FakeDaemon(script)
        self.addCleanup(self.server.close)
        client = aio.Client(self.server.socket, timeout=TIMEOUT)
        self.addAsyncCleanup(client.close)
        return client

    async def test_answers_in_any_order_reach_their_callers(self) -> None:
        def script(conn: FakeConnection, index: int) -> None:
            conn.answer_hello()
            first, second = conn.read(), conn.read()
            assert first is not None and second is not None
            conn.send(second[0], p.Opcode.SWEPT, p.SweptOk(2))
            conn.send(first[0], p.Opcode.EXISTS_OK, p.ExistsOk(True))
            conn.serve_pings()

        client = self.fake(script)
        exists, swept = await asyncio.gather(client.exists(UNKNOWN_KEY), client.sweep())
        self.assertEqual((exists, swept), (True, 2))

    async def test_a_timeout_leaves_the_connection_usable_and_drops_the_late_answer(self) -> None:
        release = threading.Event()

        def script(conn: FakeConnection, index: int) -> None:
            conn.answer_hello()
            slow, fast = conn.read(), conn.read()
            assert slow is not None and fast is not None
            conn.send(fast[0], p.Opcode.PONG, p.Empty())
            release.wait(10)
            conn.send(slow[0], p.Opcode.PONG, p.Empty())
            conn.serve_pings()

        client = self.fake(script)
        slow = asyncio.ensure_future(client.ping(timeout=0.2))
        await asyncio.sleep(0.05)
        await client.ping()
        with self.assertRaises(sessiond.Timeout):
            await slow
        release.set()
        await client.ping()
        self.assertEqual(self.server.accepted, 1)

    async def test_a_call_in_flight_when_the_connection_drops_raises_disconnected(self) -> None:
        def script(conn: FakeConnection, index: int) -> None:
            conn.answer_hello()
            if index == 0:
                conn.read()
                conn.read()
            else:
                conn.serve_pings()

        client = self.fake(script)
        results = await asyncio.gather(client.ping(), client.ping(), return_exceptions=True)
        self.assertTrue(all(isinstance(r, sessiond.Disconnected) for r in results), results)
        await client.ping()
        self.assertEqual(self.server.accepted, 2)

    async def test_an_older_daemon_is_spoken_to_in_version_1(self) -> None:
        client = self.fake(older_daemon)
        await client.ping()
        self.assertEqual(self.server.accepted, 2, "HELLO 2 refused, then HELLO 1 on a new connection")
        self.assertEqual((await client.settings(), await client.limits()), (None, FAKE_LIMITS))
        with self.assertRaises(ServerError) as caught:
            await client.write(UNKNOWN_KEY, {"a": "1"})
        self.assertEqual(caught.exception.code, ErrorCode.UNSUPPORTED)
        await client.ping()
        self.assertEqual(self.server.accepted, 2, "the connection is kept")

    async def test_a_version_2_daemon_announces_its_settings(self) -> None:
        client = self.fake(serve)
        self.assertEqual(await client.settings(), FAKE_SETTINGS)
        self.assertEqual(self.server.accepted, 1)

    async def test_a_parting_error_reaches_every_waiting_caller(self) -> None:
        def script(conn: FakeConnection, index: int) -> None:
            conn.answer_hello()
            conn.read()
            conn.read()
            conn.send(0, p.Opcode.ERROR, p.ErrorBody(ErrorCode.BUSY, "write queue full"))

        client = self.fake(script)
        results = await asyncio.gather(client.ping(), client.ping(), return_exceptions=True)
        self.assertEqual([type(r) for r in results], [sessiond.Busy, sessiond.Busy])
        self.assertIsNot(results[0], results[1], "each caller gets its own exception")


class AsyncFork(unittest.TestCase):
    def test_a_forked_child_makes_its_own_connection(self) -> None:
        daemon = Daemon(CONFIG)
        self.addCleanup(daemon.close)
        client = aio.Client(daemon.socket, timeout=TIMEOUT)
        loop = asyncio.new_event_loop()
        self.addCleanup(loop.close)
        self.addCleanup(lambda: loop.run_until_complete(client.close()))
        accepted = loop.run_until_complete(client.stats())["connections_accepted"]

        def child() -> bytes:
            own_loop = asyncio.new_event_loop()
            return own_loop.run_until_complete(client.create({"from": "child"})).key.encode()

        report = run_in_child(child)
        self.assertFalse(report.startswith(b"ERROR"), report)
        self.assertEqual(loop.run_until_complete(client.stats())["connections_accepted"], accepted + 1)
        self.assertEqual(loop.run_until_complete(client.get(report.decode())).fields, {"from": b"child"})


if __name__ == "__main__":
    unittest.main()
