"""The write probe: once a second, on every cluster, a row in `hadr_probe.writes` on whichever node takes writes
(libpq's `target_session_attrs=read-write` over all the nodes, as an application finds its primary), read back on
every other node. It measures what a failover cost instead of inferring it:

- **RTO**: from the last probe row committed on the old leader to the first committed on the new one;
- **RPO**: the probe rows the old leader acknowledged (`ProbeWrite`, kept an hour) that the new one lacks;
- each replica's delay: now minus the newest probe row it has replayed.

A leader that moved is a `LeaderChange`: linked to the switchover or failover operation that asked for it, else
automatic (an incident opens: `signals.leader_changed`). Its timeline grows as the probe sees the replicas follow
and the old leader rejoin (`signals.leader_change_event`). Patroni clusters also get their state read here
(databases.patroni_state), and the post-failover hook runs after every Patroni leader change.

The probe writes as the cluster's probe role (`probe_user`: INSERT, SELECT, DELETE on that one table), created by
`manage.py write_probe_setup CLUSTER` with the admin account.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import psycopg
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from psycopg import sql
from psycopg.conninfo import make_conninfo

from hadr_portal.core.dispatch import task_send_on_commit
from hadr_portal.core.models import Operation

from .models import Cluster, LeaderChange, Node, ProbeWrite, Purpose
from .patroni_state import ha_state_refresh
from .sections import topology_changed
from .signals import leader_change_event, leader_changed

logger = logging.getLogger(__name__)

TABLE = "hadr_probe.writes"
KEEP = timedelta(hours=1)
KEEP_MICROS = int(KEEP.total_seconds() * 1_000_000)  # probe ids are microseconds: rows older than KEEP, by id
CONNECT_TIMEOUT = 2  # libpq's floor
FOLLOWING_SECONDS = 5.0  # a replica whose newest probe row is younger than this follows the leader
REJOIN_WAIT = timedelta(minutes=10)  # an old leader not back by then is said not to have rejoined
# the operations that move a leader, and what such a change is called
OPERATION_KINDS = {
    "switchover": LeaderChange.Cause.SWITCHOVER,
    "patroni_failover": LeaderChange.Cause.FAILOVER,
    "failover": LeaderChange.Cause.FAILOVER,
}


class ProbeSetupError(Exception):
    """The probe table or its grants could not be made; the message says why."""


def write_probe_setup(cluster: Cluster) -> str:
    """Create `hadr_probe.writes` on the node that takes writes (the admin account) and grant the probe role what
    it needs, nothing more. Idempotent; replicas get it by replication."""
    probe_user, _ = cluster.credentials(Purpose.PROBE)
    try:
        with psycopg.connect(
            _writable_conninfo(cluster, Purpose.ADMIN, list(cluster.nodes.all())), autocommit=True
        ) as conn:
            conn.execute("CREATE SCHEMA IF NOT EXISTS hadr_probe")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigint PRIMARY KEY, node text NOT NULL,"
                " written_at timestamptz NOT NULL DEFAULT now())"
            )
            if cluster.own_role(Purpose.PROBE):
                role = sql.Identifier(probe_user)
                conn.execute(sql.SQL("GRANT USAGE ON SCHEMA hadr_probe TO {}").format(role))
                conn.execute(sql.SQL("GRANT SELECT, INSERT, DELETE ON hadr_probe.writes TO {}").format(role))
            where = f"{conn.info.host}:{conn.info.port}"
    except psycopg.Error as exc:
        raise ProbeSetupError(f"Could not create {TABLE} on {cluster.name}: {exc}".strip()) from None
    return f"{TABLE} ready on {cluster.name} ({where}); the probe writes as {probe_user}"


def probe_all() -> int:
    """One tick for every cluster at once (a dead cluster costs its connect timeout once); how many were probed."""
    clusters = list(Cluster.objects.all())
    if not clusters:
        return 0
    with ThreadPoolExecutor(max_workers=min(8, len(clusters)), thread_name_prefix="write-probe") as pool:
        list(pool.map(_probe_in_thread, clusters))
    return len(clusters)


def _probe_in_thread(cluster: Cluster) -> None:
    try:
        probe_tick(cluster)
    except Exception:  # one cluster's fault never stops the others' probe
        logger.exception("write probe of %s failed", cluster.name)
    finally:
        connection.close()  # a Django connection opened in a pool thread is closed with it


def probe_tick(cluster: Cluster, *, now: datetime | None = None) -> dict[str, Any]:
    """Write one row, read it back on the replicas, notice a leader that moved; the new `probe_state`. Ticks of one
    cluster never overlap (an advisory lock in the portal's database: a slow tick makes the next one skip)."""
    with transaction.atomic():
        locked = connection.cursor()
        locked.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [0x68616472, cluster.pk])
        if not locked.fetchone()[0]:
            return dict(cluster.probe_state)
        cluster.refresh_from_db(fields=["probe_state", "ha_state"])
        return _tick(cluster, now or timezone.now())


