"""Sign-ins, sign-outs and failed sign-ins go to the audit log."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from .audit import audit_record
from .models import AuditEntry
from .operations import client_address


@receiver(user_logged_in)
def audit_sign_in(sender: Any, request: Any, user: Any, **_: Any) -> None:
    audit_record(
        actor=user,
        action="auth.sign_in",
        target=f"user:{user.get_username()}",
        outcome=AuditEntry.Outcome.SUCCESS,
        address=client_address(request),
    )


@receiver(user_logged_out)
def audit_sign_out(sender: Any, request: Any, user: Any, **_: Any) -> None:
    if user is not None:
        audit_record(
            actor=user,
            action="auth.sign_out",
            target=f"user:{user.get_username()}",
            outcome=AuditEntry.Outcome.SUCCESS,
            address=client_address(request),
        )


@receiver(user_login_failed)
def audit_failed_sign_in(sender: Any, credentials: dict[str, Any], request: Any = None, **_: Any) -> None:
    username = str(credentials.get("username", ""))[:150]
    audit_record(
        actor=None,
        action="auth.sign_in",
        target=f"user:{username}",
        outcome=AuditEntry.Outcome.REFUSED,
        address=client_address(request),
        detail="wrong username or password",
    )
