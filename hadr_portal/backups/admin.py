"""Admin for storage targets and backup policies (audited); backups are read-only records."""

from __future__ import annotations

from django.contrib import admin

from hadr_portal.core.admin import AuditedAdminMixin, ReadOnlyAdmin

from .models import Backup, BackupPolicy, StorageTarget


@admin.register(StorageTarget)
class StorageTargetAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("name", "kind", "config")


@admin.register(BackupPolicy)
class BackupPolicyAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = (
        "name",
        "cluster",
        "dbname",
        "engine",
        "storage",
        "schedule",
        "enabled",
        "retention",
        "rpo_minutes",
        "next_run_at",
    )
    list_filter = ("engine", "enabled", "retention")


@admin.register(Backup)
class BackupAdmin(ReadOnlyAdmin):
    list_display = ("id", "policy", "kind", "status", "started_at", "size", "sha256", "pinned")
    list_filter = ("status", "kind", "policy")
