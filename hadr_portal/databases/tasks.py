"""The databases app's periodic work: the write probe every second, and the post-failover hook after a leader
moved by itself (Patroni) or by hand outside the portal."""

from __future__ import annotations

import logging

from celery import shared_task
from django.utils import timezone

from .failover import post_failover_hook_run
from .models import LeaderChange
from .patroni_ops import switchover_drills_due
from .writeprobe import probe_all

logger = logging.getLogger(__name__)


@shared_task(name="hadr_portal.databases.tasks.write_probe")
def write_probe() -> int:
    return probe_all()


@shared_task(name="hadr_portal.databases.tasks.switchover_drills")
def switchover_drills() -> int:
    return len(switchover_drills_due())


@shared_task(name="hadr_portal.databases.tasks.leader_hook")
def leader_hook(change_id: int) -> str:
    """Tell the applications where the primary is now: the cluster's post-failover hook, said on the change."""
    change = LeaderChange.objects.select_related("cluster").get(pk=change_id)
    cluster = change.cluster
    new = cluster.nodes.filter(name=change.new_leader).first()
    if new is None:
        return f"{change.new_leader} is not in the catalog: no hook run"
    old = cluster.nodes.filter(name=change.old_leader).first()
    said: list[str] = []
    try:
        post_failover_hook_run(lambda message, **_: said.append(message), cluster, new, old)
        what = said[0] if said else "Post-failover hook ran"
    except Exception as exc:  # the hook's failure is said on the change, where the operator looks
        what = str(exc)
        logger.error("post-failover hook of %s failed: %s", cluster.name, exc)
    change.events = [*change.events, {"at": timezone.now().isoformat(), "what": what.splitlines()[0][:300]}]
    LeaderChange.objects.filter(pk=change.pk).update(events=change.events)
    return what
