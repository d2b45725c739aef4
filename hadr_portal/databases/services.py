"""Actions on clusters and the catalog entries that describe them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import transaction

from hadr_portal.core.models import Operation
from hadr_portal.core.operation_kinds import OperationError
from hadr_portal.core.operations import operation_request

from .connectivity import MAX_SAMPLE_SECONDS
from .models import Cluster, Node

if TYPE_CHECKING:
    from hadr_portal.core.permissions import Actor


def connectivity_check_request(
    *,
    cluster: Cluster,
    actor: Actor | None,
    address: str | None = None,
    sample_seconds: Any = 0,
) -> Operation:
    """Queue a connectivity check of every node of `cluster` (optionally sampling lag for a while)."""
    try:
        seconds = int(sample_seconds or 0)
    except (TypeError, ValueError):
        raise OperationError(f"Sampling time must be a whole number of seconds, not {sample_seconds!r}.") from None
    if not 0 <= seconds <= MAX_SAMPLE_SECONDS:
        raise OperationError(f"Sampling time must be between 0 and {MAX_SAMPLE_SECONDS} seconds.")
    return operation_request(
        kind="connectivity_check",
        target=cluster.target,
        actor=actor,
        address=address,
        parameters={"cluster": cluster.name, "sample_seconds": seconds},
    )


@transaction.atomic
def cluster_upsert(*, name: str, nodes: dict[str, tuple[str, int]], **fields: Any) -> Cluster:
    """Create or update a cluster and exactly these nodes (idempotent; used by seeding)."""
    cluster, _ = Cluster.objects.update_or_create(name=name, defaults=fields)
    for node_name, (host, port) in nodes.items():
        Node.objects.update_or_create(cluster=cluster, name=node_name, defaults={"host": host, "port": port})
    cluster.nodes.exclude(name__in=nodes).delete()
    return cluster
