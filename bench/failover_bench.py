"""Failover benchmark (run by bench/run.py against the local environment).

failover
    A separate primary + streaming replica for every round (never the demo cluster): copied from one
    initdb'd template holding `pgbench -i -s 5` data and a `witness` table, fsync on, asynchronous
    streaming replication as the demo runs it. A pgbench write load (4 clients, the tpcb-like
    transaction plus one witness row `(client, n)` per transaction) runs for 3 s, then the primary
    is crashed (`pg_ctl stop -m immediate`) and at once:

      ours    the pair is a temporary cluster in the catalog; `failover_request` (what the DBA's
              confirmation calls) queues the `failover` operation, the `ops` worker of `make up`
              runs it (pre-checks, fencing, pg_promote, proof of a committed write, new topology).
              Timed: the client's request -> its own first committed write on the new primary
              (psycopg, retried every 10 ms), the operation's `seconds_to_writable` (created ->
              first write committed by the worker) and its whole duration (created -> finished).
      stock   the manual path with stock tools on another fresh pair with the same load and crash:
              `psql -c "SELECT pg_promote()"` on the replica, then `psql -c "CREATE TEMP TABLE ...;
              INSERT ..."` until it succeeds; start -> first successful write.

    Meanwhile, every 20 ms, the primary's flushed WAL not yet confirmed received by the replica
    (`pg_current_wal_flush_lsn() - pg_stat_replication.write_lsn`): the window a crash can lose.

    Data lost: pgbench's per-transaction log (`--log`) says which transactions each client saw
    committed; every one whose witness row is missing on the new primary was lost. Rows present
    that no client saw acknowledged (committed while the crash cut the connection) are counted
    apart: they are not a loss.

Patroni's default TTL (30 s) and repmgr's default failover detection (~60 s) are printed as
documented references. The Patroni engine itself (automatic failover after a kill -9, planned switchover raw and
through the portal) is measured in the same run on a cluster of its own: bench/patroni_bench.py, which prints its
table before this one's.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hadr_portal.adapters.commands import run_command  # noqa: E402
from hadr_portal.adapters.pg.server import PG_BIN, LocalInstance, chown_to_postgres  # noqa: E402
from hadr_portal.demo.cluster import make_replica  # noqa: E402

BENCH_PREFIX = "bench-failover-"
WORK_DIR = ROOT / ".run" / "bench-failover"
DBNAME = "bench"
SCALE = 5
CLIENTS, THREADS = 4, 2
LOAD_SECONDS = 3.0
ROUNDS = 5
SUPERUSER_ENV = "HADR_DEMO_PASSWORD"  # the superuser password, in .run/env: the ops worker has it too
OPERATION_TIMEOUT = 90.0
PATRONI_TTL_SECONDS = 30  # Patroni's default `ttl`: the leader key expires, then a replica may take over
REPMGR_SECONDS = 60  # repmgrd defaults: reconnect_attempts 6 x reconnect_interval 10 s before promoting

# pgbench's built-in tpcb-like transaction plus a witness row naming the client and its n-th transaction.
# `n` starts at 0 (`-D n=0`) and persists per client across transactions.
LOAD_SCRIPT = """\
\\set n :n + 1
\\set aid random(1, 100000 * :scale)
\\set bid random(1, 1 * :scale)
\\set tid random(1, 10 * :scale)
\\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
INSERT INTO witness (client, n) VALUES (:client_id, :n);
END;
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def password() -> str:
    value = os.environ.get(SUPERUSER_ENV, "")
    if not value:
        raise SystemExit(f"{SUPERUSER_ENV} is not set: run through bench/run.py (it loads .run/env).")
    return value


@dataclass
class Pair:
    base: Path
    primary: LocalInstance
    replica: LocalInstance
    cluster: Any = None  # a databases.Cluster when registered in the catalog


def _stop_quietly(instance: LocalInstance) -> None:
    with contextlib.suppress(Exception):
        instance.stop(mode="immediate", timeout=30)


def leftovers_remove() -> None:
    """What an interrupted run left: servers still running in WORK_DIR, their directories, the clusters."""
    from hadr_portal.databases.models import Cluster

    if WORK_DIR.exists():
        for pid_file in WORK_DIR.glob("*/*/postmaster.pid"):
            _stop_quietly(LocalInstance(pid_file.parent, 0))
        shutil.rmtree(WORK_DIR, ignore_errors=True)
    Cluster.objects.filter(name__startswith=BENCH_PREFIX).delete()


