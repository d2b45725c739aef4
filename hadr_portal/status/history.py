"""Check history: hourly rollups, pruning, and the uptime / latency figures the pages show."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Avg, Count, Max, Q, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from .models import CheckResult, CheckRollup


def rollups_refresh(*, since: datetime | None = None) -> int:
    """Recompute the hourly rollups from raw results since `since` (default: the last two hours). Idempotent."""
    now = timezone.now()
    since = (since or now - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    rows = (
        CheckResult.objects.filter(at__gte=since)
        .annotate(hour=TruncHour("at"))
        .values("health_check_id", "hour")
        .annotate(
            total=Count("id"),
            up=Count("id", filter=Q(outcome="up")),
            degraded=Count("id", filter=Q(outcome="degraded")),
            down=Count("id", filter=Q(outcome="down")),
            latency_avg_ms=Avg("latency_ms"),
            latency_max_ms=Max("latency_ms"),
        )
    )
    rollups = [CheckRollup(**row) for row in rows]
    CheckRollup.objects.bulk_create(
        rollups,
        update_conflicts=True,
        unique_fields=["health_check", "hour"],
        update_fields=["total", "up", "degraded", "down", "latency_avg_ms", "latency_max_ms"],
    )
    return len(rollups)


def results_prune(*, now: datetime | None = None) -> tuple[int, int]:
    """Delete raw results and rollups past their retention (HADR_CHECK_RESULTS_DAYS / _ROLLUPS_DAYS)."""
    now = now or timezone.now()
    raw, _ = CheckResult.objects.filter(at__lt=now - timedelta(days=settings.CHECK_RESULTS_DAYS)).delete()
    rolled, _ = CheckRollup.objects.filter(hour__lt=now - timedelta(days=settings.CHECK_ROLLUPS_DAYS)).delete()
    return raw, rolled


def uptimes_by_service(
    service_ids: list[int], *, windows: tuple[int, ...] = (1, 7, 30)
) -> dict[int, dict[int, float | None]]:
    """Share of results that were not `down` over each window of days, per service, in one query."""
    now = timezone.now()
    aggregates = {}
    for days in windows:
        recent = Q(hour__gte=now - timedelta(days=days))
        aggregates[f"total_{days}"] = Sum("total", filter=recent)
        aggregates[f"down_{days}"] = Sum("down", filter=recent)
    # Rows as plain mappings: the type checker cannot know the names of the annotated sums.
    rows: Iterable[Mapping[str, Any]] = (
        CheckRollup.objects.filter(
            health_check__service_id__in=service_ids, hour__gte=now - timedelta(days=max(windows))
        )
        .values("health_check__service_id")
        .annotate(**aggregates)
    )
    result: dict[int, dict[int, float | None]] = {pk: dict.fromkeys(windows) for pk in service_ids}
    for row in rows:
        for days in windows:
            total, down = row[f"total_{days}"], row[f"down_{days}"]
            if total:
                result[row["health_check__service_id"]][days] = 100.0 * (total - down) / total
    return result


LATEST_LATENCIES = """
SELECT c.id, recent.latency_ms
FROM unnest(%s::bigint[]) AS c(id)
CROSS JOIN LATERAL (
    SELECT r.latency_ms, r.at FROM status_checkresult r
    WHERE r.health_check_id = c.id AND r.latency_ms IS NOT NULL AND r.at >= %s
    ORDER BY r.at DESC LIMIT %s
) AS recent
ORDER BY c.id, recent.at
"""


def latency_series(check_ids: list[int], *, points: int = 30) -> dict[int, list[float]]:
    """The last `points` latencies of each check, oldest first (for sparklines): one index scan per check."""
    series: dict[int, list[float]] = defaultdict(list)
    if not check_ids:
        return series
    with connection.cursor() as cursor:
        cursor.execute(LATEST_LATENCIES, [check_ids, timezone.now() - timedelta(hours=6), points])
        for check_id, latency in cursor.fetchall():
            series[check_id].append(latency)
    return series
