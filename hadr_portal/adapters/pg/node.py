"""Changing a PostgreSQL node's role: fence it, promote it, prove it takes writes, rebuild it as a replica.

A node controller says how the portal stops, starts and rebuilds one node:

- `pg_ctl`  — a data directory on this machine (the local demo, a portal running beside its database):
              stop/start with pg_ctl, rebuild with pg_rewind and, when that cannot work, pg_basebackup.
- `command` — anything else (ssh, systemctl, an orchestrator's CLI): argv lists from the catalog, run
              without a shell, as the command user when the worker is root, with only the variables `env`
              names (never the portal's own: `env_problems`); the rebuild command also gets the new primary's
              address in its environment.

Without a controller the portal can still fence a reachable primary through SQL (read-only by default
and its client sessions ended) — weaker than stopping it, and said so where it is used.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from hadr_portal.adapters.commands import (
    DEFAULT_COMMAND_USER,
    CommandFailed,
    as_postgres_user,
    env_problems,
    run_command,
    run_program,
)
from hadr_portal.adapters.controllers import ARGV, NAMES, TableReader, is_argv, is_env_list

from .connection import NodeAddress, autocommit_session
from .server import PG_BIN, LocalInstance, chown_to_postgres

Log = Callable[[str], None]

# Configuration files a rebuild keeps from the node itself (pg_rewind and pg_basebackup copy the source's).
NODE_CONFIG_FILES = ("postgresql.conf", "hadr.conf", "pg_hba.conf", "pg_ident.conf", "postgresql.auto.conf")
STANDBY_KEYS = ("primary_conninfo", "primary_slot_name")


class NodeActionFailed(Exception):
    """Stopping, starting, promoting or rebuilding a node did not work; the message says why."""


def lsn_int(lsn: str | None) -> int | None:
    """'16/B374D848' as a byte position, for arithmetic on WAL locations."""
    if not lsn:
        return None
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def _connect(conninfo: str, timeout: float) -> psycopg.Connection[Any]:
    return autocommit_session(conninfo, timeout=timeout, application="hadr-portal-failover")


def promote(conninfo: str, *, wait_seconds: int = 60) -> bool:
    """`pg_promote()` and wait for the end of recovery. False if the node was already a primary."""
    with _connect(conninfo, wait_seconds + 5) as conn:
        if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:  # type: ignore[index]
            return False
        done = conn.execute("SELECT pg_promote(true, %s)", [wait_seconds]).fetchone()[0]  # type: ignore[index]
    if not done:
        raise NodeActionFailed(f"pg_promote() did not finish within {wait_seconds} s")
    return True


def write_probe(conninfo: str, *, timeout: float = 5.0) -> int:
    """Commit a real write (a temporary table and a transaction id) and return that id.

    Raises psycopg errors while the node is read-only, in recovery or unreachable.
    """
    with _connect(conninfo, timeout) as conn, conn.transaction():
        conn.execute("SET TRANSACTION READ WRITE")
        conn.execute("CREATE TEMPORARY TABLE hadr_write_probe (at timestamptz) ON COMMIT DROP")
        conn.execute("INSERT INTO hadr_write_probe VALUES (now())")
        return int(conn.execute("SELECT txid_current()").fetchone()[0])  # type: ignore[index]


def wait_writable(conninfo: str, *, timeout: float = 30.0, interval: float = 0.05) -> int:
    """Retry `write_probe` until it succeeds; the transaction id of the first write that committed."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return write_probe(conninfo, timeout=min(5.0, timeout))
        except psycopg.Error as exc:
            if time.monotonic() >= deadline:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise NodeActionFailed(f"no write succeeded within {timeout:.0f} s: {first}") from None
            time.sleep(interval)


