"""Restore benchmarks (run by bench/run.py against the local environment).

restores
    The >= 1 GB database `hadr_bench` of the backup benchmark (generated once, reused), backed up once by our
    backup operation, then restored side by side in the same run, alternating, median of the rounds:

      logical     our restore operation into a new database (request -> pre-flight -> SHA-256 of the stored
                  backup -> pg_restore -j 2 -> verification queries + amcheck -> verified), in this process
                  as the `ops` worker runs it; against `createdb` + `pg_restore -j 2` of the same file
      physical    our restore of a pg_basebackup tar as a new server (SHA-256, tar, start, WAL replay,
                  verification); against `tar -xf` + `pg_ctl start -w` of the same file
      reference   `pgbackrest restore` + start of a full backup of the same cluster (a throwaway copy of the
                  demo primary with WAL archiving into a pgBackRest repository, so its backup restores alone)
      end to end  a restore requested as the wizard's Run button does, run by the environment's own `ops`
                  worker through Redis: request -> verified, as the portal measures the RTO

The wizard's pre-flight (which reads the whole backup once more) runs before the request and is reported
apart: it is the DBA's step 4, not part of the operation.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.backup_bench import (
    BIG_DB,
    BIG_ROWS,
    PG_BIN,
    ROOT,
    bench_rows_cleanup,
    cluster_facts,
    connect,
    ensure_database,
    pg_args,
    pg_env,
    policy_create,
    primary,
    settled,
    side_by_side,
    timed,
    warm_page_cache,
)

OUT_DIR = ROOT / ".run" / "bench-restores"
RESTORED_DB = "hadr_bench_restored"
PGBACKREST_DIR = Path(tempfile.gettempdir()) / "hadr-pgbackrest-restore"
VERIFY = [
    {"name": "events", "sql": "SELECT count(*) FROM events", "expect": f"= {BIG_ROWS}"},
    {"name": "newest", "sql": "SELECT max(occurred_at) FROM events", "expect": "not null"},
]


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _drop(dbname: str) -> None:
    with connect("postgres") as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def _stop(data_dir: Path) -> None:
    if (data_dir / "postmaster.pid").exists():
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "stop", "-m", "immediate", "-w", "-D", str(data_dir)]),
            capture_output=True,
            check=False,
        )
    shutil.rmtree(data_dir, ignore_errors=True)


def restores_cleanup() -> None:
    from django.utils import timezone

    from hadr_portal.backups.models import Restore
    from hadr_portal.core.models import Operation

    for path in OUT_DIR.glob("servers/*") if OUT_DIR.exists() else []:
        _stop(path)
    Operation.objects.filter(kind__startswith="restore", parameters__policy__startswith="bench-").filter(
        status__in=Operation.ACTIVE
    ).update(status=Operation.Status.FAILED, finished_at=timezone.now(), error="abandoned benchmark run")
    Restore.objects.filter(policy__name__startswith="bench-").delete()
    bench_rows_cleanup()
    _drop(RESTORED_DB)


# --- ours ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def in_this_process() -> Iterator[None]:
    """Requests are run here, as the `ops` worker would; the running worker must not claim them from Redis."""
    from hadr_portal.core import operations

    enqueue = operations._enqueue
    operations._enqueue = lambda operation_id, queue: None
    try:
        yield
    finally:
        operations._enqueue = enqueue


def backup_take(policy_name: str) -> Any:
    from hadr_portal.backups import services
    from hadr_portal.backups.models import Backup, BackupPolicy
    from hadr_portal.core.operations import operation_execute

    with in_this_process():
        operation = services.backup_request(policy=BackupPolicy.objects.get(name=policy_name), actor=None)
        finished = operation_execute(operation_id=operation.pk)
    assert finished is not None and finished.status == "succeeded", finished and finished.error
    return Backup.objects.get(operation=finished)


def restore_prepared(backup: Any, **destination: str) -> tuple[Any, float]:
    """A restore through the wizard's steps 1–4; the seconds its pre-flight (with the re-read) took."""
    from hadr_portal.backups import wizard

    restore = wizard.restore_draft_start(policy=backup.policy, actor=None)
    assert not wizard.restore_backup_set(restore=restore, actor=None, backup_id=str(backup.pk))
    assert not wizard.restore_situation_set(restore=restore, actor=None, situation="verification")
    errors = wizard.restore_destination_set(restore=restore, actor=None, **destination)
    assert not errors, errors
    started = time.perf_counter()
    findings = wizard.restore_preflight_run(restore=restore, actor=None)
    blocked = [f.title for f in findings if f.level == "blocker"]
    if blocked:
        raise SystemExit(f"pre-flight refused the benchmark's restore: {blocked}")
    return restore, time.perf_counter() - started


