"""Restoring a PostgreSQL dump: bytes from storage refused unless they are the ones backed up, then pg_restore.

- `fetch_verified()` / `verify_chunks()`  bytes from storage to a local file (or only hashed), refused unless
                                          their size and SHA-256 match what the backup recorded
- `pg_restore_run()`                      `pg_restore -j N` into an existing database, item by item on a callback

The database it restores into: adapters.pg.dbadmin; checking the result: adapters.pg.verify; a physical backup
as a server of its own: adapters.pg.scratch. Only libpq programs and SQL: everything works with stock
PostgreSQL, no agent on the server.
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from psycopg.conninfo import make_conninfo

from hadr_portal.adapters.commands import CommandFailed, run_command

from .backup import pg_restore_list
from .connection import BackupFailed, PgConninfo, classify_failure
from .server import PG_BIN

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
        return len(pg_restore_list(path))
    except BackupFailed as exc:
        raise RestoreFailed(f"pg_restore cannot read the backup: {exc}") from exc


def pg_restore_run(
    path: Path,
    target: PgConninfo,
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
