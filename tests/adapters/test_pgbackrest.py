"""pgBackRest through the adapter, against the session's real primary and replica: a stanza on a local repository
and on S3 over HTTPS (moto), archiving from the primary, a full backup, and a restore to a second that is exact."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from hadr_portal.adapters.pg.archive import archiver_status, archiving_configure, recovery_state, restore_point_create
from hadr_portal.adapters.pg.scratch import free_port, server_remove, server_start
from hadr_portal.adapters.pgbackrest import (
    DataNode,
    PgBackRestError,
    RecoveryTarget,
    Repository,
    Stanza,
    backup,
    check,
    expire,
    info,
    restore,
    stanza_create,
)
from tests.infra.plugin import Infrastructure
from tests.infra.s3tls import TlsS3

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stanza(infra: Infrastructure, s3_tls: TlsS3) -> Stanza:
    s3_tls.client().create_bucket(Bucket="pgbr-adapter")
    home = infra.root / "pgbackrest-adapter"
    made = Stanza(
        name="adapter",
        home=home,
        nodes=(
            DataNode(
                1, str(infra.primary.data_dir), infra.primary.port, str(infra.primary.socket_directory), "primary"
            ),
            DataNode(
                2, str(infra.replica.data_dir), infra.replica.port, str(infra.replica.socket_directory), "replica"
            ),
        ),
        repos=(
            Repository(1, "posix", str(home / "repo")),
            Repository(
                2,
                "s3",
                "/adapter",
                bucket="pgbr-adapter",
                endpoint="127.0.0.1",
                port=s3_tls.port,
                uri_style="path",
                verify_tls=False,
                key="testing",
                secret="testing",
            ),
        ),
    )
    made.write()
    stanza_create(made)  # before archive_command points at it: archive-push would find no stanza
    for instance, node in ((infra.primary, made.nodes[0]), (infra.replica, made.nodes[1])):
        assert archiving_configure(instance.conninfo(), archive_command=made.archive_command(node), archive_timeout=10)
    check(made)
    return made


def test_secrets_stay_out_of_the_main_file(stanza: Stanza) -> None:
    assert "testing" not in stanza.config_path.read_text()
    secrets = stanza.include_path / "secrets.conf"
    assert "repo2-s3-key=testing" in secrets.read_text()
    assert secrets.stat().st_mode & 0o777 == 0o600


def test_backup_then_restore_to_a_second_is_exact(infra: Infrastructure, stanza: Stanza) -> None:
    with psycopg.connect(infra.primary.conninfo(), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS pitr_marks (id serial PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())"
        )
        conn.execute("TRUNCATE pitr_marks")
    seen: list[tuple[int, int]] = []
    after = backup(stanza, type="full", repo=1, on_progress=lambda done, total: seen.append((done, total)))
    newest = after.sets(1)[-1]
    assert newest.type == "full" and newest.repo_size > 0 and newest.wal_start and newest.wal_stop
    with psycopg.connect(infra.primary.conninfo(), autocommit=True) as conn:
        for _ in range(30):
            conn.execute("INSERT INTO pitr_marks DEFAULT VALUES")
            time.sleep(0.02)
        # halfway between the 15th row's commit and the 16th's: recovery compares commit times
        fifteenth = conn.execute("SELECT at FROM pitr_marks ORDER BY id OFFSET 14 LIMIT 1").fetchone()[0]
        target = fifteenth + timedelta(milliseconds=10)
        point_lsn = restore_point_create(infra.primary.conninfo(), "adapter-test-point")
        assert point_lsn
        conn.execute("SELECT pg_switch_wal()")
    # the segment holding T must be archived before recovery can reach it
    deadline = time.monotonic() + 30
    while archiver_status(infra.primary.conninfo()).archived_count == 0 or time.monotonic() < deadline:
        status = archiver_status(infra.primary.conninfo())
        if status.last_archived_time and status.last_archived_time > target:
            break
        time.sleep(0.3)
    assert not archiver_status(infra.primary.conninfo()).failing
    directory = infra.root / "restores" / "adapter-restored"
    restore(stanza, directory=directory, target=RecoveryTarget.at_time(target), repo=1)
    port = free_port()
    try:
        server_start(directory, port)
        conninfo = f"host=127.0.0.1 port={port} dbname=postgres user=postgres password={infra.demo_password}"
        deadline = time.monotonic() + 30
        while recovery_state(conninfo).pause_state != "paused" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert recovery_state(conninfo).pause_state == "paused"
        with psycopg.connect(conninfo, autocommit=True) as conn:
            rows = conn.execute("SELECT count(*), max(at) FROM pitr_marks").fetchone()
        assert rows == (15, fifteenth)
    finally:
        server_remove(directory)


def test_expire_removes_one_set_but_never_the_only_full(stanza: Stanza) -> None:
    backup(stanza, type="full", repo=2)
    only = info(stanza).sets(2)
    if len(only) == 1:
        with pytest.raises(PgBackRestError, match="cannot be expired until another full backup"):
            expire(stanza, label=only[0].label, repo=2)
    backup(stanza, type="full", repo=2)
    sets = info(stanza).sets(2)
    expire(stanza, label=sets[0].label, repo=2)
    assert [item.label for item in info(stanza).sets(2)] == [item.label for item in sets[1:]]


def test_an_unknown_set_is_a_clear_error(stanza: Stanza) -> None:
    with pytest.raises(PgBackRestError, match="no backup set"):
        expire(stanza, label="20000101-000000F", repo=1)


def test_datetime_target_needs_a_zone() -> None:
    with pytest.raises(ValueError, match="time zone"):
        RecoveryTarget.at_time(datetime(2026, 1, 1))
    assert RecoveryTarget.at_time(datetime(2026, 1, 1, tzinfo=UTC)).options(action="pause")[0] == "--type=time"
