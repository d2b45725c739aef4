"""Durations in the words an operator reads at a glance (sizes: adapters.probes.format_bytes, which the adapters
use themselves)."""

from __future__ import annotations


def duration_text(seconds: float, *, coarse: bool = False) -> str:
    """A duration in words a tired person reads at once: "14 s", "12 min", "3.5 h", "2.0 days".

    Below 90 s in seconds; `coarse` never says seconds ("1 min" at least), for ages and objectives where
    seconds are noise ("last good backup 3 min ago", "RPO 24.0 h")."""
    if seconds < 90 and not coarse:
        return f"{max(0, round(seconds))} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{max(1, whole // 60)} min"
    if whole < 2 * 86400:
        return f"{whole / 3600:.1f} h"
    return f"{whole / 86400:.1f} days"
