"""Sign-in in two steps: the password (throttled by django-axes), then — for an account with an authenticator
app — a code. Between the two the session only remembers who passed the first step, for a few minutes; the
account is signed in (and the session key changed) only once the code is accepted."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import login as auth_login
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import LoginView
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods
from django_otp.plugins.otp_static.models import StaticDevice

from hadr_portal.core.operations import client_address

from .selectors import is_enrolled, recovery_codes_left
from .services import account_audit, code_verify
from .stepup import verification_record

if TYPE_CHECKING:
    from django.contrib.auth.models import User

PENDING = "accounts.pending_sign_in"  # session key: {"user", "backend", "at", "next"} after a correct password
PENDING_SECONDS = 300


class SignInView(LoginView):
    """Django's login view, but an enrolled account is asked for a code before it is signed in."""

    def form_valid(self, form: Any) -> HttpResponse:
        user = form.get_user()
        if not is_enrolled(user):
            return super().form_valid(form)
        self.request.session[PENDING] = {
            "user": user.pk,
            "backend": user.backend,
            "at": time.time(),
            "next": self.get_success_url(),
        }
        return redirect("login-code")


def _pending_user(request: HttpRequest) -> tuple[User, dict[str, Any]] | None:
    pending = request.session.get(PENDING)
    if not isinstance(pending, dict) or time.time() - float(pending.get("at", 0)) > PENDING_SECONDS:
        request.session.pop(PENDING, None)
        return None
    user_pk = pending.get("user")
    user = get_user_model().objects.filter(pk=user_pk, is_active=True).first() if isinstance(user_pk, int) else None
    return (user, pending) if user is not None else None


@login_not_required
@require_http_methods(["GET", "POST"])
def sign_in_code(request: HttpRequest) -> HttpResponse:
    """The second step: a code from the authenticator app, or a recovery code."""
    found = _pending_user(request)
    if found is None:
        messages.info(request, "Sign in with your username and password first (the code is asked for afterwards).")
        return redirect("login")
    user, pending = found
    error = ""
    if request.method == "POST":
        check = code_verify(user=user, code=request.POST.get("code", ""))
        if check.ok:
            assert check.device is not None
            del request.session[PENDING]
            auth_login(request, user, backend=pending["backend"])  # audited as auth.sign_in by core.signals
            verification_record(request, check.device)
            if isinstance(check.device, StaticDevice):
                _recovery_code_used(request, user)
            return redirect(pending["next"])
        error = check.error
        account_audit(
            user,
            "auth.sign_in.code",
            refused=True,
            address=client_address(request),
            detail=f"password right, code refused: {error}",
        )
    status = 400 if request.method == "POST" else 200
    return render(request, "accounts/sign_in_code.html", {"error": error}, status=status)


def _recovery_code_used(request: HttpRequest, user: User) -> None:
    left = recovery_codes_left(user)
    account_audit(
        user,
        "auth.recovery_code",
        refused=False,
        address=client_address(request),
        detail=f"signed in with a recovery code; {left} left",
    )
    messages.warning(
        request,
        f"You signed in with a recovery code; {left} left. Each works once: make new ones on the Two-factor page.",
    )
