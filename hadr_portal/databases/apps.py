from __future__ import annotations

from django.apps import AppConfig


class DatabasesConfig(AppConfig):
    """Managed PostgreSQL clusters, their nodes, and the operations on them."""

    name = "hadr_portal.databases"
    label = "databases"

    def ready(self) -> None:
        from . import failover, operations, rebuild  # noqa: F401  (register the kinds of operation)
