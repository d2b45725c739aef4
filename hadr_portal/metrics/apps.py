from __future__ import annotations

from django.apps import AppConfig

from hadr_portal.core import registry
from hadr_portal.core.registry import DashboardSection, PeriodicTask, Setting


class MetricsConfig(AppConfig):
    """Onboarding funnel, host and database resources, critical errors, Prometheus export."""

    name = "hadr_portal.metrics"
    label = "metrics"

    def ready(self) -> None:
        from .catalog import CATALOG_SECTIONS
        from .conversion import conversion_section_html

        for section in CATALOG_SECTIONS:
            registry.catalog_sections.register(section)
        registry.dashboard_sections.register(
            DashboardSection(name="conversion", order=30, render=conversion_section_html)
        )
        for task in (
            # a collection that waited longer than its period is dropped: the next one reads the same funnels
            PeriodicTask(
                "collect due funnels on their replicas", "hadr_portal.metrics.tasks.funnels_collect", 30.0, expires=30.0
            ),
            PeriodicTask(
                "sample managed database sizes",
                "hadr_portal.metrics.tasks.database_sizes_sample",
                Setting("DB_SIZE_INTERVAL"),
            ),
            PeriodicTask("prune metrics history and logged errors", "hadr_portal.metrics.tasks.metrics_prune", 3600.0),
        ):
            registry.periodic_tasks.register(task)
