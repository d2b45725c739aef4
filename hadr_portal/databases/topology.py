"""What each node of a cluster says about itself, and which node the applications should use."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from django.utils import timezone

from hadr_portal.adapters.probes import DOWN, ProbeResult, probe_postgres

from .models import Cluster, Node, Purpose


def node_probe(node: Node, *, timeout: float = 5.0, expected_replicas: int = 0) -> ProbeResult:
    """Connect to the node as the monitoring role and read its role, position, replication and connection use
    (never raises)."""
    conninfo = node.address(Purpose.MONITOR).conninfo()
    return probe_postgres(conninfo=conninfo, timeout=timeout, expected_replicas=expected_replicas)


def node_snapshot(result: ProbeResult) -> dict[str, Any]:
    """The node's view kept on `Node.last_probe`, as the Databases page and the failover pre-checks read it."""
    data = result.data
    reachable = bool(data.get("role"))
    return {
        "reachable": reachable,
        "role": data.get("role", "unknown"),
        "server_version": data.get("server_version", ""),
        "lsn": data.get("lsn", ""),
        "receive_lsn": data.get("receive_lsn", ""),
        "lag_bytes": data.get("lag_bytes"),
        "lag_seconds": data.get("lag_seconds"),
        "streaming": data.get("streaming"),
        "replicas": data.get("replicas", []),
        "replication_slots": data.get("replication_slots", []),
        "connections": data.get("connections"),
        "max_connections": data.get("max_connections"),
        "user": data.get("user", ""),  # the monitoring connection's role, and whether it is a superuser
        "superuser": data.get("superuser"),
        "latency_ms": result.latency_ms,
        "refused": not reachable and result.message == "connection refused",
        "error": "" if reachable and result.outcome != DOWN else result.message,
    }


def node_record(node: Node, result: ProbeResult, *, at: datetime | None = None) -> None:
    """Keep what the node said. When it stops answering, its last known role and WAL position are kept
    (`last_seen`): a failover needs them to say how much data the replica is missing."""
    snapshot = node_snapshot(result)
    previous = node.last_probe or {}
    if not snapshot["reachable"]:
        if previous.get("reachable"):
            seen_at = node.last_probe_at.isoformat() if node.last_probe_at else None
            snapshot["last_seen"] = {"role": previous.get("role"), "lsn": previous.get("lsn"), "at": seen_at}
        elif previous.get("last_seen"):
            snapshot["last_seen"] = previous["last_seen"]
    node.last_probe = snapshot
    node.last_probe_at = at or timezone.now()
    Node.objects.filter(pk=node.pk).update(last_probe=node.last_probe, last_probe_at=node.last_probe_at)


def cluster_primary_or_first(cluster: Cluster) -> Node | None:
    """The primary as the checks last saw it, or the cluster's first node when none was seen yet (a catalog just
    imported): where the portal sends what must go to the primary."""
    return cluster_primary(cluster) or cluster.nodes.order_by("name").first()


def cluster_probe(cluster: Cluster, *, timeout: float = 3.0) -> dict[str, ProbeResult]:
    """Probe every node at once (a dead node costs its timeout once, not once per node) and record them."""
    nodes = list(cluster.nodes.order_by("name"))
    if not nodes:
        return {}
    with ThreadPoolExecutor(max_workers=len(nodes), thread_name_prefix="node-probe") as pool:
        results = list(pool.map(lambda node: node_probe(node, timeout=timeout), nodes))
    at = timezone.now()
    for node, result in zip(nodes, results, strict=True):
        node_record(node, result, at=at)
    return {node.name: result for node, result in zip(nodes, results, strict=True)}


def cluster_primary(cluster: Cluster) -> Node | None:
    """The node applications should use: the one node that last reported being primary; when none or
    several do (a node down, or fencing undone by hand), the one the last failover chose."""
    reporting = [node for node in cluster.nodes.all() if node.role == "primary"]  # prefetched by the pages
    if len(reporting) == 1:
        return reporting[0]
    return cluster.primary if cluster.primary_id else None
