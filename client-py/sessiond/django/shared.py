"""Sessions shared across your sites (django-shared-session, done safely).

The daemon lists the sites (``[transfer] sites``) and makes the tokens:
single-use, valid for a few seconds, at one destination only, and
encrypted (the session key is never in a page or a URL). A destination
never adopts a key it is handed: it gets a key of its own to the same
session, so logging out on any site ends them all.

Settings:

- ``SESSIOND_SHARED_SITES``: the hosts, as ``request.get_host()`` gives them
  (with ``:port`` when not the scheme's default), the same as the daemon's
  ``[transfer] sites``. ``SHARED_SESSION_SITES`` of django-shared-session.
- ``SESSIOND_SHARED_ALWAYS_REPLACE``: replace a destination session that
  already holds data (``False``: it is kept; a session of another user is
  always kept, whatever this says).

Two flows, each a template tag (``{% load sessiond_shared %}``) and views
(``path("shared-session/", include("sessiond.django.urls"))``):

- ``{% sessiond_shared_session_loader %}``, the seed's: one
  ``<script src="//B/shared-session/TOKEN.js" async>`` per other site; B's
  view redeems the token and sets its session cookie. It needs B's cookie to
  be settable from a third-party script response (``SESSION_COOKIE_SAMESITE
  = "None"``, ``SESSION_COOKIE_SECURE = True``, and a browser that allows
  third-party cookies, which Chromium, Firefox and Safari block by default).
- ``{% sessiond_shared_url "B" next="/" %}``, browser-bound, all top-level
  navigations (works with ``SameSite=Lax`` and with third-party cookies
  blocked): a link to B, which sets a state cookie and sends the browser to
  A with the state's hash; A issues a token bound to it and sends the
  browser back; B redeems the token with the state from its cookie. A token
  copied from the URL (history, logs) is useless to any other browser, and
  to this one once used.

``session_replaced`` is sent (``request``, ``src_domain``, ``dest_domain``,
``was_empty``, as the seed's) when a destination's session was replaced.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.dispatch import Signal
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from ..errors import ErrorCode, ServerError
from ..protocol import HostToken
from . import conf
from .backend import SessionStore, gone

#: Sent by a destination whose session was replaced by a transferred one.
#: Arguments: ``request``, ``src_domain`` (``None`` in the seed's flow: the
#: source is sealed in the token), ``dest_domain``, ``was_empty``.
session_replaced = Signal()

#: The bound flow's state cookie (``__Host-`` prefixed over HTTPS).
STATE_COOKIE = "sessiond_xfer"
STATE_MAX_AGE = 60


def sites() -> list[str]:
    return [str(s).lower() for s in getattr(settings, "SESSIOND_SHARED_SITES", ())]


def always_replace() -> bool:
    return bool(getattr(settings, "SESSIOND_SHARED_ALWAYS_REPLACE", False))


def this_site(request: HttpRequest) -> str | None:
    """The request's host if it is one of the shared sites."""
    host = request.get_host().lower()
    return host if host in sites() else None


def _store(request: HttpRequest) -> SessionStore:
    session = getattr(request, "session", None)
    if not isinstance(session, SessionStore):
        raise ImproperlyConfigured(
            "sessiond.django.shared needs SESSION_ENGINE = 'sessiond.django.backend' and SessionMiddleware"
        )
    return session


def _session_key(request: HttpRequest) -> str | None:
    """The key of the request's session, created now if it holds data but
    has not been saved yet; ``None`` for an empty session (nothing to share)."""
    session = _store(request)
    if session.session_key is None:
        if not session.keys():
            return None
        session.save()
    return session.session_key


def _url(host: str, path: str, query: dict[str, str] | None = None) -> str:
    # Scheme-relative, as the seed's: the other site is reached as this one is.
    return f"//{host}{path}" + (f"?{urlencode(query)}" if query else "")


def _private(response: HttpResponse) -> HttpResponse:
    # Nothing of a transfer goes to a third party's Referer.
    response["Referrer-Policy"] = "no-referrer"
    return response


def _refused(request: HttpRequest) -> HttpResponse:
    return _private(HttpResponse("transfer refused\n", status=403, content_type="text/plain"))


# Issuing (the source site).


def issue(request: HttpRequest, destinations: list[str] | None = None) -> list[HostToken]:
    """Tokens handing the request's session to ``destinations`` (default:
    every other shared site); none if this host is not a shared site, or the
    session is empty or has ended."""
    source = this_site(request)
    if source is None:
        return []
    others = [s for s in (sites() if destinations is None else destinations) if s != source]
    key = _session_key(request) if others else None
    if key is None:
        return []
    try:
        return conf.client().issue_transfer(key, source, others)
    except ServerError as e:
        if gone(e):
            return []
        raise


def loader_urls(request: HttpRequest) -> list[str]:
    """The seed's script URLs: ``//HOST/<prefix>/TOKEN.js``, one per other site."""
    return [_url(t.host, reverse("sessiond_shared:script", args=[t.token])) for t in issue(request)]


