"""Admin: administrators manage users and roles here. Every change made in the admin is audited, with its
fields; audit entries and operations are read-only (and so are the Errors page's rows, metrics.admin)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, time
from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.db.models import Model, QuerySet
from django.forms import ModelChoiceField, ModelMultipleChoiceField
from django.http import HttpRequest

from .audit import audit_record
from .models import AuditEntry, Operation
from .operations import client_address


class AuditedAdminMixin:
    """Every add, change and delete made through the admin also lands in the audit log (core.audit), with what
    changed: each changed field's old and new value, the inline rows added, changed or deleted, and a deleted
    object's values. Values are redacted like every audit parameter (a `password` or `token` field is hidden
    whole). `audit_every_admin()` applies it to every registered model, the third-party ones included."""

    def _audit(self, request: HttpRequest, obj: Model, verb: str, detail: str = "", changes: Any = None) -> None:
        audit_record(
            actor=request.user,
            action=f"admin.{obj._meta.model_name}.{verb}",
            target=f"{obj._meta.model_name}:{obj}"[:200],
            outcome=AuditEntry.Outcome.SUCCESS,
            address=client_address(request),
            parameters=changes or {},
            detail=detail,
        )

    def construct_change_message(self, request: HttpRequest, form: Any, formsets: Any, add: bool = False) -> Any:
        # called right before log_addition / log_change, with the forms they do not receive
        _pending(request).append(admin_changes(form, formsets or (), add=add))
        return super().construct_change_message(request, form, formsets, add)  # type: ignore[misc]  # ModelAdmin's (MRO)

    def log_addition(self, request: HttpRequest, obj: Model, message: Any) -> Any:
        self._audit(request, obj, "add", changes=_take(request))
        return super().log_addition(request, obj, message)  # type: ignore[misc]  # ModelAdmin's (MRO)

    def log_change(self, request: HttpRequest, obj: Model, message: Any) -> Any:
        changed = [field for entry in message or [] for field in entry.get("changed", {}).get("fields", [])]
        detail = f"changed: {', '.join(changed)}" if changed else ""
        self._audit(request, obj, "change", detail, changes=_take(request))
        return super().log_change(request, obj, message)  # type: ignore[misc]  # ModelAdmin's (MRO)

    def log_deletions(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        for obj in queryset:
            self._audit(request, obj, "delete", changes={"deleted": object_values(obj)})
        return super().log_deletions(request, queryset)  # type: ignore[misc]  # ModelAdmin's (MRO)


def audit_every_admin(site: admin.AdminSite = admin.site) -> None:
    """Give every ModelAdmin registered on `site` the audit mixin (in place: the registry keeps its instances).
    Called once the admin modules of every app are loaded (CoreConfig.ready); models registered by other
    packages (two-factor devices, sign-in attempts) are audited like the portal's own."""
    for model_admin in site._registry.values():
        cls = type(model_admin)
        if not isinstance(model_admin, AuditedAdminMixin):
            model_admin.__class__ = type(cls.__name__, (AuditedAdminMixin, cls), {"__module__": cls.__module__})


def admin_changes(form: Any, formsets: Any, *, add: bool) -> dict[str, Any]:
    """What one admin form (and its inlines) changed, as JSON: {"fields": {...}, "inlines": [...]}."""
    changes: dict[str, Any] = {}
    if fields := _form_changes(form, add=add):
        changes["fields"] = fields
    rows: list[dict[str, Any]] = []
    for formset in formsets:
        forms_by_object = {id(inline.instance): inline for inline in formset.forms}
        name = formset.model._meta.model_name
        for obj in getattr(formset, "new_objects", []):
            rows.append({"row": f"{name}:{obj}", "added": _form_changes(forms_by_object.get(id(obj)), add=True)})
        for obj, _ in getattr(formset, "changed_objects", []):
            rows.append({"row": f"{name}:{obj}", "changed": _form_changes(forms_by_object.get(id(obj)), add=False)})
        for obj in getattr(formset, "deleted_objects", []):
            rows.append({"row": f"{name}:{obj}", "deleted": object_values(obj)})
    if rows:
        changes["inlines"] = rows
    return changes


def object_values(obj: Model) -> dict[str, Any]:
    """A model instance's stored values, as JSON (related rows by id)."""
    return {field.attname: _plain(field.value_from_object(obj)) for field in obj._meta.concrete_fields}


def _form_changes(form: Any, *, add: bool) -> dict[str, Any]:
    if form is None or not hasattr(form, "cleaned_data"):
        return {}
    changes: dict[str, Any] = {}
    for name in form.changed_data:
        field = form.fields.get(name)
        new = _shown(form.cleaned_data.get(name), field)
        changes[name] = new if add else {"from": _shown(form[name].initial, field), "to": new}
    return changes


def _shown(value: Any, field: Any) -> Any:
    """A form value as the audit log keeps it: related rows by name (an initial value may be only their ids)."""
    queryset = field.queryset if isinstance(field, ModelChoiceField) else None
    try:
        if isinstance(field, ModelMultipleChoiceField) and isinstance(value, list | tuple):
            if queryset is not None and not all(isinstance(item, Model) for item in value):
                value = list(queryset.filter(pk__in=[getattr(item, "pk", item) for item in value]))
        elif queryset is not None and value not in (None, "") and not isinstance(value, Model):
            value = queryset.filter(pk=value).first() or value
    except (TypeError, ValueError):  # not an id after all: keep it as it is
        pass
    return _plain(value)


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Model):
        return str(value)
    if isinstance(value, date | time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, QuerySet | list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    return str(value)


def _pending(request: HttpRequest) -> list[dict[str, Any]]:
    # The changes wait on the request itself, an attribute Django does not declare.
    if not hasattr(request, "_admin_changes"):
        request._admin_changes = []  # type: ignore[attr-defined]
    return request._admin_changes  # type: ignore[attr-defined,no-any-return]


def _take(request: HttpRequest) -> dict[str, Any]:
    pending = _pending(request)
    return pending.pop() if pending else {}


admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class AuditedUserAdmin(AuditedAdminMixin, UserAdmin):  # type: ignore[type-arg]  # generic in the stubs only
    list_display = ("username", "email", "is_active", "is_superuser", "roles", "last_login")

    @admin.display(description="Roles")
    def roles(self, user: User) -> str:
        return ", ".join(group.name for group in user.groups.all())


@admin.register(Group)
class AuditedGroupAdmin(AuditedAdminMixin, GroupAdmin):
    pass


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # generic in the stubs only
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
