"""What an action block of a runbook becomes on a page: a button posting to the portal's own action view (or a
link to a guided page), for the roles allowed to use it — the same operations, permissions and audit as anywhere."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.urls import reverse

from hadr_portal.core.permissions import PERMISSIONS, Action, user_can
from hadr_portal.incidents.recovery import service_clusters, service_policies
from hadr_portal.status.models import Service

from .documents import ActionBlock, ChecklistStep, Runbook

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser


@dataclass(frozen=True)
class ActionButton:
    label: str
    subject: str  # the service's name, as shown
    url: str  # empty: not available here (see `note`)
    method: str  # "post" (queues an operation) or "get" (a guided page)
    allowed: bool
    note: str = ""


def _who(action: str) -> str:
    roles = sorted(role.value for role in PERMISSIONS[Action(action)])
    return f"{' or '.join(roles)} may do this"


def action_button(block: ActionBlock, service: Service | None, name: str, user: Any) -> ActionButton:
    label, allowed = block.label, user_can(user, block.action)
    if service is None:
        return ActionButton(label, name, "", "post", allowed, f"no service {name!r} in the catalog")
    subject = service.display_name
    url, method, note = "", "post", ""
    if block.action == Action.RESTART_SERVICE:
        if service.restart:
            url = reverse("status:service-restart", kwargs={"name": service.name})
        else:
            note = "it has no restart controller"
    elif block.action in (Action.RUN_BACKUP, Action.RESTORE):
        policy = next(iter(service_policies(service)), None)
        if policy is None:
            note = "no backup policy watches it"
        else:
            view = "backups:backup-now" if block.action == Action.RUN_BACKUP else "backups:restore-start"
            url = reverse(view, kwargs={"name": policy.name})
    elif block.action == Action.FAILOVER:
        cluster = next(iter(service_clusters(service)), None)
        method = "get"
        if cluster is None:
            note = "it is not a database of a managed cluster"
        else:
            url = reverse("databases:failover", kwargs={"name": cluster.name})
    if url and not allowed:
        note = _who(block.action)
    return ActionButton(label, subject, url, method, allowed, note)


def runbook_segments(
    runbook: Runbook, *, user: AbstractBaseUser | AnonymousUser, service: Service | None, ticks: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """The runbook for a template: HTML pieces, buttons for action blocks, checkboxes for checklist steps.

    An action block without a service acts on `service` (the incident's), or else on each service of the front
    matter. `ticks` are the incident's ticked steps; None: not on an incident (the boxes are inert)."""
    names = runbook.services
    known = {
        item.name: item for item in Service.objects.filter(name__in=[*names, *(b.service for b in runbook.blocks)])
    }
    if service is not None:
        known[service.name] = service
    parts: list[dict[str, Any]] = []
    for segment in runbook.segments:
        if isinstance(segment, ActionBlock):
            targets = [segment.service] if segment.service else ([service.name] if service else names)
            buttons = [action_button(segment, known.get(name), name, user) for name in targets]
            parts.append({"buttons": [b for b in buttons if b.url or segment.service or service], "block": segment})
        elif isinstance(segment, ChecklistStep):
            done = str(segment.number) in ticks if ticks is not None else segment.done_in_text
            parts.append({"step": segment.number, "done": done, "who": (ticks or {}).get(str(segment.number))})
        else:
            parts.append({"html": segment})
    return parts
