"""A fresh primary + streaming replica per test, for tests that fail over, fence or rebuild (the session's
pair stays untouched). Both are copies of one template pair made once per session, so a pair costs two
server starts."""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from hadr_portal.adapters.commands import run_command
from hadr_portal.adapters.pg.server import LocalInstance, chown_to_postgres
from hadr_portal.databases.models import Cluster
from hadr_portal.databases.services import cluster_upsert
from hadr_portal.demo.cluster import make_replica
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
def pg_template(infra: plugin.Infrastructure) -> tuple[Path, Path]:
    """A stopped primary holding an `onboarding` database with a table, and a base backup of it for a streaming
    replica through slot `hadr_replica`: data directories to copy, cheaper than a base backup per pair."""
    base = infra.root / "pairs" / "template"
    primary = LocalInstance(base / "primary", free_port(), infra.demo_password, fsync=False)
    primary.initdb()
    primary.ensure_log_file()
    primary.start()
    primary.psql("CREATE DATABASE onboarding")
    primary.psql("CREATE TABLE events (id bigserial PRIMARY KEY, note text)", dbname="onboarding")
    replica = LocalInstance(base / "replica", free_port(), infra.demo_password, fsync=False)
    make_replica(primary, replica, slot="hadr_replica")
    primary.stop()  # the slot, kept on disk, holds the WAL every copy of the replica starts from
    return primary.data_dir, replica.data_dir


def pair_copy(template: Path, into: Path, password: str) -> LocalInstance:
    instance = LocalInstance(into / template.name, free_port(), password, fsync=False)
    run_command(["cp", "-a", str(template), str(instance.data_dir)])
    instance.write_settings()
    instance.ensure_log_file()
    return instance


@pytest.fixture
def pg_pair(db: None, infra: plugin.Infrastructure, pg_template: tuple[Path, Path]) -> Iterator[Pair]:
    base = infra.root / "pairs" / uuid.uuid4().hex[:8]
    base.mkdir(parents=True)
    chown_to_postgres(base)  # a rebuild (pg_basebackup, run as postgres) creates data directories in it
    primary = pair_copy(pg_template[0], base, infra.demo_password)
    replica = pair_copy(pg_template[1], base, infra.demo_password)
    settings = replica.data_dir / "postgresql.auto.conf"  # primary_conninfo, as `pg_basebackup -R` wrote it
    settings.write_text(re.sub(r"\bport=\d+", f"port={primary.port}", settings.read_text()))
    primary.start()
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
