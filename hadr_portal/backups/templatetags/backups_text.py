"""Words for backup and restore pages."""

from __future__ import annotations

from django import template

from hadr_portal.core.humanize import duration_text

register = template.Library()


@register.filter
def duration(seconds: float | None) -> str:
    """Seconds as "14 s", "12 min", "3.5 h"; "—" when unknown."""
    return "—" if seconds is None else duration_text(float(seconds))
