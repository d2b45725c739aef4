"""A real Patroni cluster for the tests that need one: the demo's configuration (hadr_portal.demo.patroni: a
single-member etcd and two Patroni-managed PostgreSQL 15 nodes, the Debian packages) on free ports under the test
root, REST API with authentication on loopback. Started on first use (tests/infra/plugin.py), stopped with the
other servers. `fsync` is off here only: the tests' data is thrown away."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from hadr_portal.demo import patroni as demo

REST_USER, REST_PASSWORD = "patroni", "rest-secret-for-tests"
SUPERUSER_PASSWORD = "su-secret-for-tests"
SECRETS = demo.Secrets(REST_USER, REST_PASSWORD, SUPERUSER_PASSWORD, "replicator-secret-for-tests")


@dataclass
class PatroniNode:
    member: demo.Member
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.member.name

    @property
    def rest_url(self) -> str:
        return self.member.rest_url

    @property
    def pg_port(self) -> int:
        return self.member.pg_port


@dataclass
class PatroniCluster:
    root: Path
    scope: str
    etcd_port: int
    etcd_peer_port: int
    nodes: list[PatroniNode]
    etcd: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def rest_urls(self) -> list[str]:
        return [node.rest_url for node in self.nodes]

    @property
    def auth(self) -> tuple[str, str]:
        return (REST_USER, REST_PASSWORD)

    def start(self) -> None:
        for program in (demo.PATRONI, demo.ETCD):
            if not Path(program).exists():
                raise RuntimeError(f"{program} is missing: `make install-dev` installs patroni and etcd-server")
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        (self.root / "etcd").mkdir(exist_ok=True)
        self.etcd = subprocess.Popen(
            demo.etcd_argv(self.root / "etcd", self.etcd_port, self.etcd_peer_port),
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "etcd.log", "wb"),
            start_new_session=True,
        )
        for number, node in enumerate(self.nodes):
            self.node_start(node)
            self.wait(lambda node=node: self.member_state(node.name) == "running", f"{node.name} running", 60)
            if number == 0:
                self.wait(lambda: self.leader() == self.nodes[0].name, "a leader", 30)
        self.wait(self.ready, "agreement on the leader and a streaming replica", 60)

    def ready(self) -> bool:
        """Settled (one leader every member agrees on) and every replica's WAL receiver streaming: Patroni reports a
        replica's lag before the leader made its slot, when it is not streaming yet."""
        return demo.settled(self.rest_urls, self.auth, replicas=len(self.nodes) - 1) and all(
            self.receiving(node) for node in self.nodes if node.name != self.leader()
        )

    def receiving(self, node: PatroniNode) -> bool:
        conninfo = f"host=127.0.0.1 port={node.pg_port} dbname=postgres user=postgres password={SUPERUSER_PASSWORD}"
        try:
            with psycopg.connect(conninfo, connect_timeout=2) as conn:
                row = conn.execute("SELECT status FROM pg_stat_wal_receiver").fetchone()
        except psycopg.Error:
            return False
        return row is not None and row[0] == "streaming"

    def node_start(self, node: PatroniNode) -> None:
        postgres = pwd.getpwnam("postgres")
        member = node.member
        member.home.mkdir(parents=True, exist_ok=True)
        member.config_path.write_text(
            demo.member_config(member, scope=self.scope, etcd_port=self.etcd_port, secrets=SECRETS, fsync=False)
        )
        member.config_path.chmod(0o600)
        for path in (member.home, member.config_path):
            os.chown(path, postgres.pw_uid, postgres.pw_gid)
        node.process = subprocess.Popen(
            ["runuser", "-u", "postgres", "--", *demo.patroni_argv(member)],
            stdout=subprocess.DEVNULL,
            stderr=open(member.home / "patroni.log", "ab"),
            start_new_session=True,
            cwd=str(member.home),
        )

    def member_state(self, name: str) -> str:
        for member in demo.cluster_view(self.rest_urls, self.auth).get("members", []):
            if member.get("name") == name:
                return str(member.get("state", ""))
        return ""

    def leader(self) -> str:
        return demo.leader_of(demo.cluster_view(self.rest_urls, self.auth))

    @staticmethod
    def wait(predicate: Callable[[], object], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.3)
        raise RuntimeError(f"Patroni test cluster: no {what} within {timeout:g} s")

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                os.killpg(node.process.pid, 15)
                try:
                    node.process.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(node.process.pid, 9)
            data = node.member.data_dir
            if (data / "postmaster.pid").exists():
                subprocess.run(
                    ["runuser", "-u", "postgres", "--", f"{demo.PG_BIN_DIR}/pg_ctl", "stop", "-m", "immediate",
                     "-D", str(data)], capture_output=True, check=False,
                )  # fmt: skip
        if self.etcd is not None and self.etcd.poll() is None:
            self.etcd.terminate()
            self.etcd.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)
