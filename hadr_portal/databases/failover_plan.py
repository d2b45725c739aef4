"""Deciding a failover: which replica, which old primary, how much data could be lost, and what refuses it.

`failover_plan()` probes every node now and says what a failover would do; `FailoverPlan.refusal()` is the
one place that decides whether it may go ahead (a blocker, or a reason the DBA has not given yet). Nothing here
changes the cluster: the run is databases.failover.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hadr_portal.adapters.pg.node import lsn_int
from hadr_portal.adapters.probes import format_bytes
from hadr_portal.core.findings import BLOCKER, OK, WARNING, Finding, blockers
from hadr_portal.core.operation_kinds import OperationError

from .models import Cluster, Node
from .topology import cluster_primary, cluster_probe

MIN_REASON_LENGTH = 10


class FailoverRefused(OperationError):
    """A pre-check failed; nothing was changed."""


@dataclass
class FailoverPlan:
    """What a failover of `cluster` to `candidate` would do, and what stands in its way."""

    cluster: Cluster
    candidate: Node | None
    old_primary: Node | None
    old_primary_state: str  # up | down | unreachable | none
    lag_bytes: int | None
    lag_seconds: float | None
    findings: list[Finding] = field(default_factory=list)
    needs_lag_override: bool = False
    needs_isolation: bool = False
    earlier_primary_lsn: dict[str, int | None] = field(default_factory=dict)  # before this plan's probes

    @property
    def blockers(self) -> list[Finding]:
        return blockers(self.findings)

    @property
    def replicas(self) -> list[Node]:
        return [node for node in self.cluster.nodes.order_by("name") if node.role == "replica"]

    def refusal(self, *, override_reason: str = "", isolation_reason: str = "") -> str | None:
        """Why this failover may not go ahead with these reasons, or None."""
        if self.blockers:
            return " ".join(finding.title for finding in self.blockers)
        if self.needs_lag_override and len(override_reason.strip()) < MIN_REASON_LENGTH:
            return (
                f"The replica is {format_bytes(self.lag_bytes or 0)} behind, more than the cluster's limit of"
                f" {format_bytes(self.cluster.max_failover_lag_bytes)}: give a reason (at least"
                f" {MIN_REASON_LENGTH} characters) to fail over anyway."
            )
        if self.needs_isolation and len(isolation_reason.strip()) < MIN_REASON_LENGTH:
            return (
                f"The old primary {self.old_primary.name if self.old_primary else ''} cannot be reached, so the"
                " portal cannot stop it: confirm it is isolated (powered off, or cut off from the applications)"
                f" and say how (at least {MIN_REASON_LENGTH} characters)."
            )
        return None


def _last_primary_lsn(probe: Mapping[str, Any]) -> int | None:
    """The node's WAL position when it last answered as a primary."""
    seen = probe if probe.get("reachable") else probe.get("last_seen") or {}
    return lsn_int(seen.get("lsn")) if seen.get("role") == "primary" else None


def failover_plan(cluster: Cluster, *, to: str | None = None, timeout: float = 3.0) -> FailoverPlan:
    """Probe every node now and decide: which replica, which old primary, how much could be lost."""
    earlier = {node.name: _last_primary_lsn(node.last_probe) for node in cluster.nodes.all()}
    cluster_probe(cluster, timeout=timeout)
    nodes = {node.name: node for node in cluster.nodes.order_by("name")}
    findings: list[Finding] = []
    primaries = [node for node in nodes.values() if node.role == "primary"]
    if len(primaries) > 1:
        names = ", ".join(node.name for node in primaries)
        findings.append(Finding(BLOCKER, f"More than one node accepts writes ({names}).", "Resolve that first."))
    if to:
        candidate = nodes.get(to)
        if candidate is None:
            findings.append(Finding(BLOCKER, f"Cluster {cluster.name} has no node named {to!r}."))
    else:
        replicas = [node for node in nodes.values() if node.role == "replica"]
        candidate = min(replicas, key=lambda node: node.last_probe.get("lag_bytes") or 0, default=None)
    designated = cluster_primary(cluster)
    old_primary = primaries[0] if primaries else designated
    if old_primary is None or old_primary == candidate:
        old_primary = next((node for node in nodes.values() if node != candidate and node.role != "replica"), None)

    plan = FailoverPlan(cluster, candidate, old_primary, "none", None, None, findings, earlier_primary_lsn=earlier)
    if candidate is not None:
        _candidate_findings(plan, candidate)
    if old_primary is not None:
        _old_primary_findings(plan, old_primary)
    elif candidate is not None:
        findings.append(Finding(WARNING, "No other node is known as the primary.", "Nothing to fence."))
    if candidate is None and not blockers(findings):
        reachable = [node for node in nodes.values() if node.last_probe.get("reachable")]
        others = [node for node in nodes.values() if node.role != "primary"]
        why = "; ".join(f"{node.name}: {node.last_probe.get('error') or node.role}" for node in others)
        title = "No node is reachable" if not reachable else "No replica is reachable and in recovery"
        findings.append(Finding(BLOCKER, f"{title} ({why}).", "There is nothing to fail over to; nothing was changed."))
    _lag_findings(plan)
    return plan


