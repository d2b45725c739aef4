"""Replacing a cluster with its scratch instance: the second way on from a point-in-time restore.

In the one safe order, each step written into the restore's journal (`Restore.steps`) before it acts:

1. `safety`   a full pgBackRest set of the cluster as it is now (kind "safety"): what is replaced can come back;
2. `stop`     the scratch instance (still paused at its point, in recovery) and the live primary stop;
3. `swap`     the live data directory is renamed `<dir>.before_restore_<id>` (kept until a DBA removes it) and the
              scratch one takes its place, with archiving on again;
4. `start`    the primary starts on it through its own controller, and recovery pauses again at the point;
5. `promote`  `pg_wal_replay_resume()`: recovery ends there on a new timeline, archived into the same stanza (its
              history file included: that is why the promotion happens here and not in the scratch instance);
6. `rebuild`  each replica is rebuilt from it, inside this operation (the cluster stays locked until it streams).

A crash or a failure before `swap` starts the old primary again (nothing was changed); after it, the reaper
finishes from the journal: the primary is started on the restored data and promoted. Either way the cluster has a
writable primary again.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from django.utils import timezone
from psycopg import sql

from hadr_portal.adapters.pg.archive import recovery_state
from hadr_portal.adapters.pg.connection import with_database
from hadr_portal.adapters.pg.node import NodeActionFailed, wait_writable
from hadr_portal.adapters.pg.restore import RestoreFailed
from hadr_portal.adapters.pg.scratch import data_directory_move, server_stop
from hadr_portal.core.audit import audit_record
from hadr_portal.core.killpoints import kill_point
from hadr_portal.core.models import AuditEntry, Operation, OperationLogLine
from hadr_portal.core.operation_kinds import OperationContext, OperationError, OperationKind
from hadr_portal.core.operations import operation_request
from hadr_portal.core.permissions import Action, require
from hadr_portal.databases.models import Node, Purpose
from hadr_portal.databases.rebuild import RebuildRefused, node_rebuild
from hadr_portal.databases.topology import cluster_primary_or_first

from .models import Backup, Restore
from .physical import physical_backup_take
from .pitr import pitr_cleanup
from .preflight import restore_server
from .scratch import copying_back, waiting
from .stanza import node_archiving_point

if TYPE_CHECKING:
    from hadr_portal.core.permissions import Actor

REPLACE_KIND = "cluster_replace"
# What pgBackRest writes into a restored data directory's postgresql.auto.conf for its recovery (reset after it)
RECOVERY_KEYS = (
    "restore_command",
    "recovery_target",
    "recovery_target_time",
    "recovery_target_name",
    "recovery_target_xid",
    "recovery_target_lsn",
    "recovery_target_action",
    "recovery_target_inclusive",
    "recovery_target_timeline",
)


def replace_request(*, restore: Restore, actor: Actor | None, confirm: str, address: str | None = None) -> Operation:
    """Queue replacing the restore's cluster with its scratch instance (DBA; the cluster's name typed)."""
    if actor is not None:
        require(actor, Action.RESTORE)
    cluster = restore.policy.cluster
    if not waiting(restore):
        raise OperationError(f"Restore #{restore.pk} has no scratch instance waiting: nothing to replace with.")
    if busy := copying_back(restore):
        raise OperationError(f"Operation #{busy.pk} is copying tables back from the scratch instance: wait for it.")
    if confirm.strip() != cluster.name:
        raise OperationError(f"Type the cluster's name, {cluster.name}, to replace it with the scratch instance.")
    try:
        paused = recovery_state(with_database(restore_server(restore), "postgres").conninfo()).in_recovery
    except psycopg.Error as exc:
        raise OperationError(f"The scratch instance does not answer: {str(exc).strip()}") from None
    if not paused:
        raise OperationError(
            "The scratch instance has left recovery (a restore to the latest point ends it): it cannot replace the "
            "cluster with its history. Restore to a time or a restore point instead."
        )
    primary = _live_primary(restore)
    if (primary.controller or {}).get("controller") != "pg_ctl":
        raise OperationError(
            f"{cluster.name}/{primary.name} has no pg_ctl controller with its data directory: the portal cannot swap "
            "its data. Restore by hand (runbooks/data-corruption.md)."
        )
    return operation_request(
        kind=REPLACE_KIND,
        target=cluster.target,
        scope=cluster.target,
        scope_exclusive=True,
        actor=actor,
        address=address,
        parameters={
            "restore": restore.pk,
            "cluster": cluster.name,
            "primary": primary.name,
            "point": restore.target_label,
        },
    )


def _live_primary(restore: Restore) -> Node:
    cluster = restore.policy.cluster
    primary = cluster_primary_or_first(cluster)
    if primary is None:
        raise OperationError(f"Cluster {cluster.name} has no nodes in the catalog.")
    return primary


def _step(restore: Restore, name: str) -> None:
    """Journal first, then act: the reaper knows how far a dead worker got."""
    restore.steps = [*restore.steps, name]
    Restore.objects.filter(pk=restore.pk).update(steps=restore.steps)
    kill_point(f"replace.{name}")


def replace_run(context: OperationContext) -> Mapping[str, Any]:
    restore = Restore.objects.select_related("policy__cluster", "policy__storage", "backup").get(
        pk=context.parameters["restore"]
    )
    if not waiting(restore):
        raise RestoreFailed(f"restore #{restore.pk} has no scratch instance waiting any more")
    policy = restore.policy
    primary = Node.objects.select_related("cluster").get(cluster=policy.cluster, name=context.parameters["primary"])
    live_directory = Path(primary.controller["data_directory"])
    scratch_directory = Path(restore.data_directory)
    controller = primary.controller_built()

    _step(restore, "safety")
    safety = Backup.objects.create(
        policy=policy,
        kind=Backup.Kind.SAFETY,
        engine=policy.engine,
        storage=policy.storage,
        set_type="full",
        requested_by_id=context.operation.requested_by_id,
    )
    Restore.objects.filter(pk=restore.pk).update(safety_backup=safety)
    context.log(f"Safety backup: a full pgBackRest set of {policy.cluster.name} as it is now (backup #{safety.pk}).")
    physical_backup_take(context, backup=safety, span=(0, 40), set_type="full")
    context.checkpoint()  # the last point where a cancellation is honoured

    _step(restore, "stop")
    server_stop(scratch_directory)
    context.log(f"Stopped the scratch instance (paused at {restore.target_label}).")
    context.log(controller.stop(timeout=120))
    context.progress(45, "Both stopped")

    _step(restore, "swap")
    kept = live_directory.with_name(f"{live_directory.name}.before_restore_{restore.pk}")
    live_directory.rename(kept)
    data_directory_move(scratch_directory, live_directory)
    archive_mode_restore(live_directory)
    Restore.objects.filter(pk=restore.pk).update(kept_data_directory=str(kept), work_created=False)
    context.log(f"Swapped: {live_directory} holds the restored data; the old one is kept as {kept}.")

    _step(restore, "start")
    context.log(controller.start(timeout=300))
    context.progress(60, "The primary starts on the restored data")

    _step(restore, "promote")
    written = promote_at_point(primary)
    node_archiving_point(policy, primary)  # the set may come from another node: its own --pg1-path again
    context.progress(85, "The primary takes writes on the restored data")
    context.log(f"{primary.name} left recovery at {restore.target_label} and takes writes (transaction {written}).")
    now = timezone.now()
    Restore.objects.filter(pk=restore.pk).update(
        status=Restore.Status.DONE,
        outcome=Restore.Outcome.REPLACED,
        swapped_at=now,
        finished_at=now,
        scratch_removed_at=now,
    )

    _step(restore, "rebuild")
    rebuilt = _replicas_rebuild(context, restore, primary)
    context.progress(100, "Replaced")
    return {"restore": restore.pk, "kept_data_directory": str(kept), "replicas_rebuilt": rebuilt}


def _replicas_rebuild(context: OperationContext, restore: Restore, primary: Node) -> list[str]:
    """Rebuild every other node from the replaced primary, inside this operation (it holds the cluster). A replica
    that cannot be rebuilt is said, and left for the Databases page: the primary already takes writes."""
    rebuilt = []
    for node in restore.policy.cluster.nodes.exclude(pk=primary.pk).order_by("name"):
        try:
            node_rebuild(context, cluster=restore.policy.cluster, node=node)
        except (NodeActionFailed, RebuildRefused, psycopg.Error) as exc:
            context.log(f"{node.name}: not rebuilt ({exc}); rebuild it from the Databases page.", level="warning")
            continue
        rebuilt.append(node.name)
    return rebuilt


def archive_mode_restore(directory: Path) -> None:
    """Drop the `archive_mode = 'off'` pgBackRest wrote for the scratch instance: the replaced primary archives."""
    auto = directory / "postgresql.auto.conf"
    if auto.exists():
        lines = auto.read_text().splitlines()
        auto.write_text("\n".join(line for line in lines if line.split("=", 1)[0].strip() != "archive_mode") + "\n")


def promote_at_point(primary: Node, *, timeout: float = 600) -> int:
    """Wait until the started primary pauses at the point (or has left recovery), end recovery there, take a write,
    and forget the recovery settings; the first write's transaction id."""
    conninfo = primary.address(Purpose.ADMIN).conninfo()
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = recovery_state(conninfo)
        except psycopg.Error:
            state = None
        if state is not None and (state.pause_state == "paused" or not state.in_recovery):
            break
        if time.monotonic() > deadline:
            raise RestoreFailed(f"{primary.name} did not reach its point within {timeout:g} s")
        time.sleep(0.2)
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
        if state.in_recovery:
            conn.execute("SELECT pg_wal_replay_resume()")
    written = wait_writable(conninfo, timeout=120)
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
        for name in RECOVERY_KEYS:
            conn.execute(sql.SQL("ALTER SYSTEM RESET {}").format(sql.Identifier(name)))
        conn.execute("SELECT pg_reload_conf()")
    return written


