"""WAL archiving as PostgreSQL reports it, and the SQL that points it at pgBackRest.

- `archiver_status()`     pg_stat_archiver and the archiving settings of one server
- `archiving_configure()` archive_command / archive_timeout by ALTER SYSTEM, then a reload (archive_mode itself
                          needs a restart: the caller is told whether it is on)
- `restore_point_create()` pg_create_restore_point (superuser, or EXECUTE granted to the backup role)
- `recovery_state()`      where a recovering server stands: paused at its target, its last replayed transaction
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from .connection import autocommit_session


@dataclass(frozen=True)
class ArchiverStatus:
    archive_mode: str
    archive_command: str
    archive_timeout: int  # seconds
    in_recovery: bool
    archived_count: int
    last_archived_wal: str
    last_archived_time: datetime | None
    failed_count: int
    last_failed_wal: str
    last_failed_time: datetime | None
    current_wal: str  # the segment being written now (primary only)
    now: datetime  # the server's clock when asked
    current_wal_bytes: int  # written into that segment so far; 0 exactly at a boundary (primary only)
    closed_wal: str  # the newest complete segment: the last one there is to archive now (primary only)

    @property
    def failing(self) -> bool:
        """The last attempt failed (a failure newer than the last success)."""
        if not self.last_failed_time:
            return False
        return self.last_archived_time is None or self.last_failed_time > self.last_archived_time


def _connect(conninfo: str, timeout: float) -> psycopg.Connection[Any]:
    return autocommit_session(conninfo, timeout=timeout, application="hadr-portal-archive")


def archiver_status(conninfo: str, *, timeout: float = 5.0) -> ArchiverStatus:
    with _connect(conninfo, timeout) as conn:
        row = conn.execute(
            """
            SELECT current_setting('archive_mode'), current_setting('archive_command'),
                   extract(epoch FROM current_setting('archive_timeout')::interval)::int,
                   pg_is_in_recovery(), archived_count, coalesce(last_archived_wal, ''), last_archived_time,
                   failed_count, coalesce(last_failed_wal, ''), last_failed_time,
                   CASE WHEN pg_is_in_recovery() THEN '' ELSE pg_walfile_name(pg_current_wal_lsn()) END, now(),
                   CASE WHEN pg_is_in_recovery() THEN 0 ELSE position.file_offset END,
                   -- at a boundary pg_walfile_name_offset already names the segment before it, with offset 0
                   CASE WHEN pg_is_in_recovery() THEN ''
                        ELSE pg_walfile_name(pg_current_wal_lsn() - (position.file_offset + 1)) END
            FROM pg_stat_archiver,
                 LATERAL (SELECT CASE WHEN pg_is_in_recovery() THEN 0
                                      ELSE (pg_walfile_name_offset(pg_current_wal_lsn())).file_offset END
                          AS file_offset) AS position
            """
        ).fetchone()
    assert row is not None
    return ArchiverStatus(*row)


def archiving_configure(conninfo: str, *, archive_command: str, archive_timeout: int, timeout: float = 10.0) -> bool:
    """Set archive_command and archive_timeout (ALTER SYSTEM, then pg_reload_conf) as a superuser; returns whether
    archive_mode is on (if not, nothing is archived until it is set and the server restarted)."""
    with _connect(conninfo, timeout) as conn:
        for name, value in (("archive_command", archive_command), ("archive_timeout", f"{int(archive_timeout)}s")):
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
        conn.execute("SELECT pg_reload_conf()")
        row = conn.execute("SELECT current_setting('archive_mode')").fetchone()
    return bool(row and row[0] in ("on", "always"))


def restore_point_create(conninfo: str, name: str, *, timeout: float = 10.0) -> str:
    """Create a restore point on the primary and switch WAL so it is archived at once; its LSN."""
    with _connect(conninfo, timeout) as conn:
        row = conn.execute("SELECT pg_create_restore_point(%s)::text", [name]).fetchone()
        try:
            conn.execute("SELECT pg_switch_wal()")
        except psycopg.errors.InsufficientPrivilege:
            pass  # archive_timeout archives it soon enough
    assert row is not None
    return str(row[0])


@dataclass(frozen=True)
class RecoveryState:
    in_recovery: bool
    pause_state: str  # not paused | pause requested | paused
    last_replay_time: datetime | None  # commit time of the last transaction replayed
    replay_lsn: str


def recovery_state(conninfo: str, *, timeout: float = 5.0) -> RecoveryState:
    with _connect(conninfo, timeout) as conn:
        row = conn.execute(
            """
            SELECT pg_is_in_recovery(),
                   CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() ELSE 'not paused' END,
                   pg_last_xact_replay_timestamp(),
                   coalesce(pg_last_wal_replay_lsn()::text, pg_current_wal_lsn()::text)
            """
        ).fetchone()
    assert row is not None
    return RecoveryState(bool(row[0]), str(row[1]), row[2], str(row[3] or ""))
