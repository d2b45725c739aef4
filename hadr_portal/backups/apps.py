from __future__ import annotations

from django.apps import AppConfig


class BackupsConfig(AppConfig):
    """Backup policies, backups, retention, and (later) restores and restore drills."""

    name = "hadr_portal.backups"
    label = "backups"

    def ready(self) -> None:
        from . import operations  # noqa: F401  (registers the kinds of operation)
