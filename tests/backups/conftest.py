"""Restore fixtures: an application database of its own on the session's primary (never the demo's `onboarding`),
a backup policy for it with verification queries, and helpers to back it up, restore it and compare dumps."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.test import override_settings

from demo.onboarding import SCHEMA_SQL
from hadr_portal.adapters.pg.archive import archiver_status
from hadr_portal.adapters.pg.server import PG_BIN
from hadr_portal.backups import services
from hadr_portal.backups.markers import markers_table_ensure
from hadr_portal.backups.models import Backup, BackupPolicy, Restore, StorageTarget
from hadr_portal.backups.stanza import stanza_setup
from hadr_portal.core.models import Operation
from hadr_portal.core.operations import operation_execute
from tests.infra.plugin import Infrastructure

APP_DB = "restore_app"
VERIFY = [
    {"name": "users", "sql": "SELECT count(*) FROM app_users", "expect": "> 0"},
    {"name": "events", "sql": "SELECT count(*) FROM onboarding_events", "expect": ">= 1"},
    {"name": "events fresh", "sql": "SELECT max(created_at) FROM onboarding_events", "expect": "within 1h of backup"},
]


def app_dsn(infra: Infrastructure, dbname: str = APP_DB) -> str:
    return infra.primary.conninfo(dbname)


def app_sql(infra: Infrastructure, sql: str, dbname: str = APP_DB) -> list[tuple[Any, ...]]:
    with psycopg.connect(app_dsn(infra, dbname), autocommit=True) as conn:
        cursor = conn.execute(sql)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


def databases(infra: Infrastructure, prefix: str = APP_DB) -> set[str]:
    rows = app_sql(infra, f"SELECT datname FROM pg_database WHERE datname LIKE '{prefix}%'", "postgres")
    return {row[0] for row in rows}


def data_dump(infra: Infrastructure, dbname: str = APP_DB) -> str:
    """The data only, rows in order: what must be equal before the damage and after the restore."""
    result = subprocess.run(
        [
            str(PG_BIN / "pg_dump"),
            "--data-only",
            "--no-owner",
            "--inserts",
            "--rows-per-insert=1",
            "-d",
            app_dsn(infra, dbname),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    # comments and psql's \restrict / \unrestrict (a new random key in every dump) are not data
    lines = [line for line in result.stdout.splitlines() if line and not line.startswith(("--", "\\"))]
    return "\n".join(sorted(lines))


@pytest.fixture
def app_database(infra: Infrastructure) -> Iterator[str]:
    """`restore_app` with the onboarding schema and a few users walking the funnel; every database whose
    name starts with it is dropped afterwards (restored copies, kept originals)."""
    _drop_all(infra)
    app_sql(infra, f"CREATE DATABASE {APP_DB}", "postgres")
    with psycopg.connect(app_dsn(infra), autocommit=True) as conn:
        for statement in SCHEMA_SQL:
            conn.execute(statement)
        for number in range(1, 21):
            user = conn.execute(
                "INSERT INTO app_users (email) VALUES (%s) RETURNING id", [f"user{number}@example.com"]
            ).fetchone()
            for step in ("signed_up", "email_verified")[: 1 + number % 2]:
                conn.execute("INSERT INTO onboarding_events (user_id, step) VALUES (%s, %s)", [user[0], step])
    yield APP_DB
    _drop_all(infra)


def _drop_all(infra: Infrastructure) -> None:
    for name in databases(infra):
        app_sql(infra, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', "postgres")


@pytest.fixture
def scratch_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="hadr-restores-"))
    path.chmod(0o755)
    with override_settings(RESTORE_SCRATCH_DIR=path):
        yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def app_policy(demo_cluster, app_database, backup_dir, scratch_dir) -> BackupPolicy:
    storage = StorageTarget.objects.create(name="restore-local", kind="local", config={"path": str(backup_dir)})
    return BackupPolicy.objects.create(
        name="restore-app", cluster=demo_cluster, dbname=APP_DB, storage=storage, verify=VERIFY, jobs=2
    )


def backup_of(policy: BackupPolicy) -> Backup:
    operation = operation_execute(operation_id=services.backup_request(policy=policy, actor=None).pk)
    assert operation is not None and operation.status == "succeeded", operation and operation.error
    return Backup.objects.get(operation=operation)


def run(operation: Operation) -> Restore:
    """Run a queued restore or drill in this process, as the ops worker would; its restore afterwards."""
    operation_execute(operation_id=operation.pk)
    return Restore.objects.get(pk=operation.parameters["restore"])


@pytest.fixture
def s3_storage(db: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[StorageTarget, Any]]:
    """A storage target on a moto S3 server over HTTP (bucket `backups`, prefix `hadr`), and a boto3 client."""
    import boto3
    from moto.server import ThreadedMotoServer

    from tests.infra.plugin import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    monkeypatch.setenv("TEST_S3_KEY", "testing")
    monkeypatch.setenv("TEST_S3_SECRET", "testing")
    endpoint = f"http://127.0.0.1:{port}"
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket="backups")
    config = {
        "bucket": "backups",
        "prefix": "hadr",
        "endpoint_url": endpoint,
        "region": "us-east-1",
        "access_key_env": "TEST_S3_KEY",
        "secret_key_env": "TEST_S3_SECRET",
    }
    try:
        yield StorageTarget.objects.create(name="s3", kind="s3", config=config), s3
    finally:
        server.stop()


@pytest.fixture
def backup_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="hadr-backups-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def stop_servers_under(path: Path) -> None:
    """Stop any PostgreSQL a physical restore left running under `path` (tests clean up after themselves)."""
    for pid_file in path.rglob("postmaster.pid"):
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(PG_BIN / "pg_ctl"),
                "stop",
                "-m",
                "immediate",
                "-D",
                str(pid_file.parent),
            ]
            if os.geteuid() == 0
            else [str(PG_BIN / "pg_ctl"), "stop", "-m", "immediate", "-D", str(pid_file.parent)],
            capture_output=True,
            check=False,
        )


# --- point-in-time recovery: the session's cluster under pgBackRest ------------------------------------------


@pytest.fixture
def physical_policy(demo_cluster, infra: Infrastructure, scratch_dir) -> BackupPolicy:
    """The demo cluster under pgBackRest: nodes with their data directories, a local repository, archiving on."""
    for node, instance in (("primary", infra.primary), ("replica", infra.replica)):
        demo_cluster.nodes.filter(name=node).update(
            controller={
                "controller": "pg_ctl",
                "data_directory": str(instance.data_dir),
                "socket_directory": str(instance.socket_directory),
            }
        )
    storage = StorageTarget.objects.create(name="pitr-local", kind="local", config={"path": str(infra.root / "pitr")})
    policy = BackupPolicy.objects.create(
        name="demo-cluster",
        cluster=demo_cluster,
        dbname="onboarding",
        engine="pgbackrest",
        storage=storage,
        compress="lz4",
        wal_rpo_seconds=30,
        verify=[],
        drill_schedule="",
    )
    stanza_setup(policy, check=False, log=lambda *_: None)  # each test proves its own WAL reached the repository
    markers_table_ensure(policy)
    return policy


def backup_now(policy: BackupPolicy, set_type: str = "full") -> Backup:
    operation = operation_execute(operation_id=services.backup_request(policy=policy, actor=None, set_type=set_type).pk)
    assert operation is not None and operation.status == "succeeded", operation and operation.error
    return Backup.objects.get(operation=operation)


def sql(infra: Infrastructure, statement: str, *params: object) -> list[tuple]:
    with psycopg.connect(infra.primary.conninfo("onboarding"), autocommit=True) as conn:
        cursor = conn.execute(statement, params)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


def archived_past(infra: Infrastructure, moment: datetime, timeout: float = 40) -> None:
    sql(infra, "SELECT pg_switch_wal()")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = archiver_status(infra.primary.conninfo())
        if status.last_archived_time and status.last_archived_time > moment:
            return
        time.sleep(0.1)
    raise AssertionError(
        f"the WAL after the point was not archived in time: {archiver_status(infra.primary.conninfo())}"
    )
