"""Reaching a PostgreSQL server: its address, DSNs checked and kept out of messages, and which failures pass.

- `NodeAddress` / `PgConninfo`         where a node or a server to back up or restore is, and as whom
- `TRANSIENT_ERRORS`, `classify_failure()`  what is worth retrying (a server starting up, a lost connection)
- `dsn_valid()`, `without_dsn()`     a DSN checked before use, and redacted from what is shown
- `superuser_refusal()`              why user-written SQL never runs as a superuser
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

# Errors worth retrying: the server is starting, restarting or briefly unreachable.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (psycopg.OperationalError,)

# stderr phrases meaning "try again later" vs "will fail the same way again". The permanent
# ones win: 'connection to server … failed: FATAL: database "x" does not exist' mentions both.
_TRANSIENT_PHRASES = (
    "connection refused",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is not yet accepting connections",
    "the database system is not accepting connections",
    "the database system is in recovery mode",
    "timeout expired",
    "connection timed out",
    "no route to host",
    "network is unreachable",
    "could not translate host name",
    "server closed the connection unexpectedly",
    "connection reset by peer",
    "could not receive data from server",
    "too many clients",
    "remaining connection slots are reserved",
    "terminating connection due to administrator command",
)
_PERMANENT_PHRASES = (
    "authentication failed",
    "does not exist",
    "permission denied",
    "no pg_hba.conf entry",
    "must be superuser",
    "must have replication",
    "invalid value",
    "invalid compression",
    "unrecognized compression",
)


class BackupFailed(Exception):
    """The backup program failed; the message ends with the last lines it wrote to stderr."""


class TransientBackupError(BackupFailed):
    """Connection refused, server starting up, timeout: worth retrying later."""


def classify_failure(message: str) -> BackupFailed:
    """BackupFailed or, when `message` reads like a passing condition, TransientBackupError."""
    text = message.lower()
    if any(phrase in text for phrase in _PERMANENT_PHRASES):
        return BackupFailed(message)
    if any(phrase in text for phrase in _TRANSIENT_PHRASES):
        return TransientBackupError(message)
    return BackupFailed(message)


@dataclass(frozen=True)
class NodeAddress:
    host: str
    port: int
    dbname: str
    user: str
    password: str = field(default="", repr=False)

    def conninfo(self, **extra: Any) -> str:
        return _conninfo(self.host, self.port, self.dbname, self.user, self.password, extra)

    def public(self) -> str:
        """The conninfo without the password, as it may be logged or passed on a command line."""
        return make_conninfo(host=self.host, port=self.port, dbname=self.dbname, user=self.user)


@dataclass(frozen=True)
class PgConninfo:
    """A server to back up from or restore into, and the role to connect as (programs get the password
    through PGPASSWORD, never on their command line)."""

    host: str
    port: int
    user: str
    password: str = field(repr=False, default="")
    dbname: str = "postgres"

    def conninfo(self, **extra: Any) -> str:
        return _conninfo(self.host, self.port, self.dbname, self.user, self.password, extra)


def _conninfo(host: str, port: int, dbname: str, user: str, password: str, extra: dict[str, Any]) -> str:
    params: dict[str, Any] = {"host": host, "port": port, "dbname": dbname, "user": user, **extra}
    if password:
        params["password"] = password
    return make_conninfo(**params)


def with_database(target: PgConninfo, dbname: str) -> PgConninfo:
    """The same server and role, another database."""
    return replace(target, dbname=dbname)


def dsn_valid(dsn: str) -> bool:
    """Whether libpq can read `dsn` (a postgresql:// URI or key=value pairs); checked before connecting, so that
    libpq's parse errors, which quote the text they choke on (a password included), are never shown."""
    try:
        conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return False
    return bool(dsn.strip())


def dsn_secrets(dsn: str) -> list[str]:
    """What of `dsn` must never appear in an error message: the DSN itself and its password, as written and decoded."""
    found = [dsn]
    try:
        parts = urlsplit(dsn)
        if parts.password:
            found += [parts.password, unquote(parts.password)]
    except ValueError:
        pass
    found += [value.strip("'") for value in re.findall(r"\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", dsn)]
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.ProgrammingError:
        password = None
    if password:
        found.append(str(password))
    return [secret for secret in found if secret]


def without_dsn(text: str, dsn: str) -> str:
    """`text` with the DSN and its password replaced by [redacted] (see core.redaction for the rest)."""
    for secret in sorted(dsn_secrets(dsn), key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
    return text


def superuser_refusal(conn: psycopg.Connection[Any], kind: str) -> str:
    """Why user-written SQL (a `kind`, e.g. "funnel query") may not run on `conn`, or "" when it may: a superuser
    bypasses every privilege and READ ONLY itself (pg_promote, dblink, server files), so it never runs one."""
    row = conn.execute(
        "SELECT current_user::text, coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), false)"
        " OR current_setting('is_superuser') = 'on'"
    ).fetchone()
    if not row or not row[1]:
        return ""
    return (
        f"was reached as {row[0]}, a superuser; a {kind} never runs as a superuser. Give it a read role instead "
        "(CREATE ROLE hadr_reader LOGIN PASSWORD '…' IN ROLE pg_read_all_data): the cluster's read_user and "
        "read_password_env, or that role in the DSN variable"
    )


def autocommit_session(conninfo: str, *, timeout: float, application: str) -> psycopg.Connection[Any]:
    """An autocommit connection whose connect and every statement are bounded by `timeout` seconds, named
    `application` in pg_stat_activity (the node actions, the archiving probes)."""
    return psycopg.connect(
        conninfo,
        autocommit=True,
        connect_timeout=max(2, int(timeout)),
        application_name=application,
        options=f"-c statement_timeout={int(timeout * 1000)}",
    )
