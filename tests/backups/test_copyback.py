"""Copy tables back from a scratch instance into the live database.

The adapter runs against the session's primary: the live database is `restore_app`, the "scratch instance" a copy
of it made before the damage (`restore_app_scratch`, read-only by default, read as the read role). The service's
run reads from the session's replica with replay paused: a real hot standby held at a point, as a scratch instance
is, while the rows are deleted on the primary.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from hadr_portal.adapters.pg.connection import PgConninfo
from hadr_portal.adapters.pg.copyback import (
    CopyBackFailed,
    CopyBackRefused,
    CopyMode,
    TableCopy,
    tables_copy_back,
    where_refusal,
)
from hadr_portal.backups.copyback import copy_back_request
from hadr_portal.backups.models import BackupPolicy, Restore, StorageTarget
from hadr_portal.core.models import AuditEntry
from hadr_portal.core.operation_kinds import OperationConflict, OperationError
from hadr_portal.core.operations import operation_execute
from hadr_portal.core.permissions import Role
from hadr_portal.databases.models import Cluster
from tests.backups.conftest import APP_DB, app_sql
from tests.conftest import make_user
from tests.infra.plugin import Infrastructure

SCRATCH_DB = f"{APP_DB}_scratch"
SAFETY = "hadr_restore_test"
USERS, EVENTS = "app_users", "public.onboarding_events"
Sides = tuple[PgConninfo, PgConninfo]


@pytest.fixture
def sides(infra: Infrastructure, app_database: str) -> Sides:
    """(scratch as the read role, live as the admin): the scratch copy taken before any test damages live."""
    app_sql(infra, "CREATE TABLE notes (body text)")  # no primary key
    app_sql(infra, "INSERT INTO notes VALUES ('first'), ('second')")
    app_sql(infra, f"CREATE DATABASE {SCRATCH_DB} TEMPLATE {APP_DB}", "postgres")
    app_sql(infra, f"ALTER DATABASE {SCRATCH_DB} SET default_transaction_read_only = on", "postgres")
    port = infra.primary.port
    reader = PgConninfo("127.0.0.1", port, "hadr_reader", infra.role_passwords["hadr_reader"], SCRATCH_DB)
    return reader, PgConninfo("127.0.0.1", port, "postgres", infra.demo_password, APP_DB)


def ids(infra: Infrastructure, table: str, dbname: str = APP_DB) -> list[int]:
    return [row[0] for row in app_sql(infra, f"SELECT id FROM {table} ORDER BY id", dbname)]


def copy(sides: Sides, tables: list[str], mode: CopyMode = "missing", **options: Any) -> list[TableCopy]:
    source, live = sides
    return tables_copy_back(
        source, live, tables=tables, mode=mode, where=options.pop("where", None), safety_schema=SAFETY, **options
    )


def damage(infra: Infrastructure) -> None:
    """Users 3 and 4 deleted with their events, user 5's email changed, user 21 signed up since."""
    app_sql(infra, "DELETE FROM onboarding_events WHERE user_id IN (3, 4)")
    app_sql(infra, "DELETE FROM app_users WHERE id IN (3, 4)")
    app_sql(infra, "UPDATE app_users SET email = 'changed@example.com' WHERE id = 5")
    app_sql(infra, "INSERT INTO app_users (id, email) VALUES (21, 'late@example.com')")


def test_missing_rows_come_back_and_newer_rows_stay(infra: Infrastructure, sides: Sides) -> None:
    damage(infra)
    events_before = len(ids(infra, "onboarding_events"))
    # the events are listed first: they are inserted after the users they point at all the same
    copies = copy(sides, [EVENTS, USERS])
    assert [c.table for c in copies] == [EVENTS, "public.app_users"]
    events, users = copies
    assert (users.rows_read, users.rows_before, users.rows_copied, users.rows_after) == (20, 19, 2, 21)
    assert (events.rows_before, events.rows_copied) == (events_before, 3)  # users 3 and 4: two steps and one
    assert events.rows_after == events_before + 3 == 30
    assert ids(infra, "app_users") == list(range(1, 22))
    assert app_sql(infra, "SELECT email FROM app_users WHERE id IN (5, 21) ORDER BY id") == [
        ("changed@example.com",),
        ("late@example.com",),
    ]
    assert users.safety_table == f"{SAFETY}.app_users"
    assert ids(infra, users.safety_table) == [1, 2, *range(5, 22)]  # live as it was just before
    assert ids(infra, events.safety_table) != ids(infra, "onboarding_events")


def test_where_filters_the_scratch_rows(infra: Infrastructure, sides: Sides) -> None:
    damage(infra)
    [users] = copy(sides, [USERS], where={"public.app_users": "email LIKE 'user3@%' OR id > 100"})
    assert (users.rows_read, users.rows_copied) == (1, 1)
    assert 3 in ids(infra, "app_users") and 4 not in ids(infra, "app_users")


