"""Records of other apps that join an incident's timeline by themselves: transitions, operations, alerts, and
the leader changes of clusters (an automatic failover opens one)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from hadr_portal.core.models import Operation
from hadr_portal.databases.models import Cluster, LeaderChange
from hadr_portal.databases.signals import cluster_without_primary, leader_change_event, leader_changed
from hadr_portal.status.models import AlertDelivery, Transition
from hadr_portal.status.signals import transition_committed

from . import services


@receiver(transition_committed)
def on_transition(sender: Any, transition: Transition, **_: Any) -> None:
    services.incident_on_transition(transition=transition)


@receiver(cluster_without_primary)
def on_cluster_without_primary(sender: Any, cluster: Cluster, detail: str, **_: Any) -> None:
    services.incident_on_cluster_without_primary(cluster=cluster, detail=detail)


@receiver(leader_changed)
def on_leader_changed(sender: Any, change: LeaderChange, **_: Any) -> None:
    services.incident_on_leader_change(change=change)


@receiver(leader_change_event)
def on_leader_change_event(sender: Any, change: LeaderChange, what: str, at: datetime, **_: Any) -> None:
    services.incident_on_leader_change_event(change=change, what=what, at=at)


@receiver(post_save, sender=Operation)
def on_operation(sender: Any, instance: Operation, created: bool, **_: Any) -> None:
    if created:  # after commit: a restore's record points to its operation by then
        transaction.on_commit(lambda: services.incident_on_operation(operation=instance))


@receiver(post_save, sender=AlertDelivery)
def on_alert(sender: Any, instance: AlertDelivery, **_: Any) -> None:
    if instance.status != AlertDelivery.Status.PENDING:
        transaction.on_commit(lambda: services.incident_on_alert(delivery=instance))
