"""What the status pages show, gathered in a few queries."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import groupby
from typing import Any

import redis
from django.conf import settings
from django.db.models import Max, Prefetch
from django.utils import timezone

from hadr_portal.core.health import QUEUES
from hadr_portal.core.models import Operation
from hadr_portal.core.workers import workers_by_queue

from . import history
from .models import Check, CheckResult, Service, State, Transition
from .restart import restart_plan


@dataclass
class ServiceRow:
    service: Service
    checks: list[Check]
    stale: bool
    last_result_at: datetime | None
    sparkline: list[float]
    uptime: dict[str, float | None]
    replication: list[dict[str, Any]] = field(default_factory=list)
    resources: dict[str, Any] | None = None
    maintenance: bool = False
    restart_plan: str | None = None  # what Restart does; None: the service has no restart controller

    @property
    def shown_state(self) -> str:
        """Stale data is never shown as green."""
        return "stale" if self.stale and self.service.state == State.UP else self.service.state


def check_is_stale(check: Check, now: datetime) -> bool:
    if not check.enabled:
        return False
    if check.last_result_at is None:
        return True
    return (now - check.last_result_at).total_seconds() > check.stale_after_seconds()


def _replication(check: Check) -> list[dict[str, Any]]:
    data = check.last_data or {}
    if check.kind != Check.Kind.POSTGRES or not data.get("role"):
        return []
    if data["role"] == "primary":
        expected = check.config.get("expected_replicas", 1 if check.node_id is not None else 0)
        return [
            {
                "node": check.service.display_name,
                "role": "primary",
                "replicas": data.get("replicas", []),
                "expects_replicas": bool(expected),
            }
        ]
    return [
        {
            "node": check.service.display_name,
            "role": "replica",
            "lag_bytes": data.get("lag_bytes"),
            "lag_seconds": data.get("lag_seconds"),
            "streaming": data.get("streaming"),
        }
    ]


def service_rows(services: list[Service]) -> list[ServiceRow]:
    now = timezone.now()
    ids = [s.pk for s in services]
    uptimes = history.uptimes_by_service(ids)
    all_checks = [c for s in services for c in s.checks.all()]
    sparks = history.latency_series([c.pk for c in all_checks if c.kind not in Check.UNPROBED_KINDS])
    rows = []
    for service in services:
        checks = list(service.checks.all())
        enabled = [c for c in checks if c.enabled]
        results = [c.last_result_at for c in enabled if c.last_result_at]
        spark_check = next((c for c in enabled if sparks.get(c.pk)), None)
        host = next((c for c in enabled if c.kind in (Check.Kind.HOST, Check.Kind.HOST_PUSH) and c.last_data), None)
        rows.append(
            ServiceRow(
                service=service,
                checks=checks,
                stale=any(check_is_stale(c, now) for c in enabled),
                last_result_at=max(results) if results else None,
                sparkline=sparks.get(spark_check.pk, []) if spark_check else [],
                uptime={"24 h": uptimes[service.pk][1], "7 d": uptimes[service.pk][7], "30 d": uptimes[service.pk][30]},
                replication=[r for c in enabled for r in _replication(c)],
                resources=host.last_data if host else None,
                maintenance=any(w.starts_at <= now < w.ends_at for w in service.maintenance_windows.all()),
                restart_plan=restart_plan(service, probed_checks=sum(1 for c in enabled if c.is_probed))
                if service.restart
                else None,
            )
        )
    return rows


def dashboard() -> dict[str, Any]:
    services = list(
        Service.objects.prefetch_related(
            Prefetch("checks", queryset=Check.objects.order_by("name")),
            "maintenance_windows",
        )
    )
    rows = service_rows(services)
    tiers = [(tier, list(group)) for tier, group in groupby(rows, key=lambda r: r.service.tier)]
    counts = {
        state: sum(1 for r in rows if r.shown_state == state)
        for state in ("up", "degraded", "down", "unknown", "stale")
    }
    from hadr_portal.backups.selectors import policies_overview

    return {
        "tiers": tiers,
        "counts": counts,
        "tier_names": dict(Service.TIERS),
        "banners": portal_banners(),
        "backups": policies_overview(),
    }


def portal_banners() -> list[str]:
    """What is wrong with the portal itself: the dashboard must still render and say so."""
    banners = []
    try:
        by_queue = workers_by_queue(url=settings.REDIS_URL, queues=QUEUES)
    except redis.RedisError as exc:
        return [f"The task queue (Redis) is unreachable: {exc}. Checks, alerts and operations are stopped."]
    missing = [q for q, names in by_queue.items() if not names]
    if missing:
        banners.append(
            f"No worker is consuming the {', '.join(f'“{q}”' for q in missing)} queue{'s' if len(missing) > 1 else ''}: "
            "what runs there is not running. See the runbook “The portal itself is unwell”."
        )
    newest = Check.objects.filter(enabled=True).aggregate(newest=Max("last_result_at"))["newest"]
    limit = timedelta(seconds=max(120, 3 * settings.CHECK_TICK_SECONDS))
    if Check.objects.filter(enabled=True).exists() and (newest is None or timezone.now() - newest > limit):
        since = f"since {timezone.localtime(newest):%H:%M:%S}" if newest else "yet"
        banners.append(f"Health checks have produced no result {since}: the states below may be stale.")
    return banners


def service_detail(service: Service) -> dict[str, Any]:
    row = service_rows([service])[0]
    since = timezone.now() - timedelta(hours=24)
    checks = row.checks
    results = CheckResult.objects.filter(health_check__service=service).select_related("health_check")[:20]
    latency = {
        c: list(
            CheckResult.objects.filter(health_check=c, at__gte=since, latency_ms__isnull=False)
            .order_by("at")
            .values_list("at", "latency_ms")
        )
        for c in checks
        if c.kind not in Check.UNPROBED_KINDS
    }
    transitions = list(Transition.objects.filter(service=service).select_related("health_check")[:50])
    return {
        "row": row,
        "service": service,
        "checks": checks,
        "results": results,
        "latency": {c: points for c, points in latency.items() if points},
        "timeline": state_timeline(service, since=since),
        "transitions": transitions,
        "windows": service.maintenance_windows.all()[:10],
        "active_operation": Operation.objects.filter(target=service.target, status__in=Operation.ACTIVE).first(),
    }


def state_timeline(service: Service, *, since: datetime) -> list[dict[str, Any]]:
    """Segments of the last 24 h as (state, start %, width %), from the transitions."""
    now = timezone.now()
    span = (now - since).total_seconds()
    before = Transition.objects.filter(service=service, at__lt=since).order_by("-at").first()
    state = before.to_state if before else State.UNKNOWN
    points = [(since, state)] + [
        (t.at, t.to_state) for t in Transition.objects.filter(service=service, at__gte=since).order_by("at")
    ]
    segments = []
    for (start, st), (end, _) in zip(points, [*points[1:], (now, None)], strict=True):
        left = (start - since).total_seconds() / span * 100
        width = (end - start).total_seconds() / span * 100
        if width > 0:
            segments.append({"state": st, "left": round(left, 3), "width": round(width, 3), "start": start, "end": end})
    return segments
