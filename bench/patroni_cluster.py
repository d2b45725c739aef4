"""The Patroni benchmark's own cluster (bench/patroni_bench.py): a single-member etcd and two Patroni nodes with the
demo's configuration (hadr_portal.demo.patroni; fsync on here), on free ports under a new temporary directory,
Patroni running as the postgres user; never the demo's `demo-ha`. `stop()` ends every process started here and
removes the directory; `leftovers_remove()` does the same for what an interrupted run left."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from bench.failover_bench import free_port
from hadr_portal.adapters.commands import as_postgres_user
from hadr_portal.adapters.patroni import PatroniClient
from hadr_portal.adapters.pg.server import chown_to_postgres
from hadr_portal.demo import patroni as demo

DIR_PREFIX = "hadr-bench-patroni-"
SCOPE = "bench-patroni"


def wait_for(predicate: Callable[[], object], what: str, timeout: float, interval: float = 0.05) -> float:
    """Seconds until `predicate` held; raises after `timeout`."""
    started = time.perf_counter()
    while not predicate():
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"Patroni benchmark: no {what} within {timeout:g} s")
        time.sleep(interval)
    return time.perf_counter() - started


class BenchCluster:
    """etcd + two Patroni nodes under `root`; `stop()` ends every process started here and removes `root`."""

    def __init__(self, root: Path, keys: demo.Secrets) -> None:
        self.root, self.keys = root, keys
        self.etcd_port, self.etcd_peer_port = free_port(), free_port()
        self.members = [demo.Member(name, free_port(), free_port(), root / name) for name in ("b1", "b2")]
        self.patroni: dict[str, subprocess.Popen[bytes]] = {}
        self.etcd: subprocess.Popen[bytes] | None = None
        self.urls = [m.rest_url for m in self.members]
        self.auth = (keys.rest_user, keys.rest_password)
        self.api = PatroniClient(self.urls, username=keys.rest_user, password=keys.rest_password, action_timeout=90)

    def start(self) -> None:
        self.root.chmod(0o755)
        (self.root / "etcd").mkdir(mode=0o700)
        with open(self.root / "etcd.log", "wb") as log:
            self.etcd = subprocess.Popen(
                demo.etcd_argv(self.root / "etcd", self.etcd_port, self.etcd_peer_port),
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        for number, member in enumerate(self.members):
            self.patroni_start(member)
            if number == 0:  # the first initdb's and leads; the second clones it
                wait_for(lambda m=member: self.leader() == m.name, "leader", 120, 0.3)
        wait_for(lambda: self.healthy(sync=False), "streaming replica", 120, 0.3)
        with self.connect(self.member(self.leader())) as conn:
            conn.execute("CREATE TABLE witness (id bigint PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())")
            conn.execute("CREATE TABLE failover_probe (at timestamptz NOT NULL)")

    def patroni_start(self, member: demo.Member) -> int:
        """Start the member's Patroni; the size its log had before (what it writes from now on follows)."""
        member.home.mkdir(exist_ok=True)
        member.config_path.write_text(
            demo.member_config(member, scope=SCOPE, etcd_port=self.etcd_port, secrets=self.keys, fsync=True)
        )
        member.config_path.chmod(0o600)
        for path in (member.home, member.config_path):
            chown_to_postgres(path)
        log_path = member.home / "patroni.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        with open(log_path, "ab") as log:
            self.patroni[member.name] = subprocess.Popen(
                as_postgres_user(demo.patroni_argv(member)),
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
                cwd=member.home,
                env=os.environ | {"HOME": str(member.home)},
            )
        return offset

    def kill(self, member: demo.Member) -> None:
        """A lost node: SIGKILL to its Patroni's process group and to its postmaster, at once."""
        postmaster = postmaster_pid(member)
        process = self.patroni.pop(member.name)
        os.killpg(process.pid, signal.SIGKILL)
        if postmaster:
            os.kill(postmaster, signal.SIGKILL)
        process.wait(10)

    def stop(self) -> None:
        for process in self.patroni.values():  # Patroni stops its PostgreSQL on SIGTERM
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.patroni.values():
            try:
                process.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        for member in self.members:
            pid = postmaster_pid(member)
            if pid:  # a postmaster left by a killed Patroni: immediate shutdown
                os.kill(pid, signal.SIGQUIT)
                with contextlib.suppress(RuntimeError):
                    wait_for(lambda m=member: not postmaster_pid(m), "postmaster exit", 30)
        if self.etcd is not None and self.etcd.poll() is None:
            self.etcd.terminate()
            self.etcd.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)

    # --- state --------------------------------------------------------------------------------------------------

    def member(self, name: str) -> demo.Member:
        return next(m for m in self.members if m.name == name)

    def other(self, member: demo.Member) -> demo.Member:
        return next(m for m in self.members if m.name != member.name)

    def leader(self) -> str:
        return demo.leader_of(demo.cluster_view(self.urls, self.auth))

    def conninfo(self, *members: demo.Member, session: str = "read-write") -> str:
        """libpq's connection string to `members` (all by default), taking the first that gives `session`."""
        members = members or tuple(self.members)
        return make_conninfo(
            host=",".join("127.0.0.1" for _ in members),
            port=",".join(str(m.pg_port) for m in members),
            dbname="postgres",
            user="postgres",
            password=self.keys.superuser_password,
            target_session_attrs=session,
            connect_timeout=2,
        )

    def connect(self, member: demo.Member) -> psycopg.Connection[Any]:
        return psycopg.connect(self.conninfo(member, session="any"), autocommit=True)

    def streaming(self, leader: demo.Member, replica: demo.Member) -> bool:
        try:
            with self.connect(leader) as conn:
                row = conn.execute(
                    "SELECT state FROM pg_stat_replication WHERE application_name = %s", [replica.name]
                ).fetchone()
        except psycopg.Error:
            return False
        return row is not None and row[0] == "streaming"

    def healthy(self, *, sync: bool) -> bool:
        """One leader every API agrees on, the other member streaming from it, sync_standby iff `sync`."""
        view = demo.cluster_view(self.urls, self.auth)
        name = demo.leader_of(view)
        if not name or not demo.settled(self.urls, self.auth, replicas=1):
            return False
        other = self.other(self.member(name))
        role = next((m.get("role") for m in view.get("members", []) if m.get("name") == other.name), "")
        return (role == "sync_standby") == sync and self.streaming(self.member(name), other)

    def sync_mode_set(self, on: bool) -> None:
        self.api.config_patch({"synchronous_mode": on})
        wait_for(lambda: self.healthy(sync=on), f"synchronous_mode {on}", 60, 0.2)


def postmaster_pid(member: demo.Member) -> int:
    """The member's running postmaster (0: none), checked against its command line."""
    try:
        pid = int((member.data_dir / "postmaster.pid").read_text().split()[0])
        running = str(member.data_dir) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError, IndexError):
        return 0
    return pid if running else 0


def leftovers_remove() -> None:
    """What an interrupted run left: the processes started under its directory (by their pids), the directory."""
    for root in Path(tempfile.gettempdir()).glob(f"{DIR_PREFIX}*"):
        for proc in Path("/proc").glob("[0-9]*"):
            with contextlib.suppress(OSError):
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
                if str(root) in cmdline and int(proc.name) != os.getpid():
                    os.kill(int(proc.name), signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


def versions() -> str:
    patroni = subprocess.run([demo.SYSTEM_PYTHON, demo.PATRONI, "--version"], capture_output=True, text=True)
    etcd = subprocess.run([demo.ETCD, "--version"], capture_output=True, text=True)
    return f"{patroni.stdout.strip()}, {etcd.stdout.splitlines()[0].replace('Version: ', '').strip()}"
