"""The runbook actions that act on where a service's data is: Back up now and Open the restore wizard (its
backup policy), Fail over (its cluster). Registered here because readiness (`recovery`) is what knows which
policies and clusters hold a service's data."""

from __future__ import annotations

from django.urls import reverse

from hadr_portal.core.permissions import Action
from hadr_portal.core.registry import ActionLink, RunbookAction
from hadr_portal.status.models import Service

from .recovery import service_clusters, service_policies


def _service(name: str) -> Service | None:
    return Service.objects.filter(name=name).first()


def _policy_link(name: str, view: str) -> ActionLink | None:
    """`view` of the first backup policy that watches the service."""
    service = _service(name)
    if service is None:
        return None
    policy = next(iter(service_policies(service)), None)
    if policy is None:
        return ActionLink(subject=service.display_name, note="no backup policy watches it")
    return ActionLink(subject=service.display_name, url=reverse(view, kwargs={"name": policy.name}))


def backup_link(name: str) -> ActionLink | None:
    return _policy_link(name, "backups:backup-now")


def restore_link(name: str) -> ActionLink | None:
    return _policy_link(name, "backups:restore-start")


def failover_link(name: str) -> ActionLink | None:
    """The failover page (a guided one: the pre-checks come first) of the service's cluster."""
    service = _service(name)
    if service is None:
        return None
    cluster = next(iter(service_clusters(service)), None)
    if cluster is None:
        return ActionLink(subject=service.display_name, method="get", note="it is not a database of a managed cluster")
    url = reverse("databases:failover", kwargs={"name": cluster.name})
    return ActionLink(subject=service.display_name, url=url, method="get")


RUNBOOK_ACTIONS = (
    RunbookAction(name=Action.RUN_BACKUP.value, resolve=backup_link),
    RunbookAction(name=Action.RESTORE.value, resolve=restore_link),
    RunbookAction(name=Action.FAILOVER.value, resolve=failover_link),
)
