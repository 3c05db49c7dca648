"""Our tests of sessiond.django.backend, beyond Django's: what the daemon
makes possible (keys never adopted, concurrent saves that keep each other's
changes, exact expiry) and what the daemon holds after each save."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections import Counter
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import UpdateError
from django.core import management
from django.test import SimpleTestCase, override_settings
from django.utils import timezone

from sessiond import Expiry, ExpiryKind, Settings
from sessiond.django import agreement, conf
from sessiond.django.backend import SessionStore

UNKNOWN_KEY = "A" * 43  # well formed (43 canonical base64url characters), never issued
THREADS = 8
JOIN_TIMEOUT = 20.0


def requests_by_op() -> Counter[str]:
    """How many requests of each operation the daemon has answered."""
    return Counter(
        {h.label: sum(h.counts) for h in conf.client().metrics().histograms if h.name == "request_latency_us"}
    )


def ops_during(action: object) -> Counter[str]:
    """The daemon's requests made by ``action()``, by operation."""
    before = requests_by_op()
    action()  # type: ignore[operator]
    after = requests_by_op()
    after.subtract(before)
    del after["STATS"], after["HELLO"]  # the metrics reads, and connections opened
    return +after


def saved(data: dict[str, object], expiry: object = None) -> SessionStore:
    store = SessionStore()
    store.update(data)
    if expiry is not None:
        store.set_expiry(expiry)
    store.save()
    return store


class KeysTests(SimpleTestCase):
    """Only the daemon makes keys: a key it does not know is never adopted."""

    def test_an_unknown_well_formed_key_is_never_adopted(self) -> None:
        store = SessionStore(UNKNOWN_KEY)
        self.assertIsNone(store.get("cat"))
        self.assertIsNone(store.session_key)
        store["cat"] = "dog"
        store.save()
        self.assertNotEqual(store.session_key, UNKNOWN_KEY)
        self.assertFalse(store.exists(UNKNOWN_KEY))
        self.assertEqual(SessionStore(store.session_key)["cat"], "dog")

    async def test_an_unknown_well_formed_key_is_never_adopted_async(self) -> None:
        store = SessionStore(UNKNOWN_KEY)
        await store.aset("cat", "dog")
        self.assertIsNone(store.session_key)
        await store.asave()
        self.assertNotEqual(store.session_key, UNKNOWN_KEY)
        self.assertFalse(await store.aexists(UNKNOWN_KEY))

    def test_saving_an_unknown_key_unread_raises_update_error(self) -> None:
        for key in (UNKNOWN_KEY, "not a sessiond key"):
            with self.subTest(key=key), self.assertRaises(UpdateError):
                SessionStore(key).save()
        self.assertFalse(SessionStore().exists(UNKNOWN_KEY))

    def test_must_create_makes_a_new_key(self) -> None:
        store = saved({"a": 1})
        old = store.session_key
        store.save(must_create=True)
        self.assertNotEqual(store.session_key, old)
        self.assertEqual(SessionStore(store.session_key)["a"], 1)

    def test_cycle_key_is_atomic_and_keeps_handle_and_unsaved_changes(self) -> None:
        store = saved({"a": 1})
        old, handle = store.session_key, store.handle
        store["b"] = 2
        store.cycle_key()
        self.assertFalse(store.exists(old))
        self.assertTrue(store.modified)
        self.assertEqual(conf.client().get(store.session_key).handle, handle)
        store.save()
        self.assertEqual(dict(SessionStore(store.session_key).items()), {"a": 1, "b": 2})

    def test_adopt_makes_the_store_another_session_in_place(self) -> None:
        mine, other = saved({"a": 1}), saved({"b": 2})
        mine["a"] = 3  # unsaved: dropped
        mine.adopt(other.session_key)
        self.assertEqual((mine.session_key, mine.modified), (other.session_key, True))
        self.assertEqual(ops_during(mine.save), Counter(TOUCH=1))  # what SessionMiddleware does next
        self.assertEqual(dict(mine.items()), {"b": 2})
        self.assertEqual(mine.current_handle(), other.handle)
        self.assertEqual(SessionStore(mine.session_key).get("a"), None)

    def test_cycle_key_of_an_unknown_key_makes_a_new_session(self) -> None:
        store = SessionStore(UNKNOWN_KEY)
        store.cycle_key()
        self.assertNotIn(store.session_key, (None, UNKNOWN_KEY))
        self.assertTrue(store.exists(store.session_key))


