from __future__ import annotations

from django.apps import AppConfig

from hadr_portal.core import registry
from hadr_portal.core.permissions import Action
from hadr_portal.core.registry import DashboardSection, PeriodicTask, Setting


class StatusConfig(AppConfig):
    """Service catalog, health checks and their history, alerts, service restarts, the services section."""

    name = "hadr_portal.status"
    label = "status"

    def ready(self) -> None:
        from . import alerts  # noqa: F401  (signal receivers)
        from .catalog import CATALOG_SECTIONS
        from .restart import RESTART_SERVICE
        from .runbook_actions import RUNBOOK_ACTIONS
        from .sections import services_section_html, services_section_with_restart_html

        registry.operation_kinds.register(RESTART_SERVICE)
        for section in CATALOG_SECTIONS:
            registry.catalog_sections.register(section)
        for action in RUNBOOK_ACTIONS:
            registry.runbook_actions.register(action)
        registry.dashboard_sections.register(
            DashboardSection(
                name="services",
                order=10,
                render=services_section_html,
                buttons_need=Action.RESTART_SERVICE,
                render_with_buttons=services_section_with_restart_html,
            )
        )
        tick = Setting("CHECK_TICK_SECONDS")
        for task in (
            # A tick that waited longer than one period is useless: the next one claims the same checks.
            PeriodicTask(
                "run due health checks", "hadr_portal.status.tasks.checks_tick", tick, queue="checks", expires=tick
            ),
            PeriodicTask("roll up and prune check results", "hadr_portal.status.tasks.results_rollup", 60.0),
            PeriodicTask("beat heartbeat", "hadr_portal.status.tasks.beat_heartbeat", 60.0),
            PeriodicTask(
                "queue scheduled restart drills", "hadr_portal.status.tasks.restart_drills", 30.0, expires=30.0
            ),
        ):
            registry.periodic_tasks.register(task)
