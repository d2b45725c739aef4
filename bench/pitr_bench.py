"""Point-in-time recovery benchmark (run by bench/run.py with the local environment's portal database).

pitr
    A cluster of its own, never the demo's: a PostgreSQL primary on a free port under a new temporary directory
    (fsync on, track_commit_timestamp on), `pgbench -i -s 65` (~1 GB) in database `bench` plus a `commits` table,
    registered as a temporary cluster in the catalog with a pgBackRest policy whose repository and stanza home are
    in the same directory (lz4, process-max 2, archive-async, archive_timeout 10 s), set up as `manage.py
    pitr_setup` does. The portal's side runs in this process as the `ops` worker runs it (nothing goes to Redis,
    the environment's worker never sees it). In one run:

      backup     a full set through the portal (backup_request -> operation_execute) against the command line the
                 portal logs for it (`pgbackrest … --type=full --repo=1 backup`, as postgres), same stanza,
                 3 rounds with the order alternating; then an incremental through the portal after 1 % of the
                 pgbench_accounts rows changed: its time and size
      restore    a point T under load: the restore operation the wizard queues (draft, point, pre-flight before
                 it, reported apart) until the Restore is "ready" (paused at T; verified after), against `pgbackrest
                 restore --type=time --target=T --target-action=pause` into a new directory + `pg_ctl start` +
                 waiting for pg_get_wal_replay_pause_state() = 'paused'; same set, same T, 5 rounds alternating
      exactness  10 random seconds between the newest set's end and now, each restored through the portal: the
                 scratch instance holds exactly the `commits` rows whose commit timestamp on the primary is at or
                 before the point
      rpo        pgbench -R 50 (2 clients, one `commits (client, n)` row per transaction, per-transaction log),
                 running through the restores, then undisturbed for a while; the primary's postmaster and every
                 process of it killed with SIGKILL and its data directory removed (a lost machine); a restore to
                 the latest point from the repository alone (`--type=default`, promote): acknowledged
                 transactions missing, as seconds of writes

Besides wall time, each side's CPU seconds (this process and the programs it waited for): on a shared machine they
move far less than wall time. `HADR_BENCH_PITR_SCALE` sets the pgbench scale (default 65; 5 for a quick try).
"""

from __future__ import annotations

import contextlib
import os
import random
import resource
import shlex
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.backup_bench import settled, side_by_side, timed
from bench.pitr_cluster import (
    CLIENTS,
    RATE,
    WORK_PREFIX,
    Bench,
    Load,
    acknowledged,
    archived_past,
    bench_make,
    commit_times,
    connect,
    exactness,
    leftovers_remove,
    load_start,
    machine_lose,
    rows_on,
    sizes,
    wait_recovered,
)
from bench.restore_bench import in_this_process
from hadr_portal.adapters.commands import as_postgres_user, run_command
from hadr_portal.adapters.pg.archive import archiver_status
from hadr_portal.adapters.pg.scratch import free_port, server_remove, server_start
from hadr_portal.adapters.pg.server import PG_BIN, chown_to_postgres
from hadr_portal.adapters.pgbackrest import RecoveryTarget, info
from hadr_portal.adapters.pgbackrest import restore as pgbackrest_restore

SCALE = int(os.environ.get("HADR_BENCH_PITR_SCALE", "65"))
ROUNDS = 3  # full backups, portal and raw
RESTORE_ROUNDS = 5  # point-in-time restores, portal and raw (a restore moves more with the machine's load)
TARGETS = 10
UNDISTURBED_SECONDS = 45  # load without any forced WAL switch before the primary is lost


# --- backups ------------------------------------------------------------------------------------------


def cpu_seconds() -> float:
    """CPU time of this process (every thread) and of the programs it ran and waited for (pgbackrest and its
    workers, through runuser): less sensitive than wall time to what else runs on the machine."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@contextlib.contextmanager
def measured(into: dict[str, Any]) -> Iterator[None]:
    """`seconds` (wall) and `cpu_s` of the block, into `into`."""
    cpu, wall = cpu_seconds(), time.perf_counter()
    yield
    into["seconds"], into["cpu_s"] = time.perf_counter() - wall, cpu_seconds() - cpu


def log_at(operation: Any, *prefixes: str) -> dict[str, datetime]:
    """When the operation's log first said a line starting with each prefix."""
    at: dict[str, datetime] = {}
    for line in operation.log_lines.order_by("at", "id"):
        for prefix in prefixes:
            if line.message.startswith(prefix):
                at.setdefault(prefix, line.at)
    return at


