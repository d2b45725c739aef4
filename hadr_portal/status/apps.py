from __future__ import annotations

from django.apps import AppConfig


class StatusConfig(AppConfig):
    """Service catalog, health checks and their history, the status dashboard, alerts."""

    name = "hadr_portal.status"
    label = "status"

    def ready(self) -> None:
        # signal receivers, and the restart kind of operation
        from . import alerts, board, restart  # noqa: F401