def accepts_writes(conninfo: str, *, timeout: float = 3.0) -> bool | None:
    """True if a new session may write, False if the node refuses writes, None if it cannot be reached."""
    try:
        with _connect(conninfo, timeout) as conn:
            in_recovery, read_only = conn.execute(
                "SELECT pg_is_in_recovery(), current_setting('transaction_read_only')"
            ).fetchone()  # type: ignore[misc]
    except psycopg.OperationalError:
        return None
    return not in_recovery and read_only == "off"


def fence_read_only(conninfo: str, *, timeout: float = 10.0) -> int:
    """Make a running primary refuse ordinary writes: `default_transaction_read_only = on` for every new
    transaction, and every client session ended. Returns how many sessions were ended.

    A session that explicitly asks for a read-write transaction could still write: this is the fallback
    when the node has no controller to stop it with.
    """
    with _connect(conninfo, timeout) as conn:
        conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
        conn.execute("SELECT pg_reload_conf()")
        time.sleep(0.2)  # the postmaster signals the backends; let them read the new setting
        ended = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchone()[0]  # type: ignore[index]
    return int(ended)


def ensure_slot(conninfo: str, slot: str, *, timeout: float = 10.0) -> bool:
    """A physical replication slot on the primary for a replica; True if it had to be created."""
    with _connect(conninfo, timeout) as conn:
        if conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", [slot]).fetchone():
            return False
        conn.execute("SELECT pg_create_physical_replication_slot(%s)", [slot])
    return True


def is_streaming(conninfo: str, *, timeout: float = 3.0) -> bool:
    """The node is a replica whose WAL receiver streams from its primary."""
    try:
        with _connect(conninfo, timeout) as conn:
            row = conn.execute(
                "SELECT pg_is_in_recovery() AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')"
            ).fetchone()
    except psycopg.OperationalError:
        return False
    return bool(row and row[0])


def wait_streaming(conninfo: str, *, timeout: float = 120.0, interval: float = 0.5) -> float:
    """Wait until the node streams from its primary; the seconds it took."""
    started = time.monotonic()
    while not is_streaming(conninfo):
        if time.monotonic() - started >= timeout:
            raise NodeActionFailed(f"the node did not start streaming within {timeout:.0f} s")
        time.sleep(interval)
    return time.monotonic() - started


class NodeController:
    """How the portal stops, starts and rebuilds one node."""

    kind = "none"

    def describe(self) -> str:
        return self.kind

    def is_running(self) -> bool | None:
        """True/False when the controller can tell, None when it cannot."""
        return None

    def stop(self, *, timeout: float = 60) -> str:
        raise NodeActionFailed("this node has no controller that can stop it")

    def start(self, *, timeout: float = 60) -> str:
        raise NodeActionFailed("this node has no controller that can start it")

    def rebuild(self, *, source: NodeAddress, slot: str, port: int, log: Log, timeout: float = 3600) -> str:
        raise NodeActionFailed("this node has no controller that can rebuild it")


