"""Session data as daemon fields: one field per top-level key, its value
serialized on its own with ``SESSION_SERIALIZER`` (JSON by default), so a
save can send only the keys that changed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from django.contrib.auth import SESSION_KEY

logger = logging.getLogger("sessiond.django")


def field_name(key: Any) -> str:
    """The field for a session key. Non-string keys become the strings JSON
    would make of them (``1`` -> ``"1"``), as they would in Django's other
    backends after a round trip; other types are refused, as JSON refuses them."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (int, float)):
        return json.dumps(key)
    raise TypeError(f"session keys must be str, int, float, bool or None, not {type(key).__name__}")


def encode(data: Mapping[Any, Any], serializer: Any) -> dict[str, bytes]:
    dumps = serializer().dumps
    return {field_name(key): dumps(value) for key, value in data.items()}


def decode(fields: Mapping[str, bytes], serializer: Any) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The session data, and the fields it came from.

    A field that does not decode (written by another client, say) is left
    out of both: Django does not see it, and saves never change or remove
    it unless Django sets that key itself.
    """
    loads = serializer().loads
    data: dict[str, Any] = {}
    kept: dict[str, bytes] = {}
    for name, value in fields.items():
        try:
            data[name] = loads(value)
        except Exception:  # any serializer's failure, as Django's decode() takes it
            logger.warning("session field %r does not decode with the session serializer; left alone", name)
            continue
        kept[name] = value
    return data, kept


def owner(data: Mapping[str, Any]) -> str | None:
    """The owner of a session holding a logged-in user's data (Django keeps
    the user's primary key, as a string, under ``SESSION_KEY``)."""
    user_id = data.get(SESSION_KEY)
    return user_id if isinstance(user_id, str) and user_id else None