def test_replace_makes_the_tables_what_the_scratch_holds(infra: Infrastructure, sides: Sides) -> None:
    damage(infra)
    with pytest.raises(CopyBackRefused, match=r"onboarding_events → app_users.*replace them too"):
        copy(sides, [USERS], mode="replace")
    users, events = copy(sides, [USERS, EVENTS], mode="replace")
    assert (users.rows_before, users.rows_copied, users.rows_after) == (19, 20, 20)
    assert ids(infra, "app_users") == ids(infra, "app_users", SCRATCH_DB) == list(range(1, 21))
    assert events.rows_after == len(ids(infra, "onboarding_events", SCRATCH_DB))
    assert app_sql(infra, "SELECT email FROM app_users WHERE id = 5") == [("user5@example.com",)]
    assert 21 in ids(infra, users.safety_table)
    # a second copy from the same restore keeps the first safety copy
    [again] = copy(sides, ["notes"], mode="replace")
    [twice] = copy(sides, ["notes"], mode="replace")
    assert (again.safety_table, twice.safety_table) == (f"{SAFETY}.notes", f"{SAFETY}.notes_2")
    with pytest.raises(CopyBackRefused, match="only for missing rows"):
        copy(sides, [USERS], mode="replace", where={USERS: "id = 3"})


def test_all_or_nothing(infra: Infrastructure, sides: Sides) -> None:
    damage(infra)
    # the events of users 3 and 4 break a rule live has had since: their INSERT fails after the users' one
    app_sql(
        infra, "ALTER TABLE onboarding_events ADD CONSTRAINT no_verified CHECK (step <> 'email_verified') NOT VALID"
    )
    with pytest.raises(CopyBackFailed, match=r"inserting into public.onboarding_events: .*no_verified.*rolled back"):
        copy(sides, [USERS, EVENTS])
    assert ids(infra, "app_users") == [1, 2, *range(5, 22)]
    assert app_sql(infra, f"SELECT 1 FROM pg_namespace WHERE nspname = '{SAFETY}'") == []


def test_tables_that_cannot_be_copied_are_refused(infra: Infrastructure, sides: Sides) -> None:
    with pytest.raises(CopyBackRefused, match=r"public.notes has no primary key.*replace"):
        copy(sides, ["notes"])
    with pytest.raises(CopyBackRefused, match=r"public.nope does not exist in the live database"):
        copy(sides, ["nope"])
    app_sql(infra, "CREATE TABLE only_live (id int PRIMARY KEY)")
    with pytest.raises(CopyBackRefused, match=r"public.only_live does not exist in the scratch instance"):
        copy(sides, ["only_live"])
    app_sql(infra, "ALTER TABLE app_users ADD COLUMN nickname text")
    with pytest.raises(CopyBackRefused, match=r"public.app_users has other columns .*only live: nickname"):
        copy(sides, [USERS])
    app_sql(infra, "ALTER TABLE app_users DROP COLUMN nickname, ALTER COLUMN email TYPE varchar(200)")
    with pytest.raises(CopyBackRefused, match=r"column 2 is email character varying\(200\) live, email text on the"):
        copy(sides, [USERS])
    with pytest.raises(CopyBackRefused, match="listed twice"):
        copy(sides, [USERS, "public.app_users"])
    assert app_sql(infra, f"SELECT 1 FROM pg_namespace WHERE nspname = '{SAFETY}'") == []


@pytest.mark.parametrize(
    "expression, refusal",
    [
        ("1=1; DROP TABLE app_users", "must be one SELECT statement; this has 2"),
        ("lo_import('/etc/passwd') > 0", "lo_import is not allowed in a copy-back filter"),
        ("id IN (SELECT oid::int FROM pg_authid)", "pg_authid is a system catalog"),
        ("true UNION SELECT 1 FROM notes", "one condition on the table's rows"),
        ("true ORDER BY 1", "no UNION, ORDER BY, LIMIT"),
        ("id = 3) OR (true", "not valid SQL"),
        ("   ", "is empty"),
    ],
)
def test_bad_filters_are_refused(expression: str, refusal: str) -> None:
    assert refusal in where_refusal(USERS, expression)


def test_bad_filter_refused_before_anything_runs(infra: Infrastructure, sides: Sides) -> None:
    with pytest.raises(CopyBackRefused, match="pg_sleep is not allowed"):
        copy(sides, [USERS], where={USERS: "pg_sleep(30) IS NULL"})
    with pytest.raises(CopyBackRefused, match="not among the tables"):
        copy(sides, [USERS], where={"notes": "true"})
    live = sides[1]
    as_superuser = PgConninfo(live.host, live.port, live.user, live.password, SCRATCH_DB)
    with pytest.raises(CopyBackRefused, match="superuser"):
        tables_copy_back(
            as_superuser, live, tables=[USERS], mode="missing", where={USERS: "true"}, safety_schema=SAFETY
        )


