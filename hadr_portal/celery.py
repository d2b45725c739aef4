"""The Celery application: three queues so a long backup never delays a health check.

- `checks`  many short tasks (health checks)
- `ops`     few long ones (backups, restores, failovers, restarts, connectivity checks)
- `default` everything else (reaper, notifications, rollups, metrics)
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import setup_logging, worker_ready
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hadr_portal.settings")

app = Celery("hadr_portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("checks"), Queue("ops"), Queue("default"))
app.autodiscover_tasks()


def _install_worker_steps() -> None:
    from hadr_portal.core.workers import AnnounceStep

    app.steps["worker"].add(AnnounceStep)


_install_worker_steps()


@setup_logging.connect
def use_django_logging(**_: object) -> None:
    """Keep Django's LOGGING (JSON lines) instead of Celery's own handlers."""
    import logging.config

    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


@worker_ready.connect
def outbox_drain_on_start(**_: object) -> None:
    """A worker that starts (the broker answers, then) sends what the outbox still holds, without waiting for beat."""
    from hadr_portal.core.dispatch import outbox_drain

    outbox_drain()


@app.on_after_finalize.connect
def schedule_periodic_tasks(sender: Celery, **_: object) -> None:
    """Beat's schedule: what the apps registered in `registry.periodic_tasks` (they are ready by now: Celery's
    Django fix-up sets Django up before the app is finalized)."""
    from hadr_portal.core import registry

    for entry in registry.periodic_tasks:
        expires = entry.expiry()
        options = {"expires": expires} if expires is not None else {}
        sender.add_periodic_task(
            entry.seconds(), sender.signature(entry.task, queue=entry.queue, options=options), name=entry.name
        )
