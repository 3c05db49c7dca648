"""Runs the Django tests and prints their counts: Django's SessionTestsMixin,
Django's other tests we run, and ours. Exits 1 if any failed.

Usage (run.sh does this): ``python tests_django/run.py SDIST_TESTS_DIR [TEST_ID...]``
from ``client-py/``, with ``SESSIOND_SOCKET`` set to a running daemon.
"""

from __future__ import annotations

import os
import signal
import sys
import unittest
from collections import Counter
from pathlib import Path

CLIENT_PY = Path(__file__).resolve().parents[1]
MODULES = [
    "tests_django.test_mixin",
    "tests_django.test_store",
    "tests_django.test_users",
    "tests_django.test_sealed",
    "tests_django.test_shared",
]


class CountingResult(unittest.TextTestResult):
    """Tallies every outcome by group, successes included."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.tally: Counter[tuple[str, str]] = Counter()
        self.failed_by_subtest: set[str] = set()

    def _count(self, test: unittest.TestCase, outcome: str) -> None:
        self.tally[(group(test), outcome)] += 1

    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)
        self._count(test, "passed")

    def addFailure(self, test: unittest.TestCase, err: object) -> None:
        super().addFailure(test, err)  # type: ignore[arg-type]
        self._count(test, "failed")

    def addError(self, test: unittest.TestCase, err: object) -> None:
        super().addError(test, err)  # type: ignore[arg-type]
        self._count(test, "failed")

    def addSubTest(self, test: unittest.TestCase, subtest: unittest.TestCase, err: object) -> None:
        # A failed subtest fails its test, which then reports nothing else: count it once.
        super().addSubTest(test, subtest, err)  # type: ignore[arg-type]
        if err is not None and test.id() not in self.failed_by_subtest:
            self.failed_by_subtest.add(test.id())
            self._count(test, "failed")

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        super().addSkip(test, reason)
        self._count(test, "skipped")

    def addExpectedFailure(self, test: unittest.TestCase, err: object) -> None:
        super().addExpectedFailure(test, err)  # type: ignore[arg-type]
        self._count(test, "expected failure")

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        super().addUnexpectedSuccess(test)
        self._count(test, "failed")


def group(test: unittest.TestCase) -> str:
    from sessions_tests.tests import SessionTestsMixin

    name = getattr(test, "_testMethodName", "")
    if isinstance(test, SessionTestsMixin) and hasattr(SessionTestsMixin, name):
        return f"Django SessionTestsMixin ({type(test).__name__})"
    if type(test).__module__ == "sessions_tests.tests":
        return "Django " + type(test).__name__
    return "ours"


def main(argv: list[str]) -> int:
    sdist_tests, ids = argv[0], argv[1:]
    sys.path[:0] = [str(CLIENT_PY), sdist_tests]
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests_django.settings"
    # run.sh's trap kills the daemon; a SIGTERM must still end us cleanly.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    import django
    from django.test.utils import setup_databases, setup_test_environment, teardown_databases

    django.setup()
    from sessiond.django import conf

    setup_test_environment()
    databases = setup_databases(verbosity=0, interactive=False)
    try:
        loader = unittest.TestLoader()
        suite = loader.loadTestsFromNames(ids or MODULES)
        result = unittest.TextTestRunner(verbosity=2, resultclass=CountingResult).run(suite)
    finally:
        teardown_databases(databases, verbosity=0)
        conf.client().close()
    assert isinstance(result, CountingResult)
    print()
    for name in sorted({g for g, _ in result.tally}):
        counts = ", ".join(
            f"{result.tally[(name, o)]} {o}" for o in ("passed", "failed", "skipped", "expected failure")
        )
        print(f"{name}: {counts}")
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
