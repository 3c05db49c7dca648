"""Django integration for sessiond.

- ``SESSION_ENGINE = "sessiond.django.backend"`` keeps Django's sessions in
  the daemon: one field per top-level session key, so that concurrent
  requests changing different keys keep each other's changes; keys made
  only by the daemon; expiry kept by the daemon as ``set_expiry`` says.
- ``SESSION_ENGINE = "sessiond.django.sealed"`` keeps the session in the
  cookie, encrypted and revocable (:mod:`sessiond.django.sealed`).
- ``"sessiond.django"`` in INSTALLED_APPS binds a session to its user at
  login and adds the ``sessiond_sessions`` command;
  :class:`~sessiond.django.middleware.SessionMetaMiddleware` records IPs
  and user agents; :mod:`sessiond.django.users` lists and revokes a user's
  sessions.

Settings (all optional but the last, for the sealed engine):

- ``SESSIOND_SOCKET``: the daemon's socket; default ``$SESSIOND_SOCKET``,
  then ``./sessiond-data/sessiond.sock``.
- ``SESSIOND_TIMEOUT``: seconds per call (5).
- ``SESSIOND_TOUCH_ON_READ``: whether loading a session counts as activity
  (slides an idle expiry without a save); ``False``, as in Django's own
  backends, where only a save moves the expiry.
- ``SESSIOND_COOKIE_HOST``: the host sealed cookies are bound to.
"""