@dataclass(frozen=True)
class PgCtlController(NodeController):
    """A data directory on this machine, run by `pg_ctl` as the `postgres` user."""

    data_directory: Path
    pg_bin: Path = PG_BIN
    kind = "pg_ctl"

    def describe(self) -> str:
        return f"pg_ctl -D {self.data_directory}"

    def _instance(self, port: int = 0) -> LocalInstance:
        return LocalInstance(self.data_directory, port)

    def is_running(self) -> bool | None:
        instance = self._instance()
        return instance.exists() and instance.is_running()

    def stop(self, *, timeout: float = 60) -> str:
        instance = self._instance()
        if not instance.exists():
            raise NodeActionFailed(f"no PostgreSQL data directory at {self.data_directory}")
        try:
            instance.stop(mode="fast", timeout=int(timeout))
        except CommandFailed as exc:
            raise NodeActionFailed(str(exc)) from None
        return f"stopped with pg_ctl stop -m fast -D {self.data_directory}"

    def start(self, *, timeout: float = 60) -> str:
        instance = self._instance()
        try:
            instance.ensure_log_file()
            instance.start(timeout=int(timeout))
        except CommandFailed as exc:
            raise NodeActionFailed(f"{exc} (server log: {instance.log_file})") from None
        return f"started with pg_ctl start -D {self.data_directory}"

    def rebuild(self, *, source: NodeAddress, slot: str, port: int, log: Log, timeout: float = 3600) -> str:
        """Stop the node, rewind it onto `source` (or copy it afresh), and configure it as a standby that
        streams through `slot`. Its own configuration files are kept. Returns the method used."""
        data = self.data_directory
        if not (data / "PG_VERSION").is_file():
            raise NodeActionFailed(f"no PostgreSQL data directory at {data}")
        if self.is_running():
            log(self.stop())
        kept = {name: (data / name).read_bytes() for name in NODE_CONFIG_FILES if (data / name).is_file()}
        env = {"PGPASSWORD": source.password} if source.password else {}
        try:
            run_command(
                as_postgres_user(
                    [str(self.pg_bin / "pg_rewind"), "--target-pgdata", str(data), "--source-server", source.public()]
                ),
                env=env,
                timeout=timeout,
            )
            method = "pg_rewind"
        except CommandFailed as exc:
            log(f"pg_rewind could not rewind the node ({exc}); copying it afresh with pg_basebackup")
            self._basebackup(source, env, timeout)
            method = "pg_basebackup"
        for name, content in kept.items():
            (data / name).write_bytes(content)
        _standby_configure(data, source, slot)
        return method

    def _basebackup(self, source: NodeAddress, env: Mapping[str, str], timeout: float) -> None:
        data = self.data_directory
        aside = data.with_name(f"{data.name}.before-rebuild")
        shutil.rmtree(aside, ignore_errors=True)
        data.rename(aside)
        try:
            run_command(
                as_postgres_user(
                    [
                        str(self.pg_bin / "pg_basebackup"),
                        "--dbname",
                        source.public(),
                        "--pgdata",
                        str(data),
                        "--wal-method=stream",
                        "--checkpoint=fast",
                    ]
                ),
                env=env,
                timeout=timeout,
            )
        except CommandFailed:
            shutil.rmtree(data, ignore_errors=True)
            aside.rename(data)  # as it was: a failed rebuild leaves the old files, not an empty directory
            raise
        shutil.rmtree(aside, ignore_errors=True)


def _standby_configure(data: Path, source: NodeAddress, slot: str) -> None:
    """Follow `source` through `slot`: primary_conninfo and primary_slot_name in postgresql.auto.conf
    (replacing earlier ones), and standby.signal."""
    auto = data / "postgresql.auto.conf"
    lines = auto.read_text().splitlines() if auto.is_file() else []
    kept = [line for line in lines if line.split("=", 1)[0].strip() not in STANDBY_KEYS]
    conninfo = source.conninfo(application_name=slot).replace("'", "''")
    kept += [f"primary_conninfo = '{conninfo}'", f"primary_slot_name = '{slot}'"]
    auto.write_text("\n".join(kept) + "\n")
    auto.chmod(0o600)
    signal = data / "standby.signal"
    signal.touch()
    for path in (auto, signal):
        chown_to_postgres(path)


