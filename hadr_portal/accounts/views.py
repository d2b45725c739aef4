"""The account's two-factor pages: status, enrolment, recovery codes, removal, and verifying a session."""

from __future__ import annotations

from base64 import b32encode
from urllib.parse import quote

import segno
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from hadr_portal.core.operations import client_address

from . import selectors, services
from .stepup import session_code_check, step_up_required, verification_record


@require_GET
def two_factor(request: HttpRequest) -> HttpResponse:
    user = request.user
    device = selectors.authenticator(user)  # type: ignore[arg-type]
    context = {
        "device": device,
        "codes_left": selectors.recovery_codes_left(user) if device else 0,  # type: ignore[arg-type]
        "required": selectors.two_factor_required(user),
    }
    return render(request, "accounts/two_factor.html", context)


def _qr_svg(url: str) -> str:
    """The QR code of the app's configuration URL, as inline SVG (no image request, no inline style)."""
    return segno.make(url, error="m").svg_inline(scale=5, border=2, dark="#000", light="#fff", title="QR code")


def _secret_groups(device: object) -> str:
    secret = b32encode(device.bin_key).decode()  # type: ignore[attr-defined]
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


@require_http_methods(["GET", "POST"])
def enrol(request: HttpRequest) -> HttpResponse:
    """Scan the QR code (or type the secret), confirm with the first code; then the recovery codes, once."""
    user = request.user
    if selectors.is_enrolled(user):  # type: ignore[arg-type]
        return redirect("accounts:two-factor")
    device = services.authenticator_enrol_start(user=user)  # type: ignore[arg-type]
    error = ""
    if request.method == "POST":
        check, codes = services.authenticator_confirm(
            user=user,  # type: ignore[arg-type]
            device=device,
            code=request.POST.get("code", ""),
            address=client_address(request),
        )
        if check.ok:
            assert check.device is not None
            verification_record(request, check.device)
            return _codes_page(request, codes, "Two-factor sign-in is on.")
        error = check.error
    context = {
        "error": error,
        "qr_svg": _qr_svg(device.config_url),
        "secret": _secret_groups(device),
        "required": selectors.two_factor_required(user),
    }
    return render(request, "accounts/enrol.html", context, status=400 if error else 200)


def _codes_page(request: HttpRequest, codes: list[str], headline: str) -> HttpResponse:
    """The recovery codes, shown this once; the download is the same text, in the page itself."""
    text = "HADR Portal recovery codes for {}. Each works once.\n\n{}\n".format(
        request.user.get_username(), "\n".join(codes)
    )
    context = {"codes": codes, "headline": headline, "download": "data:text/plain;charset=utf-8," + quote(text)}
    return render(request, "accounts/recovery_codes.html", context)


@require_POST
@step_up_required("Make new recovery codes")
def recovery_codes(request: HttpRequest) -> HttpResponse:
    if not selectors.is_enrolled(request.user):  # type: ignore[arg-type]
        return redirect("accounts:enrol")
    codes = services.recovery_codes_regenerate(user=request.user, address=client_address(request))  # type: ignore[arg-type]
    return _codes_page(request, codes, "New recovery codes: the old ones no longer work.")


@require_POST
def remove(request: HttpRequest) -> HttpResponse:
    """Turn two-factor off: needs a current code (or a recovery code), so a session left open cannot do it."""
    check = services.two_factor_remove(
        user=request.user,  # type: ignore[arg-type]
        code=request.POST.get("code", ""),
        address=client_address(request),
    )
    if not check.ok:
        messages.error(request, f"Two-factor is still on. {check.error}")
        return redirect("accounts:two-factor")
    messages.success(request, "Two-factor sign-in is off: the authenticator app and the recovery codes no longer work.")
    if selectors.two_factor_required(request.user):
        return redirect("accounts:enrol")
    return redirect("accounts:two-factor")


@require_http_methods(["GET", "POST"])
def verify(request: HttpRequest) -> HttpResponse:
    """Enter a code for this session (a session opened without one, or to verify ahead of an action)."""
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(next_url, {request.get_host()}, require_https=request.is_secure()):
        next_url = ""
    if not selectors.is_enrolled(request.user):  # type: ignore[arg-type]
        return redirect("accounts:enrol")
    error = ""
    if request.method == "POST":
        error = session_code_check(
            request,
            request.POST.get("code", ""),
            action="auth.verify",
            target=f"user:{request.user.get_username()}",
            accepted="session verified with a code",
        )
        if not error:
            return redirect(next_url or "dashboard")
    context = {"error": error, "next": next_url}
    return render(request, "accounts/verify.html", context, status=400 if error else 200)