def test_a_held_lock_fails_fast_instead_of_waiting(infra: Infrastructure, sides: Sides) -> None:
    damage(infra)
    with psycopg.connect(infra.primary.conninfo(APP_DB)) as application:
        application.execute("UPDATE app_users SET email = email WHERE id = 1")  # a write, not yet committed
        started = time.monotonic()
        with pytest.raises(CopyBackFailed, match=r"locking public.app_users .*another session holds a lock.*5 s"):
            copy(sides, [USERS])
        assert time.monotonic() - started < 15
        application.rollback()
    assert 3 not in ids(infra, "app_users")


def test_statement_timeout(infra: Infrastructure, sides: Sides) -> None:
    damage(infra)
    slow = "id IN (SELECT count(*) FROM generate_series(1, 100000000))"
    with pytest.raises(CopyBackFailed, match=r"reading public.app_users .*statement timeout \(0.5 s\)"):
        copy(sides, [USERS], where={USERS: slow}, statement_timeout=0.5)
    assert 3 not in ids(infra, "app_users")


# ---- the service: request, checks, the operation's run ----


@pytest.fixture
def copy_policy(demo_cluster: Cluster, app_database: str) -> BackupPolicy:
    storage = StorageTarget.objects.create(name="copy-back-local", kind="local", config={"path": "/nonexistent"})
    return BackupPolicy.objects.create(
        name="pitr-app", cluster=demo_cluster, dbname=APP_DB, storage=storage, engine=BackupPolicy.Engine.PGBACKREST
    )


def scratch_restore(policy: BackupPolicy, port: int, **fields: object) -> Restore:
    values: dict[str, object] = {
        "status": Restore.Status.READY,
        "situation": Restore.Situation.CORRUPTION,
        "destination": Restore.Destination.INSTANCE,
        "destination_database": APP_DB,
        "data_directory": "/nonexistent/scratch",
        "work_created": True,
        "port": port,
        "recovered_to": timezone.now(),
        "verified_at": timezone.now(),
    } | fields
    return Restore.objects.create(policy=policy, **values)


@pytest.fixture
def paused_replica(infra: Infrastructure, app_database: str) -> Iterator[int]:
    """The session's replica, caught up with the primary and then held there: its port."""

    def caught_up() -> bool:
        [(target,)] = app_sql(infra, "SELECT pg_current_wal_lsn()::text", "postgres")
        with psycopg.connect(infra.replica.conninfo()) as conn:
            row = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target]).fetchone()
        return bool(row and row[0])

    deadline = time.monotonic() + 30
    while not caught_up():
        assert time.monotonic() < deadline, "the replica did not catch up"
        time.sleep(0.2)
    infra.replica.psql("SELECT pg_wal_replay_pause()")
    try:
        yield infra.replica.port
    finally:
        infra.replica.psql("SELECT pg_wal_replay_resume()")


def test_copy_back_through_the_operation(infra: Infrastructure, copy_policy: BackupPolicy, paused_replica: int) -> None:
    dba = make_user("dba", Role.DBA)
    restore = scratch_restore(copy_policy, paused_replica)
    damage(infra)
    operation = copy_back_request(
        restore=restore, tables=[USERS], mode="missing", where={USERS: "id < 10"}, actor=dba, confirm=APP_DB
    )
    assert operation.target == f"database:demo/{APP_DB}"
    assert operation.parameters["tables"] == ["public.app_users"]
    with pytest.raises(OperationConflict):  # one at a time per live database
        copy_back_request(restore=restore, tables=["notes"], mode="replace", where=None, actor=dba, confirm=APP_DB)
    operation_execute(operation_id=operation.pk)
    operation.refresh_from_db()
    assert operation.status == "succeeded", operation.error
    assert ids(infra, "app_users") == list(range(1, 22))
    restore.refresh_from_db()
    assert restore.outcome == Restore.Outcome.COPIED_BACK
    assert restore.status == Restore.Status.READY  # the scratch instance stays for another table
    schema = f"hadr_restore_{restore.pk}"
    assert restore.copy_back["safety_schema"] == schema
    assert restore.copy_back["where"] == {"public.app_users": "id < 10"}
    [counts] = restore.copy_back["counts"]
    assert (counts["rows_before"], counts["rows_copied"], counts["rows_after"]) == (19, 2, 21)
    assert ids(infra, f"{schema}.app_users") == [1, 2, *range(5, 22)]
    lines = [line.message for line in operation.log_lines.all()]
    assert any("public.app_users: 19 rows before, 2 copied back (of 9 read), 21 after" in line for line in lines)
    assert any("at most 5 s, so the copy never hangs behind the application" in line for line in lines)
    assert AuditEntry.objects.filter(action="operation.copy_back", actor=dba, outcome="accepted").exists()

    again = copy_back_request(restore=restore, tables=[EVENTS], mode="missing", where=None, actor=dba, confirm=APP_DB)
    operation_execute(operation_id=again.pk)
    restore.refresh_from_db()
    assert restore.copy_back["tables"] == [EVENTS]
    assert [earlier["tables"] for earlier in restore.copy_back["earlier"]] == [["public.app_users"]]
    assert restore.copy_back["counts"][0]["rows_copied"] == 3


