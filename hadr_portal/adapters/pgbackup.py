"""Producing PostgreSQL backups as byte streams, to hand to a Storage's `put_stream`.

Three engines:

- "pg_dump": `pg_dump -Fc` of one database, straight from the program's stdout.
- "pg_dump_dir": `pg_dump -Fd -j N` (parallel) into a temporary directory first — that format
  cannot go to stdout — then a tar of the directory is streamed and the directory removed. This
  one needs local disk for a whole (compressed) copy of the dump.
- "pg_basebackup": the whole cluster as one tar on stdout (`-D - -Ft -X fetch`), WAL included.

The stream only reports its end once the program has exited successfully: if the program fails,
the read that would have returned EOF raises BackupFailed instead, so a consumer never stores a
truncated backup as complete. Leaving the `with` block early, by an exception or without reading
to the end, kills the program (and its workers) and waits for it: no zombie, no hang.
Passwords go to the programs through PGPASSWORD, never on their command lines.
"""

from __future__ import annotations

import fcntl
import io
import math
import os
import select
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

import psycopg
from psycopg.conninfo import make_conninfo

from .commands import CommandFailed, run_command
from .localpg import PG_BIN

ENGINES = ("pg_dump", "pg_dump_dir", "pg_basebackup")

_PIPE_SIZE = 1024 * 1024  # fewer, larger reads than the 64 KiB default pipe
_STDERR_TAIL_BYTES = 8192
_EXIT_GRACE_SECONDS = 60  # after its output ended, a program gets this long to exit
_END_PROBE_SECONDS = 5  # on a clean exit without EOF seen: how long to look for the end

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


@dataclass(frozen=True)
class PgTarget:
    host: str
    port: int
    user: str
    password: str = field(repr=False, default="")
    dbname: str = "postgres"


@dataclass(frozen=True)
class ServerFacts:
    """What a server said about itself just before a backup."""

    server_version: str
    database_size: int | None  # bytes of `dbname`; None when we may not ask
    lsn: str  # current WAL LSN on a primary, last replayed on a replica
    in_recovery: bool
    timeline: int | None  # None when the server would not tell (e.g. a replica not streaming, no rights)


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


# --- facts ------------------------------------------------------------------------------------------


