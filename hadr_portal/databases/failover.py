"""Manual failover: the request and the run — fencing, promotion, proof of writes, new topology, post-failover hook.

The DBA decides; the portal checks (databases.failover_plan, again at the start of the run), refuses what is
unsafe, and does the steps in the one safe order: never two writable primaries (fence first), never promote a
replica further behind than the cluster allows (unless a DBA writes down why), never report success before a
write has committed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import psycopg
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from hadr_portal.adapters.commands import CommandFailed, run_program
from hadr_portal.adapters.pg.node import (
    NodeActionFailed,
    accepts_writes,
    fence_read_only,
    promote,
    wait_writable,
)
from hadr_portal.core.findings import BLOCKER
from hadr_portal.core.killpoints import kill_point
from hadr_portal.core.models import Operation, OperationLogLine
from hadr_portal.core.operation_kinds import OperationContext, OperationKind
from hadr_portal.core.operations import operation_request
from hadr_portal.core.permissions import Action
from hadr_portal.core.redaction import redact

from .failover_plan import FailoverPlan, FailoverRefused, failover_plan
from .models import Cluster, Failover, Node, Purpose
from .sections import topology_changed
from .signals import cluster_without_primary
from .topology import cluster_probe

if TYPE_CHECKING:
    from hadr_portal.core.permissions import Actor

WRITE_TIMEOUT_SECONDS = 30


def failover_request(
    *,
    cluster: Cluster,
    actor: Actor | None,
    to: str | None = None,
    override_reason: str = "",
    isolation_reason: str = "",
    address: str | None = None,
) -> Operation:
    """Check now and queue the failover; refuse with the reason when a pre-check fails."""
    if cluster.is_patroni:
        raise FailoverRefused(
            f"{cluster.name} is managed by Patroni: the portal never promotes its nodes behind Patroni's back. "
            "Use a switchover, or Patroni's manual failover when the leader is gone."
        )
    plan = failover_plan(cluster, to=to or None)
    refusal = plan.refusal(override_reason=override_reason, isolation_reason=isolation_reason)
    if refusal:
        raise FailoverRefused(refusal)
    assert plan.candidate is not None  # no blocker means there is a candidate
    return operation_request(
        kind="failover",
        target=cluster.target,
        scope=cluster.target,
        scope_exclusive=True,
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
    # the record and its journal exist before anything acts: a crash from here on is the reaper's to finish
    record, _ = Failover.objects.get_or_create(
        operation=context.operation,
        defaults={
            "cluster": cluster,
            "old_primary": old.name if old else "",
            "new_primary": candidate.name,
            "old_primary_state": plan.old_primary_state,
            "lag_bytes": plan.lag_bytes,
            "override_reason": override,
            "isolation_reason": isolation,
        },
    )

    context.progress(20, "Fencing the old primary")
    _step(record, "fence")
    fencing = _fence(context, plan, isolation)
    Failover.objects.filter(pk=record.pk).update(fencing=fencing[:300])

    context.progress(50, f"Promoting {candidate.name}")
    _step(record, "promote")
    conninfo = candidate.address(Purpose.ADMIN).conninfo()
    try:
        promote(conninfo)
    except Exception as exc:
        raise NodeActionFailed(f"Promoting {candidate.name} failed: {exc}") from None
    promoted_at = timezone.now()
    Failover.objects.filter(pk=record.pk).update(promoted_at=promoted_at)
    kill_point("failover.promoted")
    context.log(f"{candidate.name} promoted (pg_promote); waiting for a write to commit")
    xid = wait_writable(conninfo, timeout=WRITE_TIMEOUT_SECONDS)
    writable_at = timezone.now()
    seconds = (writable_at - context.operation.created_at).total_seconds()
    context.log(f"First write committed on {candidate.name} (transaction {xid}), {seconds:.2f} s after the request")

    context.progress(80, "Recording the new topology")
    _step(record, "record")
    with transaction.atomic():
        Cluster.objects.filter(pk=cluster.pk).update(primary=candidate)
        Failover.objects.filter(pk=record.pk).update(writable_at=writable_at, seconds_to_writable=seconds)
    cluster_probe(cluster)
    topology_changed()
    _step(record, "hook")
    hook = post_failover_hook_run(context.log, cluster, candidate, old)
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
    controller = old.controller_built()
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


def _step(record: Failover, name: str) -> None:
    """Journal first, then act (and a kill point for the crash tests)."""
    record.steps = [*record.steps, name]
    Failover.objects.filter(pk=record.pk).update(steps=record.steps)
    kill_point(f"failover.{name}")


def failover_cleanup(operation: Operation) -> None:
    """After a failure or a lost worker, from the journal and the nodes' real state: a candidate that was promoted
    and takes writes becomes the cluster's primary, and the post-failover hook runs if it had not; a cluster left
    with no writable node is said (an incident opens). The record stays, with what the reaper did."""
    record = Failover.objects.filter(operation=operation).select_related("cluster").first()
    if record is None or "promote" not in record.steps:
        return  # nothing changed the cluster (a failed fence stops before the promotion)
    cluster = record.cluster
    done: list[str] = []
    candidate = cluster.nodes.filter(name=record.new_primary).first()
    old = cluster.nodes.filter(name=record.old_primary).first() if record.old_primary else None
    writable = bool(candidate and accepts_writes(candidate.address(Purpose.ADMIN).conninfo()))
    if candidate is not None and writable:
        with transaction.atomic():
            Cluster.objects.filter(pk=cluster.pk).update(primary=candidate)
            Failover.objects.filter(pk=record.pk, writable_at=None).update(writable_at=timezone.now())
        done.append(f"{candidate.name} was promoted and takes writes: recorded as the primary")
        cluster_probe(cluster)
        topology_changed()
        # a worker lost during the hook may have run it already: hooks must bear running twice (README)
        try:
            post_failover_hook_run(lambda message, **_: done.append(message), cluster, candidate, old)
            done.append("post-failover hook run")
        except NodeActionFailed as exc:
            done.append(str(exc))
    else:
        detail = (
            f"Failover #{operation.pk} of {cluster.name} stopped after promoting {record.new_primary}, which takes no "
            "writes: the cluster has no writable primary. See the Databases page and the runbook database-problem."
        )
        done.append(detail)
        cluster_without_primary.send(sender=Cluster, cluster=cluster, detail=detail, operation=operation)
    Failover.objects.filter(pk=record.pk).update(finished_by_reaper="; ".join(done)[:2000])
    for line in done:
        OperationLogLine.objects.create(operation=operation, message=redact(line))


def post_failover_hook_run(log: Callable[..., object], cluster: Cluster, new: Node, old: Node | None) -> str:
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
    log(f"Post-failover hook ran in {time.monotonic() - started:.1f} s" + (f":\n{output}" if output else ""))
    return output[-2000:]


FAILOVER = OperationKind(
    name="failover",
    label="Failover",
    action=Action.FAILOVER,
    run=failover_run,
    queue="ops",
    cancellable_while_running=False,
    max_attempts=1,  # never retried by itself: each attempt re-decides with the DBA
    cleanup=failover_cleanup,
)
