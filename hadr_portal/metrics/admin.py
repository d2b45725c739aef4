from __future__ import annotations

from django.contrib import admin

from .models import Funnel, LoggedError


@admin.register(Funnel)
class FunnelAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "source", "cluster", "node", "interval_seconds", "enabled", "last_success_at", "last_error")
    readonly_fields = ("next_run_at", "last_attempt_at", "last_success_at", "last_error")


@admin.register(LoggedError)
class LoggedErrorAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("at", "level", "logger", "message", "operation_id")
    list_filter = ("level",)

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False
