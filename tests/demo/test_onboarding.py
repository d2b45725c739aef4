"""The demo onboarding application against the real primary + replica."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.infra.plugin import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def start_app(dsn: str, port: int, rate: str = "20") -> subprocess.Popen[bytes]:
    env = {**os.environ, "ONBOARDING_DSN": dsn, "ONBOARDING_PORT": str(port), "ONBOARDING_RATE": rate}
    return subprocess.Popen(
        [sys.executable, "-m", "demo.onboarding"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_records_funnel_events_on_the_primary_through_a_multi_host_dsn(infra):
    port = free_port()
    # The replica is listed first: target_session_attrs=read-write must still pick the primary.
    dsn = (
        f"host=127.0.0.1,127.0.0.1 port={infra.replica.port},{infra.primary.port} dbname=onboarding "
        f"user=postgres password={infra.demo_password} target_session_attrs=read-write connect_timeout=3"
    )
    app = start_app(dsn, port)
    try:
        wait_for(lambda: _answers(port) and get(f"http://127.0.0.1:{port}/health")[0] == 200, timeout=20)
        status, health = get(f"http://127.0.0.1:{port}/health")
        assert health["database"]["port"] == infra.primary.port
        first = health["events_written"]
        time.sleep(1.5)
        assert get(f"http://127.0.0.1:{port}/health")[1]["events_written"] > first
        status, stats = get(f"http://127.0.0.1:{port}/stats")
        assert status == 200
        assert "signed_up" in json.dumps(stats)
        rows = infra.primary.psql(
            "SELECT count(*) FROM onboarding_events WHERE step = 'signed_up'", dbname="onboarding"
        )
        assert int(rows) > 0
    finally:
        app.send_signal(signal.SIGTERM)
        assert app.wait(timeout=10) == 0


def test_reports_503_while_the_database_is_unreachable_and_stays_up():
    port = free_port()
    app = start_app(f"host=127.0.0.1 port={free_port()} dbname=x user=x connect_timeout=1", port)
    try:
        wait_for(lambda: _answers(port), timeout=20)
        status, health = get(f"http://127.0.0.1:{port}/health")
        assert status == 503
        assert health["status"] == "degraded" and health["error"]
        assert app.poll() is None
    finally:
        app.send_signal(signal.SIGTERM)
        assert app.wait(timeout=10) == 0


def _answers(port: int) -> bool:
    try:
        get(f"http://127.0.0.1:{port}/health")
    except (urllib.error.URLError, ConnectionError):
        return False
    return True


def test_missing_dsn_exits_with_the_variables_name():
    env = {k: v for k, v in os.environ.items() if k != "ONBOARDING_DSN"}
    result = subprocess.run(
        [sys.executable, "-m", "demo.onboarding"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 2
    assert "ONBOARDING_DSN" in result.stderr
