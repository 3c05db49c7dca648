"""Where Django and the daemon must agree on a session's life, checked
against the settings the daemon announces (HELLO_OK, protocol version 2)
and, where they disagree, a warning in the ``sessiond.django`` log, once
per process:

- **Browser-close sessions** (``SESSION_EXPIRE_AT_BROWSER_CLOSE``, or
  ``set_expiry(0)``): the cookie ends with the browser, but the daemon keeps
  the session for its default idle age (``[expiry] default_idle_secs``),
  which Django cannot send; Django's own backends keep it for
  ``SESSION_COOKIE_AGE``. Checked at the first save of such a session.
- **The lifetime cap** (``[expiry] max_lifetime_secs``): the daemon ends
  every session that long after its creation, whatever Django's expiry
  says; one below ``SESSION_COOKIE_AGE`` ends sessions Django still counts
  as live. Checked at the first save.

The checks read the settings of the connection the save just used: they
cost no request. A version 1 daemon announces none, and nothing is checked.
"""

from __future__ import annotations

import logging

from .. import Client, Settings, aio
from ..protocol import Expiry, ExpiryKind

logger = logging.getLogger("sessiond.django")

#: The checks made in this process (each warns at most once).
_done: set[str] = set()


def _due(policy: Expiry) -> bool:
    return "lifetime" not in _done or (policy.kind is ExpiryKind.BROWSER_CLOSE and "browser_close" not in _done)


def disagreements(daemon: Settings, policy: Expiry, cookie_age: int) -> dict[str, str | None]:
    """The checks due for a save with ``policy``: each one's warning, or ``None`` if they agree."""
    found: dict[str, str | None] = {}
    if "lifetime" not in _done:
        cap = daemon.max_lifetime_secs
        found["lifetime"] = (
            f"the daemon ends every session {cap} s after its creation ([expiry] max_lifetime_secs), "
            f"before SESSION_COOKIE_AGE ({cookie_age} s)"
            if 0 < cap < cookie_age
            else None
        )
    if policy.kind is ExpiryKind.BROWSER_CLOSE and "browser_close" not in _done:
        idle = daemon.default_idle_secs
        found["browser_close"] = (
            f"browser-close sessions live {idle} s idle in the daemon ([expiry] default_idle_secs), "
            f"but SESSION_COOKIE_AGE is {cookie_age} s: make them equal"
            if idle != cookie_age
            else None
        )
    return found


def _report(daemon: Settings | None, policy: Expiry, cookie_age: int) -> None:
    if daemon is None:  # a version 1 daemon: nothing to compare with
        _done.update(("lifetime", "browser_close"))
        return
    for check, warning in disagreements(daemon, policy, cookie_age).items():
        _done.add(check)
        if warning is not None:
            logger.warning("sessiond and Django disagree: %s", warning)


def check(client: Client, policy: Expiry, cookie_age: int) -> None:
    """After a save with ``policy``: warns of what is due and disagrees."""
    if _due(policy):
        _report(client.settings(), policy, cookie_age)


async def acheck(client: aio.Client, policy: Expiry, cookie_age: int) -> None:
    if _due(policy):
        _report(await client.settings(), policy, cookie_age)
