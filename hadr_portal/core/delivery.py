"""Delivering a message (an alert, an escalation notice, a security alert): one retry policy for all of them.

A delivery is a Celery task that sends one message on one channel. When the channel fails (`DeliveryFailed`),
the task is retried after 2, 4, 8 ... seconds, never more than five minutes apart, so a webhook that is down
for a minute still gets the message and a dead one is not hammered. A delivery with a record (an
`AlertDelivery`, an `EscalationNotice`) counts its attempts there and ends *undelivered* when
HADR_ALERT_MAX_ATTEMPTS run out; one without a record stops after that many attempts.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from django.conf import settings
from django.utils import timezone

from hadr_portal.adapters.notifiers import DeliveryFailed

from .redaction import redact

BACKOFF_FACTOR_SECONDS = 2
BACKOFF_MAX_SECONDS = 300


def delivery_retry(*, attempts: int | None = None) -> dict[str, Any]:
    """The options of a delivery task (`@shared_task(name=..., **delivery_retry())`): retried on
    DeliveryFailed with the backoff above. `attempts`: how many tries in all; None (a delivery with a record):
    as many as it takes until `delivery_attempt` marks the record undelivered."""
    return {
        "autoretry_for": (DeliveryFailed,),
        "retry_backoff": BACKOFF_FACTOR_SECONDS,
        "retry_backoff_max": BACKOFF_MAX_SECONDS,
        "retry_jitter": False,
        "max_retries": None if attempts is None else attempts - 1,
    }


class DeliveryRecord(Protocol):
    """What `delivery_attempt` needs of a model that records a delivery and its attempts."""

    status: str
    attempts: int
    last_error: str
    sent_at: datetime | None

    def save(self, *, update_fields: list[str]) -> None: ...


def delivery_attempt(record: DeliveryRecord, send: Callable[[], None], *, sent: str, failed: str) -> None:
    """One attempt on a pending delivery record, saved with its outcome: status `sent`, or the error and, once
    HADR_ALERT_MAX_ATTEMPTS have been made, status `failed` (each model names its own statuses).

    DeliveryFailed propagates while attempts remain, so that the task retries; after the last one this returns."""
    record.attempts += 1
    try:
        send()
    except DeliveryFailed as exc:
        record.last_error = redact(str(exc))[:500]
        if record.attempts >= settings.ALERT_MAX_ATTEMPTS:
            record.status = failed
        record.save(update_fields=["attempts", "last_error", "status"])
        if record.status == failed:
            return
        raise
    record.status, record.sent_at, record.last_error = sent, timezone.now(), ""
    record.save(update_fields=["attempts", "status", "sent_at", "last_error"])