def _candidate_findings(plan: FailoverPlan, candidate: Node) -> None:
    probe = candidate.last_probe
    if not probe.get("reachable"):
        plan.findings.append(Finding(BLOCKER, f"Replica {candidate.name} is unreachable: {probe.get('error')}."))
    elif probe.get("role") != "replica":
        plan.findings.append(
            Finding(BLOCKER, f"{candidate.name} is not in recovery (it is already a primary): nothing to promote.")
        )
    else:
        streaming = "streaming" if probe.get("streaming") else "not streaming (its primary is gone or unreachable)"
        plan.findings.append(
            Finding(OK, f"Replica {candidate.name} is reachable and in recovery, {streaming}.", f"LSN {probe['lsn']}")
        )


def _old_primary_findings(plan: FailoverPlan, old: Node) -> None:
    probe = old.last_probe
    plan.old_primary_state = state = "up" if probe.get("reachable") else old.role  # down | unreachable
    controller = old.controller_built()
    if state == "up":
        how = (
            f"stopped through its controller ({controller.describe()})"
            if controller.kind != "none"
            else "made read-only and its sessions ended (it has no controller to stop it)"
        )
        plan.findings.append(
            Finding(WARNING, f"Primary {old.name} is still up and accepting writes.", f"It will be {how} first.")
        )
    elif state == "down":
        plan.findings.append(Finding(OK, f"Primary {old.name} is down: {probe.get('error')}."))
    else:
        if controller.kind == "pg_ctl" and controller.is_running() is False:
            plan.old_primary_state = "down"
            plan.findings.append(Finding(OK, f"Primary {old.name} is down (pg_ctl: no server running)."))
            return
        plan.needs_isolation = True
        plan.findings.append(
            Finding(
                WARNING,
                f"Primary {old.name} is unreachable ({probe.get('error')}).",
                "The portal cannot tell whether it still accepts writes from the applications.",
            )
        )


def _lag_findings(plan: FailoverPlan) -> None:
    """Data that would be lost: WAL the old primary wrote that the replica has not received."""
    candidate, old = plan.candidate, plan.old_primary
    if candidate is None or not candidate.last_probe.get("reachable") or candidate.last_probe.get("role") != "replica":
        return
    received = lsn_int(candidate.last_probe.get("receive_lsn") or candidate.last_probe.get("lsn"))
    if plan.old_primary_state == "up" and old is not None:
        written = lsn_int(old.last_probe.get("lsn"))
        rows = [r for r in old.last_probe.get("replicas", []) if r.get("slot_name") == candidate.slot_name]
        plan.lag_seconds = rows[0]["lag_seconds"] if rows else candidate.last_probe.get("lag_seconds")
        since = "now"
    else:
        written = _last_known_primary_lsn(plan)
        plan.lag_seconds = candidate.last_probe.get("lag_seconds")
        since = "when the portal last reached the primary"
    if written is None or received is None:
        plan.findings.append(
            Finding(
                WARNING,
                "The data that could be lost is unknown.",
                "The portal never recorded the old primary's position.",
            )
        )
        return
    plan.lag_bytes = max(0, written - received)
    limit = plan.cluster.max_failover_lag_bytes
    seconds = f" (about {plan.lag_seconds:.1f} s of writes)" if plan.lag_bytes and plan.lag_seconds else ""
    title = f"Data that could be lost: {format_bytes(plan.lag_bytes)}{seconds} of WAL not yet on {candidate.name}."
    detail = f"Measured against the primary's position {since}; the cluster's limit is {format_bytes(limit)}."
    if plan.old_primary_state != "up":
        detail += " Anything the primary committed after that is lost too."
    if plan.lag_bytes > limit:
        plan.needs_lag_override = True
        plan.findings.append(Finding(WARNING, title, detail + " A DBA must give a reason to go on."))
    else:
        plan.findings.append(Finding(OK, title, detail))


def _last_known_primary_lsn(plan: FailoverPlan) -> int | None:
    """The old primary's last recorded position: from the portal's last probe of it, or its health checks
    (read through the node's checks, `Check.node`)."""
    old = plan.old_primary
    if old is None:
        return None
    checked = (
        Node.objects.filter(pk=old.pk, checks__kind="postgres", checks__results__data__role="primary")
        .order_by("-checks__results__at")
        .values_list("checks__results__data__lsn", flat=True)
        .first()
    )
    known = [lsn for lsn in (plan.earlier_primary_lsn.get(old.name), lsn_int(checked)) if lsn is not None]
    return max(known, default=None)
