"""Push checks: heartbeat pings and host reports, authenticated by the check's token; both are recorded as
results. The views look the token up (`push_check`) before they read the body."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from hadr_portal.adapters.probes import ProbeResult, evaluate_host

from .engine import check_record
from .models import Check, CheckResult
from .probing import HOST_THRESHOLDS


class UnknownToken(Exception):
    """No enabled push check has this token."""


# A ping's message is a check result's message: longer is refused, never cut.
MESSAGE_MAX_LENGTH = CheckResult._meta.get_field("message").max_length or 500


def push_check(*, token: str, kind: str) -> Check:
    """The enabled push check of this kind with this token; UnknownToken otherwise (an empty token included)."""
    if not token:
        raise UnknownToken
    try:
        return Check.objects.select_related("service").get(token=token, kind=kind, enabled=True)
    except Check.DoesNotExist:
        raise UnknownToken from None


def heartbeat_ping(*, check: Check, message: str = "") -> Check:
    """Record a ping: the check is up again at once (a late job that finally ran has recovered). Raises
    ValueError when the message is longer than MESSAGE_MAX_LENGTH or holds a NUL."""
    if len(message) > MESSAGE_MAX_LENGTH:
        raise ValueError(f"the message is {len(message)} characters long; at most {MESSAGE_MAX_LENGTH} are kept")
    if "\x00" in message:
        raise ValueError("the message contains a NUL character, which cannot be stored")
    now = timezone.now()
    with transaction.atomic():
        Check.objects.filter(pk=check.pk).update(last_ping_at=now)
        check.last_ping_at = now
        check_record(check=check, result=ProbeResult("up", message or "ping received"), at=now)
    return check


def host_report(*, check: Check, values: Mapping[str, Any]) -> Check:
    """Record a host's pushed CPU / memory / disks (at most HADR_PUSH_MAX_DISKS of them). Raises ValueError
    (naming the field or the limit) on bad values; then nothing is recorded."""
    limits = {k: float(check.config[k]) for k in HOST_THRESHOLDS if k in check.config}
    result = evaluate_host(values, max_disks=settings.PUSH_MAX_DISKS, **limits)
    now = timezone.now()
    with transaction.atomic():
        Check.objects.filter(pk=check.pk).update(last_ping_at=now)
        check.last_ping_at = now
        check_record(check=check, result=result, at=now)
    return check


def beat_ping() -> int:
    """Ping every heartbeat check whose config says `"source": "beat"` (the portal's own scheduler)."""
    checks = list(
        Check.objects.filter(kind=Check.Kind.HEARTBEAT, enabled=True, config__source="beat").select_related("service")
    )
    for check in checks:
        heartbeat_ping(check=check, message="beat is scheduling periodic tasks")
    return len(checks)
