"""The conversion section of the Dashboard: a tile per funnel, beside the health of what produces its numbers."""

from __future__ import annotations

from django.template.loader import render_to_string

from .selectors import funnel_summaries


def conversion_section_html() -> str:
    """A dashboard section, shared and cached with the others (dashboard.cache): nothing user-specific."""
    summaries = funnel_summaries()
    if not summaries:
        return ""
    return render_to_string("metrics/_conversion_section.html", {"summaries": summaries})