def backup_portal(bench: Bench, set_type: str) -> dict[str, Any]:
    from hadr_portal.backups import services
    from hadr_portal.backups.models import Backup
    from hadr_portal.core.operations import operation_execute

    took: dict[str, Any] = {}
    with in_this_process(), measured(took):
        operation = services.backup_request(policy=bench.policy, actor=None, set_type=set_type)
        finished = operation_execute(operation_id=operation.pk)
    if finished is None or finished.status != "succeeded":
        raise SystemExit(f"the portal's backup ended {finished and finished.status}: {finished and finished.error}")
    backup = Backup.objects.get(operation=finished)
    at = log_at(finished, "As ", "Set ")
    return {
        **took,
        "size": backup.size,
        "label": backup.key,
        "before_s": (at["As "] - finished.created_at).total_seconds(),
        "engine_s": (at["Set "] - at["As "]).total_seconds(),
        "after_s": (finished.finished_at - at["Set "]).total_seconds(),
    }


def backup_raw(bench: Bench) -> dict[str, Any]:
    """The very command line the portal logs, typed by hand as postgres."""
    argv = shlex.split(bench.stanza.command_line("backup", "--type=full", "--repo=1"))
    took: dict[str, Any] = {}
    with measured(took):
        timed(as_postgres_user(argv), cwd="/")
    newest = info(bench.stanza).sets(1)[-1]
    return {**took, "size": newest.repo_size, "label": newest.label}


def backups_measure(bench: Bench) -> dict[str, Any]:
    print(f"  full backups, portal and raw pgbackrest, {ROUNDS} rounds alternating...", flush=True)
    pair = side_by_side(ROUNDS, lambda: backup_portal(bench, "full"), lambda: backup_raw(bench))
    ratios = [o["seconds"] / s["seconds"] for o, s in zip(pair["ours_runs"], pair["stock_runs"], strict=True)]
    return {**pair, "ratios": ratios, "ratio": statistics.median(ratios)}


def incremental_measure(bench: Bench) -> dict[str, Any]:
    with connect(bench.primary.port) as conn:
        rows = conn.execute("SELECT count(*) FROM pgbench_accounts").fetchone()[0]
        changed = conn.execute("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 100 = 0").rowcount
    print(f"  incremental through the portal after {changed:,} of {rows:,} rows changed...", flush=True)
    made = settled(lambda: backup_portal(bench, "incr"))
    listed = next(item for item in info(bench.stanza).sets(1) if item.label == made["label"])
    return {
        **made,
        "rows": rows,
        "changed": changed,
        "type": listed.type,
        "delta": listed.delta_size,
        "repo_delta": listed.repo_delta,
        "database_size": listed.database_size,
    }


# --- point-in-time restores ---------------------------------------------------------------------------


def restore_portal(bench: Bench, point: datetime) -> tuple[dict[str, Any], Any]:
    """The wizard's steps to the point (to the second, in UTC, as the form takes it), then the restore operation
    until the Restore is ready; its measurements and the Restore."""
    from hadr_portal.backups.models import Restore
    from hadr_portal.backups.pitr import restore_point_in_time_set
    from hadr_portal.backups.wizard import restore_draft_start, restore_preflight_run, restore_request
    from hadr_portal.core.operations import operation_execute

    started = time.perf_counter()
    restore = restore_draft_start(policy=bench.policy, actor=None)
    when = f"{point.astimezone(UTC):%Y-%m-%d %H:%M:%S}"
    errors = restore_point_in_time_set(restore=restore, actor=None, target_type="time", when=when, utc=True)
    if errors:
        raise SystemExit(f"the point {when} was refused: {errors}")
    blockers = [f.title for f in restore_preflight_run(restore=restore, actor=None) if f.level == "blocker"]
    if blockers:
        raise SystemExit(f"the pre-flight refused the restore: {blockers}")
    wizard_s = time.perf_counter() - started
    took: dict[str, Any] = {}
    with in_this_process(), measured(took):
        operation = restore_request(restore=restore, actor=None)
        finished = operation_execute(operation_id=operation.pk)
    restore.refresh_from_db()
    if restore.status != Restore.Status.READY:
        raise SystemExit(f"the portal's restore #{restore.pk} is {restore.status}: {restore.error}")
    assert finished is not None
    at = log_at(finished, "As ", "Recovery ", "✔ amcheck", "The scratch instance waits")
    return {
        **took,
        "wizard_s": wizard_s,
        "rto_s": restore.rto_seconds,
        "label": restore.backup.key,
        "port": restore.port,
        "before_s": (at["As "] - finished.created_at).total_seconds(),
        "recovered_s": (at["Recovery "] - at["As "]).total_seconds(),
        "verify_s": (at["✔ amcheck"] - at["Recovery "]).total_seconds(),
        "after_s": (finished.finished_at - at["✔ amcheck"]).total_seconds(),
    }, restore