def server_facts(target: PgTarget, *, timeout: float = 10) -> ServerFacts:
    """Version, size of `target.dbname`, WAL position, role and timeline of the server.

    Connection problems raise TransientBackupError (or BackupFailed for a wrong password or a
    missing database), like the backups themselves.
    """
    params = {"host": target.host, "port": target.port, "dbname": target.dbname, "user": target.user}
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
    target: PgTarget,
    *,
    engine: str,
    compress: str | None = None,
    jobs: int = 1,
    workdir: Path | None = None,
) -> Iterator[BinaryIO]:
    """Run a backup program and yield its output as a binary stream.

    `compress` is passed as `--compress=<value>`: for pg_dump (PostgreSQL 15) a level "0".."9";
    for pg_basebackup a client-side spec such as "gzip", "client-gzip:1", "lz4", "zstd" or "none".
    Server-side compression ("server-…") is rejected with ValueError: with `-D -` pg_basebackup
    must inject the backup manifest into the tar, which it cannot do in a server-compressed one,
    and dropping the manifest (--no-manifest) would leave nothing for pg_verifybackup to check.

    `jobs` (parallel workers) only applies to "pg_dump_dir", which dumps into a temporary directory
    under `workdir` (default: the system's temporary directory) before streaming it as a tar:
    it needs local space for the whole dump, and errors like a missing database are raised on
    entering the `with`, not while reading.

    pg_basebackup connects as `target.user`, who needs the REPLICATION attribute (or superuser),
    and fetches the WAL at the end (`-X fetch`): the server must keep the WAL written during the
    backup (wal_keep_size or a slot). A cluster with extra tablespaces cannot go to one stream.
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
        if engine == "pg_basebackup" and compress.lower().startswith("server"):
            raise ValueError(
                f"server-side compression ({compress!r}) cannot be streamed: pg_basebackup cannot add the "
                "backup manifest to a server-compressed tar on stdout; use client-side compression "
                "(e.g. 'client-gzip:1', 'lz4', 'zstd')"
            )
    env = _environment(target)
    if engine == "pg_dump_dir":
        with _dump_directory(target, env, compress, jobs, workdir) as directory, _stream(_TarWriter(directory)) as out:
            yield out
        return
    if engine == "pg_dump":
        argv = [str(PG_BIN / "pg_dump"), "--format=custom", *_connection_args(target), "-d", _dbname_arg(target)]
    else:
        argv = [
            str(PG_BIN / "pg_basebackup"),
            *_connection_args(target),
            "-D",
            "-",
            "-Ft",
            "-X",
            "fetch",
            "-c",
            "fast",
            "-l",
            "hadr-portal base backup",
        ]
    if compress is not None:
        argv.append(f"--compress={compress}")
    with _stream(_Program(argv, env, capture_stdout=True)) as out:
        yield out


def pg_restore_list(path: Path) -> list[str]:
    """The table of contents of a dump (a custom-format file or a directory), as `pg_restore
    --list` prints it, without its `;` comment lines. Raises BackupFailed if pg_restore rejects it."""
    try:
        result = run_command([str(PG_BIN / "pg_restore"), "--list", str(path)], timeout=300)
    except CommandFailed as exc:
        raise BackupFailed(str(exc)) from exc
    return [line for line in result.stdout.splitlines() if line.strip() and not line.startswith(";")]


def _connection_args(target: PgTarget) -> list[str]:
    # -w: never prompt for a password; there is nobody to answer.
    return ["-h", target.host, "-p", str(target.port), "-U", target.user, "-w"]


def _dbname_arg(target: PgTarget) -> str:
    # pg_dump reads a -d value holding "=" or starting "postgresql://" as a connection string;
    # "dbname=…" makes sure the name is only ever taken as a name.
    return make_conninfo(dbname=target.dbname)


def _environment(target: PgTarget) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "PGPASSWORD"}
    if target.password:
        env["PGPASSWORD"] = target.password
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    env["PGAPPNAME"] = "hadr-portal-backup"
    env["LC_ALL"] = "C"  # English messages: classify_failure reads them
    return env


@contextmanager
def _dump_directory(
    target: PgTarget, env: dict[str, str], compress: str | None, jobs: int, workdir: Path | None
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
        program = _Program(argv, env, capture_stdout=False)
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


class _Producer(Protocol):
    name: str
    pipe: io.FileIO  # read end of what it writes

    def finish(self, timeout: float | None = _EXIT_GRACE_SECONDS) -> None:
        """Wait for it to end; raise BackupFailed if it failed."""
        ...

    def abort(self) -> None:
        """Stop it now and wait until it has stopped. Safe to call after it ended."""
        ...

    def close(self) -> None: ...


class _Program:
    """A backup program run in its own process group (pg_dump -j forks workers), stderr to a
    temporary file so that a chatty stderr can never fill a pipe and stall it."""

    def __init__(self, argv: list[str], env: dict[str, str], *, capture_stdout: bool) -> None:
        self.name = Path(argv[0]).name
        self._stderr = tempfile.TemporaryFile()
        try:
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
                stderr=self._stderr,
                env=env,
                cwd="/",
                bufsize=0,
                start_new_session=True,
            )
        except OSError as exc:
            self._stderr.close()
            raise BackupFailed(f"cannot start {self.name}: {exc.strerror or exc}") from exc
        if capture_stdout:
            assert self._process.stdout is not None
            self.pipe = cast(io.FileIO, self._process.stdout)
            _widen_pipe(self.pipe.fileno())

    def finish(self, timeout: float | None = _EXIT_GRACE_SECONDS) -> None:
        try:
            returncode = self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.abort()
            raise BackupFailed(f"{self.name} did not exit {timeout:.0f} s after its output ended") from None
        if returncode < 0:
            raise BackupFailed(f"{self.name} was killed by signal {-returncode}{self._tail(': ')}")
        if returncode != 0:
            raise classify_failure(f"{self.name} exited with status {returncode}{self._tail(': ')}")

    def abort(self) -> None:
        if self._process.poll() is None:  # not reaped yet, so its process group id cannot have been reused
            try:
                os.killpg(self._process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._process.wait()

    def close(self) -> None:
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._stderr.close()

    def _tail(self, prefix: str) -> str:
        self._stderr.seek(0, os.SEEK_END)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - _STDERR_TAIL_BYTES))
        lines = [line.strip() for line in self._stderr.read().decode("utf-8", "replace").splitlines()]
        tail = "\n".join([line for line in lines if line][-5:])
        return prefix + tail if tail else ""


class _TarWriter:
    """Writes a tar of a directory's files into a pipe, from a thread (stdlib tarfile, stream mode)."""

    def __init__(self, directory: Path) -> None:
        self.name = "tar"
        read_fd, write_fd = os.pipe()
        _widen_pipe(read_fd)
        self.pipe = io.FileIO(read_fd, "r")
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(directory, write_fd), name="hadr-backup-tar", daemon=True
        )
        self._thread.start()

    def _run(self, directory: Path, write_fd: int) -> None:
        try:
            with (
                io.FileIO(write_fd, "w") as out,
                tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar,
            ):
                for path in sorted(directory.iterdir()):
                    tar.add(path, arcname=path.name)
        except BaseException as exc:  # reported by finish(); a BrokenPipeError after abort() is expected
            self._error = exc

    def finish(self, timeout: float | None = _EXIT_GRACE_SECONDS) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.abort()
            raise BackupFailed("writing the dump directory as tar did not end")
        if self._error is not None:
            raise BackupFailed(f"could not write the dump directory as tar: {self._error}") from self._error

    def abort(self) -> None:
        self.pipe.close()  # the writer's next write fails with EPIPE and the thread ends
        self._thread.join()

    def close(self) -> None:
        self.pipe.close()


