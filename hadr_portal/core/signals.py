"""Sign-ins, sign-outs and failed sign-ins go to the audit log."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from .audit import audit_record
from .models import AuditEntry
from .operations import client_address


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
    username = str(credentials.get("username", ""))[:150]
    _audit_sign_in("auth.sign_in", username, AuditEntry.Outcome.REFUSED, request, detail="wrong username or password")