class ConcurrentSavesTests(SimpleTestCase):
    """Saves send only what changed, so saves of different keys all survive
    (Django's db backend writes the whole session: the last save wins)."""

    def test_two_saves_of_different_keys_both_survive(self) -> None:
        key = saved({"seed": 0, "gone": 1}).session_key
        first, second = SessionStore(key), SessionStore(key)
        first["cart"], second["theme"] = [1, 2], "dark"
        del second["gone"]
        first.save()
        second.save()
        self.assertEqual(dict(SessionStore(key).items()), {"seed": 0, "cart": [1, 2], "theme": "dark"})

    def test_threads_saving_different_keys_all_survive(self) -> None:
        key = saved({"seed": 0}).session_key
        barrier = threading.Barrier(THREADS, timeout=JOIN_TIMEOUT)
        errors: list[BaseException] = []

        def request(i: int) -> None:
            try:
                store = SessionStore(key)
                store[f"k{i}"] = i  # loads the session first
                barrier.wait()  # every request has read before any saves
                store.save()
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=request, args=(i,)) for i in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(JOIN_TIMEOUT)
        self.assertFalse(any(t.is_alive() for t in threads), "a request hung")
        self.assertEqual(errors, [])
        self.assertEqual(dict(SessionStore(key).items()), {"seed": 0, **{f"k{i}": i for i in range(THREADS)}})

    async def test_concurrent_async_saves_of_different_keys_both_survive(self) -> None:
        store = SessionStore()
        await store.aset("seed", 0)
        await store.asave()
        first, second = SessionStore(store.session_key), SessionStore(store.session_key)
        await first.aset("cart", 3)
        await second.aset("theme", "dark")
        await asyncio.gather(first.asave(), second.asave())
        self.assertEqual(dict(await SessionStore(store.session_key).aitems()), {"seed": 0, "cart": 3, "theme": "dark"})

    def test_a_save_sends_only_what_changed(self) -> None:
        store = saved({"a": 1, "b": [1]})
        store["a"] = 1  # same value: nothing to send but activity
        self.assertEqual(ops_during(store.save), Counter(TOUCH=1))
        store["b"].append(2)  # changed in place, without marking the session modified
        self.assertEqual(ops_during(store.save), Counter(WRITE=1))
        reread = SessionStore(store.session_key)
        self.assertEqual(ops_during(reread.save), Counter(TOUCH=1))  # never read: not even loaded
        self.assertEqual(reread["b"], [1, 2])

    def test_a_session_ended_elsewhere_is_not_resurrected_by_any_save(self) -> None:
        changes = (
            lambda s: s.__setitem__("a", 2),
            lambda s: s.set_expiry(60),
            lambda s: s.__setitem__(SESSION_KEY, "7"),  # a login: data and owner
            lambda s: None,
        )
        for change in changes:
            store = saved({"a": 1})
            store.load()
            SessionStore(store.session_key).delete()
            change(store)
            with self.subTest(), self.assertRaises(UpdateError):
                store.save()

    def test_the_owner_follows_the_user_in_the_data(self) -> None:
        store = saved({"a": 1})
        key = store.session_key
        store[SESSION_KEY] = "7"  # what login() stores
        self.assertEqual(ops_during(store.save), Counter(WRITE=1))
        self.assertEqual(conf.client().get(key).user, "7")
        store["a"] = 2  # the owner unchanged: not sent again
        store.save()
        self.assertEqual(conf.client().get(key).user, "7")
        reread = SessionStore(key)
        reread[SESSION_KEY] = "8"
        reread.save()
        self.assertEqual(conf.client().get(key).user, "8")
        del reread[SESSION_KEY]  # signed out without a flush: nobody's
        reread.save()
        self.assertIsNone(conf.client().get(key).user)
        conf.client().revoke_user("7")
        conf.client().revoke_user("8")

    def test_fields_other_clients_wrote_are_left_alone(self) -> None:
        key = saved({"a": 1, "b": 2}).session_key
        conf.client().patch(key, {"raw": b"not json"})
        store = SessionStore(key)
        with self.assertLogs("sessiond.django", "WARNING"):
            self.assertEqual(dict(store.items()), {"a": 1, "b": 2})
        store["a"] = 3
        del store["b"]
        store.save()
        self.assertEqual(conf.client().get(key).fields, {"a": b"3", "raw": b"not json"})

    def test_clear_of_a_session_never_read_replaces_its_data(self) -> None:
        store = saved({"a": 1}, 300)
        unread = SessionStore(store.session_key)
        unread.clear()  # what the daemon holds is unknown: the save sends all of it
        unread["b"] = 2
        self.assertEqual(ops_during(unread.save), Counter(WRITE=1))
        stored = conf.client().get(store.session_key)
        self.assertEqual((stored.fields, stored.expiry), ({"b": b"2"}, Expiry.idle(settings.SESSION_COOKIE_AGE)))


