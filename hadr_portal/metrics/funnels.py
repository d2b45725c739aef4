"""Collecting funnel counts: the scheduled query on a replica, and counts pushed by an application.

- `funnel_collect()`       run one funnel's query on a replica and replace the hours and days it covers
- `funnels_collect_due()`  claim the funnels whose run is due (SKIP LOCKED) and collect them
- `funnel_counts_push()`   record pushed counts for one day or one hour; a resend replaces, never adds

A failing query changes no counts: the funnel records the reason, and its tiles say the data is stale
since the last success, with that reason.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import DurationField, ExpressionWrapper, F, Sum
from django.utils import timezone

from hadr_portal.adapters.readonly import ReadOnlyQueryError, read_only_query
from hadr_portal.core.dashboard_version import dashboard_invalidate
from hadr_portal.databases.dsn import DsnUnavailable, dsn_from_env
from hadr_portal.databases.models import Cluster, Purpose

from .models import FUNNEL_QUERY, Funnel, FunnelDayCount, FunnelHourCount

logger = logging.getLogger(__name__)
MAX_COUNT = 10**12  # more sign-ups than people on Earth is a bug in the sender


class FunnelUnavailable(Exception):
    """The funnel's counts could not be read; the message says why, for the 'stale since' note."""


class CountsRejected(ValueError):
    """Pushed counts that are not recorded; the message says what is wrong (HTTP 400)."""


@dataclass(frozen=True)
class Collected:
    """What one run did: hours and days replaced since `since`."""

    since: datetime
    hours: int
    days: int


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def _collect_since(funnel: Funnel, now: datetime) -> datetime:
    """From the start of the day of the last success (an hour earlier, for late rows), or, the first time, as far
    back as hourly counts are kept — so that days are always recomputed whole."""
    earliest = now - timedelta(days=settings.FUNNEL_HOURLY_DAYS)
    start = max(funnel.last_success_at - timedelta(hours=1), earliest) if funnel.last_success_at else earliest
    return _day_start(timezone.localdate(start))


def _conninfo(funnel: Funnel) -> tuple[str, str]:
    """The conninfo of the node to read (as the cluster's read role), and how to name it. Raises FunnelUnavailable."""
    if funnel.dsn_env:
        try:
            return dsn_from_env(funnel.dsn_env), funnel.dsn_env
        except DsnUnavailable as exc:
            raise FunnelUnavailable(str(exc)) from None
    # as the catalog says now (credentials, nodes and their roles), however long ago the funnel row was read
    cluster = (
        Cluster.objects.filter(pk=funnel.cluster_id).prefetch_related("nodes").first()
        if funnel.cluster_id is not None
        else None
    )
    if cluster is None:  # none named, or removed from the catalog
        raise FunnelUnavailable("no cluster in the catalog to read: name one, or a DSN variable in dsn_env")
    nodes = sorted(cluster.nodes.all(), key=lambda node: node.name)
    if funnel.node_id is not None:
        chosen = [node for node in nodes if node.pk == funnel.node_id]
        if not chosen:
            raise FunnelUnavailable(f"its node {funnel.node} is not in cluster {cluster.name}")
    else:
        # The postgres checks keep each node's role current; a failover makes the other node the replica.
        chosen = [node for node in nodes if node.role == "replica"]
        if not chosen:
            roles = ", ".join(f"{node.name}: {node.role}" for node in nodes) or "no nodes"
            raise FunnelUnavailable(f"no reachable replica in cluster {cluster.name} ({roles})")
    node = chosen[0]
    address = node.address(Purpose.READ)
    if funnel.dbname:
        address = type(address)(address.host, address.port, funnel.dbname, address.user, address.password)
    return address.conninfo(), f"{node} ({node.host}:{node.port})"


def _hour_rows(funnel: Funnel, rows: list[tuple[Any, ...]]) -> dict[tuple[datetime, str], int]:
    """The query's (step, hour, count) rows summed per hour and known step; raises FunnelUnavailable on bad rows."""
    counts: dict[tuple[datetime, str], int] = defaultdict(int)
    ignored: set[str] = set()
    for row in rows:
        if len(row) != 3:
            raise FunnelUnavailable(f"the query must return (step, hour, count) rows, got {len(row)} columns")
        step, hour, count = row
        if not isinstance(hour, datetime) or isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise FunnelUnavailable(f"the query returned a row that is not (step, hour, count >= 0): {row!r}"[:300])
        if step not in funnel.steps:
            ignored.add(str(step))
            continue
        if timezone.is_naive(hour):
            hour = timezone.make_aware(hour, timezone.get_fixed_timezone(0))
        counts[(hour.replace(minute=0, second=0, microsecond=0), step)] += count
    if ignored:
        logger.warning("funnel %s: ignored rows of unknown steps %s", funnel.name, sorted(ignored))
    return counts


