"""A fresh primary + streaming replica per test, for tests that fail over, fence or rebuild (the session's
pair stays untouched). Copied from one initdb'd template, so a pair costs a second or two."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from hadr_portal.adapters.commands import run_command
from hadr_portal.adapters.localpg import LocalInstance, chown_to_postgres, make_replica
from hadr_portal.databases.models import Cluster
from hadr_portal.databases.services import cluster_upsert
from tests.infra import plugin
from tests.infra.plugin import free_port


@dataclass
class Pair:
    cluster: Cluster
    primary: LocalInstance
    replica: LocalInstance

    def execute(self, instance: LocalInstance, sql: str, params: tuple | None = None) -> list[tuple]:
        with psycopg.connect(instance.conninfo("onboarding"), autocommit=True) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def in_recovery(self, instance: LocalInstance) -> bool:
        return self.execute(instance, "SELECT pg_is_in_recovery()")[0][0]


@pytest.fixture(scope="session")
def pg_template(infra: plugin.Infrastructure) -> Path:
    """An initdb'd, stopped data directory holding an `onboarding` database with a table."""
    template = LocalInstance(infra.root / "pairs" / "template", free_port(), infra.demo_password, fsync=False)
    template.initdb()
    template.ensure_log_file()
    template.start()
    template.psql("CREATE DATABASE onboarding")
    template.psql("CREATE TABLE events (id bigserial PRIMARY KEY, note text)", dbname="onboarding")
    template.stop()
    return template.data_dir


@pytest.fixture
def pg_pair(db: None, infra: plugin.Infrastructure, pg_template: Path) -> Iterator[Pair]:
    base = infra.root / "pairs" / uuid.uuid4().hex[:8]
    base.mkdir(parents=True)
    chown_to_postgres(base)  # pg_basebackup, run as postgres, creates data directories in it
    primary = LocalInstance(base / "primary", free_port(), infra.demo_password, fsync=False)
    replica = LocalInstance(base / "replica", free_port(), infra.demo_password, fsync=False)
    run_command(["cp", "-a", str(pg_template), str(primary.data_dir)])
    primary.write_settings()
    primary.ensure_log_file()
    primary.start()
    make_replica(primary, replica, slot="hadr_replica")
    replica.ensure_log_file()
    replica.start()
    name = f"c{base.name}"
    cluster = cluster_upsert(
        name=name,
        nodes={"primary": ("127.0.0.1", primary.port), "replica": ("127.0.0.1", replica.port)},
        dbname="onboarding",
        user="postgres",
        password_env="HADR_DEMO_PASSWORD",
    )
    for node, instance in (("primary", primary), ("replica", replica)):
        cluster.nodes.filter(name=node).update(
            controller={"controller": "pg_ctl", "data_directory": str(instance.data_dir)}
        )
    try:
        yield Pair(cluster, primary, replica)
    finally:
        for instance in (primary, replica):
            instance.stop(mode="immediate")
        shutil.rmtree(base, ignore_errors=True)
