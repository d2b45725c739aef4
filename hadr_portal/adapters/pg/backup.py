"""Producing PostgreSQL backups as byte streams, to hand to a Storage's `put_stream`.

Two engines (physical backups are pgBackRest's: hadr_portal.adapters.pgbackrest):

- "pg_dump": `pg_dump -Fc` of one database, straight from the program's stdout.
- "pg_dump_dir": `pg_dump -Fd -j N` (parallel) into a temporary directory first — that format
  cannot go to stdout — then a tar of the directory is streamed and the directory removed. This
  one needs local disk for a whole (compressed) copy of the dump.

The stream only reports its end once the program has exited successfully (adapters.pg.streams), so a
consumer never stores a truncated backup as complete. Passwords go to the programs through PGPASSWORD, never
on their command lines.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import psycopg
from psycopg.conninfo import make_conninfo

from hadr_portal.adapters.commands import CommandFailed, run_command

from .connection import BackupFailed, PgConninfo, classify_failure
from .server import PG_BIN
from .streams import Program, TarWriter, output_stream

ENGINES = ("pg_dump", "pg_dump_dir")


@dataclass(frozen=True)
class ServerFacts:
    """What a server said about itself just before a backup."""

    server_version: str
    database_size: int | None  # bytes of `dbname`; None when we may not ask
    lsn: str  # current WAL LSN on a primary, last replayed on a replica
    in_recovery: bool
    timeline: int | None  # None when the server would not tell (e.g. a replica not streaming, no rights)


# --- facts ------------------------------------------------------------------------------------------


def server_facts(target: PgConninfo, *, timeout: float = 10) -> ServerFacts:
    """Version, size of `target.dbname`, WAL position, role and timeline of the server.

    Connection problems raise TransientBackupError (or BackupFailed for a wrong password or a
    missing database), like the backups themselves.
    """
    params: dict[str, Any] = {"host": target.host, "port": target.port, "dbname": target.dbname, "user": target.user}
    if target.password:
        params["password"] = target.password
    try:
        with psycopg.connect(
            make_conninfo(**params),
            autocommit=True,
            connect_timeout=max(2, math.ceil(timeout)),
            application_name="hadr-portal-backup",
            options=f"-c statement_timeout={max(1, int(timeout * 1000))}",
        ) as conn:
            version, in_recovery = _one(conn, "SELECT current_setting('server_version'), pg_is_in_recovery()")
            if in_recovery:
                lsn = _one(conn, "SELECT pg_last_wal_replay_lsn()::text")[0]
                # The timeline being received; without a WAL receiver, that of the last restartpoint.
                timeline = _optional(conn, "SELECT received_tli FROM pg_stat_wal_receiver") or _optional(
                    conn, "SELECT timeline_id FROM pg_control_checkpoint()"
                )
            else:
                lsn = _one(conn, "SELECT pg_current_wal_lsn()::text")[0]
                # The first 8 hex digits of the current WAL file name are the timeline now
                # being written (pg_control_checkpoint() lags behind a promotion).
                walfile = _optional(conn, "SELECT pg_walfile_name(pg_current_wal_lsn())")
                timeline = int(walfile[:8], 16) if walfile else None
            size = _optional(conn, "SELECT pg_database_size(current_database())")
    except psycopg.Error as exc:
        raise classify_failure(f"cannot read server facts from {target.host}:{target.port}: {exc}") from exc
    return ServerFacts(
        server_version=str(version),
        database_size=int(size) if size is not None else None,
        lsn=str(lsn or ""),
        in_recovery=bool(in_recovery),
        timeline=int(timeline) if timeline is not None else None,
    )


def _one(conn: psycopg.Connection[Any], sql: str) -> tuple[Any, ...]:
    row = conn.execute(sql).fetchone()
    assert row is not None  # these queries always return one row
    return tuple(row)


def _optional(conn: psycopg.Connection[Any], sql: str) -> Any:
    """The first value of the first row, or None if there is none or we may not ask."""
    try:
        row = conn.execute(sql).fetchone()
    except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectNotInPrerequisiteState):
        return None
    return row[0] if row else None


# --- backup streams -----------------------------------------------------------------------------------


@contextmanager
def backup_stream(
    target: PgConninfo,
    *,
    engine: str,
    compress: str | None = None,
    jobs: int = 1,
    workdir: Path | None = None,
) -> Iterator[BinaryIO]:
    """Run a backup program and yield its output as a binary stream.

    `compress` is passed as `--compress=<value>`: for pg_dump (PostgreSQL 15) a level "0".."9".

    `jobs` (parallel workers) only applies to "pg_dump_dir", which dumps into a temporary directory
    under `workdir` (default: the system's temporary directory) before streaming it as a tar:
    it needs local space for the whole dump, and errors like a missing database are raised on
    entering the `with`, not while reading.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown backup engine {engine!r} (expected one of {', '.join(ENGINES)})")
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    if jobs > 1 and engine != "pg_dump_dir":
        raise ValueError("parallel jobs need engine 'pg_dump_dir': pg_dump runs in parallel only into a directory")
    if compress is not None:
        compress = compress.strip()
        if not compress or compress.startswith("-") or any(c.isspace() for c in compress):
            raise ValueError(f"invalid compression setting {compress!r}")
    env = _environment(target)
    if engine == "pg_dump_dir":
        with (
            _dump_directory(target, env, compress, jobs, workdir) as directory,
            output_stream(TarWriter(directory)) as out,
        ):
            yield out
        return
    argv = [str(PG_BIN / "pg_dump"), "--format=custom", *_connection_args(target), "-d", _dbname_arg(target)]
    if compress is not None:
        argv.append(f"--compress={compress}")
    with output_stream(Program(argv, env, capture_stdout=True)) as out:
        yield out


def pg_restore_list(path: Path) -> list[str]:
    """The table of contents of a dump (a custom-format file or a directory), as `pg_restore
    --list` prints it, without its `;` comment lines. Raises BackupFailed if pg_restore rejects it."""
    try:
        result = run_command([str(PG_BIN / "pg_restore"), "--list", str(path)], timeout=300)
    except CommandFailed as exc:
        raise BackupFailed(str(exc)) from exc
    return [line for line in result.stdout.splitlines() if line.strip() and not line.startswith(";")]


def _connection_args(target: PgConninfo) -> list[str]:
    # -w: never prompt for a password; there is nobody to answer.
    return ["-h", target.host, "-p", str(target.port), "-U", target.user, "-w"]


def _dbname_arg(target: PgConninfo) -> str:
    # pg_dump reads a -d value holding "=" or starting "postgresql://" as a connection string;
    # "dbname=…" makes sure the name is only ever taken as a name.
    return make_conninfo(dbname=target.dbname)


def _environment(target: PgConninfo) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "PGPASSWORD"}
    if target.password:
        env["PGPASSWORD"] = target.password
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    env["PGAPPNAME"] = "hadr-portal-backup"
    env["LC_ALL"] = "C"  # English messages: classify_failure reads them
    return env


@contextmanager
def _dump_directory(
    target: PgConninfo, env: dict[str, str], compress: str | None, jobs: int, workdir: Path | None
) -> Iterator[Path]:
    """Run `pg_dump -Fd -j jobs` to completion into a fresh directory under `workdir`; remove it
    again when the block ends."""
    try:
        if workdir is not None:
            workdir.mkdir(parents=True, exist_ok=True)
        parent = Path(tempfile.mkdtemp(prefix="hadr-pgdump-", dir=workdir))
    except OSError as exc:
        raise BackupFailed(f"cannot create a working directory for pg_dump under {workdir}: {exc.strerror}") from exc
    try:
        directory = parent / "dump"  # pg_dump wants to create the directory itself
        argv = [
            str(PG_BIN / "pg_dump"),
            "--format=directory",
            f"--jobs={jobs}",
            "-f",
            str(directory),
            *_connection_args(target),
            "-d",
            _dbname_arg(target),
        ]
        if compress is not None:
            argv.append(f"--compress={compress}")
        program = Program(argv, env, capture_stdout=False)
        try:
            program.finish(timeout=None)
        except BaseException:
            program.abort()
            raise
        finally:
            program.close()
        yield directory
    finally:
        shutil.rmtree(parent, ignore_errors=True)
