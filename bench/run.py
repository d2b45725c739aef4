"""Benchmarks against the running local environment (`make up` first).

operation_overhead
    A connectivity check of the demo cluster as an operation — request (permission check,
    Operation + audit rows), Redis, the `ops` worker's claim, heartbeat thread, probes of both
    nodes, log lines, final state — from request to `succeeded`, against the same probes made
    directly with stock `psql` in the same run. The ratio is what the operation machinery costs.
"""

from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def load_env() -> None:
    env_file = ROOT / ".run" / "env"
    if not env_file.exists():
        raise SystemExit("No .run/env: start the local environment with `make up` first.")
    for line in env_file.read_text().splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            os.environ[name] = shlex.split(value)[0] if value else ""


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def bench_operation_overhead(rounds: int = 30) -> dict[str, float]:
    from hadr_portal.core.models import Operation
    from hadr_portal.databases.models import Cluster
    from hadr_portal.databases.services import connectivity_check_request

    cluster = Cluster.objects.get(name="demo")
    ours: list[float] = []
    for _ in range(rounds):
        started = time.perf_counter()
        operation = connectivity_check_request(cluster=cluster, actor=None)
        while True:
            status = Operation.objects.values_list("status", flat=True).get(pk=operation.pk)
            if status not in ("queued", "running"):
                break
            time.sleep(0.002)
        if status != "succeeded":
            raise SystemExit(f"operation #{operation.pk} ended {status}")
        ours.append(time.perf_counter() - started)

    stock: list[float] = []
    nodes = list(cluster.nodes.all())
    for _ in range(rounds):
        started = time.perf_counter()
        for node in nodes:
            subprocess.run(
                [
                    "psql",
                    "-X",
                    "-At",
                    "-d",
                    node.address().conninfo(),
                    "-c",
                    "SELECT pg_is_in_recovery(), current_setting('server_version'), pg_current_wal_lsn()"
                    " WHERE NOT pg_is_in_recovery() UNION ALL SELECT true, '', pg_last_wal_replay_lsn()",
                ],
                check=True,
                capture_output=True,
            )
        stock.append(time.perf_counter() - started)
    return {
        "ours_p50_ms": statistics.median(ours) * 1000,
        "ours_p95_ms": percentile(ours, 95) * 1000,
        "psql_p50_ms": statistics.median(stock) * 1000,
        "psql_p95_ms": percentile(stock, 95) * 1000,
        "ratio_p50": statistics.median(ours) / statistics.median(stock),
    }


def report_operation_overhead() -> None:
    result = bench_operation_overhead()
    print("operation_overhead (connectivity check of primary + replica, 30 rounds)")
    print(
        f"  as an operation (request -> succeeded): p50 {result['ours_p50_ms']:.1f} ms, p95 {result['ours_p95_ms']:.1f} ms"
    )
    print(
        f"  stock psql, one query per node:         p50 {result['psql_p50_ms']:.1f} ms, p95 {result['psql_p95_ms']:.1f} ms"
    )
    print(f"  ratio (p50): {result['ratio_p50']:.2f}x")


def report_checks_round() -> None:
    from bench.status_bench import checks_round

    r = checks_round()
    print(f"checks_round ({r['checks']} HTTP checks, {r['hanging']} hanging, timeout {r['timeout']:.0f} s)")
    print(
        f"  engine (one process):      {r['ours_s']:.2f} s  (goal <= timeout + 2 s = {r['timeout'] + 2:.0f} s); down: {r['down']}"
    )
    print(f"  stock curl, xargs -P 100:  {r['curl_s']:.2f} s")
    print(f"  ratio: {r['ours_s'] / r['curl_s']:.2f}x")


def report_dashboard_load() -> None:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    from bench.status_bench import dashboard_cleanup, dashboard_seed, wrk_latency

    print("dashboard_load: seeding 200 services with 30 days of history...", flush=True)
    started = time.perf_counter()
    dashboard_seed()
    print(f"  seeded in {time.perf_counter() - started:.0f} s")
    user, _ = get_user_model().objects.get_or_create(username="bench-viewer")
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.create()
    cookie = f"{settings.SESSION_COOKIE_NAME}={session.session_key}"
    base = os.environ["HADR_PORTAL_URL"]
    try:
        trivial = wrk_latency(f"{base}/roles/", cookie)
        board = wrk_latency(f"{base}/", cookie)
    finally:
        dashboard_cleanup()
        session.delete()
    print("  20 concurrent users, 15 s each, gunicorn 2 workers x 4 threads")
    print(
        f"  trivial view (/roles/): p50 {trivial['p50']:.1f} ms  p95 {trivial['p95']:.1f} ms  {trivial['rps']:.0f} req/s"
    )
    print(f"  dashboard (/):          p50 {board['p50']:.1f} ms  p95 {board['p95']:.1f} ms  {board['rps']:.0f} req/s")
    print(f"  ratio (p95): {board['p95'] / trivial['p95']:.2f}x  (goal <= 3x and <= 150 ms)")


