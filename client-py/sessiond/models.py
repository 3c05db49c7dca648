"""What the clients return where the wire's shape is not the handiest one:
field lists become dictionaries."""

from __future__ import annotations

import dataclasses

from .protocol import Expiry, SessionBody
from .protocol import Unsealed as UnsealedBody


@dataclasses.dataclass(slots=True)
class Session:
    """A session as read from the daemon. Times are Unix milliseconds, by the daemon's clock.

    For Django's session API: ``get_expiry_age()`` is ``ttl_ms // 1000``,
    ``get_expiry_date()`` is ``expires_at_ms``, and
    ``get_expire_at_browser_close()`` is ``expiry.kind is ExpiryKind.BROWSER_CLOSE``.
    """

    #: The data, by field name, in name order.
    fields: dict[str, bytes]
    #: Grows with every change of data, key or policy: the ``expected_version`` of a compare-and-set.
    version: int
    created_ms: int
    modified_ms: int
    last_active_ms: int
    #: The session is live strictly before this instant.
    expires_at_ms: int
    #: Time left at the read, by the daemon's clock, so the caller's clock need not be trusted.
    ttl_ms: int
    expiry: Expiry
    #: The public handle: safe to show, stable across ``cycle``.
    handle: str
    user: str | None
    ip: str | None
    user_agent: str | None
    #: ``get_from`` was given an IP other than the stored one (reported, never enforced).
    ip_changed: bool
    #: ``get_from`` was given a user agent other than the stored one.
    user_agent_changed: bool

    @classmethod
    def from_body(cls, b: SessionBody) -> Session:
        return cls(
            {f.name: f.value for f in b.fields},
            b.version,
            b.created_ms,
            b.modified_ms,
            b.last_active_ms,
            b.expires_at_ms,
            b.ttl_ms,
            b.expiry,
            b.handle,
            b.user,
            b.ip,
            b.user_agent,
            b.ip_changed,
            b.user_agent_changed,
        )


@dataclasses.dataclass(slots=True)
class Unsealed:
    """An opened sealed cookie."""

    fields: dict[str, bytes]
    user: str | None
    #: The cookie session's id, in hex: for logs.
    sid: str
    expires_at_ms: int
    #: A fresh value the application should set now (sliding expiry), if any.
    reseal: str | None

    @classmethod
    def from_body(cls, b: UnsealedBody) -> Unsealed:
        return cls({f.name: f.value for f in b.fields}, b.user, b.sid, b.expires_at_ms, b.reseal)
