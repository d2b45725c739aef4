"""Host resources over time (from the `host` / `host_push` checks' results) and managed databases' sizes.

Thresholds are the host checks' own (`cpu_warning`, `disk_critical`, ...): crossing one changes the check's
state, and the service's transition alerts through the usual channels. The charts draw the same lines.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from hadr_portal.adapters.readonly import ReadOnlyQueryError, read_only_query
from hadr_portal.databases.models import Cluster, Node, Purpose
from hadr_portal.status.models import Check

from .models import DatabaseSize

logger = logging.getLogger(__name__)
CHART_POINTS = 240  # buckets per chart: enough detail, little SVG
HOST_DEFAULTS = {"warning": 85.0, "critical": 95.0}  # evaluate_host's defaults

HOST_SERIES = """
SELECT r.health_check_id, date_bin(%(bucket)s, r.at, %(origin)s) AS slot,
       avg((r.data->>'cpu')::float8), avg((r.data->>'memory')::float8)
FROM status_checkresult r
WHERE r.health_check_id = ANY(%(checks)s) AND r.at >= %(since)s AND r.data ? 'cpu'
GROUP BY 1, 2 ORDER BY 1, 2
"""
DISK_SERIES = """
SELECT r.health_check_id, d.key, date_bin(%(bucket)s, r.at, %(origin)s) AS slot, max(d.value::text::float8)
FROM status_checkresult r CROSS JOIN LATERAL jsonb_each(r.data->'disks') AS d
WHERE r.health_check_id = ANY(%(checks)s) AND r.at >= %(since)s AND jsonb_typeof(r.data->'disks') = 'object'
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""
SIZE_SERIES = """
SELECT cluster_id, dbname, date_bin(%(bucket)s, at, %(origin)s) AS slot, max(bytes)
FROM metrics_databasesize WHERE at >= %(since)s
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""
SIZES_SQL = (
    "SELECT datname, pg_database_size(oid) FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname"
)


@dataclass
class HostSeries:
    """One host check's CPU, memory and disks over time, with its thresholds (percent)."""

    check: Check
    cpu: list[tuple[datetime, float]] = field(default_factory=list)
    memory: list[tuple[datetime, float]] = field(default_factory=list)
    disks: dict[str, list[tuple[datetime, float]]] = field(default_factory=dict)

    def thresholds(self, metric: str) -> dict[str, float]:
        config = self.check.config or {}
        return {level: float(config.get(f"{metric}_{level}", default)) for level, default in HOST_DEFAULTS.items()}

    @property
    def charts(self) -> list[dict[str, Any]]:
        rows = [("CPU", self.cpu, "cpu"), ("Memory", self.memory, "memory")]
        rows += [(f"Disk {path}", points, "disk") for path, points in sorted(self.disks.items())]
        return [
            {"title": title, "points": points, "latest": points[-1][1], "thresholds": self.thresholds(metric)}
            for title, points, metric in rows
            if points
        ]


def _window(days: float) -> tuple[datetime, timedelta, datetime]:
    """(since, bucket width, bucket origin) for a chart of `days` days."""
    now = timezone.now()
    since = now - timedelta(days=days)
    return since, timedelta(days=days) / CHART_POINTS, since


def host_series(*, days: float) -> tuple[list[HostSeries], float]:
    """Every enabled host check's resources over the last `days` (at most the raw results kept), and the days shown."""
    days = min(days, settings.CHECK_RESULTS_DAYS)
    checks = list(
        Check.objects.filter(enabled=True, kind__in=(Check.Kind.HOST, Check.Kind.HOST_PUSH))
        .select_related("service")
        .order_by("service__name", "name")
    )
    if not checks:
        return [], days
    since, bucket, origin = _window(days)
    # Any: psycopg sends a timedelta as an interval, a type the stubs leave out of a query's parameters.
    params: dict[str, Any] = {"checks": [c.pk for c in checks], "since": since, "bucket": bucket, "origin": origin}
    series = {c.pk: HostSeries(c) for c in checks}
    with connection.cursor() as cursor:
        cursor.execute(HOST_SERIES, params)
        for check_id, slot, cpu, memory in cursor.fetchall():
            series[check_id].cpu.append((slot, cpu))
            series[check_id].memory.append((slot, memory))
        cursor.execute(DISK_SERIES, params)
        for check_id, path, slot, used in cursor.fetchall():
            series[check_id].disks.setdefault(path, []).append((slot, used))
    return list(series.values()), days


@dataclass
class SizeSeries:
    cluster: str
    dbname: str
    points: list[tuple[datetime, int]]

    @property
    def current(self) -> int | None:
        return self.points[-1][1] if self.points else None

    @property
    def growth(self) -> int | None:
        return self.points[-1][1] - self.points[0][1] if len(self.points) > 1 else None


def database_size_series(*, days: float) -> list[SizeSeries]:
    """Each managed database's size over the last `days`, the largest sample of each bucket."""
    since, bucket, origin = _window(days)
    names = dict(Cluster.objects.values_list("pk", "name"))
    points: dict[tuple[int, str], list[tuple[datetime, int]]] = defaultdict(list)
    with connection.cursor() as cursor:
        params: dict[str, Any] = {"since": since, "bucket": bucket, "origin": origin}  # Any: as in host_series
        cursor.execute(SIZE_SERIES, params)
        for cluster_id, dbname, slot, size in cursor.fetchall():
            points[(cluster_id, dbname)].append((slot, size))
    return [
        SizeSeries(names.get(cluster_id, "?"), dbname, series)
        for (cluster_id, dbname), series in sorted(
            points.items(), key=lambda item: (names.get(item[0][0], ""), item[0][1])
        )
    ]


def latest_database_sizes() -> list[tuple[str, str, int]]:
    """(cluster, database, bytes) of each database's newest sample (for /metrics)."""
    rows = (
        DatabaseSize.objects.order_by("cluster_id", "dbname", "-at")
        .distinct("cluster_id", "dbname")
        .values_list("cluster__name", "dbname", "bytes")
    )
    return list(rows)


def _size_node(cluster: Cluster) -> Node | None:
    """Any reachable node, a replica first: pg_database_size is a cheap catalog read, the same on both."""
    nodes = sorted(cluster.nodes.all(), key=lambda node: (node.role != "replica", node.role != "primary", node.name))
    return nodes[0] if nodes else None


def database_sizes_sample(*, now: datetime | None = None) -> int:
    """Record the size of every database of every managed cluster; an unreachable cluster is skipped (logged)."""
    now = now or timezone.now()
    samples = []
    for cluster in Cluster.objects.prefetch_related("nodes"):
        node = _size_node(cluster)
        if node is None:
            continue
        try:
            rows = read_only_query(
                conninfo=node.address(Purpose.MONITOR).conninfo(),
                sql=SIZES_SQL,
                timeout=10,
                replica_only=False,
                where=str(node),
            )
        except ReadOnlyQueryError as exc:
            logger.warning("database sizes of %s not sampled: %s", cluster.name, exc)
            continue
        samples += [DatabaseSize(cluster=cluster, dbname=name, at=now, bytes=size) for name, size in rows]
    DatabaseSize.objects.bulk_create(samples)
    return len(samples)
