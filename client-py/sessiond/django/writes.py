"""What a save sends, and the one place that sends it.

A save is one WRITE (protocol version 2): the data's change, the new expiry
policy if it changed, and the new owner if the data's user changed, applied
by the daemon in one atomic step. A crash between two calls can no longer
leave the data saved under the old policy, or a login saved without its
owner.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from .. import Client, Owner, aio
from ..protocol import Expiry

KEEP_OWNER = Owner.keep()


class State(NamedTuple):
    """What the daemon holds of a session, or what a save wants it to hold."""

    #: The fields, as serialized by :mod:`sessiond.django.fields`.
    fields: dict[str, bytes]
    #: The expiry policy.
    policy: Expiry
    #: The owner (the user id under ``_auth_user_id``), ``None`` for nobody.
    owner: str | None


@dataclasses.dataclass(frozen=True)
class Write:
    """The changes of one save."""

    #: Fields to set: the keys whose serialized value changed.
    set: dict[str, bytes]
    #: Fields to remove: the keys Django no longer has.
    remove: list[str]
    #: Whether ``set`` is the whole data (replace): when what the daemon holds is unknown.
    replace: bool
    #: The new policy, or ``None`` when it is unchanged.
    expiry: Expiry | None
    #: What happens to the owner: kept unless the data's user changed.
    owner: Owner = KEEP_OWNER

    def changes_nothing(self) -> bool:
        return not (self.set or self.remove or self.replace or self.expiry is not None or self.owner != KEEP_OWNER)


#: A save that changes nothing still counts as activity, as Django's
#: backends move the expiry on every save.
TOUCH = Write({}, [], False, None)


def plan(held: State | None, wanted: State) -> Write:
    """The write that takes the daemon from ``held`` (``None``: unknown) to ``wanted``.

    The owner follows the data: a user id that appears or changes (login)
    sets it, one that disappears from a session that goes on clears it.
    Logout needs neither: it deletes the session.
    """
    if held is None:
        owner = Owner.set(wanted.owner) if wanted.owner is not None else KEEP_OWNER
        return Write(wanted.fields, [], True, wanted.policy, owner)
    if wanted.owner == held.owner:
        owner = KEEP_OWNER
    else:
        owner = Owner.set(wanted.owner) if wanted.owner is not None else Owner.clear()
    changed = {name: value for name, value in wanted.fields.items() if held.fields.get(name) != value}
    removed = [name for name in held.fields if name not in wanted.fields]
    expiry = None if wanted.policy == held.policy else wanted.policy
    return Write(changed, removed, False, expiry, owner)


def send(client: Client, key: str, write: Write) -> None:
    """Sends ``write``, as one WRITE (a TOUCH if it changes nothing); raises
    :class:`~sessiond.NotFound` if the session has ended, which WRITE never
    brings back. A policy that ends the session (a date in the past) is
    applied with the data, and ends it."""
    if write.changes_nothing():
        client.touch(key)
    else:
        client.write(key, write.set, write.remove, replace=write.replace, expiry=write.expiry, owner=write.owner)


async def asend(client: aio.Client, key: str, write: Write) -> None:
    """:func:`send` for the asyncio client."""
    if write.changes_nothing():
        await client.touch(key)
    else:
        await client.write(key, write.set, write.remove, replace=write.replace, expiry=write.expiry, owner=write.owner)
