"""Roles and the permission matrix: the one place that says who may do what.

Roles are Django groups; an account may hold several (one person often wears every hat).
Superusers may do everything. Views, services and templates all ask `user_can()`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied

if TYPE_CHECKING:
    from typing import TypeAlias

    from django.contrib.auth.models import AnonymousUser, User
    from django.http import HttpRequest, HttpResponse

    # Whoever asks: an account (the portal uses Django's own user model) or a visitor not signed in.
    Actor: TypeAlias = User | AnonymousUser


class Role(enum.StrEnum):
    DEVOPS = "DevOps"
    DBA = "DBA"
    DEVELOPER = "Developer"
    PRODUCT_MANAGER = "Product Manager"
    VIEWER = "Viewer"


class Action(enum.StrEnum):
    """Everything that changes state. Reading is allowed to every signed-in account."""

    CONNECTIVITY_CHECK = "connectivity_check"
    CANCEL_OPERATION = "cancel_operation"
    RESTART_SERVICE = "restart_service"
    RUN_BACKUP = "run_backup"
    PIN_BACKUP = "pin_backup"
    PRUNE_BACKUPS = "prune_backups"
    DOWNLOAD_BACKUP = "download_backup"
    RESTORE = "restore"
    CREATE_RESTORE_POINT = "create_restore_point"
    FAILOVER = "failover"
    REBUILD_REPLICA = "rebuild_replica"
    EDIT_CATALOG = "edit_catalog"
    EDIT_PRIORITIES = "edit_priorities"
    MANAGE_INCIDENTS = "manage_incidents"
    MANAGE_USERS = "manage_users"


R = Role
PERMISSIONS: dict[Action, frozenset[Role]] = {
    Action.CONNECTIVITY_CHECK: frozenset({R.DEVOPS, R.DBA, R.DEVELOPER}),
    Action.CANCEL_OPERATION: frozenset({R.DEVOPS, R.DBA}),
    Action.RESTART_SERVICE: frozenset({R.DEVOPS}),
    Action.RUN_BACKUP: frozenset({R.DEVOPS, R.DBA}),
    Action.PIN_BACKUP: frozenset({R.DBA}),
    Action.PRUNE_BACKUPS: frozenset({R.DBA}),
    Action.DOWNLOAD_BACKUP: frozenset({R.DBA}),  # the people allowed to restore
    Action.RESTORE: frozenset({R.DBA}),
    Action.CREATE_RESTORE_POINT: frozenset({R.DBA, R.DEVOPS}),  # before a risky change: a deploy, a migration
    Action.FAILOVER: frozenset({R.DBA}),
    Action.REBUILD_REPLICA: frozenset({R.DBA}),
    Action.EDIT_CATALOG: frozenset({R.DEVOPS}),
    Action.EDIT_PRIORITIES: frozenset({R.DEVOPS, R.PRODUCT_MANAGER}),
    Action.MANAGE_INCIDENTS: frozenset({R.DEVOPS, R.DBA, R.DEVELOPER, R.PRODUCT_MANAGER}),
    Action.MANAGE_USERS: frozenset(),  # administrators (superusers) only
}


def user_roles(user: Actor) -> list[str]:
    """The role names an account holds, sorted; cached on the user object for the request."""
    if not user.is_authenticated:
        return []
    cached = getattr(user, "_hadr_roles", None)
    if cached is None:
        known = {role.value for role in Role}
        cached = sorted(name for name in user.groups.values_list("name", flat=True) if name in known)
        user._hadr_roles = cached  # type: ignore[attr-defined]  # the request's cache, on the user object
    return list(cached)


def user_can(user: Actor, action: Action | str) -> bool:
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    allowed = PERMISSIONS[Action(action)]
    return any(role in allowed for role in user_roles(user))


def require(user: Actor, action: Action | str) -> None:
    """Raise PermissionDenied (HTTP 403) unless the user may perform the action."""
    if not user_can(user, action):
        roles = ", ".join(role.value for role in Role if role in PERMISSIONS[Action(action)]) or "administrators"
        raise PermissionDenied(f"Only {roles} may do this ({Action(action).value}).")


def actions_for(user: Actor) -> dict[str, bool]:
    """Every action's permission for a user, for templates: `{% if can.failover %}`."""
    return {action.value: user_can(user, action) for action in Action}


def permission_matrix() -> list[tuple[str, list[bool]]]:
    """Rows of (action, allowed per role) in Role order, for the README and the UI."""
    return [(action.value, [role in PERMISSIONS[action] for role in Role]) for action in Action]


def action_required(action: Action) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """View decorator: POST only, and only for users allowed to perform `action`."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            require(request.user, action)
            if request.method != "POST":
                from django.http import HttpResponseNotAllowed

                return HttpResponseNotAllowed(["POST"])
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
