"""What a DBA asks Patroni to do, as operations (audited, one destructive operation per cluster at a time):
a planned switchover (now or at a time), a manual failover when the leader is gone, restarting or reinitializing
a member, pausing and resuming automatic failover, and changing the dynamic settings the portal documents.

The portal never acts behind Patroni's back on its nodes (no pg_ctl, no pg_promote): it asks the REST API and
then watches the outcome, and says when it is done — a switchover when its candidate takes writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from hadr_portal.adapters.patroni import PatroniClient, PatroniCluster, PatroniError, PatroniMember
from hadr_portal.adapters.pg.node import wait_writable
from hadr_portal.core.killpoints import kill_point
from hadr_portal.core.models import Operation, OperationLogLine
from hadr_portal.core.operation_kinds import OperationContext, OperationError, OperationKind
from hadr_portal.core.operations import operation_request
from hadr_portal.core.permissions import Action
from hadr_portal.core.scheduling import schedule_due

from .models import Cluster, Purpose
from .patroni_state import DOCUMENTED_SETTINGS, patroni_client
from .sections import topology_changed

if TYPE_CHECKING:
    from hadr_portal.core.permissions import Actor

WRITE_TIMEOUT_SECONDS = 60
MEMBER_TIMEOUT_SECONDS = {"member_restart": 120, "member_reinit": 600}
MAX_SCHEDULE_AHEAD = timedelta(days=7)
HEALTHY_STATES = ("running", "streaming")


class HaRefused(OperationError):
    """Patroni's state says no (or the input is wrong); nothing was asked of it."""


def _state(cluster: Cluster) -> PatroniCluster:
    try:
        return patroni_client(cluster).cluster()
    except PatroniError as exc:
        raise HaRefused(str(exc)) from None


def scheduled_time(text: str) -> datetime | None:
    """A time typed in the portal's zone ("2026-12-08 03:00" or the browser's 2026-12-08T03:00), or None."""
    text = text.strip().replace("T", " ")
    if not text:
        return None
    try:
        moment = datetime.strptime(text[:16], "%Y-%m-%d %H:%M")
    except ValueError:
        raise HaRefused(f"{text!r} is not a time like 2026-12-08 03:00 (the portal's time zone).") from None
    return timezone.make_aware(moment)


def _request(kind: str, cluster: Cluster, actor: Actor | None, address: str | None, **parameters: Any) -> Operation:
    return operation_request(
        kind=kind,
        target=cluster.target,
        scope=cluster.target,
        scope_exclusive=True,
        actor=actor,
        address=address,
        parameters={"cluster": cluster.name, **parameters},
    )


# --- requests: checked against Patroni's state now -----------------------------------------------------------


def switchover_request(
    *,
    cluster: Cluster,
    actor: Actor | None,
    candidate: str = "",
    scheduled_at: datetime | None = None,
    address: str | None = None,
    drill: bool = False,
) -> Operation:
    """A planned switchover to `candidate` (or the member Patroni picks), now or at `scheduled_at`; a drill is
    the same, queued by the cluster's drill schedule, its RTO measured by the write probe."""
    state = _state(cluster)
    leader = state.leader
    if leader is None:
        raise HaRefused(f"{cluster.name} has no leader: a switchover needs one. Use a manual failover.")
    if state.paused and scheduled_at is not None:
        raise HaRefused(f"{cluster.name} is paused: Patroni refuses a scheduled switchover in maintenance mode.")
    replicas = [m for m in state.members if not m.is_leader]
    if candidate:
        member = state.member(candidate)
        if member is None:
            names = ", ".join(m.name for m in replicas) or "none"
            raise HaRefused(f"{candidate!r} is not a member of {cluster.name} (replicas: {names}).")
        if member.is_leader:
            raise HaRefused(f"{candidate} is already the leader.")
        if member.state not in HEALTHY_STATES:
            raise HaRefused(f"{candidate} is {member.state}, not streaming: it cannot take over now.")
    elif not any(m.state in HEALTHY_STATES for m in replicas):
        raise HaRefused(f"No replica of {cluster.name} is streaming: nobody could take over.")
    when = ""
    if scheduled_at is not None:
        if timezone.is_naive(scheduled_at):
            raise HaRefused("A scheduled switchover's time must carry its time zone.")
        now = timezone.now()
        if scheduled_at <= now:
            raise HaRefused(f"{scheduled_at:%Y-%m-%d %H:%M %Z} is in the past: give a later time, or none for now.")
        if scheduled_at - now > MAX_SCHEDULE_AHEAD:
            raise HaRefused("A switchover can be scheduled at most 7 days ahead.")
        when = scheduled_at.astimezone(UTC).isoformat()
    return _request("switchover", cluster, actor, address, leader=leader.name, candidate=candidate, scheduled_at=when)


