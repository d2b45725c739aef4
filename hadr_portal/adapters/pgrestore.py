"""Restoring PostgreSQL backups: verified fetch, pg_restore, tar extraction, database swaps, verification.

- `fetch_verified()` / `verify_chunks()`  bytes from storage to a local file (or only hashed), refused unless
                                          their size and SHA-256 match what the backup recorded
- `pg_restore_run()`                      `pg_restore -j N` into an existing database, item by item on a callback
- `database_*()`                          create, drop, describe, list sessions; `databases_swap()` renames the
                                          restored database into place in one transaction
- `queries_run()`, `amcheck_run()`        read-only verification queries; amcheck's `bt_index_check` on indexes
- `tar_extract()`, `server_start()`, `server_stop()`  a physical backup as a new server on a free port

Only libpq programs and SQL: everything here works with stock PostgreSQL, no agent on the server.
"""

from __future__ import annotations

import hashlib
import math
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from .commands import CommandFailed, as_postgres_user, run_command
from .localpg import PG_BIN, chown_to_postgres
from .pgbackup import PgTarget, classify_failure
from .postgres import superuser_refusal
from .sqlguard import sql_refusal

_STDERR_TAIL_LINES = 8
_ITEM_LINE = re.compile(r"^pg_restore: (?:processing item|finished item) (\d+) (.*)$")


class RestoreFailed(Exception):
    """A restore step failed; the message says which, in an operator's words."""


class ChecksumMismatch(RestoreFailed):
    """The stored bytes are not the ones that were backed up (truncated, corrupted, replaced)."""


def major_version(version: str) -> int | None:
    """15 for "15.18 (Debian 15.18-0+deb12u1)" or "pg_restore (PostgreSQL) 15.18"; None when there is no number."""
    match = re.search(r"(\d+)(?:\.\d+)?", version)
    return int(match.group(1)) if match else None


def local_tools_major() -> int | None:
    """The major version of the PostgreSQL programs this machine restores with."""
    try:
        return major_version(run_command([str(PG_BIN / "pg_restore"), "--version"], timeout=30).stdout)
    except CommandFailed:
        return None


# --- bytes from storage -------------------------------------------------------------------------------


def verify_chunks(
    chunks: Iterator[bytes], *, sha256: str, size: int, on_progress: Callable[[int], None] | None = None
) -> None:
    """Hash what storage hands out; ChecksumMismatch unless it is exactly `size` bytes with that SHA-256."""
    digest, seen = hashlib.sha256(), 0
    for chunk in chunks:
        digest.update(chunk)
        seen += len(chunk)
        if on_progress:
            on_progress(seen)
    _compare(seen, digest.hexdigest(), sha256=sha256, size=size)


def fetch_verified(
    chunks: Iterator[bytes],
    path: Path,
    *,
    sha256: str,
    size: int,
    on_progress: Callable[[int], None] | None = None,
) -> None:
    """Write the chunks to `path` (owner-only), hashing on the way; on a mismatch the file is removed."""
    digest, seen = hashlib.sha256(), 0
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
                seen += len(chunk)
                if on_progress:
                    on_progress(seen)
        _compare(seen, digest.hexdigest(), sha256=sha256, size=size)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _compare(seen: int, digest: str, *, sha256: str, size: int) -> None:
    if seen != size:
        raise ChecksumMismatch(f"the stored backup is {seen} bytes, but {size} were backed up: truncated or replaced")
    if digest != sha256:
        raise ChecksumMismatch(f"the stored backup's SHA-256 is {digest}, but {sha256} was recorded: it is corrupted")


# --- pg_restore ---------------------------------------------------------------------------------------


def pg_restore_items(path: Path) -> int:
    """How many entries of the dump's table of contents pg_restore will process (for a progress bar)."""
    try:
        result = run_command([str(PG_BIN / "pg_restore"), "--list", str(path)], timeout=300)
    except CommandFailed as exc:
        raise RestoreFailed(f"pg_restore cannot read the backup: {exc}") from exc
    return sum(1 for line in result.stdout.splitlines() if line.strip() and not line.startswith(";"))


