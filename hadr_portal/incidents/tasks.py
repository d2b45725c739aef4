"""Celery entry points of the incidents app: take ids, call one service."""

from __future__ import annotations

from celery import shared_task

from hadr_portal.core.delivery import delivery_retry

from . import escalation


@shared_task(name="hadr_portal.incidents.tasks.notice_deliver", **delivery_retry())
def notice_deliver_task(notice_id: int) -> None:
    """Retried until notice_deliver marks the notice sent or undelivered."""
    escalation.notice_deliver(notice_id=notice_id)


@shared_task(name="hadr_portal.incidents.tasks.escalations_remind")
def escalations_remind() -> int:
    return len(escalation.escalations_remind())
