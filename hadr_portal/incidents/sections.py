"""Dashboard sections below the service tiles: open incidents and the DR readiness summary.

Nothing user-specific: they are cached and shared with the other sections (dashboard/cache.py); incident
changes bump the dashboard's version so a new incident shows at once.
"""

from __future__ import annotations

from django.template.loader import render_to_string

from .models import Incident
from .recovery import readiness_matrix


def incidents_section_html() -> str:
    incidents = Incident.objects.exclude(status=Incident.Status.RESOLVED).select_related("service")[:20]
    return render_to_string("incidents/_incidents_section.html", {"incidents": incidents})


def readiness_section_html() -> str:
    return render_to_string("incidents/_readiness_matrix.html", {"rows": readiness_matrix(), "compact": True})
