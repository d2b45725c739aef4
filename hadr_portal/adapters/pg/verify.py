"""Verifying a restored database: the catalog's read-only queries and amcheck's `bt_index_check` on its
indexes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from hadr_portal.adapters.sqlguard import sql_refusal

from .connection import PgConninfo, superuser_refusal
from .dbadmin import connect


@dataclass(frozen=True)
class QueryOutcome:
    value: Any = None
    error: str = ""


def queries_run(
    target: PgConninfo, statements: Sequence[str], *, timeout: float = 60, kind: str = "verification query"
) -> list[QueryOutcome]:
    """Run each statement in a transaction of its own, READ ONLY from its start (so not even a set_config() in one
    query can make the next one writable), with a statement timeout; the first column of its first row, or the
    error. One failing query does not stop the others.

    The statements are user-written: each must pass the SQL guard (adapters.sqlguard), and none runs when
    `target.user` turns out to be a superuser (each then fails with the reason)."""
    outcomes = []
    with connect(target, timeout=timeout, default_transaction_read_only="on") as conn:
        superuser = superuser_refusal(conn, kind)
        for statement in statements:
            refusal = f"the restored database {superuser}" if superuser else sql_refusal(statement, kind=kind)
            if refusal:
                outcomes.append(QueryOutcome(error=f"refused: {refusal}"))
                continue
            try:
                with conn.transaction():
                    conn.execute("SET TRANSACTION READ ONLY")
                    row = conn.execute(statement).fetchone()  # catalog text, validated
            except psycopg.Error as exc:
                outcomes.append(QueryOutcome(error=str(exc).strip().splitlines()[0]))
                continue
            outcomes.append(QueryOutcome(value=row[0] if row else None))
    return outcomes


@dataclass(frozen=True)
class AmcheckOutcome:
    available: bool
    checked: int = 0
    failures: tuple[str, ...] = ()


_BTREE_INDEXES = """
SELECT c.oid::regclass::text FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE am.amname = 'btree' AND i.indisvalid AND i.indisready AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
ORDER BY 1
"""


def amcheck_run(target: PgConninfo, *, timeout: float = 600) -> AmcheckOutcome:
    """`bt_index_check` on every B-tree index of the database (amcheck; the extension is created for the check
    and dropped again if it was not there). Not on the server, or not ours to create: `available=False`."""
    with connect(target, timeout=timeout) as conn:
        if not conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'amcheck'").fetchone():
            return AmcheckOutcome(available=False)
        installed = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'amcheck'").fetchone() is not None
        if not installed:
            try:
                conn.execute("CREATE EXTENSION amcheck")
            except psycopg.errors.InsufficientPrivilege:
                return AmcheckOutcome(available=False)  # the restoring user may not create it: not checked
            except psycopg.errors.ReadOnlySqlTransaction:
                # a recovering instance (paused at its point) has only what its cluster had: `pitr_setup` installs
                # amcheck in the policy's database so that every restored copy can be checked
                return AmcheckOutcome(available=False)
        try:
            indexes = [row[0] for row in conn.execute(_BTREE_INDEXES).fetchall()]
            failures = []
            for index in indexes:
                try:
                    conn.execute("SELECT bt_index_check(%s::regclass)", [index])
                except psycopg.Error as exc:
                    failures.append(f"{index}: {str(exc).strip().splitlines()[0]}")
        finally:
            if not installed:
                conn.execute("DROP EXTENSION IF EXISTS amcheck")
    return AmcheckOutcome(available=True, checked=len(indexes), failures=tuple(failures))
