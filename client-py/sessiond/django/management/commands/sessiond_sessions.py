"""``manage.py sessiond_sessions``: a user's sessions from a shell.

    sessiond_sessions list USER             handles, times, IP, user agent, location
    sessiond_sessions revoke USER [--keep HANDLE]   end all the user's sessions (but one)
    sessiond_sessions revoke-handle HANDLE  end one session

USER is a username, or ``--pk`` for a primary key (users since deleted too).
A handle may start with ``-``: write ``--keep=HANDLE``, and ``revoke-handle -- HANDLE``.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from sessiond.django import conf
from sessiond.protocol import SessionInfo


class Command(BaseCommand):
    help = "Lists or revokes a user's sessions in sessiond (by handle, never by key)."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        listing = actions.add_parser("list", help="the user's live sessions, most recently active first")
        revoking = actions.add_parser("revoke", help="end all the user's sessions, or all but --keep")
        revoking.add_argument("--keep", metavar="HANDLE", help="the handle of a session to keep")
        for sub in (listing, revoking):
            sub.add_argument("user", help="a username (or a primary key, with --pk)")
            sub.add_argument("--pk", action="store_true", help="USER is a primary key")
        one = actions.add_parser("revoke-handle", help="end the session with this handle")
        one.add_argument("handle")

    def handle(self, *args: Any, **options: Any) -> None:
        client = conf.client()
        if options["action"] == "revoke-handle":
            ended = client.revoke(options["handle"])
            self.stdout.write(f"revoked {ended}")
            return
        owner = options["user"] if options["pk"] else self._owner(options["user"])
        if options["action"] == "list":
            for info in client.list_user(owner):
                self.stdout.write(_line(info))
        else:
            self.stdout.write(f"revoked {client.revoke_user(owner, keep=options['keep'])}")

    @staticmethod
    def _owner(username: str) -> str:
        model = get_user_model()
        users: Any = model._default_manager  # a user manager, whatever the stubs say
        try:
            user = users.get_by_natural_key(username)
        except model.DoesNotExist:
            raise CommandError(f"no user {username!r} (for a primary key, use --pk)") from None
        return str(user._meta.pk.value_to_string(user))


def _line(info: SessionInfo) -> str:
    where = ", ".join(filter(None, [info.location.city, info.location.country])) if info.location else ""
    return "\t".join(
        [
            info.handle,
            f"created {_when(info.created_ms)}",
            f"active {_when(info.last_active_ms)}",
            f"expires {_when(info.expires_at_ms)}",
            info.ip or "-",
            where or "-",
            info.user_agent or "-",
        ]
    )


def _when(unix_ms: int) -> str:
    return datetime.datetime.fromtimestamp(unix_ms / 1000, datetime.timezone.utc).isoformat(timespec="seconds")
