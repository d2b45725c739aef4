"""Two-factor where it applies: an enrolled account's session must have been verified by a code, and an account
two-factor is required for must enrol before anything else."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, resolve_url
from django.utils.functional import SimpleLazyObject
from django.utils.http import urlencode
from django_htmx.http import HttpResponseClientRedirect

from .selectors import two_factor_state

# Pages a signed-in account reaches before it is enrolled or verified (besides those needing no login at all:
# the login pages, /healthz, /metrics, the push endpoints). Static files are served before the middleware.
EXEMPT_URL_NAMES = {"logout", "login", "login-code"}
EXEMPT_NAMESPACES = {"accounts"}


class TwoFactorMiddleware:
    """Sets `request.two_factor` (a TwoFactorState) and sends an account where two-factor says it must go:
    an enrolled but unverified session to the code page, an account that must enrol to enrolment."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.two_factor = SimpleLazyObject(lambda: two_factor_state(request.user))  # type: ignore[attr-defined]
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], args: Any, kwargs: Any
    ) -> HttpResponse | None:
        if not request.user.is_authenticated or not getattr(view_func, "login_required", True):
            return None
        match = request.resolver_match
        if match is not None and (match.url_name in EXEMPT_URL_NAMES or match.namespace in EXEMPT_NAMESPACES):
            return None
        state = request.two_factor  # type: ignore[attr-defined]
        if state.enrolled and not state.verified:
            return _go(request, "accounts:verify")
        if state.required and not state.enrolled:
            return _go(request, "accounts:enrol")
        return None


def _go(request: HttpRequest, name: str) -> HttpResponse:
    url = resolve_url(name)
    if getattr(request, "htmx", False):  # a fragment is no place to come back to: the whole page goes
        return HttpResponseClientRedirect(url)
    if request.method == "GET":
        url += "?" + urlencode({"next": request.get_full_path()})
    return redirect(url)