def transfer_url(request: HttpRequest, destination: str, next_url: str = "/") -> str:
    """A link from this site to ``destination`` that brings the session
    along (the bound flow); it starts at the destination and carries no
    token."""
    source = this_site(request)
    destination = destination.lower()
    if source is None or destination not in sites() or destination == source:
        raise ValueError(f"{destination!r} is not another of SESSIOND_SHARED_SITES, seen from {request.get_host()!r}")
    return _url(destination, reverse("sessiond_shared:start"), {"from": source, "next": next_url})


# Redeeming (the destination site).


def redeem(request: HttpRequest, token: str, *, state: bytes | None = None, source: str | None = None) -> bool:
    """Redeems ``token`` for this host and makes the request's session the
    one the daemon answers with (its own key to the shared session), so
    that SessionMiddleware sets the cookie. Returns whether it was replaced;
    raises :class:`~sessiond.ServerError` (``TOKEN_REJECTED``) if refused."""
    session = _store(request)
    host = request.get_host().lower()
    current = session.session_key
    replace = always_replace()
    # Without always_replace the daemon replaces only a session holding no data.
    was_empty = not replace or current is None or not session.keys()
    redeemed = conf.client().redeem_transfer(token, host, current_key=current, always_replace=replace, state=state)
    if not redeemed.replaced:
        return False
    session.adopt(redeemed.key)  # SessionMiddleware saves it (a touch) and sets its cookie
    session_replaced.send(
        sender=SessionStore, request=request, src_domain=source, dest_domain=host, was_empty=was_empty
    )
    return True


def _rejected(error: ServerError) -> bool:
    return error.code in (ErrorCode.TOKEN_REJECTED, ErrorCode.BAD_REQUEST)


# Views.


@never_cache
@require_GET
def script_view(request: HttpRequest, token: str) -> HttpResponse:
    """``<prefix>/<token>.js``: the seed's destination, an empty script."""
    try:
        redeem(request, token)
    except ServerError as e:
        if not _rejected(e):
            raise
        return _refused(request)
    return _private(HttpResponse("", content_type="text/javascript"))


def _state_cookie_name(request: HttpRequest) -> str:
    return "__Host-" + STATE_COOKIE if request.is_secure() else STATE_COOKIE


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return None


def _next_here(request: HttpRequest) -> str:
    """The ``next`` parameter if it is a URL on this host, else ``/``."""
    wanted = request.GET.get("next", "/")
    ok = url_has_allowed_host_and_scheme(wanted, {request.get_host()}, require_https=request.is_secure())
    return wanted if ok else "/"


@never_cache
@require_GET
def start_view(request: HttpRequest) -> HttpResponse:
    """Bound flow, step 1, at the destination: a state cookie, and off to
    the source with its hash."""
    here, source = this_site(request), request.GET.get("from", "").lower()
    if here is None or source not in sites() or source == here:
        return _refused(request)
    state = secrets.token_bytes(32)
    query = {"to": here, "h": hashlib.sha256(state).hexdigest(), "next": _next_here(request)}
    response = HttpResponseRedirect(_url(source, reverse("sessiond_shared:issue"), query))
    response.set_cookie(
        _state_cookie_name(request),
        f"{_b64(state)}.{source}",
        max_age=STATE_MAX_AGE,
        path="/",
        secure=request.is_secure(),
        httponly=True,
        samesite="Lax",  # sent back on the top-level navigation that ends the flow
    )
    return _private(response)


@never_cache
@require_GET
def issue_view(request: HttpRequest) -> HttpResponse:
    """Bound flow, step 2, at the source: a token bound to the destination
    browser's state, and back to the destination with it. Without a session
    here, back without one."""
    here, destination = this_site(request), request.GET.get("to", "").lower()
    digest = request.GET.get("h", "")
    if here is None or destination not in sites() or destination == here or len(digest) != 64:
        return _refused(request)
    try:
        state_hash = bytes.fromhex(digest)
    except ValueError:
        return _refused(request)
    query = {"next": request.GET.get("next", "/")}  # checked by the destination
    key = _session_key(request)
    if key is not None:
        try:
            tokens = conf.client().issue_transfer(key, here, [destination], state_hash=state_hash)
        except ServerError as e:
            if not gone(e):
                raise
        else:
            query["token"] = tokens[0].token
    return _private(HttpResponseRedirect(_url(destination, reverse("sessiond_shared:redeem"), query)))


@never_cache
@require_GET
def redeem_view(request: HttpRequest) -> HttpResponse:
    """Bound flow, step 3, at the destination: the token and this browser's
    state, then on to ``next``. The state cookie is used up either way."""
    name = _state_cookie_name(request)
    cookie = request.COOKIES.get(name, "")
    encoded, _, source = cookie.partition(".")
    state = _unb64(encoded) if encoded else None
    token = request.GET.get("token")
    response: HttpResponse
    if token is None:  # the source had no session to share
        response = HttpResponseRedirect(_next_here(request))
    elif state is None or len(state) != 32:
        response = _refused(request)
    else:
        try:
            redeem(request, token, state=state, source=source or None)
        except ServerError as e:
            if not _rejected(e):
                raise
            response = _refused(request)
        else:
            response = HttpResponseRedirect(_next_here(request))
    response.delete_cookie(name, path="/", samesite="Lax")
    return _private(response)


__all__ = [
    "issue",
    "loader_urls",
    "redeem",
    "redeem_view",
    "script_view",
    "session_replaced",
    "sites",
    "start_view",
    "issue_view",
    "transfer_url",
]
