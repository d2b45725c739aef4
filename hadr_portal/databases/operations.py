"""Kinds of operation on clusters. The connectivity check proves the operation machinery end to end."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import psycopg
from django.utils import timezone

from hadr_portal.adapters.postgres import TRANSIENT_ERRORS, NodeProbe, probe_node
from hadr_portal.core.operations import OperationContext, OperationKind, register
from hadr_portal.core.permissions import Action

from .models import Cluster

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
    probes: dict[str, NodeProbe] = {}
    failures: list[str] = []
    for index, node in enumerate(nodes, start=1):
        context.checkpoint()
        try:
            probe = probe_node(node.address())
        except psycopg.OperationalError as exc:
            probe = NodeProbe(reachable=False, latency_ms=0.0, error=str(exc).strip().splitlines()[0])
            failures.append(f"{node.name}: {probe.error}")
            context.log(f"{node.name} ({node.host}:{node.port}) unreachable: {probe.error}", level="error")
        else:
            lag = f", replay lag {probe.replay_lag_bytes} B" if probe.replay_lag_bytes is not None else ""
            context.log(
                f"{node.name} ({node.host}:{node.port}) is {probe.role}, PostgreSQL {probe.server_version}, "
                f"LSN {probe.lsn}{lag}, {probe.connections}/{probe.max_connections} connections, {probe.latency_ms} ms"
            )
        node.last_probe = probe.as_dict()
        node.last_probe_at = timezone.now()
        node.save(update_fields=["last_probe", "last_probe_at"])
        probes[node.name] = probe
        context.progress(int(index / len(nodes) * (50 if sample_seconds else 100)), f"Checked {node.name}")
    if failures:
        raise NodeUnreachable("; ".join(failures))
    primaries = [name for name, probe in probes.items() if probe.role == "primary"]
    if len(primaries) != 1:
        context.log(f"Expected exactly one primary, found {len(primaries)}: {primaries or 'none'}", level="warning")
    lag_samples = _sample_lag(context, cluster, sample_seconds) if sample_seconds else []
    return {
        "nodes": {name: {"role": p.role, "lsn": p.lsn, "latency_ms": p.latency_ms} for name, p in probes.items()},
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
        probe = probe_node(primary.address())
        worst = max((r["lag_bytes"] or 0 for r in probe.replicas), default=0)
        samples.append(worst)
        elapsed = seconds - max(0.0, deadline - time.monotonic())
        context.progress(50 + int(elapsed / seconds * 50), f"Replication lag {worst} B")
        time.sleep(1)
    context.log(f"Sampled replication lag {len(samples)} times: max {max(samples, default=0)} B")
    return samples


CONNECTIVITY_CHECK = register(
    OperationKind(
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
)
