"""Writing the audit log. Every state change in the portal goes through `audit_record()`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from .models import AuditEntry, Operation
from .permissions import user_roles

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

logger = logging.getLogger(__name__)

# Set when a refusal was written during the current request, so the refusal middleware does not write
# a second entry for the same attempt (core/middleware.py).
refusal_recorded: ContextVar[bool] = ContextVar("refusal_recorded", default=False)

SECRET_MARKERS = ("password", "secret", "token", "key", "credential", "dsn")
REDACTED = "[redacted]"


def scrub(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the parameters with anything that looks like a secret replaced."""
    clean: dict[str, Any] = {}
    for name, value in parameters.items():
        if any(marker in name.lower() for marker in SECRET_MARKERS):
            clean[name] = REDACTED
        elif isinstance(value, Mapping):
            clean[name] = scrub(value)
        else:
            clean[name] = value
    return clean


def audit_record(
    *,
    actor: AbstractBaseUser | AnonymousUser | None,
    action: str,
    outcome: str,
    target: str = "",
    parameters: Mapping[str, Any] | None = None,
    address: str | None = None,
    detail: str = "",
    operation: Operation | None = None,
) -> AuditEntry:
    """Append one entry. `actor=None` means the portal itself (schedules, the reaper)."""
    if outcome == AuditEntry.Outcome.REFUSED:
        refusal_recorded.set(True)
    authenticated = actor is not None and actor.is_authenticated
    entry = AuditEntry.objects.create(
        actor=actor if authenticated else None,
        actor_name=actor.get_username() if authenticated else "system",  # type: ignore[union-attr]
        actor_roles=(["superuser"] if getattr(actor, "is_superuser", False) else [])
        + (user_roles(actor) if authenticated else []),  # type: ignore[arg-type]
        address=address or None,
        action=action,
        target=target,
        parameters=scrub(parameters or {}),
        outcome=outcome,
        detail=detail[:4000],
        operation=operation,
    )
    logger.info(
        "audit",
        extra={
            "audit_id": entry.pk,
            "actor": entry.actor_name,
            "action": action,
            "target": target,
            "outcome": outcome,
            "operation_id": operation.pk if operation else None,
        },
    )
    return entry
