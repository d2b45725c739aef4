"""The home page. Thin: the cache composes the sections."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from hadr_portal.core.htmx import render_page

from .cache import buttons_allowed, dashboard_html


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    board = dashboard_html(buttons=buttons_allowed(request.user))
    return render_page(request, "dashboard/home.html", {"board": board}, partial="board")
