from __future__ import annotations

from django.apps import AppConfig

from hadr_portal.core import registry
from hadr_portal.core.registry import DashboardSection, PeriodicTask, RecoveryMoments


class IncidentsConfig(AppConfig):
    """Incidents and their timeline, contacts and escalation, postmortems, recovery priorities and readiness."""

    name = "hadr_portal.incidents"
    label = "incidents"

    def ready(self) -> None:
        from . import receivers  # noqa: F401 - transitions, operations and alerts join the timeline
        from .catalog import CATALOG_SECTIONS
        from .runbook_actions import RUNBOOK_ACTIONS
        from .sections import incidents_section_html, readiness_section_html
        from .selectors import incident_moments

        for action in RUNBOOK_ACTIONS:
            registry.runbook_actions.register(action)
        for section in CATALOG_SECTIONS:
            registry.catalog_sections.register(section)
        registry.dashboard_sections.register(
            DashboardSection(name="incidents", order=40, render=incidents_section_html)
        )
        registry.dashboard_sections.register(
            DashboardSection(name="readiness", order=50, render=readiness_section_html)
        )
        registry.recovery_moments.register(RecoveryMoments(name="incidents", moments=incident_moments))
        registry.periodic_tasks.register(
            # a reminder pass that waited longer than a minute is dropped: the next one sends the same reminders
            PeriodicTask(
                "escalate unacknowledged incidents",
                "hadr_portal.incidents.tasks.escalations_remind",
                60.0,
                expires=60.0,
            )
        )