def phases(operation: Any) -> dict[str, float]:
    """Seconds between the operation's log lines: checksum, restore (pg_restore or tar + start), verification."""
    at: dict[str, Any] = {}
    marks = {
        "Reading": "read",
        "Downloading": "read",
        "The backup is intact": "intact",
        "Created database": "created",
        "Unpacking": "created",
        "Restored into": "restored",
        "Started PostgreSQL": "restored",
        "Verified": "verified",
    }
    for line in operation.log_lines.order_by("at", "id"):
        for prefix, name in marks.items():
            if line.message.startswith(prefix):
                at.setdefault(name, line.at)
    span = {
        "checksum_s": ("read", "intact"),
        "restore_s": ("created", "restored"),
        "verify_s": ("restored", "verified"),
    }
    return {key: (at[b] - at[a]).total_seconds() for key, (a, b) in span.items() if a in at and b in at}


def ours(backup: Any, after: Any, **destination: str) -> dict[str, Any]:
    from hadr_portal.backups import wizard
    from hadr_portal.core.operations import operation_execute

    restore, preflight_s = restore_prepared(backup, **destination)
    with in_this_process():
        started = time.perf_counter()
        operation = wizard.restore_request(restore=restore, actor=None)
        operation_execute(operation_id=operation.pk)
        seconds = time.perf_counter() - started
    restore.refresh_from_db()
    if restore.status != "verified":
        raise SystemExit(f"our restore #{restore.pk} {restore.status}: {restore.error}")
    measured = {"seconds": seconds, "preflight_s": preflight_s, "rto_s": restore.rto_seconds, **phases(operation)}
    after(restore)
    return measured


def ours_logical(backup: Any) -> dict[str, Any]:
    return ours(backup, lambda _: _drop(RESTORED_DB), destination="new_database", database=RESTORED_DB)


def ours_physical(backup: Any) -> dict[str, Any]:
    directory = OUT_DIR / "servers" / f"ours-{time.monotonic_ns()}"
    return ours(
        backup,
        lambda restore: _stop(Path(restore.data_directory)),
        destination="other_server",
        data_directory=str(directory),
        port=str(_free_port()),
    )


# --- stock --------------------------------------------------------------------------------------------


def stock_logical(path: Path) -> dict[str, Any]:
    started = time.perf_counter()
    timed([str(PG_BIN / "createdb"), *pg_args(), "-T", "template0", RESTORED_DB], env=pg_env())
    timed([str(PG_BIN / "pg_restore"), *pg_args(), "-j", "2", "-d", RESTORED_DB, str(path)], env=pg_env())
    seconds = time.perf_counter() - started
    _drop(RESTORED_DB)
    return {"seconds": seconds}


def stock_physical(path: Path) -> dict[str, Any]:
    directory = OUT_DIR / "servers" / f"stock-{time.monotonic_ns()}"
    directory.mkdir(parents=True, mode=0o700)
    _postgres_may_enter(directory.parent)
    started = time.perf_counter()
    timed(["tar", "-xf", str(path), "-C", str(directory)])
    if os.geteuid() == 0:
        timed(["chown", "-R", "postgres:postgres", str(directory)])
    options = f"-p {_free_port()} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
    log = directory.parent / f"{directory.name}.log"
    timed(
        _as_postgres(
            [str(PG_BIN / "pg_ctl"), "start", "-w", "-t", "600", "-D", str(directory), "-l", str(log), "-o", options]
        ),
        cwd="/",
    )
    seconds = time.perf_counter() - started
    _stop(directory)
    log.unlink(missing_ok=True)
    return {"seconds": seconds}


