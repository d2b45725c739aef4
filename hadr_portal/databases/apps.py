from __future__ import annotations

from django.apps import AppConfig

from hadr_portal.core import registry
from hadr_portal.core.registry import Banner, DashboardSection, PeriodicTask, Setting


class DatabasesConfig(AppConfig):
    """Managed PostgreSQL clusters, their nodes, and the operations on them."""

    name = "hadr_portal.databases"
    label = "databases"

    def ready(self) -> None:
        from .catalog import CATALOG_SECTIONS
        from .connectivity import CONNECTIVITY_CHECK
        from .failover import FAILOVER
        from .patroni_ops import HA_KINDS
        from .rebuild import REBUILD_REPLICA
        from .sections import databases_section_html, paused_banners

        for kind in (CONNECTIVITY_CHECK, FAILOVER, REBUILD_REPLICA, *HA_KINDS):
            registry.operation_kinds.register(kind)
        registry.dashboard_sections.register(DashboardSection(name="clusters", order=20, render=databases_section_html))
        registry.banners.register(Banner(name="maintenance mode", messages=paused_banners))
        # a row a second on every cluster: measured RTO and RPO of every leader change (databases.writeprobe)
        registry.periodic_tasks.register(
            PeriodicTask(
                "write probe",
                "hadr_portal.databases.tasks.write_probe",
                Setting("WRITE_PROBE_SECONDS"),
                queue="checks",
                expires=Setting("WRITE_PROBE_SECONDS"),
            )
        )
        registry.periodic_tasks.register(
            PeriodicTask(
                "queue scheduled switchover drills",
                "hadr_portal.databases.tasks.switchover_drills",
                30.0,
                expires=30.0,
            )
        )
        for section in CATALOG_SECTIONS:
            registry.catalog_sections.register(section)
