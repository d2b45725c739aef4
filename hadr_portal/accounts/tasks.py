from __future__ import annotations

from celery import shared_task
from django.conf import settings

from hadr_portal.adapters.notifiers import DeliveryFailed


@shared_task(
    name="hadr_portal.accounts.tasks.lockout_alert",
    autoretry_for=(DeliveryFailed,),
    retry_backoff=True,
    max_retries=settings.ALERT_MAX_ATTEMPTS - 1,
)
def lockout_alert_task(channel_id: int, address: str, failures: int, minutes: int) -> None:
    from .alerts import lockout_alert_send

    lockout_alert_send(channel_id=channel_id, address=address, failures=failures, minutes=minutes)
