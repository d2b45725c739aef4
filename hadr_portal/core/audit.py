"""Writing the audit log. Every state change in the portal goes through `audit_record()`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from .models import AuditEntry, Operation
from .permissions import user_roles
from .redaction import REDACTED, redact, redact_mapping

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

logger = logging.getLogger(__name__)

# Set when a refusal was written during the current request, so the refusal middleware does not write
# a second entry for the same attempt (core/middleware.py).
refusal_recorded: ContextVar[bool] = ContextVar("refusal_recorded", default=False)

__all__ = ["REDACTED", "audit_record", "refusal_recorded"]


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
    """Append one entry. `actor=None` means the portal itself (schedules, the reaper).

    Nothing secret is written: the parameters go through `redact_mapping` (a value under a secret's name, such
    as `password` or `api_token`, is hidden whole; credentials inside any string are cut out), and the target
    and detail through `redact`."""
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
        target=redact(target),
        parameters=redact_mapping(dict(parameters or {})),
        outcome=outcome,
        detail=redact(detail)[:4000],
        operation=operation,
    )
    logger.info(
        "audit",
        extra={
            "audit_id": entry.pk,
            "actor": entry.actor_name,
            "action": action,
            "target": entry.target,
            "outcome": outcome,
            "operation_id": operation.pk if operation else None,
        },
    )
    return entry
