"""What a save sends, and the one place that sends it.

Protocol version 1 sets the expiry policy with its own call (SET_EXPIRY)
after the data's; when PATCH carries the policy, only :func:`send` and
:func:`asend` change.
"""

from __future__ import annotations

import dataclasses

from .. import Client, aio
from ..protocol import Expiry


@dataclasses.dataclass(frozen=True)
class Write:
    """The changes of one save."""

    #: Fields to set: the keys whose serialized value changed.
    set: dict[str, bytes]
    #: Fields to remove: the keys Django no longer has.
    remove: list[str]
    #: Whether ``set`` is the whole data (REPLACE): when what the daemon holds is unknown.
    replace: bool
    #: The new policy, or ``None`` when it is unchanged.
    expiry: Expiry | None


#: A save that changes nothing still counts as activity, as Django's
#: backends move the expiry on every save.
TOUCH = Write({}, [], False, None)


def plan(
    stored: dict[str, bytes] | None, fields: dict[str, bytes], stored_policy: Expiry | None, policy: Expiry
) -> Write:
    """The write that takes the daemon from ``stored`` (``None``: unknown) to ``fields``."""
    expiry = None if policy == stored_policy else policy
    if stored is None:
        return Write(fields, [], True, expiry)
    changed = {name: value for name, value in fields.items() if stored.get(name) != value}
    return Write(changed, [name for name in stored if name not in fields], False, expiry)


def send(client: Client, key: str, write: Write) -> None:
    """Sends ``write``; raises :class:`~sessiond.NotFound` if the session has ended.

    Data before policy: a policy that ends the session (a date in the past)
    must not make the data's write fail.
    """
    if write.replace:
        client.replace(key, write.set)
    elif write.set or write.remove:
        client.patch(key, write.set, write.remove)
    elif write.expiry is None:
        client.touch(key)
    if write.expiry is not None:
        client.set_expiry(key, write.expiry)


async def asend(client: aio.Client, key: str, write: Write) -> None:
    """:func:`send` for the asyncio client."""
    if write.replace:
        await client.replace(key, write.set)
    elif write.set or write.remove:
        await client.patch(key, write.set, write.remove)
    elif write.expiry is None:
        await client.touch(key)
    if write.expiry is not None:
        await client.set_expiry(key, write.expiry)
