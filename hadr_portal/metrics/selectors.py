"""What the metrics pages, the dashboard tiles and /metrics show about funnels: rates per period and trends,
with the events (failovers, restores, outages) that may explain them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db.models import Q, Sum
from django.urls import reverse
from django.utils import timezone

from hadr_portal.core.models import Operation
from hadr_portal.incidents.models import Incident
from hadr_portal.status.models import State, Transition

from .models import Funnel, FunnelDayCount, FunnelHourCount

# (label, days): "today" is compared with yesterday, "7 d" with the 7 days before, and so on.
PERIODS = (("today", 1), ("7 d", 7), ("30 d", 30))
# Page ranges of the trend chart: label -> (days, one point per "hour" | "day" | "week").
RANGES = {"48h": (2, "hour"), "30d": (30, "day"), "90d": (90, "day"), "1y": (365, "week"), "2y": (730, "week")}
DEFAULT_RANGE = "30d"

# Operations worth a marker on a trend chart (kinds that do not exist yet simply match nothing), and which of
# their outcomes count: every failover or restore, but only the backups that failed.
MARKER_KINDS = {
    "failover": "Failover",
    "switchover": "Switchover",
    "restore": "Restore",
    "restore_drill": "Restore drill",
    "rebuild_replica": "Replica rebuild",
    "restart": "Restart",
    "backup": "Backup",
}
MARKER_FAILED_ONLY = {"backup"}
MAX_MARKERS = 200


def rate(part: int | None, whole: int | None) -> float | None:
    return part / whole if part is not None and whole else None


@dataclass
class StepFigure:
    step: str
    count: int
    previous_count: int
    rate: float | None  # from the step before (None for the first step)
    previous_rate: float | None


@dataclass
class PeriodSummary:
    label: str
    days: int
    steps: list[StepFigure]

    @property
    def first(self) -> StepFigure:
        return self.steps[0]

    @property
    def final(self) -> StepFigure:
        return self.steps[-1]

    @property
    def overall(self) -> float | None:
        return rate(self.steps[-1].count, self.steps[0].count) if self.steps else None

    @property
    def previous_overall(self) -> float | None:
        return rate(self.steps[-1].previous_count, self.steps[0].previous_count) if self.steps else None

    @property
    def shares(self) -> list[tuple[StepFigure, float]]:
        """Each step with its count as a percentage of the first step's (the funnel chart's bar widths)."""
        first = self.steps[0].count if self.steps else 0
        return [(figure, min(100.0, 100 * figure.count / first) if first else 0.0) for figure in self.steps]

    @property
    def change_points(self) -> float | None:
        """Percentage points up (+) or down (-) against the previous period."""
        if self.overall is None or self.previous_overall is None:
            return None
        return 100 * (self.overall - self.previous_overall)


@dataclass
class FunnelSummary:
    funnel: Funnel
    stale_reason: str
    periods: list[PeriodSummary] = field(default_factory=list)

    @property
    def stale(self) -> bool:
        return bool(self.stale_reason)


def funnel_summaries(funnels: list[Funnel] | None = None, *, today: date | None = None) -> list[FunnelSummary]:
    """Every enabled funnel's counts and rates for today, 7 and 30 days against the period before: one query."""
    if funnels is None:  # with what the Metrics page says each one reads
        funnels = list(Funnel.objects.filter(enabled=True).select_related("cluster", "node__cluster"))
    today = today or timezone.localdate()
    longest = max(days for _, days in PERIODS)
    sums = {}
    for _, days in PERIODS:
        start, previous = today - timedelta(days=days - 1), today - timedelta(days=2 * days - 1)
        sums[f"now_{days}"] = Sum("count", filter=Q(day__gte=start))
        sums[f"before_{days}"] = Sum("count", filter=Q(day__gte=previous, day__lt=start))
    rows = (
        FunnelDayCount.objects.filter(
            funnel__in=funnels, day__gte=today - timedelta(days=2 * longest - 1), day__lte=today
        )
        .values("funnel_id", "step")
        .annotate(**sums)
    )
    by_step: dict[tuple[int, str], Mapping[str, Any]] = {(row["funnel_id"], row["step"]): row for row in rows}
    now = timezone.now()
    summaries = []
    for funnel in funnels:
        summary = FunnelSummary(funnel, funnel.stale_reason(now))
        for label, days in PERIODS:
            figures: list[StepFigure] = []
            for step in funnel.steps:
                row = by_step.get((funnel.pk, step), {})
                count, before = row.get(f"now_{days}") or 0, row.get(f"before_{days}") or 0
                prior = figures[-1] if figures else None
                figures.append(
                    StepFigure(
                        step,
                        count,
                        before,
                        rate(count, prior.count) if prior else None,
                        rate(before, prior.previous_count) if prior else None,
                    )
                )
            summary.periods.append(PeriodSummary(label, days, figures))
        summaries.append(summary)
    return summaries


