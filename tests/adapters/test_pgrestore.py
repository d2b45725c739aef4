"""The restore adapter against the real primary: read-only verification, verified fetches, swaps."""

from __future__ import annotations

import hashlib

import psycopg
import pytest

from hadr_portal.adapters.pg.connection import PgConninfo
from hadr_portal.adapters.pg.dbadmin import database_create, database_drop, database_sessions, databases_swap
from hadr_portal.adapters.pg.restore import ChecksumMismatch, fetch_verified
from hadr_portal.adapters.pg.verify import queries_run


@pytest.fixture
def server(infra) -> PgConninfo:
    return PgConninfo(host="127.0.0.1", port=infra.primary.port, user="postgres", password=infra.demo_password)


@pytest.fixture
def scratch(server) -> str:
    name = "adapter_scratch"
    database_drop(server, name)
    database_create(server, name)
    yield name
    database_drop(server, name)


def test_verification_queries_cannot_write_not_even_by_changing_the_session(server, scratch, infra):
    with psycopg.connect(
        host=server.host, port=server.port, user=server.user, password=server.password, dbname=scratch
    ) as conn:
        conn.execute("CREATE TABLE t (x int)")
    reader = PgConninfo(server.host, server.port, "hadr_reader", infra.role_passwords["hadr_reader"], scratch)
    outcomes = queries_run(
        reader,
        [
            "SELECT set_config('default_transaction_read_only', 'off', false)",
            "WITH made AS (INSERT INTO t VALUES (1) RETURNING x) SELECT count(*) FROM made",
            "SELECT 40 + 2",
            "SELECT * FROM no_such_table",
        ],
    )
    assert "set_config is not allowed" in outcomes[0].error
    assert "INSERT" in outcomes[1].error
    assert outcomes[2].value == 42
    assert 'relation "no_such_table" does not exist' in outcomes[3].error
    # and as the admin account nothing runs at all: user-written SQL never runs as a superuser
    as_admin = queries_run(PgConninfo(server.host, server.port, server.user, server.password, scratch), ["SELECT 1"])
    assert "a superuser" in as_admin[0].error


def test_a_fetch_that_does_not_match_leaves_no_file(tmp_path):
    data = b"x" * 1000
    good = hashlib.sha256(data).hexdigest()
    fetch_verified(iter([data[:500], data[500:]]), tmp_path / "ok", sha256=good, size=1000)
    assert (tmp_path / "ok").read_bytes() == data
    with pytest.raises(ChecksumMismatch, match="truncated"):
        fetch_verified(iter([data[:10]]), tmp_path / "short", sha256=good, size=1000)
    with pytest.raises(ChecksumMismatch, match="corrupted"):
        fetch_verified(iter([b"y" * 1000]), tmp_path / "bad", sha256=good, size=1000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok"]


def test_the_swap_ends_sessions_and_renames_both_in_one_go(server, scratch):
    database_drop(server, "adapter_new")
    database_drop(server, "adapter_old")
    database_create(server, "adapter_new")
    session = psycopg.connect(
        host=server.host, port=server.port, user=server.user, password=server.password, dbname=scratch
    )
    try:
        assert len(database_sessions(server, scratch)) == 1
        assert databases_swap(server, current=scratch, replacement="adapter_new", keep_as="adapter_old") == 1
        with psycopg.connect(
            host=server.host, port=server.port, user=server.user, password=server.password, dbname="postgres"
        ) as conn:
            names = {row[0] for row in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'adapter_%'")}
            allowed = dict(conn.execute("SELECT datname, datallowconn FROM pg_database WHERE datname LIKE 'adapter_%'"))
        assert names == {scratch, "adapter_old"} and allowed == {scratch: True, "adapter_old": True}
    finally:
        session.close()
        database_drop(server, "adapter_old")
