"""Push checks: heartbeat pings and host reports arrive by URL; both are recorded as results."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.utils import timezone

from hadr_portal.adapters.probes import ProbeResult, evaluate_host

from .engine import check_record
from .models import Check
from .probing import HOST_THRESHOLDS


class UnknownToken(Exception):
    """No enabled push check has this token."""


def _check_for(token: str, kind: str) -> Check:
    try:
        return Check.objects.select_related("service").get(token=token, kind=kind, enabled=True)
    except Check.DoesNotExist:
        raise UnknownToken from None


def heartbeat_ping(*, token: str, message: str = "") -> Check:
    """Record a ping: the check is up again at once (a late job that finally ran has recovered)."""
    check = _check_for(token, Check.Kind.HEARTBEAT)
    now = timezone.now()
    with transaction.atomic():
        Check.objects.filter(pk=check.pk).update(last_ping_at=now)
        check.last_ping_at = now
        check_record(check=check, result=ProbeResult("up", message[:200] or "ping received"), at=now)
    return check


def host_report(*, token: str, values: Mapping[str, Any]) -> Check:
    """Record a host's pushed CPU / memory / disk. Raises ValueError (naming the field) on bad values."""
    check = _check_for(token, Check.Kind.HOST_PUSH)
    limits = {k: float(check.config[k]) for k in HOST_THRESHOLDS if k in check.config}
    result = evaluate_host(values, **limits)
    now = timezone.now()
    with transaction.atomic():
        Check.objects.filter(pk=check.pk).update(last_ping_at=now)
        check.last_ping_at = now
        check_record(check=check, result=result, at=now)
    return check


def beat_ping() -> int:
    """Ping every heartbeat check whose config says `"source": "beat"` (the portal's own scheduler)."""
    tokens = list(
        Check.objects.filter(kind=Check.Kind.HEARTBEAT, enabled=True, config__source="beat").values_list(
            "token", flat=True
        )
    )
    for token in tokens:
        heartbeat_ping(token=token, message="beat is scheduling periodic tasks")
    return len(tokens)