def funnel_collect(*, funnel: Funnel, now: datetime | None = None) -> Collected:
    """Run the funnel's query on a replica and replace its counts from the start of the day of the last success.

    Guarantees: the query passes the SQL guard, and runs only on a node that reports being a replica, as a role
    that is not a superuser (the cluster's read role), read-only, within the funnel's timeout; on any failure
    nothing is replaced and the funnel records the reason (FunnelUnavailable raised).
    """
    now = now or timezone.now()
    since = _collect_since(funnel, now)
    try:
        if funnel.source != Funnel.Source.QUERY:
            raise FunnelUnavailable("this funnel's counts are pushed, not queried")
        conninfo, where = _conninfo(funnel)
        rows = read_only_query(
            conninfo=conninfo,
            sql=funnel.query,
            params={"since": since},
            timeout=funnel.timeout_seconds,
            where=where,
            guard=FUNNEL_QUERY,
        )
        hours = _hour_rows(funnel, rows)
    except (FunnelUnavailable, ReadOnlyQueryError) as exc:
        reason = str(exc)[:500]
        Funnel.objects.filter(pk=funnel.pk).update(last_attempt_at=now, last_error=reason)
        funnel.last_attempt_at, funnel.last_error = now, reason
        transaction.on_commit(dashboard_invalidate)  # the tiles say "stale" at once
        logger.warning("funnel %s: counts not collected: %s", funnel.name, reason)
        raise FunnelUnavailable(reason) from None
    with transaction.atomic():
        FunnelHourCount.objects.filter(funnel=funnel, hour__gte=since).delete()
        FunnelHourCount.objects.bulk_create(
            FunnelHourCount(funnel=funnel, hour=hour, step=step, count=count) for (hour, step), count in hours.items()
        )
        days = _days_from_hours(funnel, since=since.date(), until=timezone.localdate(now))
        Funnel.objects.filter(pk=funnel.pk).update(last_attempt_at=now, last_success_at=now, last_error="")
        transaction.on_commit(dashboard_invalidate)  # the dashboard and the Metrics page show the new counts at once
    funnel.last_attempt_at = funnel.last_success_at = now
    funnel.last_error = ""
    return Collected(since=since, hours=len(hours), days=days)


def _days_from_hours(funnel: Funnel, *, since: date, until: date, steps: list[str] | None = None) -> int:
    """Recompute the daily counts of these days (and steps) as the sums of their hours; days without hours get 0."""
    steps = steps or list(funnel.steps)
    sums: dict[tuple[date, str], int] = defaultdict(int)
    hours = FunnelHourCount.objects.filter(
        funnel=funnel, step__in=steps, hour__gte=_day_start(since), hour__lt=_day_start(until + timedelta(days=1))
    )
    for hour, step, count in hours.values_list("hour", "step", "count"):
        sums[(timezone.localdate(hour), step)] += count
    days = [since + timedelta(days=offset) for offset in range((until - since).days + 1)]
    FunnelDayCount.objects.filter(funnel=funnel, step__in=steps, day__gte=since, day__lte=until).delete()
    FunnelDayCount.objects.bulk_create(
        FunnelDayCount(funnel=funnel, day=day, step=step, count=sums[(day, step)]) for day in days for step in steps
    )
    return len(days)


def funnels_collect_due(*, now: datetime | None = None) -> dict[str, str]:
    """Collect every enabled query funnel whose run is due; {name: "ok" | reason}. Overlapping runs skip claimed ones."""
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            Funnel.objects.select_for_update(skip_locked=True).filter(
                enabled=True, source=Funnel.Source.QUERY, next_run_at__lte=now
            )
        )
        Funnel.objects.filter(pk__in=[f.pk for f in due]).update(
            next_run_at=now
            + ExpressionWrapper(F("interval_seconds") * timedelta(seconds=1), output_field=DurationField())
        )
    outcomes = {}
    for funnel in due:
        try:
            funnel_collect(funnel=funnel, now=now)
        except FunnelUnavailable as exc:
            outcomes[funnel.name] = str(exc)
        else:
            outcomes[funnel.name] = "ok"
    return outcomes


