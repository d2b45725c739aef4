"""Status benchmarks (run by bench/run.py against the local environment).

checks_round
    500 HTTP checks against local targets, 10 % of them hanging past the timeout, run by the
    engine in one process; against the same 500 URLs fetched by stock `curl` (`xargs -P 100`,
    same timeout). Goal: the round ends within timeout + 2 s.

dashboard_load
    The dashboard with 200 services (one HTTP check each) and 30 days of history at 30 s
    intervals (raw results for HADR_CHECK_RESULTS_DAYS, hourly rollups for 30 days), under 20
    concurrent users (wrk), side by side with the Roles page (a trivial authenticated view).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH_PREFIX = "bench-"


def _target_server(hang_seconds: float) -> tuple[subprocess.Popen[str], str]:
    """The targets run in their own process, as real services would: not sharing our GIL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.targets", str(hang_seconds)],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    base = process.stdout.readline().strip()
    return process, base


def checks_round(*, count: int = 500, hanging_share: float = 0.1, timeout: float = 3.0) -> dict[str, float]:
    from hadr_portal.status import engine
    from hadr_portal.status.models import Check, Service

    server, base = _target_server(hang_seconds=timeout + 5)
    hanging = int(count * hanging_share)
    urls = [f"{base}/hang/{i}" if i % (count // hanging) == 0 else f"{base}/ok/{i}" for i in range(count)]
    Service.objects.filter(name__startswith=BENCH_PREFIX).delete()
    service = Service.objects.create(name=f"{BENCH_PREFIX}checks", display_name="Benchmark checks", kind="web", tier=4)
    checks = Check.objects.bulk_create(
        Check(
            service=service,
            name=f"c{i}",
            kind="http",
            config={"url": url},
            timeout_seconds=timeout,
            interval_seconds=3600,
            enabled=False,  # the running environment's own engine must not probe them as well
        )
        for i, url in enumerate(urls)
    )
    try:
        started = time.perf_counter()
        engine.checks_run([c.pk for c in checks])
        ours = time.perf_counter() - started
        if not shutil.which("curl"):
            raise SystemExit("curl is needed for the comparison: apt-get install curl")
        started = time.perf_counter()
        subprocess.run(
            ["xargs", "-P", "100", "-n", "1", "curl", "-s", "-o", "/dev/null", "-m", str(timeout)],
            input="\n".join(urls),
            text=True,
            check=False,
        )
        curl = time.perf_counter() - started
        down = Check.objects.filter(service=service, last_outcome="down").count()
    finally:
        service.delete()
        server.terminate()
        server.wait(timeout=10)
    return {"checks": count, "hanging": hanging, "timeout": timeout, "ours_s": ours, "curl_s": curl, "down": down}


SEED_HISTORY = """
INSERT INTO status_checkresult (health_check_id, at, outcome, latency_ms, message, data)
SELECT c.id, now() - (n * interval '30 seconds'),
       CASE WHEN random() < 0.002 THEN 'down' ELSE 'up' END, 5 + random() * 20, 'bench', '{}'::jsonb
FROM status_check c
JOIN status_service s ON s.id = c.service_id AND s.name LIKE 'bench-%%'
CROSS JOIN generate_series(1, %s) AS n
"""
SEED_ROLLUPS = """
INSERT INTO status_checkrollup (health_check_id, hour, total, up, degraded, down, latency_avg_ms, latency_max_ms)
SELECT c.id, date_trunc('hour', now()) - (h * interval '1 hour'), 120, 120 - (h % 50 = 0)::int, 0, (h % 50 = 0)::int, 12, 40
FROM status_check c
JOIN status_service s ON s.id = c.service_id AND s.name LIKE 'bench-%'
CROSS JOIN generate_series(0, 30 * 24 - 1) AS h
ON CONFLICT DO NOTHING
"""


def dashboard_seed(*, services: int = 200) -> None:
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from hadr_portal.status.models import Check, Service

    Service.objects.filter(name__startswith=BENCH_PREFIX).delete()
    created = Service.objects.bulk_create(
        Service(name=f"{BENCH_PREFIX}{i:03}", display_name=f"Bench service {i}", kind="web", tier=1 + i % 4, state="up")
        for i in range(services)
    )
    Check.objects.bulk_create(
        Check(
            service=s,
            name="http",
            kind="http",
            config={"url": "http://127.0.0.1:1/"},
            enabled=False,
            state="up",
            last_result_at=timezone.now(),
            last_outcome="up",
            last_latency_ms=10,
        )
        for s in created
    )
    raw_points = settings.CHECK_RESULTS_DAYS * 24 * 120
    with connection.cursor() as cursor:
        cursor.execute(SEED_HISTORY, [raw_points])
        cursor.execute(SEED_ROLLUPS)
        cursor.execute("ANALYZE status_checkresult; ANALYZE status_checkrollup")


def dashboard_cleanup() -> None:
    from hadr_portal.status.models import Service

    Service.objects.filter(name__startswith=BENCH_PREFIX).delete()


def wrk_latency(url: str, cookie: str, *, connections: int = 20, seconds: int = 15) -> dict[str, float]:
    """p50/p95/p99 in ms and requests/s under `connections` concurrent users (wrk + bench/percentiles.lua)."""
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed for the load benchmark: apt-get install wrk")
    script = str(Path(__file__).with_name("percentiles.lua"))
    out = subprocess.run(
        ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "-s", script, "-H", f"Cookie: {cookie}", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"HADR p50=(\d+) p95=(\d+) p99=(\d+) requests=(\d+) errors=(\d+) seconds=([\d.]+)", out)
    if not match:
        raise SystemExit(f"could not read wrk's output:\n{out}")
    p50, p95, p99, requests, errors = (int(g) for g in match.groups()[:5])
    if errors:
        raise SystemExit(f"{url} answered {errors} errors under load:\n{out}")
    return {"p50": p50 / 1000, "p95": p95 / 1000, "p99": p99 / 1000, "rps": requests / float(match.group(6))}