def replace_cleanup(operation: Operation) -> None:
    """After a failure or a lost worker, from the journal: before the swap, the old primary starts again as it
    was; after it, the primary starts on the restored data. Either way the cluster has a primary again."""
    restore = Restore.objects.filter(pk=operation.parameters.get("restore")).select_related("policy__cluster").first()
    primary = (
        Node.objects.filter(cluster__name=operation.parameters.get("cluster"), name=operation.parameters.get("primary"))
        .select_related("cluster")
        .first()
    )
    if restore is None or primary is None:
        return
    steps = restore.steps or []
    controller = primary.controller_built()
    live_directory = Path(primary.controller.get("data_directory", ""))
    kept = live_directory.with_name(f"{live_directory.name}.before_restore_{restore.pk}")
    if "swap" in steps and not live_directory.exists() and kept.exists():
        kept.rename(live_directory)  # the swap did not finish: put the old data back
        _note(operation, f"The swap had not finished: {live_directory} is the old data again.")
    try:
        if not controller.is_running():
            _note(operation, controller.start(timeout=300))
        if "swap" in steps and live_directory.exists() and (live_directory / "recovery.signal").exists():
            written = promote_at_point(primary)  # finish what the journal says was under way
            _note(operation, f"{primary.name} promoted at {restore.target_label} (transaction {written}).")
    except (NodeActionFailed, RestoreFailed, psycopg.Error) as exc:
        _note(operation, f"Could not bring {primary.name} back as a writable primary: {exc}. Start it by hand.")
    if "swap" not in steps:
        pitr_cleanup(restore)  # production untouched; the scratch instance may be stopped: start a new restore
        Restore.objects.filter(pk=restore.pk).update(
            status=Restore.Status.FAILED, error=operation.error or "failed", finished_at=timezone.now()
        )
    if restore.safety_backup_id:
        Backup.objects.filter(pk=restore.safety_backup_id, status=Backup.Status.RUNNING).update(
            status=Backup.Status.FAILED, finished_at=timezone.now(), error=operation.error or "failed"
        )