def restore_portal_discard(restore: Any) -> None:
    from hadr_portal.backups.scratch import scratch_discard

    scratch_discard(restore=restore, actor=None, confirm=str(restore.pk))


def restore_raw(bench: Bench, label: str, point: datetime) -> tuple[dict[str, Any], Path]:
    """What a DBA types: pgbackrest restore to the time, pg_ctl start on a free port, wait until paused there."""
    servers = bench.work / "raw"
    servers.mkdir(mode=0o755, exist_ok=True)
    chown_to_postgres(servers)
    directory = servers / f"pitr-{time.monotonic_ns()}"
    port = free_port()
    restore = [
        *bench.stanza.base_argv(),
        f"--pg1-path={directory}",
        "--archive-mode=off",
        f"--set={label}",
        "--repo=1",
        "--type=time",
        f"--target={point.astimezone(UTC):%Y-%m-%d %H:%M:%S}+00",
        "--target-action=pause",
        "restore",
    ]
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
    start = [str(PG_BIN / "pg_ctl"), "start", "-w", "-t", "600", "-D", str(directory)]
    start += ["-l", str(servers / f"{directory.name}.log"), "-o", options]
    took: dict[str, Any] = {}
    with measured(took):
        restore_s = timed(as_postgres_user(restore), cwd="/")
        timed(as_postgres_user(start), cwd="/")
        wait_recovered(port, paused=True)
    return {**took, "restore_s": restore_s, "port": port}, directory


def restores_measure(bench: Bench) -> dict[str, Any]:
    from hadr_portal.backups.pitr import base_backup_for

    time.sleep(15)  # WAL past the newest set to replay
    point = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=3)
    archived_past(bench, point)
    base = base_backup_for(bench.policy, point)
    assert base is not None
    print(f"  restores to {point:%H:%M:%S} UTC from set {base.key}, {RESTORE_ROUNDS} rounds alternating...", flush=True)
    checks: list[dict[str, Any]] = []

    def portal() -> dict[str, Any]:
        measured, restore = restore_portal(bench, point)
        checks.append(exactness(rows_on(measured["port"]), commit_times(bench), point))
        restore_portal_discard(restore)
        return measured

    def raw() -> dict[str, Any]:
        measured, directory = restore_raw(bench, base.key, point)
        checks.append(exactness(rows_on(measured["port"]), commit_times(bench), point))
        server_remove(directory)
        return measured

    pair = side_by_side(RESTORE_ROUNDS, portal, raw)
    ratios = [o["seconds"] / s["seconds"] for o, s in zip(pair["ours_runs"], pair["stock_runs"], strict=True)]
    return {
        **pair,
        "point": point,
        "label": base.key,
        "ratios": ratios,
        "ratio": statistics.median(ratios),
        "exact": sum(check["exact"] for check in checks),
        "checked": len(checks),
        "rows_before": checks[0]["before"],
    }


def exactness_measure(bench: Bench, load: Load, newest_set_end: datetime) -> dict[str, Any]:
    """TARGETS random whole seconds (the form's precision) from the newest set's end (or the first row of the load,
    whichever is later: a point with rows on both sides) to a few seconds ago, each restored through the portal."""
    earliest = max(newest_set_end, load.started) + timedelta(seconds=1)
    latest = datetime.now(UTC) - timedelta(seconds=2)
    span = int((latest - earliest).total_seconds())
    offsets = sorted(random.sample(range(span), min(TARGETS, span)))
    points = [earliest.replace(microsecond=0) + timedelta(seconds=offset + 1) for offset in offsets]
    print(f"  exactness: {len(points)} random points from {points[0]:%H:%M:%S} to {points[-1]:%H:%M:%S} UTC...")
    archived_past(bench, points[-1])
    results = []
    for point in points:
        measured, restore = restore_portal(bench, point)
        check = exactness(rows_on(measured["port"]), commit_times(bench), point)
        restore_portal_discard(restore)
        results.append({**check, "point": point, "seconds": measured["seconds"], "label": measured["label"]})
        print(
            f"    {point:%H:%M:%S}: at or before {check['before_present']} of {check['before']},"
            f" after {check['after_present']} of {check['after']} -> {'exact' if check['exact'] else 'NOT EXACT'}",
            flush=True,
        )
    return {"points": results, "exact": sum(r["exact"] for r in results), "count": len(results)}


