"""Celery entry points of the incidents app: take ids, call one service."""

from __future__ import annotations

from celery import shared_task

from hadr_portal.adapters.notifiers import DeliveryFailed

from . import escalation


@shared_task(name="hadr_portal.incidents.tasks.notice_deliver", bind=True, max_retries=None)
def notice_deliver_task(self, notice_id: int) -> None:  # type: ignore[no-untyped-def]
    try:
        escalation.notice_deliver(notice_id=notice_id)
    except DeliveryFailed as exc:
        # as alerts: 2, 4, 8 ... seconds; notice_deliver marks it undelivered when attempts run out
        raise self.retry(countdown=min(300, 2 ** (self.request.retries + 1)), exc=exc) from None


@shared_task(name="hadr_portal.incidents.tasks.escalations_remind")
def escalations_remind() -> int:
    return len(escalation.escalations_remind())
