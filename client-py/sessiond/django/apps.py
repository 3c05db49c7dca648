"""The app (label ``sessiond``): add ``"sessiond.django"`` to INSTALLED_APPS
for the ``sessiond_sessions`` command and the template tags.

Owners need no signal handler: a session's owner follows the user id in its
data (``_auth_user_id``), so the save that follows ``login()`` binds it, in
the same WRITE as the data, on the key ``login()`` already rotated.
"""

from __future__ import annotations

from django.apps import AppConfig


class SessiondConfig(AppConfig):
    name = "sessiond.django"
    label = "sessiond"
    verbose_name = "sessiond"
