"""Django integration for sessiond.

- ``SESSION_ENGINE = "sessiond.django.backend"`` keeps Django's sessions in
  the daemon: one field per top-level session key, so that concurrent
  requests changing different keys keep each other's changes; keys made
  only by the daemon; expiry kept by the daemon as ``set_expiry`` says.
- ``SESSION_ENGINE = "sessiond.django.sealed"`` keeps the session in the
  cookie, encrypted and revocable (:mod:`sessiond.django.sealed`).
- A session's owner is its logged-in user, bound by the save after login
  (the same WRITE as the data); ``"sessiond.django"`` in INSTALLED_APPS
  adds the ``sessiond_sessions`` command and the template tags;
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

The backend needs a daemon of protocol version 2 (WRITE). Where the
daemon's announced settings disagree with Django's (browser-close sessions
and ``SESSION_COOKIE_AGE``; the lifetime cap), :mod:`sessiond.django.agreement`
logs a warning.
"""
