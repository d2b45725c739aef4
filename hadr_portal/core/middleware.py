"""Every refused attempt is in the audit log, including those refused by a view's permission check; and what
every request and response must hold (no NUL in the input, Permissions-Policy, no-store for signed-in users)."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.cache import add_never_cache_headers, patch_vary_headers

from .audit import audit_record, refusal_recorded
from .models import AuditEntry
from .operations import client_address


class RefusalAuditMiddleware:
    """A PermissionDenied leaving a view becomes a *refused* audit entry (then Django answers 403) —
    unless the code that refused already wrote one for this request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = refusal_recorded.set(False)
        try:
            return self.get_response(request)
        finally:
            refusal_recorded.reset(token)

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        if isinstance(exception, PermissionDenied) and not refusal_recorded.get():
            match = request.resolver_match
            audit_record(
                actor=request.user,
                action=f"view.{match.view_name}" if match else "view",
                outcome=AuditEntry.Outcome.REFUSED,
                target=request.path,
                parameters={"method": request.method},
                address=client_address(request),
                detail=str(exception),
            )


NUL_REFUSAL = (
    "The request contains a NUL character (\\0, or %00 in a URL), which no field of the portal accepts. "
    "Remove it and send the request again."
)
_NUL_ENCODED = ("%00", "\x00")


def raw_body(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Mark a view that reads its own body (push and API endpoints): HardeningMiddleware does not parse it as a
    form, so such a view can check its token before a byte of the body is read."""
    view.reads_raw_body = True  # type: ignore[attr-defined]  # a mark on the function, read by process_view
    return view


def _has_nul(text: str) -> bool:
    return "\x00" in text


def _nul_refusal(request: HttpRequest) -> HttpResponse:
    if request.content_type == "application/json" or "application/json" in request.headers.get("Accept", ""):
        return JsonResponse({"error": NUL_REFUSAL}, status=400)
    return HttpResponse(NUL_REFUSAL + "\n", status=400, content_type="text/plain; charset=utf-8")


class HardeningMiddleware:
    """What every response of the portal promises, whatever the view:

    - a NUL character anywhere in the path, the query string or a form field is a 400 with a plain reason,
      before any view or query sees it (PostgreSQL cannot store NUL in text: it would be a 500);
    - `Permissions-Policy` turns off the browser features the portal never uses (settings.PERMISSIONS_POLICY);
    - a response to a signed-in user is never stored by a browser or proxy (`Cache-Control: no-store`,
      `Vary: Cookie`): the pages show the state of production to whoever may see it, and only to them.
      Static files never get this far (WhiteNoise answers them first), so they stay cacheable.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.permissions_policy = ", ".join(
            f"{feature}=({' '.join(allowed)})" for feature, allowed in settings.PERMISSIONS_POLICY.items()
        )

    def __call__(self, request: HttpRequest) -> HttpResponse:
        query = request.META.get("QUERY_STRING", "")
        if _has_nul(request.path) or any(marker in query for marker in _NUL_ENCODED):
            response = _nul_refusal(request)
        else:
            response = self.get_response(request)
        if self.permissions_policy:
            response.setdefault("Permissions-Policy", self.permissions_policy)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            add_never_cache_headers(response)
            patch_vary_headers(response, ["Cookie"])
        return response

    def process_view(
        self, request: HttpRequest, view: Callable[..., HttpResponse], args: object, kwargs: object
    ) -> HttpResponse | None:
        """Form fields (names, values and uploaded file names), read once the view is known: a view marked
        `raw_body` reads its own body, after its token check."""
        if request.method not in ("POST", "PUT", "PATCH") or getattr(view, "reads_raw_body", False):
            return None
        if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
            return None
        fields = request.POST
        names = [
            *fields.keys(),
            *request.FILES.keys(),
            *(upload.name or "" for _, uploads in request.FILES.lists() for upload in uploads),
        ]
        if any(_has_nul(text) for text in names) or any(
            _has_nul(value) for values in fields.lists() for value in values[1]
        ):
            return _nul_refusal(request)
        return None