def patroni_failover_request(
    *, cluster: Cluster, actor: Actor | None, candidate: str, address: str | None = None
) -> Operation:
    """Patroni's manual failover: only when there is no leader to hand over (else a switchover is the safe way)."""
    state = _state(cluster)
    if state.leader is not None and state.leader.state in HEALTHY_STATES:
        raise HaRefused(
            f"{state.leader.name} is a running leader: use a switchover, which hands over without losing writes."
        )
    member = state.member(candidate)
    if member is None:
        raise HaRefused(f"{candidate!r} is not a member of {cluster.name}.")
    if member.is_leader or member.state not in HEALTHY_STATES:
        raise HaRefused(f"{candidate} is {member.state} ({member.role}): promote a running replica.")
    return _request("patroni_failover", cluster, actor, address, candidate=candidate)


def member_action_request(
    *, kind: str, cluster: Cluster, actor: Actor | None, member: str, address: str | None = None
) -> Operation:
    """Restart (`member_restart`) or reinitialize (`member_reinit`) one member through its own REST API."""
    found = _state(cluster).member(member)
    if found is None:
        raise HaRefused(f"{member!r} is not a member of {cluster.name}.")
    if kind == "member_reinit" and found.is_leader:
        raise HaRefused(f"{member} is the leader: switch over first; Patroni never reinitializes its leader.")
    return _request(kind, cluster, actor, address, member=member)


def pause_request(*, cluster: Cluster, actor: Actor | None, paused: bool, address: str | None = None) -> Operation:
    """Maintenance mode on (`paused`) or off: refused when it is already so."""
    if _state(cluster).paused == paused:
        raise HaRefused(f"Automatic failover of {cluster.name} is already {'paused' if paused else 'on'}.")
    return _request("ha_pause", cluster, actor, address, paused=paused)


