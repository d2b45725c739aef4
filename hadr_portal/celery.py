"""The Celery application: three queues so a long backup never delays a health check.

- `checks`  many short tasks (health checks)
- `ops`     few long ones (backups, restores, failovers, restarts, connectivity checks)
- `default` everything else (reaper, notifications, rollups, metrics)
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import setup_logging
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


@app.on_after_finalize.connect
def schedule_periodic_tasks(sender: Celery, **_: object) -> None:
    from django.conf import settings

    sender.add_periodic_task(
        float(settings.OPERATION_REAPER_INTERVAL),
        sender.signature("hadr_portal.core.tasks.operations_reap", queue="default"),
        name="reap stale operations",
    )
    tick = float(settings.CHECK_TICK_SECONDS)
    sender.add_periodic_task(
        tick,
        # A tick that waited longer than one period is useless: the next one claims the same checks.
        sender.signature("hadr_portal.status.tasks.checks_tick", queue="checks", options={"expires": tick}),
        name="run due health checks",
    )
    sender.add_periodic_task(
        60.0,
        sender.signature("hadr_portal.status.tasks.results_rollup", queue="default"),
        name="roll up and prune check results",
    )
    sender.add_periodic_task(
        60.0,
        sender.signature("hadr_portal.status.tasks.beat_heartbeat", queue="default"),
        name="beat heartbeat",
    )
    sender.add_periodic_task(
        30.0,
        sender.signature("hadr_portal.backups.tasks.backups_schedule", queue="default", options={"expires": 30}),
        name="queue scheduled backups",
    )
    sender.add_periodic_task(
        30.0,
        sender.signature("hadr_portal.backups.tasks.drills_schedule", queue="default", options={"expires": 30}),
        name="queue scheduled restore drills",
    )
    sender.add_periodic_task(
        3600.0,
        sender.signature("hadr_portal.backups.tasks.backups_prune", queue="default"),
        name="prune backups by retention",
    )
    sender.add_periodic_task(
        30.0,
        sender.signature("hadr_portal.metrics.tasks.funnels_collect", queue="default", options={"expires": 30}),
        name="collect due funnels on their replicas",
    )
    sender.add_periodic_task(
        float(settings.DB_SIZE_INTERVAL),
        sender.signature("hadr_portal.metrics.tasks.database_sizes_sample", queue="default"),
        name="sample managed database sizes",
    )
    sender.add_periodic_task(
        3600.0,
        sender.signature("hadr_portal.metrics.tasks.metrics_prune", queue="default"),
        name="prune metrics history and logged errors",
    )
    sender.add_periodic_task(
        60.0,
        sender.signature("hadr_portal.incidents.tasks.escalations_remind", queue="default", options={"expires": 60}),
        name="escalate unacknowledged incidents",
    )
