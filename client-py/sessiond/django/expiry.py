"""Django's expiry settings as a sessiond expiry policy.

Django keeps a custom expiry in the session data (``_session_expiry``:
absent, ``0``, seconds, or an ISO date) and reads it back with
``get_expiry_age``/``get_expiry_date``; this store keeps that field as it is,
so those methods behave exactly as Django's tests expect, and tells the
daemon the same policy so that the daemon, not a cron job, ends the session.

Without a custom expiry the policy is ``IdleSecs(SESSION_COOKIE_AGE)``
rather than the protocol's ``Default``: the daemon's default age is its own
configuration, which Django cannot see, and Django's age must win. Browser
close (``0``, or ``SESSION_EXPIRE_AT_BROWSER_CLOSE`` without a custom
expiry) maps to ``BrowserClose``, whose server-side age is the daemon's
default (``expiry.default_idle_secs``): keep it equal to
``SESSION_COOKIE_AGE``, as the protocol intends (the daemon announces it;
:mod:`sessiond.django.agreement` warns when they differ).
"""

from __future__ import annotations

import datetime
import time
from typing import Any

from ..protocol import Expiry


def policy(session_expiry: Any, cookie_age: int, at_browser_close: bool) -> Expiry:
    """The daemon's policy for a session whose ``_session_expiry`` is ``session_expiry``."""
    if session_expiry is None:
        return Expiry.browser_close() if at_browser_close else Expiry.idle(cookie_age)
    if isinstance(session_expiry, str):
        return _at(datetime.datetime.fromisoformat(session_expiry).timestamp())
    if isinstance(session_expiry, int) and not isinstance(session_expiry, bool):
        if session_expiry == 0:
            return Expiry.browser_close()
        if session_expiry > 0:
            return Expiry.idle(session_expiry)
        # Django makes a negative age a date in the past: the session ends.
        return _at(time.time() + session_expiry)
    raise TypeError(f"_session_expiry is None, an int or an ISO date, not {type(session_expiry).__name__}")


def _at(unix_secs: float) -> Expiry:
    # A date before 1970 is as past as 1970: either way the session ends.
    return Expiry.at(max(0, round(unix_secs * 1000)))
