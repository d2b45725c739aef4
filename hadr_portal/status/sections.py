"""The services section of the dashboard: the service tiles grouped by tier, and the portal's own banners.

Nothing user-specific in it (relative times are computed in the browser): the dashboard caches it and serves
one rendering to everyone — with Restart buttons to those who may restart, without to everybody else. Every
state transition and catalog change bumps the dashboard's version, so a service going down is never hidden
behind the cache.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.template.loader import render_to_string

from hadr_portal.core.dashboard_version import dashboard_invalidate

from . import selectors
from .models import Check, MaintenanceWindow, Service


def services_section_html() -> str:
    return _render(restart_buttons=False)


def services_section_with_restart_html() -> str:
    """For those who may restart: each restartable tile has its Restart button."""
    return _render(restart_buttons=True)


def _render(*, restart_buttons: bool) -> str:
    context = selectors.dashboard() | {"restart_buttons": restart_buttons}
    return render_to_string("status/_services_section.html", context)


@receiver(post_save, sender=Service)
@receiver(post_delete, sender=Service)
@receiver(post_delete, sender=Check)
@receiver(post_save, sender=MaintenanceWindow)
def _catalog_changed(sender: Any, **_: Any) -> None:
    """A service's state or settings changed (state changes save the Service row too)."""
    transaction.on_commit(dashboard_invalidate)
