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
    import django

    django.setup()
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


def main() -> None:
    load_env()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hadr_portal.settings")
    os.environ["HADR_LOG_LEVEL"] = "WARNING"
    result = bench_operation_overhead()
    print("operation_overhead (connectivity check of primary + replica, 30 rounds)")
    print(
        f"  as an operation (request -> succeeded): p50 {result['ours_p50_ms']:.1f} ms, p95 {result['ours_p95_ms']:.1f} ms"
    )
    print(
        f"  stock psql, one query per node:         p50 {result['psql_p50_ms']:.1f} ms, p95 {result['psql_p95_ms']:.1f} ms"
    )
    print(f"  ratio (p50): {result['ratio_p50']:.2f}x")


if __name__ == "__main__":
    main()
