from __future__ import annotations

from django.apps import AppConfig


class IncidentsConfig(AppConfig):
    """Incidents and their timeline, contacts and escalation, postmortems, recovery priorities and readiness."""

    name = "hadr_portal.incidents"
    label = "incidents"

    def ready(self) -> None:
        from hadr_portal.status.board import board_section_register

        from . import receivers  # noqa: F401 - transitions, operations and alerts join the timeline
        from .sections import incidents_section_html, readiness_section_html

        board_section_register(incidents_section_html)
        board_section_register(readiness_section_html)
