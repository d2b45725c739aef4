"""Admin: administrators manage users and roles here, audited; audit entries and operations are read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from .audit import audit_record
from .models import AuditEntry, Operation
from .operations import client_address


class AuditedAdminMixin:
    """Every add, change and delete made through the admin also lands in the audit log."""

    def _audit(self, request: HttpRequest, obj: Model, verb: str, detail: str = "") -> None:
        audit_record(
            actor=request.user,
            action=f"admin.{obj._meta.model_name}.{verb}",
            target=f"{obj._meta.model_name}:{obj}",
            outcome=AuditEntry.Outcome.SUCCESS,
            address=client_address(request),
            detail=detail,
        )

    def log_addition(self, request: HttpRequest, obj: Model, message: Any) -> Any:
        self._audit(request, obj, "add")
        return super().log_addition(request, obj, message)  # type: ignore[misc]

    def log_change(self, request: HttpRequest, obj: Model, message: Any) -> Any:
        changed = [field for entry in message or [] for field in entry.get("changed", {}).get("fields", [])]
        self._audit(request, obj, "change", f"changed: {', '.join(changed)}" if changed else "")
        return super().log_change(request, obj, message)  # type: ignore[misc]

    def log_deletions(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        for obj in queryset:
            self._audit(request, obj, "delete")
        return super().log_deletions(request, queryset)  # type: ignore[misc]


admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class AuditedUserAdmin(AuditedAdminMixin, UserAdmin):
    list_display = ("username", "email", "is_active", "is_superuser", "roles", "last_login")

    @admin.display(description="Roles")
    def roles(self, user: User) -> str:
        return ", ".join(group.name for group in user.groups.all())


@admin.register(Group)
class AuditedGroupAdmin(AuditedAdminMixin, GroupAdmin):
    pass


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("at", "actor_name", "action", "target", "outcome", "address")
    list_filter = ("outcome", "action")
    search_fields = ("actor_name", "action", "target", "detail")


@admin.register(Operation)
class OperationAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "target", "status", "progress", "created_at", "requested_by")
    list_filter = ("status", "kind")