def pg_restore_run(
    path: Path,
    target: PgTarget,
    *,
    jobs: int = 2,
    keep_owners: bool = True,
    on_item: Callable[[int, str], None] | None = None,
    checkpoint: Callable[[], None] | None = None,
) -> None:
    """`pg_restore -j jobs --exit-on-error` of a dump (custom-format file or directory) into `target.dbname`.

    `on_item(done, what)` is called as items finish; `checkpoint()` about once a second, and whatever it raises
    (a cancellation) stops pg_restore and its workers before it propagates. Without `keep_owners`, objects
    belong to the connecting user and privileges are left out (for a server without the original roles).
    """
    argv = [str(PG_BIN / "pg_restore"), "-v", "--exit-on-error", f"--jobs={jobs}", "-w"]
    argv += ["-h", target.host, "-p", str(target.port), "-U", target.user, "-d", make_conninfo(dbname=target.dbname)]
    if not keep_owners:
        argv += ["--no-owner", "--no-privileges"]
    argv.append(str(path))
    env = {key: value for key, value in os.environ.items() if key != "PGPASSWORD"}
    env |= {"PGPASSWORD": target.password, "PGAPPNAME": "hadr-portal-restore", "LC_ALL": "C"}
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            cwd="/",
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except OSError as exc:
        raise RestoreFailed(f"cannot start pg_restore: {exc.strerror or exc}") from exc
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_lines_into, args=(process.stderr, lines), daemon=True, name="pg-restore-stderr")
    reader.start()
    tail: list[str] = []
    finished: set[int] = set()
    try:
        while True:
            try:
                line = lines.get(timeout=1.0)
            except queue.Empty:
                line = ""
            if line is None:
                break
            if line:
                tail = [*tail, line][-_STDERR_TAIL_LINES:]
                match = _ITEM_LINE.match(line)
                if match:  # serial items are done once "processing", parallel ones once "finished"
                    item = int(match.group(1))
                    if item not in finished:
                        finished.add(item)
                        if on_item:
                            on_item(len(finished), match.group(2))
            if checkpoint:
                checkpoint()
        returncode = process.wait()
    except BaseException:
        _kill(process)
        raise
    finally:
        reader.join(timeout=5)
    if returncode != 0:
        errors = [line for line in tail if "error" in line.lower()] or tail
        raise classify_failure(f"pg_restore exited with status {returncode}: " + "\n".join(errors[-5:]))


def _lines_into(stream: Any, lines: queue.Queue[str | None]) -> None:
    try:
        for line in stream:
            lines.put(line.rstrip("\n"))
    finally:
        lines.put(None)


