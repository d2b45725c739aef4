"""`make up / status / down` for real, in a scratch run directory on free ports."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import COMMAND_USER, wait_for
from tests.infra.plugin import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def run_env() -> Iterator[dict[str, str]]:
    run_dir = Path(tempfile.mkdtemp(prefix="hadr-localenv-"))
    os.chmod(run_dir, 0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HADR_", "DJANGO_"))}
    env["HADR_RUN_DIR"] = str(run_dir)
    for name in (
        "HADR_PORT",
        "HADR_PORTAL_DB_PORT",
        "HADR_DEMO_PRIMARY_PORT",
        "HADR_DEMO_REPLICA_PORT",
        "HADR_REDIS_PORT",
        "HADR_DEMO_APP_PORT",
    ):
        env[name] = str(free_port())
    yield env
    localenv(env, "down")
    shutil.rmtree(run_dir, ignore_errors=True)


def localenv(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "localenv.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def pids(run_dir: Path) -> dict[str, int]:
    """Every pid file: .run/pids/, and .run/demo-app/ (the demo application's, owned by the command user)."""
    files = [*(run_dir / "pids").glob("*.pid"), *(run_dir / "demo-app").glob("*.pid")]
    return {p.stem: int(p.read_text()) for p in files}


def env_file(run_dir: Path) -> dict[str, str]:
    """The variables `up` wrote to .run/env (`export NAME='value'` lines)."""
    lines = (run_dir / "env").read_text().splitlines()
    return dict(line.removeprefix("export ").replace("'", "").split("=", 1) for line in lines if "=" in line)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_up_is_idempotent_and_down_leaves_nothing_behind(run_env):
    run_dir = Path(run_env["HADR_RUN_DIR"])
    first = localenv(run_env, "up")
    assert first.returncode == 0, first.stderr + first.stdout
    assert f"http://127.0.0.1:{run_env['HADR_PORT']}" in first.stdout
    password = (run_dir / "admin-password").read_text().strip()
    assert f"admin / {password}" in first.stdout
    for private in ("admin-password", "env"):
        assert stat.S_IMODE((run_dir / private).stat().st_mode) == 0o600
    env_file = (run_dir / "env").read_text()
    assert f"HADR_REDIS_URL='redis://127.0.0.1:{run_env['HADR_REDIS_PORT']}/0'" in env_file
    with urllib.request.urlopen(f"http://127.0.0.1:{run_env['HADR_PORT']}/login/") as response:
        assert response.status == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{run_env['HADR_DEMO_APP_PORT']}/") as response:
        assert response.status == 200

    started = pids(run_dir)
    assert set(started) == {"demo-app", "worker-checks", "worker-ops", "worker-default", "beat", "web"}
    again = localenv(run_env, "up")
    assert again.returncode == 0, again.stderr
    assert pids(run_dir) == started, "a second `up` must leave running processes alone"
    assert localenv(run_env, "status").returncode == 0

    down = localenv(run_env, "down")
    assert down.returncode == 0, down.stderr
    assert not [name for name, pid in started.items() if alive(pid)]
    ports = [int(run_env[name]) for name in run_env if name.endswith("_PORT") or name == "HADR_PORT"]
    assert not [port for port in ports if listening(port)]
    assert localenv(run_env, "status").returncode == 3


def test_a_taken_port_is_named_and_nothing_is_left_running(run_env):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", int(run_env["HADR_REDIS_PORT"])))
        blocker.listen()
        result = localenv(run_env, "up")
    assert result.returncode == 1
    assert f"Port {run_env['HADR_REDIS_PORT']} (HADR_REDIS_PORT) is already in use" in result.stderr
    assert not listening(int(run_env["HADR_PORTAL_DB_PORT"]))


def test_a_bad_port_setting_is_refused_with_its_name(run_env):
    run_env["HADR_PORT"] = "eighty"
    result = localenv(run_env, "up")
    assert result.returncode == 1
    assert "HADR_PORT='eighty' is not a port number" in result.stderr


def test_a_missing_postgresql_is_named_with_the_fix(run_env):
    run_env["HADR_PG_BIN"] = "/nonexistent/bin"
    result = localenv(run_env, "up")
    assert result.returncode == 1
    assert "Missing programs: /nonexistent/bin/initdb" in result.stderr
    assert "make install" in result.stderr


def test_an_interrupted_replica_clone_is_redone(run_env):
    run_dir = Path(run_env["HADR_RUN_DIR"])
    assert localenv(run_env, "up").returncode == 0
    assert localenv(run_env, "down").returncode == 0
    (run_dir / "pg" / "demo-replica.cloned").unlink()  # as if pg_basebackup had been interrupted
    result = localenv(run_env, "up")
    assert result.returncode == 0, result.stderr
    assert "cloning the demo replica" in result.stdout
    assert localenv(run_env, "status").returncode == 0


def test_restart_brings_back_a_killed_demo_app_through_the_demo_catalogs_controller(run_env):
    """What the Restart button of the demo's onboarding application runs: as the command user, given no variable."""
    from hadr_portal.adapters.controllers import controller_from_config
    from hadr_portal.status.demo import demo_catalog

    run_dir = Path(run_env["HADR_RUN_DIR"])
    assert localenv(run_env, "up").returncode == 0
    catalog = demo_catalog(env_file(run_dir))  # as `make up` seeded it
    app = next(service for service in catalog["services"] if service["name"] == "onboarding-app")
    assert "env" not in app["restart"]
    controller = controller_from_config(app["restart"], command_user=COMMAND_USER)
    home = f"http://127.0.0.1:{run_env['HADR_DEMO_APP_PORT']}/"
    pid = pids(run_dir)["demo-app"]
    if os.geteuid() == 0:  # started by root as the command user, whose restart command can then stop it
        assert Path(f"/proc/{pid}").stat().st_uid == pwd.getpwnam(COMMAND_USER).pw_uid
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not listening(int(run_env["HADR_DEMO_APP_PORT"])), timeout=5, message="still listening")

    again = controller.restart(service="onboarding-app", environ={})
    restarted = pids(run_dir)["demo-app"]
    assert "stopped" not in again.output  # killed: nothing left to stop
    assert f"started demo-app (pid {restarted})" in again.output and "is back after" in again.output
    assert restarted != pid and alive(restarted)
    with urllib.request.urlopen(home) as response:
        assert response.status == 200
    assert "stopped demo-app" in controller.restart(service="onboarding-app", environ={}).output
    assert localenv(run_env, "status").returncode == 0
