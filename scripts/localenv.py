"""The local demo environment behind `make run / up / down / status / logs`.

Everything lives under `.run/` (or $HADR_RUN_DIR) and listens on 127.0.0.1 only:

    portal-db        the portal's own PostgreSQL                 HADR_PORTAL_DB_PORT    5440
    demo-primary     managed PostgreSQL 15 primary               HADR_DEMO_PRIMARY_PORT 5441
    demo-replica     its streaming replica (slot replica1)       HADR_DEMO_REPLICA_PORT 5442
    etcd             the HA cluster's consensus store (v3 API)   HADR_ETCD_PORT         2479 (peers 2480)
    patroni-ha1/ha2  the `demo-ha` cluster: Patroni-managed      HADR_DEMO_HA1_PORT     5443, HADR_DEMO_HA2_PORT 5444
                     PostgreSQL 15, automatic failover;          HADR_PATRONI1_PORT     8008, HADR_PATRONI2_PORT 8009
                     REST API with authentication
    redis            broker for Celery                           HADR_REDIS_PORT        6390
    demo-app         the onboarding application                  HADR_DEMO_APP_PORT     8001
    worker-checks / worker-ops / worker-default, beat
    web              gunicorn serving the portal                 HADR_PORT              8000
    pgbackrest       not a daemon: the demo cluster's stanza in .run/pgbackrest/demo, its repository in
                     .run/backups/pgbackrest; PostgreSQL runs `pgbackrest archive-push` for each WAL segment

Running `up` again while everything runs is harmless: what runs is left alone, what is
missing is started. When a step fails, what this invocation started is stopped again.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hadr_portal.adapters import commands  # noqa: E402
from hadr_portal.adapters.commands import CommandFailed, as_postgres_user, run_command, run_program  # noqa: E402
from hadr_portal.adapters.pg.server import PG_BIN, LocalInstance  # noqa: E402
from hadr_portal.adapters.pgbackrest import PGBACKREST, parse_info  # noqa: E402
from hadr_portal.demo import patroni  # noqa: E402
from hadr_portal.demo.cluster import LOCAL_ROLES, ensure_roles, make_replica  # noqa: E402
from hadr_portal.demo.redis_server import LocalRedis  # noqa: E402

RUN = Path(os.environ.get("HADR_RUN_DIR", ROOT / ".run")).resolve()
PIDS, LOGS, SECRETS = RUN / "pids", RUN / "logs", RUN / "secrets"
VENV_BIN = Path(sys.executable).parent
# The demo application runs as the command user (HADR_COMMAND_USER) when `make up` runs as root, like every program
# the catalog names: its Restart button runs `localenv.py restart demo-app` as that user, which must be able to
# stop and start it. Its pid, log and launch file live in .run/demo-app/, owned by that user.
COMMAND_USER = os.environ.get("HADR_COMMAND_USER") or commands.DEFAULT_COMMAND_USER
DEMO_APP = RUN / "demo-app"
# Run as root, the servers run as the postgres user, which must pass through every directory above their data. Where
# it cannot (a run directory under /root, or in a home directory of mode 700), what it works in lives in a
# directory of its own here instead, named after the run directory, and .run/<name> links to it.
SERVER_HOMES = Path("/var/lib/hadr-portal")
# the servers' data; where restores unpack theirs and drills run scratch servers; pgBackRest's stanzas (it runs
# as the postgres user); the backups, pgBackRest's repository among them (<HADR_BACKUP_DIR>/pgbackrest)
SERVER_DIRS = ("pg", "restores", "pgbackrest", "backups", "patroni")
# pgBackRest's stanza of the demo cluster is named after it (backups.stanza)
DEMO_STANZA = "demo"
# the high-availability demo cluster: Patroni's scope, its members, and its REST API user
HA_SCOPE, HA_MEMBERS, PATRONI_REST_USER = "demo-ha", ("ha1", "ha2"), "patroni"


def use_run_dir(path: Path) -> None:
    """Point every path at another run directory (`--run-dir`: the demo's restart command is given no variables)."""
    global RUN, PIDS, LOGS, SECRETS, DEMO_APP
    RUN = path.resolve()
    PIDS, LOGS, SECRETS, DEMO_APP = RUN / "pids", RUN / "logs", RUN / "secrets", RUN / "demo-app"


class EnvError(Exception):
    """Something the operator must fix; the message says what and how."""


def port_setting(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise EnvError(f"{name}={value!r} is not a port number (1-65535).")
    return int(value)


@dataclass(frozen=True)
class Ports:
    web: int
    portal_db: int
    primary: int
    replica: int
    redis: int
    demo_app: int
    ha1: int
    ha2: int
    patroni1: int
    patroni2: int
    etcd: int
    etcd_peer: int

    @classmethod
    def from_env(cls) -> Ports:
        ports = cls(
            web=port_setting("HADR_PORT", 8000),
            portal_db=port_setting("HADR_PORTAL_DB_PORT", 5440),
            primary=port_setting("HADR_DEMO_PRIMARY_PORT", 5441),
            replica=port_setting("HADR_DEMO_REPLICA_PORT", 5442),
            redis=port_setting("HADR_REDIS_PORT", 6390),
            demo_app=port_setting("HADR_DEMO_APP_PORT", 8001),
            ha1=port_setting("HADR_DEMO_HA1_PORT", 5443),
            ha2=port_setting("HADR_DEMO_HA2_PORT", 5444),
            patroni1=port_setting("HADR_PATRONI1_PORT", 8008),
            patroni2=port_setting("HADR_PATRONI2_PORT", 8009),
            etcd=port_setting("HADR_ETCD_PORT", 2479),
            etcd_peer=port_setting("HADR_ETCD_PEER_PORT", 2480),
        )
        values = list(vars(ports).values())
        if len(set(values)) != len(values):
            raise EnvError(f"Two components were given the same port: {vars(ports)}")
        return ports


VARIABLE_OF = {
    "web": "HADR_PORT",
    "portal_db": "HADR_PORTAL_DB_PORT",
    "primary": "HADR_DEMO_PRIMARY_PORT",
    "replica": "HADR_DEMO_REPLICA_PORT",
    "redis": "HADR_REDIS_PORT",
    "demo_app": "HADR_DEMO_APP_PORT",
    "ha1": "HADR_DEMO_HA1_PORT",
    "ha2": "HADR_DEMO_HA2_PORT",
    "patroni1": "HADR_PATRONI1_PORT",
    "patroni2": "HADR_PATRONI2_PORT",
    "etcd": "HADR_ETCD_PORT",
    "etcd_peer": "HADR_ETCD_PEER_PORT",
}


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def secret(name: str, length: int = 24) -> str:
    """A generated secret kept in .run/secrets (mode 600) so that re-runs reuse it."""
    private_dir(SECRETS)
    path = SECRETS / name
    if not path.exists():
        write_private(path, secrets.token_urlsafe(length))
    return path.read_text().strip()


def write_private(path: Path, text: str) -> None:
    """Write `text` to a file that is mode 600 from its first byte (not made private after being written)."""
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def private_dir(path: Path) -> Path:
    """A directory only the environment's user may enter (mode 700)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def server_dir(name: str) -> Path:
    """.run/<name> (one of SERVER_DIRS) as the postgres user must be given it: where its link points, if it is one."""
    return (RUN / name).resolve()


def postgres_reaches(path: Path) -> bool:
    """Whether the servers may pass through every directory down to `path` (not as root: they run as this user)."""
    return os.geteuid() != 0 or run_command(as_postgres_user(["test", "-x", str(path)]), check=False).returncode == 0


def server_home() -> Path:
    """The directory of SERVER_HOMES that is this run directory's, should the postgres user not reach it."""
    return SERVER_HOMES / f"{RUN.parent.name}-{RUN.name}-{hashlib.sha256(str(RUN).encode()).hexdigest()[:10]}"


def server_dirs_prepare() -> None:
    """Choose, once per run directory, where SERVER_DIRS live: in .run when the postgres user may pass through to
    it, else in SERVER_HOMES with a link from .run. What is found there for a run directory without its link (one
    deleted since, `make clean`) is removed first: the passwords of those servers went with it. The backups of a run
    directory made before they were one of SERVER_DIRS are moved there (pgBackRest's repository goes beside them)."""
    missing = [name for name in SERVER_DIRS if not os.path.lexists(RUN / name)]
    moved = [name for name in ("backups",) if (RUN / name).is_dir() and not (RUN / name).is_symlink()]
    if not missing + moved or postgres_reaches(RUN):
        return
    home = server_home()
    home.mkdir(parents=True, exist_ok=True)
    for path in (SERVER_HOMES, home):
        os.chmod(path, 0o711)  # passed through, never listed
    for name in missing + moved:
        target = home / name
        if target.exists():
            print(f"  removing {target}, left by an earlier {RUN}")
            shutil.rmtree(target)
        if name in moved:
            print(f"  moving {RUN / name} to {target}")
            shutil.move(RUN / name, target)
            os.chmod(target, 0o711)
        else:
            target.mkdir(mode=0o711)
        (RUN / name).symlink_to(target)
        print(f"  {RUN / name} -> {target} (the postgres user cannot reach {RUN})")


def pgbackrest_dir() -> str:
    """HADR_PGBACKREST_DIR: .run/pgbackrest, where the postgres user may go (it runs pgBackRest)."""
    return os.environ.get("HADR_PGBACKREST_DIR") or str(server_dir("pgbackrest"))


def pitr_dirs_prepare() -> None:
    """pgBackRest runs as the postgres user in .run/pgbackrest (the stanza's files) and in .run/backups/pgbackrest
    (the demo's repository, beside the logical backups): it passes through both, never lists them."""
    for name in ("pgbackrest", "backups"):
        path = server_dir(name)
        path.mkdir(exist_ok=True)
        os.chmod(path, 0o711)


def check_command_user_reaches(path: Path) -> None:
    """Run as root, the demo application and its Restart button run as the command user, from this clone: that
    user must pass through every directory above it. Said before anything starts, naming the one that stops it."""
    if run_program(["test", "-x", str(path)], user=COMMAND_USER, check=False).returncode == 0:
        return
    blocked = next(
        (
            directory
            for directory in [*reversed(path.parents), path]
            if run_program(["test", "-x", str(directory)], user=COMMAND_USER, check=False).returncode != 0
        ),
        path,
    )
    raise EnvError(
        f"The command user {COMMAND_USER} (HADR_COMMAND_USER) cannot enter {blocked} (mode "
        f"{stat.S_IMODE(blocked.stat().st_mode):o}): the demo application and its Restart button run as that user "
        f"from {path}. Clone the repository where other users may enter (e.g. under /opt or /srv), or run "
        "`make up` as an ordinary user, whom everything then runs as."
    )


# --- the processes --------------------------------------------------------------------------


def pid_file(name: str) -> Path:
    return DEMO_APP / "demo-app.pid" if name == "demo-app" else PIDS / f"{name}.pid"


def log_file(name: str) -> Path:
    return DEMO_APP / "demo-app.log" if name == "demo-app" else LOGS / f"{name}.log"


def pid_of(name: str) -> int | None:
    """The pid in .run/pids/<name>.pid (.run/demo-app/demo-app.pid) if that process is alive."""
    try:
        pid = int(pid_file(name).read_text())
        return pid if alive(pid) else None
    except (OSError, ValueError):  # no pid file, or a pid now another user's
        return None


def spawn(name: str, argv: list[str], env: dict[str, str]) -> int:
    """Start `name` in the background, its output appended to .run/logs/<name>.log: a file only the environment's
    user reads (mode 600, in a 700 directory), since a process may log what it should not."""
    account = command_account() if name == "demo-app" and os.geteuid() == 0 else None  # demo-app: as that user
    for directory in {pid_file(name).parent, log_file(name).parent}:
        owned_by(private_dir(directory), account)
    log_path = log_file(name)
    with open(os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab") as log:
        os.chmod(log_path, 0o600)  # a log written by an earlier version may be world-readable
        owned_by(log_path, account)
        as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []} if account else {}
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            **as_user,
        )
    pid_file(name).write_text(str(process.pid))
    owned_by(pid_file(name), account)
    return process.pid


def command_account() -> pwd.struct_passwd:
    """The command user, whom the demo application runs as when `make up` runs as root (the account restart
    commands run as: one definition, in adapters.commands)."""
    try:
        return commands.command_account(COMMAND_USER, ["demo-app"])
    except CommandFailed as exc:
        raise EnvError(f"{exc}.") from None


def owned_by(path: Path, account: pwd.struct_passwd | None) -> Path:
    if account is not None:
        os.chown(path, account.pw_uid, account.pw_gid)
    return path


def alive(pid: int) -> bool:
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our own child that has exited (a zombie)
            return False
    except ChildProcessError:
        pass  # started by an earlier `make up`: not our child
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not zombie(pid)


def zombie(pid: int) -> bool:
    """Exited, but never reaped: its parent is gone and PID 1 does not reap orphans (as in some containers)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def stop_pid(name: str, timeout: float = 15) -> bool:
    """Stop a process group by its pidfile: SIGTERM, then SIGKILL after `timeout` seconds."""
    pid = pid_of(name)
    pid_file(name).unlink(missing_ok=True)
    if pid is None:
        return False
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and alive(pid):
            time.sleep(0.1)
        if not alive(pid):
            return True
    return True


@dataclass
class Environment:
    ports: Ports

    @property
    def portal_db(self) -> LocalInstance:
        return LocalInstance(
            server_dir("pg") / "portal", self.ports.portal_db, secret("portal-db-password"), archive_mode=False
        )

    @property
    def primary(self) -> LocalInstance:
        return LocalInstance(server_dir("pg") / "demo-primary", self.ports.primary, secret("demo-password"))

    @property
    def replica(self) -> LocalInstance:
        return LocalInstance(server_dir("pg") / "demo-replica", self.ports.replica, secret("demo-password"))

    @property
    def redis(self) -> LocalRedis:
        return LocalRedis(RUN / "redis", self.ports.redis)

    @property
    def ha_members(self) -> list[patroni.Member]:
        home = server_dir("patroni")
        p = self.ports
        return [
            patroni.Member("ha1", p.patroni1, p.ha1, home / "ha1"),
            patroni.Member("ha2", p.patroni2, p.ha2, home / "ha2"),
        ]

    @property
    def ha_secrets(self) -> patroni.Secrets:
        return patroni.Secrets(
            PATRONI_REST_USER, secret("patroni-rest-password"), secret("demo-password"), secret("ha-replication")
        )

    def role_passwords(self) -> dict[str, str]:
        """The passwords of the demo cluster's least-privilege roles (hadr_monitor, hadr_reader, hadr_backup)."""
        return {role.name: secret(f"db-role-{role.name}") for role in LOCAL_ROLES}

    def variables(self) -> dict[str, str]:
        p = self.ports
        demo_pw = secret("demo-password")
        portal_db_url = f"postgres://postgres:{secret('portal-db-password')}@127.0.0.1:{p.portal_db}/hadr_portal"
        roles = self.role_passwords()
        return {
            "DJANGO_SETTINGS_MODULE": "hadr_portal.settings",
            "HADR_SECRET_KEY_FILE": str(SECRETS / "secret-key"),
            "HADR_DATABASE_URL": portal_db_url,
            # the demo's "portal database" check reads its DSN from a HADR_DSN_* variable, the only ones a check may name
            "HADR_DSN_PORTAL": portal_db_url,
            # monitoring, funnel / verification queries and backups each connect as a role of their own
            **{role.password_variable: roles[role.name] for role in LOCAL_ROLES},
            "HADR_REDIS_URL": f"redis://127.0.0.1:{p.redis}/0",
            "HADR_DEMO_PASSWORD": demo_pw,
            # name=host:port@data-directory: the portal stops, starts and rebuilds the nodes with pg_ctl
            "HADR_DEMO_NODES": (
                f"primary=127.0.0.1:{p.primary}@{self.primary.data_dir},"
                f"replica=127.0.0.1:{p.replica}@{self.replica.data_dir}"
            ),
            # the high-availability cluster: its members (name=host:port) and their Patroni REST APIs
            "HADR_DEMO_HA_NODES": ",".join(f"{m.name}=127.0.0.1:{m.pg_port}" for m in self.ha_members),
            "HADR_DEMO_HA_PATRONI_URLS": ",".join(m.rest_url for m in self.ha_members),
            "HADR_PATRONI_REST_USER": PATRONI_REST_USER,
            "HADR_PATRONI_REST_PASSWORD": secret("patroni-rest-password"),
            "HADR_DEMO_PRIMARY_DSN": f"postgresql://postgres:{demo_pw}@127.0.0.1:{p.primary}/onboarding",
            "HADR_DEMO_REPLICA_DSN": f"postgresql://postgres:{demo_pw}@127.0.0.1:{p.replica}/onboarding",
            "ONBOARDING_DSN": (
                f"host=127.0.0.1,127.0.0.1 port={p.primary},{p.replica} dbname=onboarding user=onboarding "
                f"password={demo_pw} target_session_attrs=read-write connect_timeout=3"
            ),
            "ONBOARDING_PORT": str(p.demo_app),
            "HADR_DEMO_APP_URL": f"http://127.0.0.1:{p.demo_app}",
            "HADR_PORTAL_URL": f"http://127.0.0.1:{p.web}",
            "HADR_STATIC_ROOT": str(RUN / "static"),
            "HADR_ALLOWED_HOSTS": os.environ.get("HADR_ALLOWED_HOSTS", "127.0.0.1,localhost"),
            "HADR_RUN_DIR": str(RUN),
            # an interpreter the command user can run: the demo catalog's restart command starts with it
            "HADR_DEMO_PYTHON": command_python(),
            "HADR_EMAIL_BACKEND": os.environ.get("HADR_EMAIL_BACKEND", "file"),
            "HADR_BACKUP_DIR": os.environ.get("HADR_BACKUP_DIR", str(server_dir("backups"))),
            # the demo cluster's pgBackRest stanza: its configuration, spool, locks and logs (the postgres user's)
            "HADR_PGBACKREST_DIR": pgbackrest_dir(),
            "HADR_RESTORE_SCRATCH_DIR": os.environ.get("HADR_RESTORE_SCRATCH_DIR", str(server_dir("restores"))),
            "HADR_EMAIL_FILE_DIR": os.environ.get("HADR_EMAIL_FILE_DIR", str(RUN / "mail")),
            # /metrics: a local Prometheus (or curl) scrapes it without a token; elsewhere with this one
            "HADR_METRICS_TOKEN": secret("metrics-token"),
            "HADR_METRICS_ALLOWED_NETWORKS": os.environ.get("HADR_METRICS_ALLOWED_NETWORKS", "127.0.0.1/32,::1/128"),
            # every demo service listens on 127.0.0.1: checks and webhooks may reach loopback here (never elsewhere)
            "HADR_ALLOW_PRIVATE_TARGETS": os.environ.get("HADR_ALLOW_PRIVATE_TARGETS", "true"),
            # the local demo offers two-factor sign-in (a link in the user menu) but does not force it
            "HADR_2FA_REQUIRED": os.environ.get("HADR_2FA_REQUIRED", "false"),
        }


def write_env_file(variables: dict[str, str]) -> Path:
    path = RUN / "env"
    lines = ["# Written by `make up`: source it to reach the local demo environment (contains secrets)."]
    lines += [f"export {name}='{value}'" for name, value in variables.items()]
    write_private(path, "\n".join(lines) + "\n")
    return path


def child_env(env: Environment) -> dict[str, str]:
    return {**os.environ, **env.variables(), "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}


def check_binaries() -> None:
    needed = [PG_BIN / "initdb", PG_BIN / "pg_ctl", PG_BIN / "pg_basebackup", PG_BIN / "psql", Path(PGBACKREST)]
    needed += [Path(patroni.PATRONI), Path(patroni.ETCD)]
    missing = [str(path) for path in needed if not os.access(path, os.X_OK)]
    missing += [name for name in ("redis-server", "redis-cli", "runuser") if shutil.which(name) is None]
    if missing:
        raise EnvError(f"Missing programs: {', '.join(missing)}. Run `make install` (needs root or sudo).")


def check_ports(env: Environment) -> None:
    """Every port must be free, or be held by the very component that is already running."""
    ours = {
        "portal_db": env.portal_db.exists() and env.portal_db.is_running(),
        "primary": env.primary.exists() and env.primary.is_running(),
        "replica": env.replica.exists() and env.replica.is_running(),
        "redis": env.redis.pid() is not None,
        "demo_app": pid_of("demo-app") is not None,
        "web": pid_of("web") is not None,
        "ha1": pid_of("patroni-ha1") is not None,
        "ha2": pid_of("patroni-ha2") is not None,
        "patroni1": pid_of("patroni-ha1") is not None,
        "patroni2": pid_of("patroni-ha2") is not None,
        "etcd": pid_of("etcd") is not None,
        "etcd_peer": pid_of("etcd") is not None,
    }
    for field, port in vars(env.ports).items():
        if not ours[field] and port_in_use(port):
            raise EnvError(
                f"Port {port} ({VARIABLE_OF[field]}) is already in use by another program. "
                f"Stop that program or choose another port, e.g. `{VARIABLE_OF[field]}={port + 100} make run`."
            )


def ensure_pg(
    instance: LocalInstance, label: str, started: list[Callable[[], None]], peer: LocalInstance | None = None
) -> None:
    """Create and start `instance` as needed. With a `peer` (the other demo node), a stopped node that is
    not a standby is left stopped while the peer runs as primary: after a failover, starting the old
    primary as it is would give the cluster two primaries."""
    if peer is not None and not instance.is_running() and is_split_brain_risk(instance, peer):
        print(
            f"  {label} stays stopped: {peer.data_dir.name} is the primary now (failed over). Rebuild it as a"
            " replica from the Databases page or with `manage.py rebuild_replica demo NODE`."
        )
        return
    if not instance.exists():
        print(f"  creating {label} in {instance.data_dir}")
        instance.initdb()
    instance.ensure_log_file()
    instance.write_settings()  # the port may have changed since the last run
    if instance.is_running():
        archive_mode_apply(instance, label)
    else:
        print(f"  starting {label} on 127.0.0.1:{instance.port}")
        try:
            instance.start()
        except CommandFailed as exc:
            raise EnvError(f"{label} did not start: {exc}. See {instance.log_file}") from None
        started.append(instance.stop)


def archive_mode_apply(instance: LocalInstance, label: str) -> None:
    """Restart a server running with another archive_mode than its settings say (one started by an earlier version,
    before its WAL was archived and its Unix socket, which pgBackRest talks to, moved beside its data directory):
    neither changes while it runs."""
    wanted = "on" if instance.archive_mode else "off"
    if instance.psql("SHOW archive_mode") == wanted:
        return
    print(f"  restarting {label}: archive_mode = {wanted} (for WAL archiving) takes effect only at a restart")
    instance.stop()
    try:
        instance.start()
    except CommandFailed as exc:
        raise EnvError(f"{label} did not start again: {exc}. See {instance.log_file}") from None


def is_split_brain_risk(instance: LocalInstance, peer: LocalInstance) -> bool:
    if not instance.exists() or (instance.data_dir / "standby.signal").exists() or not peer.is_running():
        return False
    try:
        return peer.psql("SELECT pg_is_in_recovery()") == "f"
    except CommandFailed:
        return False


def ensure_database(instance: LocalInstance, name: str, owner: str = "postgres", password: str = "") -> None:
    if owner != "postgres" and not instance.psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{owner}'"):
        instance.psql(f"CREATE ROLE {owner} LOGIN PASSWORD '{password}'")
    if not instance.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'"):
        instance.psql(f"CREATE DATABASE {name} OWNER {owner}")


def manage(env: Environment, *args: str) -> str:
    result = run_command(
        [str(VENV_BIN / "python"), str(ROOT / "manage.py"), *args], env=child_env(env), timeout=600, check=False
    )
    if result.returncode != 0:
        raise EnvError(f"manage.py {' '.join(args)} failed:\n{(result.stderr or result.stdout).strip()[-3000:]}")
    return result.stdout


PROCESSES: dict[str, list[str]] = {
    "demo-app": ["{python}", "-m", "demo.onboarding"],
    "worker-checks": [
        "{bin}/celery",
        "-A",
        "hadr_portal",
        "worker",
        "-Q",
        "checks",
        "-n",
        "checks@%h",
        "-c",
        "4",
        "--without-gossip",
    ],
    "worker-ops": [
        "{bin}/celery",
        "-A",
        "hadr_portal",
        "worker",
        "-Q",
        "ops",
        "-n",
        "ops@%h",
        "-c",
        "2",
        "--without-gossip",
    ],
    "worker-default": [
        "{bin}/celery",
        "-A",
        "hadr_portal",
        "worker",
        "-Q",
        "default",
        "-n",
        "default@%h",
        "-c",
        "2",
        "--without-gossip",
    ],
    "beat": ["{bin}/celery", "-A", "hadr_portal", "beat", "-s", "{run}/celerybeat-schedule"],
    "web": [
        "{bin}/gunicorn",
        "hadr_portal.wsgi",
        "--bind",
        "127.0.0.1:{web_port}",
        "--workers",
        "2",
        "--threads",
        "4",
        "--timeout",
        "60",
        "--access-logfile",
        "-",
        "--access-logformat",
        '{{"time":"%(t)s","remote":"%(h)s","request":"%(r)s","status":%(s)s,"bytes":"%(b)s","duration_us":%(D)s}}',
        # heartbeat URLs carry tokens: the access log prints them redacted
        "--logger-class",
        "hadr_portal.core.gunicorn_logging.RedactingLogger",
    ],
}


def process_argv(name: str, env: Environment) -> list[str]:
    values = {"python": str(VENV_BIN / "python"), "bin": str(VENV_BIN), "run": str(RUN), "web_port": str(env.ports.web)}
    return [part.format(**values) for part in PROCESSES[name]]


def launch(name: str, env: Environment) -> tuple[list[str], dict[str, str]]:
    """The command line and environment `name` starts with. The demo application gets only what it needs (its
    ONBOARDING_* variables, none of the portal's secrets), kept in .run/demo-app/launch.json so that its restart,
    run as the command user (who cannot read .run/secrets), starts it the same way."""
    if name != "demo-app":
        return process_argv(name, env), child_env(env)
    saved = DEMO_APP / "launch.json"
    if not os.access(SECRETS, os.R_OK | os.X_OK):  # the command user, restarting it: as `make up` left it
        if not saved.exists():
            raise EnvError(f"{saved} is missing: start the demo environment with `make up` first.")
        launched = json.loads(saved.read_text())
        return launched["argv"], launched["env"]
    account = command_account() if os.geteuid() == 0 else None
    variables = env.variables()
    environ = {key: value for key, value in os.environ.items() if key in ("PATH", "LANG", "LC_ALL", "TZ")}
    environ |= {key: value for key, value in os.environ.items() if key.startswith("ONBOARDING_")}
    environ |= {key: variables[key] for key in ("ONBOARDING_DSN", "ONBOARDING_PORT")}
    if account is not None:
        environ |= {"HOME": account.pw_dir, "USER": account.pw_name, "LOGNAME": account.pw_name}
    argv = [command_python(), "-m", "demo.onboarding"]
    owned_by(private_dir(DEMO_APP), account)
    write_private(saved, json.dumps({"argv": argv, "env": environ}, indent=2) + "\n")
    owned_by(saved, account)
    return argv, environ


@functools.cache
def command_python() -> str:
    """A Python the command user can run with the portal's packages, for the demo application and its restart
    command: the virtual environment's own, or — when its interpreter lives where that user cannot reach (a pyenv
    Python under /root) — a small environment in .run/command-python on the system's python3.X that sees the same
    packages. Not as root: this interpreter."""
    venv_python = str(VENV_BIN / "python")
    if os.geteuid() != 0 or runs_as_command_user(venv_python):
        return venv_python
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(f"python{version}", path="/usr/local/bin:/usr/bin:/bin")
    target = RUN / "command-python"
    if system is not None:
        if not (target / "bin" / "python").exists():
            run_command([system, "-m", "venv", "--without-pip", str(target)])
        packages = target / "lib" / f"python{version}" / "site-packages" / "hadr-portal.pth"
        packages.write_text(sysconfig.get_paths()["purelib"] + "\n")
        if runs_as_command_user(str(target / "bin" / "python")):
            return str(target / "bin" / "python")
    raise EnvError(
        f"The command user {COMMAND_USER} (HADR_COMMAND_USER) cannot run {venv_python}, and there is no system "
        f"python{version} it could run instead. Make the virtual environment from a Python every user can run: "
        "`make down && rm -rf .venv && PYTHON=/usr/bin/python3 make up`."
    )


def runs_as_command_user(python: str) -> bool:
    try:
        return run_program([python, "-c", "import psycopg"], user=COMMAND_USER, check=False).returncode == 0
    except CommandFailed:
        return False


def wait_http(url: str, timeout: float, *, accept: Callable[[int], bool] = lambda status: status < 500) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own loopback URL
                if accept(response.status):
                    return True
        except urllib.error.HTTPError as exc:
            if accept(exc.code):
                return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    return False


def demo_cluster_up(env: Environment, started: list[Callable[[], None]]) -> None:
    """The demo cluster: the primary with its `onboarding` database and roles, and its streaming replica, each
    created and started as needed (what this started is added to `started`)."""
    ensure_pg(env.primary, "demo primary", started, peer=env.replica)
    if env.primary.is_running() and env.primary.psql("SELECT pg_is_in_recovery()") == "f":
        ensure_database(env.primary, "onboarding", owner="onboarding", password=secret("demo-password"))
        try:
            ensure_roles(env.primary.conninfo(), env.role_passwords())  # the replica gets them by replication
        except psycopg.Error as exc:
            raise EnvError(f"Could not create the portal's database roles on the demo primary: {exc}") from None
    cloned = server_dir("pg") / "demo-replica.cloned"
    if not env.replica.exists() or not cloned.exists():  # never cloned, or a clone that was interrupted
        print("  cloning the demo replica (pg_basebackup, slot replica1)")
        make_replica(env.primary, env.replica, slot="replica1")
        cloned.write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z\n"))
    ensure_pg(env.replica, "demo replica", started, peer=env.primary)


def demo_ha_up(env: Environment, started: list[Callable[[], None]]) -> None:
    """The high-availability cluster: etcd, then each member's Patroni (as the postgres user), which initdb's the
    first, clones the second from it and keeps one of them leader; then the portal's roles on the leader."""
    if pid_of("etcd") is None:
        data = RUN / "etcd"
        private_dir(data)
        spawn("etcd", patroni.etcd_argv(data, env.ports.etcd, env.ports.etcd_peer), child_env(env))
        started.append(lambda: stop_pid("etcd"))
    postgres = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    for member in env.ha_members:
        name = f"patroni-{member.name}"
        member.home.mkdir(parents=True, exist_ok=True)
        write_private(
            member.config_path,
            patroni.member_config(
                member, scope=HA_SCOPE, etcd_port=env.ports.etcd, secrets=env.ha_secrets, synchronous_mode=True
            ),
        )
        if postgres is not None:
            for path in (member.home, member.config_path):
                os.chown(path, postgres.pw_uid, postgres.pw_gid)
        if pid_of(name) is None:
            spawn(name, as_postgres_user(patroni.patroni_argv(member)), {**child_env(env), "HOME": str(member.home)})
            started.append(lambda member=member: patroni_stop(member))
    urls = [m.rest_url for m in env.ha_members]
    auth = (PATRONI_REST_USER, env.ha_secrets.rest_password)
    deadline = time.monotonic() + 120
    while not patroni.settled(urls, auth, replicas=len(urls) - 1):
        if time.monotonic() > deadline:
            raise EnvError(f"The Patroni cluster {HA_SCOPE} did not settle within 120 s. See {LOGS}/patroni-*.log")
        for member in env.ha_members:
            if pid_of(f"patroni-{member.name}") is None:
                raise EnvError(f"patroni-{member.name} exited. See {log_file('patroni-' + member.name)}")
        time.sleep(0.5)
    leader = patroni.leader_of(patroni.cluster_view(urls, auth))
    port = next(m.pg_port for m in env.ha_members if m.name == leader)
    conninfo = f"host=127.0.0.1 port={port} dbname=postgres user=postgres password={secret('demo-password')}"
    try:
        ensure_roles(conninfo, env.role_passwords())
    except psycopg.Error as exc:
        raise EnvError(f"Could not create the portal's database roles on {leader}: {exc}") from None
    print(f"  {HA_SCOPE}: {leader} leads, {len(urls) - 1} streaming replica")


def patroni_stop(member: patroni.Member) -> bool:
    """Stop a member's Patroni (it stops its PostgreSQL on SIGTERM), then make sure that PostgreSQL is down: a
    server still shutting down (or left behind by a Patroni that was killed) is stopped with pg_ctl."""
    stopped = stop_pid(f"patroni-{member.name}", timeout=40)
    if (member.data_dir / "postmaster.pid").exists():
        argv = [str(PG_BIN / "pg_ctl"), "stop", "-m", "fast", "-w", "-t", "30", "-D", str(member.data_dir)]
        run_command(as_postgres_user(argv), timeout=60, check=False)
    return stopped


def up() -> Environment:
    env = Environment(Ports.from_env())
    RUN.mkdir(parents=True, exist_ok=True)
    # The postgres user must reach its data directories (.run/pg/…) and restore scratch space: it may pass
    # through .run, not list it. What is private below it (logs, pids, secrets, env) is mode 600/700.
    os.chmod(RUN, 0o711)
    check_binaries()
    if os.geteuid() == 0:
        command_account()  # the demo application runs as it: missing, say so before anything starts
        check_command_user_reaches(ROOT)
    server_dirs_prepare()
    check_ports(env)
    secret("secret-key", 50)
    started: list[Callable[[], None]] = []
    try:
        print("==> PostgreSQL: portal database, demo primary and replica")
        ensure_pg(env.portal_db, "portal database", started)
        ensure_database(env.portal_db, "hadr_portal")
        demo_cluster_up(env, started)
        print("==> etcd and Patroni: the high-availability cluster demo-ha")
        demo_ha_up(env, started)
        print("==> Redis")
        if env.redis.pid() is None:
            env.redis.start()
            started.append(env.redis.stop)
        env_file = write_env_file(env.variables())
        print("==> Portal database: migrate, static files, demo catalog, admin account")
        manage(env, "migrate", "--noinput")
        manage(env, "collectstatic", "--noinput", "--verbosity", "0")
        manage(env, "seed_demo")
        print(manage(env, "write_probe_setup", "demo", HA_SCOPE).rstrip())
        print("==> pgBackRest: the demo cluster's stanza, WAL archiving (archive_command, archive_timeout 10 s)")
        pitr_dirs_prepare()
        print(manage(env, "pitr_setup", "demo-cluster").rstrip())
        admin_password_file = RUN / "admin-password"
        if not admin_password_file.exists():
            write_private(admin_password_file, secrets.token_urlsafe(12))
        os.chmod(admin_password_file, 0o600)
        manage(env, "ensure_admin", "--username", "admin", "--password-file", str(admin_password_file))
        print("==> Demo application, Celery workers, beat, web server")
        for name in PROCESSES:
            if pid_of(name) is None:
                spawn(name, *launch(name, env))
                started.append(lambda name=name: stop_pid(name))
        url = f"http://127.0.0.1:{env.ports.web}"
        if not wait_http(f"{url}/login/", timeout=90, accept=lambda status: status == 200):
            raise EnvError(f"The portal did not answer on {url} within 90 s. See {LOGS / 'web.log'}")
        for name in PROCESSES:
            if pid_of(name) is None:
                raise EnvError(f"{name} exited right after starting. See {log_file(name)}")
        # A fresh demo starts with one backup, so that its RPO is met from the first minute.
        manage(env, "backup", "demo-onboarding", "--kind", "scheduled", "--if-missing")
        # and one full pgBackRest set, from which any second since can be recovered
        manage(env, "backup", "demo-cluster", "--kind", "scheduled", "--if-missing")
    except (EnvError, CommandFailed, OSError) as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        if started:
            print("Stopping what this run started…", file=sys.stderr)
            for stop in reversed(started):
                try:
                    stop()
                except Exception as stop_error:  # keep cleaning
                    print(f"  {stop_error}", file=sys.stderr)
        raise SystemExit(1) from None
    print(
        f"\nHADR Portal is running: {url}\n"
        f"  login:     admin / {admin_password_file.read_text().strip()}   (kept in {admin_password_file})\n"
        f"  demo app:  http://127.0.0.1:{env.ports.demo_app}/health\n"
        f"  settings:  source {env_file}\n"
        f"  logs:      make logs     stop: make down"
    )
    return env


def down() -> None:
    env = Environment(Ports.from_env())
    for name in reversed(list(PROCESSES)):
        if stop_pid(name):
            print(f"  stopped {name}")
    env.redis.stop()
    for member in env.ha_members:
        if patroni_stop(member):
            print(f"  stopped patroni-{member.name}")
    if stop_pid("etcd"):
        print("  stopped etcd")
    for instance, label in (
        (env.replica, "demo replica"),
        (env.primary, "demo primary"),
        (env.portal_db, "portal database"),
    ):
        if instance.exists() and instance.is_running():
            instance.stop()
            print(f"  stopped {label}")
    print("Everything is stopped. Data stays in .run/ (make clean removes it).")


def restart(name: str, timeout: float = 30) -> None:
    """Stop one process if it runs, start it again, and return once it is back: answering HTTP (demo-app,
    web) or still alive a second later. A process that was killed has a stale pid file: nothing to stop."""
    env = Environment(Ports.from_env())
    if stop_pid(name):
        print(f"  stopped {name}")
    log = log_file(name)
    written = log.stat().st_size if log.exists() else 0
    argv, environ = launch(name, env)
    pid = spawn(name, argv, environ)
    print(f"  started {name} (pid {pid})")
    demo_app_port = environ.get("ONBOARDING_PORT", str(env.ports.demo_app))
    url = {"demo-app": f"http://127.0.0.1:{demo_app_port}/", "web": f"http://127.0.0.1:{env.ports.web}/login/"}
    started = time.monotonic()
    while not (wait_http(url[name], timeout=0.1) if name in url else time.monotonic() - started > 1):
        if not alive(pid):
            with open(log, "rb") as handle:
                handle.seek(written)
                said = handle.read().decode(errors="replace").strip()[-3000:]
            raise EnvError(f"{name} exited right after starting:\n{said}")
        if time.monotonic() - started > timeout:
            raise EnvError(f"{name} did not answer on {url[name]} within {timeout:g} s. See {log}")
        time.sleep(0.2)
    print(f"  {name} is back after {time.monotonic() - started:.1f} s" + (f": {url[name]}" if name in url else ""))


def status() -> int:
    env = Environment(Ports.from_env())
    rows = [
        ("portal-db", env.portal_db.exists() and env.portal_db.is_running(), f"127.0.0.1:{env.ports.portal_db}"),
        ("demo-primary", env.primary.exists() and env.primary.is_running(), f"127.0.0.1:{env.ports.primary}"),
        ("demo-replica", env.replica.exists() and env.replica.is_running(), f"127.0.0.1:{env.ports.replica}"),
        ("redis", env.redis.pid() is not None, f"127.0.0.1:{env.ports.redis}"),
    ]
    addresses = {"demo-app": f"http://127.0.0.1:{env.ports.demo_app}", "web": f"http://127.0.0.1:{env.ports.web}"}
    rows.append(("etcd", pid_of("etcd") is not None, f"127.0.0.1:{env.ports.etcd}"))
    view = patroni.cluster_view([m.rest_url for m in env.ha_members], (PATRONI_REST_USER, env.ha_secrets.rest_password))
    roles = {m.get("name"): f"{m.get('role')}, {m.get('state')}" for m in view.get("members", [])}
    for member in env.ha_members:
        said = f"127.0.0.1:{member.pg_port}, REST {member.rest_url}"
        said += f"  ({roles[member.name]})" if member.name in roles else ""
        rows.append((f"patroni-{member.name}", pid_of(f"patroni-{member.name}") is not None, said))
    rows += [(name, pid_of(name) is not None, addresses.get(name, "")) for name in PROCESSES]
    for name, running, address in rows:
        print(f"  {name:16} {'running' if running else 'stopped':8} {address}")
    print(f"  {'pgbackrest':16} {pgbackrest_status()}")
    return 0 if all(running for _, running, _ in rows) else 3


def pgbackrest_status() -> str:
    """The demo stanza as `pgbackrest info` sees it, in one line (pgBackRest runs only when called: no daemon)."""
    home = Path(pgbackrest_dir()) / DEMO_STANZA
    if not (home / "pgbackrest.conf").exists():
        return "-        no stanza yet (`make up` writes it)"
    argv = [
        PGBACKREST,
        f"--config={home / 'pgbackrest.conf'}",
        f"--config-include-path={home / 'conf.d'}",
        f"--stanza={DEMO_STANZA}",
        "info",
        "--output=json",
    ]
    result = run_command(as_postgres_user(argv), timeout=30, check=False)
    found = parse_info(result.stdout) if result.returncode == 0 else []
    if not found:
        said = (result.stderr or result.stdout).strip().splitlines()
        return f"error    {said[-1] if said else f'pgbackrest info exited with {result.returncode}'}"
    stanza = found[0]
    said = f"{len(stanza.backups)} backup set{'s' if len(stanza.backups) != 1 else ''}"
    said += f", WAL up to {stanza.newest_wal()}" if stanza.newest_wal() else ""
    if stanza.status_code == 0:
        return f"ok       stanza {stanza.name}: {said}"
    return f"warning  stanza {stanza.name}: {stanza.status_message} ({said})"


def logs(follow: bool) -> None:
    files = [*sorted(LOGS.glob("*.log")), log_file("demo-app"), *sorted((RUN / "pg").glob("*.log"))]
    files += [RUN / "redis" / "redis.log", *sorted((RUN / "pgbackrest").glob("*/log/*.log"))]
    files += sorted((RUN / "patroni").glob("*/data/log/*.log"))
    files = [f for f in files if f.exists()]
    if not files:
        print("No logs yet: run `make up` first.")
        return
    positions: dict[Path, int] = {}
    for path in files:
        text = path.read_bytes()
        tail = text.splitlines()[-20:]
        print(f"==> {path.relative_to(RUN)} <==")
        for line in tail:
            print(line.decode(errors="replace"))
        positions[path] = len(text)
    while follow:
        time.sleep(0.5)
        for path in files:
            size = path.stat().st_size
            if size > positions[path]:
                with open(path, "rb") as handle:
                    handle.seek(positions[path])
                    for line in handle.read().decode(errors="replace").splitlines():
                        print(f"{path.stem:15} | {line}")
                positions[path] = size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, help="the run directory (default: $HADR_RUN_DIR, else .run)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="set up and start everything in the background")
    sub.add_parser("run", help="like up, then show the logs until Ctrl-C, which stops everything")
    sub.add_parser("down", help="stop every process the environment started")
    sub.add_parser("status", help="what runs and where")
    restart_parser = sub.add_parser("restart", help="stop one process if it runs and start it again; returns once back")
    restart_parser.add_argument("name", choices=list(PROCESSES), help="e.g. demo-app")
    log_parser = sub.add_parser("logs", help="the last lines of every log")
    log_parser.add_argument("-f", "--follow", action="store_true")
    args = parser.parse_args()
    if args.run_dir:
        use_run_dir(args.run_dir)
    try:
        if args.command in {"up", "run"}:
            up()
            if args.command == "run":
                signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
                print("\nShowing the logs. Press Ctrl-C to stop everything.\n")
                try:
                    logs(follow=True)
                except (KeyboardInterrupt, SystemExit):
                    print("\nStopping…")
                    down()
        elif args.command == "down":
            down()
        elif args.command == "status":
            raise SystemExit(status())
        elif args.command == "restart":
            restart(args.name)
        elif args.command == "logs":
            logs(args.follow)
    except EnvError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
