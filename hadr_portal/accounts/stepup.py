"""Step-up: a destructive action asks for a fresh code when the last one is older than HADR_STEP_UP_MINUTES.

It applies to accounts with an authenticator app (and to every account two-factor is required for); an
account without one, where two-factor is not required, is never asked — there is nothing to ask for.

A view calls `step_up_challenge(request, what=...)` right before it acts (or is decorated with
`step_up_required(...)`): None means go ahead. Otherwise the answer is a form asking for a code that posts the
same fields again to the same URL, so that entering the code both verifies and carries out the action, with
nothing to type twice. For an htmx request (a dashboard button) the form replaces the page's main content.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.shortcuts import redirect, render, resolve_url
from django_htmx.http import HttpResponseClientRedirect
from django_otp import login as otp_login

from hadr_portal.core.audit import audit_record
from hadr_portal.core.models import AuditEntry
from hadr_portal.core.operations import client_address

from .selectors import TwoFactorState, two_factor_state
from .services import code_verify

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse
    from django_otp.models import Device

VERIFIED_AT = "accounts.verified_at"  # session key: when the last code was accepted (Unix time)
CODE_FIELD = "step_up_code"
REPLAY_SKIPPED = {"csrfmiddlewaretoken", CODE_FIELD}


def verification_record(request: HttpRequest, device: Device) -> None:
    """A code was just accepted: the session is verified by `device`, as of now."""
    otp_login(request, device)
    request.session[VERIFIED_AT] = time.time()


def session_code_check(
    request: HttpRequest,
    code: str,
    *,
    action: str,
    target: str,
    accepted: str,
    parameters: dict[str, str] | None = None,
) -> str:
    """Check a code typed for this session, audit the attempt, and on success verify the session as of now.
    Returns "" when accepted, else the reason for the person who typed it."""
    # The ignore: request.user's type includes a visitor, but LoginRequiredMiddleware lets only accounts here.
    check = code_verify(user=request.user, code=code)  # type: ignore[arg-type]
    audit_record(
        actor=request.user,
        action=action,
        target=target,
        outcome=AuditEntry.Outcome.SUCCESS if check.ok else AuditEntry.Outcome.REFUSED,
        parameters=parameters,
        address=client_address(request),
        detail=accepted if check.ok else check.error,
    )
    if not check.ok:
        return check.error
    assert check.device is not None
    verification_record(request, check.device)
    return ""


def verification_age(request: HttpRequest) -> float | None:
    """Seconds since the last accepted code in this session; None if the session was never verified."""
    verified_at = request.session.get(VERIFIED_AT)
    user_verified = bool(getattr(request.user, "is_verified", lambda: False)())
    if not user_verified or not isinstance(verified_at, (int, float)):
        return None
    return max(0.0, time.time() - verified_at)


def step_up_needed(request: HttpRequest) -> bool:
    """Whether this request must bring a fresh code before a destructive action."""
    user = request.user
    if not user.is_authenticated:
        return False
    age = verification_age(request)
    if age is not None and age < settings.STEP_UP_MINUTES * 60:
        return False
    state = _two_factor(request)
    return age is not None or state.required or state.enrolled


def _two_factor(request: HttpRequest) -> TwoFactorState:
    """The account's two-factor state, as TwoFactorMiddleware worked it out for this request."""
    state = getattr(request, "two_factor", None)
    return state if state is not None else two_factor_state(request.user)


def step_up_challenge(request: HttpRequest, *, what: str) -> HttpResponse | None:
    """None when the action may go ahead now; else the answer asking for a code (or sending to enrolment).

    A code posted in `step_up_code` is checked here: accepted, the session is verified afresh (audited) and the
    action goes ahead in the same request; wrong, the refusal is audited and the form asks again."""
    if not step_up_needed(request):
        return None
    if not _two_factor(request).enrolled:  # required but not enrolled (the middleware also sends there)
        url = resolve_url("accounts:enrol")
        return HttpResponseClientRedirect(url) if getattr(request, "htmx", None) else redirect(url)
    error = ""
    if CODE_FIELD in request.POST:
        error = session_code_check(
            request,
            request.POST[CODE_FIELD],
            action="auth.step_up",
            target=request.path,
            accepted="fresh code accepted",
            parameters={"for": what},
        )
        if not error:
            return None
    return step_up_form(request, what=what, error=error)


def step_up_form(request: HttpRequest, *, what: str, error: str = "") -> HttpResponse:
    """The code form that re-posts this request's fields to its own URL."""
    fields = [(name, value) for name, values in request.POST.lists() if name not in REPLAY_SKIPPED for value in values]
    context = {
        "what": what,
        "error": error,
        "action": request.get_full_path(),
        "fields": fields,
        "minutes": settings.STEP_UP_MINUTES,
        "code_field": CODE_FIELD,
    }
    htmx = getattr(request, "htmx", None)
    if htmx and not htmx.boosted:
        # htmx swaps only 2xx answers: the form takes the place of the page's main content.
        response = render(request, "accounts/step_up.html#form", context)
        response["HX-Retarget"] = "main"
        response["HX-Reswap"] = "innerHTML"
        return response
    return render(request, "accounts/step_up.html", context, status=403 if error else 200)


def step_up_required(
    what: str | Callable[..., str],
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """View decorator: POSTs need a fresh code (see `step_up_challenge`). `what` may be a function of the view's
    arguments, for a description naming the target."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method == "POST":
                label = what(*args, **kwargs) if callable(what) else what
                if challenge := step_up_challenge(request, what=label):
                    return challenge
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
