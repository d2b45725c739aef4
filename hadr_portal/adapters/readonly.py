"""Read-only queries on a managed PostgreSQL node: bounded, in a read-only transaction, never on a primary
unless asked.

The funnel collector reads the application's data here; it must not load the primary, so by default
the node must report `pg_is_in_recovery()` before the query is sent. A user-written query (`guard` names its
kind) must pass the SQL guard (adapters.sqlguard) and never runs as a superuser. Error messages never carry
the conninfo or its password.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from typing import Any

import psycopg

from .pg.connection import dsn_valid, superuser_refusal, without_dsn
from .probes.base import failure_message
from .sqlguard import SqlRefused, sql_check

_GRACE_SECONDS = 5.0  # past the timeout, before a silent server is given up on


class ReadOnlyQueryError(Exception):
    """The query did not run or did not finish; the message is one line for an operator."""


def read_only_query(
    *,
    conninfo: str,
    sql: str,
    params: Mapping[str, Any] | None = None,
    timeout: float,
    replica_only: bool = True,
    where: str = "the node",
    guard: str = "",
) -> list[tuple[Any, ...]]:
    """Run `sql` with `params` in a read-only transaction bounded by `timeout` seconds (connect and
    statement); with `replica_only`, refuse a node that is not in recovery. Raises ReadOnlyQueryError.

    With `guard` (the kind of user-written query, e.g. "funnel query"), the SQL must pass `sql_check` before
    anything connects, and a connection whose role is a superuser is refused before the query is sent.

    A server that stops answering after the connection is made (frozen, not down) trips neither timeout:
    the caller stops waiting `_GRACE_SECONDS` after the timeout and the query is left to its own thread.
    """
    return read_only_answer(
        conninfo=conninfo, sql=sql, params=params, timeout=timeout, replica_only=replica_only, where=where, guard=guard
    )[1]


def read_only_answer(
    *,
    conninfo: str,
    sql: str,
    params: Mapping[str, Any] | None = None,
    timeout: float,
    replica_only: bool = True,
    where: str = "the node",
    guard: str = "",
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """`read_only_query`, with the answer's column names: (columns, rows)."""
    if guard:
        try:
            sql_check(sql, kind=guard, placeholders=True)
        except SqlRefused as exc:
            raise ReadOnlyQueryError(f"refused: {exc}") from None
    if not dsn_valid(conninfo):
        raise ReadOnlyQueryError(f"{where}: not a valid PostgreSQL DSN (postgresql://… or key=value pairs)")
    outcome: list[tuple[list[str], list[tuple[Any, ...]]] | BaseException] = []

    def work() -> None:
        try:
            outcome.append(_query(conninfo, sql, params or {}, timeout, replica_only, where, guard))
        except BaseException as exc:  # handed to the caller below
            outcome.append(exc)

    thread = threading.Thread(target=work, name="read-only-query", daemon=True)
    thread.start()
    thread.join(timeout + _GRACE_SECONDS)
    if not outcome:
        raise ReadOnlyQueryError(f"{where}: no answer within {timeout + _GRACE_SECONDS:g} s")
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def _query(
    conninfo: str, sql: str, params: Mapping[str, Any], timeout: float, replica_only: bool, where: str, guard: str
) -> tuple[list[str], list[tuple[Any, ...]]]:
    limit_ms = max(1, int(timeout * 1000))
    try:
        with psycopg.connect(
            conninfo,
            connect_timeout=max(1, math.ceil(timeout)),
            application_name="hadr-portal-metrics",
            options=f"-c default_transaction_read_only=on -c statement_timeout={limit_ms}",
        ) as conn:
            in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            if replica_only and not (in_recovery and in_recovery[0]):
                raise ReadOnlyQueryError(
                    f"refused: {where} reports being a primary (pg_is_in_recovery() is false); "
                    "the query runs only on a replica so that it never loads the primary"
                )
            refusal = superuser_refusal(conn, guard) if guard else ""
            if refusal:
                raise ReadOnlyQueryError(f"refused: {where} {refusal}")
            cursor = conn.execute(sql, params)  # configuration, not input
            rows = cursor.fetchall()
            columns = [column.name for column in cursor.description or []]
            conn.rollback()
    except ReadOnlyQueryError:
        raise
    except psycopg.errors.QueryCanceled:
        raise ReadOnlyQueryError(f"{where}: query timed out after {timeout:g} s (statement_timeout)") from None
    except (psycopg.Error, OSError) as exc:
        raise ReadOnlyQueryError(f"{where}: {without_dsn(failure_message(exc, timeout), conninfo)}") from None
    return columns, [tuple(row) for row in rows]