# --- losing the primary -------------------------------------------------------------------------------


def rpo_measure(bench: Bench, load: Load) -> dict[str, Any]:
    print(
        f"  RPO: {UNDISTURBED_SECONDS} s of load without a forced WAL switch, then the primary is lost...", flush=True
    )
    time.sleep(UNDISTURBED_SECONDS)
    archiver = archiver_status(bench.primary.conninfo())
    lost_at = time.time()
    machine_lose(bench)
    try:
        output, _ = load.process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        load.process.kill()
        output, _ = load.process.communicate()
    directory = bench.work / "latest" / "data"
    directory.parent.mkdir(mode=0o755)
    chown_to_postgres(directory.parent)
    port = free_port()
    started = time.perf_counter()
    pgbackrest_restore(bench.stanza, directory=directory, target=RecoveryTarget("default"), action="promote")
    server_start(directory, port)
    wait_recovered(port, paused=False)
    restore_s = time.perf_counter() - started
    rows = rows_on(port)
    server_remove(directory)
    acked = acknowledged(load)
    if not acked:
        raise SystemExit(f"pgbench acknowledged nothing:\n{output[-2000:]}")
    kept = acked.keys() & rows
    newest = max(acked.values())
    newest_kept = max((acked[key] for key in kept), default=min(acked.values()))
    return {
        "acked": len(acked),
        "lost": len(acked.keys() - rows),
        "unacked_present": len(rows - acked.keys()),
        "lost_seconds": newest - newest_kept,
        "rate": len(acked) / max(1e-9, newest - min(acked.values())),
        "load_seconds": newest - min(acked.values()),
        "archived_before_loss_s": lost_at - archiver.last_archived_time.timestamp()
        if archiver.last_archived_time
        else None,
        "restore_s": restore_s,
        "archive_timeout": archiver.archive_timeout,
    }


# --- the whole benchmark ------------------------------------------------------------------------------


def pitr_bench(scale: int = SCALE) -> dict[str, Any]:
    from django.test import override_settings

    began = time.perf_counter()
    leftovers_remove()
    work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX))
    work.chmod(0o755)  # the postgres user reaches the data directories, the repository and the stanza home in it
    load: Load | None = None
    results: dict[str, Any] = {"scale": scale}
    try:
        with override_settings(PGBACKREST_DIR=work / "pgbackrest", RESTORE_SCRATCH_DIR=work / "restores"):
            print(f"  a primary of its own under {work}...", flush=True)
            bench = bench_make(work, scale)
            results.update(sizes(bench))
            version = run_command(["pgbackrest", "version"], check=False).stdout.strip()
            with connect(bench.primary.port) as conn:
                results["server"] = conn.execute("SHOW server_version").fetchone()[0]
            results["pgbackrest"] = version
            results["backup"] = backups_measure(bench)
            results["incr"] = incremental_measure(bench)
            newest_set_end = info(bench.stanza).sets(1)[-1].stopped_at
            load = load_start(bench)
            results["restore"] = restores_measure(bench)
            results["exactness"] = exactness_measure(bench, load, newest_set_end)
            results["rpo"] = rpo_measure(bench, load)
    finally:
        if load is not None and load.process.poll() is None:
            load.process.kill()
            load.process.communicate()
        leftovers_remove()
    results["seconds"] = time.perf_counter() - began
    return results


def _rounds_print(title: str, pair: dict[str, Any], goal: float | None) -> None:
    print(
        f"  {title + ', order alternating':43} {'portal':>8} {'raw':>8} {'ratio':>6}"
        f"   CPU: {'portal':>7} {'raw':>7} {'ratio':>6}"
    )
    runs = list(zip(pair["ours_runs"], pair["stock_runs"], strict=True))
    for n, (o, s) in enumerate(runs, start=1):
        label = f"round {n} ({'portal' if n % 2 else 'raw'} first)"
        print(
            f"    {label:41} {o['seconds']:6.2f} s {s['seconds']:6.2f} s {o['seconds'] / s['seconds']:5.2f}x"
            f"        {o['cpu_s']:5.2f} s {s['cpu_s']:5.2f} s {o['cpu_s'] / s['cpu_s']:5.2f}x"
        )
    cpu = statistics.median(o["cpu_s"] / s["cpu_s"] for o, s in runs)
    verdict = "reported" if goal is None else f"goal <= {goal:.2f}x: {'met' if pair['ratio'] <= goal else 'MISSED'}"
    print(f"    median ratio {pair['ratio']:.2f}x ({verdict}); CPU seconds: median ratio {cpu:.2f}x")


