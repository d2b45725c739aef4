"""Small server-rendered SVG charts: no chart library, no CDN, nothing to load."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from hadr_portal.adapters.probes import format_bytes

register = template.Library()


def _points(values: Sequence[float], width: float, height: float, top: float | None = None) -> str:
    if not values:
        return ""
    high = top if top is not None else max(values) or 1.0
    step = width / max(1, len(values) - 1)
    return " ".join(f"{i * step:.1f},{height - (v / high) * (height - 2) - 1:.1f}" for i, v in enumerate(values))


@register.simple_tag
def sparkline(values: Sequence[float], width: int = 120, height: int = 28) -> SafeString:
    """A latency sparkline; the label says the newest value."""
    if not values:
        return mark_safe('<span class="muted">—</span>')
    return format_html(
        '<svg class="spark" width="{}" height="{}" viewBox="0 0 {} {}" role="img" aria-label="latency, last {} ms">'
        '<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{}"/></svg>',
        width,
        height,
        width,
        height,
        f"{values[-1]:.0f}",
        _points(values, width, height),
    )


@register.simple_tag
def latency_chart(
    points: Sequence[tuple[datetime, float]], width: int = 720, height: int = 140, unit: str = "ms"
) -> SafeString:
    """A value over time with its scale; x is time (24 h), y is milliseconds (or bytes with unit="bytes")."""
    if not points:
        what = "latency" if unit == "ms" else "value"
        return format_html('<p class="muted">No {} recorded in the last 24 hours.</p>', what)
    start, end = points[0][0], points[-1][0]
    span = max(1.0, (end - start).total_seconds())
    top = max(v for _, v in points) or 1.0
    coords = " ".join(
        f"{(at - start).total_seconds() / span * width:.1f},{height - v / top * (height - 4) - 2:.1f}"
        for at, v in points
    )
    label = format_bytes(int(top)) if unit == "bytes" else f"{top:.0f} {unit}"
    return format_html(
        '<svg class="chart" width="100%" viewBox="0 0 {} {}" preserveAspectRatio="none" role="img" '
        'aria-label="chart, max {}"><polyline fill="none" stroke="currentColor" stroke-width="1.2" '
        'vector-effect="non-scaling-stroke" points="{}"/></svg>'
        '<div class="chart-scale"><span>{}</span><span>max {}</span><span>{}</span></div>',
        width,
        height,
        label,
        coords,
        start.strftime("%H:%M"),
        label,
        end.strftime("%H:%M"),
    )


@register.filter
def bytes_or_dash(value: float | Literal[""] | None) -> str:
    """A byte count, or a dash when there is none (None, or a key the probe did not report: "")."""
    return "—" if value is None or value == "" else format_bytes(value)


@register.filter
def get_item(mapping: dict[Any, Any], key: object) -> object:
    return mapping.get(key)


@register.filter
def pretty_json(value: object) -> str:
    import json

    return json.dumps(value, indent=2, sort_keys=True, default=str)
