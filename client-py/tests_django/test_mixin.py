"""Django's own session tests against sessiond.django.backend.

``SessionTestsMixin`` and ``ClearSessionsCommandTests`` come from the
tests of the Django sdist run.sh fetches (``sessions_tests`` on the path),
unchanged; nothing here overrides a mixin test.
"""

from django.test import SimpleTestCase
from sessions_tests.tests import ClearSessionsCommandTests, SessionTestsMixin

from sessiond.django.backend import SessionStore

__all__ = ["ClearSessionsCommandTests", "SessiondSessionTests"]


class SessiondSessionTests(SessionTestsMixin, SimpleTestCase):
    backend = SessionStore
