"""Server-rendered SVG time charts: lines, bars, threshold lines and event markers — no chart library, no CDN.

One function draws every time chart of the metrics pages; the x axis is time, the y axis starts at 0.
Values are placed in a fixed viewBox and the SVG stretches to its container (`preserveAspectRatio="none"`),
so lines keep a constant width with `vector-effect="non-scaling-stroke"`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 1000.0, 160.0


@dataclass(frozen=True)
class Line:
    points: Sequence[tuple[datetime, float | None]]  # None: a gap
    css: str = "line"


@dataclass(frozen=True)
class Rule:
    """A horizontal line at a value (a threshold)."""

    value: float
    label: str
    css: str = "rule-warning"


@dataclass(frozen=True)
class Event:
    """A vertical marker: when, what (tooltip), where it links to."""

    at: datetime
    label: str
    url: str = ""
    bad: bool = False


@dataclass
class TimeChart:
    start: datetime
    end: datetime
    top: float  # the y value at the top edge
    label: str  # for screen readers
    lines: list[Line] = field(default_factory=list)
    bars: Sequence[tuple[datetime, float]] = ()
    bars_top: float | None = None  # bars have their own scale
    rules: list[Rule] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def x(self, at: datetime) -> float:
        span = max(1.0, (self.end - self.start).total_seconds())
        return (at - self.start).total_seconds() / span * WIDTH

    def y(self, value: float, top: float | None = None) -> float:
        top = top or self.top or 1.0
        return HEIGHT - min(value, top) / top * (HEIGHT - 6) - 1

    def svg(self) -> SafeString:
        parts: list[str] = []
        if self.bars:
            slot = WIDTH / max(1, len(self.bars))
            top = self.bars_top or max((value for _, value in self.bars), default=0) or 1.0
            for at, value in self.bars:
                if value:
                    y = self.y(value, top)
                    parts.append(
                        f'<rect class="bar" x="{self.x(at):.1f}" y="{y:.1f}" width="{max(slot * 0.8, 0.5):.1f}" '
                        f'height="{HEIGHT - 1 - y:.1f}"/>'
                    )
        for rule in self.rules:
            y = self.y(rule.value)
            parts.append(
                f'<line class="{rule.css}" x1="0" x2="{WIDTH}" y1="{y:.1f}" y2="{y:.1f}" '
                f'vector-effect="non-scaling-stroke"><title>{escape(rule.label)}</title></line>'
            )
        for line in self.lines:
            for run in _runs(line.points):
                coords = " ".join(f"{self.x(at):.1f},{self.y(value):.1f}" for at, value in run)
                parts.append(
                    f'<polyline class="{line.css}" fill="none" vector-effect="non-scaling-stroke" points="{coords}"/>'
                )
        for event in self.events:
            x = self.x(event.at)
            mark = (
                f'<line class="event{" event-bad" if event.bad else ""}" x1="{x:.1f}" x2="{x:.1f}" y1="0" '
                f'y2="{HEIGHT}" vector-effect="non-scaling-stroke"><title>{escape(event.label)}</title></line>'
            )
            parts.append(f'<a href="{escape(event.url)}">{mark}</a>' if event.url else mark)
        return format_html(
            '<svg class="chart metrics-chart" viewBox="0 0 {} {}" preserveAspectRatio="none" role="img" '
            'aria-label="{}">{}</svg>',
            int(WIDTH),
            int(HEIGHT),
            self.label,
            mark_safe("".join(parts)),  # noqa: S308 - built above from numbers and escaped labels
        )


def _runs(points: Sequence[tuple[datetime, float | None]]) -> list[list[tuple[datetime, float]]]:
    """The stretches of consecutive points that have values (a gap breaks the line)."""
    runs: list[list[tuple[datetime, float]]] = [[]]
    for at, value in points:
        if value is None:
            runs.append([])
        else:
            runs[-1].append((at, value))
    return [run for run in runs if run]
