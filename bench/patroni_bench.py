"""Failover benchmark, Patroni engine (run by bench/failover_bench.py; alone: `python -m bench.patroni_bench
[RUNS] [--raw-only]`).

A cluster of its own, never the demo's `demo-ha` (bench/patroni_cluster.py): a single-member etcd and two Patroni
nodes with the demo's configuration (hadr_portal.demo.patroni: ttl 10, loop_wait 2, retry_timeout 4, use_pg_rewind,
use_slots; fsync on here) on free ports under a new temporary directory. Every process it starts and the directory
are removed at the end, whatever happens (and what an interrupted run left, at the start).

unplanned
    A writer commits one witness row every 10 ms where writes go (libpq `target_session_attrs=read-write` over both
    nodes, reconnecting when the session breaks) and records each id acknowledged. After 3 s, SIGKILL to the
    leader's whole Patroni process group and to its postmaster (the pid in postmaster.pid). Timed: the kill -> the
    first write acknowledged by the other node. Lost: acknowledged ids missing there. Then the killed node's
    Patroni starts again; timed: its start -> streaming from the new leader (pg_stat_replication), and whether it
    ran pg_rewind (its log says). Runs alternate synchronous_mode off and on (`PATCH /config`, then `/cluster`
    shows a sync_standby, or none).

planned
    synchronous_mode on, as demo-ha. Raw: `POST /switchover` to the leader's own REST API, as `patronictl
    switchover` sends it. Portal: the cluster is a temporary `patroni` cluster in the catalog and
    `switchover_request` queues the operation the `ops` worker of `make up` runs (its PatroniClient sends the POST
    to the first member's API that answers). Both timed from the client's request to its own first committed write
    on the candidate (one session opened with the request, an INSERT retried every 10 ms). Each round is raw,
    portal, portal, raw (the next one portal, raw, raw, portal): as the leader alternates, each side switches over
    once in each direction per round, first and last as often.
    The catalog row names the variables the worker already has: HADR_PATRONI_REST_PASSWORD (so this cluster's
    REST password is demo-ha's) and HADR_DEMO_PASSWORD (its superuser's). No probe table is created on it: the
    portal's write probe only reads its state, and records no leader change (no incident for the raw rounds).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.failover_bench import first_write  # noqa: E402
from bench.patroni_cluster import DIR_PREFIX, BenchCluster, leftovers_remove, versions, wait_for  # noqa: E402
from hadr_portal.demo import patroni as demo  # noqa: E402

CATALOG_PREFIX = "bench-patroni-"
# variables the `ops` worker of `make up` already has: the catalog row names them
REST_USER_ENV, REST_PASSWORD_ENV, SUPERUSER_ENV = (
    "HADR_PATRONI_REST_USER",
    "HADR_PATRONI_REST_PASSWORD",
    "HADR_DEMO_PASSWORD",
)
RUNS = 5  # of each: unplanned with synchronous_mode off, on; planned raw, portal
WRITE_INTERVAL = 0.01
WRITE_BEFORE_KILL = 3.0
GOAL_UNPLANNED_S = 10.0
GOAL_PLANNED_RATIO = 1.1


class Writer(threading.Thread):
    """One witness row every WRITE_INTERVAL where writes go; each acknowledged id with when and on which port."""

    def __init__(self, conninfo: str, first_id: int) -> None:
        super().__init__(daemon=True)
        self.conninfo, self.last_id = conninfo, first_id
        self.acked: list[tuple[int, float, int]] = []
        self.unsure: list[int] = []  # sent, but the session broke before the answer: committed or not
        self.halt = threading.Event()

    def run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        due = time.perf_counter()
        while not self.halt.is_set():
            sent = False
            try:
                if conn is None:
                    conn = psycopg.connect(self.conninfo, autocommit=True)
                self.last_id += 1
                sent = True
                conn.execute("INSERT INTO witness (id) VALUES (%s)", [self.last_id])
                self.acked.append((self.last_id, time.perf_counter(), int(conn.info.port)))
            except psycopg.Error:
                if sent:
                    self.unsure.append(self.last_id)
                if conn is not None:
                    conn.close()
                    conn = None
            due = max(due + WRITE_INTERVAL, time.perf_counter())
            time.sleep(max(0.0, due - time.perf_counter()))
        if conn is not None:
            conn.close()

    def first_on(self, port: int, after: float) -> float | None:
        return next((at for _, at, on in self.acked if on == port and at >= after), None)


def unplanned_run(cluster: BenchCluster, *, sync: bool, number: int) -> dict[str, Any]:
    leader = cluster.member(cluster.leader())
    survivor = cluster.other(leader)
    first_id = number * 10_000_000
    writer = Writer(cluster.conninfo(), first_id)
    writer.start()
    try:
        time.sleep(WRITE_BEFORE_KILL)
        killed = time.perf_counter()
        cluster.kill(leader)
        wait_for(lambda: writer.first_on(survivor.pg_port, killed) is not None, "write on the new leader", 120, 0.01)
    finally:
        writer.halt.set()
        writer.join(10)
    first = writer.first_on(survivor.pg_port, killed)
    assert first is not None
    with cluster.connect(survivor) as conn:
        present = {row[0] for row in conn.execute("SELECT id FROM witness WHERE id > %s", [first_id])}
    acked = {row[0] for row in writer.acked}
    on_old = [at for _, at, port in writer.acked if port == leader.pg_port]
    offset = cluster.patroni_start(leader)
    back = wait_for(lambda: cluster.streaming(survivor, leader), "old leader streaming", 300, 0.05)
    log = (leader.home / "patroni.log").read_bytes()[offset:].decode(errors="replace")
    wait_for(lambda: cluster.healthy(sync=sync), "settled cluster", 120, 0.2)
    return {
        "sync": sync,
        "seconds": first - killed,
        "last_old_to_first_new": first - max(on_old),
        "acked": len(acked),
        "acked_on_old": len(on_old),
        "lost": len(acked - present),
        "unacked_kept": len(set(writer.unsure) & present),
        "rejoin_s": back,
        "rewind": "running pg_rewind from" in log,
        "crash_recovery": "crash recovery in a single user mode" in log,
    }


def switchover_raw(cluster: BenchCluster) -> dict[str, Any]:
    """`POST /switchover` to the leader's own REST API, as `patronictl switchover` sends it."""
    leader = cluster.member(cluster.leader())
    candidate = cluster.other(leader)
    answer: dict[str, Any] = {}

    def ask() -> None:
        try:
            response = httpx.post(
                f"{leader.rest_url}/switchover",
                json={"leader": leader.name, "candidate": candidate.name},
                auth=cluster.auth,
                timeout=90,
            )
            if response.status_code != 200:
                answer["error"] = RuntimeError(f"POST /switchover: {response.status_code} {response.text.strip()}")
        except httpx.HTTPError as exc:  # raised in the caller's thread below
            answer["error"] = exc
        answer["at"] = time.perf_counter()

    started = time.perf_counter()
    asking = threading.Thread(target=ask, daemon=True)
    asking.start()
    written = first_write(cluster.conninfo(candidate, session="any"), interval=WRITE_INTERVAL)
    asking.join(120)
    if "error" in answer:
        raise answer["error"]
    return {"to": candidate.name, "seconds": written - started, "answered_s": answer["at"] - started}


