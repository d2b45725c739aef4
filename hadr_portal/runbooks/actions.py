"""What an action block of a runbook becomes on a page: a button posting to the portal's own action view (or a
link to a guided page), for the roles allowed to use it — the same operations, permissions and audit as anywhere.

Where a button leads for a service is for the app that runs the action to say (`core.registry.runbook_actions`):
this app knows no service, policy or cluster."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hadr_portal.core import registry
from hadr_portal.core.permissions import PERMISSIONS, Action, user_can

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


def action_button(block: ActionBlock, name: str, user: Any) -> ActionButton:
    """The button of an action block for the service called `name`."""
    label, allowed = block.label, user_can(user, block.action)
    action = registry.runbook_actions.get(block.action)
    if action is None:
        return ActionButton(label, name, "", "post", allowed, "this portal has no such action")
    link = action.resolve(name)
    if link is None:
        return ActionButton(label, name, "", "post", allowed, f"no service {name!r} in the catalog")
    note = _who(block.action) if link.url and not allowed else link.note
    return ActionButton(label, link.subject, link.url, link.method, allowed, note)


def runbook_segments(
    runbook: Runbook, *, user: AbstractBaseUser | AnonymousUser, service: str | None, ticks: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """The runbook for a template: HTML pieces, buttons for action blocks, checkboxes for checklist steps.

    An action block without a service acts on `service` (the incident's service's name), or else on each service
    of the front matter. `ticks` are the incident's ticked steps; None: not on an incident (the boxes are inert)."""
    parts: list[dict[str, Any]] = []
    for segment in runbook.segments:
        if isinstance(segment, ActionBlock):
            targets = [segment.service] if segment.service else ([service] if service else runbook.services)
            buttons = [action_button(segment, name, user) for name in targets]
            parts.append({"buttons": [b for b in buttons if b.url or segment.service or service], "block": segment})
        elif isinstance(segment, ChecklistStep):
            done = str(segment.number) in ticks if ticks is not None else segment.done_in_text
            parts.append({"step": segment.number, "done": done, "who": (ticks or {}).get(str(segment.number))})
        else:
            parts.append({"html": segment})
    return parts
