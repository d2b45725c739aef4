"""A real Patroni cluster for the tests that need one: a single-member etcd and two Patroni-managed PostgreSQL 15
nodes (the Debian packages), on free ports under the test root, REST API with authentication on loopback.
`ttl` 10, `loop_wait` 2, `retry_timeout` 4, as the local environment will run it. Started on first use
(tests/infra/plugin.py), stopped with the other servers."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

PATRONI = "/usr/bin/patroni"
ETCD = "/usr/bin/etcd"
REST_USER, REST_PASSWORD = "patroni", "rest-secret-for-tests"
SUPERUSER_PASSWORD = "su-secret-for-tests"

NODE_CONFIG = """\
scope: {scope}
name: {name}
restapi:
  listen: 127.0.0.1:{rest_port}
  connect_address: 127.0.0.1:{rest_port}
  authentication: {{username: {rest_user}, password: {rest_password}}}
etcd3:
  hosts: 127.0.0.1:{etcd_port}
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 2
    retry_timeout: 4
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters: {{wal_level: replica, hot_standby: "on", wal_log_hints: "on", max_wal_senders: 10,
                   max_replication_slots: 10, fsync: "off"}}
  initdb: [{{encoding: UTF8}}, data-checksums]
  pg_hba:
    - host replication replicator 127.0.0.1/32 scram-sha-256
    - host all all 127.0.0.1/32 scram-sha-256
    - local all all peer
postgresql:
  listen: 127.0.0.1:{pg_port}
  connect_address: 127.0.0.1:{pg_port}
  data_dir: {home}/data
  bin_dir: /usr/lib/postgresql/15/bin
  pgpass: {home}/pgpass
  authentication:
    superuser: {{username: postgres, password: {superuser_password}}}
    replication: {{username: replicator, password: replicator-secret-for-tests}}
    rewind: {{username: postgres, password: {superuser_password}}}
  parameters: {{unix_socket_directories: "{home}"}}
watchdog: {{mode: "off"}}
"""


@dataclass
class PatroniNode:
    name: str
    home: Path
    rest_port: int
    pg_port: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"


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

    def start(self) -> None:
        for program in (PATRONI, ETCD):
            if not Path(program).exists():
                raise RuntimeError(f"{program} is missing: `make install-dev` installs patroni and etcd-server")
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        (self.root / "etcd").mkdir(exist_ok=True)
        self.etcd = subprocess.Popen(
            [
                ETCD, "--name", "e1", "--data-dir", str(self.root / "etcd"),
                "--listen-client-urls", f"http://127.0.0.1:{self.etcd_port}",
                "--advertise-client-urls", f"http://127.0.0.1:{self.etcd_port}",
                "--listen-peer-urls", f"http://127.0.0.1:{self.etcd_peer_port}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.etcd_peer_port}",
                "--initial-cluster", f"e1=http://127.0.0.1:{self.etcd_peer_port}",
            ],
            stdout=subprocess.DEVNULL, stderr=open(self.root / "etcd.log", "wb"), start_new_session=True,
        )  # fmt: skip
        postgres = pwd.getpwnam("postgres")
        for number, node in enumerate(self.nodes):
            node.home.mkdir(parents=True, exist_ok=True)
            config = node.home / "patroni.yml"
            config.write_text(
                NODE_CONFIG.format(
                    scope=self.scope, name=node.name, rest_port=node.rest_port, pg_port=node.pg_port,
                    etcd_port=self.etcd_port, home=node.home, rest_user=REST_USER, rest_password=REST_PASSWORD,
                    superuser_password=SUPERUSER_PASSWORD,
                )
            )  # fmt: skip
            for path in (node.home, config):
                os.chown(path, postgres.pw_uid, postgres.pw_gid)
            node.process = subprocess.Popen(
                ["runuser", "-u", "postgres", "--", "/usr/bin/python3", PATRONI, str(config)],
                stdout=subprocess.DEVNULL, stderr=open(node.home / "patroni.log", "wb"), start_new_session=True,
                cwd=str(node.home),
            )  # fmt: skip
            self.wait(lambda node=node: self.member_state(node.name) == "running", f"{node.name} running", 60)
            if number == 0:
                self.wait(lambda: self.leader() == self.nodes[0].name, "a leader", 30)
        # every member's API sees the same leader and a streaming replica (its cached view of etcd caught up)
        self.wait(self._settled, "agreement on the leader", 30)

    def _settled(self) -> bool:
        views = []
        for url in self.rest_urls:
            try:
                views.append(httpx.get(f"{url}/cluster", auth=(REST_USER, REST_PASSWORD), timeout=2).json())
            except (httpx.HTTPError, ValueError):
                return False
        leaders = {m.get("name") for view in views for m in view.get("members", []) if m.get("role") == "leader"}
        lags = [m.get("lag") for view in views for m in view.get("members", []) if m.get("role") == "replica"]
        return len(leaders) == 1 and bool(lags) and all(isinstance(lag, int) for lag in lags)

    def member_state(self, name: str) -> str:
        for member in self._cluster().get("members", []):
            if member.get("name") == name:
                return str(member.get("state", ""))
        return ""

    def leader(self) -> str:
        for member in self._cluster().get("members", []):
            if member.get("role") == "leader":
                return str(member.get("name"))
        return ""

    def _cluster(self) -> dict:  # type: ignore[type-arg]
        for url in self.rest_urls:
            try:
                return httpx.get(f"{url}/cluster", auth=(REST_USER, REST_PASSWORD), timeout=2).json()
            except (httpx.HTTPError, ValueError):
                continue
        return {}

    @staticmethod
    def wait(predicate, what: str, timeout: float) -> None:  # type: ignore[no-untyped-def]
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
            data = node.home / "data"
            if (data / "postmaster.pid").exists():
                subprocess.run(
                    ["runuser", "-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl", "stop", "-m", "immediate",
                     "-D", str(data)], capture_output=True, check=False,
                )  # fmt: skip
        if self.etcd is not None and self.etcd.poll() is None:
            self.etcd.terminate()
            self.etcd.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)