def switchover_portal(cluster: BenchCluster, row: Any) -> dict[str, Any]:
    from hadr_portal.core.models import Operation
    from hadr_portal.databases.patroni_ops import switchover_request

    candidate = cluster.other(cluster.member(cluster.leader()))
    started = time.perf_counter()
    operation = switchover_request(cluster=row, actor=None, candidate=candidate.name)
    written = first_write(cluster.conninfo(candidate, session="any"), interval=WRITE_INTERVAL)
    wait_for(
        lambda: Operation.objects.filter(pk=operation.pk, status__in=Operation.ACTIVE).count() == 0,
        f"end of operation #{operation.pk}",
        120,
        0.01,
    )
    operation.refresh_from_db()
    if operation.status != Operation.Status.SUCCEEDED:
        raise RuntimeError(f"switchover operation #{operation.pk} ended {operation.status}: {operation.error}")
    return {
        "to": candidate.name,
        "seconds": written - started,
        "operation_writable_s": operation.result.get("seconds_to_writable"),
        "operation_s": (operation.finished_at - operation.created_at).total_seconds(),
    }


@contextlib.contextmanager
def catalog_entry(cluster: BenchCluster) -> Iterator[Any]:
    """The cluster as a temporary `patroni` cluster in the catalog, removed afterwards."""
    from hadr_portal.databases.models import Cluster
    from hadr_portal.databases.services import cluster_upsert

    Cluster.objects.filter(name__startswith=CATALOG_PREFIX).delete()
    row = cluster_upsert(
        name=f"{CATALOG_PREFIX}{uuid.uuid4().hex[:8]}",
        nodes={m.name: ("127.0.0.1", m.pg_port) for m in cluster.members},
        description="temporary: failover benchmark, Patroni engine",
        engine="patroni",
        patroni_urls=cluster.urls,
        patroni_user=cluster.keys.rest_user,
        patroni_password_env=REST_PASSWORD_ENV,
        synchronous_mode=True,
        dbname="postgres",
        user="postgres",
        password_env=SUPERUSER_ENV,
    )
    try:
        yield row
    finally:
        row.delete()  # its nodes go with it; the operations stay in the history


