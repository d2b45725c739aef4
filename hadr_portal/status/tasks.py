"""Celery entry points of the status app: take ids, call one service."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings

from hadr_portal.core.delivery import delivery_retry

from . import alerts, engine, history, push


@shared_task(name="hadr_portal.status.tasks.checks_tick")
def checks_tick() -> int:
    """Claim the due checks and run them here, concurrently (the `checks` queue)."""
    ids = engine.checks_claim_due()
    if ids:
        engine.checks_run(ids)
    return len(ids)


@shared_task(name="hadr_portal.status.tasks.results_rollup")
def results_rollup() -> None:
    history.rollups_refresh()
    history.results_prune()


@shared_task(name="hadr_portal.status.tasks.beat_heartbeat")
def beat_heartbeat() -> int:
    """Pings the heartbeat checks marked `{"source": "beat"}`: proof that beat and a worker run."""
    return push.beat_ping()


@shared_task(name="hadr_portal.status.tasks.alert_deliver", **delivery_retry())
def alert_deliver_task(delivery_id: int) -> None:
    """Retried until alert_deliver marks the delivery sent or undelivered."""
    alerts.alert_deliver(delivery_id=delivery_id)


@shared_task(
    name="hadr_portal.status.tasks.security_alert_deliver", **delivery_retry(attempts=settings.ALERT_MAX_ATTEMPTS)
)
def security_alert_deliver_task(channel_id: int, subject: str, text: str, payload: dict[str, Any]) -> None:
    alerts.security_alert_deliver(channel_id=channel_id, subject=subject, text=text, payload=payload)


@shared_task(name="hadr_portal.status.tasks.restart_drills")
def restart_drills() -> int:
    from .restart import restart_drills_due

    return len(restart_drills_due())