@dataclass(frozen=True)
class CommandController(NodeController):
    """Programs from the catalog, run as `run_as` when the worker is root, given the variables `env` names. The
    rebuild command finds the new primary in HADR_PRIMARY_HOST, HADR_PRIMARY_PORT and HADR_REPLICATION_SLOT."""

    stop_argv: tuple[str, ...] = ()
    start_argv: tuple[str, ...] = ()
    rebuild_argv: tuple[str, ...] = ()
    timeout_seconds: float = 120
    env: tuple[str, ...] = ()
    run_as: str = DEFAULT_COMMAND_USER
    kind = "command"

    def describe(self) -> str:
        return "command " + " / ".join(Path(argv[0]).name for argv in (self.stop_argv, self.start_argv) if argv)

    def _run(self, what: str, argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 0) -> str:
        if not argv:
            raise NodeActionFailed(f"the node's command controller has no {what} command")
        passed = {name: os.environ[name] for name in self.env if name in os.environ} | dict(env or {})
        try:
            result = run_program(argv, user=self.run_as, timeout=timeout or self.timeout_seconds, env=passed)
        except CommandFailed as exc:
            raise NodeActionFailed(str(exc)) from None
        output = (result.stdout + result.stderr).strip()
        return f"{what}: {' '.join(argv)}" + (f"\n{output}" if output else "")

    def stop(self, *, timeout: float = 60) -> str:
        return self._run("stop", self.stop_argv)

    def start(self, *, timeout: float = 60) -> str:
        return self._run("start", self.start_argv)

    def rebuild(self, *, source: NodeAddress, slot: str, port: int, log: Log, timeout: float = 3600) -> str:
        env = {"HADR_PRIMARY_HOST": source.host, "HADR_PRIMARY_PORT": str(source.port), "HADR_REPLICATION_SLOT": slot}
        log(self._run("rebuild", self.rebuild_argv, env, timeout))
        return "command"


NODE_CONTROLLERS = ("command", "pg_ctl")


def controller_problems(config: Mapping[str, Any]) -> list[str]:
    """What is wrong with a node's controller table, in words (empty when it is usable or absent)."""
    if not config:
        return []
    kind = config.get("controller")
    if kind not in NODE_CONTROLLERS:
        said = "required" if kind is None else f"unknown controller {kind!r}"
        return [f"controller: {said}; one of {', '.join(NODE_CONTROLLERS)}."]
    read = TableReader(config, kind, f"a node's {kind} controller")
    if kind == "pg_ctl":
        read.take("data_directory", is_absolute_path, "an absolute path to the data directory", required=True)
        read.take("pg_bin", is_absolute_path, "an absolute path to PostgreSQL's programs")
        read.take("socket_directory", is_absolute_path, "an absolute path to the server's Unix socket directory")
    else:
        for key in ("stop", "start", "rebuild"):
            read.take(key, is_argv, ARGV)
        read.seconds("timeout_seconds", 120, low=1)
        read.problems += env_problems(read.take("env", is_env_list, NAMES) or ())
    read.refuse_unknown()
    return read.problems


def hook_problems(config: Mapping[str, Any]) -> list[str]:
    """What is wrong with a cluster's post-failover hook table (empty when usable or absent)."""
    if not config:
        return []
    read = TableReader(config, "hook", "the post-failover hook")
    read.known.discard("controller")
    read.take("argv", is_argv, ARGV, required=True)
    read.seconds("timeout_seconds", 60, low=1)
    read.problems += env_problems(read.take("env", is_env_list, NAMES) or ())
    read.refuse_unknown()
    return read.problems


def is_absolute_path(value: Any) -> bool:
    return isinstance(value, str) and Path(value).is_absolute()


def controller_from_config(config: Mapping[str, Any], *, command_user: str = DEFAULT_COMMAND_USER) -> NodeController:
    """The controller a node's catalog entry describes (a controller that can do nothing when empty); a command
    controller's programs run as `command_user` when the worker is root (pg_ctl always as `postgres`)."""
    problems = controller_problems(config)
    if problems:
        raise NodeActionFailed(" ".join(problems))
    if not config:
        return NodeController()
    if config["controller"] == "pg_ctl":
        return PgCtlController(Path(config["data_directory"]), Path(config.get("pg_bin") or PG_BIN))
    return CommandController(
        stop_argv=tuple(config.get("stop") or ()),
        start_argv=tuple(config.get("start") or ()),
        rebuild_argv=tuple(config.get("rebuild") or ()),
        timeout_seconds=float(config.get("timeout_seconds", 120)),
        env=tuple(config.get("env") or ()),
        run_as=command_user,
    )
