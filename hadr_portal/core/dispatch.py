"""Queueing work for the Celery workers, by task name, through a transactional outbox.

A service never imports a `tasks` module: the tasks import the services, so the reverse arrow would make a
circle. It names the task instead (`"hadr_portal.status.tasks.alert_deliver"`), the name the task is
registered under, and the worker that runs that queue finds it.

`task_send_on_commit` writes an `OutboxMessage` in the caller's transaction and sends it right after the commit,
waiting for the broker at most HADR_BROKER_TIMEOUT seconds (no retry in the request). A broker that is down or hung
costs the request that long, never more; the message stays pending and `outbox_drain` (beat, every few seconds,
and each worker as it starts) sends it when the broker answers again. Nothing is lost; a message whose send timed
out may still have reached a broker that was only slow, so a task can arrive twice: the consumers are idempotent
(an operation is claimed `queued → running` once; a delivery is sent once).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import partial
from typing import Any

from celery import current_app
from django.db import transaction
from django.utils import timezone

from .models import OutboxMessage
from .redaction import redact

logger = logging.getLogger(__name__)


def task_send(
    name: str, *, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, queue: str = "default"
) -> None:
    """Put one run of the task registered as `name` on `queue` now, or raise (no retry: the outbox retries)."""
    current_app.send_task(name, args=list(args), kwargs=dict(kwargs or {}), queue=queue, retry=False)


def task_send_on_commit(
    name: str, *, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, queue: str = "default"
) -> OutboxMessage:
    """Queue it once the current transaction commits (at once outside one): a task never starts before the rows
    it reads exist, a rolled-back request queues nothing, and an unreachable broker loses nothing."""
    message = OutboxMessage.objects.create(task=name, args=list(args), kwargs=dict(kwargs or {}), queue=queue)
    transaction.on_commit(partial(outbox_deliver, message.pk))
    return message


def outbox_deliver(message_id: int) -> bool:
    """Send one pending message (the row locked meanwhile: a drain running at the same time skips it); whether it
    is sent now."""
    with transaction.atomic():
        message = OutboxMessage.objects.select_for_update(skip_locked=True).filter(pk=message_id, sent_at=None).first()
        if message is None:
            return False
        message.attempts += 1
        try:
            task_send(message.task, args=message.args, kwargs=message.kwargs, queue=message.queue)
        except Exception as exc:  # any broker failure: the message stays for the next drain
            message.last_error = redact(f"{type(exc).__name__}: {exc}")[:2000]
            message.save(update_fields=["attempts", "last_error"])
            logger.warning("task %s not sent (the broker did not answer): it stays in the outbox", message.task)
            return False
        message.sent_at = timezone.now()
        message.save(update_fields=["attempts", "sent_at"])
    return True


def outbox_drain(*, limit: int = 500) -> int:
    """Send the pending messages, oldest first; stop at the first the broker refuses (it is still away)."""
    sent = 0
    for message_id in OutboxMessage.objects.filter(sent_at=None).values_list("pk", flat=True)[:limit]:
        if not outbox_deliver(message_id):
            break
        sent += 1
    return sent


def outbox_prune(*, days: int = 7) -> int:
    """Sent messages older than `days` are forgotten (pending ones never are)."""
    cutoff = timezone.now() - timedelta(days=days)
    return OutboxMessage.objects.filter(sent_at__lt=cutoff).delete()[0]
