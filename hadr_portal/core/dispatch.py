"""Queueing work for the Celery workers, by task name.

A service never imports a `tasks` module: the tasks import the services, so the reverse arrow would make a
circle. It names the task instead (`"hadr_portal.status.tasks.alert_deliver"`), the name the task is
registered under, and the worker that runs that queue finds it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from celery import current_app
from django.db import transaction


def task_send(
    name: str, *, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, queue: str = "default"
) -> None:
    """Put one run of the task registered as `name` on `queue` now. Raises when the broker cannot be reached."""
    current_app.send_task(name, args=list(args), kwargs=dict(kwargs or {}), queue=queue)


def task_send_on_commit(
    name: str, *, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, queue: str = "default"
) -> None:
    """Queue it once the current transaction commits (at once outside one): a task never starts before the
    rows it reads exist, and a rolled-back request queues nothing."""
    transaction.on_commit(partial(task_send, name, args=args, kwargs=kwargs, queue=queue))