@dataclass(frozen=True)
class TrendPoint:
    at: datetime
    first: int  # how many entered the funnel
    last: int  # how many completed it

    @property
    def overall(self) -> float | None:
        return rate(self.last, self.first)


def funnel_trend(funnel: Funnel, *, range_name: str = DEFAULT_RANGE) -> list[TrendPoint]:
    """Entries, completions and overall conversion per hour (48h), day or week (1y, 2y), oldest first, gaps as
    zeros. Weeks start on Monday."""
    days, bucket = RANGES[range_name]
    first, last = funnel.steps[0], funnel.steps[-1]
    sums: dict[Any, dict[str, int]] = defaultdict(lambda: {first: 0, last: 0})
    if bucket == "hour":
        end = timezone.now().replace(minute=0, second=0, microsecond=0)
        start = end - timedelta(hours=24 * days - 1)
        hour_rows = FunnelHourCount.objects.filter(funnel=funnel, step__in=(first, last), hour__gte=start)
        for hour, step, count in hour_rows.values_list("hour", "step", "count"):
            sums[hour][step] += count
        return [
            TrendPoint(at, sums[at][first], sums[at][last])
            for at in (start + timedelta(hours=n) for n in range(24 * days))
        ]
    today = timezone.localdate()
    begin = today - timedelta(days=days - 1)
    width = 7 if bucket == "week" else 1
    begin -= timedelta(days=begin.weekday() if bucket == "week" else 0)
    day_rows = FunnelDayCount.objects.filter(funnel=funnel, step__in=(first, last), day__gte=begin, day__lte=today)
    for day, step, count in day_rows.values_list("day", "step", "count"):
        sums[day - timedelta(days=day.weekday() if bucket == "week" else 0)][step] += count
    origin = timezone.make_aware(datetime.combine(begin, time.min))
    slots = range(((today - begin).days // width) + 1)
    return [
        TrendPoint(origin + timedelta(days=n * width), sums[day][first], sums[day][last])
        for n, day in ((n, begin + timedelta(days=n * width)) for n in slots)
    ]


@dataclass(frozen=True)
class Marker:
    """Something that happened and may explain a change: a failover, a restore, a service going down."""

    at: datetime
    kind: str
    label: str
    url: str
    bad: bool


def timeline_markers(*, since: datetime, until: datetime | None = None) -> list[Marker]:
    """Operations of the marker kinds, incidents, and services going down that opened no incident, oldest
    first."""
    until = until or timezone.now()
    operations = (
        # queued before the range, started in it: look a day further back, keep what started in the range
        Operation.objects.filter(
            kind__in=MARKER_KINDS, created_at__gte=since - timedelta(days=1), created_at__lte=until
        )
        .exclude(Q(kind__in=MARKER_FAILED_ONLY) & ~Q(status=Operation.Status.FAILED))
        .order_by("-created_at")[:MAX_MARKERS]
    )
    markers = [
        Marker(
            op.started_at or op.created_at,
            op.kind,
            f"{MARKER_KINDS[op.kind]} {op.target} ({op.status})",
            reverse("core:operation", kwargs={"pk": op.pk}),
            op.status == Operation.Status.FAILED,
        )
        for op in operations
    ]
    incidents = list(
        Incident.objects.filter(opened_at__gte=since, opened_at__lte=until).order_by("-opened_at")[:MAX_MARKERS]
    )
    markers += [
        Marker(
            incident.opened_at,
            "incident",
            f"Incident #{incident.pk} {incident.severity}: {incident.title}"[:200],
            reverse("incidents:detail", kwargs={"pk": incident.pk}),
            True,
        )
        for incident in incidents
    ]
    # an outage that opened an incident is already marked by it (opened within a minute of the transition)
    opened = defaultdict(list)
    for incident in incidents:
        opened[incident.service_id].append(incident.opened_at)
    outages = (
        Transition.objects.filter(to_state=State.DOWN, at__gte=since, at__lte=until)
        .select_related("service")
        .order_by("-at")[:MAX_MARKERS]
    )
    markers += [
        Marker(
            t.at,
            "outage",
            f"{t.service.display_name} down: {t.reason}"[:200],
            reverse("status:service", kwargs={"name": t.service.name}),
            True,
        )
        for t in outages
        if not any(abs((at - t.at).total_seconds()) <= 60 for at in opened.get(t.service_id, ()))
    ]
    return sorted((marker for marker in markers if since <= marker.at <= until), key=lambda marker: marker.at)
