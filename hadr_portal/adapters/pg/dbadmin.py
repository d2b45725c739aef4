"""Databases on a server the portal restores to: describe, create, drop, who is connected, and the swap that
puts a restored database in the place of the one it replaces (SQL only, no agent on the server)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from .connection import PgConninfo, classify_failure
from .restore import RestoreFailed


@dataclass(frozen=True)
class DatabaseInfo:
    name: str
    owner: str
    encoding: str
    collate: str
    ctype: str
    size: int


@dataclass(frozen=True)
class Session:
    pid: int
    user: str
    application: str
    client: str
    state: str


def connect(target: PgConninfo, dbname: str | None = None, *, timeout: float = 10, **options: str) -> Any:
    """An autocommit session on `dbname` (default: the target's) whose statements end after `timeout` seconds;
    `options` are more settings for the session. Connection failures raise BackupFailed or TransientBackupError."""
    params: dict[str, Any] = {
        "host": target.host,
        "port": target.port,
        "user": target.user,
        "dbname": dbname or target.dbname,
        "connect_timeout": max(2, math.ceil(timeout)),
        "application_name": "hadr-portal-restore",
    }
    if target.password:
        params["password"] = target.password
    settings = {"statement_timeout": str(max(1, int(timeout * 1000)))} | options
    params["options"] = " ".join(f"-c {name}={value}" for name, value in settings.items())
    try:
        return psycopg.connect(make_conninfo(**params), autocommit=True)
    except psycopg.Error as exc:
        raise classify_failure(f"cannot connect to {target.host}:{target.port}/{params['dbname']}: {exc}") from exc


def database_info(target: PgConninfo, name: str) -> DatabaseInfo | None:
    with connect(target, "postgres") as conn:
        row = conn.execute(
            "SELECT datname, pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype,"
            " pg_database_size(oid) FROM pg_database WHERE datname = %s",
            [name],
        ).fetchone()
    return DatabaseInfo(*row) if row else None


def database_create(target: PgConninfo, name: str, *, like: DatabaseInfo | None = None) -> None:
    """An empty database (from template0), with the owner, encoding and locale of `like` when given."""
    statement = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
    if like is not None:
        statement += sql.SQL(" OWNER {} ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
            sql.Identifier(like.owner), sql.Literal(like.encoding), sql.Literal(like.collate), sql.Literal(like.ctype)
        )
    with connect(target, "postgres", timeout=120) as conn:
        try:
            conn.execute(statement)
        except psycopg.errors.DuplicateDatabase:
            raise RestoreFailed(f"database {name!r} already exists on {target.host}:{target.port}") from None


def database_drop(target: PgConninfo, name: str) -> bool:
    """Drop it, ending its sessions; False when there was none by that name."""
    with connect(target, "postgres", timeout=120) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return False
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    return True


def database_sessions(target: PgConninfo, name: str) -> list[Session]:
    """Who is connected to the database now (other than us)."""
    with connect(target, "postgres") as conn:
        rows = conn.execute(
            "SELECT pid, coalesce(usename, ''), coalesce(application_name, ''), coalesce(client_addr::text, 'local'),"
            " coalesce(state, '') FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() ORDER BY pid",
            [name],
        ).fetchall()
    return [Session(*row) for row in rows]


def databases_swap(
    target: PgConninfo, *, current: str, replacement: str, keep_as: str, wait_seconds: float = 15
) -> int:
    """Put `replacement` in the place of `current`, which is kept, renamed `keep_as`. Returns the sessions ended.

    New connections to `current` are refused first, its sessions ended, then both renames commit in one
    transaction: applications see the old database or the new one under the name, never neither. If anything
    fails before the commit, `current` accepts connections again as it was.
    """
    ended = 0
    with connect(target, "postgres", timeout=wait_seconds + 30) as conn:
        current_id, replacement_id, keep_id = (sql.Identifier(name) for name in (current, replacement, keep_as))
        conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(current_id))
        swapped = False
        try:
            deadline = time.monotonic() + wait_seconds
            while True:
                row = conn.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    [current],
                ).fetchone()
                ended += int(row[0]) if row else 0
                try:
                    with conn.transaction():
                        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(current_id, keep_id))
                        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(replacement_id, current_id))
                    swapped = True
                    break
                except psycopg.errors.ObjectInUse:
                    if time.monotonic() > deadline:
                        raise RestoreFailed(
                            f"sessions on {current!r} did not end within {wait_seconds:.0f} s; nothing was swapped"
                        ) from None
                    time.sleep(0.2)
        finally:
            # the old database stays reachable under its new name (to compare, or to copy rows back)
            conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(keep_id if swapped else current_id))
    return ended


def server_data_directory(target: PgConninfo) -> str | None:
    """Where the server keeps its data (superusers and pg_read_all_settings may ask), or None."""
    with connect(target, "postgres") as conn:
        try:
            row = conn.execute("SELECT current_setting('data_directory')").fetchone()
        except psycopg.errors.InsufficientPrivilege:
            return None
    return str(row[0]) if row else None
