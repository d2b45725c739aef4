"""Template tags for the metrics pages' charts and figures (SVG from metrics.charts)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from hadr_portal.adapters.probes import format_bytes
from hadr_portal.metrics.charts import Event, Line, Rule, TimeChart
from hadr_portal.metrics.selectors import Marker, TrendPoint

register = template.Library()


def _scale(start: datetime, end: datetime, fmt: str, middle: str = "") -> SafeString:
    return format_html(
        '<div class="chart-scale"><span>{}</span><span>{}</span><span>{}</span></div>',
        timezone.localtime(start).strftime(fmt),
        middle,
        timezone.localtime(end).strftime(fmt),
    )


@register.simple_tag
def trend_chart(points: Sequence[TrendPoint], markers: Sequence[Marker], bucket: str = "day") -> SafeString:
    """Bars: how many entered the funnel; line: overall conversion; vertical lines: events, linked."""
    if not points:
        return mark_safe('<p class="muted">No counts in this range.</p>')
    step = points[1].at - points[0].at if len(points) > 1 else None
    end = points[-1].at + step if step else points[-1].at
    rates = [(p.at, None if p.overall is None else 100 * p.overall) for p in points]
    # the line uses the chart's height: a 20 % rate on a 0-100 % scale would be a flat line at the bottom
    top = max([1.0, *(value for _, value in rates if value is not None)]) * 1.15
    chart = TimeChart(
        start=points[0].at,
        end=end,
        top=top,
        label=f"overall conversion and entries per {bucket}",
        lines=[Line([(at + step / 2 if step else at, value) for at, value in rates], "line")],
        bars=[(p.at, float(p.first)) for p in points],
        events=[Event(m.at, m.label, m.url, m.bad) for m in markers if points[0].at <= m.at <= end],
    )
    most = max(p.first for p in points)
    middle = f"per {bucket} · line: overall conversion (top {top:.0f} %) · bars: entries (top {most}) · vertical lines: events"
    return chart.svg() + _scale(points[0].at, end, "%d %b %H:%M" if bucket == "hour" else "%d %b %Y", middle)


@register.simple_tag
def percent_chart(chart: dict[str, Any], start: datetime, end: datetime) -> SafeString:
    """A host resource in percent over time, with its warning and critical thresholds."""
    thresholds = chart["thresholds"]
    rules = [
        Rule(thresholds["warning"], f"warning {thresholds['warning']:g} %", "rule-warning"),
        Rule(thresholds["critical"], f"critical {thresholds['critical']:g} %", "rule-critical"),
    ]
    svg = TimeChart(start, end, 100.0, f"{chart['title']} in percent", [Line(chart["points"])], rules=rules).svg()
    return svg + _scale(start, end, "%d %b %H:%M")


@register.simple_tag
def size_chart(points: Sequence[tuple[datetime, int]], start: datetime, end: datetime) -> SafeString:
    """A database's size over time; y from 0 to its largest size."""
    if len(points) < 2:
        return mark_safe('<p class="muted small">One sample so far: the chart starts with the second.</p>')
    top = float(max(size for _, size in points)) or 1.0
    svg = TimeChart(start, end, top * 1.05, "database size", [Line([(at, float(v)) for at, v in points])]).svg()
    return svg + _scale(start, end, "%d %b %H:%M", f"top {format_bytes(top)}")


@register.filter
def percent(value: float | None, digits: int = 1) -> str:
    """0.4213 → "42.1 %"; None → "—"."""
    return "—" if value is None else f"{100 * value:.{digits}f} %"


@register.filter
def points_change(value: float | None) -> str:
    """+2.3 → "▲ 2.3 pts", -1 → "▼ 1.0 pts", None → ""."""
    if value is None:
        return ""
    if abs(value) < 0.05:
        return "= 0.0 pts"
    return f"{'▲' if value > 0 else '▼'} {abs(value):.1f} pts"


@register.filter
def signed_bytes(value: int | None) -> str:
    if value is None:
        return "—"
    return ("+" if value >= 0 else "−") + format_bytes(abs(value))
