"""The connectivity check, a kind of operation on a cluster: every node reached and recorded, replication lag
sampled on request. It also proves the operation machinery end to end."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import psycopg

from hadr_portal.adapters.pg.connection import TRANSIENT_ERRORS
from hadr_portal.core.operation_kinds import OperationContext, OperationKind
from hadr_portal.core.permissions import Action

from .models import Cluster
from .topology import node_probe, node_record

MAX_SAMPLE_SECONDS = 600


class NodeUnreachable(psycopg.OperationalError):
    """At least one node could not be reached (transient: retried with backoff)."""


def connectivity_check_run(context: OperationContext) -> Mapping[str, Any]:
    """Reach every node of the cluster, record its role and position; optionally keep sampling
    replication lag for `sample_seconds` (to watch a replica catch up)."""
    cluster = Cluster.objects.get(name=context.parameters["cluster"])
    sample_seconds = int(context.parameters.get("sample_seconds", 0))
    nodes = list(cluster.nodes.all())
    if not nodes:
        raise ValueError(f"Cluster {cluster.name} has no nodes in the catalog.")
    seen: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    for index, node in enumerate(nodes, start=1):
        context.checkpoint()
        node_record(node, node_probe(node))
        probe = seen[node.name] = node.last_probe
        where = f"{node.name} ({node.host}:{node.port})"
        if not probe["reachable"]:
            failures.append(f"{node.name}: {probe['error']}")
            context.log(f"{where} unreachable: {probe['error']}", level="error")
        else:
            lag = f", lag {probe['lag_bytes']} B" if probe["lag_bytes"] is not None else ""
            context.log(
                f"{where} is {probe['role']}, PostgreSQL {probe['server_version']}, LSN {probe['lsn']}{lag},"
                f" {probe['connections']}/{probe['max_connections']} connections, {probe['latency_ms']} ms"
            )
        context.progress(int(index / len(nodes) * (50 if sample_seconds else 100)), f"Checked {node.name}")
    if failures:
        raise NodeUnreachable("; ".join(failures))
    primaries = [name for name, probe in seen.items() if probe["role"] == "primary"]
    if len(primaries) != 1:
        context.log(f"Expected exactly one primary, found {len(primaries)}: {primaries or 'none'}", level="warning")
    lag_samples = _sample_lag(context, cluster, sample_seconds) if sample_seconds else []
    return {
        "nodes": {name: {k: p[k] for k in ("role", "lsn", "latency_ms")} for name, p in seen.items()},
        "primaries": primaries,
        "lag_samples": lag_samples,
    }


def _sample_lag(context: OperationContext, cluster: Cluster, seconds: int) -> list[int]:
    primary = next((n for n in cluster.nodes.all() if n.role == "primary"), None)
    if primary is None:
        return []
    samples: list[int] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        context.checkpoint()
        worst = node_probe(primary).data.get("lag_bytes") or 0
        samples.append(worst)
        elapsed = seconds - max(0.0, deadline - time.monotonic())
        context.progress(50 + int(elapsed / seconds * 50), f"Replication lag {worst} B")
        time.sleep(1)
    context.log(f"Sampled replication lag {len(samples)} times: max {max(samples, default=0)} B")
    return samples


CONNECTIVITY_CHECK = OperationKind(
    name="connectivity_check",
    label="Connectivity check",
    action=Action.CONNECTIVITY_CHECK,
    run=connectivity_check_run,
    queue="ops",
    cancellable_while_running=True,
    transient_errors=TRANSIENT_ERRORS,
    max_attempts=3,
    backoff_initial=1.0,
    backoff_max=8.0,
)
