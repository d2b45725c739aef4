from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from . import registry
from .permissions import actions_for, user_roles


def portal(request: HttpRequest) -> dict[str, Any]:
    """`can.<action>` and `my_roles` in every template, so buttons show only to those allowed; `banners`, the
    warnings the apps registered that hold now."""
    user = getattr(request, "user", None)
    refresh = {"refresh_seconds": settings.DASHBOARD_REFRESH_SECONDS}
    if user is None or not user.is_authenticated:
        return {"can": {}, "my_roles": []} | refresh
    banners = [text for banner in registry.banners for text in banner.messages()]
    return {"can": actions_for(user), "my_roles": user_roles(user), "banners": banners} | refresh
