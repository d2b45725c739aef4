"""Queries for cluster pages."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Prefetch

from hadr_portal.core.models import Operation

from .models import Cluster, Node


@dataclass
class ClusterOverview:
    cluster: Cluster
    nodes: list[Node]
    active_operation: Operation | None
    last_check: Operation | None


def clusters_overview() -> list[ClusterOverview]:
    """Every cluster with its nodes, its running operation and its last connectivity check."""
    clusters = Cluster.objects.prefetch_related(Prefetch("nodes", queryset=Node.objects.order_by("name")))
    targets = [c.target for c in clusters]
    active = {op.target: op for op in Operation.objects.filter(target__in=targets, status__in=Operation.ACTIVE)}
    last: dict[str, Operation] = {}
    for op in Operation.objects.filter(target__in=targets, kind="connectivity_check").exclude(
        status__in=Operation.ACTIVE
    ):
        last.setdefault(op.target, op)
    return [ClusterOverview(c, list(c.nodes.all()), active.get(c.target), last.get(c.target)) for c in clusters]
