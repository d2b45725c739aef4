"""The PostgreSQL probe: a node's role, connection use and replication health."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

import psycopg

from hadr_portal.adapters.pg.connection import dsn_valid, without_dsn

from .base import DEGRADED, DOWN, UP, ProbeResult, format_bytes, level_of, ms_since, run_bounded, worst_of


def probe_postgres(
    *,
    conninfo: str,
    timeout: float,
    lag_warning_bytes: int = 16 * 1024 * 1024,
    lag_critical_bytes: int = 256 * 1024 * 1024,
    connections_warning_pct: int = 80,
    connections_critical_pct: int = 95,
    expected_replicas: int = 0,
) -> ProbeResult:
    """Role, connection use and replication health of one node.

    On a primary, `lag_bytes` in data is the largest replay lag among its replicas; on a
    replica it is received minus replayed WAL. `user` and `superuser` say which role the probe
    connected as. The message never carries the conninfo or its password.
    """
    if not dsn_valid(conninfo):
        return ProbeResult(DOWN, "not a valid PostgreSQL DSN (postgresql://… or key=value pairs)")

    def work() -> ProbeResult:
        started = time.monotonic()
        with psycopg.connect(
            conninfo,
            autocommit=True,
            connect_timeout=max(1, math.ceil(timeout)),
            application_name="hadr-portal-probe",
            options=f"-c statement_timeout={max(1, int(timeout * 1000))}",
        ) as conn:
            in_recovery, version, used, maximum, user, superuser = _one(
                conn,
                "SELECT pg_is_in_recovery(), current_setting('server_version'),"
                " (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),"
                " current_setting('max_connections')::int, current_user::text,"
                " current_setting('is_superuser') = 'on'",
            )
            latency_ms = ms_since(started)
            data: dict[str, Any] = {
                "role": "replica" if in_recovery else "primary",
                "server_version": version,
                "connections": used,
                "max_connections": maximum,
                "user": user,
                "superuser": superuser,
            }
            checks = _replica_checks(conn, data) if in_recovery else _primary_checks(conn, data, expected_replicas)
        if data["lag_bytes"] is not None:
            level = level_of(data["lag_bytes"], lag_warning_bytes, lag_critical_bytes)
            checks.append((level, f"lag {format_bytes(data['lag_bytes'])}"))
        level = level_of(100 * used / max(maximum, 1), connections_warning_pct, connections_critical_pct)
        checks.append((level, f"{used}/{maximum} connections"))
        return worst_of(checks, latency_ms, data)

    result = run_bounded(timeout, work)
    if result.outcome == UP:  # a message built above from figures; only an error's text may quote the DSN
        return result
    return replace(result, message=without_dsn(result.message, conninfo))


def _primary_checks(conn: psycopg.Connection[Any], data: dict[str, Any], expected: int) -> list[tuple[str, str]]:
    data["lsn"] = _one(conn, "SELECT pg_current_wal_lsn()::text")[0]
    data["replicas"] = _rows(
        conn,
        "SELECT r.application_name, host(r.client_addr) AS client_addr, r.state, r.sync_state,"
        " r.sent_lsn::text, r.flush_lsn::text, r.replay_lsn::text,"
        " pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::bigint AS lag_bytes,"
        " coalesce(extract(epoch FROM r.replay_lag), 0)::float8 AS lag_seconds, s.slot_name"
        " FROM pg_stat_replication r LEFT JOIN pg_replication_slots s ON s.active_pid = r.pid"
        " ORDER BY r.application_name",
    )
    data["replication_slots"] = _rows(
        conn,
        "SELECT slot_name, active, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS retained_bytes"
        " FROM pg_replication_slots ORDER BY slot_name",
    )
    lags = [row["lag_bytes"] for row in data["replicas"] if row["lag_bytes"] is not None]
    data["lag_bytes"] = max(lags) if lags else None
    streaming = sum(1 for row in data["replicas"] if row["state"] == "streaming")
    if streaming < expected:
        got = "no replica" if streaming == 0 else f"{streaming} of {expected} replicas"
        return [(UP, "primary"), (DEGRADED, f"{got} streaming (expected {expected})")]
    return [(UP, "primary"), (UP, f"{streaming} replica{'' if streaming == 1 else 's'} streaming")]


def _replica_checks(conn: psycopg.Connection[Any], data: dict[str, Any]) -> list[tuple[str, str]]:
    # An idle primary sends no transactions, so "now - last replayed commit" grows without any
    # lag: count seconds only while something received is still waiting to be replayed.
    data["lsn"], data["receive_lsn"], data["lag_bytes"], data["lag_seconds"], data["streaming"] = _one(
        conn,
        "SELECT pg_last_wal_replay_lsn()::text, pg_last_wal_receive_lsn()::text,"
        " pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint,"
        " CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0"
        "  ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END::float8,"
        " EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')",
    )
    if not data["streaming"]:
        return [(DEGRADED, "replica not streaming from its primary"), (UP, "replica")]
    return [(UP, "replica"), (UP, "streaming")]


def _one(conn: psycopg.Connection[Any], sql: str) -> tuple[Any, ...]:
    row = conn.execute(sql).fetchone()
    assert row is not None  # these queries always return one row
    return tuple(row)


def _rows(conn: psycopg.Connection[Any], sql: str) -> list[dict[str, Any]]:
    cursor = conn.execute(sql)
    columns = [column.name for column in cursor.description or []]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
