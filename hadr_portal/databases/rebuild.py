"""Rebuild a node as a replica of the current primary: pg_rewind when possible, else a fresh copy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hadr_portal.adapters.pg.node import NodeActionFailed, ensure_slot, wait_streaming
from hadr_portal.core.models import Operation
from hadr_portal.core.operation_kinds import OperationContext, OperationError, OperationKind
from hadr_portal.core.operations import operation_request
from hadr_portal.core.permissions import Action

from .models import Cluster, Node, Purpose
from .sections import topology_changed
from .signals import node_rebuilt
from .topology import cluster_probe

if TYPE_CHECKING:
    from hadr_portal.core.permissions import Actor

STREAMING_TIMEOUT_SECONDS = 120


class RebuildRefused(OperationError):
    """The node cannot be rebuilt now; nothing was changed."""


def rebuild_source(cluster: Cluster, node: Node) -> Node:
    """The primary `node` will follow, after probing every node now. Raises RebuildRefused."""
    if cluster.is_patroni:
        raise RebuildRefused(f"{cluster.name} is managed by Patroni: reinitialize {node.name} through Patroni instead.")
    cluster_probe(cluster)
    nodes = list(cluster.nodes.order_by("name"))
    primaries = [n for n in nodes if n.role == "primary" and n.pk != node.pk]
    if node.controller_built().kind == "none":
        raise RebuildRefused(
            f"{node.name} has no controller in the catalog, so the portal cannot stop, copy or start it."
            " Rebuild it by hand (runbook: database problem)."
        )
    if cluster.primary_id == node.pk:
        raise RebuildRefused(f"{node.name} is the cluster's primary: fail over first, then rebuild it.")
    if len(primaries) != 1:
        found = ", ".join(n.name for n in primaries) or "none reachable"
        raise RebuildRefused(f"Rebuilding needs exactly one reachable primary besides {node.name} (found: {found}).")
    return primaries[0]


def rebuild_request(*, cluster: Cluster, node: Node, actor: Actor | None, address: str | None = None) -> Operation:
    rebuild_source(cluster, node)
    return operation_request(
        kind="rebuild_replica",
        target=cluster.target,
        scope=cluster.target,
        scope_exclusive=True,
        actor=actor,
        address=address,
        parameters={"cluster": cluster.name, "node": node.name},
    )


def rebuild_run(context: OperationContext) -> Mapping[str, Any]:
    cluster = Cluster.objects.get(name=context.parameters["cluster"])
    return node_rebuild(context, cluster=cluster, node=cluster.nodes.get(name=context.parameters["node"]))


def node_rebuild(context: OperationContext, *, cluster: Cluster, node: Node) -> dict[str, Any]:
    """Rebuild `node` as a streaming replica of the cluster's one primary, inside `context`'s operation (its own,
    or another that holds the cluster, such as replacing it with a point-in-time restore)."""
    context.progress(5, "Pre-checks")
    primary = rebuild_source(cluster, node)
    controller = node.controller_built()
    source = primary.address(Purpose.ADMIN)
    context.log(f"{node.name} will follow {primary.name} ({source.public()}) through slot {node.slot_name}")
    if ensure_slot(source.conninfo(), node.slot_name):
        context.log(f"Created replication slot {node.slot_name} on {primary.name}")
    context.checkpoint()  # from here on the node's data directory changes

    context.progress(20, f"Rebuilding {node.name}")
    method = controller.rebuild(source=source, slot=node.slot_name, port=node.port, log=context.log)
    context.log(f"{node.name} rebuilt with {method}")
    context.progress(70, f"Starting {node.name}")
    context.log(controller.start())
    seconds = wait_streaming(node.address(Purpose.ADMIN).conninfo(), timeout=STREAMING_TIMEOUT_SECONDS)
    context.log(f"{node.name} streams from {primary.name} ({seconds:.1f} s after start)")
    cluster_probe(cluster)
    topology_changed()
    node.refresh_from_db()
    if node.role != "replica":
        raise NodeActionFailed(f"{node.name} started but reports {node.role}, not replica")
    node_rebuilt.send(sender=Node, node=node, log=context.log)
    context.progress(100, f"{node.name} is a streaming replica of {primary.name}")
    return {"node": node.name, "primary": primary.name, "method": method, "seconds_to_streaming": round(seconds, 2)}


REBUILD_REPLICA = OperationKind(
    name="rebuild_replica",
    label="Rebuild replica",
    action=Action.REBUILD_REPLICA,
    run=rebuild_run,
    queue="ops",
    cancellable_while_running=False,
    max_attempts=1,
)
