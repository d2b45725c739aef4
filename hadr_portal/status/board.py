"""The service tiles (and the portal's own banners), rendered once for every reader, cached in Redis.

The tiles hold nothing user-specific (relative times are computed in the browser), so one
rendering serves everyone for HADR_DASHBOARD_CACHE_SECONDS — one with Restart buttons for those
who may restart, one without for everybody else. Every state transition and catalog change bumps
a version number, so a service going down is never hidden behind the cache.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.template.loader import render_to_string
from django.utils.safestring import SafeString, mark_safe

from . import selectors
from .models import Check, MaintenanceWindow, Service

logger = logging.getLogger(__name__)
VERSION_KEY = "status:board:version"
LATEST_KEY = "status:board:latest"
LOCK_KEY = "status:board:rendering"


def board_invalidate() -> None:
    try:
        cache.incr(VERSION_KEY)
    except ValueError:  # no version yet
        cache.set(VERSION_KEY, 1, timeout=None)
    except Exception:  # Redis down: nothing cached can be served either
        logger.warning("could not invalidate the dashboard cache", exc_info=True)


def board_html(*, restart_buttons: bool = False) -> SafeString:
    """The tiles, at most HADR_DASHBOARD_CACHE_SECONDS old and never older than the last transition.

    One request re-renders while the others keep serving the previous rendering of the same
    catalog version (a stampede of renderings on two cores would make everyone wait).
    """
    if settings.DASHBOARD_CACHE_SECONDS == 0:
        return _render(restart_buttons)
    variant = ":restart" if restart_buttons else ""
    latest_key, lock_key = LATEST_KEY + variant, LOCK_KEY + variant
    try:
        version = cache.get_or_set(VERSION_KEY, 1, timeout=None)
        entry = cache.get(latest_key)
    except Exception:  # Redis down: render without the cache (the banner says Redis is down)
        return _render(restart_buttons)
    current = entry is not None and entry["version"] == version
    if current and time.time() - entry["at"] < settings.DASHBOARD_CACHE_SECONDS:
        return mark_safe(entry["html"])  # noqa: S308 - our own rendered template
    if current and not cache.add(lock_key, 1, timeout=30):
        return mark_safe(entry["html"])  # noqa: S308 - someone else is refreshing it
    try:
        html = str(_render(restart_buttons))
        cache.set(latest_key, {"version": version, "at": time.time(), "html": html}, timeout=None)
    finally:
        cache.delete(lock_key)
    return mark_safe(html)  # noqa: S308


def _render(restart_buttons: bool) -> SafeString:
    context = selectors.dashboard() | {"restart_buttons": restart_buttons}
    sections = "".join(str(render()) for render in _SECTIONS)
    return mark_safe(render_to_string("status/_board.html", context) + sections)  # noqa: S308


# Sections other apps add below the tiles (metrics: the conversion tiles). Each returns HTML with nothing
# user-specific in it: it is cached and shared with the tiles.
_SECTIONS: list[Callable[[], str]] = []


def board_section_register(render: Callable[[], str]) -> None:
    if render not in _SECTIONS:
        _SECTIONS.append(render)


@receiver(post_save, sender=Service)
@receiver(post_delete, sender=Service)
@receiver(post_delete, sender=Check)
@receiver(post_save, sender=MaintenanceWindow)
def _catalog_changed(sender: Any, **_: Any) -> None:
    """A service's state or settings changed (state changes save the Service row too)."""
    transaction.on_commit(board_invalidate)