def template_make() -> Path:
    """An initdb'd, cleanly stopped data directory: database `bench` with pgbench data (scale 5) and
    the witness and probe tables."""
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    WORK_DIR.chmod(0o755)
    chown_to_postgres(WORK_DIR)
    template = LocalInstance(WORK_DIR / "template" / "data", free_port(), password(), fsync=True)
    template.initdb()
    template.ensure_log_file()
    template.start()
    try:
        template.psql(f"CREATE DATABASE {DBNAME}")
        run_command(
            [str(PG_BIN / "pgbench"), "-i", "-q", "-s", str(SCALE), "-d", template.conninfo(DBNAME)],
            timeout=300,
        )
        template.psql(
            "CREATE TABLE witness (client int NOT NULL, n int NOT NULL,"
            " at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (client, n));"
            " CREATE TABLE failover_probe (at timestamptz NOT NULL)",
            dbname=DBNAME,
        )
    finally:
        template.stop(mode="fast")
    return template.data_dir


def pair_make(template: Path, *, register: bool) -> Pair:
    """A running primary (a copy of the template) and its streaming replica; registered as a temporary
    cluster with pg_ctl controllers when `register`."""
    from hadr_portal.adapters.pg.node import wait_streaming
    from hadr_portal.databases.services import cluster_upsert

    base = WORK_DIR / uuid.uuid4().hex[:8]
    base.mkdir(mode=0o755)
    chown_to_postgres(base)
    pair = Pair(
        base,
        LocalInstance(base / "primary", free_port(), password(), fsync=True),
        LocalInstance(base / "replica", free_port(), password(), fsync=True),
    )
    try:
        run_command(["cp", "-a", str(template), str(pair.primary.data_dir)], timeout=120)
        pair.primary.write_settings()
        pair.primary.ensure_log_file()
        pair.primary.start()
        make_replica(pair.primary, pair.replica, slot="hadr_replica")
        pair.replica.ensure_log_file()
        pair.replica.start()
        wait_streaming(pair.replica.conninfo(DBNAME), timeout=30, interval=0.05)
        if register:
            pair.cluster = cluster_upsert(
                name=f"{BENCH_PREFIX}{base.name}",
                description="temporary: failover benchmark",
                nodes={"primary": ("127.0.0.1", pair.primary.port), "replica": ("127.0.0.1", pair.replica.port)},
                dbname=DBNAME,
                user="postgres",
                password_env=SUPERUSER_ENV,
            )
            for node, instance in (("primary", pair.primary), ("replica", pair.replica)):
                pair.cluster.nodes.filter(name=node).update(
                    controller={"controller": "pg_ctl", "data_directory": str(instance.data_dir)}
                )
    except BaseException:
        pair_remove(pair)
        raise
    return pair


def pair_remove(pair: Pair) -> None:
    for instance in (pair.primary, pair.replica):
        _stop_quietly(instance)
    if pair.cluster is not None:
        with contextlib.suppress(Exception):
            pair.cluster.delete()  # its nodes and Failover rows go with it; the operations stay in the history
    shutil.rmtree(pair.base, ignore_errors=True)


@contextlib.contextmanager
def pair_for_round(template: Path, *, register: bool) -> Iterator[Pair]:
    pair = pair_make(template, register=register)
    try:
        yield pair
    finally:
        pair_remove(pair)


@dataclass
class Load:
    process: subprocess.Popen[str]
    log_prefix: Path


def load_start(pair: Pair) -> Load:
    script = pair.base / "load.sql"
    script.write_text(LOAD_SCRIPT)
    log_prefix = pair.base / "pgbench_log"
    argv = [
        str(PG_BIN / "pgbench"),
        "-h",
        "127.0.0.1",
        "-p",
        str(pair.primary.port),
        "-U",
        "postgres",
        "-n",
        "-c",
        str(CLIENTS),
        "-j",
        str(THREADS),
        "-T",
        "60",
        "-s",
        str(SCALE),
        "-D",
        "n=0",
        "-f",
        str(script),
        "--log",
        f"--log-prefix={log_prefix}",
        DBNAME,
    ]
    env = os.environ | {"PGPASSWORD": pair.primary.superuser_password}
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=pair.base
    )
    return Load(process, log_prefix)


