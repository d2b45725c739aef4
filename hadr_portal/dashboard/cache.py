"""The dashboard's sections, rendered once for every reader and kept in Redis.

The sections hold nothing user-specific (relative times are computed in the browser), so one rendering serves
everyone for HADR_DASHBOARD_CACHE_SECONDS — one per set of section buttons a reader may use (the tiles with
Restart buttons for those who may restart, without for everybody else). Whatever a section shows bumps the
dashboard's version when it changes (`core.dashboard_version`), and a rendering of an older version is never
served as current.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.cache import cache
from django.utils.safestring import SafeString, mark_safe

from hadr_portal.core import registry
from hadr_portal.core.dashboard_version import dashboard_version
from hadr_portal.core.permissions import user_can

if TYPE_CHECKING:
    from hadr_portal.core.permissions import Actor

logger = logging.getLogger(__name__)
LATEST_KEY = "dashboard:latest"
LOCK_KEY = "dashboard:rendering"


def buttons_allowed(user: Actor) -> frozenset[str]:
    """The permissions, among those the sections' buttons need, that `user` holds."""
    needed = {section.buttons_need for section in registry.dashboard_sections if section.buttons_need}
    return frozenset(action for action in needed if user_can(user, action))


def dashboard_html(*, buttons: frozenset[str] = frozenset()) -> SafeString:
    """Every section, at most HADR_DASHBOARD_CACHE_SECONDS old and never older than the last change it shows.

    One request re-renders while the others keep serving the previous rendering of the same version (a
    stampede of renderings on two cores would make everyone wait).
    """
    if settings.DASHBOARD_CACHE_SECONDS == 0:
        return _render(buttons)
    variant = "".join(f":{action}" for action in sorted(buttons))
    latest_key, lock_key = LATEST_KEY + variant, LOCK_KEY + variant
    try:
        version = dashboard_version()
        entry = cache.get(latest_key)
    except Exception:  # Redis down: render without the cache (the banner says Redis is down)
        return _render(buttons)
    current = entry is not None and entry["version"] == version
    if current and time.time() - entry["at"] < settings.DASHBOARD_CACHE_SECONDS:
        return mark_safe(entry["html"])  # noqa: S308 - our own rendered templates
    try:
        if current and not cache.add(lock_key, 1, timeout=30):
            return mark_safe(entry["html"])  # noqa: S308 - someone else is refreshing it
    except Exception:  # Redis went away since the read: render without the cache
        return _render(buttons)
    try:
        html = str(_render(buttons))
        try:
            cache.set(latest_key, {"version": version, "at": time.time(), "html": html}, timeout=None)
        except Exception:  # Redis went away: the rendering stands; the next request renders again
            logger.warning("could not keep the dashboard rendering in the cache", exc_info=True)
    finally:
        with contextlib.suppress(Exception):  # Redis went away: the lock expires by itself
            cache.delete(lock_key)
    return mark_safe(html)  # noqa: S308


def _render(buttons: frozenset[str]) -> SafeString:
    parts = []
    for section in registry.dashboard_sections:
        render = section.render
        if section.render_with_buttons is not None and section.buttons_need in buttons:
            render = section.render_with_buttons
        parts.append(render())
    return mark_safe("".join(parts))  # noqa: S308 - our own rendered templates
