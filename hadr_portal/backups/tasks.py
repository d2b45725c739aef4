"""Celery entry points for backups."""

from __future__ import annotations

from celery import shared_task

from . import services
from .models import BackupPolicy


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
