"""The app (label ``sessiond``): add ``"sessiond.django"`` to INSTALLED_APPS
for the ``sessiond_sessions`` command and for owners bound at login."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.contrib.auth.signals import user_logged_in


def bind_owner_at_login(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """Makes the user the owner of the session they logged in with, so that
    it is listed, and revoked, with their other sessions."""
    from .backend import SessionStore

    session = getattr(request, "session", None)
    if isinstance(session, SessionStore):
        session.bind_owner(user._meta.pk.value_to_string(user))


class SessiondConfig(AppConfig):
    name = "sessiond.django"
    label = "sessiond"
    verbose_name = "sessiond"

    def ready(self) -> None:
        user_logged_in.connect(bind_owner_at_login, dispatch_uid="sessiond.bind_owner_at_login")