def config_changes(raw: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """The documented settings a DBA changes, checked: whole numbers in range, and the rule that keeps two
    leaders from overlapping (loop_wait + 2 × retry_timeout ≤ ttl). Raises HaRefused."""
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in DOCUMENTED_SETTINGS:
            raise HaRefused(f"{key!r} is not a setting the portal changes ({', '.join(DOCUMENTED_SETTINGS)}).")
        if key == "synchronous_mode":
            if str(value).lower() not in ("true", "false", "on", "off", "1", "0"):
                raise HaRefused(f"synchronous_mode must be true or false, not {value!r}.")
            changes[key] = str(value).lower() in ("true", "on", "1")
            continue
        try:
            number = int(str(value))
        except ValueError:
            raise HaRefused(f"{key} must be a whole number, not {value!r}.") from None
        if number < (0 if key == "maximum_lag_on_failover" else 1):
            raise HaRefused(f"{key} must be positive.")
        changes[key] = number
    if not changes:
        raise HaRefused("Nothing to change.")
    merged = {**current, **changes}
    ttl, loop_wait, retry = (merged.get(k) for k in ("ttl", "loop_wait", "retry_timeout"))
    if all(isinstance(v, int) for v in (ttl, loop_wait, retry)) and loop_wait + 2 * retry > ttl:  # type: ignore[operator]
        raise HaRefused(
            f"loop_wait + 2 × retry_timeout ({loop_wait} + 2 × {retry}) must not exceed ttl ({ttl}): a leader that "
            "lost etcd must step down before its key expires, or two nodes could take writes."
        )
    return changes


def config_request(
    *, cluster: Cluster, actor: Actor | None, changes: Mapping[str, Any], address: str | None = None
) -> Operation:
    """Change documented dynamic settings, checked against Patroni's current configuration (and again at the run)."""
    try:
        current = patroni_client(cluster).config()
    except PatroniError as exc:
        raise HaRefused(str(exc)) from None
    return _request("ha_config", cluster, actor, address, changes=config_changes(changes, current))


# --- runs ------------------------------------------------------------------------------------------------------


def _until(what: str, predicate: Callable[[], bool], timeout: float) -> float:
    """Wait for `predicate`; the seconds it took. Raises with `what` when it never held."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise OperationError(f"Patroni was asked, but {what} did not happen within {timeout:g} s.")
        time.sleep(0.2)
    return time.monotonic() - started


def _cluster_now(cluster: Cluster) -> PatroniCluster | None:
    try:
        return patroni_client(cluster).cluster()
    except PatroniError:
        return None


def _new_leader_writable(context: OperationContext, cluster: Cluster, candidate: str) -> dict[str, Any]:
    """Wait for a leader other than the old one (the candidate, if named) and its first committed write."""
    old = context.parameters.get("leader", "")
    found: list[PatroniMember] = []

    def moved() -> bool:
        state = _cluster_now(cluster)
        leader = state.leader if state else None
        if leader is not None and leader.name != old and (not candidate or leader.name == candidate):
            found.append(leader)
        return bool(found)

    _until("the leader change", moved, WRITE_TIMEOUT_SECONDS)
    leader = found[0]
    node = cluster.nodes.filter(name=leader.name).first()
    if node is None:
        raise OperationError(f"{leader.name} leads, but the catalog has no node of that name: add it.")
    xid = wait_writable(node.address(Purpose.ADMIN).conninfo(), timeout=WRITE_TIMEOUT_SECONDS)
    seconds = (timezone.now() - context.operation.created_at).total_seconds()
    context.log(f"First write committed on {leader.name} (transaction {xid}), {seconds:.2f} s after the request")
    topology_changed()
    return {"new_leader": leader.name, "old_leader": old, "seconds_to_writable": round(seconds, 3)}


def switchover_run(context: OperationContext) -> Mapping[str, Any]:
    params = context.parameters
    cluster = Cluster.objects.get(name=params["cluster"])
    api = patroni_client(cluster)
    scheduled = datetime.fromisoformat(params["scheduled_at"]) if params.get("scheduled_at") else None
    context.progress(10, f"Asking Patroni to switch over from {params['leader']}")
    answer = api.switchover(leader=params["leader"], candidate=params.get("candidate", ""), scheduled_at=scheduled)
    kill_point("switchover.asked")
    context.log(f"Patroni: {answer}")
    if scheduled is not None:
        context.progress(100, f"Scheduled for {timezone.localtime(scheduled):%Y-%m-%d %H:%M %Z}")
        return {"scheduled_at": params["scheduled_at"], "answer": answer}
    context.progress(60, "Waiting for the first write on the new leader")
    result = _new_leader_writable(context, cluster, params.get("candidate", ""))
    context.progress(100, f"{result['new_leader']} leads")
    return {**result, "answer": answer}


def patroni_failover_run(context: OperationContext) -> Mapping[str, Any]:
    params = context.parameters
    cluster = Cluster.objects.get(name=params["cluster"])
    context.progress(10, f"Asking Patroni to promote {params['candidate']}")
    answer = patroni_client(cluster).failover(candidate=params["candidate"])
    kill_point("patroni_failover.asked")
    context.log(f"Patroni: {answer}")
    result = _new_leader_writable(context, cluster, params["candidate"])
    context.progress(100, f"{result['new_leader']} leads")
    return {**result, "answer": answer}


def member_action_run(context: OperationContext) -> Mapping[str, Any]:
    params, kind = context.parameters, context.operation.kind
    cluster = Cluster.objects.get(name=params["cluster"])
    api = patroni_client(cluster)
    member = api.cluster().member(params["member"])
    if member is None:
        raise OperationError(f"{params['member']} is no longer a member of {cluster.name}.")
    verb = "restart" if kind == "member_restart" else "reinitialize"
    before, asked = _started(api, member), time.monotonic()
    context.progress(10, f"Asking {member.name} to {verb}")
    answer = api.restart(member) if kind == "member_restart" else api.reinitialize(member)
    context.log(f"Patroni: {answer}")

    def back() -> bool:  # a new postmaster (not the old one still answering), running, and following if a replica
        state = _cluster_now(cluster)
        found = state.member(member.name) if state else None
        if found is None or found.state not in HEALTHY_STATES:
            return False
        return (found.is_leader or found.lag_bytes is not None) and _started(api, member) not in ("", before)

    _until(f"{member.name} running again", back, MEMBER_TIMEOUT_SECONDS[kind])
    seconds = time.monotonic() - asked  # Patroni answers a restart once it is done: count from the request
    context.progress(100, f"{member.name} is running")
    return {"member": member.name, "seconds": round(seconds, 2), "answer": answer}


def _started(api: PatroniClient, member: PatroniMember) -> str:
    """When the member's PostgreSQL started ("" while it cannot say)."""
    try:
        return str(api.member_status(member).get("postmaster_start_time") or "")
    except PatroniError:
        return ""


def pause_run(context: OperationContext) -> Mapping[str, Any]:
    params = context.parameters
    cluster = Cluster.objects.get(name=params["cluster"])
    paused = bool(params["paused"])
    patroni_client(cluster).pause(paused)
    _until("the change", lambda: (s := _cluster_now(cluster)) is not None and s.paused == paused, 30)
    said = "paused: Patroni fails nothing over until it is resumed" if paused else "resumed"
    context.progress(100, f"Automatic failover {said}")
    topology_changed()
    return {"paused": paused}


def config_run(context: OperationContext) -> Mapping[str, Any]:
    params = context.parameters
    cluster = Cluster.objects.get(name=params["cluster"])
    api = patroni_client(cluster)
    changes = config_changes(params["changes"], api.config())  # checked again against what is there now
    after = api.config_patch(changes)
    context.log("Dynamic configuration now: " + ", ".join(f"{k}={after.get(k)}" for k in DOCUMENTED_SETTINGS))
    wrong = {k: v for k, v in changes.items() if after.get(k) != v}
    if wrong:
        raise OperationError(f"Patroni did not take {wrong}: see its log.")
    return {"changes": changes}


def leader_change_cleanup(operation: Operation) -> None:
    """After a failed or lost switchover or failover, say what Patroni did: the leader now, and whether the
    cluster takes writes (the write probe records the change itself, linked to this operation)."""
    cluster = Cluster.objects.filter(name=operation.parameters.get("cluster", "")).first()
    if cluster is None:
        return
    state = _cluster_now(cluster)
    leader = state.leader if state else None
    if leader is None:
        said = f"{cluster.name} has no leader now: see the Databases page and the runbook database-problem."
    else:
        moved = leader.name != operation.parameters.get("leader", leader.name)
        said = f"{leader.name} leads {cluster.name} now" + (" (Patroni did hand over)" if moved else "")
    OperationLogLine.objects.create(operation=operation, message=said)


def _kind(name: str, label: str, run: Callable[[OperationContext], Mapping[str, Any]], action: Action) -> OperationKind:
    moves_leader = name in ("switchover", "patroni_failover")
    return OperationKind(
        name=name,
        label=label,
        action=action,
        run=run,
        queue="ops",
        max_attempts=1,  # never again by itself: a second switchover is a second outage for the applications
        cleanup=leader_change_cleanup if moves_leader else None,
    )


HA_KINDS = (
    _kind("switchover", "Switchover", switchover_run, Action.FAILOVER),
    _kind("patroni_failover", "Patroni failover", patroni_failover_run, Action.FAILOVER),
    _kind("member_restart", "Member restart", member_action_run, Action.FAILOVER),
    _kind("member_reinit", "Member reinitialize", member_action_run, Action.REBUILD_REPLICA),
    _kind("ha_pause", "Pause / resume automatic failover", pause_run, Action.FAILOVER),
    _kind("ha_config", "Patroni configuration", config_run, Action.FAILOVER),
)


def switchover_drills_due(*, now: datetime | None = None) -> list[Operation]:
    """Queue the switchover drills due by each cluster's drill schedule (called by beat). A direct cluster's
    drill (only when its schedule is set) is the portal's failover, which leaves the old primary to rebuild."""
    from .failover import failover_request

    def start(cluster: Cluster) -> Operation:
        if cluster.is_patroni:
            return switchover_request(cluster=cluster, actor=None, drill=True)
        return failover_request(cluster=cluster, actor=None)

    return schedule_due(
        Cluster.objects.all(),
        field="next_drill_at",
        schedule=lambda cluster: cluster.drill_schedule,
        start=start,
        kind="switchover",
        target=lambda cluster: cluster.target,
        now=now or timezone.now(),
    )
