"""The Errors page's list: the portal's logged errors and its failed operations, newest first, in one query."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db.models import CharField, F, Q, QuerySet, TextField, Value
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone

from hadr_portal.core.models import Operation
from hadr_portal.core.redaction import redact

from .models import LoggedError

SOURCES = {"log": "Portal log", "operation": "Failed operations"}
LEVELS = ("ERROR", "CRITICAL")
COLUMNS = ("at", "source", "level", "name", "message", "detail", "op")


def _day(value: str) -> datetime | None:
    try:
        return timezone.make_aware(datetime.combine(datetime.strptime(value, "%Y-%m-%d").date(), time.min))
    except ValueError:
        return None


def errors_list(filters: dict[str, str]) -> tuple[QuerySet[Any], list[str]]:
    """Rows (dicts of COLUMNS; `op` is the operation to link to) matching the filters (source, level, since, until, q), and the filters' errors."""
    problems: list[str] = []
    logged = LoggedError.objects.all()
    failed = Operation.objects.filter(status=Operation.Status.FAILED)
    source, level = filters.get("source", ""), filters.get("level", "")
    if source and source not in SOURCES:
        problems.append(f"Unknown source {source!r}.")
    if level and level not in LEVELS:
        problems.append(f"Unknown level {level!r}.")
    if level:
        logged = logged.filter(level=level)
        failed = failed.none() if level != "ERROR" else failed
    for name in ("since", "until"):
        if value := filters.get(name):
            start = _day(value)
            if start is None:
                problems.append(f"{name.title()}: {value!r} is not a date (use YYYY-MM-DD).")
            elif name == "since":
                logged, failed = logged.filter(at__gte=start), failed.filter(finished_at__gte=start)
            elif start.date() < date.max:  # until the last day of the calendar: nothing to leave out
                end = start + timedelta(days=1)
                logged, failed = logged.filter(at__lt=end), failed.filter(finished_at__lt=end)
    if q := filters.get("q"):
        logged = logged.filter(Q(message__icontains=q) | Q(logger__icontains=q) | Q(exception__icontains=q))
        failed = failed.filter(Q(error__icontains=q) | Q(kind__icontains=q) | Q(target__icontains=q))
    text = TextField()
    rows_logged = logged.annotate(
        source=Value("log", output_field=CharField()),
        name=Cast("logger", text),
        detail=Cast("exception", text),
        op=F("operation_id"),
    ).values(*COLUMNS)
    rows_failed = failed.annotate(
        at=Coalesce("finished_at", "created_at"),
        source=Value("operation", output_field=CharField()),
        level=Value("ERROR", output_field=CharField()),
        name=Cast(F("kind"), text),
        message=Cast(F("error"), text),
        detail=Cast(F("target"), text),
        op=F("id"),
    ).values(*COLUMNS)
    if source == "log":
        rows = rows_logged
    elif source == "operation":
        rows = rows_failed
    else:
        rows = rows_logged.union(rows_failed, all=True)
    return rows.order_by("-at"), problems


def rows_shown(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One page of rows as the page shows them: message and detail through `redact`, whatever the row was
    written with (records are redacted when logged, but an older row or an operation's error may not be)."""
    return [row | {"message": redact(row["message"] or ""), "detail": redact(row["detail"] or "")} for row in rows]
