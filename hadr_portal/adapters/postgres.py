"""Talking to a managed PostgreSQL node: connect, ask its role, position and load."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

# Errors worth retrying: the server is starting, restarting or briefly unreachable.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (psycopg.OperationalError,)


@dataclass(frozen=True)
class NodeAddress:
    host: str
    port: int
    dbname: str
    user: str
    password: str = field(default="", repr=False)

    def conninfo(self, **extra: Any) -> str:
        params = {"host": self.host, "port": self.port, "dbname": self.dbname, "user": self.user, **extra}
        if self.password:
            params["password"] = self.password
        return make_conninfo(**params)


@dataclass(frozen=True)
class NodeProbe:
    """What one node said about itself."""

    reachable: bool
    latency_ms: float
    role: str = "unknown"  # "primary" | "replica" | "unknown"
    server_version: str = ""
    lsn: str = ""  # current WAL LSN on a primary, last replayed on a replica
    replay_lag_bytes: int | None = None  # replica only: received minus replayed
    connections: int | None = None
    max_connections: int | None = None
    replicas: list[dict[str, Any]] = field(default_factory=list)  # primary only: pg_stat_replication rows
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def probe_node(address: NodeAddress, *, timeout: float = 5.0) -> NodeProbe:
    """Connect and read role, version, LSN and connection use. Raises psycopg.OperationalError."""
    started = time.monotonic()
    with psycopg.connect(
        address.conninfo(connect_timeout=max(1, int(timeout)), application_name="hadr-portal"),
        autocommit=True,
        options=f"-c statement_timeout={int(timeout * 1000)}",
    ) as conn:
        in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]  # type: ignore[index]
        version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        used, maximum = conn.execute(
            "SELECT (SELECT count(*) FROM pg_stat_activity), current_setting('max_connections')::int"
        ).fetchone()  # type: ignore[misc]
        replicas: list[dict[str, Any]] = []
        lag: int | None = None
        if in_recovery:
            lsn, lag = conn.execute(
                "SELECT pg_last_wal_replay_lsn()::text,"
                " pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint"
            ).fetchone()  # type: ignore[misc]
        else:
            lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]  # type: ignore[index]
            cursor = conn.execute(
                "SELECT application_name, client_addr::text, state, sent_lsn::text, replay_lsn::text,"
                " pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS lag_bytes"
                " FROM pg_stat_replication"
            )
            columns = [c.name for c in cursor.description or []]
            replicas = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    return NodeProbe(
        reachable=True,
        latency_ms=round((time.monotonic() - started) * 1000, 1),
        role="replica" if in_recovery else "primary",
        server_version=version,
        lsn=lsn or "",
        replay_lag_bytes=lag,
        connections=used,
        max_connections=maximum,
        replicas=replicas,
    )