def _tick(cluster: Cluster, now: datetime) -> dict[str, Any]:
    nodes = list(cluster.nodes.order_by("name"))
    state = dict(cluster.probe_state or {})
    seq = _micros(now)
    previous = state.get("leader", "")
    if cluster.is_patroni:  # first: a leader change found below is told when Patroni elected the new leader
        delays = {k: row["seconds"] for k, row in state.get("replicas", {}).items() if row.get("seconds") is not None}
        ha_state_refresh(cluster, replica_delays=delays)
    try:
        leader, present = _write(cluster, nodes, seq, previous)
    except psycopg.Error as exc:
        leader, present = "", set()
        state["error"] = _first_line(exc)
        state.setdefault("failing_since", now.isoformat())
    else:
        ProbeWrite.objects.create(cluster=cluster, seq=seq, node=leader, at=now)
        if previous and leader != previous:
            _leader_changed(cluster, state, old=previous, new=leader, at=now, present=present)
        state.update(leader=leader, last_ok_at=now.isoformat(), last_ok_seq=seq, error="")
        state.pop("failing_since", None)
    state["replicas"] = _replica_delays(cluster, [n for n in nodes if n.name != leader], now)
    state["at"] = now.isoformat()
    ProbeWrite.objects.filter(cluster=cluster, seq__lt=seq - KEEP_MICROS).delete()
    Cluster.objects.filter(pk=cluster.pk).update(probe_state=state)
    cluster.probe_state = state
    _changes_follow(cluster, state, now)
    return state


def _micros(moment: datetime) -> int:
    """A probe row's id: its moment in microseconds (ids grow with time, so "older than" is a range on the key)."""
    return int(moment.timestamp() * 1_000_000)


def _writable_conninfo(cluster: Cluster, purpose: Purpose, nodes: list[Node], first: str = "") -> str:
    """Every node, the last leader first: libpq connects to the first that takes writes."""
    nodes = sorted(nodes, key=lambda n: (n.name != first, n.name))
    if not nodes:
        raise psycopg.OperationalError(f"cluster {cluster.name} has no nodes in the catalog")
    user, password = cluster.login(purpose)
    return make_conninfo(
        host=",".join(n.host for n in nodes),
        port=",".join(str(n.port) for n in nodes),
        dbname=cluster.dbname,
        user=user,
        password=password,
        target_session_attrs="read-write",
        connect_timeout=CONNECT_TIMEOUT,
        application_name="hadr-write-probe",
    )


def _write(cluster: Cluster, nodes: list[Node], seq: int, previous: str) -> tuple[str, set[int]]:
    """Commit one row where writes go; (the node that took it, the probe ids it holds since the last one the old
    leader had acknowledged when the leader moved, else empty)."""
    with psycopg.connect(_writable_conninfo(cluster, Purpose.PROBE, nodes, previous), autocommit=True) as conn:
        host, port = conn.info.host, conn.info.port
        node = next(
            (n.name for n in nodes if n.port == port and n.host in (host, conn.info.hostaddr)), f"{host}:{port}"
        )
        conn.execute(f"INSERT INTO {TABLE} (id, node) VALUES (%s, %s)", [seq, node])
        conn.execute(f"DELETE FROM {TABLE} WHERE id < %s", [seq - KEEP_MICROS])
        present: set[int] = set()
        if previous and node != previous:
            since = ProbeWrite.objects.filter(cluster=cluster, node=previous).order_by("seq").values_list("seq")
            oldest = since.first()
            if oldest is not None:
                rows = conn.execute(f"SELECT id FROM {TABLE} WHERE id >= %s", [oldest[0]])
                present = {row[0] for row in rows}
    return node, present


def _replica_delays(cluster: Cluster, replicas: list[Node], now: datetime) -> dict[str, dict[str, Any]]:
    """Each other node's newest probe row, as a delay in seconds (None and the error when it cannot be read)."""

    def read(node: Node) -> dict[str, Any]:
        conninfo = node.address(Purpose.PROBE).conninfo(connect_timeout=CONNECT_TIMEOUT)
        try:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                newest = conn.execute(f"SELECT max(id) FROM {TABLE}").fetchone()
        except psycopg.Error as exc:
            return {"seconds": None, "error": _first_line(exc)}
        if not newest or newest[0] is None:
            return {"seconds": None, "error": "no probe row yet"}
        return {"seconds": round(max(0.0, now.timestamp() - newest[0] / 1_000_000), 3), "error": ""}

    if not replicas:
        return {}
    with ThreadPoolExecutor(max_workers=len(replicas)) as pool:
        return dict(zip((n.name for n in replicas), pool.map(read, replicas), strict=True))