def pitr_report() -> None:
    print("pitr: a cluster of its own, pgBackRest through the portal against raw pgBackRest...", flush=True)
    r = pitr_bench()
    mb = 1e6
    print(
        f"pitr (own primary: pgbench -s {r['scale']}, database {r['database'] / mb:.0f} MB, cluster"
        f" {r['cluster'] / mb:.0f} MB; PostgreSQL {r['server']}, {r['pgbackrest']}, lz4, process-max 2,"
        f" archive-async, archive_timeout {r['rpo']['archive_timeout']} s; {r['seconds']:.0f} s in all)"
    )
    b = r["backup"]
    _rounds_print("full backup", b, 1.05)
    o = b["ours"]
    print(
        f"    portal, median: request -> pgbackrest started {o['before_s']:.2f} s, pgbackrest + watching it"
        f" {o['engine_s']:.2f} s, recorded -> succeeded {o['after_s']:.2f} s; stored per full set {o['size'] / mb:.0f} MB"
    )
    i = r["incr"]
    print(
        f"  incremental through the portal after {i['changed']:,} of {i['rows']:,} rows changed (aid % 100 = 0):"
        f" {i['seconds']:.2f} s, {i['delta'] / mb:.0f} MB copied of {i['database_size'] / mb:.0f} MB,"
        f" {i['repo_delta'] / mb:.1f} MB stored ({i['type']} set {i['label']})"
    )
    p = r["restore"]
    print(
        f"  PITR restore to {p['point']:%H:%M:%S} UTC (set {p['label']}, {p['rows_before']:,} commits rows at or"
        " before it)"
    )
    _rounds_print("until verified (paused at T, then amcheck)", p, None)
    print(f"    exact at the point: {p['exact']}/{p['checked']} restores")
    o, s = p["ours"], p["stock"]
    print(
        f"    portal, median: request -> pgbackrest started {o['before_s']:.2f} s, restore + start + replay until"
        f" paused {o['recovered_s']:.2f} s, amcheck {o['verify_s']:.2f} s, -> ready {o['after_s']:.2f} s;"
        f" the wizard's steps before the request (point, pre-flight) {o['wizard_s']:.2f} s"
    )
    runs = zip(p["ours_runs"], p["stock_runs"], strict=True)
    # the Restore is "ready" (queryable, its RTO stops) the moment recovery pauses; its verification follows
    queryable = [(o["before_s"] + o["recovered_s"]) / s["seconds"] for o, s in runs]
    ratio = statistics.median(queryable)
    print(
        f"    ready to query (paused at the point: the Restore is ready, verification follows): median ratio"
        f" {ratio:.2f}x (goal <= 1.10x: {'met' if ratio <= 1.10 else 'MISSED'}; {', '.join(f'{x:.2f}x' for x in queryable)})"
    )
    print(
        f"    raw, median: pgbackrest restore {s['restore_s']:.2f} s, pg_ctl start + replay until paused"
        f" {s['seconds'] - s['restore_s']:.2f} s"
    )
    e = r["exactness"]
    took = [point["seconds"] for point in e["points"]]
    print(
        f"  exactness: {e['exact']}/{e['count']} random points row-exact against the commit timestamps"
        f" (portal restores request -> ready: median {statistics.median(took):.2f} s, {min(took):.2f}-{max(took):.2f} s)"
    )
    q = r["rpo"]
    verdict = "met" if q["lost_seconds"] <= q["archive_timeout"] + 2 else "MISSED"
    print(
        f"  RPO under load: pgbench -R {RATE} ({CLIENTS} clients), {q['rate']:.1f} commits/s for {q['load_seconds']:.0f} s;"
        f" primary and its data directory lost {q['archived_before_loss_s']:.1f} s after the last archived segment"
    )
    print(
        f"    lost: {q['lost']} of {q['acked']} acknowledged transactions = {q['lost_seconds']:.1f} s of writes"
        f" (goal <= archive_timeout + 2 s = {q['archive_timeout'] + 2} s: {verdict});"
        f" {q['unacked_present']} unacknowledged rows kept; restore to latest + promote {q['restore_s']:.1f} s"
    )