def bench_secrets(portal: bool) -> demo.Secrets:
    """The worker's REST credentials and superuser password when the portal takes part, else fresh ones."""
    names = (REST_USER_ENV, REST_PASSWORD_ENV, SUPERUSER_ENV)
    if portal:
        missing = [name for name in names if not os.environ.get(name)]
        if missing:
            raise SystemExit(f"{', '.join(missing)} not set: run through bench/run.py (it loads .run/env)")
        user, rest, superuser = (os.environ[name] for name in names)
    else:
        user, rest, superuser = "patroni", secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    return demo.Secrets(user, rest, superuser, secrets.token_urlsafe(18))


def patroni_bench(*, runs: int = RUNS, portal: bool = True) -> dict[str, Any]:
    """Start the cluster; `runs` unplanned failovers with synchronous_mode off and on (alternating), then `runs`
    planned switchovers raw and, when `portal`, through the portal; stop everything."""
    began = time.perf_counter()
    keys = bench_secrets(portal)
    leftovers_remove()
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped bench still cleans up
    cluster = BenchCluster(Path(tempfile.mkdtemp(prefix=DIR_PREFIX)), keys)
    try:
        cluster.start()
        started_s = time.perf_counter() - began
        config = cluster.api.config()
        unplanned = []
        for number in range(2 * runs):
            sync = number % 2 == 1
            cluster.sync_mode_set(sync)
            unplanned.append(unplanned_run(cluster, sync=sync, number=number + 1))
        raw: list[dict[str, Any]] = []
        ours: list[dict[str, Any]] = []
        with catalog_entry(cluster) if portal else contextlib.nullcontext() as row:
            for number in range(runs):
                # ABBA: each side once in each direction and in each place of the round (the leader alternates)
                order = ("raw", "portal", "portal", "raw") if number % 2 == 0 else ("portal", "raw", "raw", "portal")
                for side in order if row is not None else ("raw", "raw"):
                    wait_for(lambda: cluster.healthy(sync=True), "settled cluster", 120, 0.2)
                    if side == "raw":
                        raw.append(switchover_raw(cluster))
                    else:
                        ours.append(switchover_portal(cluster, row))
    finally:
        signal.signal(signal.SIGTERM, previous)
        cluster.stop()
    return {
        "versions": versions(),
        "members": [m.name for m in cluster.members],
        "config": config,
        "start_s": started_s,
        "unplanned": unplanned,
        "raw": raw,
        "portal": ours,
        "seconds": time.perf_counter() - began,
    }