def checkpointed(fn: Any) -> Any:
    """A measurement that starts after a CHECKPOINT on the primary (the last restore's 1 GB of dirty pages
    written out: no run pays for the one before), then `settled`'s sync."""

    def run() -> dict[str, Any]:
        with connect("postgres") as conn:
            conn.execute("CHECKPOINT")
        return fn()

    return run


def _postgres_may_enter(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(path, entry.pw_uid, entry.pw_gid)
    for parent in (path, *path.parents):
        if parent == ROOT:
            break
        parent.chmod(parent.stat().st_mode | 0o711)


# --- pgBackRest, the reference peer -------------------------------------------------------------------


def pgbackrest_restore(rounds: int) -> dict[str, Any]:
    """A throwaway copy of the demo primary (pg_basebackup) started as a primary of its own with WAL archived
    into a pgBackRest repository; a full backup of it; then `pgbackrest restore` into a new directory + start
    until it takes writes, timed. The demo primary itself is not reconfigured."""
    shutil.rmtree(PGBACKREST_DIR, ignore_errors=True)
    for sub in ("repo", "log", "lock", "spool"):
        (PGBACKREST_DIR / sub).mkdir(parents=True)
    source = PGBACKREST_DIR / "source"
    port = _free_port()
    config = PGBACKREST_DIR / "pgbackrest.conf"
    config.write_text(
        "[global]\n"
        f"repo1-path={PGBACKREST_DIR / 'repo'}\nlog-path={PGBACKREST_DIR / 'log'}\n"
        f"lock-path={PGBACKREST_DIR / 'lock'}\nspool-path={PGBACKREST_DIR / 'spool'}\n"
        "repo1-retention-full=1\ncompress-type=lz4\nprocess-max=2\nstart-fast=y\n"
        "log-level-console=warn\nlog-level-file=off\n"
        f"\n[bench]\npg1-path={source}\npg1-port={port}\npg1-socket-path={PGBACKREST_DIR}\n"
    )
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        for path in [PGBACKREST_DIR, *PGBACKREST_DIR.rglob("*")]:
            os.chown(path, entry.pw_uid, entry.pw_gid)
    base = _as_postgres(["pgbackrest", f"--config={config}", "--stanza=bench"])
    env = {**pg_env(), "PGHOST": primary().host}
    try:
        timed(
            _as_postgres([str(PG_BIN / "pg_basebackup"), *pg_args(), "-D", str(source), "-X", "stream", "-c", "fast"]),
            env=env,
            cwd="/",
        )
        (source / "standby.signal").unlink(missing_ok=True)
        archive = f"pgbackrest --config={config} --stanza=bench archive-push %p"
        options = (
            f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{PGBACKREST_DIR}' "
            f"-c archive_mode=on -c archive_command='{archive}' -c primary_conninfo=''"
        )
        ctl = [str(PG_BIN / "pg_ctl"), "-w", "-t", "600", "-D", str(source)]
        timed(_as_postgres([*ctl, "start", "-l", str(PGBACKREST_DIR / "source.log"), "-o", options]), cwd="/")
        timed([*base, "stanza-create"], env=env, cwd="/")
        backup_s = timed([*base, "backup", "--type=full"], env=env, cwd="/")
        timed(_as_postgres([*ctl, "stop", "-m", "fast"]), cwd="/")
        runs = []
        for _ in range(rounds):
            target = PGBACKREST_DIR / f"restored-{time.monotonic_ns()}"
            restored_port = _free_port()
            started = time.perf_counter()
            timed(
                [*base, f"--pg1-path={target}", "--type=immediate", "--target-action=promote", "restore"],
                env=env,
                cwd="/",
            )
            start = [str(PG_BIN / "pg_ctl"), "start", "-w", "-t", "600", "-D", str(target), "-l", f"{target}.log"]
            timed(
                _as_postgres([*start, "-o", f"-p {restored_port} -c listen_addresses=127.0.0.1 -c archive_mode=off"]),
                cwd="/",
            )
            _wait_writable(restored_port)
            runs.append({"seconds": time.perf_counter() - started})
            _stop(target)
        version = subprocess.run(["pgbackrest", "version"], capture_output=True, text=True, check=False)
        return {
            "seconds": statistics.median(r["seconds"] for r in runs),
            "backup_s": backup_s,
            "version": version.stdout.strip(),
        }
    finally:
        _stop(source)
        shutil.rmtree(PGBACKREST_DIR, ignore_errors=True)


def _wait_writable(port: int, timeout: float = 120) -> None:
    import psycopg

    target = primary()
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(
                host="127.0.0.1",
                port=port,
                user=target.user,
                password=target.password,
                dbname="postgres",
                autocommit=True,
            ) as conn:
                if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                    conn.execute("CREATE TEMP TABLE w (x int)")
                    return
        except psycopg.Error:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("the server pgbackrest restored did not take writes")
        time.sleep(0.05)


# --- end to end, through the environment's own worker -------------------------------------------------


def end_to_end(backup: Any) -> dict[str, Any]:
    """The wizard's Run: the request goes through Redis to the running `ops` worker; request -> verified."""
    from hadr_portal.backups import wizard
    from hadr_portal.backups.models import Restore

    restore, preflight_s = restore_prepared(backup, destination="new_database", database=RESTORED_DB)
    started = time.perf_counter()
    wizard.restore_request(restore=restore, actor=None)
    while Restore.objects.filter(pk=restore.pk, status__in=Restore.ACTIVE).exists():
        time.sleep(0.05)
    seen = time.perf_counter() - started
    restore.refresh_from_db()
    if restore.status != "verified":
        raise SystemExit(f"end-to-end restore #{restore.pk} {restore.status}: {restore.error}")
    _drop(RESTORED_DB)
    return {"seen_s": seen, "rto_s": restore.rto_seconds, "preflight_s": preflight_s, **phases(restore.operation)}


# --- the whole benchmark ------------------------------------------------------------------------------


def restores_bench(rounds: int = 5) -> dict[str, Any]:
    from hadr_portal.backups.models import BackupPolicy

    print("  preparing data on the demo primary...", flush=True)
    big = ensure_database(BIG_DB, BIG_ROWS)
    cluster_size, data_dir = cluster_facts()
    results: dict[str, Any] = {"big": big, "cluster": cluster_size, "rounds": rounds}
    restores_cleanup()
    shutil.rmtree(OUT_DIR, ignore_errors=True)
    (OUT_DIR / "servers").mkdir(parents=True)
    _postgres_may_enter(OUT_DIR / "servers")
    try:
        print("  backing up (logical, then physical) with our backup operation...", flush=True)
        for name, engine in (("bench-restore-logical", "pg_dump"), ("bench-restore-physical", "pg_basebackup")):
            policy_create(
                name, dbname=BIG_DB, engine=engine, storage_kind="local", config={"path": str(OUT_DIR / name)}
            )
            BackupPolicy.objects.filter(name=name).update(verify=VERIFY, jobs=2, drill_schedule="")
        logical = backup_take("bench-restore-logical")
        physical = backup_take("bench-restore-physical")
        results["logical_size"], results["physical_size"] = logical.size, physical.size
        with contextlib.suppress(OSError):
            warm_page_cache(data_dir)
        dump = OUT_DIR / "bench-restore-logical" / logical.key
        tar = OUT_DIR / "bench-restore-physical" / physical.key

        print("  logical restores, ours and pg_restore -j 2, alternating...", flush=True)
        results["logical"] = side_by_side(
            rounds, checkpointed(lambda: ours_logical(logical)), checkpointed(lambda: stock_logical(dump))
        )
        print("  physical restores, ours and tar + pg_ctl start, alternating...", flush=True)
        results["physical"] = side_by_side(
            rounds, checkpointed(lambda: ours_physical(physical)), checkpointed(lambda: stock_physical(tar))
        )
        print("  end to end through the running ops worker...", flush=True)
        results["end_to_end"] = settled(checkpointed(lambda: end_to_end(logical)))
        if shutil.which("pgbackrest"):
            print("  pgbackrest restore (reference)...", flush=True)
            results["pgbackrest"] = pgbackrest_restore(rounds)
    finally:
        restores_cleanup()
        shutil.rmtree(OUT_DIR, ignore_errors=True)
    return results
