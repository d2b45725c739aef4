"""`make up / status / down` for real, in scratch run directories on free ports.

A full `up` costs half a minute, so the tests that look at a running environment share one (`running`: each
leaves it running, or finds it brought back); what is decided in one step of `up` (the servers, the replica's
clone) is tested on that step alone, through scripts/localenv.py's functions in this process.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from hadr_portal.adapters.commands import as_postgres_user, run_command
from hadr_portal.adapters.pg.server import LocalInstance
from hadr_portal.demo.cluster import LOCAL_ROLES
from scripts import localenv as local_environment
from tests.conftest import COMMAND_USER, wait_for
from tests.infra.plugin import free_port, scratch_dir

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("localenv")]  # one worker shares the one `up`
ROOT = Path(__file__).resolve().parent.parent
PORT_VARIABLES = (
    "HADR_PORT",
    "HADR_PORTAL_DB_PORT",
    "HADR_DEMO_PRIMARY_PORT",
    "HADR_DEMO_REPLICA_PORT",
    "HADR_REDIS_PORT",
    "HADR_DEMO_APP_PORT",
    "HADR_DEMO_HA1_PORT",
    "HADR_DEMO_HA2_PORT",
    "HADR_PATRONI1_PORT",
    "HADR_PATRONI2_PORT",
    "HADR_ETCD_PORT",
    "HADR_ETCD_PEER_PORT",
)
PROCESS_NAMES = {
    *("demo-app", "worker-checks", "worker-ops", "worker-default", "beat", "web"),
    *("etcd", "patroni-ha1", "patroni-ha2"),
}


def scratch_run_env() -> dict[str, str]:
    """The environment of a `localenv.py` run in a new run directory, on free ports, without the test's settings."""
    run_dir = scratch_dir("hadr-localenv-")
    os.chmod(run_dir, 0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HADR_", "DJANGO_"))}
    env["HADR_RUN_DIR"] = str(run_dir)
    env.update({name: str(free_port()) for name in PORT_VARIABLES})
    return env


def scratch_run_env_remove(env: dict[str, str]) -> None:
    localenv(env, "down")
    shutil.rmtree(env["HADR_RUN_DIR"], ignore_errors=True)


@pytest.fixture
def run_env() -> Iterator[dict[str, str]]:
    env = scratch_run_env()
    yield env
    scratch_run_env_remove(env)


@dataclass
class Running:
    env: dict[str, str]
    up: subprocess.CompletedProcess[str]  # the `up` that started what runs

    @property
    def run_dir(self) -> Path:
        return Path(self.env["HADR_RUN_DIR"])


@pytest.fixture(scope="module")
def environment() -> Iterator[Running]:
    env = scratch_run_env()
    yield Running(env, localenv(env, "up"))
    scratch_run_env_remove(env)


@pytest.fixture
def running(environment: Running) -> Running:
    """The module's environment, every process of it running: started again if a test before stopped it."""
    started = pids(environment.run_dir)
    if set(started) != PROCESS_NAMES or not all(alive(pid) for pid in started.values()):
        environment.up = localenv(environment.env, "up")
    assert environment.up.returncode == 0, environment.up.stderr + environment.up.stdout
    return environment


@pytest.fixture
def in_process() -> Iterator[Callable[[Path], local_environment.Environment]]:
    """scripts/localenv.py in this process: `in_process(run_dir)` points it at that run directory (as --run-dir
    does) and gives its Environment on free ports. Its servers are stopped and its directories removed after."""
    made: list[tuple[Path, local_environment.Environment]] = []
    before = local_environment.RUN

    def make(run_dir: Path) -> local_environment.Environment:
        run_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(run_dir, 0o711)  # as `up` leaves it
        local_environment.use_run_dir(run_dir)
        ports = local_environment.Ports(*(free_port() for _ in PORT_VARIABLES))
        made.append((run_dir, local_environment.Environment(ports)))
        return made[-1][1]

    yield make
    for run_dir, _ in made:
        local_environment.use_run_dir(run_dir)
        for data in (run_dir / "pg", local_environment.server_home() / "pg"):  # the link may be gone with run_dir
            for name in ("demo-replica", "demo-primary", "portal"):
                LocalInstance(data / name, 0).stop(mode="immediate")
        shutil.rmtree(local_environment.server_home(), ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)
    local_environment.use_run_dir(before)


def postgres_may_enter(path: Path) -> bool:
    return run_command(as_postgres_user(["test", "-x", str(path)]), check=False).returncode == 0


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


def test_up_starts_everything_and_a_second_up_leaves_it_alone(running):
    run_env, run_dir = running.env, running.run_dir
    assert f"http://127.0.0.1:{run_env['HADR_PORT']}" in running.up.stdout
    password = (run_dir / "admin-password").read_text().strip()
    assert f"admin / {password}" in running.up.stdout
    for private in ("admin-password", "env"):
        assert stat.S_IMODE((run_dir / private).stat().st_mode) == 0o600
    env_file = (run_dir / "env").read_text()
    assert f"HADR_REDIS_URL='redis://127.0.0.1:{run_env['HADR_REDIS_PORT']}/0'" in env_file
    with urllib.request.urlopen(f"http://127.0.0.1:{run_env['HADR_PORT']}/login/") as response:
        assert response.status == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{run_env['HADR_DEMO_APP_PORT']}/") as response:
        assert response.status == 200

    started = pids(run_dir)
    again = localenv(run_env, "up")
    assert again.returncode == 0, again.stderr
    assert pids(run_dir) == started, "a second `up` must leave running processes alone"
    status = localenv(run_env, "status")
    assert status.returncode == 0


def test_up_starts_the_patroni_cluster_and_the_write_probe_on_both_clusters(running):
    run_env, run_dir = running.env, running.run_dir
    assert re.search(r"demo-ha: ha[12] leads, 1 streaming replica", running.up.stdout)
    status = localenv(run_env, "status").stdout
    assert re.search(
        r"patroni-ha1\s+running\s+127\.0\.0\.1:\d+, REST http://127\.0\.0\.1:\d+\s+\((leader|sync_standby)", status
    )
    assert re.search(r"etcd\s+running", status)
    variables = env_file(run_dir)
    urls = variables["HADR_DEMO_HA_PATRONI_URLS"].split(",")
    auth = (variables["HADR_PATRONI_REST_USER"], variables["HADR_PATRONI_REST_PASSWORD"])
    view = httpx.get(f"{urls[0]}/cluster", auth=auth, timeout=5).json()
    assert {m["name"] for m in view["members"]} == {"ha1", "ha2"}
    # changing anything needs the credentials (reading does not)
    assert httpx.patch(f"{urls[0]}/config", json={}, timeout=5).status_code == 401
    port = run_env["HADR_DEMO_HA1_PORT"]
    password = variables["HADR_DEMO_PROBE_PASSWORD"]
    dsn = f"host=127.0.0.1 port={port} dbname=postgres user=hadr_probe password={password}"
    with psycopg.connect(dsn) as conn:  # the probe's table, replicated to every member, and its role may read it
        assert conn.execute("SELECT count(*) >= 0 FROM hadr_probe.writes").fetchone() == (True,)


def test_make_up_creates_the_roles_with_their_own_passwords(running):
    run_env, run_dir = running.env, running.run_dir
    env_file = (run_dir / "env").read_text()
    assert "export HADR_DSN_PORTAL='postgres://postgres:" in env_file
    port = run_env["HADR_DEMO_PRIMARY_PORT"]
    for role in LOCAL_ROLES:
        secret = run_dir / "secrets" / f"db-role-{role.name}"
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        password = secret.read_text().strip()
        assert f"export {role.password_variable}='{password}'" in env_file
        dsn = f"host=127.0.0.1 port={port} dbname=onboarding user={role.name} password={password}"
        with psycopg.connect(dsn) as conn:
            superuser, replication = conn.execute(
                "SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
            granted = {
                name
                for (name,) in conn.execute(
                    "SELECT b.rolname FROM pg_auth_members m JOIN pg_roles b"
                    " ON b.oid = m.roleid JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = current_user"
                )
            }
        # no role replicates: physical backups are pgBackRest's, as the data's owner
        assert not superuser and replication == (role.attributes == "REPLICATION") and granted == set(role.grants)
    reader = (run_dir / "secrets" / "db-role-hadr_reader").read_text().strip()
    replica = f"host=127.0.0.1 port={run_env['HADR_DEMO_REPLICA_PORT']} dbname=onboarding user=hadr_reader"
    with psycopg.connect(f"{replica} password={reader}") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT pg_promote()")


def test_up_archives_the_demo_clusters_wal_through_pgbackrest(running):
    """`up` writes the demo stanza, points the primary's archive_command at it and checks that a WAL switch
    arrives; `status` says what `pgbackrest info` says."""
    run_env, run_dir = running.env, running.run_dir
    variables = env_file(run_dir)
    home = Path(variables["HADR_PGBACKREST_DIR"]) / "demo"
    assert home == (run_dir / "pgbackrest").resolve() / "demo" and (home / "pgbackrest.conf").is_file()
    assert f"repo1-path={Path(variables['HADR_BACKUP_DIR']) / 'pgbackrest'}" in (home / "pgbackrest.conf").read_text()
    password = (run_dir / "secrets" / "demo-password").read_text().strip()
    dsn = f"host=127.0.0.1 port={run_env['HADR_DEMO_PRIMARY_PORT']} dbname=postgres user=postgres password={password}"
    with psycopg.connect(dsn) as conn:
        mode, command, timeout = (
            conn.execute(f"SHOW {name}").fetchone()[0]
            for name in ("archive_mode", "archive_command", "archive_timeout")
        )
        archived, failed = conn.execute("SELECT archived_count, failed_count FROM pg_stat_archiver").fetchone()
    assert (mode, timeout) == ("on", "10s") and "pgbackrest" in command and f"--config={home}" in command
    assert archived > 0 and failed == 0  # pgBackRest's check switched a segment and saw it arrive
    status = localenv(run_env, "status")
    assert "stanza demo" in next(line for line in status.stdout.splitlines() if "pgbackrest" in line)


def test_a_running_demo_node_without_archive_mode_is_restarted_with_it(in_process, capsys):
    """A node started by an earlier version (archive_mode off): archive_mode changes only at a restart."""
    env = in_process(scratch_dir("hadr-localenv-"))
    local_environment.demo_cluster_up(env, [])
    before = LocalInstance(env.primary.data_dir, env.primary.port, env.primary.superuser_password, archive_mode=False)
    before.write_settings()
    before.stop()
    before.start()
    assert env.primary.psql("SHOW archive_mode") == "off"
    capsys.readouterr()

    local_environment.ensure_pg(env.primary, "demo primary", [], peer=env.replica)
    assert "restarting demo primary: archive_mode = on" in capsys.readouterr().out
    assert env.primary.psql("SHOW archive_mode") == "on"
    assert env.primary.psql("SHOW unix_socket_directories") == str(env.primary.socket_directory)
    local_environment.ensure_pg(env.primary, "demo primary", [], peer=env.replica)
    assert "restarting" not in capsys.readouterr().out  # once


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


def test_an_interrupted_replica_clone_is_redone(in_process, capsys):
    env = in_process(scratch_dir("hadr-localenv-"))
    local_environment.demo_cluster_up(env, [])
    for instance in (env.replica, env.primary):  # `make down`
        instance.stop()
    (local_environment.server_dir("pg") / "demo-replica.cloned").unlink()  # as if pg_basebackup had been interrupted
    capsys.readouterr()

    local_environment.demo_cluster_up(env, [])
    assert "cloning the demo replica" in capsys.readouterr().out
    assert env.primary.is_running() and env.primary.psql("SELECT pg_is_in_recovery()") == "f"
    assert env.replica.is_running() and env.replica.psql("SELECT pg_is_in_recovery()") == "t"
    assert (local_environment.server_dir("pg") / "demo-replica.cloned").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="run by an ordinary user, the servers run as that user")
def test_the_servers_run_from_a_run_directory_the_postgres_user_cannot_reach(in_process):
    """A run directory under /root, or in a home directory of mode 700: its servers' data lives where postgres may
    go, linked from the run directory."""
    home = scratch_dir("hadr-home-")  # mode 700, as /root
    try:
        run_dir = home / "hadr-portal" / ".run"
        env = in_process(run_dir)
        assert not postgres_may_enter(run_dir)
        local_environment.server_dirs_prepare()
        local_environment.demo_cluster_up(env, [])

        for name in local_environment.SERVER_DIRS:
            assert (run_dir / name).is_symlink(), name
            target = local_environment.server_dir(name)
            assert target.is_relative_to(local_environment.SERVER_HOMES) and postgres_may_enter(target)
        assert env.primary.data_dir.is_relative_to(local_environment.SERVER_HOMES)  # what pg_ctl controllers get
        assert env.replica.psql("SELECT pg_is_in_recovery()") == "t"
        assert env.primary.psql("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") == "1"
        assert (run_dir / "pg" / "demo-primary.log").exists()  # `make logs` reads the servers' logs through .run
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="run by an ordinary user, the servers run as that user")
def test_servers_data_left_by_a_deleted_run_directory_is_not_taken_for_the_new_ones(in_process):
    """`make clean` deletes .run (the links), not what they point to: the servers' passwords went with .run."""
    home = Path(tempfile.mkdtemp(prefix="hadr-home-"))
    try:
        run_dir = home / "hadr-portal" / ".run"
        in_process(run_dir)
        local_environment.server_dirs_prepare()
        stale = local_environment.server_dir("pg") / "portal" / "PG_VERSION"
        stale.parent.mkdir()
        stale.write_text("15\n")
        shutil.rmtree(run_dir)  # `make clean`

        in_process(run_dir)
        local_environment.server_dirs_prepare()
        assert (run_dir / "pg").is_symlink() and local_environment.server_dir("pg") == stale.parent.parent
        assert not stale.exists()
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="run by an ordinary user, the servers run as that user")
def test_the_backups_of_an_earlier_run_directory_move_where_pgbackrest_may_go(in_process):
    """.run/backups holds pgBackRest's repository now (the postgres user's): made by an earlier version in a run
    directory postgres cannot reach, it moves to the servers' home with what it holds."""
    home = scratch_dir("hadr-home-")  # mode 700, as /root
    try:
        run_dir = home / "hadr-portal" / ".run"
        in_process(run_dir)
        (run_dir / "backups" / "demo-onboarding").mkdir(parents=True)
        (run_dir / "backups" / "demo-onboarding" / "dump").write_text("kept")

        local_environment.server_dirs_prepare()
        assert (run_dir / "backups").is_symlink() and postgres_may_enter(local_environment.server_dir("backups"))
        assert (run_dir / "backups" / "demo-onboarding" / "dump").read_text() == "kept"
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="run by an ordinary user, everything runs as that user")
def test_a_clone_the_command_user_cannot_reach_is_named_before_anything_starts():
    home = Path(tempfile.mkdtemp(prefix="hadr-home-"))
    try:
        (home / "hadr-portal").mkdir()
        with pytest.raises(local_environment.EnvError) as refused:
            local_environment.check_command_user_reaches(home / "hadr-portal")
        assert f"cannot enter {home} (mode 700)" in str(refused.value) and "/opt" in str(refused.value)
        local_environment.check_command_user_reaches(ROOT)  # this clone: every user may enter it
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_restart_brings_back_a_killed_demo_app_through_the_demo_catalogs_controller(running):
    """What the Restart button of the demo's onboarding application runs: as the command user, given no variable."""
    from hadr_portal.adapters.controllers import controller_from_config
    from hadr_portal.demo.catalog import demo_catalog

    run_env, run_dir = running.env, running.run_dir
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


def test_down_stops_everything_and_leaves_no_port_open(running):
    """Last of the tests of the running environment (a test after it would start it again)."""
    run_env = running.env
    started = pids(running.run_dir)
    down = localenv(run_env, "down")
    assert down.returncode == 0, down.stderr
    assert not [name for name, pid in started.items() if alive(pid)]
    assert not [port for port in map(int, (run_env[name] for name in PORT_VARIABLES)) if listening(port)]
    assert localenv(run_env, "status").returncode == 3