def report_backups() -> None:
    from bench.backup_bench import BIG_DB, BIG_ROWS, SMALL_DB, backups_bench

    print("backups: preparing (data is generated once, then reused)...", flush=True)
    r = backups_bench()
    print(
        f"backups (our backup operation in a worker-like child process vs stock tools, same run, "
        f"median of {r['rounds']} runs each)"
    )
    print(
        f"  data: {BIG_DB} {r['big'] / 1e6:.0f} MB ({BIG_ROWS:,} events rows), {SMALL_DB} {r['small'] / 1e6:.0f} MB; "
        f"whole cluster {r['cluster'] / 1e6:.0f} MB. MB/s = that size / seconds; out = bytes written."
    )
    print(
        "  ours: request -> claim -> pre-checks -> stream + SHA-256 -> re-read verification -> manifest -> good, "
        "timed inside the child (not its start-up); every run after a sync, ours and stock alternating."
    )
    print(
        f"    {'':46} {'s':>7} {'MB/s':>7} {'out MB':>8} {'out MB/s':>8}  {'ours/stock':<16} {'peak RSS MB (base)':>18}"
    )

    def row(label: str, seconds: float, size: int, out: float | None = None, ratio: str = "", rss: str = "") -> None:
        out_mb = f"{out / 1e6:8.1f} {out / 1e6 / seconds:8.1f}" if out else f"{'':8} {'':8}"
        print(f"    {label:46} {seconds:7.2f} {size / 1e6 / seconds:7.1f} {out_mb}  {ratio:<16} {rss:>18}")

    def pair(title: str, key: str, size: int, stock_label: str, goal: float | None = 1.10) -> None:
        ours, stock = r[key]["ours"], r[key]["stock"]
        print(f"  {title}")

        def ratio(seconds: float) -> str:
            value = seconds / stock["seconds"]
            verdict = "" if goal is None else (f" <= {goal:.2f} ok" if value <= goal else f" > {goal:.2f} MISS")
            return f"{value:.2f}x{verdict}"

        rss = f"{ours['peak_rss_mb']:.0f} ({ours['baseline_rss_mb']:.0f})"
        row("ours: operation, re-read verified", ours["seconds"], size, ours["size"], ratio(ours["seconds"]), rss)
        if ours.get("verify_seconds") is not None:
            without = ours["seconds"] - ours["verify_seconds"]
            row(f"ours without the re-read ({ours['verify_seconds']:.2f} s)", without, size, None, ratio(without))
        row(stock_label, stock["seconds"], size, stock["size"])

    pair(f"logical -> local, {BIG_DB}", "logical_local", r["big"], "stock: pg_dump -Fc -f FILE")
    pair(f"logical -> S3 (moto server), {BIG_DB}", "logical_s3", r["big"], "stock: pg_dump -Fc | boto3 upload_fileobj")
    pair("physical -> local, tar, uncompressed", "physical", r["cluster"], "stock: pg_basebackup -D DIR -Ft -X fetch")
    pair("physical -> local, tar, client lz4", "physical_lz4", r["cluster"], "stock: same with --compress=lz4")
    print(f"    server-lz4: {r['server_lz4']} (refused by the adapter: no row)")
    if "pgbackrest" in r:
        peer = r["pgbackrest"]
        vs = r["physical_lz4"]["ours"]["seconds"] / peer["seconds"]
        print(f"  reference peer: {r['pgbackrest_version']}, full backup of the same cluster (archive-check=n)")
        row(
            "pgbackrest backup --type=full (lz4, 2 procs)",
            peer["seconds"],
            r["cluster"],
            peer["size"],
            f"ours lz4/it {vs:.2f}x",
        )
    else:
        print("  reference peer: pgbackrest not installed (apt-get install pgbackrest): skipped")
    pair(f"small database: logical -> local, {SMALL_DB}", "logical_local_small", r["small"], "stock: pg_dump -Fc", None)
    pair(f"small database: logical -> S3, {SMALL_DB}", "logical_s3_small", r["small"], "stock: pg_dump | boto3", None)
    print("  peak RSS of our backup process (baseline after Django setup), small -> big database:")
    for label, small_key, big_key in (
        ("logical -> local", "logical_local_small", "logical_local"),
        ("logical -> S3", "logical_s3_small", "logical_s3"),
    ):
        small, big = r[small_key]["ours"], r[big_key]["ours"]
        print(
            f"    {label:18} {small['peak_rss_mb']:.0f} MB ({r['small'] / 1e6:.0f} MB db) -> "
            f"{big['peak_rss_mb']:.0f} MB ({r['big'] / 1e6:.0f} MB db): "
            f"{round(big['peak_rss_mb'] - small['peak_rss_mb']):+d} MB for {r['big'] / r['small']:.0f}x the data"
        )


BENCHMARKS = {
    "operation": report_operation_overhead,
    "checks": report_checks_round,
    "dashboard": report_dashboard_load,
    "backups": report_backups,
}


def main() -> None:
    load_env()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hadr_portal.settings")
    os.environ["HADR_LOG_LEVEL"] = "WARNING"
    import django

    django.setup()
    chosen = sys.argv[1:] or list(BENCHMARKS)
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    for name in chosen:
        BENCHMARKS[name]()


if __name__ == "__main__":
    main()
