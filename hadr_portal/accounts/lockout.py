"""What a sign-in lockout (django-axes) does: the page the locked-out person sees, an audit entry, an alert.

The attempted user name is kept only where administrators look (the audit entry's `attempted_username`, shown to
administrators only; axes' access attempts in the admin): it may be a password typed in the wrong field, or tell
an attacker which accounts exist. Alerts, logs and the Errors page carry the address, never the name.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from axes.helpers import get_cool_off
from axes.signals import user_locked_out
from django.conf import settings
from django.core.cache import cache
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from hadr_portal.core.audit import audit_record
from hadr_portal.core.models import AuditEntry
from hadr_portal.core.selectors import ATTEMPTED_USERNAME

from .alerts import lockout_alerts_queue

logger = logging.getLogger(__name__)

ALERT_PAUSE_SECONDS = 60  # at most one lockout alert a minute, and one per address per lockout period


def lockout_minutes(request: HttpRequest | None = None) -> int:
    cool_off = get_cool_off(request)
    return max(1, math.ceil(cool_off.total_seconds() / 60)) if cool_off else 0


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: Any = None
) -> HttpResponse:
    """The locked-out sign-in's answer: a page saying for how long, and what to do (HTTP 429)."""
    context = {"minutes": lockout_minutes(request), "failure_limit": settings.AXES_FAILURE_LIMIT}
    return render(request, "accounts/locked_out.html", context, status=settings.AXES_HTTP_RESPONSE_CODE)


@receiver(user_locked_out)
def lockout_recorded(sender: Any, request: HttpRequest, username: str | None, ip_address: str | None, **_: Any) -> None:
    """Audit a new lockout and alert on it. axes also signals each attempt refused while locked (those are
    audited as refused sign-ins by core.signals): a new lockout is the one that counted its failures."""
    failures = getattr(request, "axes_failures_since_start", None)
    if failures is None:
        return
    minutes = lockout_minutes(request)
    audit_record(
        actor=None,
        action="auth.lockout",
        target="sign-in",
        parameters={ATTEMPTED_USERNAME: (username or "")[:150]},
        outcome=AuditEntry.Outcome.REFUSED,
        address=ip_address,
        detail=f"locked for {minutes} min on this address after {failures} failed sign-ins",
    )
    logger.error(
        "Sign-in locked out after %s failed attempts from %s, for %s min (the account is in the audit log, for "
        "administrators)",
        failures,
        ip_address or "an unknown address",
        minutes,
    )
    if _alert_due(ip_address, minutes):
        lockout_alerts_queue(address=ip_address or "", failures=failures, minutes=minutes)


def _alert_due(address: str | None, minutes: int) -> bool:
    """One alert per address per lockout period, and at most one a minute in all: a password-guessing run across
    many accounts or addresses must not bury the channels (the audit log keeps every lockout)."""
    try:
        # the overall pause first: a lockout held back by it must not also use up its address's one alert
        return bool(
            cache.add("accounts:lockout-alert", True, timeout=ALERT_PAUSE_SECONDS)
            and cache.add(f"accounts:lockout-alert:{address}", True, timeout=max(60, minutes * 60))
        )
    except Exception:  # the cache is down: alert anyway, a lockout matters more than a duplicate
        logger.warning("lockout alert: cache unavailable, alerting without the rate limit", exc_info=True)
        return True
