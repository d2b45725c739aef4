from __future__ import annotations

from django.apps import AppConfig

from . import registry
from .registry import PeriodicTask, Setting


class CoreConfig(AppConfig):
    """Roles and permissions, the audit log, operations (persisted runs of long actions)."""

    name = "hadr_portal.core"
    label = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (audit of sign-ins)
        from .admin import audit_every_admin

        # every app's admin module is loaded by now (the admin app, listed first, loads them in its ready())
        audit_every_admin()
        registry.periodic_tasks.register(
            PeriodicTask(
                "reap stale operations", "hadr_portal.core.tasks.operations_reap", Setting("OPERATION_REAPER_INTERVAL")
            )
        )
        # what the broker could not take when it was asked (core.dispatch); a pass that waited is dropped
        registry.periodic_tasks.register(
            PeriodicTask(
                "send the outbox",
                "hadr_portal.core.tasks.outbox_drain",
                Setting("OUTBOX_DRAIN_SECONDS"),
                expires=Setting("OUTBOX_DRAIN_SECONDS"),
            )
        )
        registry.periodic_tasks.register(
            PeriodicTask("forget sent outbox messages", "hadr_portal.core.tasks.outbox_prune", 3600.0)
        )