def patroni_report(*, runs: int = RUNS, portal: bool = True) -> dict[str, Any]:
    """Run the benchmark and print its table; the figures."""
    print("failover, Patroni engine: a cluster of its own (etcd + 2 Patroni nodes), kills and switchovers...")
    r = patroni_bench(runs=runs, portal=portal)
    med = statistics.median
    c = r["config"]
    ttl, loop_wait, retry = c.get("ttl"), c.get("loop_wait"), c.get("retry_timeout")
    print(
        f"failover, Patroni engine ({r['versions']}, PostgreSQL 15, fsync on; cluster up in {r['start_s']:.1f} s;"
        f" {r['seconds']:.0f} s in all)"
    )
    print(
        f"  settings: ttl {ttl}, loop_wait {loop_wait}, retry_timeout {retry}, maximum_lag_on_failover"
        f" {c.get('maximum_lag_on_failover')}; use_pg_rewind, use_slots"
    )
    print(
        f"  why safe: loop_wait + 2 x retry_timeout = {loop_wait} + 2 x {retry} = {loop_wait + 2 * retry} <= ttl {ttl}:"
        " a leader that cannot renew its key demotes itself before the key expires, so two nodes never take writes"
    )
    print(
        f"  unplanned: a writer commits a row every {WRITE_INTERVAL * 1000:.0f} ms (target_session_attrs=read-write"
        f" over both nodes); after {WRITE_BEFORE_KILL:.0f} s, kill -9 of the leader's Patroni process group + postmaster"
    )
    print(
        f"  {'run':<4} {'sync':<5} {'kill->write':>11} {'last old->first new':>19} {'acked':>6} {'on old':>6}"
        f" {'lost':>5} {'unacked kept':>12} {'back as replica':>15} {'pg_rewind':>9}"
    )
    for i, u in enumerate(r["unplanned"], start=1):
        print(
            f"  {i:<4} {'on' if u['sync'] else 'off':<5} {u['seconds']:10.2f}s {u['last_old_to_first_new']:18.2f}s"
            f" {u['acked']:6d} {u['acked_on_old']:6d} {u['lost']:5d} {u['unacked_kept']:12d} {u['rejoin_s']:14.2f}s"
            f" {'yes' if u['rewind'] else 'no':>9}"
        )
    medians = {}
    for sync in (False, True):
        rows = [u for u in r["unplanned"] if u["sync"] is sync]
        worst = max(u["seconds"] for u in rows)
        medians[sync] = med(u["seconds"] for u in rows)
        print(
            f"  synchronous_mode {'on ' if sync else 'off'}: kill -> first write median {medians[sync]:.2f} s, max"
            f" {worst:.2f} s (goal <= {GOAL_UNPLANNED_S:.0f} s: {'met' if worst <= GOAL_UNPLANNED_S else 'MISSED'});"
            f" lost {sum(u['lost'] for u in rows)} of {sum(u['acked'] for u in rows)} acknowledged"
            + (" (goal 0: " + ("met)" if not sum(u["lost"] for u in rows) else "MISSED)") if sync else "")
        )
    print(f"  ratio on / off (median): {medians[True] / medians[False]:.2f}x")
    rejoin = [u["rejoin_s"] for u in r["unplanned"]]
    print(
        f"  old leader back as streaming replica after its Patroni restarted: median {med(rejoin):.2f} s, max"
        f" {max(rejoin):.2f} s; pg_rewind ran {sum(u['rewind'] for u in r['unplanned'])} of {len(rejoin)} times,"
        f" crash recovery in single-user mode {sum(u['crash_recovery'] for u in r['unplanned'])} of {len(rejoin)}"
    )
    print(
        "  planned switchover (synchronous_mode on): request -> the client's first committed write on the candidate;"
        f" {runs} rounds raw, portal, portal, raw (then portal, raw, raw, portal), the leader alternating"
    )
    raw, ours = r["raw"], r["portal"]
    first, second = r["members"]
    for label, rows in (("raw, POST /switchover to the leader's API", raw), ("portal, switchover_request", ours)):
        if not rows:
            print(f"  {label}: not run (--raw-only)")
            continue
        by = {name: [x["seconds"] for x in rows if x["to"] == name] for name in (second, first)}
        print(
            f"  {label:42} median {med(x['seconds'] for x in rows):.2f} s, max {max(x['seconds'] for x in rows):.2f} s;"
            f" to {second} (leader {first}, the first URL): {', '.join(f'{v:.2f}' for v in by[second])} s;"
            f" to {first}: {', '.join(f'{v:.2f}' for v in by[first])} s"
        )
    print(f"  raw: Patroni answered the POST after {med(x['answered_s'] for x in raw):.2f} s (median)")
    if ours:
        ratio = med(x["seconds"] for x in ours) / med(x["seconds"] for x in raw)
        print(
            f"  portal: operation seconds_to_writable median {med(x['operation_writable_s'] for x in ours):.2f} s,"
            f" created -> finished {med(x['operation_s'] for x in ours):.2f} s"
        )
        print(
            f"  ratio portal / raw (median) {ratio:.2f}x (goal <= {GOAL_PLANNED_RATIO}x:"
            f" {'met' if ratio <= GOAL_PLANNED_RATIO else 'MISSED'})"
        )
    return r


if __name__ == "__main__":  # pragma: no cover - a manual entry point; `make bench BENCH=failover` is the usual one
    raw_only = "--raw-only" in sys.argv
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hadr_portal.settings")
    os.environ["HADR_LOG_LEVEL"] = "WARNING"
    if not raw_only:
        from bench.run import load_env

        load_env()
        import django

        django.setup()
    numbers = [int(arg) for arg in sys.argv[1:] if arg.isdigit()]
    patroni_report(runs=numbers[0] if numbers else RUNS, portal=not raw_only)
