"""Celery entry points for backups."""

from __future__ import annotations

from celery import shared_task

from . import services
from .markers import markers_write_all
from .models import BackupPolicy
from .scratch import scratch_expire_due


@shared_task(name="hadr_portal.backups.tasks.backups_schedule")
def backups_schedule() -> int:
    return len(services.backups_schedule_due())


@shared_task(name="hadr_portal.backups.tasks.drills_schedule")
def drills_schedule() -> int:
    return len(services.drills_schedule_due())


@shared_task(name="hadr_portal.backups.tasks.backups_prune")
def backups_prune() -> int:
    services.restore_drafts_prune()
    return sum(len(services.backups_prune(policy=p, dry_run=False)) for p in BackupPolicy.objects.all())


@shared_task(name="hadr_portal.backups.tasks.sets_sync")
def sets_sync() -> int:
    return services.sets_sync_all()


@shared_task(name="hadr_portal.backups.tasks.markers_write")
def markers_write() -> int:
    return markers_write_all()


@shared_task(name="hadr_portal.backups.tasks.scratch_expire")
def scratch_expire() -> int:
    return sum(scratch_expire_due())
