"""Start-up checks of the two-factor settings."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register

from hadr_portal.core.permissions import Role


@register()
def two_factor_roles_check(app_configs: Any = None, **_: Any) -> list[Error]:
    known = {role.value for role in Role}
    unknown = [name for name in settings.TWO_FACTOR_ROLES if name not in known]
    if not unknown:
        return []
    return [
        Error(
            f"HADR_2FA_ROLES names unknown roles: {', '.join(unknown)}",
            hint=f"Use role names as shown on the Roles page: {', '.join(sorted(known))}.",
            id="accounts.E001",
        )
    ]
