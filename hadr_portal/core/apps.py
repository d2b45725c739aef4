from __future__ import annotations

from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Roles and permissions, the audit log, operations (persisted runs of long actions)."""

    name = "hadr_portal.core"
    label = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        # Importing the Celery app makes it the current app in every process (web included),
        # so `.apply_async()` reaches Redis rather than Celery's default broker.
        from hadr_portal import celery  # noqa: F401

        from . import signals  # noqa: F401  (audit of sign-ins)
        from .admin import audit_every_admin

        # every app's admin module is loaded by now (the admin app, listed first, loads them in its ready())
        audit_every_admin()
