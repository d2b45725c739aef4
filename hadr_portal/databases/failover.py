"""Manual failover: pre-checks, fencing, promotion, proof of writes, new topology, post-failover hook.

The DBA decides; the portal checks, refuses what is unsafe, and does the steps in the one safe order:
never two writable primaries (fence first), never promote a replica further behind than the cluster
allows (unless a DBA writes down why), never report success before a write has committed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from hadr_portal.adapters.commands import CommandFailed, run_program
from hadr_portal.adapters.pgnode import (
    NodeActionFailed,
    accepts_writes,
    controller_from_config,
    fence_read_only,
    lsn_int,
    promote,
    wait_writable,
)
from hadr_portal.adapters.probes import format_bytes
from hadr_portal.core.findings import BLOCKER, OK, WARNING, Finding, blockers
from hadr_portal.core.models import Operation
from hadr_portal.core.operations import OperationContext, OperationError, OperationKind, operation_request, register
from hadr_portal.core.permissions import Action

from .board import topology_changed
from .models import Cluster, Failover, Node, Purpose
from .topology import cluster_primary, cluster_probe

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

MIN_REASON_LENGTH = 10
WRITE_TIMEOUT_SECONDS = 30


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
    controller = controller_from_config(old.controller)
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
    """The old primary's last recorded position: from the portal's last probe of it, or its health checks."""
    from hadr_portal.status.models import CheckResult

    old = plan.old_primary
    if old is None:
        return None
    checked = (
        CheckResult.objects.filter(
            health_check__kind="postgres",
            health_check__config__cluster=plan.cluster.name,
            health_check__config__node=old.name,
            data__role="primary",
        )
        .order_by("-at")
        .values_list("data__lsn", flat=True)
        .first()
    )
    known = [lsn for lsn in (plan.earlier_primary_lsn.get(old.name), lsn_int(checked)) if lsn is not None]
    return max(known, default=None)


def failover_request(
    *,
    cluster: Cluster,
    actor: AbstractBaseUser | AnonymousUser | None,
    to: str | None = None,
    override_reason: str = "",
    isolation_reason: str = "",
    address: str | None = None,
) -> Operation:
    """Check now and queue the failover; refuse with the reason when a pre-check fails."""
    plan = failover_plan(cluster, to=to or None)
    refusal = plan.refusal(override_reason=override_reason, isolation_reason=isolation_reason)
    if refusal:
        raise FailoverRefused(refusal)
    assert plan.candidate is not None  # no blocker means there is a candidate
    return operation_request(
        kind="failover",
        target=cluster.target,
        actor=actor,
        address=address,
        parameters={
            "cluster": cluster.name,
            "to": plan.candidate.name,
            "override_reason": override_reason.strip(),
            "isolation_reason": isolation_reason.strip(),
        },
    )


def failover_run(context: OperationContext) -> Mapping[str, Any]:
    params = context.parameters
    cluster = Cluster.objects.get(name=params["cluster"])
    override, isolation = params.get("override_reason", ""), params.get("isolation_reason", "")
    context.progress(5, "Pre-checks")
    plan = failover_plan(cluster, to=params["to"])
    for finding in plan.findings:
        context.log(f"{finding.title} {finding.detail}".strip(), level="error" if finding.level == BLOCKER else "info")
    refusal = plan.refusal(override_reason=override, isolation_reason=isolation)
    if refusal:
        raise FailoverRefused(refusal)
    if override and plan.needs_lag_override:
        context.log(f"Lag limit overridden by the DBA: {override}", level="warning")
    candidate, old = plan.candidate, plan.old_primary
    assert candidate is not None
    context.checkpoint()  # the last moment a cancel is honoured: from here on the cluster changes

    context.progress(20, "Fencing the old primary")
    fencing = _fence(context, plan, isolation)

    context.progress(50, f"Promoting {candidate.name}")
    conninfo = candidate.address(Purpose.ADMIN).conninfo()
    try:
        promote(conninfo)
    except Exception as exc:
        raise NodeActionFailed(f"Promoting {candidate.name} failed: {exc}") from None
    promoted_at = timezone.now()
    context.log(f"{candidate.name} promoted (pg_promote); waiting for a write to commit")
    xid = wait_writable(conninfo, timeout=WRITE_TIMEOUT_SECONDS)
    writable_at = timezone.now()
    seconds = (writable_at - context.operation.created_at).total_seconds()
    context.log(f"First write committed on {candidate.name} (transaction {xid}), {seconds:.2f} s after the request")

    context.progress(80, "Recording the new topology")
    with transaction.atomic():
        Cluster.objects.filter(pk=cluster.pk).update(primary=candidate)
        Failover.objects.create(
            operation=context.operation,
            cluster=cluster,
            old_primary=old.name if old else "",
            new_primary=candidate.name,
            old_primary_state=plan.old_primary_state,
            fencing=fencing[:300],
            lag_bytes=plan.lag_bytes,
            override_reason=override,
            isolation_reason=isolation,
            promoted_at=promoted_at,
            writable_at=writable_at,
            seconds_to_writable=seconds,
        )
    cluster_probe(cluster)
    topology_changed()
    hook = _run_hook(context, cluster, candidate, old)
    context.progress(100, f"{candidate.name} is the primary")
    return {
        "new_primary": candidate.name,
        "old_primary": old.name if old else None,
        "old_primary_state": plan.old_primary_state,
        "fencing": fencing,
        "lag_bytes": plan.lag_bytes,
        "seconds_to_writable": round(seconds, 3),
        "hook": hook,
    }


def _fence(context: OperationContext, plan: FailoverPlan, isolation: str) -> str:
    """Keep the old primary from taking writes. Raises when that fails and no isolation was confirmed."""
    old = plan.old_primary
    if old is None:
        return "no old primary"
    if plan.old_primary_state == "down":
        context.log(f"{old.name} is down: nothing to fence. Rebuild it as a replica before starting it again.")
        return "down"
    if plan.old_primary_state == "unreachable":
        context.log(f"{old.name} is unreachable; the DBA confirmed it is isolated: {isolation}", level="warning")
        return f"unreachable; isolated per the DBA: {isolation}"
    controller = controller_from_config(old.controller, command_user=settings.COMMAND_USER)
    conninfo = old.address(Purpose.ADMIN).conninfo()
    try:
        if controller.kind == "none":
            ended = fence_read_only(conninfo)
            how = f"made read-only through SQL ({ended} client sessions ended)"
        else:
            how = controller.stop(timeout=60)
        still_writable = accepts_writes(conninfo)
        if still_writable:
            raise NodeActionFailed(f"{old.name} still accepts writes after fencing")
    except (NodeActionFailed, CommandFailed, OSError, psycopg.Error) as exc:
        if isolation:
            context.log(f"Fencing {old.name} failed ({exc}); going on: the DBA confirmed it is isolated: {isolation}")
            return f"fencing failed; isolated per the DBA: {isolation}"
        raise NodeActionFailed(
            f"Fencing {old.name} failed, so nothing was promoted: {exc}. Stop it by hand, or confirm that it is"
            " isolated from the applications and try again."
        ) from None
    context.log(f"{old.name} fenced: {how}")
    return how.splitlines()[0]


def _run_hook(context: OperationContext, cluster: Cluster, new: Node, old: Node | None) -> str:
    hook = cluster.post_failover_hook
    if not hook:
        return ""
    env = {
        "HADR_CLUSTER": cluster.name,
        "HADR_NEW_PRIMARY": new.name,
        "HADR_NEW_PRIMARY_HOST": new.host,
        "HADR_NEW_PRIMARY_PORT": str(new.port),
        "HADR_OLD_PRIMARY": old.name if old else "",
    }
    passed = {name: os.environ[name] for name in hook.get("env", ()) if name in os.environ}
    started = time.monotonic()
    try:
        result = run_program(
            hook["argv"], user=settings.COMMAND_USER, timeout=float(hook.get("timeout_seconds", 60)), env=passed | env
        )
    except CommandFailed as exc:
        raise NodeActionFailed(
            f"{new.name} is the new primary and takes writes, but the post-failover hook failed: {exc}."
            " Applications may still point at the old primary: run the hook's step by hand."
        ) from None
    output = (result.stdout + result.stderr).strip()
    context.log(f"Post-failover hook ran in {time.monotonic() - started:.1f} s" + (f":\n{output}" if output else ""))
    return output[-2000:]


FAILOVER = register(
    OperationKind(
        name="failover",
        label="Failover",
        action=Action.FAILOVER,
        run=failover_run,
        queue="ops",
        cancellable_while_running=False,
        max_attempts=1,  # never retried by itself: each attempt re-decides with the DBA
    )
)
