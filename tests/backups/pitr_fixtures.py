"""Point-in-time recovery fixtures: the demo cluster under pgBackRest with a recoverable window from the start, and
helpers that write WAL, switch it and point archive_command elsewhere for a while.

The session's cluster is shared by every test of the worker: its stanza and repository (under `infra.root`) live
as long as the session, so sets and archive-push logs of earlier tests are there too. A test that breaks archiving
puts it back in a `finally` (`archive_command_replaced`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import sql as pgsql

from hadr_portal.adapters.pg.archive import ArchiverStatus, archiver_status
from hadr_portal.adapters.pgbackrest import backup, info
from hadr_portal.backups.models import BackupPolicy
from hadr_portal.backups.stanza import stanza_for
from tests.infra.plugin import Infrastructure


@pytest.fixture
def pitr_policy(physical_policy: BackupPolicy) -> BackupPolicy:
    """`physical_policy` (policy demo-cluster: nodes with their data directories, a local repository, archiving on,
    wal_rpo_seconds 30) with at least one full set in repo1, so a recoverable window exists (the first test of the
    session takes it; the repository keeps it). `physical_policy` is in tests/backups/conftest.py: a module elsewhere
    imports it (and `scratch_dir`) from there too."""
    stanza = stanza_for(physical_policy)
    if not info(stanza).sets(1):
        backup(stanza, type="full", repo=1)
    return physical_policy


def wal_written(infra: Infrastructure) -> None:
    """A committed row on the primary: the segment being written has something to archive."""
    with psycopg.connect(infra.primary.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS archive_probe (at timestamptz DEFAULT clock_timestamp())")
        conn.execute("INSERT INTO archive_probe DEFAULT VALUES")


def wal_switched(infra: Infrastructure) -> None:
    wal_written(infra)
    with psycopg.connect(infra.primary.conninfo(), autocommit=True) as conn:
        conn.execute("SELECT pg_switch_wal()")


def archiver_until(
    infra: Infrastructure, condition: Callable[[ArchiverStatus], bool], timeout: float = 30
) -> ArchiverStatus:
    """pg_stat_archiver on the primary once `condition(status)` holds; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        status = archiver_status(infra.primary.conninfo())
        if condition(status):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"pg_stat_archiver never got there: {status}")
        time.sleep(0.2)


def archive_command_set(infra: Infrastructure, command: str) -> None:
    with psycopg.connect(infra.primary.conninfo(), autocommit=True) as conn:
        conn.execute(pgsql.SQL("ALTER SYSTEM SET archive_command = {}").format(pgsql.Literal(command)))
        conn.execute("SELECT pg_reload_conf()")


@contextmanager
def archive_command_replaced(infra: Infrastructure, command: str) -> Iterator[str]:
    """The primary archives with `command` inside the block; afterwards with its own again, and what failed meanwhile
    is archived before the block ends. Yields the command it had."""
    with psycopg.connect(infra.primary.conninfo(), autocommit=True) as conn:
        own = str(conn.execute("SELECT current_setting('archive_command')").fetchone()[0])  # type: ignore[index]
    archive_command_set(infra, command)
    try:
        yield own
    finally:
        archive_command_set(infra, own)
        archiver_until(infra, lambda status: not status.failing, timeout=60)
