"""Runs on a cron schedule: each row keeps the moment its next run is due, and beat asks `schedule_due` every
tick. The backups (and their restore drills), the switchover drills of clusters and the restart drills of
services are queued this way."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from croniter import croniter
from django.db.models import Model, QuerySet
from django.utils import timezone

from .audit import audit_record
from .models import AuditEntry, Operation
from .operation_kinds import OperationError

M = TypeVar("M", bound=Model)


def next_after(schedule: str, moment: datetime) -> datetime:
    """The schedule's next moment after `moment`, read in the portal's time zone (02:00 is local 02:00)."""
    return croniter(schedule, timezone.localtime(moment)).get_next(datetime)


def schedule_due(
    rows: QuerySet[M],
    *,
    field: str,
    schedule: Callable[[M], str],
    start: Callable[[M], Operation],
    kind: str,
    target: Callable[[M], str],
    now: datetime,
) -> list[Operation]:
    """Queue what is due: a row's first due moment is only set (nothing runs at once after a catalog import), a
    due row is advanced before it is queued (a refusal, another one running, is audited and not retried every
    tick), and a row another beat tick advanced first is skipped."""
    queued = []
    for row in rows:
        cron, due = schedule(row), getattr(row, field)
        if not cron:
            continue
        model: Any = type(row)
        if due is None:
            model.objects.filter(pk=row.pk).update(**{field: next_after(cron, now)})
            continue
        if due > now:
            continue
        if not model.objects.filter(pk=row.pk, **{field: due}).update(**{field: next_after(cron, now)}):
            continue  # another beat tick took it
        try:
            queued.append(start(row))
        except OperationError as exc:
            audit_record(
                actor=None,
                action=f"operation.{kind}",
                target=target(row),
                outcome=AuditEntry.Outcome.REFUSED,
                detail=f"scheduled {kind.replace('_', ' ')} skipped: {exc}",
            )
    return queued
