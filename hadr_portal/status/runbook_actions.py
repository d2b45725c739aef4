"""The runbook action status runs: `[[action: restart_service SERVICE]]` becomes the service's Restart button."""

from __future__ import annotations

from django.urls import reverse

from hadr_portal.core.permissions import Action
from hadr_portal.core.registry import ActionLink, RunbookAction

from .models import Service


def restart_link(name: str) -> ActionLink | None:
    """The restart view of the service, when it has a restart controller."""
    service = Service.objects.filter(name=name).first()
    if service is None:
        return None
    if not service.restart:
        return ActionLink(subject=service.display_name, note="it has no restart controller")
    return ActionLink(subject=service.display_name, url=reverse("status:service-restart", kwargs={"name": name}))


RUNBOOK_ACTIONS = (RunbookAction(name=Action.RESTART_SERVICE.value, resolve=restart_link),)