def _note(operation: Operation, message: str) -> None:
    OperationLogLine.objects.create(operation=operation, message=message)


def kept_data_remove(*, restore: Restore, actor: Actor | None, confirm: str, address: str | None = None) -> None:
    """Remove the old primary's data kept after a replace (typed: its directory's name), audited."""
    if actor is not None:
        require(actor, Action.RESTORE)
    kept = Path(restore.kept_data_directory) if restore.kept_data_directory else None
    if kept is None or not kept.exists():
        raise OperationError(f"Restore #{restore.pk} kept no old data directory (or it is gone already).")
    if confirm.strip() != kept.name:
        raise OperationError(f"Type {kept.name} to remove the old data directory.")
    started = time.monotonic()
    shutil.rmtree(kept)
    audit_record(
        actor=actor,
        action="restore.kept_data_remove",
        target=restore.policy.cluster.target,
        outcome=AuditEntry.Outcome.SUCCESS,
        address=address,
        parameters={"restore": restore.pk, "directory": str(kept)},
        detail=f"removed in {time.monotonic() - started:.1f} s",
    )
    Restore.objects.filter(pk=restore.pk).update(kept_dropped_at=timezone.now())


CLUSTER_REPLACE = OperationKind(
    name=REPLACE_KIND,
    label="Replace a cluster with a point-in-time restore",
    action=Action.RESTORE,
    run=replace_run,
    queue="ops",
    cleanup=replace_cleanup,
)
