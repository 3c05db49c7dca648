"""``{% load sessiond_shared %}``: the template tags of :mod:`sessiond.django.shared`.

Both need the request in the context
(``django.template.context_processors.request``).
"""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.html import format_html_join

from .. import shared

register = template.Library()


def _request(context: Any) -> Any:
    request = context.get("request")
    if request is None:
        raise template.TemplateSyntaxError(
            "sessiond_shared tags need the request: add django.template.context_processors.request"
        )
    return request


@register.simple_tag(takes_context=True)
def sessiond_shared_session_loader(context: Any) -> str:
    """django-shared-session's ``{% shared_session_loader %}``: one
    ``<script src="//HOST/.../TOKEN.js" async>`` per other shared site,
    nothing off the shared sites or for an empty session."""
    urls = shared.loader_urls(_request(context))
    return format_html_join("", '<script src="{}" async></script>', ((u,) for u in urls))


@register.simple_tag(takes_context=True)
def sessiond_shared_url(context: Any, destination: str, next: str = "/") -> str:
    """The URL of a link to ``destination`` (another shared site) that takes
    the session along, browser-bound; ``next`` is the path to land on there.
    Empty off the shared sites."""
    request = _request(context)
    if shared.this_site(request) is None:
        return ""
    return shared.transfer_url(request, destination, next)


@register.simple_tag(takes_context=True)
def sessiond_shared_links(context: Any, next: str = "/") -> str:
    """One ``<a>`` per other shared site, each taking the session along."""
    request = _request(context)
    here = shared.this_site(request)
    if here is None:
        return ""
    others = [s for s in shared.sites() if s != here]
    return format_html_join(
        " ",
        '<a class="sessiond-shared" href="{}">{}</a>',
        ((shared.transfer_url(request, s, next), s) for s in others),
    )
