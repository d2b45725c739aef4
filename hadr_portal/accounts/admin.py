"""Sign-in attempts in the admin, for administrators (superusers) only: the names typed at failed sign-ins are in
them. Deleting an access attempt unlocks that account on that address at once (audited)."""

from __future__ import annotations

from typing import Any

from axes.admin import AccessAttemptAdmin, AccessFailureLogAdmin, AccessLogAdmin
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib import admin
from django.http import HttpRequest

from hadr_portal.core.admin import AuditedAdminMixin


class AdministratorsOnly:
    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AccessAttempt)
class LockoutAdmin(AdministratorsOnly, AuditedAdminMixin, AccessAttemptAdmin):
    """Failed attempts per account and address; the ones at the limit are lockouts."""

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)


@admin.register(AccessFailureLog)
class FailedSignInAdmin(AdministratorsOnly, AccessFailureLogAdmin):
    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AccessLog)
class SignInAdmin(AdministratorsOnly, AccessLogAdmin):
    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
