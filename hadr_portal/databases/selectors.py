"""Queries for cluster pages."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Prefetch
from django.utils import timezone

from hadr_portal.core.models import Operation

from .models import Cluster, Failover, LeaderChange, Node
from .roles import PurposeRole, cluster_roles
from .topology import cluster_primary

LAG_HISTORY_HOURS = 24
LAG_HISTORY_POINTS = 300
LEADER_CHANGES_SHOWN = 5


@dataclass
class ClusterOverview:
    cluster: Cluster
    nodes: list[Node]
    active_operation: Operation | None
    last_check: Operation | None
    primary: Node | None = None
    last_failover: Failover | None = None
    lag_history: list[tuple[datetime, float]] = field(default_factory=list)
    roles: list[PurposeRole] = field(default_factory=list)  # the database role each purpose connects with
    panels: list[str] = field(default_factory=list)  # HTML of the registered cluster panels (filled by the view)
    leader_changes: list[LeaderChange] = field(default_factory=list)  # the last ones, with RTO and RPO measured

    @property
    def probe_last(self) -> datetime | None:
        last = (self.cluster.probe_state or {}).get("last_ok_at")
        return datetime.fromisoformat(last) if last else None


def clusters_overview() -> list[ClusterOverview]:
    """Every cluster with its nodes, the node applications should use, its running operation, its last
    connectivity check and failover, and its replication lag over the last day."""
    clusters = Cluster.objects.select_related("primary").prefetch_related(
        Prefetch("nodes", queryset=Node.objects.order_by("name"))
    )
    targets = [c.target for c in clusters]
    active = {op.target: op for op in Operation.objects.filter(target__in=targets, status__in=Operation.ACTIVE)}
    last: dict[str, Operation] = {}
    for op in Operation.objects.filter(target__in=targets, kind="connectivity_check").exclude(
        status__in=Operation.ACTIVE
    ):
        last.setdefault(op.target, op)
    failovers: dict[int, Failover] = {}
    for failover in Failover.objects.filter(cluster__in=clusters).select_related("operation"):
        failovers.setdefault(failover.cluster_id, failover)
    overviews = []
    for c in clusters:
        nodes = list(c.nodes.all())
        overviews.append(
            ClusterOverview(
                c,
                nodes,
                active.get(c.target),
                last.get(c.target),
                cluster_primary(c),
                failovers.get(c.pk),
                cluster_lag_history(c),
                cluster_roles(c, nodes),
                leader_changes=list(c.leader_changes.select_related("operation")[:LEADER_CHANGES_SHOWN]),
            )
        )
    return overviews


def cluster_lag_history(cluster: Cluster, *, hours: int = LAG_HISTORY_HOURS) -> list[tuple[datetime, float]]:
    """The largest replica lag in bytes the primary reported, from its health checks, oldest first.

    Read through the nodes' checks (`Check.node`), so this app needs nothing from the status app above it."""
    rows = (
        Node.objects.filter(
            cluster=cluster,
            checks__kind="postgres",
            checks__results__at__gte=timezone.now() - timedelta(hours=hours),
            checks__results__data__role="primary",
        )
        .order_by("-checks__results__at")
        .values_list("checks__results__at", "checks__results__data__lag_bytes")[:LAG_HISTORY_POINTS]
    )
    return [(at, float(lag)) for at, lag in reversed(rows) if lag is not None]
