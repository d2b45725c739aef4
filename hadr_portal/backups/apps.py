from __future__ import annotations

from django.apps import AppConfig


class BackupsConfig(AppConfig):
    """Backup policies, backups, retention, restores and restore drills."""

    name = "hadr_portal.backups"
    label = "backups"

    def ready(self) -> None:
        from . import operations, restores  # noqa: F401  (register the kinds of operation)
