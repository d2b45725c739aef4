from __future__ import annotations

from django.apps import AppConfig


class DatabasesConfig(AppConfig):
    """Managed PostgreSQL clusters, their nodes, and the operations on them."""

    name = "hadr_portal.databases"
    label = "databases"

    def ready(self) -> None:
        from hadr_portal.status.board import board_section_register

        from . import failover, operations, rebuild  # noqa: F401  (register the kinds of operation)
        from .board import databases_section_html

        board_section_register(databases_section_html)
