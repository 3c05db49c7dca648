"""Sessions that belong to users, through Django's whole request cycle
(tests_django/urls.py): owners bound at login, IP and user agent recorded,
listings by handle, revocation, and the sessiond_sessions command."""

from __future__ import annotations

import io
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import SESSION_KEY, get_user_model
from django.core import management
from django.test import AsyncClient, Client, TestCase

from sessiond.django import conf, users
from sessiond.django.backend import SessionStore

from .test_store import ops_during

BROWSER = {"REMOTE_ADDR": "192.0.2.7", "HTTP_USER_AGENT": "Mozilla/5.0 (first)"}
OTHER_BROWSER = {"REMOTE_ADDR": "2001:db8::1", "HTTP_USER_AGENT": "Mozilla/5.0 (second)"}


class UserSessionsTests(TestCase):
    def user(self, name: str) -> Any:
        user = get_user_model().objects.create(username=name)
        # Primary keys come back after each test's rollback: leave the daemon
        # no sessions owned by this one.
        self.addCleanup(conf.client().revoke_user, users.owner_id(user))
        return user

    def browser(self, meta: dict[str, str]) -> Client:
        return Client(**meta)

    def key(self, browser: Client) -> str:
        return browser.cookies[settings.SESSION_COOKIE_NAME].value

    def logged_in(self, name: str, meta: dict[str, str] = BROWSER, url: str = "/login/") -> Client:
        browser = self.browser(meta)
        self.assertEqual(browser.post(url, {"username": name}).content, b"ok")
        return browser

    def test_an_anonymous_session_records_ip_and_user_agent_at_creation(self) -> None:
        browser = self.browser(BROWSER)
        browser.get("/visit/")
        stored = conf.client().get(self.key(browser))
        self.assertEqual((stored.ip, stored.user_agent, stored.user), ("192.0.2.7", "Mozilla/5.0 (first)", None))

    def test_login_binds_the_owner_with_a_new_key(self) -> None:
        alice = self.user("alice")
        for url in ("/login/", "/alogin/"):
            with self.subTest(url=url):
                browser = self.browser(BROWSER)
                browser.get("/visit/")
                anonymous = self.key(browser)
                browser.post(url, {"username": "alice"})
                key = self.key(browser)
                self.assertNotEqual(key, anonymous)
                self.assertFalse(conf.client().exists(anonymous))
                stored = conf.client().get(key)
                self.assertEqual(stored.user, users.owner_id(alice))
                self.assertEqual(stored.fields["visits"], b"1")  # the data came along
                self.assertEqual(browser.get("/whoami/").content, b"alice")

    def test_login_is_one_cycle_and_one_write(self) -> None:
        # login() rotates the key (CYCLE); the save after it binds the owner
        # with the data (WRITE with Owner.set): no second rotation.
        alice = self.user("alice")
        for url in ("/login/", "/alogin/"):
            with self.subTest(url=url):
                browser = self.browser(BROWSER)
                browser.get("/visit/")
                ops = ops_during(lambda b=browser, u=url: b.post(u, {"username": "alice"}))
                self.assertEqual(ops["CYCLE"], 1, ops)
                self.assertEqual(ops["WRITE"], 1, ops)
                self.assertEqual(ops["CREATE"] + ops["PATCH"] + ops["SET_EXPIRY"] + ops["REPLACE"], 0, ops)
                self.assertEqual(conf.client().get(self.key(browser)).user, users.owner_id(alice))
                ops = ops_during(lambda b=browser: b.post("/logout/"))
                self.assertEqual(ops["DELETE"], 1, ops)
                self.assertEqual(ops["CYCLE"] + ops["WRITE"], 0, ops)

    def test_a_changed_ip_or_user_agent_is_recorded(self) -> None:
        self.user("alice")
        browser = self.logged_in("alice")
        key = self.key(browser)
        browser.get("/whoami/", **OTHER_BROWSER)
        stored = conf.client().get(key)
        self.assertEqual((stored.ip, stored.user_agent), ("2001:db8::1", "Mozilla/5.0 (second)"))
        version = stored.version
        browser.get("/whoami/", **OTHER_BROWSER)  # unchanged: nothing written
        self.assertEqual(conf.client().get(key).version, version)

    async def test_the_async_middleware_records_a_change(self) -> None:
        browser = AsyncClient()  # its requests come from 127.0.0.1
        await browser.get("/visit/", headers={"user-agent": "Mozilla/5.0 (first)"})
        key = browser.cookies[settings.SESSION_COOKIE_NAME].value
        self.assertEqual((await conf.aclient().get(key)).user_agent, "Mozilla/5.0 (first)")
        self.assertEqual((await browser.get("/visit/", headers={"user-agent": "Mozilla/5.0 (second)"})).content, b"2")
        stored = await conf.aclient().get(key)
        self.assertEqual((stored.ip, stored.user_agent), ("127.0.0.1", "Mozilla/5.0 (second)"))

    def test_listing_shows_handles_never_keys(self) -> None:
        alice = self.user("alice")
        first, second = self.logged_in("alice"), self.logged_in("alice", OTHER_BROWSER)
        listed = first.get("/sessions/").json()
        self.assertEqual(
            sorted(s[1:] for s in listed["sessions"]),
            [["192.0.2.7", "Mozilla/5.0 (first)"], ["2001:db8::1", "Mozilla/5.0 (second)"]],
        )
        self.assertIn(listed["current"], [s[0] for s in listed["sessions"]])
        text = repr(users.sessions(alice))
        for browser in (first, second):
            self.assertNotIn(self.key(browser), text)

    def test_revoke_one_and_never_another_users(self) -> None:
        self.user("alice")
        self.user("bob")
        first, second = self.logged_in("alice"), self.logged_in("alice", OTHER_BROWSER)
        bob = self.logged_in("bob")
        bobs_handle = bob.get("/sessions/").json()["current"]
        self.assertEqual(first.post("/revoke/", {"handle": bobs_handle}).content, b"False")
        self.assertEqual(bob.get("/whoami/").content, b"bob")

        seconds_handle = second.get("/sessions/").json()["current"]
        self.assertEqual(first.post("/revoke/", {"handle": seconds_handle}).content, b"True")
        self.assertEqual(second.get("/whoami/").content, b"anonymous")
        self.assertEqual(first.get("/whoami/").content, b"alice")

    def test_revoke_all_but_the_current_one(self) -> None:
        alice = self.user("alice")
        browsers = [self.logged_in("alice"), self.logged_in("alice", OTHER_BROWSER), self.logged_in("alice")]
        self.assertEqual(browsers[0].post("/revoke-others/").content, b"2")
        self.assertEqual([b.get("/whoami/").content for b in browsers], [b"alice", b"anonymous", b"anonymous"])
        self.assertEqual(users.revoke_all(alice), 1)
        self.assertEqual(browsers[0].get("/whoami/").content, b"anonymous")

    async def test_async_listing_and_revoking(self) -> None:
        alice = await sync_to_async(self.user)("alice")
        stores = []
        for _ in range(3):  # sessions created holding a logged-in user's data are the user's
            store = SessionStore()
            await store.aset(SESSION_KEY, users.owner_id(alice))
            await store.asave()
            stores.append(store)
        listed = await users.asessions(alice)
        self.assertEqual({s.handle for s in listed}, {s.handle for s in stores})
        self.assertFalse(await users.arevoke(alice, "A" * 16))
        self.assertTrue(await users.arevoke(alice, stores[0].handle or ""))
        self.assertEqual(await users.arevoke_all(alice, keep=SessionStore(stores[1].session_key)), 1)
        self.assertEqual([s.handle for s in await users.asessions(alice)], [stores[1].handle])

    def test_logout_ends_the_session(self) -> None:
        alice = self.user("alice")
        browser = self.logged_in("alice")
        key = self.key(browser)
        browser.post("/logout/")
        self.assertFalse(conf.client().exists(key))
        self.assertEqual(users.sessions(alice), [])

    def test_the_management_command(self) -> None:
        alice = self.user("alice")
        self.logged_in("alice")
        self.logged_in("alice", OTHER_BROWSER)

        def command(*args: str) -> str:
            out = io.StringIO()
            management.call_command("sessiond_sessions", *args, stdout=out)
            return out.getvalue()

        lines = command("list", "alice").splitlines()
        self.assertEqual(len(lines), 2)
        self.assertEqual(sorted(line.split("\t")[4] for line in lines), ["192.0.2.7", "2001:db8::1"])
        self.assertEqual(command("list", "--pk", users.owner_id(alice)).splitlines(), lines)
        handle = lines[0].split("\t")[0]
        # A handle may start with "-": it goes after "=" or "--".
        self.assertEqual(command("revoke", "alice", f"--keep={handle}"), "revoked 1\n")
        self.assertEqual(command("revoke-handle", "--", handle), "revoked 1\n")
        self.assertEqual(command("list", "alice"), "")
        with self.assertRaisesMessage(management.CommandError, "no user 'nobody'"):
            command("list", "nobody")
