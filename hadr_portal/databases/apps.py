from __future__ import annotations

from django.apps import AppConfig

from hadr_portal.core import registry
from hadr_portal.core.registry import DashboardSection


class DatabasesConfig(AppConfig):
    """Managed PostgreSQL clusters, their nodes, and the operations on them."""

    name = "hadr_portal.databases"
    label = "databases"

    def ready(self) -> None:
        from .catalog import CATALOG_SECTIONS
        from .connectivity import CONNECTIVITY_CHECK
        from .failover import FAILOVER
        from .rebuild import REBUILD_REPLICA
        from .sections import databases_section_html

        for kind in (CONNECTIVITY_CHECK, FAILOVER, REBUILD_REPLICA):
            registry.operation_kinds.register(kind)
        registry.dashboard_sections.register(DashboardSection(name="clusters", order=20, render=databases_section_html))
        for section in CATALOG_SECTIONS:
            registry.catalog_sections.register(section)
