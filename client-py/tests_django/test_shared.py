"""Sessions shared across sites (sessiond.django.shared), through Django's
whole request cycle, against the real daemon (run.sh configures its
``[transfer] sites`` as a.test, b.test and c.test): the seed's script tags
and the browser-bound flow, single use, destination binding, the signal."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client, TestCase, override_settings

from sessiond.django import conf, shared, users
from sessiond.django.shared import session_replaced

SCRIPT = re.compile(r'<script src="//([^/"]+)(/shared-session/[A-Za-z0-9_-]+\.js)" async></script>')


class Browser:
    """A browser on one host: a test client whose requests all go to it."""

    def __init__(self, host: str, client: Client | None = None) -> None:
        self.host = host
        self.client = client or Client()

    def get(self, path: str, **extra: Any) -> Any:
        return self.client.get(path, HTTP_HOST=self.host, **extra)

    def post(self, path: str, data: dict[str, str]) -> Any:
        return self.client.post(path, data, HTTP_HOST=self.host)

    @property
    def key(self) -> str | None:
        cookie = self.client.cookies.get(settings.SESSION_COOKIE_NAME)
        return cookie.value if cookie is not None and cookie.value else None

    def text(self, path: str) -> str:
        return self.get(path).content.decode()


def split(location: str) -> tuple[str, str, dict[str, str]]:
    """A scheme-relative redirect: its host, path and query."""
    url = urlsplit(location)
    return url.netloc, url.path, {k: v[0] for k, v in parse_qs(url.query).items()}


class Signals:
    def __init__(self, test: TestCase) -> None:
        self.sent: list[dict[str, Any]] = []
        session_replaced.connect(self.receive)
        test.addCleanup(session_replaced.disconnect, self.receive)

    def receive(self, sender: Any, **kwargs: Any) -> None:
        kwargs.pop("signal", None)
        kwargs.pop("request")
        self.sent.append(kwargs)


class SharedTests(TestCase):
    def setUp(self) -> None:
        self.signals = Signals(self)

    def user(self, name: str) -> Any:
        user = get_user_model().objects.create(username=name)
        self.addCleanup(conf.client().revoke_user, users.owner_id(user))
        return user

    def scripts(self, browser: Browser) -> dict[str, str]:
        """The loader's script URLs on ``browser``'s page, by host."""
        page = browser.text("/page/?to=c.test" if browser.host != "c.test" else "/page/?to=a.test")
        return dict(SCRIPT.findall(page))

    # The seed's flow.

    def test_the_loader_renders_one_script_per_other_site(self) -> None:
        a = Browser("a.test")
        self.assertEqual(a.text("/visit/"), "1")
        scripts = self.scripts(a)
        self.assertEqual(sorted(scripts), ["b.test", "c.test"])
        self.assertNotIn(a.key or "-", "".join(scripts.values()))  # the key is in no URL

    def test_the_loader_renders_nothing_for_an_empty_session_or_off_the_sites(self) -> None:
        a = Browser("a.test")
        self.assertEqual(self.scripts(a), {})
        self.assertIsNone(a.key)  # and made no session
        elsewhere = Browser("testserver")
        elsewhere.get("/visit/")
        self.assertNotIn("<script", elsewhere.text("/page/"))

    def test_a_script_url_gives_the_destination_its_own_key_to_the_same_session(self) -> None:
        a, b = Browser("a.test"), Browser("b.test")
        a.get("/visit/")
        response = b.get(self.scripts(a)["b.test"])
        self.assertEqual((response.status_code, response["Content-Type"]), (200, "text/javascript"))
        self.assertEqual(response["Referrer-Policy"], "no-referrer")
        self.assertIn("no-store", response["Cache-Control"])
        self.assertIsNotNone(b.key)
        self.assertNotEqual(b.key, a.key)  # never the source's key verbatim
        self.assertEqual(b.text("/visit/"), "2")  # the same data...
        self.assertEqual(a.text("/visit/"), "3")  # ...both ways
        self.assertEqual(self.signals.sent, [{"src_domain": None, "dest_domain": "b.test", "was_empty": True}])

    def test_a_script_url_works_once(self) -> None:
        a, b = Browser("a.test"), Browser("b.test")
        a.get("/visit/")
        url = self.scripts(a)["b.test"]
        self.assertEqual(b.get(url).status_code, 200)
        replay = Browser("b.test")
        self.assertEqual(replay.get(url).status_code, 403)
        self.assertIsNone(replay.key)
        self.assertEqual(b.get(url).status_code, 403)

    def test_a_token_works_only_at_its_destination(self) -> None:
        a, c = Browser("a.test"), Browser("c.test")
        a.get("/visit/")
        for_b = self.scripts(a)["b.test"]
        self.assertEqual(c.get(for_b).status_code, 403)
        self.assertIsNone(c.key)
        # ...and the refusal elsewhere did not use it up.
        self.assertEqual(Browser("b.test").get(for_b).status_code, 200)

    def test_a_forged_token_is_refused(self) -> None:
        self.assertEqual(Browser("b.test").get("/shared-session/" + "A" * 120 + ".js").status_code, 403)

    def test_a_destination_session_with_data_is_kept_unless_always_replace(self) -> None:
        a, b = Browser("a.test"), Browser("b.test")
        a.get("/visit/")
        a.get("/visit/")
        b.get("/visit/")
        own = b.key
        self.assertEqual(b.get(self.scripts(a)["b.test"]).status_code, 200)
        self.assertEqual((b.key, b.text("/visit/")), (own, "2"))
        self.assertEqual(self.signals.sent, [])
        with override_settings(SESSIOND_SHARED_ALWAYS_REPLACE=True):
            b.get(self.scripts(a)["b.test"])
        self.assertNotEqual(b.key, own)
        self.assertFalse(conf.client().exists(own or ""))  # the replaced session ended
        self.assertEqual(b.text("/visit/"), "3")
        self.assertEqual(self.signals.sent, [{"src_domain": None, "dest_domain": "b.test", "was_empty": False}])

    def test_a_login_is_shared_and_a_logout_anywhere_ends_it_everywhere(self) -> None:
        self.user("alice")
        a, b = Browser("a.test"), Browser("b.test")
        a.post("/login/", {"username": "alice"})
        b.get(self.scripts(a)["b.test"])
        self.assertEqual(b.text("/whoami/"), "alice")
        listed = users.sessions(get_user_model().objects.get(username="alice"))
        self.assertEqual(len(listed), 1)  # one session, two keys
        b.post("/logout/", {})
        self.assertEqual(a.text("/whoami/"), "anonymous")

    def test_an_ended_source_session_is_refused(self) -> None:
        a, b = Browser("a.test"), Browser("b.test")
        a.get("/visit/")
        url = self.scripts(a)["b.test"]
        conf.client().delete(a.key or "")
        self.assertEqual(b.get(url).status_code, 403)

    # The browser-bound flow.

    def transfer(
        self, source: Browser, destination: Browser, next_url: str = "/whoami/", redeem: bool = True
    ) -> tuple[Any, str]:
        """Follows the bound flow's redirects (up to the last, unless
        ``redeem``); returns the last response and the redeem URL (path and
        query) it went through."""
        start = destination.get(f"/shared-session/start/?from={source.host}&next={next_url}")
        self.assertEqual(start.status_code, 302)
        host, path, query = split(start["Location"])
        self.assertEqual((host, path), (source.host, "/shared-session/issue/"))
        self.assertEqual((query["to"], query["next"]), (destination.host, next_url))
        issued = source.get(path, data=query)
        self.assertEqual(issued.status_code, 302)
        host, path, query = split(issued["Location"])
        self.assertEqual((host, path), (destination.host, "/shared-session/redeem/"))
        redeem_url = issued["Location"][len("//" + host) :]
        return (destination.get(path, data=query) if redeem else None), redeem_url

    def test_the_bound_flow_brings_a_login_along(self) -> None:
        self.user("alice")
        a, b = Browser("a.test"), Browser("b.test")
        a.post("/login/", {"username": "alice"})
        link = a.text("/page/?to=b.test")
        self.assertIn('href="//b.test/shared-session/start/?from=a.test&amp;next=%2Fwhoami%2F"', link)
        response, _ = self.transfer(a, b)
        self.assertEqual((response.status_code, response["Location"]), (302, "/whoami/"))
        self.assertEqual(response["Referrer-Policy"], "no-referrer")
        self.assertNotEqual(b.key, a.key)
        self.assertEqual(b.text("/whoami/"), "alice")
        self.assertEqual(self.signals.sent, [{"src_domain": "a.test", "dest_domain": "b.test", "was_empty": True}])
        self.assertEqual(b.client.cookies[shared.STATE_COOKIE].value, "")  # the state is used up

    def test_a_bound_redeem_url_is_refused_when_replayed_or_stolen(self) -> None:
        a, b = Browser("a.test"), Browser("b.test")
        a.get("/visit/")
        _, redeem_url = self.transfer(a, b)
        self.assertEqual(b.get(redeem_url).status_code, 403)  # replayed
        # Stolen before use: another browser, even with a state of its own, gets nothing.
        victim = Browser("b.test")
        _, stolen = self.transfer(a, victim, redeem=False)
        thief = Browser("b.test")
        thief.get("/shared-session/start/?from=a.test")
        self.assertEqual(thief.get(stolen).status_code, 403)
        self.assertIsNone(thief.key)
        self.assertEqual(Browser("b.test").get(stolen).status_code, 403)  # no state at all
        self.assertEqual(victim.get(stolen).status_code, 302)  # still good for its own browser
        self.assertEqual(victim.text("/visit/"), "2")

    def test_the_bound_flow_without_a_session_at_the_source_lands_without_one(self) -> None:
        a, b = Browser("a.test"), Browser("b.test")
        response, redeem_url = self.transfer(a, b, "/visit/")
        self.assertNotIn("token=", redeem_url)
        self.assertEqual((response.status_code, response["Location"]), (302, "/visit/"))
        self.assertIsNone(b.key)

    def test_the_bound_flow_refuses_what_is_not_a_shared_site(self) -> None:
        b = Browser("b.test")
        self.assertEqual(b.get("/shared-session/start/?from=evil.example").status_code, 403)
        self.assertEqual(b.get("/shared-session/start/?from=b.test").status_code, 403)
        a = Browser("a.test")
        a.get("/visit/")
        self.assertEqual(a.get("/shared-session/issue/", data={"to": "evil.example", "h": "0" * 64}).status_code, 403)
        self.assertEqual(a.get("/shared-session/issue/", data={"to": "b.test", "h": "zz" * 32}).status_code, 403)
        self.assertEqual(Browser("testserver").get("/shared-session/start/?from=a.test").status_code, 403)

    def test_next_must_stay_on_the_destination(self) -> None:
        a, b = Browser("a.test"), Browser("b.test")
        a.get("/visit/")
        start = b.get("/shared-session/start/?from=a.test&next=//evil.example/")
        host, path, query = split(start["Location"])
        self.assertEqual(query["next"], "/")
        query["next"] = "https://evil.example/"  # changed on the way: the destination checks again
        _, path, query = split(a.get(path, data=query)["Location"])
        self.assertEqual(b.get(path, data=query)["Location"], "/")