def test_a_failed_run_says_why_and_changes_nothing(infra: Infrastructure, copy_policy: BackupPolicy) -> None:
    restore = scratch_restore(copy_policy, infra.primary.port)
    operation = copy_back_request(
        restore=restore, tables=[USERS], mode="replace", where=None, actor=make_user("dba", Role.DBA), confirm=APP_DB
    )
    operation_execute(operation_id=operation.pk)
    operation.refresh_from_db()
    assert operation.status == "failed"
    assert "other tables point at the tables to replace" in operation.error
    restore.refresh_from_db()
    assert restore.outcome == "" and restore.copy_back == {}


def test_only_a_dba_with_the_database_name_may_copy_back(infra: Infrastructure, copy_policy: BackupPolicy) -> None:
    restore = scratch_restore(copy_policy, infra.primary.port)
    for role in (Role.DEVOPS, Role.DEVELOPER, Role.VIEWER):
        with pytest.raises(PermissionDenied):
            copy_back_request(
                restore=restore,
                tables=[USERS],
                mode="missing",
                where=None,
                actor=make_user(f"u-{role.name}", role),
                confirm=APP_DB,
            )
    assert AuditEntry.objects.filter(action="operation.copy_back", outcome="refused").count() == 3
    dba = make_user("dba", Role.DBA)
    with pytest.raises(OperationError, match=f"Type the live database's name, {APP_DB}"):
        copy_back_request(restore=restore, tables=[USERS], mode="missing", where=None, actor=dba, confirm="restore")
    with pytest.raises(OperationError, match="pg_sleep is not allowed"):
        copy_back_request(
            restore=restore,
            tables=[USERS],
            mode="missing",
            where={USERS: "pg_sleep(1) IS NULL"},
            actor=dba,
            confirm=APP_DB,
        )
    with pytest.raises(OperationError, match="not a table name"):
        copy_back_request(restore=restore, tables=["a.b.c"], mode="missing", where=None, actor=dba, confirm=APP_DB)
    assert not restore.copy_back and not Restore.objects.get(pk=restore.pk).outcome


@pytest.mark.parametrize(
    "fields, refusal",
    [
        ({"status": Restore.Status.RUNNING}, r"is running: tables can be copied back once"),
        ({"status": Restore.Status.DONE, "scratch_removed_at": timezone.now()}, r"is done: "),
        ({"work_created": False}, r"scratch instance has been stopped and removed"),
        ({"destination": Restore.Destination.NEW_DATABASE}, r"did not go into a scratch instance"),
    ],
)
def test_only_a_ready_scratch_instance_is_copied_from(
    infra: Infrastructure, copy_policy: BackupPolicy, fields: dict[str, object], refusal: str
) -> None:
    restore = scratch_restore(copy_policy, infra.primary.port, **fields)
    with pytest.raises(OperationError, match=refusal):
        copy_back_request(
            restore=restore,
            tables=[USERS],
            mode="missing",
            where=None,
            actor=make_user("dba", Role.DBA),
            confirm=APP_DB,
        )


def test_a_scratch_instance_still_being_verified_is_not_copied_from(
    infra: Infrastructure, copy_policy: BackupPolicy
) -> None:
    restore = scratch_restore(copy_policy, infra.replica.port, verified_at=None)
    with pytest.raises(OperationError, match="still being verified"):
        copy_back_request(restore=restore, tables=["app_users"], mode="missing", where=None, actor=None, confirm=APP_DB)


def test_a_scratch_instance_being_copied_from_is_not_discarded(
    infra: Infrastructure, copy_policy: BackupPolicy
) -> None:
    from hadr_portal.backups.scratch import scratch_discard

    restore = scratch_restore(copy_policy, infra.replica.port)
    copy_back_request(restore=restore, tables=["app_users"], mode="missing", where=None, actor=None, confirm=APP_DB)
    with pytest.raises(OperationError, match="is copying tables back from it"):
        scratch_discard(restore=restore, actor=None, confirm=str(restore.pk))