def load_collect(load: Load) -> dict[str, Any]:
    """After the crash: pgbench's summary and, from its per-transaction logs, how many transactions each
    client saw committed (transaction n of client c is acknowledged iff n <= acked[c])."""
    try:
        output, _ = load.process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        load.process.kill()
        output, _ = load.process.communicate()
    acked: dict[int, int] = {}
    failed = 0
    for log in load.log_prefix.parent.glob(f"{load.log_prefix.name}.*"):
        for line in log.read_text().splitlines():
            fields = line.split()
            if len(fields) < 3:
                continue
            if fields[2].isdigit():
                acked[int(fields[0])] = acked.get(int(fields[0]), 0) + 1
            else:
                failed += 1
    match = re.search(r"number of transactions actually processed: (\d+)", output)
    aborted = len(re.findall(r"client \d+ aborted", output))
    return {
        "processed": int(match.group(1)) if match else None,
        "acked": acked,
        "acked_total": sum(acked.values()),
        "failed": failed,
        "aborted_clients": aborted,
        "output": output,
    }


def witness_rows(instance: LocalInstance) -> set[tuple[int, int]]:
    import psycopg

    with psycopg.connect(instance.conninfo(DBNAME), autocommit=True) as conn:
        return {(client, n) for client, n in conn.execute("SELECT client, n FROM witness")}


def loss_count(acked: dict[int, int], rows: set[tuple[int, int]]) -> dict[str, int]:
    acknowledged = {(client, n) for client, count in acked.items() for n in range(1, count + 1)}
    return {
        "acked": len(acknowledged),
        "present": len(rows),
        "lost": len(acknowledged - rows),
        "unacked_present": len(rows - acknowledged),
    }


def first_write(conninfo: str, *, timeout: float = 60.0, interval: float = 0.01) -> float:
    """Retry a committed INSERT on the node (one session, reconnecting when it breaks) until one
    succeeds; the perf_counter() of that success."""
    import psycopg

    deadline = time.perf_counter() + timeout
    conn = None
    try:
        while True:
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=2)
                conn.execute("INSERT INTO failover_probe VALUES (clock_timestamp())")
                return time.perf_counter()
            except psycopg.Error:
                if conn is not None and conn.broken:
                    conn.close()
                    conn = None
                if time.perf_counter() >= deadline:
                    raise
            time.sleep(interval)
    finally:
        if conn is not None:
            conn.close()


def crash_under_load(pair: Pair) -> tuple[Load, float, list[int]]:
    """Run the load for LOAD_SECONDS, then crash the primary. Meanwhile, every 20 ms: the WAL the primary
    has flushed (so may have acknowledged) that the replica has not yet confirmed receiving."""
    import psycopg

    load = load_start(pair)
    unconfirmed: list[int] = []
    with psycopg.connect(pair.primary.conninfo(DBNAME), autocommit=True) as conn:
        until = time.perf_counter() + LOAD_SECONDS
        while time.perf_counter() < until:
            row = conn.execute(
                "SELECT pg_wal_lsn_diff(pg_current_wal_flush_lsn(), write_lsn)::bigint FROM pg_stat_replication"
            ).fetchone()
            if row and row[0] is not None:
                unconfirmed.append(max(0, int(row[0])))
            time.sleep(0.02)
    if load.process.poll() is not None:
        raise SystemExit(f"pgbench ended before the crash:\n{load.process.communicate()[0]}")
    pair.primary.stop(mode="immediate")
    return load, time.perf_counter(), unconfirmed


