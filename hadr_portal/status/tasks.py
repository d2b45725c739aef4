"""Celery entry points of the status app: take ids, call one service."""

from __future__ import annotations

from celery import shared_task

from hadr_portal.adapters.notifiers import DeliveryFailed

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


@shared_task(name="hadr_portal.status.tasks.alert_deliver", bind=True, max_retries=None)
def alert_deliver_task(self, delivery_id: int) -> None:  # type: ignore[no-untyped-def]
    try:
        alerts.alert_deliver(delivery_id=delivery_id)
    except DeliveryFailed as exc:
        # 2, 4, 8, 16 ... seconds; alert_deliver marks the delivery undelivered when attempts run out.
        raise self.retry(countdown=min(300, 2 ** (self.request.retries + 1)), exc=exc) from None
