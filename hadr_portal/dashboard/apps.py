from __future__ import annotations

from django.apps import AppConfig


class DashboardConfig(AppConfig):
    """The home page, composed from `core.registry.dashboard_sections`: the only app above the others, so no
    app depends on it (each registers its section and bumps `core.dashboard_version`)."""

    name = "hadr_portal.dashboard"
    label = "dashboard"
