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
    from .permissions import Actor

logger = logging.getLogger(__name__)

# Set when a refusal was written during the current request, so the refusal middleware does not write
# a second entry for the same attempt (core/middleware.py).
refusal_recorded: ContextVar[bool] = ContextVar("refusal_recorded", default=False)

__all__ = ["REDACTED", "audit_record", "refusal_recorded"]


def audit_record(
    *,
    actor: Actor | None,
    action: str,
    outcome: str,
    target: str = "",
    parameters: Mapping[str, Any] | None = None,
    address: str | None = None,
    detail: str = "",
    operation: Operation | None = None,
    system_actor: str = "system",
) -> AuditEntry:
    """Append one entry. `actor=None` means the portal itself (schedules, the reaper), named `system_actor`:
    "system", or the machine entry point that asked (e.g. "api" for a deploy pipeline's token).

    Nothing secret is written: the parameters go through `redact_mapping` (a value under a secret's name, such
    as `password` or `api_token`, is hidden whole; credentials inside any string are cut out), and the target
    and detail through `redact`."""
    if outcome == AuditEntry.Outcome.REFUSED:
        refusal_recorded.set(True)
    user = actor if actor is not None and actor.is_authenticated else None
    entry = AuditEntry.objects.create(
        actor=user,
        actor_name=user.get_username() if user is not None else system_actor,
        actor_roles=(["superuser"] if user is not None and user.is_superuser else [])
        + (user_roles(user) if user is not None else []),
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