class ExpiryTests(SimpleTestCase):
    """Django's expiry, held by the daemon."""

    def policy(self, store: SessionStore) -> Expiry:
        return conf.client().get(store.session_key).expiry

    def test_set_expiry_becomes_the_daemon_policy(self) -> None:
        when = timezone.now() + timedelta(hours=1)
        cases = [
            (None, Expiry.idle(settings.SESSION_COOKIE_AGE)),
            (300, Expiry.idle(300)),
            (0, Expiry.browser_close()),
            (when, Expiry.at(round(when.timestamp() * 1000))),
            (timedelta(hours=1), None),  # checked below: now + 1 h
        ]
        store = saved({"a": 1})
        for value, expected in cases:
            with self.subTest(value=value):
                store.set_expiry(value)
                before = time.time()
                store.save()
                got = self.policy(store)
                if expected is None:
                    self.assertEqual(got.kind, ExpiryKind.AT)
                    self.assertAlmostEqual(got.value / 1000, before + 3600, delta=5)
                else:
                    self.assertEqual(got, expected)
                reread = SessionStore(store.session_key)
                self.assertEqual(reread.get("_session_expiry"), store.get("_session_expiry"))

    def test_an_unchanged_policy_is_not_sent_again(self) -> None:
        store = saved({"a": 1}, 300)
        store["b"] = 2
        self.assertEqual(ops_during(store.save), Counter(WRITE=1))
        store.set_expiry(301)
        self.assertEqual(ops_during(store.save), Counter(WRITE=1))  # data and policy in one write
        self.assertEqual(self.policy(store), Expiry.idle(301))
        store.set_expiry(302)  # the policy alone: still one write
        self.assertEqual(ops_during(store.save), Counter(WRITE=1))
        self.assertEqual(self.policy(store), Expiry.idle(302))

    def test_a_past_expiry_saved_with_data_ends_the_session(self) -> None:
        store = saved({"a": 1}, 300)
        store["a"] = 2
        store.set_expiry(-timedelta(seconds=1))
        self.assertEqual(ops_during(store.save), Counter(WRITE=1))
        self.assertFalse(SessionStore().exists(store.session_key))

    def test_settings_without_a_custom_expiry(self) -> None:
        with override_settings(SESSION_COOKIE_AGE=600):
            self.assertEqual(self.policy(saved({"a": 1})), Expiry.idle(600))
        with override_settings(SESSION_EXPIRE_AT_BROWSER_CLOSE=True):
            self.assertEqual(self.policy(saved({"a": 1})), Expiry.browser_close())
            self.assertEqual(self.policy(saved({"a": 1}, 60)), Expiry.idle(60))

    def test_the_daemon_ends_the_session_at_its_expiry(self) -> None:
        store = saved({"a": 1}, timedelta(seconds=1))
        key = store.session_key
        self.assertEqual(SessionStore(key)["a"], 1)
        deadline = time.monotonic() + 5
        while SessionStore().exists(key) and time.monotonic() < deadline:
            time.sleep(0.05)
        late = SessionStore(key)
        self.assertNotIn("a", late)
        self.assertIsNone(late.session_key)

    async def test_async_saves_keep_data_and_expiry(self) -> None:
        store = SessionStore()
        await store.aset("cart", [1, 2])
        await store.aset_expiry(300)
        await store.asave()
        key = store.session_key
        stored = await conf.aclient().get(key)
        self.assertEqual(stored.expiry, Expiry.idle(300))
        self.assertTrue(290_000 < stored.ttl_ms <= 300_000, stored.ttl_ms)

        again = SessionStore(key)
        self.assertEqual(await again.aget("cart"), [1, 2])
        self.assertEqual(await again.aget_expiry_age(), 300)
        when = timezone.now() + timedelta(hours=2)
        await again.aset_expiry(when)
        await again.aset("theme", "dark")
        await again.asave()
        stored = await conf.aclient().get(key)
        self.assertEqual(stored.expiry, Expiry.at(round(when.timestamp() * 1000)))
        self.assertEqual(set(stored.fields), {"cart", "theme", "_session_expiry"})

        await again.aset_expiry(0)
        await again.asave()
        self.assertTrue(await SessionStore(key).aget_expire_at_browser_close())
        self.assertEqual((await conf.aclient().get(key)).expiry, Expiry.browser_close())
        await again.aset_expiry(None)
        await again.asave()
        self.assertEqual((await conf.aclient().get(key)).expiry, Expiry.idle(settings.SESSION_COOKIE_AGE))
        self.assertEqual(dict(await SessionStore(key).aitems()), {"cart": [1, 2], "theme": "dark"})

    def test_reads_count_as_activity_only_if_configured(self) -> None:
        key = saved({"a": 1}, 300).session_key

        def last_active_after_a_load() -> int:
            time.sleep(0.01)
            SessionStore(key).load()
            return conf.client().get(key).last_active_ms

        before = conf.client().get(key).last_active_ms
        self.assertEqual(last_active_after_a_load(), before)
        with override_settings(SESSIOND_TOUCH_ON_READ=True):
            self.assertGreater(last_active_after_a_load(), before)