# --- Pushed counts -----------------------------------------------------------------------------------


def _counts(funnel: Funnel, raw: Any) -> dict[str, int]:
    if not isinstance(raw, Mapping) or not raw:
        raise CountsRejected('counts must be an object of step: count, e.g. {"signed_up": 120}')
    counts = {}
    for step, value in raw.items():
        if step not in funnel.steps:
            raise CountsRejected(f"unknown step {step!r}; the funnel's steps are {', '.join(funnel.steps)}")
        if isinstance(value, bool) or not isinstance(value, int):
            raise CountsRejected(f"counts.{step} must be a whole number, got {value!r}")
        if not 0 <= value <= MAX_COUNT:
            raise CountsRejected(f"counts.{step} must be from 0 to {MAX_COUNT}, got {value}")
        counts[step] = value
    return counts


def _pushed_when(payload: Mapping[str, Any], now: datetime) -> tuple[date, datetime | None]:
    """The day the counts are for, and the hour (timezone-aware, on the hour) when they are for one hour."""
    if ("day" in payload) == ("hour" in payload):
        raise CountsRejected('give either "day" (YYYY-MM-DD) or "hour" (ISO 8601 with a time zone), not both')
    if "day" in payload:
        try:
            day = date.fromisoformat(str(payload["day"]))
        except ValueError:
            raise CountsRejected(f"day must be a date like 2025-01-31, got {payload['day']!r}") from None
        if day > timezone.localdate(now) + timedelta(days=1):
            raise CountsRejected(f"day {day} is in the future")
        return day, None
    try:
        hour = datetime.fromisoformat(str(payload["hour"]))
    except ValueError:
        raise CountsRejected(f"hour must be like 2025-01-31T13:00:00Z, got {payload['hour']!r}") from None
    if timezone.is_naive(hour):
        raise CountsRejected("hour needs a time zone, e.g. 2025-01-31T13:00:00Z")
    try:
        timezone.localtime(hour)  # at the very ends of the calendar (year 1, year 9999) it has no local date
    except OverflowError:
        raise CountsRejected(f"hour {payload['hour']!r} is out of range") from None
    if (hour.minute, hour.second, hour.microsecond) != (0, 0, 0):
        raise CountsRejected("hour must be the start of an hour, e.g. 13:00:00")
    if hour > now + timedelta(hours=1):
        raise CountsRejected(f"hour {hour.isoformat()} is in the future")
    return timezone.localdate(hour), hour


def funnel_counts_push(*, funnel: Funnel, payload: Any, now: datetime | None = None) -> dict[str, Any]:
    """Record counts an application pushed: `{"day": "2025-01-31", "counts": {"signed_up": 120, ...}}`, or
    `{"hour": "2025-01-31T13:00:00Z", "counts": {...}}` (that day's counts become the sum of its hours).

    A resend of the same day or hour replaces the counts it names; nothing is ever added up twice.
    Raises CountsRejected naming what is wrong; then nothing is recorded.
    """
    now = now or timezone.now()
    if funnel.source != Funnel.Source.PUSH:
        raise CountsRejected(f"funnel {funnel.name} is collected by its query; it does not accept pushed counts")
    if not isinstance(payload, Mapping):
        raise CountsRejected('expected a JSON object like {"day": "2025-01-31", "counts": {"signed_up": 120}}')
    unknown = set(payload) - {"day", "hour", "counts"}
    if unknown:
        raise CountsRejected(f"unknown field {sorted(unknown)[0]!r}; expected day or hour, and counts")
    counts = _counts(funnel, payload.get("counts"))
    day, hour = _pushed_when(payload, now)
    with transaction.atomic():
        if hour is not None:
            for step, count in counts.items():
                FunnelHourCount.objects.update_or_create(funnel=funnel, hour=hour, step=step, defaults={"count": count})
            _days_from_hours(funnel, since=day, until=day, steps=list(counts))
        else:
            for step, count in counts.items():
                FunnelDayCount.objects.update_or_create(funnel=funnel, day=day, step=step, defaults={"count": count})
        Funnel.objects.filter(pk=funnel.pk).update(last_attempt_at=now, last_success_at=now, last_error="")
        transaction.on_commit(dashboard_invalidate)
    stored = dict(FunnelDayCount.objects.filter(funnel=funnel, day=day).values_list("step").annotate(n=Sum("count")))
    return {"funnel": funnel.name, "day": str(day), "hour": hour.isoformat() if hour else None, "counts": stored}
