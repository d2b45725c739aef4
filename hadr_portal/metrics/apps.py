from __future__ import annotations

from django.apps import AppConfig


class MetricsConfig(AppConfig):
    """Onboarding funnel, host and database resources, critical errors, Prometheus export."""

    name = "hadr_portal.metrics"
    label = "metrics"

    def ready(self) -> None:
        from hadr_portal.status.board import board_section_register

        from .tiles import conversion_tiles_html

        board_section_register(conversion_tiles_html)
