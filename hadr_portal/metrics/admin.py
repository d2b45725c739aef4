from __future__ import annotations

from django.contrib import admin

from hadr_portal.core.admin import ReadOnlyAdmin

from .models import Funnel, LoggedError


@admin.register(Funnel)
class FunnelAdmin(admin.ModelAdmin):
    """The cluster and node a funnel reads are chosen from the catalog; `Funnel.clean` keeps the node in its
    cluster."""

    list_select_related = ("cluster", "node__cluster")
    list_display = ("name", "source", "cluster", "node", "interval_seconds", "enabled", "last_success_at", "last_error")
    readonly_fields = ("next_run_at", "last_attempt_at", "last_success_at", "last_error")


@admin.register(LoggedError)
class LoggedErrorAdmin(ReadOnlyAdmin):
    """The Errors page's record: read-only, not even deletable (nor is there a delete action); only the
    retention task (HADR_ERROR_LOG_KEEP) prunes it."""

    list_display = ("at", "level", "logger", "message", "operation_id")
    list_filter = ("level",)
