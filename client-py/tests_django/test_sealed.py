"""Django's SessionTestsMixin against sessiond.django.sealed, and what
sealing adds to Django's signed cookies."""

from __future__ import annotations

import time
from collections import Counter

from django.conf import settings
from django.contrib.sessions.backends.base import UpdateError
from django.core.exceptions import ImproperlyConfigured
from django.test import SimpleTestCase, override_settings
from sessions_tests.tests import SessionTestsMixin

from sessiond.django import conf
from sessiond.django.sealed import SessionStore

from .test_store import ops_during


class SealedSessionTests(SessionTestsMixin, SimpleTestCase):
    backend = SessionStore


class SealedTests(SimpleTestCase):
    def sealed(self, **data: object) -> SessionStore:
        store = SessionStore()
        store.update(data)
        store.save()
        return store

    def test_the_browser_cannot_read_the_value(self) -> None:
        store = self.sealed(secret="s3cr3t-value")
        self.assertNotIn("s3cr3t", store.session_key or "")
        self.assertEqual(SessionStore(store.session_key)["secret"], "s3cr3t-value")

    def test_a_value_is_bound_to_the_cookie_name_and_host(self) -> None:
        value = self.sealed(a=1).session_key
        with override_settings(SESSIOND_COOKIE_HOST="elsewhere.example"):
            self.assertNotIn("a", SessionStore(value))
        with override_settings(SESSION_COOKIE_NAME="other"):
            self.assertFalse(SessionStore().exists(value))

    def test_an_unchanged_session_is_not_sealed_again(self) -> None:
        store = self.sealed(a=1)
        value = store.session_key
        again = SessionStore(value)
        again["a"] = 1
        again.save()
        self.assertEqual(again.session_key, value)
        again["a"] = 2
        again.save()
        self.assertNotEqual(again.session_key, value)

    def test_logout_revokes_and_a_revoked_session_is_not_resealed(self) -> None:
        store = self.sealed(a=1)
        copy = SessionStore(store.session_key)
        copy["b"] = 2
        store.flush()
        with self.assertRaises(UpdateError):
            copy.save()

    def test_the_owner_is_sealed_in_and_revoked_with_the_users_sessions(self) -> None:
        value = self.sealed(_auth_user_id="sealed-owner").session_key
        self.assertEqual(conf.client().unseal(value, settings.SESSION_COOKIE_NAME, "testserver").user, "sealed-owner")
        self.assertEqual(conf.client().revoke_user("sealed-owner"), 0)  # no server sessions, but...
        self.assertFalse(SessionStore().exists(value))  # ...the cookie is revoked too

    def test_a_fresh_value_from_the_daemon_is_set(self) -> None:
        value = self.sealed(a=1).session_key
        time.sleep(1.1)  # run.sh's daemon reseals values older than a second
        store = SessionStore(value)
        self.assertEqual(store["a"], 1)
        self.assertNotEqual(store.session_key, value)
        self.assertTrue(store.modified)
        self.assertEqual(ops_during(store.save), Counter())  # the fresh value holds the data already

    def test_a_host_is_required(self) -> None:
        with override_settings(SESSIOND_COOKIE_HOST=None), self.assertRaises(ImproperlyConfigured):
            self.sealed(a=1)