class AgreementTests(SimpleTestCase):
    """Warnings where Django's settings and the daemon's announced ones disagree."""

    def setUp(self) -> None:
        self.addCleanup(agreement._done.clear)
        agreement._done.clear()
        daemon = conf.client().settings()
        assert daemon is not None
        self.daemon: Settings = daemon

    def test_browser_close_sessions_need_the_same_age(self) -> None:
        idle = self.daemon.default_idle_secs
        with override_settings(SESSION_EXPIRE_AT_BROWSER_CLOSE=True, SESSION_COOKIE_AGE=idle + 1):
            with self.assertLogs("sessiond.django", "WARNING") as logs:
                saved({"a": 1})
            self.assertIn("default_idle_secs", logs.output[0])
            with self.assertNoLogs("sessiond.django", "WARNING"):
                saved({"a": 1})  # once per process
        agreement._done.clear()
        with override_settings(SESSION_COOKIE_AGE=idle + 1), self.assertNoLogs("sessiond.django", "WARNING"):
            saved({"a": 1})  # no browser-close session: nothing to agree on
        with override_settings(SESSION_COOKIE_AGE=idle), self.assertNoLogs("sessiond.django", "WARNING"):
            saved({"a": 1}, 0)

    async def test_async_saves_check_too(self) -> None:
        store = SessionStore()
        await store.aset_expiry(0)
        age = self.daemon.default_idle_secs + 1
        with override_settings(SESSION_COOKIE_AGE=age), self.assertLogs("sessiond.django", "WARNING"):
            await store.asave()

    def test_a_lifetime_cap_below_the_cookie_age(self) -> None:
        capped = dataclasses.replace(self.daemon, max_lifetime_secs=60)
        found = agreement.disagreements(capped, Expiry.idle(600), 600)
        self.assertIn("max_lifetime_secs", found["lifetime"] or "")
        self.assertIsNone(agreement.disagreements(self.daemon, Expiry.idle(600), 600)["lifetime"])


class ClearSessionsTests(SimpleTestCase):
    def test_clearsessions_asks_the_daemon_to_sweep(self) -> None:
        # run.sh's daemon sweeps only when asked.
        saved({"a": 1}, -timedelta(seconds=1))
        swept = conf.client().stats()["expired_swept"]
        self.assertEqual(ops_during(lambda: management.call_command("clearsessions")), Counter(SWEEP=1))
        self.assertGreater(conf.client().stats()["expired_swept"], swept)

    async def test_aclear_expired_sweeps(self) -> None:
        before = requests_by_op()["SWEEP"]
        await SessionStore.aclear_expired()
        self.assertEqual(requests_by_op()["SWEEP"], before + 1)