def round_ours(template: Path) -> dict[str, Any]:
    from hadr_portal.core.models import Operation
    from hadr_portal.databases.failover import failover_request
    from hadr_portal.databases.models import Failover
    from hadr_portal.databases.topology import cluster_probe

    with pair_for_round(template, register=True) as pair:
        cluster_probe(pair.cluster)  # as the health checks do: the portal knows where the primary was
        load, crashed, unconfirmed = crash_under_load(pair)
        started = time.perf_counter()
        operation = failover_request(
            cluster=pair.cluster,
            actor=None,
            override_reason="failover benchmark: the loss is measured",
        )
        requested = time.perf_counter()
        written = first_write(pair.replica.conninfo(DBNAME))
        deadline = time.perf_counter() + OPERATION_TIMEOUT
        while True:
            operation = Operation.objects.get(pk=operation.pk)
            if operation.status not in Operation.ACTIVE:
                break
            if time.perf_counter() >= deadline:
                raise SystemExit(
                    f"failover operation #{operation.pk} still {operation.status} after {OPERATION_TIMEOUT} s"
                )
            time.sleep(0.01)
        ended = time.perf_counter()
        if operation.status != "succeeded":
            raise SystemExit(f"failover operation #{operation.pk} ended {operation.status}: {operation.error}")
        failover = Failover.objects.get(operation=operation)
        pgbench = load_collect(load)
        loss = loss_count(pgbench["acked"], witness_rows(pair.replica))
        return {
            "client_s": written - started,
            "request_call_s": requested - started,
            "crash_to_write_s": written - crashed,
            "seconds_to_writable": failover.seconds_to_writable,
            "operation_s": (operation.finished_at - operation.created_at).total_seconds(),
            "client_until_finished_s": ended - started,
            "old_primary_state": failover.old_primary_state,
            "lag_bytes": failover.lag_bytes,
            "operation": operation.pk,
            "processed": pgbench["processed"],
            "failed": pgbench["failed"],
            "aborted_clients": pgbench["aborted_clients"],
            "unconfirmed_bytes": unconfirmed,
            **loss,
        }


def round_stock(template: Path) -> dict[str, Any]:
    with pair_for_round(template, register=False) as pair:
        load, crashed, unconfirmed = crash_under_load(pair)
        env = os.environ | {"PGPASSWORD": pair.replica.superuser_password}
        dsn = f"host=127.0.0.1 port={pair.replica.port} dbname={DBNAME} user=postgres connect_timeout=5"
        psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-c"]
        started = time.perf_counter()
        subprocess.run([*psql, "SELECT pg_promote()"], check=True, capture_output=True, env=env, timeout=90)
        tries = 0
        while True:
            tries += 1
            done = subprocess.run(
                [*psql, "CREATE TEMP TABLE t (x int); INSERT INTO t VALUES (1)"], capture_output=True, env=env
            )
            if done.returncode == 0:
                break
            if time.perf_counter() - started > 60:
                raise SystemExit(f"stock path: no write succeeded within 60 s: {done.stderr.strip()}")
            time.sleep(0.01)
        written = time.perf_counter()
        pgbench = load_collect(load)
        loss = loss_count(pgbench["acked"], witness_rows(pair.replica))
        return {
            "stock_s": written - started,
            "crash_to_write_s": written - crashed,
            "write_tries": tries,
            "processed": pgbench["processed"],
            "failed": pgbench["failed"],
            "aborted_clients": pgbench["aborted_clients"],
            "unconfirmed_bytes": unconfirmed,
            **loss,
        }


def failover_bench(rounds: int = ROUNDS) -> dict[str, Any]:
    """`rounds` rounds, each: our failover on a fresh pair, then the stock path on another fresh pair; then the
    Patroni engine's benchmark, which prints its own table (under "patroni" in the result)."""
    from bench.patroni_bench import patroni_report

    began = time.perf_counter()
    leftovers_remove()
    try:
        template = template_make()
        ours: list[dict[str, Any]] = []
        stock: list[dict[str, Any]] = []
        for _ in range(rounds):
            ours.append(round_ours(template))
            stock.append(round_stock(template))
    finally:
        leftovers_remove()
    seconds = time.perf_counter() - began
    patroni = patroni_report(runs=rounds)
    ours_median = statistics.median(r["client_s"] for r in ours)
    stock_median = statistics.median(r["stock_s"] for r in stock)
    return {
        "rounds": rounds,
        "ours": ours,
        "stock": stock,
        "ours_median_s": ours_median,
        "ours_max_s": max(r["client_s"] for r in ours),
        "stock_median_s": stock_median,
        "stock_max_s": max(r["stock_s"] for r in stock),
        "ratio": ours_median / stock_median,
        "patroni": patroni,
        "seconds": seconds,  # of the direct engine's rounds
    }


if __name__ == "__main__":  # pragma: no cover - a manual entry point; `make bench BENCH=failover` is the usual one
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hadr_portal.settings")
    from bench.run import load_env

    load_env()
    import django

    django.setup()
    print(failover_bench(int(sys.argv[1]) if len(sys.argv) > 1 else ROUNDS))
