"""The demo cluster: the least-privilege roles the portal connects with, and a streaming replica of the primary.

`initdb --auth-host=scram-sha-256` (adapters.pg.server) already lets every role in by password on 127.0.0.1,
replication connections included; `ensure_roles` creates the roles of `LOCAL_ROLES`, and `make_replica` clones
a primary with `pg_basebackup -R -C -S <slot>`. Used by `make up`, the test suite and the benchmarks.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass

import psycopg
from psycopg import sql

from hadr_portal.adapters.commands import CommandFailed, as_postgres_user, run_command
from hadr_portal.adapters.pg.server import PG_BIN, LocalInstance, chown_to_postgres


@dataclass(frozen=True)
class LocalRole:
    """A database role for one purpose of the portal (databases.models.Purpose), with what it is granted."""

    purpose: str  # monitor | read | backup: the cluster's `<purpose>_user` / `<purpose>_password_env`
    name: str
    password_variable: str  # the environment variable the portal reads its password from
    attributes: str  # role attributes beyond LOGIN NOSUPERUSER, e.g. REPLICATION
    grants: tuple[str, ...]  # predefined roles it is a member of
    functions: tuple[str, ...] = ()  # superuser-only functions it may EXECUTE, by signature


LOCAL_ROLES = (
    LocalRole("monitor", "hadr_monitor", "HADR_DEMO_MONITOR_PASSWORD", "NOREPLICATION", ("pg_monitor",)),
    LocalRole("read", "hadr_reader", "HADR_DEMO_READ_PASSWORD", "NOREPLICATION", ("pg_read_all_data",)),
    LocalRole(
        "backup",
        "hadr_backup",
        "HADR_DEMO_BACKUP_PASSWORD",
        "NOREPLICATION",  # physical backups are pgBackRest's, as the data's owner: no replication connection
        ("pg_read_all_data",),
        ("pg_create_restore_point(text)", "pg_switch_wal()"),  # restore points, archived at once
    ),
    # the write probe: its table's grants come from `manage.py write_probe_setup` (databases.writeprobe)
    LocalRole("probe", "hadr_probe", "HADR_DEMO_PROBE_PASSWORD", "NOREPLICATION", ()),
)


def ensure_roles(conninfo: str, passwords: Mapping[str, str]) -> None:
    """Create the `LOCAL_ROLES` on the server at `conninfo`, as its superuser (a primary; replicas get them by
    replication), or bring an existing
    one back to LOGIN NOSUPERUSER with its attributes, its grants and the password in `passwords[role.name]`.
    EXECUTE on its functions is granted in every database (a function's privileges are per database), template1
    included, so that databases created later have it too."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for role in LOCAL_ROLES:
            name = sql.Identifier(role.name)
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role.name]).fetchone():
                conn.execute(sql.SQL("CREATE ROLE {}").format(name))
            conn.execute(
                sql.SQL("ALTER ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE {} PASSWORD {}").format(
                    name, sql.SQL(role.attributes), sql.Literal(passwords[role.name])
                )
            )
            for granted in role.grants:
                conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(granted), name))
        databases = [row[0] for row in conn.execute("SELECT datname FROM pg_database WHERE datallowconn")]
    for dbname in databases:
        with psycopg.connect(conninfo, dbname=dbname, autocommit=True) as conn:
            for role in LOCAL_ROLES:
                for function in role.functions:  # signatures from LOCAL_ROLES above, never from input
                    conn.execute(
                        sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(
                            sql.SQL(function), sql.Identifier(role.name)
                        )
                    )


def make_replica(primary: LocalInstance, replica: LocalInstance, *, slot: str) -> None:
    """Clone `primary` into a streaming replica that uses replication slot `slot`."""
    replica.data_dir.parent.mkdir(parents=True, exist_ok=True)
    chown_to_postgres(replica.data_dir.parent)
    if replica.data_dir.exists():
        shutil.rmtree(replica.data_dir)
    primary.psql(
        f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{slot}' AND NOT active"
    )
    try:
        run_command(
            as_postgres_user(
                [
                    str(PG_BIN / "pg_basebackup"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(primary.port),
                    "-U",
                    "postgres",
                    "-D",
                    str(replica.data_dir),
                    "-R",
                    "-X",
                    "stream",
                    "-C",
                    "-S",
                    slot,
                    "-c",
                    "fast",
                ]
            ),
            env={"PGPASSWORD": primary.superuser_password},
            timeout=600,
        )
    except CommandFailed:
        shutil.rmtree(replica.data_dir, ignore_errors=True)
        raise
    replica.write_settings()