def _kill(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()


# --- databases ----------------------------------------------------------------------------------------


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


def _connect(target: PgTarget, dbname: str | None = None, *, timeout: float = 10, **options: str) -> Any:
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


def database_info(target: PgTarget, name: str) -> DatabaseInfo | None:
    with _connect(target, "postgres") as conn:
        row = conn.execute(
            "SELECT datname, pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype,"
            " pg_database_size(oid) FROM pg_database WHERE datname = %s",
            [name],
        ).fetchone()
    return DatabaseInfo(*row) if row else None


def database_create(target: PgTarget, name: str, *, like: DatabaseInfo | None = None) -> None:
    """An empty database (from template0), with the owner, encoding and locale of `like` when given."""
    statement = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
    if like is not None:
        statement += sql.SQL(" OWNER {} ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
            sql.Identifier(like.owner), sql.Literal(like.encoding), sql.Literal(like.collate), sql.Literal(like.ctype)
        )
    with _connect(target, "postgres", timeout=120) as conn:
        try:
            conn.execute(statement)
        except psycopg.errors.DuplicateDatabase:
            raise RestoreFailed(f"database {name!r} already exists on {target.host}:{target.port}") from None


def database_drop(target: PgTarget, name: str) -> bool:
    """Drop it, ending its sessions; False when there was none by that name."""
    with _connect(target, "postgres", timeout=120) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return False
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    return True


def database_sessions(target: PgTarget, name: str) -> list[Session]:
    """Who is connected to the database now (other than us)."""
    with _connect(target, "postgres") as conn:
        rows = conn.execute(
            "SELECT pid, coalesce(usename, ''), coalesce(application_name, ''), coalesce(client_addr::text, 'local'),"
            " coalesce(state, '') FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() ORDER BY pid",
            [name],
        ).fetchall()
    return [Session(*row) for row in rows]


def databases_swap(target: PgTarget, *, current: str, replacement: str, keep_as: str, wait_seconds: float = 15) -> int:
    """Put `replacement` in the place of `current`, which is kept, renamed `keep_as`. Returns the sessions ended.

    New connections to `current` are refused first, its sessions ended, then both renames commit in one
    transaction: applications see the old database or the new one under the name, never neither. If anything
    fails before the commit, `current` accepts connections again as it was.
    """
    ended = 0
    with _connect(target, "postgres", timeout=wait_seconds + 30) as conn:
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


def server_data_directory(target: PgTarget) -> str | None:
    """Where the server keeps its data (superusers and pg_read_all_settings may ask), or None."""
    with _connect(target, "postgres") as conn:
        try:
            row = conn.execute("SELECT current_setting('data_directory')").fetchone()
        except psycopg.errors.InsufficientPrivilege:
            return None
    return str(row[0]) if row else None


# --- verification -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryOutcome:
    value: Any = None
    error: str = ""


def queries_run(
    target: PgTarget, statements: Sequence[str], *, timeout: float = 60, kind: str = "verification query"
) -> list[QueryOutcome]:
    """Run each statement in a transaction of its own, READ ONLY from its start (so not even a set_config() in one
    query can make the next one writable), with a statement timeout; the first column of its first row, or the
    error. One failing query does not stop the others.

    The statements are user-written: each must pass the SQL guard (adapters.sqlguard), and none runs when
    `target.user` turns out to be a superuser (each then fails with the reason)."""
    outcomes = []
    with _connect(target, timeout=timeout, default_transaction_read_only="on") as conn:
        superuser = superuser_refusal(conn, kind)
        for statement in statements:
            refusal = f"the restored database {superuser}" if superuser else sql_refusal(statement, kind=kind)
            if refusal:
                outcomes.append(QueryOutcome(error=f"refused: {refusal}"))
                continue
            try:
                with conn.transaction():
                    conn.execute("SET TRANSACTION READ ONLY")
                    row = conn.execute(statement).fetchone()  # type: ignore[arg-type]  # catalog text, validated
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


def amcheck_run(target: PgTarget, *, timeout: float = 600) -> AmcheckOutcome:
    """`bt_index_check` on every B-tree index of the database (amcheck; the extension is created for the check
    and dropped again if it was not there). Not on the server, or not ours to create: `available=False`."""
    with _connect(target, timeout=timeout) as conn:
        if not conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'amcheck'").fetchone():
            return AmcheckOutcome(available=False)
        installed = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'amcheck'").fetchone() is not None
        if not installed:
            try:
                conn.execute("CREATE EXTENSION amcheck")
            except psycopg.errors.InsufficientPrivilege:
                return AmcheckOutcome(available=False)  # the restoring user may not create it: not checked
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


# --- physical backups ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def _decompress_option(compress: str) -> list[str]:
    """tar's option to read what pg_basebackup's client-side `--compress` wrote."""
    method = compress.lower().removeprefix("client-").split(":", 1)[0]
    if method in ("", "none", "0"):
        return []
    if method in ("gzip",) or method.isdigit():
        return ["-z"]
    if method == "lz4":
        return ["--use-compress-program=lz4 -d"]
    if method == "zstd":
        return ["--zstd"]
    raise RestoreFailed(f"cannot read a base backup compressed with {compress!r}")


def tar_extract(
    path: Path, directory: Path, *, compress: str = "", postgres_owner: bool = True, timeout: float = 6 * 3600
) -> None:
    """Unpack a tar (a base backup, or a directory-format dump) into a new, empty `directory` (mode 700), owned
    by the postgres user with `postgres_owner` (a data directory)."""
    if directory.exists() and any(directory.iterdir()):
        raise RestoreFailed(f"{directory} is not empty; nothing was extracted")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        run_command(["tar", *_decompress_option(compress), "-xf", str(path), "-C", str(directory)], timeout=timeout)
        if postgres_owner and os.geteuid() == 0:
            run_command(["chown", "-R", "postgres:postgres", str(directory)], timeout=timeout)
        directory.chmod(0o700)
    except CommandFailed as exc:
        raise RestoreFailed(f"could not unpack the base backup: {exc}") from exc


def server_start(directory: Path, port: int, *, timeout: int = 600) -> Path:
    """Start a server on an extracted base backup (it replays the WAL in the backup, then takes writes), on
    127.0.0.1:`port` only. Returns its log file."""
    log_file = directory.parent / f"{directory.name}.log"
    log_file.touch(exist_ok=True)
    chown_to_postgres(log_file)
    chown_to_postgres(directory.parent)
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
    argv = [str(PG_BIN / "pg_ctl"), "start", "-w", "-t", str(timeout), "-D", str(directory), "-l", str(log_file)]
    try:
        run_command(as_postgres_user([*argv, "-o", options]), timeout=timeout + 30)
    except CommandFailed as exc:
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-5:]) if log_file.exists() else ""
        raise RestoreFailed(f"the restored server did not start: {exc}\n{tail}".strip()) from exc
    return log_file


def server_stop(directory: Path) -> None:
    """Stop a server started by `server_start` (immediately: it is about to be removed, or it never finished)."""
    if not (directory / "postmaster.pid").exists():
        return
    run_command(
        as_postgres_user([str(PG_BIN / "pg_ctl"), "stop", "-w", "-t", "60", "-m", "immediate", "-D", str(directory)]),
        timeout=90,
        check=False,
    )


def server_remove(directory: Path) -> None:
    server_stop(directory)
    shutil.rmtree(directory, ignore_errors=True)
    directory.parent.joinpath(f"{directory.name}.log").unlink(missing_ok=True)


def with_database(target: PgTarget, dbname: str) -> PgTarget:
    return replace(target, dbname=dbname)