def _widen_pipe(fd: int) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
    except (OSError, AttributeError):  # not Linux, or over the system's pipe-max-size: keep the default
        pass


class _BackupStream(io.RawIOBase):
    """The read side of a producer's pipe, reporting EOF only after the producer succeeded."""

    def __init__(self, producer: _Producer) -> None:
        super().__init__()
        self._producer = producer
        self._pipe = producer.pipe
        self.finished = False
        self.failure: BackupFailed | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        if self.failure is not None:
            raise self.failure
        if self.finished or size == 0:
            return b""
        data = self._pipe.read(min(size, _PIPE_SIZE)) or b""
        if not data:
            self._end()
        return data

    def readall(self) -> bytes:
        pieces = []
        while chunk := self.read(_PIPE_SIZE):
            pieces.append(chunk)
        return b"".join(pieces)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def at_end(self, wait: float) -> bool:
        """For a consumer that left without reading EOF: has the producer in fact finished,
        with nothing left unread? Looks for up to `wait` seconds."""
        if self.finished or self.failure is not None:
            return self.finished
        ready, _, _ = select.select([self._pipe.fileno()], [], [], wait)
        if not ready or self._pipe.read(1):
            return False
        self._end()
        return True

    def _end(self) -> None:
        try:
            self._producer.finish()
        except BackupFailed as exc:
            self.failure = exc
            raise
        self.finished = True


@contextmanager
def _stream(producer: _Producer) -> Iterator[BinaryIO]:
    stream = _BackupStream(producer)
    try:
        yield cast(BinaryIO, stream)
        if stream.failure is not None:  # the consumer caught it; the backup still failed
            raise stream.failure
        if not stream.at_end(_END_PROBE_SECONDS):
            producer.abort()
            raise BackupFailed(f"{producer.name}: the backup stream was not read to its end; the backup is incomplete")
    except BaseException:
        producer.abort()
        raise
    finally:
        stream.close()
        producer.close()