def _leader_changed(
    cluster: Cluster, state: dict[str, Any], *, old: str, new: str, at: datetime, present: set[int]
) -> LeaderChange:
    acked = set(ProbeWrite.objects.filter(cluster=cluster, node=old).values_list("seq", flat=True))
    lost = len(acked - present)
    last_ok = _time(state.get("last_ok_at"))
    lost_at = _time(state.get("failing_since")) or last_ok
    operation = _asking_operation(cluster, at)
    cause = OPERATION_KINDS[operation.kind] if operation else LeaderChange.Cause.AUTOMATIC
    rto = (at - last_ok).total_seconds() if last_ok else None
    events = []
    if lost_at:
        events.append({"at": lost_at.isoformat(), "what": f"Leader {old} lost: writes stopped reaching it"})
    elected = _elected_at(cluster, new)
    if elected:
        events.append({"at": elected.isoformat(), "what": f"{new} elected leader by Patroni"})
    events.append(
        {
            "at": at.isoformat(),
            "what": f"First write accepted on {new}"
            + (f", {rto:.1f} s after the last on {old}" if rto is not None else "")
            + f"; {lost} of {len(acked)} probe rows committed on {old} missing",
        }
    )
    change = LeaderChange.objects.create(
        cluster=cluster,
        cause=cause,
        operation=operation,
        old_leader=old,
        new_leader=new,
        timeline=(cluster.ha_state or {}).get("timeline"),
        detected_at=at,
        last_write_old_at=last_ok,
        first_write_new_at=at,
        rto_seconds=rto,
        rows_lost=lost,
        rows_checked=len(acked),
        events=sorted(events, key=lambda e: e["at"]),
    )
    logger.warning("leader of %s moved: %s → %s (%s), RTO %s s, %d rows lost", cluster.name, old, new, cause, rto, lost)
    transaction.on_commit(lambda: leader_changed.send(sender=Cluster, change=change))
    topology_changed()
    if cause != LeaderChange.Cause.FAILOVER or cluster.is_patroni:  # the direct failover runs the hook itself
        if cluster.post_failover_hook:
            task_send_on_commit("hadr_portal.databases.tasks.leader_hook", args=[change.pk], queue="ops")
    return change


def _asking_operation(cluster: Cluster, at: datetime) -> Operation | None:
    """The switchover or failover that asked for this change: running, succeeded (or lost with its worker) in the
    last two minutes, or a switchover scheduled for about now."""
    # one that failed before Patroni acted (refused) asked for nothing; one whose worker died may have asked
    ended = Q(status=Operation.Status.SUCCEEDED) | Q(status=Operation.Status.FAILED, error__icontains="worker lost")
    recent = Q(status__in=Operation.ACTIVE) | (ended & Q(finished_at__gte=at - timedelta(minutes=2)))
    # a switchover scheduled for about now, asked for long before
    recent |= Q(
        kind="switchover",
        parameters__scheduled_at__gte=(at - timedelta(minutes=5)).isoformat(),
        parameters__scheduled_at__lte=(at + timedelta(minutes=1)).isoformat(),
    )
    return (
        Operation.objects.filter(recent, target=cluster.target, kind__in=OPERATION_KINDS)
        .order_by("-created_at")
        .first()
    )


def _elected_at(cluster: Cluster, new: str) -> datetime | None:
    history = (cluster.ha_state or {}).get("history") or []
    newest = history[-1] if history else None
    if newest and newest.get("new_leader") in (new, "") and newest.get("at"):
        return _time(newest["at"])
    return None


def _changes_follow(cluster: Cluster, state: dict[str, Any], now: datetime) -> None:
    """The timeline of the changes still settling: the replicas following, and the old leader back or not."""
    replicas = state.get("replicas", {})
    following = sorted(
        name for name, row in replicas.items() if row.get("seconds") is not None and row["seconds"] < FOLLOWING_SECONDS
    )
    for change in LeaderChange.objects.filter(cluster=cluster, settled=False):
        said = {event["what"].split(":")[0] for event in change.events}
        others = [name for name in replicas if name != change.old_leader]
        if following and all(name in following for name in others) and "Replicas following" not in said:
            _event(change, now, "Replicas following: " + ", ".join(following))
        if change.old_leader in following:
            _event(change, now, f"Old leader {change.old_leader} rejoined as a streaming replica")
            change.settled = True
        elif now - change.detected_at > REJOIN_WAIT:
            _event(
                change,
                now,
                f"Old leader {change.old_leader} has not rejoined within {REJOIN_WAIT.seconds // 60} minutes: "
                "reinitialize it (runbook database-problem)",
            )
            change.settled = True
        LeaderChange.objects.filter(pk=change.pk).update(events=change.events, settled=change.settled)


def _event(change: LeaderChange, at: datetime, what: str) -> None:
    change.events = [*change.events, {"at": at.isoformat(), "what": what}]
    transaction.on_commit(lambda: leader_change_event.send(sender=Cluster, change=change, what=what, at=at))


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def probe_age_seconds(cluster: Cluster, now: datetime | None = None) -> float | None:
    """Seconds since the probe's last committed write (None before the first)."""
    last = _time((cluster.probe_state or {}).get("last_ok_at"))
    return ((now or timezone.now()) - last).total_seconds() if last else None


def wait_for_probe(cluster: Cluster, predicate: Any, timeout: float) -> bool:
    """Tick until `predicate(state)` holds (tests and the switchover drill)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate(probe_tick(cluster)):
            return True
        time.sleep(0.5)
    return False
