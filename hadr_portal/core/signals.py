"""The signals core defines for the apps; and sign-ins, sign-outs and failed sign-ins go to the audit log."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import Signal, receiver

from .audit import audit_record
from .models import AuditEntry
from .operations import client_address
from .selectors import ATTEMPTED_USERNAME

security_alert = Signal()
"""Something the team must hear about at once that is no service's state (a sign-in lockout), sent with
`subject`, `text` and `payload` (the webhook's body, JSON). The app that owns the alert channels connects the
receiver that delivers it on each of them, once the sender's transaction commits: the sender, lower in the
layers, needs to know nothing of channels."""


def _audit_sign_in(action: str, username: str, outcome: str, request: Any, actor: Any = None, detail: str = "") -> None:
    audit_record(
        actor=actor,
        action=action,
        target=f"user:{username}",
        outcome=outcome,
        address=client_address(request),
        detail=detail,
    )


@receiver(user_logged_in)
def audit_sign_in(sender: Any, request: Any, user: Any, **_: Any) -> None:
    _audit_sign_in("auth.sign_in", user.get_username(), AuditEntry.Outcome.SUCCESS, request, actor=user)


@receiver(user_logged_out)
def audit_sign_out(sender: Any, request: Any, user: Any, **_: Any) -> None:
    if user is not None:
        _audit_sign_in("auth.sign_out", user.get_username(), AuditEntry.Outcome.SUCCESS, request, actor=user)


@receiver(user_login_failed)
def audit_failed_sign_in(sender: Any, credentials: dict[str, Any], request: Any = None, **_: Any) -> None:
    """The typed name is kept in `attempted_username`, which only administrators see (core.selectors): it may be a
    password typed in the wrong field, or tell an attacker which accounts exist. A lockout (django-axes) refuses
    without checking the password: it marks the request locked before any failure is counted."""
    locked = getattr(request, "axes_locked_out", False) and getattr(request, "axes_failures_since_start", 0) is None
    audit_record(
        actor=None,
        action="auth.sign_in",
        target="sign-in",
        parameters={ATTEMPTED_USERNAME: str(credentials.get("username", ""))[:150]},
        outcome=AuditEntry.Outcome.REFUSED,
        address=client_address(request),
        detail="account locked: too many failed sign-ins from this address" if locked else "wrong username or password",
    )
