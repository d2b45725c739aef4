"""One template for a page and its fragment: htmx requests get only the named partial."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers
from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    """The request a view gets behind django-htmx's middleware, which sets `request.htmx`: annotate a view's
    request with it when the view reads `request.htmx`."""

    htmx: HtmxDetails


def render_page(
    request: HttpRequest, template: str, context: dict[str, Any], *, partial: str | None = None, status: int = 200
) -> HttpResponse:
    """Render `template`, or just `template#partial` when htmx asked for it (and it is not boosted)."""
    htmx = getattr(request, "htmx", None)
    name = f"{template}#{partial}" if partial and htmx and not htmx.boosted else template
    response = render(request, name, context, status=status)
    patch_vary_headers(response, ["HX-Request"])
    return response
