"""The demo's high-availability cluster: a single-member etcd and two Patroni-managed PostgreSQL 15 nodes, from
the Debian packages (`patroni` 3.0.2, `etcd-server` 3.4). `make up` starts it as the catalog's `demo-ha`
cluster, and the test suite starts the same configuration on free ports (tests/infra/patroni.py).

The timings, and why they are safe (Patroni 3.0.2; later releases document a `ttl` floor of 20 s):

    ttl 10            the leader key lives 10 s without being renewed: a dead leader is replaced ~10 s later
    loop_wait 2       each Patroni renews (or looks for) the key every 2 s: 5 renewals inside one ttl
    retry_timeout 4   etcd or PostgreSQL unanswered for 4 s counts as lost: a leader that cannot renew demotes
                      itself (loop_wait + 2 × retry_timeout = 10 ≤ ttl), before anyone else may take the key

so two leaders can never both accept writes: the old one stops being primary before its key expires. On one
machine etcd answers in milliseconds; across zones these would be the defaults (30 / 10 / 10).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

PATRONI = "/usr/bin/patroni"
PATRONICTL = "/usr/bin/patronictl"
ETCD = "/usr/bin/etcd"
PG_BIN_DIR = "/usr/lib/postgresql/15/bin"
# the packaged Patroni runs on the system's Python, never the portal's virtual environment
SYSTEM_PYTHON = "/usr/bin/python3"

TTL, LOOP_WAIT, RETRY_TIMEOUT = 10, 2, 4
MAXIMUM_LAG_ON_FAILOVER = 1024 * 1024  # a replica further behind than 1 MiB is never promoted by itself

NODE_CONFIG = """\
scope: {scope}
name: {name}
restapi:
  listen: 127.0.0.1:{rest_port}
  connect_address: 127.0.0.1:{rest_port}
  authentication: {{username: {rest_user}, password: "{rest_password}"}}
etcd3:
  hosts: 127.0.0.1:{etcd_port}
bootstrap:
  dcs:
    ttl: {ttl}
    loop_wait: {loop_wait}
    retry_timeout: {retry_timeout}
    maximum_lag_on_failover: {maximum_lag}
    synchronous_mode: {synchronous_mode}
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters: {{wal_level: replica, hot_standby: "on", wal_log_hints: "on", max_wal_senders: 10,
                   max_replication_slots: 10{extra_parameters}}}
  initdb: [{{encoding: UTF8}}, data-checksums]
postgresql:
  # the whole of pg_hba.conf (under bootstrap: it would only be appended to initdb's `trust` lines)
  pg_hba:
    - local all all peer
    - host replication replicator 127.0.0.1/32 scram-sha-256
    - host all all 127.0.0.1/32 scram-sha-256
  listen: 127.0.0.1:{pg_port}
  connect_address: 127.0.0.1:{pg_port}
  data_dir: {data_dir}
  bin_dir: {bin_dir}
  pgpass: {home}/pgpass
  authentication:
    superuser: {{username: postgres, password: "{superuser_password}"}}
    replication: {{username: replicator, password: "{replication_password}"}}
    rewind: {{username: postgres, password: "{superuser_password}"}}
  parameters: {{unix_socket_directories: "{home}"}}
watchdog: {{mode: "off"}}
"""


@dataclass(frozen=True)
class Member:
    """One Patroni node: its name, its REST API and PostgreSQL ports, and its directory (config, data, socket)."""

    name: str
    rest_port: int
    pg_port: int
    home: Path

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def config_path(self) -> Path:
        return self.home / "patroni.yml"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"


@dataclass(frozen=True)
class Secrets:
    rest_user: str
    rest_password: str
    superuser_password: str
    replication_password: str


def member_config(
    member: Member,
    *,
    scope: str,
    etcd_port: int,
    secrets: Secrets,
    synchronous_mode: bool = False,
    fsync: bool = True,
) -> str:
    """The member's patroni.yml (it holds passwords: written mode 600, owned by the postgres user)."""
    return NODE_CONFIG.format(
        scope=scope,
        name=member.name,
        rest_port=member.rest_port,
        pg_port=member.pg_port,
        etcd_port=etcd_port,
        ttl=TTL,
        loop_wait=LOOP_WAIT,
        retry_timeout=RETRY_TIMEOUT,
        maximum_lag=MAXIMUM_LAG_ON_FAILOVER,
        synchronous_mode="true" if synchronous_mode else "false",
        extra_parameters="" if fsync else ', fsync: "off"',
        data_dir=member.data_dir,
        bin_dir=PG_BIN_DIR,
        home=member.home,
        rest_user=secrets.rest_user,
        rest_password=secrets.rest_password,
        superuser_password=secrets.superuser_password,
        replication_password=secrets.replication_password,
    )


def etcd_argv(data_dir: Path, port: int, peer_port: int) -> list[str]:
    """A single-member etcd on loopback (the v3 API Patroni's `etcd3` speaks)."""
    return [
        ETCD, "--name", "e1", "--data-dir", str(data_dir),
        "--listen-client-urls", f"http://127.0.0.1:{port}",
        "--advertise-client-urls", f"http://127.0.0.1:{port}",
        "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
        "--initial-cluster", f"e1=http://127.0.0.1:{peer_port}",
    ]  # fmt: skip


def patroni_argv(member: Member) -> list[str]:
    return [SYSTEM_PYTHON, PATRONI, str(member.config_path)]


def cluster_view(urls: Sequence[str], auth: tuple[str, str], *, timeout: float = 2.0) -> dict[str, Any]:
    """`GET /cluster` from the first member that answers ({} when none does)."""
    for url in urls:
        try:
            return dict(httpx.get(f"{url}/cluster", auth=auth, timeout=timeout).json())
        except (httpx.HTTPError, ValueError):
            continue
    return {}


def leader_of(view: dict[str, Any]) -> str:
    return next((str(m["name"]) for m in view.get("members", []) if m.get("role") == "leader"), "")


def settled(urls: Sequence[str], auth: tuple[str, str], *, replicas: int) -> bool:
    """Every member's API sees the same leader and `replicas` streaming replicas with a known lag (its cached view
    of etcd has caught up): the cluster is ready for writes and for a switchover."""
    views = []
    for url in urls:
        try:
            views.append(httpx.get(f"{url}/cluster", auth=auth, timeout=2).json())
        except (httpx.HTTPError, ValueError):
            return False
    leaders = {m.get("name") for view in views for m in view.get("members", []) if m.get("role") == "leader"}
    for view in views:
        lags = [m.get("lag") for m in view.get("members", []) if m.get("role") in ("replica", "sync_standby")]
        if len(lags) < replicas or not all(isinstance(lag, int) for lag in lags):
            return False
    return len(leaders) == 1
