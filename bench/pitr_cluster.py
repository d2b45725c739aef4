"""The point-in-time recovery benchmark's own cluster (bench/pitr_bench.py): a primary under a temporary directory,
in the catalog as a temporary cluster with a pgBackRest policy; the write load and what it committed; the loss of
the machine.

Never the demo's cluster or anything else: every server, directory and catalog row is this benchmark's own, named
with PREFIX / WORK_PREFIX, and removed at the end of a run (or at the start of the next one).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from psycopg import sql

from hadr_portal.adapters.commands import run_command
from hadr_portal.adapters.pg.archive import archiver_status, recovery_state
from hadr_portal.adapters.pg.scratch import free_port, server_remove
from hadr_portal.adapters.pg.server import PG_BIN, LocalInstance
from hadr_portal.adapters.pgbackrest import Stanza

PREFIX = "bench-pitr-"
WORK_PREFIX = "hadr-bench-pitr-"
DBNAME = "bench"
RATE, CLIENTS = 50, 2
WAL_RPO_SECONDS = 30  # the policy's objective: archive_timeout is a third of it, 10 s
SUPERUSER_ENV = "HADR_DEMO_PASSWORD"  # the superuser password, in .run/env
READER, READER_PASSWORD_ENV = "hadr_bench_reader", "HADR_BENCH_PITR_READER_PASSWORD"
COMMITS_DDL = (
    "CREATE TABLE commits (client int NOT NULL, n int NOT NULL,"
    " at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (client, n))"
)
# what a restored copy must answer besides amcheck (a policy's `verify`)
VERIFY = [{"name": "branches", "sql": "SELECT count(*) FROM pgbench_branches", "expect": "> 0"}]
# one row per transaction: client c's n-th transaction writes (c, n); `n` persists per client (-D n=0)
LOAD_SCRIPT = "\\set n :n + 1\nINSERT INTO commits (client, n) VALUES (:client_id, :n);\n"


@dataclass
class Bench:
    work: Path
    primary: LocalInstance
    policy: Any  # backups.BackupPolicy
    stanza: Stanza


@dataclass
class Load:
    process: subprocess.Popen[str]
    log_prefix: Path
    started: datetime


def password() -> str:
    value = os.environ.get(SUPERUSER_ENV, "")
    if not value:
        raise SystemExit(f"{SUPERUSER_ENV} is not set: run through bench/run.py (it loads .run/env).")
    return value


def connect(port: int, dbname: str = DBNAME) -> Any:
    import psycopg

    return psycopg.connect(
        host="127.0.0.1", port=port, user="postgres", password=password(), dbname=dbname, autocommit=True
    )


# --- the cluster --------------------------------------------------------------------------------------


def leftovers_remove() -> None:
    """What an interrupted run left: its servers, directories and catalog rows."""
    from django.utils import timezone

    from hadr_portal.backups.models import Backup, BackupPolicy, Restore, StorageTarget
    from hadr_portal.core.models import Operation
    from hadr_portal.databases.models import Cluster

    for work in Path(tempfile.gettempdir()).glob(f"{WORK_PREFIX}*"):
        # primary/data, raw/pitr-*, latest/data; restores/servers/pitr-*
        for pid_file in [*work.glob("*/*/postmaster.pid"), *work.glob("*/*/*/postmaster.pid")]:
            server_remove(pid_file.parent)
        shutil.rmtree(work, ignore_errors=True)
    Operation.objects.filter(parameters__policy__startswith=PREFIX, status__in=Operation.ACTIVE).update(
        status=Operation.Status.FAILED, finished_at=timezone.now(), error="abandoned benchmark run"
    )
    Restore.objects.filter(policy__name__startswith=PREFIX).delete()
    Backup.objects.filter(policy__name__startswith=PREFIX).delete()
    BackupPolicy.objects.filter(name__startswith=PREFIX).delete()
    StorageTarget.objects.filter(name__startswith=PREFIX).delete()
    Cluster.objects.filter(name__startswith=PREFIX).delete()


def bench_make(work: Path, scale: int) -> Bench:
    """The primary with its data, in the catalog as a temporary cluster with a pgBackRest policy, archiving on."""
    from hadr_portal.backups.markers import markers_table_ensure
    from hadr_portal.backups.models import BackupPolicy, StorageTarget
    from hadr_portal.backups.stanza import stanza_setup
    from hadr_portal.databases.services import cluster_upsert
    from hadr_portal.databases.topology import cluster_probe

    primary = LocalInstance(work / "primary" / "data", free_port(), password(), fsync=True)
    primary.initdb()
    with open(primary.data_dir / "postgresql.conf", "a") as conf:
        conf.write("track_commit_timestamp = on\nmax_wal_size = '2GB'\n")  # commit times: the exactness check
    primary.ensure_log_file()
    primary.start()
    # The WAL of the initial load is needed by nothing (the first full set comes after it): not archived.
    primary.psql("ALTER SYSTEM SET archive_command = 'true'")
    primary.psql("SELECT pg_reload_conf()")
    primary.psql(f"CREATE DATABASE {DBNAME}")
    print(f"  pgbench -i -s {scale}...", flush=True)
    run_command([str(PG_BIN / "pgbench"), "-i", "-q", "-s", str(scale), "-d", primary.conninfo(DBNAME)], timeout=3600)
    primary.psql(COMMITS_DDL, dbname=DBNAME)
    primary.psql("CHECKPOINT")
    # verification queries never run as a superuser: a read role, its password in this process's environment
    os.environ[READER_PASSWORD_ENV] = secrets.token_urlsafe(16)
    with connect(primary.port) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE pg_read_all_data").format(
                sql.Identifier(READER), sql.Literal(os.environ[READER_PASSWORD_ENV])
            )
        )

    name = f"{PREFIX}{work.name.removeprefix(WORK_PREFIX).lower().replace('_', '-')}"
    cluster = cluster_upsert(
        name=name,
        description="temporary: PITR benchmark",
        nodes={"primary": ("127.0.0.1", primary.port)},
        dbname=DBNAME,
        user="postgres",
        password_env=SUPERUSER_ENV,
        read_user=READER,
        read_password_env=READER_PASSWORD_ENV,
    )
    cluster.nodes.filter(name="primary").update(
        controller={
            "controller": "pg_ctl",
            "data_directory": str(primary.data_dir),
            "socket_directory": str(primary.socket_directory),
        }
    )
    cluster_probe(cluster)
    storage = StorageTarget.objects.create(name=name, kind="local", config={"path": str(work / "repo")})
    policy = BackupPolicy.objects.create(
        name=name,
        cluster=cluster,
        dbname=DBNAME,
        engine=BackupPolicy.Engine.PGBACKREST,
        storage=storage,
        compress="lz4",
        jobs=2,
        wal_rpo_seconds=WAL_RPO_SECONDS,
        verify=VERIFY,
        drill_schedule="",
        enabled=False,  # never queued by a running beat
    )
    stanza = stanza_setup(policy, log=lambda *_: None)  # what `manage.py pitr_setup` does
    markers_table_ensure(policy)
    return Bench(work, primary, policy, stanza)


def sizes(bench: Bench) -> dict[str, int]:
    with connect(bench.primary.port) as conn:
        row = conn.execute(
            "SELECT pg_database_size(current_database()), (SELECT sum(pg_database_size(oid)) FROM pg_database)"
        ).fetchone()
    return {"database": int(row[0]), "cluster": int(row[1])}


# --- the load and what it committed -------------------------------------------------------------------


def load_start(bench: Bench) -> Load:
    script = bench.work / "commit.sql"
    script.write_text(LOAD_SCRIPT)
    log_prefix = bench.work / "pgbench_log"
    argv = [
        str(PG_BIN / "pgbench"),
        *("-h", "127.0.0.1", "-p", str(bench.primary.port), "-U", "postgres", "-n"),
        *("-c", str(CLIENTS), "-j", "1", "-R", str(RATE), "-T", "7200", "-D", "n=0"),
        *("-f", str(script), "--log", f"--log-prefix={log_prefix}", DBNAME),
    ]
    env = os.environ | {"PGPASSWORD": password()}
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=bench.work
    )
    return Load(process, log_prefix, datetime.now(UTC))


def acknowledged(load: Load) -> dict[tuple[int, int], float]:
    """(client, n) of every transaction pgbench saw committed -> when (epoch seconds). A client's log lines are in
    the order of its transactions, so its k-th line is its row n = k."""
    acked: dict[tuple[int, int], float] = {}
    counts: dict[int, int] = {}
    for log in load.log_prefix.parent.glob(f"{load.log_prefix.name}.*"):
        for line in log.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 6 and fields[2].isdigit():
                client = int(fields[0])
                counts[client] = counts.get(client, 0) + 1
                acked[(client, counts[client])] = int(fields[4]) + int(fields[5]) / 1e6
    return acked


def commit_times(bench: Bench) -> dict[tuple[int, int], datetime]:
    """Every row of `commits` on the primary and its transaction's commit timestamp: recovery_target_time is
    compared with exactly that."""
    with connect(bench.primary.port) as conn:
        rows = conn.execute("SELECT client, n, pg_xact_commit_timestamp(xmin) FROM commits").fetchall()
    if any(row[2] is None for row in rows):
        raise SystemExit("a commits row without a commit timestamp: is track_commit_timestamp on?")
    return {(client, n): at for client, n, at in rows}


def rows_on(port: int) -> set[tuple[int, int]]:
    with connect(port) as conn:
        return {(client, n) for client, n in conn.execute("SELECT client, n FROM commits")}


def exactness(rows: set[tuple[int, int]], truth: dict[tuple[int, int], datetime], point: datetime) -> dict[str, Any]:
    before = {key for key, at in truth.items() if at <= point}
    after = truth.keys() - before
    return {
        "before": len(before),
        "before_present": len(before & rows),
        "after": len(after),
        "after_present": len(after & rows),
        "unknown": len(rows - truth.keys()),
        "exact": rows == before,
    }


def archived_past(bench: Bench, point: datetime) -> None:
    """Until the repository holds a commit after `point` (recovery to a time stops at the first commit past it)."""
    while datetime.now(UTC) < point + timedelta(seconds=0.5):
        time.sleep(0.1)
    with connect(bench.primary.port, "postgres") as conn:
        segment = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]
        conn.execute("SELECT pg_switch_wal()")
    deadline = time.monotonic() + 120
    while archiver_status(bench.primary.conninfo()).last_archived_wal < segment:
        if time.monotonic() > deadline:
            raise SystemExit(f"WAL segment {segment} was not archived within 120 s")
        time.sleep(0.1)


# --- servers restored from the repository -------------------------------------------------------------


def wait_recovered(port: int, *, paused: bool, timeout: float = 3600) -> None:
    """Until recovery pauses (`paused`) or ends; polled every 50 ms."""
    conninfo = f"host=127.0.0.1 port={port} dbname=postgres user=postgres password={password()}"
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):  # not accepting connections yet
            state = recovery_state(conninfo)
            if paused and state.pause_state == "paused":
                return
            if not state.in_recovery:
                if paused:
                    raise SystemExit(f"the raw restore on port {port} ended recovery instead of pausing")
                return
        if time.monotonic() > deadline:
            raise SystemExit(f"the server on port {port} did not recover within {timeout:.0f} s")
        time.sleep(0.05)


# --- losing the machine -------------------------------------------------------------------------------


def _processes() -> Iterator[tuple[int, int, str]]:
    """(pid, parent pid, command line) of every process."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            yield int(entry.name), int(stat.rsplit(")", 1)[1].split()[1]), cmdline


def machine_lose(bench: Bench) -> None:
    """SIGKILL the primary's postmaster, every process under it and the pgbackrest processes of its stanza (the
    async archiver among them) at once, as a lost machine; then remove its data directory."""
    postmaster = int((bench.primary.data_dir / "postmaster.pid").read_text().split()[0])
    config = str(bench.stanza.config_path)
    for _ in range(2):  # a process started while the first pass listed them
        processes = list(_processes())
        victims = {postmaster} | {pid for pid, _, cmdline in processes if config in cmdline}
        grown = True
        while grown:
            more = {pid for pid, parent, _ in processes if parent in victims} - victims
            victims |= more
            grown = bool(more)
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    shutil.rmtree(bench.primary.data_dir)
